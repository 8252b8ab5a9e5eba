#include "kvcheck/checker.h"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <cstddef>
#include <map>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace kv {
namespace check {

const char* VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kLinearizable:
      return "linearizable";
    case Verdict::kNotLinearizable:
      return "NOT linearizable";
    case Verdict::kUnknown:
      return "unknown";
  }
  return "?";
}

namespace {

using Clock = std::chrono::steady_clock;

constexpr int32_t kAbsent = -1;

// An operation as the search sees it: values interned to small integers.
struct SearchOp {
  OpKind kind = OpKind::kGet;
  bool info = false;  // outcome unknown: optional, never returns
  // Witness windows only: may instead be skipped (no effect) when its
  // return is reached unplaced, as it may have taken effect before the
  // window.
  bool skippable = false;
  int32_t arg = kAbsent;  // put/cas: the value written
  int32_t expected = kAbsent;
  int32_t result = kAbsent;  // get: the value read
  int64_t invoke = 0;
  int64_t ret = kNever;
  size_t index = 0;  // in History::ops
};

// Maps values to dense ids; kAbsent stands for "no value".
class Interner {
 public:
  int32_t Id(const std::optional<std::string>& v) {
    if (!v) return kAbsent;
    auto it = ids_.find(*v);
    if (it != ids_.end()) return it->second;
    const int32_t id = static_cast<int32_t>(values_.size());
    ids_.emplace(*v, id);
    values_.push_back(*v);
    return id;
  }
  // Returns the id of v if interned, else fallback.
  int32_t Find(const std::optional<std::string>& v, int32_t fallback) const {
    if (!v) return kAbsent;
    auto it = ids_.find(*v);
    return it == ids_.end() ? fallback : it->second;
  }
  size_t size() const { return values_.size(); }
  std::optional<std::string> Value(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= values_.size()) return std::nullopt;
    return values_[id];
  }

 private:
  std::unordered_map<std::string, int32_t> ids_;
  std::vector<std::string> values_;
};

// Whether op.outcome/kind means the search must consider it at all.
bool IsChecked(const Operation& op) {
  // Checked as the operations it stands for on single keys (history.h).
  if (op.kind == OpKind::kScan || op.kind == OpKind::kTxn) return false;
  if (op.outcome == Outcome::kFail) return false;                             // did not happen
  if (op.outcome == Outcome::kInfo && op.kind == OpKind::kGet) return false;  // no effect
  return true;
}

// The operations of one key the search must place: those IsChecked, less
// unknown-outcome writes of a value no operation observes (no get returns
// it, no cas expects it). Dropping those keeps the verdict: such a write can
// only ever be placed right before another write or at the very end, where
// leaving it out changes nothing, and leaving it out is always allowed.
// With unique values per write, as kvload writes, this removes most
// timed-out writes, which would otherwise multiply the search.
std::vector<size_t> OpsToSearch(const History& h, const std::vector<size_t>& key_ops) {
  std::unordered_set<std::string> observed;
  bool absent_observed = false;
  auto observe = [&](const std::optional<std::string>& v) {
    if (v) {
      observed.insert(*v);
    } else {
      absent_observed = true;
    }
  };
  for (size_t i : key_ops) {
    const Operation& op = h.ops[i];
    if (!IsChecked(op)) continue;
    if (op.kind == OpKind::kGet) observe(op.result);
    if (op.kind == OpKind::kCas) observe(op.expected);
  }
  std::vector<size_t> out;
  for (size_t i : key_ops) {
    const Operation& op = h.ops[i];
    if (!IsChecked(op)) continue;
    if (op.outcome == Outcome::kInfo) {
      if (op.kind == OpKind::kDelete && !absent_observed) continue;
      if ((op.kind == OpKind::kPut || op.kind == OpKind::kCas) &&
          (op.value ? observed.count(*op.value) == 0 : !absent_observed)) {
        continue;
      }
    }
    out.push_back(i);
  }
  return out;
}

SearchOp MakeSearchOp(const History& h, size_t i, Interner* values) {
  const Operation& op = h.ops[i];
  SearchOp s;
  s.kind = op.kind;
  s.info = op.outcome == Outcome::kInfo;
  s.invoke = op.invoke_time;
  s.ret = s.info ? kNever : op.return_time;
  s.index = i;
  if (op.kind == OpKind::kPut || op.kind == OpKind::kCas) s.arg = values->Id(op.value);
  if (op.kind == OpKind::kCas) s.expected = values->Id(op.expected);
  if (op.kind == OpKind::kGet) s.result = values->Id(op.result);
  return s;
}

