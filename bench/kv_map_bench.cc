// kv_map_bench: which in-memory map should hold a shard's keys and values.
//
// Compares candidate layouts for the state machine's key -> value map at a
// realistic size (default 1,000,000 keys "key%012llu", 15 bytes, inserted in
// random order, with 100-byte values). Every candidate except the baseline
// carries the per-key metadata upcoming features need: create_index and
// mod_index (log indexes) and a lease id (0: none).
//
//   unordered  std::unordered_map<std::string, std::string>: the map before
//              src/kv/store.h (no order, no metadata). Baseline.
//   std_map    std::map<std::string, Entry>.
//   btree      absl::btree_map<std::string, Entry>.
//   compact    one heap block per pair (header + key bytes + value bytes) in
//              an absl::btree_set of pointers, looked up by string_view.
//   hash_btree the same blocks, indexed twice: an absl::flat_hash_set for
//              point operations and an absl::btree_set for order.
//
// Per candidate ("NAME/..."):
//   memory        builds the map; reports RSS growth per key (/proc/self/statm),
//                 heap bytes in use per key (mallinfo2), map RSS / raw bytes and
//                 the process's total RSS. Registered first so that it runs
//                 first: run each candidate in its own process (see below) so
//                 that no other map's freed memory is reused.
//   get           point get of a random existing key, value copied out.
//   put_overwrite overwrite of a random existing key (same value size).
//   insert_erase  insert of a random absent key, then its erase (one op pair).
//   scan1000      1000 consecutive keys from a random start (ordered maps).
//   ordered_iter  all keys in order (unordered maps: gather and sort first).
//   serialize     every pair appended length-prefixed to one std::string
//                 (reused), in the map's own order (what a snapshot does).
//
// Usage: kv_map_bench [--keys=N] [--key_len=L] [--value_len=V] [benchmark flags]
//   memory, one process per NAME: kv_map_bench --benchmark_filter='^NAME/memory'
//   latency, all candidates interleaved (fairer on a noisy machine):
//     kv_map_bench --benchmark_repetitions=8 --benchmark_enable_random_interleaving=true
//       --benchmark_filter='/(get|put_overwrite|insert_erase|scan1000|ordered_iter|serialize)$'
// Key numbers are even, so that "number + 1" gives an absent key of the same
// length that sorts among the present ones (for insert_erase). Not a test:
// ctest never runs it.

#include <absl/container/btree_map.h>
#include <absl/container/btree_set.h>
#include <absl/container/flat_hash_set.h>
#include <absl/hash/hash.h>
#include <absl/types/compare.h>
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

// ---------------------------------------------------------------------------
// Workload: keys, values and the order they are used in.

size_t g_keys = 1000000;
size_t g_key_len = 15;  // "key" + zero-padded decimal digits
size_t g_value_len = 100;

// Keys live in flat arrays (no allocation per key), so that the harness adds
// little to the RSS and reading the next probe key costs no cache miss.
class Workload {
 public:
  Workload() {
    std::vector<uint64_t> order(g_keys);
    for (size_t i = 0; i < g_keys; ++i) order[i] = i;
    std::mt19937_64 rng(42);
    std::shuffle(order.begin(), order.end(), rng);
    insert_keys_ = Flatten(order);
    std::shuffle(order.begin(), order.end(), rng);
    probe_keys_ = Flatten(order);
    pattern_.resize(g_value_len + 256);
    for (char& c : pattern_) c = static_cast<char>('a' + rng() % 26);
  }

  size_t size() const { return g_keys; }
  // Keys in insertion order, and in an independent random order for probes.
  std::string_view insert_key(size_t i) const { return Key(insert_keys_, i); }
  std::string_view probe_key(size_t i) const { return Key(probe_keys_, i); }
  // A 100-byte value; `salt` varies its content.
  std::string_view value(size_t salt) const {
    return std::string_view(pattern_.data() + salt % 256, g_value_len);
  }
  size_t harness_bytes() const {
    return insert_keys_.capacity() + probe_keys_.capacity() + pattern_.capacity();
  }
  uint64_t raw_bytes() const { return g_keys * (g_key_len + g_value_len); }

