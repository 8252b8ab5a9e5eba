// Scans: the range of keys a scan reads and the page it answers with,
// shared by the state machine, the client codec and the node.
// Thread safety: plain values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kv/record.h"

namespace kv {

// The most keys one scan page may ask for, and the default.
constexpr size_t kMaxScanLimit = 10000;
constexpr size_t kDefaultScanLimit = 1000;
// The bytes of keys and values a page holds at most (one key always fits).
constexpr size_t kMaxScanBytes = 4 << 20;

// The keys a scan reads: [start, end), or from start on when end is absent.
struct ScanSpec {
  std::string start;
  std::optional<std::string> end;
  size_t limit = kDefaultScanLimit;  // keys per page, at least 1
  size_t max_bytes = kMaxScanBytes;  // of keys and values per page
  bool keys_only = false;            // leave the values out
};
// The range of the keys that start with `prefix` (every key for an empty one).
inline ScanSpec PrefixRange(std::string_view prefix) {
  ScanSpec spec;
  spec.start = std::string(prefix);
  // The first key after every key with the prefix: its last byte that is not
  // 0xff, plus one, with what follows dropped. None: to the end.
  std::string end(prefix);
  while (!end.empty() && static_cast<uint8_t>(end.back()) == 0xff) end.pop_back();
  if (!end.empty()) {
    end.back() = static_cast<char>(static_cast<uint8_t>(end.back()) + 1);
    spec.end = std::move(end);
  }
  return spec;
}

struct ScannedKey {
  std::string key;
  std::string value;  // empty for keys_only
  KeyVersion version;
  uint64_t ttl_ms = 0;  // ms left before the key expires; 0: it never does
};

// One page of a scan, in key order.
struct ScanPage {
  std::vector<ScannedKey> kvs;
  bool more = false;       // the range holds keys after the last one here
  std::string next;        // more: the start of the next page
  bool keys_only = false;  // the values were left out
};

}  // namespace kv
