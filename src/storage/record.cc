#include "storage/record.h"

#include "common/crc32c.h"

namespace kv::storage {

namespace {

// The segment header's magic number: "KVWL" and the format version, 1.
constexpr uint64_t kSegmentMagic = 0x4b56574c'00000001ull;

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t LoadU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

// Reads fixed-size fields off the front of a payload; any read past the end
// sets failed() and yields zeros.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  uint64_t U64() {
    if (in_.size() < 8) return Fail();
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(in_[i])) << (8 * i);
    in_.remove_prefix(8);
    return v;
  }
  uint32_t U32() {
    if (in_.size() < 4) return static_cast<uint32_t>(Fail());
    const uint32_t v = LoadU32(in_.data());
    in_.remove_prefix(4);
    return v;
  }
  uint8_t U8() {
    if (in_.empty()) return static_cast<uint8_t>(Fail());
    const auto v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return v;
  }
  std::string_view Rest() {
    std::string_view r = in_;
    in_ = {};
    return r;
  }
  bool failed() const { return failed_; }
  bool done() const { return in_.empty(); }

 private:
  uint64_t Fail() {
    failed_ = true;
    in_ = {};
    return 0;
  }

  std::string_view in_;
  bool failed_ = false;
};

void PutIds(std::string* out, const std::vector<raft::NodeId>& ids) {
  PutU32(out, static_cast<uint32_t>(ids.size()));
  for (raft::NodeId id : ids) PutU64(out, id);
}

bool GetIds(Reader* r, std::vector<raft::NodeId>* ids) {
  const uint32_t n = r->U32();
  for (uint32_t i = 0; i < n && !r->failed(); ++i) ids->push_back(r->U64());
  return !r->failed();
}

}  // namespace

Record Record::Entry(raft::GroupId group, raft::Entry entry) {
  Record r;
  r.type = RecordType::kEntry;
  r.group = group;
  r.entry = std::move(entry);
  return r;
}

Record Record::HardState(raft::GroupId group, const raft::HardState& hs) {
  Record r;
  r.type = RecordType::kHardState;
  r.group = group;
  r.hard_state = hs;
  return r;
}

Record Record::Snapshot(raft::GroupId group, const raft::SnapshotMeta& meta, bool replace_log) {
  Record r;
  r.type = RecordType::kSnapshot;
  r.group = group;
  r.snapshot = meta;
  r.replace_log = replace_log;
  return r;
}

Record Record::SegmentHeader(uint64_t seq, uint64_t checkpoint_bytes) {
  Record r;
  r.type = RecordType::kSegmentHeader;
  r.seq = seq;
  r.checkpoint_bytes = checkpoint_bytes;
  return r;
}

Record Record::WriteStart(uint64_t seq) {
  Record r;
  r.type = RecordType::kWriteStart;
  r.seq = seq;
  return r;
}

void EncodeRecord(const Record& record, std::string* out) {
  const size_t start = out->size();
  out->append(kFrameHeaderSize, '\0');
  switch (record.type) {
    case RecordType::kSegmentHeader:
      PutU64(out, kSegmentMagic);
      PutU64(out, record.seq);
      PutU64(out, record.checkpoint_bytes);
      break;
    case RecordType::kWriteStart:
      PutU64(out, record.seq);
      break;
    case RecordType::kEntry:
      PutU64(out, record.group);
      PutU64(out, record.entry.index);
      PutU64(out, record.entry.term);
      out->push_back(static_cast<char>(record.entry.type));
      out->append(record.entry.data);
      break;
    case RecordType::kHardState:
      PutU64(out, record.group);
      PutU64(out, record.hard_state.term);
      PutU64(out, record.hard_state.vote);
      PutU64(out, record.hard_state.commit);
      break;
    case RecordType::kSnapshot:
      PutU64(out, record.group);
      PutU64(out, record.snapshot.index);
      PutU64(out, record.snapshot.term);
      out->push_back(record.replace_log ? 1 : 0);
      PutIds(out, record.snapshot.conf.voters);
      PutIds(out, record.snapshot.conf.learners);
      break;
  }
  const size_t payload = out->size() - start - kFrameHeaderSize;
  char* header = out->data() + start;
  for (int i = 0; i < 4; ++i) header[4 + i] = static_cast<char>((payload >> (8 * i)) & 0xff);
  header[8] = static_cast<char>(record.type);
  const uint32_t crc = Crc32c(header + 4, out->size() - start - 4);
  for (int i = 0; i < 4; ++i) header[i] = static_cast<char>((crc >> (8 * i)) & 0xff);
}

FrameStatus CheckFrame(std::string_view buf, size_t offset, size_t* frame_size, RecordType* type,
                       std::string_view* payload) {
  if (offset + kFrameHeaderSize > buf.size()) {
    // A header cut by the end of the file: zeros if nothing was written there.
    for (size_t i = offset; i < buf.size(); ++i) {
      if (buf[i] != '\0') return FrameStatus::kBad;
    }
    return FrameStatus::kZero;
  }
  const char* h = buf.data() + offset;
  bool zero = true;
  for (size_t i = 0; i < kFrameHeaderSize; ++i) zero = zero && h[i] == '\0';
  if (zero) return FrameStatus::kZero;
  const uint32_t length = LoadU32(h + 4);
  const auto t = static_cast<uint8_t>(h[8]);
  if (t < static_cast<uint8_t>(RecordType::kSegmentHeader) ||
      t > static_cast<uint8_t>(RecordType::kWriteStart) || length > kMaxPayloadSize ||
      length > buf.size() - offset - kFrameHeaderSize) {
    return FrameStatus::kBad;
  }
  if (Crc32c(h + 4, kFrameHeaderSize - 4 + length) != LoadU32(h)) return FrameStatus::kBad;
  *frame_size = kFrameHeaderSize + length;
  *type = static_cast<RecordType>(t);
  *payload = std::string_view(h + kFrameHeaderSize, length);
  return FrameStatus::kOk;
}

uint32_t PayloadLength(std::string_view header) { return LoadU32(header.data() + 4); }

Status DecodeRecord(RecordType type, std::string_view payload, Record* out) {
  Reader r(payload);
  *out = Record();
  out->type = type;
  switch (type) {
    case RecordType::kSegmentHeader:
      if (r.U64() != kSegmentMagic) return Status::Corruption("bad segment magic or version");
      out->seq = r.U64();
      out->checkpoint_bytes = r.U64();
      break;
    case RecordType::kWriteStart:
      out->seq = r.U64();
      break;
    case RecordType::kEntry: {
      out->group = r.U64();
      out->entry.index = r.U64();
      out->entry.term = r.U64();
      const uint8_t t = r.U8();
      if (t > static_cast<uint8_t>(raft::EntryType::kConfChange)) {
        return Status::Corruption("unknown entry type");
      }
      out->entry.type = static_cast<raft::EntryType>(t);
      out->entry.data = std::string(r.Rest());
      break;
    }
    case RecordType::kHardState:
      out->group = r.U64();
      out->hard_state.term = r.U64();
      out->hard_state.vote = r.U64();
      out->hard_state.commit = r.U64();
      break;
    case RecordType::kSnapshot:
      out->group = r.U64();
      out->snapshot.index = r.U64();
      out->snapshot.term = r.U64();
      out->replace_log = r.U8() != 0;
      if (!GetIds(&r, &out->snapshot.conf.voters) || !GetIds(&r, &out->snapshot.conf.learners)) {
        return Status::Corruption("truncated snapshot record");
      }
      break;
  }
  if (r.failed() || !r.done()) return Status::Corruption("record payload does not parse");
  return Status::OK();
}

}  // namespace kv::storage