// The register model: applies op to state, or returns false if op cannot
// take effect (with its recorded result) in that state.
inline bool Apply(const SearchOp& op, int32_t state, int32_t* next) {
  switch (op.kind) {
    case OpKind::kPut:
      *next = op.arg;
      return true;
    case OpKind::kDelete:
      *next = kAbsent;
      return true;
    case OpKind::kGet:
      *next = state;
      return state == op.result;
    case OpKind::kCas:
      if (state != op.expected) return false;
      *next = op.arg;
      return true;
    case OpKind::kScan:
    case OpKind::kTxn:
      return false;  // never searched: see IsChecked
  }
  return false;
}

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The memo of configurations explored: (linearized set, register value).
// Open addressing over a flat pool of variable-length encoded sets.
class Memo {
 public:
  Memo() : slots_(1024, 0) {}

  // Returns true if (key, state) was not in the memo, and adds it.
  bool Insert(uint64_t hash, int32_t state, const std::vector<uint64_t>& key) {
    if ((entries_.size() + 1) * 2 > slots_.size()) Grow();
    const size_t mask = slots_.size() - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
      const uint32_t s = slots_[i];
      if (s == 0) {
        slots_[i] = static_cast<uint32_t>(entries_.size() + 1);
        entries_.push_back(Entry{hash, pool_.size(), static_cast<uint32_t>(key.size()), state});
        pool_.insert(pool_.end(), key.begin(), key.end());
        return true;
      }
      const Entry& e = entries_[s - 1];
      if (e.hash == hash && e.state == state && e.len == key.size() &&
          std::equal(key.begin(), key.end(),
                     pool_.begin() + static_cast<std::ptrdiff_t>(e.offset))) {
        return false;
      }
    }
  }

  // Forgets everything. The memo only prunes repeated work, so the search
  // stays correct after a Clear; it may redo some of it.
  void Clear() {
    entries_ = std::vector<Entry>();
    pool_ = std::vector<uint64_t>();
    slots_.assign(1024, 0);
  }

  size_t size() const { return entries_.size(); }
  size_t bytes() const {
    return pool_.capacity() * 8 + entries_.capacity() * sizeof(Entry) + slots_.capacity() * 4;
  }

 private:
  struct Entry {
    uint64_t hash;
    size_t offset;  // in pool_
    uint32_t len;
    int32_t state;
  };

  void Grow() {
    std::vector<uint32_t> slots(slots_.size() * 2, 0);
    const size_t mask = slots.size() - 1;
    for (size_t e = 0; e < entries_.size(); e++) {
      size_t i = entries_[e].hash & mask;
      while (slots[i] != 0) i = (i + 1) & mask;
      slots[i] = static_cast<uint32_t>(e + 1);
    }
    slots_.swap(slots);
  }

  std::vector<uint32_t> slots_;  // 0 = empty, else entry + 1
  std::vector<Entry> entries_;
  std::vector<uint64_t> pool_;
};

// The set of linearized operations, encoded compactly for the memo.
// Operations with a known return are numbered first, in invoke order, so the
// search keeps a dense run of linearized ones below a moving frontier: the
// memo key stores only the words from the first not-full word to the last
// non-zero one, then the bits of the unknown-outcome operations.
class LinearizedSet {
 public:
  LinearizedSet(size_t finite, size_t info)
      : finite_(finite), fwords_((finite + 63) / 64), bits_(fwords_ + (info + 63) / 64, 0) {}

  // i < finite: the i-th finite op; else info op i - finite.
  void Set(size_t i) {
    const size_t b = Bit(i);
    bits_[b / 64] |= uint64_t{1} << (b % 64);
    if (i >= finite_) return;
    const size_t w = b / 64;
    if (w >= hi_) hi_ = w + 1;
    while (lo_ < fwords_ && bits_[lo_] == FullMask(lo_)) lo_++;
  }
  void Clear(size_t i) {
    const size_t b = Bit(i);
    bits_[b / 64] &= ~(uint64_t{1} << (b % 64));
    if (i >= finite_) return;
    const size_t w = b / 64;
    if (w < lo_) lo_ = w;
    while (hi_ > 0 && bits_[hi_ - 1] == 0) hi_--;
  }
  void EncodeKey(std::vector<uint64_t>* key) const {
    key->clear();
    const size_t hi = std::max(hi_, lo_);
    key->push_back(static_cast<uint64_t>(lo_) | (static_cast<uint64_t>(hi) << 32));
    key->insert(key->end(), bits_.begin() + static_cast<std::ptrdiff_t>(lo_),
                bits_.begin() + static_cast<std::ptrdiff_t>(hi));
    key->insert(key->end(), bits_.begin() + static_cast<std::ptrdiff_t>(fwords_), bits_.end());
  }

 private:
  size_t Bit(size_t i) const { return i < finite_ ? i : fwords_ * 64 + (i - finite_); }
  uint64_t FullMask(size_t w) const {
    const size_t rem = finite_ - w * 64;
    return rem >= 64 ? ~uint64_t{0} : (uint64_t{1} << rem) - 1;
  }

  size_t finite_;
  size_t fwords_;
  std::vector<uint64_t> bits_;
  size_t lo_ = 0;  // first finite word not all ones
  size_t hi_ = 0;  // one past the last non-zero finite word
};

