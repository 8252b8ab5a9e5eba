// Record: one key with its value, version and deadline, in a single immutable
// allocation that the live state and snapshot views share by reference
// count. A write never changes a record: it makes a new one and drops its
// reference to the old, which lives on while a view still holds it. So a
// view of the whole state costs a pointer per key, not a copy of the data.
// Thread safety: a record is immutable; Ref and Unref may run on any thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

namespace kv {

// A key's version: log indexes, so they only grow, and every replica agrees
// on them. A key deleted and written again starts a new create_index.
struct KeyVersion {
  uint64_t create_index = 0;  // the write that created the key
  uint64_t mod_index = 0;     // the write that last changed it
};

class Record {
 public:
  // A new record with one reference, the caller's. deadline_ms: when the
  // key expires (ms since the Unix epoch, the leader's clock); 0: never.
  static Record* Make(std::string_view key, std::string_view value, KeyVersion version,
                      uint64_t deadline_ms = 0);
  Record(const Record&) = delete;
  Record& operator=(const Record&) = delete;

  void Ref() const { refs_.fetch_add(1, std::memory_order_relaxed); }
  // Frees the record when this was the last reference.
  void Unref() const;

  std::string_view key() const { return {bytes(), key_size_}; }
  std::string_view value() const { return {bytes() + key_size_, value_size_}; }
  const KeyVersion& version() const { return version_; }
  uint64_t deadline_ms() const { return deadline_ms_; }
  // Whether the key's deadline is at or before now_ms.
  bool ExpiredAt(uint64_t now_ms) const { return deadline_ms_ != 0 && deadline_ms_ <= now_ms; }

 private:
  Record(uint32_t key_size, uint32_t value_size, KeyVersion version, uint64_t deadline_ms)
      : key_size_(key_size),
        value_size_(value_size),
        version_(version),
        deadline_ms_(deadline_ms) {}
  ~Record() = default;
  // The key's bytes, then the value's, follow the object in its allocation.
  const char* bytes() const { return reinterpret_cast<const char*>(this + 1); }

  mutable std::atomic<uint32_t> refs_{1};
  const uint32_t key_size_;
  const uint32_t value_size_;
  const KeyVersion version_;
  const uint64_t deadline_ms_;
};

// An owning reference to a record (or to none).
class RecordRef {
 public:
  RecordRef() = default;
  // Takes over one reference the caller holds.
  explicit RecordRef(const Record* adopted) : r_(adopted) {}
  RecordRef(const RecordRef& o) : r_(o.r_) {
    if (r_ != nullptr) r_->Ref();
  }
  RecordRef(RecordRef&& o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
  RecordRef& operator=(RecordRef o) noexcept {
    std::swap(r_, o.r_);
    return *this;
  }
  ~RecordRef() {
    if (r_ != nullptr) r_->Unref();
  }
  const Record* get() const { return r_; }
  const Record* operator->() const { return r_; }

 private:
  const Record* r_ = nullptr;
};

}  // namespace kv