 private:
  static std::string_view Key(const std::vector<char>& keys, size_t i) {
    return std::string_view(keys.data() + i * g_key_len, g_key_len);
  }
  static std::vector<char> Flatten(const std::vector<uint64_t>& order) {
    std::vector<char> out(order.size() * g_key_len);
    for (size_t i = 0; i < order.size(); ++i) {
      char* k = out.data() + i * g_key_len;
      std::memcpy(k, "key", 3);
      uint64_t n = order[i] * 2;  // even: see the header comment
      for (size_t d = g_key_len; d > 3; --d, n /= 10) k[d - 1] = static_cast<char>('0' + n % 10);
    }
    return out;
  }

  std::vector<char> insert_keys_;
  std::vector<char> probe_keys_;
  std::vector<char> pattern_;
};

const Workload& W() {
  static const Workload* w = new Workload();
  return *w;
}

// ---------------------------------------------------------------------------
// Memory probes.

size_t RssBytes() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return static_cast<size_t>(resident) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// Bytes handed out by malloc (chunk sizes, so its per-chunk overhead counts).
size_t HeapBytes() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

// The snapshot encoding: varint length, then the bytes.
void AppendLengthPrefixed(std::string* out, std::string_view bytes) {
  char buf[10];
  size_t n = 0;
  uint64_t v = bytes.size();
  while (v >= 0x80) {
    buf[n++] = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  out->append(buf, n);
  out->append(bytes.data(), bytes.size());
}

// ---------------------------------------------------------------------------
// Candidates. Each has the same interface:
//   Put(key, value, index)    insert or overwrite; index is the log index
//   Get(key, &out)            copies the value out; false if absent
//   Erase(key)                false if absent
//   ForEach(fn)               every (key, value), in the map's own order
//   ForEachOrdered(fn)        every (key, value), in key order
//   Scan(start, limit, fn)    up to `limit` pairs from the first key >= start
//                             (only where kOrdered)

// Per-key metadata the upcoming features need.
struct Meta {
  uint64_t create_index = 0;
  uint64_t mod_index = 0;
  uint64_t lease_id = 0;  // 0: no lease
};

struct Entry {
  std::string value;
  Meta meta;
};

// (a) Today's map: no order, no metadata. Heterogeneous lookup in
// std::unordered_map is C++20, so a lookup builds a std::string, as
// StateMachine::Get does (no allocation while the key fits the SSO buffer).
class UnorderedMapStore {
 public:
  static constexpr bool kOrdered = false;

  void Put(std::string_view key, std::string_view value, uint64_t /*index*/) {
    map_[std::string(key)].assign(value.data(), value.size());
  }
  bool Get(std::string_view key, std::string* out) const {
    auto it = map_.find(std::string(key));
    if (it == map_.end()) return false;
    out->assign(it->second);
    return true;
  }
  bool Erase(std::string_view key) { return map_.erase(std::string(key)) != 0; }
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (const auto& [key, value] : map_) fn(std::string_view(key), std::string_view(value));
  }
  template <typename Fn>
  void ForEachOrdered(Fn&& fn) const {
    std::vector<const std::pair<const std::string, std::string>*> sorted;
    sorted.reserve(map_.size());
    for (const auto& kv : map_) sorted.push_back(&kv);
    std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->first < b->first; });
    for (const auto* kv : sorted) fn(std::string_view(kv->first), std::string_view(kv->second));
  }
  template <typename Fn>
  void Scan(std::string_view, size_t, Fn&&) const {}

 private:
  std::unordered_map<std::string, std::string> map_;
};

// (b), (c) An ordered map of std::string -> Entry; Map is std::map with
// std::less<> or absl::btree_map (both look up by string_view). The key fits
// the std::string's SSO buffer up to 15 bytes; longer keys take a second
// allocation.
template <typename Map>
class OrderedMapStore {
 public:
  static constexpr bool kOrdered = true;