struct Limits {
  uint64_t max_steps = 0;
  bool has_deadline = false;
  Clock::time_point deadline;
  size_t max_memo_bytes = 0;
};

struct SearchResult {
  Verdict verdict = Verdict::kLinearizable;
  std::string reason;         // why kUnknown
  bool out_of_steps = false;  // kUnknown because of Limits::max_steps
  uint64_t steps = 0;
  size_t memo_entries = 0;
  uint64_t memo_resets = 0;
  // Deepest failure point (indices into the SearchOp vector).
  size_t best_depth = 0;
  bool have_best = false;
  int32_t best_state = kAbsent;
  size_t stuck = 0;
  std::vector<size_t> tail;     // last linearized ops, oldest first
  std::vector<size_t> pending;  // not yet linearized, invoked before stuck returned
};

constexpr size_t kTailLength = 6;

// Lowe's just-in-time linearization search with memoization, from state
// init. ops need not be sorted.
SearchResult Search(const std::vector<SearchOp>& input, int32_t init, const Limits& limits,
                    bool want_failure_point) {
  SearchResult r;
  const size_t n = input.size();
  if (n == 0) return r;
  // Renumber: finite ops in invoke order, then the unknown-outcome ones
  // (see LinearizedSet). number[k] is the input index of op k.
  std::vector<size_t> number(n);
  for (size_t i = 0; i < n; i++) number[i] = i;
  std::stable_sort(number.begin(), number.end(), [&](size_t a, size_t b) {
    if (input[a].info != input[b].info) return !input[a].info;
    return input[a].invoke < input[b].invoke;
  });
  std::vector<SearchOp> ops(n);
  for (size_t k = 0; k < n; k++) ops[k] = input[number[k]];

  // The entry list: a call entry per op, a return entry per op with a known
  // return. Entry 2i is op i's call, 2i+1 its return.
  std::vector<uint32_t> order;
  order.reserve(2 * n);
  size_t finite = 0;
  for (size_t i = 0; i < n; i++) {
    order.push_back(static_cast<uint32_t>(2 * i));
    if (!ops[i].info) {
      order.push_back(static_cast<uint32_t>(2 * i + 1));
      finite++;
    }
  }
  auto time_of = [&](uint32_t e) { return (e & 1) ? ops[e >> 1].ret : ops[e >> 1].invoke; };
  // Equal times count as concurrent: calls sort before returns.
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    const int64_t ta = time_of(a), tb = time_of(b);
    if (ta != tb) return ta < tb;
    if ((a & 1) != (b & 1)) return (a & 1) < (b & 1);
    return a < b;
  });
  const int32_t head = static_cast<int32_t>(2 * n);
  std::vector<int32_t> next(2 * n + 1, -1), prev(2 * n + 1, -1);
  int32_t last = head;
  for (uint32_t e : order) {
    next[last] = static_cast<int32_t>(e);
    prev[e] = last;
    last = static_cast<int32_t>(e);
  }
  next[last] = -1;

  auto lift = [&](int32_t call) {
    next[prev[call]] = next[call];
    if (next[call] >= 0) prev[next[call]] = prev[call];
    if (!ops[call >> 1].info) {
      const int32_t ret = call + 1;
      next[prev[ret]] = next[ret];
      if (next[ret] >= 0) prev[next[ret]] = prev[ret];
    }
  };
  auto unlift = [&](int32_t call) {
    if (!ops[call >> 1].info) {
      const int32_t ret = call + 1;
      next[prev[ret]] = ret;
      if (next[ret] >= 0) prev[next[ret]] = ret;
    }
    next[prev[call]] = call;
    if (next[call] >= 0) prev[next[call]] = call;
  };

  LinearizedSet linearized(finite, n - finite);
  // Symmetry: unknown-outcome ops doing the same thing are interchangeable,
  // except that one invoked earlier is available earlier. So they are
  // placed in invoke order only: twin[k] is the previous such op (or -1),
  // which must be placed before op k may be.
  std::vector<int32_t> twin(n, -1);
  {
    std::map<std::tuple<int, int32_t, int32_t>, int32_t> previous;
    for (size_t k = finite; k < n; k++) {  // info ops, in invoke order
      const auto sig = std::make_tuple(static_cast<int>(ops[k].kind), ops[k].arg,
                                       ops[k].kind == OpKind::kCas ? ops[k].expected : 0);
      auto it = previous.find(sig);
      if (it != previous.end()) twin[k] = it->second;
      previous[sig] = static_cast<int32_t>(k);
    }
  }
  std::vector<char> placed(n, 0);
  std::vector<uint64_t> key;
  std::vector<uint64_t> zobrist(n);
  for (size_t i = 0; i < n; i++) zobrist[i] = SplitMix64(i * 0x100000001B3ull + 17);
  uint64_t bits_hash = 0;
  auto full_hash = [&](int32_t state) {
    return bits_hash ^ SplitMix64(static_cast<uint64_t>(static_cast<int64_t>(state)) + 0x51ull);
  };
  Memo memo;

  struct Frame {
    int32_t call;
    int32_t state;  // before the op
    bool forced;    // placed by the read rule below: no alternatives to try
  };
  std::vector<Frame> stack;
  stack.reserve(n);
  int32_t state = init;
  size_t remaining = finite;
  size_t linearized_finite = 0;
  int32_t entry = next[head];
  bool restart = true;  // the list changed: look for a read to place first

  auto finish = [&](Verdict v, std::string reason) {
    r.verdict = v;
    r.reason = std::move(reason);
    r.memo_entries = memo.size();
    return r;
  };
  // Pruning: a value is doomed when an unplaced op must still observe it
  // (an acknowledged get returning it or cas expecting it), the key does not
  // hold it now, and no unplaced op writes it. A configuration with a doomed
  // value has no completion. With unique values per write (as kvload
  // writes), this cuts a wrong order of concurrent writes at once.
  // Counts are indexed by value id + 1 (absent is 0).
  int32_t max_id = init;
  for (const SearchOp& op : ops) {
    max_id = std::max({max_id, op.arg, op.expected, op.result});
  }
  std::vector<int32_t> writers(static_cast<size_t>(max_id) + 2, 0);
  std::vector<int32_t> readers(static_cast<size_t>(max_id) + 2, 0);
  auto written = [&](const SearchOp& op) { return op.kind == OpKind::kDelete ? kAbsent : op.arg; };
  auto read_value = [&](const SearchOp& op) {
    if (op.kind == OpKind::kGet) return op.result;
    if (op.kind == OpKind::kCas && !op.info && !op.skippable) return op.expected;
    return kAbsent - 1;  // observes nothing
  };
  for (const SearchOp& op : ops) {
    if (op.kind != OpKind::kGet) writers[static_cast<size_t>(written(op) + 1)]++;
    const int32_t rv = read_value(op);
    if (rv >= kAbsent) readers[static_cast<size_t>(rv + 1)]++;
  }
  int64_t doomed = 0;
  auto is_doomed = [&](int32_t v) {
    return readers[static_cast<size_t>(v + 1)] > 0 && writers[static_cast<size_t>(v + 1)] == 0 &&
           state != v;
  };
  for (int32_t v = kAbsent; v <= max_id; v++) doomed += is_doomed(v);
  // Moves op i into (into = true) or out of the placed set, with the
  // register going to new_state.
  auto account = [&](const SearchOp& op, bool into, int32_t new_state) {
    const int32_t d = into ? -1 : 1;
    const int32_t wv = op.kind == OpKind::kGet ? kAbsent - 1 : written(op);
    const int32_t rv = read_value(op);
    const int32_t touched[4] = {wv, rv, state, new_state};
    for (int32_t v : touched) {
      if (v >= kAbsent) doomed -= is_doomed(v);
    }
    if (wv >= kAbsent) writers[static_cast<size_t>(wv + 1)] += d;
    if (rv >= kAbsent) readers[static_cast<size_t>(rv + 1)] += d;
    state = new_state;
    for (int32_t v : touched) {
      if (v >= kAbsent) doomed += is_doomed(v);
    }
    // A value listed twice above was counted twice both times: no drift.
  };

  // Places op `call` (already applied: next_state) if that leaves no value
  // doomed and its configuration is new to the memo. Returns whether it did.
  auto place = [&](int32_t call, int32_t next_state, bool forced) {
    const size_t i = static_cast<size_t>(call >> 1);
    const int32_t before = state;
    account(ops[i], true, next_state);
    if (doomed > 0) {
      account(ops[i], false, before);
      return false;
    }
    state = before;
    placed[i] = 1;
    linearized.Set(i);
    bits_hash ^= zobrist[i];
    linearized.EncodeKey(&key);
    if (!memo.Insert(full_hash(next_state), next_state, key)) {
      placed[i] = 0;
      linearized.Clear(i);
      bits_hash ^= zobrist[i];
      state = next_state;
      account(ops[i], false, before);
      return false;
    }
    stack.push_back(Frame{call, state, forced});
    state = next_state;
    if (!ops[i].info) {
      remaining--;
      linearized_finite++;
    }
    lift(call);
    entry = next[head];
    restart = true;
    return true;
  };
  // Undoes placements back to the last one that has alternatives left, and
  // continues after it. Returns false when there is none.
  auto backtrack = [&] {
    while (!stack.empty()) {
      const Frame f = stack.back();
      stack.pop_back();
      const size_t i = static_cast<size_t>(f.call >> 1);
      account(ops[i], false, f.state);
      placed[i] = 0;
      linearized.Clear(i);
      bits_hash ^= zobrist[i];
      if (!ops[i].info) {
        remaining++;
        linearized_finite--;
      }
      unlift(f.call);
      if (!f.forced) {
        entry = next[f.call];
        return true;
      }
    }
    return false;
  };

  while (true) {
    if (remaining == 0) return finish(Verdict::kLinearizable, "");
    assert(entry >= 0);  // a return entry always remains while remaining > 0
    r.steps++;
    if ((r.steps & 1023) == 0) {
      if (limits.max_steps != 0 && r.steps > limits.max_steps) {
        r.out_of_steps = true;
        return finish(Verdict::kUnknown,
                      "step budget of " + std::to_string(limits.max_steps) + " exhausted");
      }
      if (limits.has_deadline && Clock::now() > limits.deadline) {
        return finish(Verdict::kUnknown, "timed out");
      }
      if (limits.max_memo_bytes != 0 && memo.bytes() > limits.max_memo_bytes) {
        memo.Clear();
        r.memo_resets++;
      }
    }
    if (restart) {
      // Partial-order reduction: a get that may be placed now (it is
      // invoked before every unplaced op returned, and reads the current
      // value) can be placed first in any order that completes from here,
      // since it changes nothing and nothing must precede it. So place it
      // without trying alternatives. If that configuration failed before,
      // so does this one.
      restart = false;
      int32_t read = -1;
      for (int32_t e = next[head]; e >= 0 && (e & 1) == 0; e = next[e]) {
        const SearchOp& op = ops[static_cast<size_t>(e >> 1)];
        if (op.kind == OpKind::kGet && op.result == state) {
          read = e;
          break;
        }
      }
      if (read >= 0) {
        if (place(read, state, true)) continue;
        if (!backtrack()) return finish(Verdict::kNotLinearizable, "");
        continue;
      }
    }
    if ((entry & 1) == 0) {
      const size_t k = static_cast<size_t>(entry >> 1);
      int32_t next_state;
      if ((twin[k] < 0 || placed[static_cast<size_t>(twin[k])]) &&
          Apply(ops[k], state, &next_state) && place(entry, next_state, false)) {
        continue;
      }
      entry = next[entry];
      continue;
    }
    // A return entry: its op was not placed before it returned.
    if (ops[static_cast<size_t>(entry >> 1)].skippable) {
      // It may have taken effect before the window: skip it (no effect).
      if (place(entry - 1, state, true)) continue;
      if (!backtrack()) return finish(Verdict::kNotLinearizable, "");
      continue;
    }
    // Record the deepest such point, then backtrack.
    if (want_failure_point && (!r.have_best || linearized_finite > r.best_depth)) {
      r.have_best = true;
      r.best_depth = linearized_finite;
      r.best_state = state;
      r.stuck = number[static_cast<size_t>(entry >> 1)];
      r.tail.clear();
      for (size_t k = stack.size() > kTailLength ? stack.size() - kTailLength : 0; k < stack.size();
           k++) {
        r.tail.push_back(number[static_cast<size_t>(stack[k].call >> 1)]);
      }
      r.pending.clear();
      for (int32_t e = next[head]; e >= 0 && e != entry; e = next[e]) {
        if ((e & 1) == 0) r.pending.push_back(number[static_cast<size_t>(e >> 1)]);
      }
    }
    if (!backtrack()) return finish(Verdict::kNotLinearizable, "");
  }
}

