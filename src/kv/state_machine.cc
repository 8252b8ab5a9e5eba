#include "kv/state_machine.h"

#include <xxhash.h>

#include <algorithm>
#include <cstdint>

#include "common/coding.h"

namespace kv {

namespace {
// Version 2 added the members after the data; version 1 snapshots have none.
// Version 3 added each key's create_index and mod_index after its value; a
// key restored from an older snapshot gets the snapshot's index for both.
// Version 4 added the state machine's clock after the applied index and each
// key's deadline after its versions.
constexpr uint8_t kSnapshotVersion = 4;

// Spreads the bits so that sums of hashes do not cancel in patterns.
uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}
}  // namespace

const char* ApplyResultName(ApplyResult r) {
  switch (r) {
    case ApplyResult::kOk:
      return "OK";
    case ApplyResult::kNotFound:
      return "NOT_FOUND";
    case ApplyResult::kCasFailed:
      return "CAS_FAILED";
    case ApplyResult::kStaleSeq:
      return "STALE_SEQ";
  }
  return "?";
}

uint64_t StateMachine::Hash(std::string_view key, std::string_view value, uint64_t deadline_ms) {
  // XXH3 (xxHash 0.8): an order of magnitude faster per byte than a
  // byte-at-a-time hash, and this runs twice for every write applied. The
  // key's hash seeds the value's, so that moving bytes from key to value
  // changes the result. A key without a deadline hashes as it did before
  // deadlines existed.
  const uint64_t h = XXH3_64bits(key.data(), key.size());
  return Mix(XXH3_64bits_withSeed(value.data(), value.size(), h) + key.size() +
             deadline_ms * 0x9e3779b97f4a7c15ULL);
}

const Record* StateMachine::PutValue(std::string_view key, std::string_view value, KeyVersion v,
                                     uint64_t deadline_ms) {
  Record* made = Record::Make(key, value, v, deadline_ms);
  const RecordRef old = data_.Put(made);
  if (old.get() != nullptr) {
    digest_ -= Hash(key, old->value(), old->deadline_ms());
    data_bytes_ -= key.size() + old->value().size();
    if (old->deadline_ms() != 0) deadlines_.erase({old->deadline_ms(), std::string(key)});
  }
  digest_ += Hash(key, value, deadline_ms);
  data_bytes_ += key.size() + value.size();
  if (deadline_ms != 0) deadlines_.emplace(deadline_ms, std::string(key));
  return made;
}

void StateMachine::Write(std::string_view key, std::string_view value, KeyVersion v,
                         uint64_t deadline_ms, std::vector<Change>* changes) {
  const Record* made = PutValue(key, value, v, deadline_ms);
  if (changes == nullptr) return;
  made->Ref();
  changes->push_back(Change{Change::Kind::kPut, RecordRef(made), {}});
}

void StateMachine::Remove(const Record* r, Change::Kind why, std::vector<Change>* changes) {
  if (changes != nullptr) changes->push_back(Change{why, {}, std::string(r->key())});
  EraseValue(r);
}

void StateMachine::EraseValue(const Record* r) {
  digest_ -= Hash(r->key(), r->value(), r->deadline_ms());
  data_bytes_ -= r->key().size() + r->value().size();
  if (r->deadline_ms() != 0) deadlines_.erase({r->deadline_ms(), std::string(r->key())});
  data_.Erase(r->key());
}

const Record* StateMachine::LiveRecord(std::string_view key, std::vector<Change>* changes) {
  const Record* r = data_.Find(key);
  if (r == nullptr || !r->ExpiredAt(clock_ms_)) return r;
  Remove(r, Change::Kind::kExpire, changes);
  return nullptr;
}

void StateMachine::RecordSession(uint64_t client, uint64_t seq, uint64_t index,
                                 ApplyResult result) {
  auto [it, inserted] = sessions_.try_emplace(client);
  if (!inserted) sessions_by_index_.erase(it->second.index);
  it->second = Session{seq, index, result};
  sessions_by_index_[index] = client;
  while (sessions_.size() > max_sessions_) {
    auto oldest = sessions_by_index_.begin();
    sessions_.erase(oldest->second);
    sessions_by_index_.erase(oldest);
  }
}