  void Put(std::string_view key, std::string_view value, uint64_t index) {
    auto it = map_.lower_bound(key);
    if (it != map_.end() && it->first == key) {
      it->second.value.assign(value.data(), value.size());
      it->second.meta.mod_index = index;
    } else {
      map_.emplace_hint(it, std::string(key), Entry{std::string(value), Meta{index, index, 0}});
    }
  }
  bool Get(std::string_view key, std::string* out) const {
    auto it = map_.find(key);
    if (it == map_.end()) return false;
    out->assign(it->second.value);
    return true;
  }
  bool Erase(std::string_view key) {
    auto it = map_.find(key);
    if (it == map_.end()) return false;
    map_.erase(it);
    return true;
  }
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (const auto& [key, entry] : map_) fn(std::string_view(key), std::string_view(entry.value));
  }
  template <typename Fn>
  void ForEachOrdered(Fn&& fn) const {
    ForEach(fn);
  }
  template <typename Fn>
  void Scan(std::string_view start, size_t limit, Fn&& fn) const {
    for (auto it = map_.lower_bound(start); it != map_.end() && limit > 0; ++it, --limit) {
      fn(std::string_view(it->first), std::string_view(it->second.value));
    }
  }

 private:
  Map map_;
};

// absl::btree_map's default comparator for std::string looks up by
// absl::string_view, which Debian's Abseil (ABSL_OPTION_USE_STD_STRING_VIEW 0)
// builds as its own type, not std::string_view. This one takes
// std::string_view and, like the default, compares three-way.
absl::weak_ordering ThreeWay(std::string_view a, std::string_view b) {
  const int c = a.compare(b);
  return c < 0 ? absl::weak_ordering::less
               : (c > 0 ? absl::weak_ordering::greater : absl::weak_ordering::equivalent);
}

struct StringCompare {
  using is_transparent = void;
  absl::weak_ordering operator()(std::string_view a, std::string_view b) const {
    return ThreeWay(a, b);
  }
};

using StdMapStore = OrderedMapStore<std::map<std::string, Entry, std::less<>>>;
using BtreeMapStore = OrderedMapStore<absl::btree_map<std::string, Entry, StringCompare>>;

// (d), (e) One allocation per pair: this header, then the key bytes, then the
// value bytes. 32 bytes of header; a 15 + 100 byte pair takes a 160-byte
// malloc chunk.
struct Record {
  Meta meta;
  uint32_t key_size;
  uint32_t value_size;

  std::string_view key() const { return {bytes(), key_size}; }
  std::string_view value() const { return {bytes() + key_size, value_size}; }

  static Record* Make(std::string_view key, std::string_view value, const Meta& meta) {
    void* mem = ::operator new(sizeof(Record) + key.size() + value.size());
    auto* r = new (mem)
        Record{meta, static_cast<uint32_t>(key.size()), static_cast<uint32_t>(value.size())};
    std::memcpy(r->bytes(), key.data(), key.size());
    std::memcpy(r->bytes() + key.size(), value.data(), value.size());
    return r;
  }
  static void Free(Record* r) { ::operator delete(r); }

  // Same-size values are written in place; otherwise a new record with the
  // same key and metadata replaces this one (which is freed).
  static Record* Update(Record* r, std::string_view value, uint64_t index) {
    if (value.size() == r->value_size) {
      std::memcpy(r->bytes() + r->key_size, value.data(), value.size());
      r->meta.mod_index = index;
      return r;
    }
    Meta meta = r->meta;
    meta.mod_index = index;
    Record* fresh = Make(r->key(), value, meta);
    Free(r);
    return fresh;
  }

 private:
  char* bytes() { return reinterpret_cast<char*>(this + 1); }
  const char* bytes() const { return reinterpret_cast<const char*>(this + 1); }
};
static_assert(sizeof(Record) == 32, "Record header");

// A set element: the record pointer. Mutable, so that a record can be replaced
// by one with the same key in place (the element's position does not change).
struct Slot {
  mutable Record* rec;
};

// Orders slots by key, and looks them up by string_view (is_transparent). A
// three-way result (absl::weak_ordering) lets the B-tree compare each key once.
struct SlotCompare {
  using is_transparent = void;
  static std::string_view KeyOf(const Slot& s) { return s.rec->key(); }
  static std::string_view KeyOf(std::string_view k) { return k; }
  template <typename A, typename B>
  absl::weak_ordering operator()(const A& a, const B& b) const {
    return ThreeWay(KeyOf(a), KeyOf(b));
  }
};

