// Store: a shard's keys in key order, each a Record (kv/record.h).
//
// A B-tree of record pointers (Abseil's btree_set): ordered iteration for
// scans at the speed of an array walk, and about 171 bytes per key for
// 15-byte keys and 100-byte values (1.5x the raw data), where an
// unordered_map of string pairs took 220 and had no order. Measured with
// bench/kv_map_bench.cc. Point lookups cost a tree descent (about 2 us at
// a million keys on the 2-core test machine against 1.2 us for the hash
// map): small beside a write's Raft round.
// Thread safety: none; one strand owns a store. The records it hands out
// may be held (RecordRef) and read on any thread.
#pragma once

#include <absl/container/btree_set.h>

#include <cstddef>
#include <memory>
#include <string_view>
#include <vector>

#include "kv/record.h"

namespace kv {

class Store {
 public:
  Store() = default;
  ~Store() { Clear(); }
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // The key's record, or nullptr.
  const Record* Find(std::string_view key) const;
  // Makes `r` the record of its key, taking over the caller's reference.
  // Returns the record it replaced (empty if none), with the store's
  // reference to it.
  RecordRef Put(Record* r);
  // False if the key is absent.
  bool Erase(std::string_view key);
  void Clear();

  size_t size() const { return index_.size(); }

  // Calls f(record) for each key >= start in key order while f returns true.
  template <typename F>
  void ForEachFrom(std::string_view start, F f) const {
    for (auto it = index_.lower_bound(start); it != index_.end() && f(*it->r); ++it) {
    }
  }

  // Every record in key order as of now, and what keeps them alive: a
  // point-in-time view that later writes do not change. The store keeps
  // each record it lets go of while `pin` (or an older view's) lives,
  // instead of a reference per record taken now: the view of a million
  // keys costs a million pointers copied from the index (a few ms), not a
  // million reference counts touched all over memory (measured: 35-115 ms,
  // holding up the shard's writes; bench/snapshot-stall).
  struct View {
    std::vector<const Record*> records;
    std::shared_ptr<const void> pin;
  };
  View TakeView() const;

 private:
  // What a view pins: the records the store let go of since it was taken
  // (until a newer view's pin takes over), and that newer pin, whose
  // records may be in this view too.
  struct Pin {
    std::vector<RecordRef> kept;
    std::shared_ptr<Pin> newer;
  };
  // Lets go of the store's reference to r: to the newest live pin, if any.
  void Release(Record* r);

  // An index entry. `r` may be swapped for a record of the same key (the
  // order does not change); btree_set hands its elements out const.
  struct Entry {
    mutable Record* r;
  };
  struct Less {
    using is_transparent = void;
    static std::string_view Key(const Entry& e) { return e.r->key(); }
    static std::string_view Key(std::string_view k) { return k; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return Key(a) < Key(b);
    }
  };

  absl::btree_set<Entry, Less> index_;
  // The newest view's pin. Taking a view is a read of the data, so a
  // const call may set it.
  mutable std::weak_ptr<Pin> pinned_;
};

}  // namespace kv