ApplyResult StateMachine::Apply(uint64_t index, const Command& cmd, bool* duplicate,
                                uint64_t* decided_at, std::vector<Change>* changes,
                                std::vector<TxnOpResult>* txn) {
  *duplicate = false;
  if (changes != nullptr) changes->clear();
  if (txn != nullptr) txn->clear();
  applied_index_ = index;
  // The leader's clock, never going back (a new leader's may be behind).
  clock_ms_ = std::max(clock_ms_, cmd.now_ms);
  uint64_t unused = 0;
  if (decided_at == nullptr) decided_at = &unused;
  *decided_at = index;
  if (cmd.client != 0 && cmd.seq != 0) {
    auto it = sessions_.find(cmd.client);
    if (it != sessions_.end() && cmd.seq <= it->second.seq) {
      *duplicate = true;
      // An older seq cannot be a retry of an unanswered write (the client
      // waits for each answer): refuse it rather than guess.
      if (cmd.seq != it->second.seq) {
        *decided_at = 0;
        return ApplyResult::kStaleSeq;
      }
      *decided_at = it->second.index;
      return it->second.result;
    }
  }
  if (cmd.op == OpType::kTxn) {
    const ApplyResult branch = ApplyTxn(index, cmd, changes, txn);
    if (cmd.client != 0 && cmd.seq != 0) RecordSession(cmd.client, cmd.seq, index, branch);
    return branch;
  }
  ApplyResult result = ApplyResult::kOk;
  if (cmd.op == OpType::kExpire) {
    // Each key whose deadline has passed goes; a key written again since
    // the leader listed it has a later deadline (or none) and stays.
    for (const std::string& key : cmd.keys) LiveRecord(key, changes);
  }
  const Record* current = cmd.op == OpType::kExpire ? nullptr : LiveRecord(cmd.key, changes);
  // A put or a successful cas: a new record, created now unless it replaces one.
  const KeyVersion written{current != nullptr ? current->version().create_index : index, index};
  switch (cmd.op) {
    case OpType::kPut:
      Write(cmd.key, cmd.value, written, cmd.deadline_ms, changes);
      break;
    case OpType::kDelete:
      if (current == nullptr) {
        result = ApplyResult::kNotFound;
      } else {
        Remove(current, Change::Kind::kDelete, changes);
      }
      break;
    case OpType::kCas: {
      bool matches = false;
      if (cmd.has_expect_index) {
        matches = cmd.expect_index == (current != nullptr ? current->version().mod_index : 0);
      } else {
        matches = cmd.has_expect ? (current != nullptr && current->value() == cmd.expect)
                                 : current == nullptr;
      }
      if (matches) {
        Write(cmd.key, cmd.value, written, cmd.deadline_ms, changes);
      } else {
        result = ApplyResult::kCasFailed;
      }
      break;
    }
    case OpType::kTouch:
      // A new deadline, the same value and version: a touch is no change
      // of the value that optimistic writers (expect_index) should see.
      if (current == nullptr) {
        result = ApplyResult::kNotFound;
      } else {
        current->Ref();
        const RecordRef keep(current);  // the old record outlives its replacement
        PutValue(cmd.key, keep->value(), keep->version(), cmd.deadline_ms);
      }
      break;
    case OpType::kExpire:
    case OpType::kTxn:
      break;
  }
  if (cmd.client != 0 && cmd.seq != 0) RecordSession(cmd.client, cmd.seq, index, result);
  return result;
}

ApplyResult StateMachine::ApplyTxn(uint64_t index, const Command& cmd, std::vector<Change>* changes,
                                   std::vector<TxnOpResult>* results) {
  bool holds = true;
  for (const TxnCompare& c : cmd.compare) {
    const Record* r = LiveRecord(c.key, changes);
    const uint64_t mod_index = r != nullptr ? r->version().mod_index : 0;
    switch (c.kind) {
      case TxnCompare::Kind::kValue:
        holds = r != nullptr && r->value() == c.value;
        break;
      case TxnCompare::Kind::kAbsent:
        holds = r == nullptr;
        break;
      case TxnCompare::Kind::kPresent:
        holds = r != nullptr;
        break;
      case TxnCompare::Kind::kModEqual:
        holds = mod_index == c.index;
        break;
      case TxnCompare::Kind::kModLess:
        holds = mod_index < c.index;
        break;
      case TxnCompare::Kind::kModGreater:
        holds = mod_index > c.index;
        break;
    }
    if (!holds) break;
  }
  const std::vector<TxnOp>& branch = holds ? cmd.success : cmd.failure;
  for (const TxnOp& op : branch) {
    const Record* current = LiveRecord(op.key, changes);
    TxnOpResult result;
    switch (op.kind) {
      case TxnOp::Kind::kPut:
        Write(op.key, op.value,
              {current != nullptr ? current->version().create_index : index, index}, op.deadline_ms,
              changes);
        break;
      case TxnOp::Kind::kDelete:
        if (current == nullptr) {
          result.result = ApplyResult::kNotFound;
        } else {
          Remove(current, Change::Kind::kDelete, changes);
        }
        break;
      case TxnOp::Kind::kGet:
        if (current == nullptr) {
          result.result = ApplyResult::kNotFound;
        } else {
          current->Ref();
          result.record = RecordRef(current);
        }
        break;
    }
    if (results != nullptr) results->push_back(std::move(result));
  }
  return holds ? ApplyResult::kOk : ApplyResult::kCasFailed;
}