struct SlotHash {
  using is_transparent = void;
  size_t operator()(std::string_view k) const { return absl::Hash<std::string_view>{}(k); }
  size_t operator()(const Slot& s) const { return (*this)(s.rec->key()); }
};

struct SlotEq {
  using is_transparent = void;
  static std::string_view KeyOf(const Slot& s) { return s.rec->key(); }
  static std::string_view KeyOf(std::string_view k) { return k; }
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return KeyOf(a) == KeyOf(b);
  }
};

// (d) Records in a B-tree of pointers: 8 bytes per key in the tree, but each
// comparison on the way down reads a record (a likely cache miss).
class CompactStore {
 public:
  static constexpr bool kOrdered = true;

  CompactStore() = default;
  CompactStore(const CompactStore&) = delete;
  CompactStore& operator=(const CompactStore&) = delete;
  ~CompactStore() {
    for (const Slot& s : set_) Record::Free(s.rec);
  }

  void Put(std::string_view key, std::string_view value, uint64_t index) {
    auto it = set_.lower_bound(key);
    if (it != set_.end() && it->rec->key() == key) {
      it->rec = Record::Update(it->rec, value, index);
    } else {
      set_.insert(it, Slot{Record::Make(key, value, Meta{index, index, 0})});
    }
  }
  bool Get(std::string_view key, std::string* out) const {
    auto it = set_.find(key);
    if (it == set_.end()) return false;
    const std::string_view v = it->rec->value();
    out->assign(v.data(), v.size());
    return true;
  }
  bool Erase(std::string_view key) {
    auto it = set_.find(key);
    if (it == set_.end()) return false;
    Record* rec = it->rec;
    set_.erase(it);
    Record::Free(rec);
    return true;
  }
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (const Slot& s : set_) fn(s.rec->key(), s.rec->value());
  }
  template <typename Fn>
  void ForEachOrdered(Fn&& fn) const {
    ForEach(fn);
  }
  template <typename Fn>
  void Scan(std::string_view start, size_t limit, Fn&& fn) const {
    for (auto it = set_.lower_bound(start); it != set_.end() && limit > 0; ++it, --limit) {
      fn(it->rec->key(), it->rec->value());
    }
  }

 private:
  absl::btree_set<Slot, SlotCompare> set_;
};

// (e) The same records, found by hash for point operations and kept in a
// B-tree of pointers for order. Inserts and erases update both indexes.
class HashBtreeStore {
 public:
  static constexpr bool kOrdered = true;

  HashBtreeStore() = default;
  HashBtreeStore(const HashBtreeStore&) = delete;
  HashBtreeStore& operator=(const HashBtreeStore&) = delete;
  ~HashBtreeStore() {
    for (const Slot& s : hash_) Record::Free(s.rec);
  }

  void Put(std::string_view key, std::string_view value, uint64_t index) {
    auto it = hash_.find(key);
    if (it != hash_.end()) {
      Record* old = it->rec;
      Record* rec = Record::Update(old, value, index);
      if (rec != old) {  // replaced: repoint the ordered index too
        it->rec = rec;
        order_.find(key)->rec = rec;
      }
      return;
    }
    Record* rec = Record::Make(key, value, Meta{index, index, 0});
    hash_.insert(Slot{rec});
    order_.insert(Slot{rec});
  }
  bool Get(std::string_view key, std::string* out) const {
    auto it = hash_.find(key);
    if (it == hash_.end()) return false;
    const std::string_view v = it->rec->value();
    out->assign(v.data(), v.size());
    return true;
  }
  bool Erase(std::string_view key) {
    auto it = hash_.find(key);
    if (it == hash_.end()) return false;
    Record* rec = it->rec;
    hash_.erase(it);
    order_.erase(key);
    Record::Free(rec);
    return true;
  }
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (const Slot& s : order_) fn(s.rec->key(), s.rec->value());
  }
  template <typename Fn>
  void ForEachOrdered(Fn&& fn) const {
    ForEach(fn);
  }
  template <typename Fn>
  void Scan(std::string_view start, size_t limit, Fn&& fn) const {
    for (auto it = order_.lower_bound(start); it != order_.end() && limit > 0; ++it, --limit) {
      fn(it->rec->key(), it->rec->value());
    }
  }

 private:
  absl::flat_hash_set<Slot, SlotHash, SlotEq> hash_;
  absl::btree_set<Slot, SlotCompare> order_;
};