// The limits for one search started at start; check_deadline (if any)
// bounds the whole check.
Limits MakeLimits(const CheckOptions& o, Clock::time_point start,
                  std::optional<Clock::time_point> check_deadline) {
  Limits l;
  l.max_steps = o.max_steps;
  l.max_memo_bytes = o.max_memo_bytes;
  if (o.key_timeout_seconds > 0) {
    l.has_deadline = true;
    l.deadline = start + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(o.key_timeout_seconds));
  }
  if (check_deadline && (!l.has_deadline || *check_deadline < l.deadline)) {
    l.has_deadline = true;
    l.deadline = *check_deadline;
  }
  return l;
}

// A witness is a time window [t1, t2] of the key's history that no run of
// the register can explain. The operations that lie wholly inside it must
// take effect inside it, in real-time order; those overlapping an edge may
// take effect inside it (after their invoke, before their return if that
// is inside) or outside it; the key holds,
// at t1, absent or a value written by an operation invoked before t1. If no
// choice of these explains the window, the history is not linearizable:
// any linearization, cut at t1 and t2, would give one (the state at t1 was
// written by an op that took effect before t1, so was invoked before it).
// The check over-approximates what may happen at the edges, so a witness
// is always sound; widening a window keeps it a witness.
//
// FindWitness grows a window around op `stuck` (where the search got
// furthest) by doubling until it is a witness, then narrows each edge by
// binary search, and returns the window's operations (indices into
// History::ops; edge-overlapping reads are left out as they constrain
// nothing), or empty if none was found within the budget. ops: the key's
// operations the search places (OpsToSearch).
//
// Test hook: with probe set, only reports in *probe_result whether window
// [probe->first, probe->second] is a witness, and returns empty.
std::vector<size_t> FindWitness(const History& h, std::vector<size_t> ops, size_t stuck,
                                const Limits& limits, int64_t* begin, int64_t* end,
                                std::optional<std::pair<int64_t, int64_t>> probe = std::nullopt,
                                bool* probe_result = nullptr) {
  std::sort(ops.begin(), ops.end(),
            [&](size_t a, size_t b) { return h.ops[a].invoke_time < h.ops[b].invoke_time; });
  auto ret_of = [&](size_t i) {
    return h.ops[i].outcome == Outcome::kInfo ? kNever : h.ops[i].return_time;
  };
  std::vector<int64_t> times;
  for (size_t i : ops) {
    times.push_back(h.ops[i].invoke_time);
    if (ret_of(i) != kNever) times.push_back(ret_of(i));
  }
  std::sort(times.begin(), times.end());
  times.erase(std::unique(times.begin(), times.end()), times.end());
  auto time_index = [&](int64_t t) {
    return static_cast<size_t>(std::lower_bound(times.begin(), times.end(), t) - times.begin());
  };

  const size_t kMaxWindow = 2000;
  const int kMaxChecks = 120;
  Limits window_limits = limits;
  window_limits.max_steps = uint64_t{1} << 20;
  int checks = 0;
  bool out_of_budget = false;

  // An unknown-outcome write that is the only write of its value took
  // effect before any op observed that value returned. settled[i]: that
  // time for op i (kNever if not known), so windows after it can leave op i
  // out (its value is then a possible start). This keeps long-pending
  // unknown writes out of every later window.
  std::unordered_map<std::string, int> writers;
  std::unordered_map<std::string, int64_t> first_seen;
  for (size_t i : ops) {
    const Operation& op = h.ops[i];
    if ((op.kind == OpKind::kPut || op.kind == OpKind::kCas) && op.value) writers[*op.value]++;
    const std::optional<std::string>* seen = nullptr;
    if (op.kind == OpKind::kGet && op.outcome == Outcome::kOk) seen = &op.result;
    if (op.kind == OpKind::kCas && op.outcome == Outcome::kOk) seen = &op.expected;
    if (seen != nullptr && seen->has_value()) {
      auto [it, fresh] = first_seen.emplace(**seen, op.return_time);
      if (!fresh) it->second = std::min(it->second, op.return_time);
    }
  }
  std::unordered_map<size_t, int64_t> settled;
  for (size_t i : ops) {
    const Operation& op = h.ops[i];
    if (op.outcome != Outcome::kInfo || !op.value || writers[*op.value] != 1) continue;
    auto it = first_seen.find(*op.value);
    if (it != first_seen.end()) settled[i] = it->second;
  }

  // The operations of window [t1, t2], edge-overlapping reads left out.
  auto window = [&](int64_t t1, int64_t t2) {
    std::vector<size_t> w;
    for (size_t i : ops) {
      const Operation& op = h.ops[i];
      if (op.invoke_time > t2) break;
      if (ret_of(i) < t1) continue;
      if (op.outcome == Outcome::kInfo) {
        auto it = settled.find(i);
        if (it != settled.end() && it->second < t1) continue;
      }
      const bool inside = op.invoke_time >= t1 && ret_of(i) <= t2;
      if (!inside && op.kind == OpKind::kGet) continue;
      w.push_back(i);
    }
    return w;
  };
  auto is_witness = [&](int64_t t1, int64_t t2) {
    checks++;
    const std::vector<size_t> w = window(t1, t2);
    Interner values;
    std::vector<SearchOp> sops;
    for (size_t i : w) {
      SearchOp op = MakeSearchOp(h, i, &values);
      if (op.ret > t2) {
        op.info = true;  // may take effect inside, or after the window
        op.ret = kNever;
      } else if (op.invoke < t1) {
        op.skippable = true;  // inside before its return, or before the window
      }
      sops.push_back(op);
    }
    const int32_t other = static_cast<int32_t>(values.size());
    // Values the key may hold at t1, and whether each can come from an op
    // outside the window (else only from ops in it, taken out of the run).
    std::vector<int32_t> outside{kAbsent};
    std::vector<std::pair<int32_t, size_t>> inside;  // value, position in sops
    for (size_t i : ops) {
      const Operation& op = h.ops[i];
      if (op.invoke_time >= t1) break;
      if (op.kind != OpKind::kPut && op.kind != OpKind::kCas) continue;
      const int32_t v = values.Find(op.value, other);
      const auto pos = std::find(w.begin(), w.end(), i);
      if (pos == w.end()) {
        outside.push_back(v);
      } else {
        inside.emplace_back(v, static_cast<size_t>(pos - w.begin()));
      }
    }
    std::sort(outside.begin(), outside.end());
    outside.erase(std::unique(outside.begin(), outside.end()), outside.end());
    auto explains = [&](const std::vector<SearchOp>& run, int32_t start) {
      SearchResult r = Search(run, start, window_limits, false);
      if (r.verdict == Verdict::kUnknown) out_of_budget = true;
      return r.verdict != Verdict::kNotLinearizable;
    };
    for (int32_t v : outside) {
      if (explains(sops, v)) return false;
    }
    for (const auto& [v, pos] : inside) {
      if (std::binary_search(outside.begin(), outside.end(), v)) continue;
      std::vector<SearchOp> rest = sops;
      rest.erase(rest.begin() + static_cast<std::ptrdiff_t>(pos));
      if (explains(rest, v)) return false;
    }
    return true;
  };

  if (probe) {
    *probe_result = is_witness(probe->first, probe->second) && !out_of_budget;
    return {};
  }
  if (times.empty()) return {};
  const size_t s1 = time_index(h.ops[stuck].invoke_time);
  const size_t s2 = ret_of(stuck) == kNever ? times.size() - 1 : time_index(ret_of(stuck));
  // Grow: 0, 1, 2, 4, ... events beyond the stuck op on each side.
  size_t lo = s1, hi = s2;
  bool found = false;
  for (size_t grow = 0;; grow = grow == 0 ? 1 : grow * 2) {
    lo = s1 >= grow ? s1 - grow : 0;
    hi = std::min(times.size() - 1, s2 + grow);
    if (window(times[lo], times[hi]).size() > kMaxWindow) break;
    if (is_witness(times[lo], times[hi])) {
      found = true;
      break;
    }
    if (out_of_budget || checks >= kMaxChecks) break;
    if (lo == 0 && hi == times.size() - 1) break;
  }
  if (!found) return {};
  // Narrow each edge by binary search, keeping a witness.
  size_t a = lo, b = s1 > lo ? s1 : lo;  // the best lo is in [a, b]
  while (a < b && checks < kMaxChecks && !out_of_budget) {
    const size_t mid = a + (b - a + 1) / 2;
    if (mid <= hi && is_witness(times[mid], times[hi])) {
      a = mid;
    } else {
      b = mid - 1;
    }
  }
  lo = a;
  size_t c = std::max(lo, s2 < hi ? s2 : hi), d = hi;  // the best hi is in [c, d]
  while (c < d && checks < kMaxChecks && !out_of_budget) {
    const size_t mid = c + (d - c) / 2;
    if (is_witness(times[lo], times[mid])) {
      d = mid;
    } else {
      c = mid + 1;
    }
  }
  hi = d;
  // The narrowing is a heuristic; the answer is checked once more.
  if (!is_witness(times[lo], times[hi])) return {};
  *begin = times[lo];
  *end = times[hi];
  return window(times[lo], times[hi]);
}