void StateMachine::SetMember(uint64_t index, uint64_t node, const std::string& address) {
  applied_index_ = index;
  if (address.empty()) {
    members_.erase(node);
  } else {
    members_[node] = address;
  }
}

const Record* StateMachine::Find(std::string_view key, uint64_t now_ms) const {
  const Record* r = data_.Find(key);
  return r == nullptr || r->ExpiredAt(std::max(now_ms, clock_ms_)) ? nullptr : r;
}

bool StateMachine::Get(std::string_view key, std::string* value, KeyVersion* version) const {
  const Record* r = Find(key);
  if (r == nullptr) return false;
  value->assign(r->value());
  if (version != nullptr) *version = r->version();
  return true;
}

std::map<std::string, std::string> StateMachine::ScanPrefix(std::string_view prefix) const {
  ScanSpec spec = PrefixRange(prefix);
  spec.limit = SIZE_MAX;
  spec.max_bytes = SIZE_MAX;
  std::map<std::string, std::string> out;
  for (ScannedKey& k : Scan(spec).kvs) out.emplace(std::move(k.key), std::move(k.value));
  return out;
}

ScanPage StateMachine::Scan(const ScanSpec& spec, uint64_t now_ms) const {
  const uint64_t now = std::max(now_ms, clock_ms_);
  ScanPage page;
  page.keys_only = spec.keys_only;
  size_t bytes = 0;
  data_.ForEachFrom(spec.start, [&](const Record& r) {
    if (spec.end && r.key() >= *spec.end) return false;
    if (r.ExpiredAt(now)) return true;
    const size_t size = r.key().size() + (spec.keys_only ? 0 : r.value().size());
    if (page.kvs.size() >= std::max<size_t>(spec.limit, 1) ||
        (!page.kvs.empty() && bytes + size > spec.max_bytes)) {
      page.more = true;
      // The smallest key after the last one returned.
      page.next = page.kvs.back().key + std::string(1, '\0');
      return false;
    }
    bytes += size;
    page.kvs.push_back(ScannedKey{std::string(r.key()),
                                  spec.keys_only ? std::string() : std::string(r.value()),
                                  r.version(), r.deadline_ms() != 0 ? r.deadline_ms() - now : 0});
    return true;
  });
  return page;
}

std::vector<std::string> StateMachine::ExpiredKeys(uint64_t now_ms, size_t max_keys,
                                                   size_t max_bytes) const {
  const uint64_t now = std::max(now_ms, clock_ms_);
  std::vector<std::string> keys;
  size_t bytes = 0;
  for (auto it = deadlines_.begin(); it != deadlines_.end() && it->first <= now; ++it) {
    if (keys.size() >= max_keys || (!keys.empty() && bytes + it->second.size() > max_bytes)) break;
    bytes += it->second.size();
    keys.push_back(it->second);
  }
  return keys;
}

uint64_t StateMachine::next_deadline() const {
  return deadlines_.empty() ? 0 : deadlines_.begin()->first;
}

StateView StateMachine::TakeView() const {
  StateView v = TakeDataView();
  v.sessions_.reserve(sessions_.size());
  for (const auto& [client, s] : sessions_) {
    v.sessions_.push_back({client, s.seq, s.index, static_cast<uint8_t>(s.result)});
  }
  v.members_ = members_;
  return v;
}

StateView StateMachine::TakeDataView() const {
  StateView v;
  v.applied_index_ = applied_index_;
  v.clock_ms_ = clock_ms_;
  Store::View data = data_.TakeView();
  v.records_ = std::move(data.records);
  v.pin_ = std::move(data.pin);
  return v;
}

uint64_t StateView::SerializedSize() const {
  uint64_t n =
      1 + VarintLength(applied_index_) + VarintLength(clock_ms_) + VarintLength(sessions_.size());
  for (const SessionRow& s : sessions_) {
    n += VarintLength(s.client) + VarintLength(s.seq) + VarintLength(s.index) + 1;
  }
  n += VarintLength(records_.size());
  for (const Record* r : records_) {
    n += VarintLength(r->key().size()) + r->key().size() + VarintLength(r->value().size()) +
         r->value().size() + VarintLength(r->version().create_index) +
         VarintLength(r->version().mod_index) + VarintLength(r->deadline_ms());
  }
  n += VarintLength(members_.size());
  for (const auto& [node, address] : members_) {
    n += VarintLength(node) + VarintLength(address.size()) + address.size();
  }
  return n;
}