// ---------------------------------------------------------------------------
// Benchmarks, one set per candidate.

// The candidate's map, filled with the workload; built by the memory
// benchmark, or on first use.
template <typename Store>
std::unique_ptr<Store>& Shared() {
  static std::unique_ptr<Store> store;
  return store;
}

template <typename Store>
std::unique_ptr<Store> Build() {
  const Workload& w = W();
  auto store = std::make_unique<Store>();
  for (size_t i = 0; i < w.size(); ++i) store->Put(w.insert_key(i), w.value(i), i + 1);
  return store;
}

template <typename Store>
Store& Filled() {
  auto& store = Shared<Store>();
  if (!store) store = Build<Store>();
  return *store;
}

// Cheap use of a pair that reads both key and value memory.
inline uint64_t Touch(std::string_view key, std::string_view value) {
  return key.size() + value.size() + static_cast<uint8_t>(key.back()) +
         static_cast<uint8_t>(value.back());
}

template <typename Store>
void BM_Memory(benchmark::State& state) {
  const Workload& w = W();
  Shared<Store>().reset();
  const size_t rss0 = RssBytes();
  const size_t heap0 = HeapBytes();
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) Shared<Store>() = Build<Store>();
  const std::chrono::duration<double, std::nano> build = std::chrono::steady_clock::now() - start;
  const size_t rss1 = RssBytes();
  const size_t heap1 = HeapBytes();
  const double n = static_cast<double>(w.size());
  const double map_rss = static_cast<double>(rss1) - static_cast<double>(rss0);
  state.counters["rss_B_per_key"] = map_rss / n;
  state.counters["heap_B_per_key"] = (static_cast<double>(heap1) - static_cast<double>(heap0)) / n;
  state.counters["rss_per_raw"] = map_rss / static_cast<double>(w.raw_bytes());
  state.counters["total_rss_MB"] = static_cast<double>(rss1) / 1e6;
  state.counters["harness_MB"] = static_cast<double>(w.harness_bytes()) / 1e6;
  state.counters["build_ns_per_key"] = build.count() / n;
}

template <typename Store>
void BM_Get(benchmark::State& state) {
  const Store& store = Filled<Store>();
  const Workload& w = W();
  std::string out;
  size_t i = 0;
  int64_t found = 0;
  for (auto _ : state) {
    found += store.Get(w.probe_key(i), &out);
    benchmark::DoNotOptimize(out.data());
    if (++i == w.size()) i = 0;
  }
  if (found != state.iterations()) state.SkipWithError("a key was not found");
}

template <typename Store>
void BM_PutOverwrite(benchmark::State& state) {
  Store& store = Filled<Store>();
  const Workload& w = W();
  size_t i = 0;
  uint64_t index = w.size();
  for (auto _ : state) {
    store.Put(w.probe_key(i), w.value(index), index + 1);
    ++index;
    if (++i == w.size()) i = 0;
  }
}

template <typename Store>
void BM_InsertErase(benchmark::State& state) {
  Store& store = Filled<Store>();
  const Workload& w = W();
  char key[64];
  size_t i = 0;
  int64_t erased = 0;
  uint64_t index = 2 * w.size();
  for (auto _ : state) {
    // An even key number + 1: absent, and sorted right after a present key.
    const std::string_view present = w.probe_key(i);
    std::memcpy(key, present.data(), present.size());
    key[present.size() - 1] += 1;
    const std::string_view absent(key, present.size());
    store.Put(absent, w.value(i), ++index);
    erased += store.Erase(absent);
    if (++i == w.size()) i = 0;
  }
  if (erased != state.iterations()) state.SkipWithError("an inserted key was not erased");
}

