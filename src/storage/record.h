// WAL records: what one node's write-ahead log holds, and how each record is
// framed on disk.
//
// Frame layout (integers little endian):
//   crc32c : 4 bytes, over the type, length and payload bytes that follow
//   length : 4 bytes, payload length
//   type   : 1 byte, a RecordType (never 0, so zeroed space is no record)
//   payload: `length` bytes, laid out per type (see record.cc)
// Entry, hard state and snapshot records carry the Raft group they belong to;
// segment headers and write starts are the WAL's own.
// Thread safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "raft/types.h"

namespace kv::storage {

enum class RecordType : uint8_t {
  kSegmentHeader = 1,  // first record of every segment: format version, sequence number
  kEntry = 2,          // one Raft log entry of a group
  kHardState = 3,      // a group's term, vote and commit
  kSnapshot = 4,       // a group's snapshot point (the data lives in a snapshot file)
  kWriteStart = 5,     // first record of every write the WAL issues: its sequence number
};

constexpr size_t kFrameHeaderSize = 9;
// Payloads larger than this are refused when written and taken for damage
// when read.
constexpr uint32_t kMaxPayloadSize = 256u << 20;

struct Record {
  RecordType type = RecordType::kEntry;
  raft::GroupId group = 0;
  raft::Entry entry;            // kEntry
  raft::HardState hard_state;   // kHardState
  raft::SnapshotMeta snapshot;  // kSnapshot
  // kSnapshot: true when the snapshot replaced the group's whole log (one
  // received from a leader); false when it only released the entries up to
  // snapshot.index (compaction).
  bool replace_log = false;
  uint64_t seq = 0;  // kSegmentHeader: the segment's number; kWriteStart: the write's
  // kSegmentHeader: bytes of checkpoint records that follow the header, so
  // recovery can tell a whole checkpoint from one cut short.
  uint64_t checkpoint_bytes = 0;

  static Record Entry(raft::GroupId group, raft::Entry entry);
  static Record HardState(raft::GroupId group, const raft::HardState& hs);
  static Record Snapshot(raft::GroupId group, const raft::SnapshotMeta& meta, bool replace_log);
  static Record SegmentHeader(uint64_t seq, uint64_t checkpoint_bytes);
  static Record WriteStart(uint64_t seq);
};

// Appends the framed record to *out.
void EncodeRecord(const Record& record, std::string* out);

enum class FrameStatus {
  kOk,    // a whole frame with a good checksum
  kZero,  // the frame header is all zeros: preallocated space never written
  kBad,   // anything else: torn, damaged, or not a frame at all
};

// Checks the frame starting at buf[offset]. On kOk sets *frame_size to the
// size of the whole frame and *type and *payload to its parts (payload points
// into buf).
FrameStatus CheckFrame(std::string_view buf, size_t offset, size_t* frame_size, RecordType* type,
                       std::string_view* payload);

// The payload length a frame header claims. REQUIRES: header.size() >= kFrameHeaderSize.
uint32_t PayloadLength(std::string_view header);

// Decodes a payload whose frame checked out. Corruption if it does not parse
// (a record from a newer format, or a bug: the checksum matched).
Status DecodeRecord(RecordType type, std::string_view payload, Record* out);

}  // namespace kv::storage