struct KeyWork {
  std::string key;
  std::vector<size_t> ops;  // all ops on the key, file order
};

// CheckKey, giving up also at check_deadline (the whole check's).
Verdict CheckKeyUntil(const History& history, const std::vector<size_t>& ops,
                      const CheckOptions& options, std::optional<Clock::time_point> check_deadline,
                      KeyResult* result, Violation* violation) {
  const Clock::time_point start = Clock::now();
  KeyResult& kr = *result;
  kr = KeyResult();
  if (!ops.empty()) kr.key = history.ops[ops[0]].key;
  Interner values;
  std::vector<SearchOp> sops;
  for (size_t i : ops) {
    const Operation& op = history.ops[i];
    kr.ops++;
    if (op.outcome == Outcome::kOk) kr.ok++;
    if (op.outcome == Outcome::kFail) kr.fail++;
    if (op.outcome == Outcome::kInfo) kr.info++;
  }
  for (size_t i : OpsToSearch(history, ops)) sops.push_back(MakeSearchOp(history, i, &values));
  kr.checked = sops.size();
  const std::vector<size_t> searched = OpsToSearch(history, ops);
  // The search must exhaust every alternative before it can call a long
  // history non-linearizable, which can take very long. So it runs in
  // slices of growing step budgets; after each unfinished slice, a witness
  // search (sound on its own) looks around the furthest point reached, and
  // a witness settles the verdict early. Restarts cost at most a constant
  // factor.
  const Limits limits = MakeLimits(options, start, check_deadline);
  uint64_t slice = std::max<uint64_t>(options.first_slice_steps, 1024);
  std::vector<size_t> tried;
  std::vector<size_t> witness;
  int64_t witness_begin = 0, witness_end = 0;
  SearchResult r;
  while (true) {
    Limits l = limits;
    const bool sliced = limits.max_steps == 0 || limits.max_steps > slice;
    if (sliced) l.max_steps = slice;
    const uint64_t steps_before = kr.steps;
    r = Search(sops, kAbsent, l, true);
    kr.steps = steps_before + r.steps;
    kr.memo_resets += r.memo_resets;
    if (r.verdict != Verdict::kUnknown || !sliced || !r.out_of_steps) break;
    if (options.explain && r.have_best &&
        std::find(tried.begin(), tried.end(), r.stuck) == tried.end()) {
      tried.push_back(r.stuck);
      witness =
          FindWitness(history, searched, sops[r.stuck].index, limits, &witness_begin, &witness_end);
      if (!witness.empty()) {
        r.verdict = Verdict::kNotLinearizable;
        r.reason.clear();
        break;
      }
    }
    slice *= 4;
  }
  kr.verdict = r.verdict;
  kr.memo_entries = r.memo_entries;
  kr.unknown_reason = r.reason;
  if (r.verdict == Verdict::kNotLinearizable && violation != nullptr) {
    Violation& v = *violation;
    v = Violation();
    v.key = kr.key;
    v.linearized = r.best_depth;
    for (size_t i : r.tail) v.linearized_tail.push_back(sops[i].index);
    v.value_at_failure = values.Value(r.best_state);
    v.stuck_op = sops[r.stuck].index;
    for (size_t i : r.pending) v.pending.push_back(sops[i].index);
    v.witness = std::move(witness);
    v.witness_begin = witness_begin;
    v.witness_end = witness_end;
  }
  kr.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return kr.verdict;
}

}  // namespace

