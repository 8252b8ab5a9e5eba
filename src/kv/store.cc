#include "kv/store.h"

#include <iterator>
#include <utility>

namespace kv {

const Record* Store::Find(std::string_view key) const {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : it->r;
}

RecordRef Store::Put(Record* r) {
  // Keys in ascending order (a snapshot being restored) go at the end
  // without a descent from the root.
  if (index_.empty() || std::prev(index_.end())->r->key() < r->key()) {
    index_.insert(index_.end(), Entry{r});
    return RecordRef();
  }
  auto [it, inserted] = index_.insert(Entry{r});
  if (inserted) return RecordRef();
  return RecordRef(std::exchange(it->r, r));
}

bool Store::Erase(std::string_view key) {
  auto it = index_.find(key);
  if (it == index_.end()) return false;
  Record* old = it->r;
  index_.erase(it);
  old->Unref();
  return true;
}

void Store::Clear() {
  for (const Entry& e : index_) e.r->Unref();
  index_.clear();
}

std::vector<RecordRef> Store::View() const {
  std::vector<RecordRef> out;
  out.reserve(index_.size());
  for (const Entry& e : index_) {
    e.r->Ref();
    out.emplace_back(e.r);
  }
  return out;
}

}  // namespace kv