// A cursor is 0 before the header, 1 + k once k records are out, and
// records + 2 at the end.
bool StateView::SerializePiece(uint64_t* cursor, size_t piece_bytes, std::string* out) const {
  const size_t first = out->size();
  if (*cursor == 0) {
    out->push_back(static_cast<char>(kSnapshotVersion));
    PutVarint64(out, applied_index_);
    PutVarint64(out, clock_ms_);
    PutVarint64(out, sessions_.size());
    for (const SessionRow& row : sessions_) {
      PutVarint64(out, row.client);
      PutVarint64(out, row.seq);
      PutVarint64(out, row.index);
      out->push_back(static_cast<char>(row.result));
    }
    PutVarint64(out, records_.size());
    *cursor = 1;
  }
  while (*cursor <= records_.size() && out->size() - first < piece_bytes) {
    const Record* r = records_[*cursor - 1];
    PutLengthPrefixed(out, r->key());
    PutLengthPrefixed(out, r->value());
    PutVarint64(out, r->version().create_index);
    PutVarint64(out, r->version().mod_index);
    PutVarint64(out, r->deadline_ms());
    ++*cursor;
  }
  if (*cursor == records_.size() + 1) {
    PutVarint64(out, members_.size());
    for (const auto& [node, address] : members_) {
      PutVarint64(out, node);
      PutLengthPrefixed(out, address);
    }
    ++*cursor;
  }
  return *cursor == records_.size() + 2;
}

Status StateView::SerializeTo(size_t piece_bytes, const Emit& emit) const {
  std::string piece;
  piece.reserve(piece_bytes + 64);
  uint64_t cursor = 0;
  bool last = false;
  while (!last) {
    piece.clear();
    last = SerializePiece(&cursor, piece_bytes, &piece);
    Status s = emit(piece);
    if (!s.ok()) return s;
  }
  return Status::OK();
}

std::string StateView::Serialize() const {
  std::string all;
  all.reserve(SerializedSize());
  SerializeTo(1 << 20, [&](std::string_view piece) {
    all.append(piece);
    return Status::OK();
  });
  return all;
}

void StateMachine::Clear() {
  data_.Clear();
  members_.clear();
  deadlines_.clear();
  sessions_.clear();
  sessions_by_index_.clear();
  applied_index_ = 0;
  clock_ms_ = 0;
  digest_ = 0;
  data_bytes_ = 0;
}

Status StateMachine::Restore(std::string_view in) {
  Clear();
  uint8_t version = 0;
  uint64_t count = 0;
  if (!GetByte(&in, &version) || version < 1 || version > kSnapshotVersion ||
      !GetVarint64(&in, &applied_index_) || (version >= 4 && !GetVarint64(&in, &clock_ms_)) ||
      !GetVarint64(&in, &count)) {
    Clear();
    return Status::Corruption("state machine snapshot: bad header");
  }
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t client = 0;
    Session s;
    uint8_t result = 0;
    if (!GetVarint64(&in, &client) || !GetVarint64(&in, &s.seq) || !GetVarint64(&in, &s.index) ||
        !GetByte(&in, &result) || result > static_cast<uint8_t>(ApplyResult::kStaleSeq)) {
      Clear();
      return Status::Corruption("state machine snapshot: bad session");
    }
    s.result = static_cast<ApplyResult>(result);
    sessions_[client] = s;
    sessions_by_index_[s.index] = client;
  }
  if (!GetVarint64(&in, &count)) {
    Clear();
    return Status::Corruption("state machine snapshot: bad key count");
  }
  const uint64_t snapshot_index = applied_index_;
  for (uint64_t i = 0; i < count; ++i) {
    std::string_view key, value;
    KeyVersion v{snapshot_index, snapshot_index};
    uint64_t deadline_ms = 0;
    if (!GetLengthPrefixed(&in, &key) || !GetLengthPrefixed(&in, &value) ||
        (version >= 3 && (!GetVarint64(&in, &v.create_index) || !GetVarint64(&in, &v.mod_index))) ||
        (version >= 4 && !GetVarint64(&in, &deadline_ms))) {
      Clear();
      return Status::Corruption("state machine snapshot: truncated data");
    }
    if (v.create_index > v.mod_index || v.mod_index > snapshot_index) {
      Clear();
      return Status::Corruption("state machine snapshot: a key's version is past its index");
    }
    PutValue(key, value, v, deadline_ms);
  }
  if (version >= 2) {
    if (!GetVarint64(&in, &count)) {
      Clear();
      return Status::Corruption("state machine snapshot: bad member count");
    }
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t node = 0;
      std::string_view address;
      if (!GetVarint64(&in, &node) || !GetLengthPrefixed(&in, &address)) {
        Clear();
        return Status::Corruption("state machine snapshot: truncated members");
      }
      members_[node] = std::string(address);
    }
  }
  if (!in.empty()) {
    Clear();
    return Status::Corruption("state machine snapshot: trailing bytes");
  }
  return Status::OK();
}

}  // namespace kv
