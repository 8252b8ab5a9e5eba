#include "kv/record.h"

#include <cstring>
#include <limits>
#include <new>

#include "common/logging.h"

namespace kv {

Record* Record::Make(std::string_view key, std::string_view value, KeyVersion version,
                     uint64_t deadline_ms) {
  KV_CHECK(key.size() <= std::numeric_limits<uint32_t>::max() &&
           value.size() <= std::numeric_limits<uint32_t>::max())
      << "a record of " << key.size() << " + " << value.size() << " bytes";
  void* memory = ::operator new(sizeof(Record) + key.size() + value.size());
  auto* r = new (memory) Record(static_cast<uint32_t>(key.size()),
                                static_cast<uint32_t>(value.size()), version, deadline_ms);
  char* bytes = reinterpret_cast<char*>(r + 1);
  if (!key.empty()) std::memcpy(bytes, key.data(), key.size());
  if (!value.empty()) std::memcpy(bytes + key.size(), value.data(), value.size());
  return r;
}

void Record::Unref() const {
  // Release our writes to the record, and acquire everyone else's before
  // the last one frees it (as std::shared_ptr does).
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    const Record* r = this;
    r->~Record();
    ::operator delete(const_cast<Record*>(r));
  }
}

}  // namespace kv