template <typename Store>
void BM_Scan1000(benchmark::State& state) {
  const Store& store = Filled<Store>();
  const Workload& w = W();
  size_t i = 0;
  uint64_t sum = 0;
  for (auto _ : state) {
    store.Scan(w.probe_key(i), 1000,
               [&](std::string_view k, std::string_view v) { sum += Touch(k, v); });
    if (++i == w.size()) i = 0;
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations() * 1000);
}

template <typename Store>
void BM_OrderedIter(benchmark::State& state) {
  const Store& store = Filled<Store>();
  uint64_t sum = 0;
  for (auto _ : state) {
    store.ForEachOrdered([&](std::string_view k, std::string_view v) { sum += Touch(k, v); });
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(W().size()));
}

template <typename Store>
void BM_Serialize(benchmark::State& state) {
  const Store& store = Filled<Store>();
  auto serialize = [&store](std::string* out) {
    out->clear();
    store.ForEach([out](std::string_view k, std::string_view v) {
      AppendLengthPrefixed(out, k);
      AppendLengthPrefixed(out, v);
    });
  };
  // One untimed pass first, and the buffer is reused: the figure is the map's
  // iteration and the encoding. Growing a fresh std::string costs reallocation
  // and page faults, the same for every candidate (and slow on VMs).
  std::string out;
  serialize(&out);
  for (auto _ : state) {
    serialize(&out);
    benchmark::DoNotOptimize(out.data());
  }
  const size_t bytes = out.size();
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(W().size()));
}

template <typename Store>
void Register(const std::string& name) {
  // Memory first, from a clean start: one run, whatever --benchmark_repetitions says.
  benchmark::RegisterBenchmark((name + "/memory").c_str(), BM_Memory<Store>)
      ->Iterations(1)
      ->Repetitions(1)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark((name + "/get").c_str(), BM_Get<Store>);
  benchmark::RegisterBenchmark((name + "/put_overwrite").c_str(), BM_PutOverwrite<Store>);
  benchmark::RegisterBenchmark((name + "/insert_erase").c_str(), BM_InsertErase<Store>);
  if (Store::kOrdered) {
    benchmark::RegisterBenchmark((name + "/scan1000").c_str(), BM_Scan1000<Store>)
        ->Unit(benchmark::kMicrosecond);
  }
  benchmark::RegisterBenchmark((name + "/ordered_iter").c_str(), BM_OrderedIter<Store>)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark((name + "/serialize").c_str(), BM_Serialize<Store>)
      ->Unit(benchmark::kMillisecond);
}

// Takes --keys, --key_len and --value_len out of argv; leaves the rest for
// Google Benchmark.
bool ParseFlags(int* argc, char** argv) {
  int kept = 1;
  for (int i = 1; i < *argc; ++i) {
    const std::string_view arg = argv[i];
    auto value_of = [&](std::string_view flag, size_t* out) {
      if (arg.substr(0, flag.size()) != flag) return false;
      *out = std::strtoull(argv[i] + flag.size(), nullptr, 10);
      return true;
    };
    if (!value_of("--keys=", &g_keys) && !value_of("--key_len=", &g_key_len) &&
        !value_of("--value_len=", &g_value_len)) {
      argv[kept++] = argv[i];
    }
  }
  *argc = kept;
  // Even key numbers up to 2 * keys must fit the digits; scans need 1000 keys.
  double room = 1;
  for (size_t d = 3; d < g_key_len && room <= 1e19; ++d) room *= 10;
  if (g_key_len < 4 || g_key_len > 63 || g_keys < 1000 || 2.0 * g_keys > room) {
    std::fprintf(stderr, "kv_map_bench: need --keys >= 1000 and 2 * keys < 10^(key_len - 3)\n");
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (!ParseFlags(&argc, argv)) return 2;
  Register<UnorderedMapStore>("unordered");
  Register<StdMapStore>("std_map");
  Register<BtreeMapStore>("btree");
  Register<CompactStore>("compact");
  Register<HashBtreeStore>("hash_btree");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("keys", std::to_string(g_keys));
  benchmark::AddCustomContext("key_len", std::to_string(g_key_len));
  benchmark::AddCustomContext("value_len", std::to_string(g_value_len));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
