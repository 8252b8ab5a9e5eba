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
  RecordRef old(std::exchange(it->r, r));
  if (auto pin = pinned_.lock()) pin->kept.push_back(old);
  return old;
}

bool Store::Erase(std::string_view key) {
  auto it = index_.find(key);
  if (it == index_.end()) return false;
  Record* old = it->r;
  index_.erase(it);
  Release(old);
  return true;
}

void Store::Clear() {
  for (const Entry& e : index_) Release(e.r);
  index_.clear();
}

void Store::Release(Record* r) {
  if (auto pin = pinned_.lock()) {
    pin->kept.emplace_back(r);  // adopts the store's reference
  } else {
    r->Unref();
  }
}

Store::View Store::TakeView() const {
  View view;
  view.records.reserve(index_.size());
  for (const Entry& e : index_) view.records.push_back(e.r);
  auto pin = std::make_shared<Pin>();
  // A live older view may hold what is let go of from now on too: its pin
  // keeps this one (and so what it keeps) alive.
  if (auto older = pinned_.lock()) older->newer = pin;
  pinned_ = pin;
  view.pin = std::move(pin);
  return view;
}

}  // namespace kv