Verdict CheckKey(const History& history, const std::vector<size_t>& ops,
                 const CheckOptions& options, KeyResult* result, Violation* violation) {
  return CheckKeyUntil(history, ops, options, std::nullopt, result, violation);
}

bool IsWitnessWindowForTesting(const History& history, const std::vector<size_t>& ops,
                               int64_t begin, int64_t end) {
  int64_t b = 0, e = 0;
  bool result = false;
  FindWitness(history, OpsToSearch(history, ops), 0, Limits(), &b, &e, std::make_pair(begin, end),
              &result);
  return result;
}

CheckResult CheckHistory(const History& history, const CheckOptions& options) {
  const Clock::time_point start = Clock::now();
  std::optional<Clock::time_point> check_deadline;
  if (options.total_timeout_seconds > 0) {
    check_deadline = start + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(options.total_timeout_seconds));
  }
  std::map<std::string, std::vector<size_t>> by_key;
  CheckResult result;
  for (size_t i = 0; i < history.ops.size(); i++) {
    const Operation& op = history.ops[i];
    if (op.kind == OpKind::kScan || op.kind == OpKind::kTxn) {
      // Checked as the operations it stands for on single keys (history.h).
      (op.kind == OpKind::kScan ? result.scans : result.txns)++;
      continue;
    }
    if (op.parent != kNoParent && history.ops[op.parent].kind == OpKind::kTxn) {
      result.txn_ops++;
    } else if (op.parent != kNoParent) {
      result.scan_reads++;
      if (!op.result) result.scan_absent++;
    }
    by_key[op.key].push_back(i);
  }
  std::vector<KeyWork> work;
  work.reserve(by_key.size());
  for (auto& e : by_key) work.push_back(KeyWork{e.first, std::move(e.second)});
  // Biggest keys first so parallel workers finish together.
  std::vector<size_t> order(work.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return work[a].ops.size() > work[b].ops.size(); });

  result.keys.resize(work.size());
  std::vector<Violation> violations(work.size());
  std::atomic<size_t> next{0};
  auto worker = [&] {
    while (true) {
      const size_t k = next.fetch_add(1);
      if (k >= order.size()) return;
      const size_t w = order[k];
      CheckKeyUntil(history, work[w].ops, options, check_deadline, &result.keys[w], &violations[w]);
    }
  };
  const int jobs = std::max(1, std::min<int>(options.jobs, static_cast<int>(work.size())));
  if (jobs <= 1) {
    worker();
  } else {
    std::vector<std::thread> threads;
    for (int j = 0; j < jobs; j++) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
  }

  bool unknown = false;
  for (size_t w = 0; w < work.size(); w++) {
    const KeyResult& kr = result.keys[w];
    result.ops += kr.ops;
    result.checked += kr.checked;
    if (kr.verdict == Verdict::kUnknown) unknown = true;
    if (kr.verdict == Verdict::kNotLinearizable && !result.violation) {
      result.violation = std::move(violations[w]);
    }
  }
  if (result.violation) {
    result.verdict = Verdict::kNotLinearizable;
    if (options.explain && result.violation->witness.empty()) {
      Violation& v = *result.violation;
      std::vector<size_t> ops;
      for (const KeyWork& kw : work) {
        if (kw.key == v.key) ops = OpsToSearch(history, kw.ops);
      }
      CheckOptions wo = options;
      wo.key_timeout_seconds =
          options.key_timeout_seconds > 0 ? std::min(options.key_timeout_seconds, 10.0) : 10.0;
      v.witness = FindWitness(history, ops, v.stuck_op, MakeLimits(wo, Clock::now(), std::nullopt),
                              &v.witness_begin, &v.witness_end);
    }
  } else if (unknown) {
    result.verdict = Verdict::kUnknown;
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace check
}  // namespace kv
