#include "kvcheck/checker.h"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
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
  bool info = false;       // outcome unknown: optional, never returns
  int32_t arg = kAbsent;   // put/cas: the value written
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
  if (op.outcome == Outcome::kFail) return false;  // did not happen
  if (op.outcome == Outcome::kInfo && op.kind == OpKind::kGet) return false;  // no effect
  return true;
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
// Open addressing over a flat pool of bitsets.
class Memo {
 public:
  explicit Memo(size_t words) : words_(words), slots_(1024, 0) {}

  // Returns true if (bits, state) was not in the memo, and adds it.
  bool Insert(uint64_t hash, int32_t state, const uint64_t* bits) {
    if ((count_ + 1) * 2 > slots_.size()) Grow();
    const size_t mask = slots_.size() - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
      const uint32_t s = slots_[i];
      if (s == 0) {
        slots_[i] = static_cast<uint32_t>(count_ + 1);
        hashes_.push_back(hash);
        states_.push_back(state);
        pool_.insert(pool_.end(), bits, bits + words_);
        count_++;
        return true;
      }
      const size_t e = s - 1;
      if (hashes_[e] == hash && states_[e] == state &&
          std::equal(bits, bits + words_, pool_.begin() + e * words_)) {
        return false;
      }
    }
  }

  size_t size() const { return count_; }
  size_t bytes() const {
    return pool_.capacity() * 8 + hashes_.capacity() * 8 + states_.capacity() * 4 +
           slots_.capacity() * 4;
  }

 private:
  void Grow() {
    std::vector<uint32_t> slots(slots_.size() * 2, 0);
    const size_t mask = slots.size() - 1;
    for (size_t e = 0; e < count_; e++) {
      size_t i = hashes_[e] & mask;
      while (slots[i] != 0) i = (i + 1) & mask;
      slots[i] = static_cast<uint32_t>(e + 1);
    }
    slots_.swap(slots);
  }

  size_t words_;
  size_t count_ = 0;
  std::vector<uint32_t> slots_;  // 0 = empty, else entry + 1
  std::vector<uint64_t> hashes_;
  std::vector<int32_t> states_;
  std::vector<uint64_t> pool_;
};

struct Limits {
  uint64_t max_steps = 0;
  bool has_deadline = false;
  Clock::time_point deadline;
  size_t max_memo_bytes = 0;
};

struct SearchResult {
  Verdict verdict = Verdict::kLinearizable;
  std::string reason;  // why kUnknown
  uint64_t steps = 0;
  size_t memo_entries = 0;
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
SearchResult Search(const std::vector<SearchOp>& ops, int32_t init, const Limits& limits,
                    bool want_failure_point) {
  SearchResult r;
  const size_t n = ops.size();
  if (n == 0) return r;

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

  const size_t words = (n + 63) / 64;
  std::vector<uint64_t> bits(words, 0);
  std::vector<uint64_t> zobrist(n);
  for (size_t i = 0; i < n; i++) zobrist[i] = SplitMix64(i * 0x100000001B3ull + 17);
  uint64_t bits_hash = 0;
  auto full_hash = [&](int32_t state) {
    return bits_hash ^ SplitMix64(static_cast<uint64_t>(static_cast<int64_t>(state)) + 0x51ull);
  };
  Memo memo(words);

  struct Frame {
    int32_t call;
    int32_t state;  // before the op
  };
  std::vector<Frame> stack;
  stack.reserve(n);
  int32_t state = init;
  size_t remaining = finite;
  size_t linearized_finite = 0;
  int32_t entry = next[head];

  auto finish = [&](Verdict v, std::string reason) {
    r.verdict = v;
    r.reason = std::move(reason);
    r.memo_entries = memo.size();
    return r;
  };

  while (true) {
    if (remaining == 0) return finish(Verdict::kLinearizable, "");
    assert(entry >= 0);  // a return entry always remains while remaining > 0
    r.steps++;
    if ((r.steps & 1023) == 0) {
      if (limits.max_steps != 0 && r.steps > limits.max_steps) {
        return finish(Verdict::kUnknown, "step budget of " + std::to_string(limits.max_steps) +
                                             " exhausted");
      }
      if (limits.has_deadline && Clock::now() > limits.deadline) {
        return finish(Verdict::kUnknown, "timed out");
      }
      if (limits.max_memo_bytes != 0 && memo.bytes() > limits.max_memo_bytes) {
        return finish(Verdict::kUnknown, "memory budget exhausted");
      }
    }
    if ((entry & 1) == 0) {
      const size_t i = static_cast<size_t>(entry >> 1);
      int32_t next_state;
      if (Apply(ops[i], state, &next_state)) {
        bits[i / 64] |= uint64_t{1} << (i % 64);
        bits_hash ^= zobrist[i];
        if (memo.Insert(full_hash(next_state), next_state, bits.data())) {
          stack.push_back(Frame{entry, state});
          state = next_state;
          if (!ops[i].info) {
            remaining--;
            linearized_finite++;
          }
          lift(entry);
          entry = next[head];
          continue;
        }
        bits[i / 64] &= ~(uint64_t{1} << (i % 64));
        bits_hash ^= zobrist[i];
      }
      entry = next[entry];
      continue;
    }
    // A return entry: its op was not placed before it returned. Record the
    // deepest such point, then backtrack.
    if (want_failure_point && (!r.have_best || linearized_finite > r.best_depth)) {
      r.have_best = true;
      r.best_depth = linearized_finite;
      r.best_state = state;
      r.stuck = static_cast<size_t>(entry >> 1);
      r.tail.clear();
      for (size_t k = stack.size() > kTailLength ? stack.size() - kTailLength : 0;
           k < stack.size(); k++) {
        r.tail.push_back(static_cast<size_t>(stack[k].call >> 1));
      }
      r.pending.clear();
      for (int32_t e = next[head]; e >= 0 && e != entry; e = next[e]) {
        if ((e & 1) == 0) r.pending.push_back(static_cast<size_t>(e >> 1));
      }
    }
    if (stack.empty()) return finish(Verdict::kNotLinearizable, "");
    const Frame f = stack.back();
    stack.pop_back();
    const size_t i = static_cast<size_t>(f.call >> 1);
    state = f.state;
    bits[i / 64] &= ~(uint64_t{1} << (i % 64));
    bits_hash ^= zobrist[i];
    if (!ops[i].info) {
      remaining++;
      linearized_finite--;
    }
    unlift(f.call);
    entry = next[f.call];
  }
}

Limits MakeLimits(const CheckOptions& o, Clock::time_point start) {
  Limits l;
  l.max_steps = o.max_steps;
  l.max_memo_bytes = o.max_memo_bytes;
  if (o.key_timeout_seconds > 0) {
    l.has_deadline = true;
    l.deadline = start + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(o.key_timeout_seconds));
  }
  return l;
}

// Looks for a small closed window of the key's history that is not
// linearizable from any value the key could hold before it (see
// Violation::witness for why that proves the violation). ops: the key's
// checked operations. Returns indices into History::ops, or empty.
std::vector<size_t> FindWitness(const History& h, std::vector<size_t> ops, size_t stuck,
                                const Limits& limits) {
  std::sort(ops.begin(), ops.end(), [&](size_t a, size_t b) {
    return h.ops[a].invoke_time < h.ops[b].invoke_time;
  });
  auto ret_of = [&](size_t i) {
    return h.ops[i].outcome == Outcome::kInfo ? kNever : h.ops[i].return_time;
  };
  // The ops intersecting [t1, t2], after widening it until no op outside
  // straddles its edges.
  auto window = [&](int64_t* t1, int64_t* t2) {
    std::vector<size_t> w;
    while (true) {
      w.clear();
      int64_t lo = *t1, hi = *t2;
      for (size_t i : ops) {
        const int64_t inv = h.ops[i].invoke_time, ret = ret_of(i);
        if (inv > *t2 || ret < *t1) continue;
        w.push_back(i);
        if (ret != kNever) {
          lo = std::min(lo, inv);
          hi = std::max(hi, ret);
        }
      }
      if (lo == *t1 && hi == *t2) return w;
      *t1 = lo;
      *t2 = hi;
    }
  };
  const size_t kMaxWindow = 400;
  const int kMaxChecks = 300;
  int checks = 0;
  bool out_of_budget = false;
  // Whether window w (spanning [t1, ...]) is non-linearizable from every
  // possible starting value.
  auto is_witness = [&](const std::vector<size_t>& w, int64_t t1) {
    checks++;
    Interner values;
    std::vector<SearchOp> sops;
    for (size_t i : w) sops.push_back(MakeSearchOp(h, i, &values));
    const int32_t other = static_cast<int32_t>(values.size());
    std::vector<int32_t> starts{kAbsent};
    for (size_t i : ops) {
      const Operation& op = h.ops[i];
      if (op.invoke_time >= t1) break;
      if (op.kind == OpKind::kPut || op.kind == OpKind::kCas) {
        starts.push_back(values.Find(op.value, other));
      }
    }
    std::sort(starts.begin(), starts.end());
    starts.erase(std::unique(starts.begin(), starts.end()), starts.end());
    for (int32_t s : starts) {
      SearchResult r = Search(sops, s, limits, false);
      if (r.verdict == Verdict::kUnknown) out_of_budget = true;
      if (r.verdict != Verdict::kNotLinearizable) return false;
    }
    return true;
  };

  int64_t t1 = h.ops[stuck].invoke_time;
  int64_t t2 = ret_of(stuck) == kNever ? t1 : ret_of(stuck);
  std::vector<size_t> w = window(&t1, &t2);
  bool found = false;
  bool backward = true;
  while (checks < kMaxChecks && !out_of_budget && w.size() <= kMaxWindow) {
    if (is_witness(w, t1)) {
      found = true;
      break;
    }
    // Widen by one operation, alternating directions.
    int64_t before = std::numeric_limits<int64_t>::min();  // latest return before t1
    int64_t after = kNever;                                 // earliest invoke after t2
    for (size_t i : ops) {
      const int64_t ret = ret_of(i);
      if (ret != kNever && ret < t1) before = std::max(before, ret);
      if (h.ops[i].invoke_time > t2) after = std::min(after, h.ops[i].invoke_time);
    }
    const bool can_back = before != std::numeric_limits<int64_t>::min();
    const bool can_forward = after != kNever;
    if (!can_back && !can_forward) break;
    if ((backward && can_back) || !can_forward) {
      t1 = before;
    } else {
      t2 = after;
    }
    backward = !backward;
    w = window(&t1, &t2);
  }
  if (!found) return {};
  // Shrink from either edge while it stays a witness.
  bool shrunk = true;
  while (shrunk && checks < kMaxChecks && !out_of_budget) {
    shrunk = false;
    for (int side = 0; side < 2 && checks < kMaxChecks; side++) {
      int64_t n1 = t1, n2 = t2;
      if (side == 0) {
        // Drop the earliest-returning op at the front edge.
        int64_t first_ret = kNever;
        for (size_t i : w) first_ret = std::min(first_ret, ret_of(i));
        if (first_ret == kNever || first_ret + 1 > t2) continue;
        n1 = first_ret + 1;
      } else {
        int64_t last_inv = std::numeric_limits<int64_t>::min();
        for (size_t i : w) last_inv = std::max(last_inv, h.ops[i].invoke_time);
        if (last_inv - 1 < t1) continue;
        n2 = last_inv - 1;
      }
      // Only the real-time ops may move the edges; recompute without
      // widening past the new edge.
      std::vector<size_t> cand = window(&n1, &n2);
      if (cand.size() >= w.size() || cand.empty()) continue;
      if (is_witness(cand, n1)) {
        w = std::move(cand);
        t1 = n1;
        t2 = n2;
        shrunk = true;
      }
    }
  }
  return w;
}

struct KeyWork {
  std::string key;
  std::vector<size_t> ops;  // all ops on the key, file order
};

}  // namespace

Verdict CheckKey(const History& history, const std::vector<size_t>& ops,
                 const CheckOptions& options, KeyResult* result, Violation* violation) {
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
    if (IsChecked(op)) sops.push_back(MakeSearchOp(history, i, &values));
  }
  kr.checked = sops.size();
  SearchResult r = Search(sops, kAbsent, MakeLimits(options, start), violation != nullptr);
  kr.verdict = r.verdict;
  kr.steps = r.steps;
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
  }
  kr.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return kr.verdict;
}

CheckResult CheckHistory(const History& history, const CheckOptions& options) {
  const Clock::time_point start = Clock::now();
  std::map<std::string, std::vector<size_t>> by_key;
  for (size_t i = 0; i < history.ops.size(); i++) by_key[history.ops[i].key].push_back(i);
  std::vector<KeyWork> work;
  work.reserve(by_key.size());
  for (auto& e : by_key) work.push_back(KeyWork{e.first, std::move(e.second)});
  // Biggest keys first so parallel workers finish together.
  std::vector<size_t> order(work.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return work[a].ops.size() > work[b].ops.size(); });

  CheckResult result;
  result.keys.resize(work.size());
  std::vector<Violation> violations(work.size());
  std::atomic<size_t> next{0};
  auto worker = [&] {
    while (true) {
      const size_t k = next.fetch_add(1);
      if (k >= order.size()) return;
      const size_t w = order[k];
      CheckKey(history, work[w].ops, options, &result.keys[w], &violations[w]);
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
    if (options.explain) {
      Violation& v = *result.violation;
      std::vector<size_t> ops;
      for (const KeyWork& kw : work) {
        if (kw.key != v.key) continue;
        for (size_t i : kw.ops) {
          if (IsChecked(history.ops[i])) ops.push_back(i);
        }
      }
      CheckOptions wo = options;
      wo.key_timeout_seconds =
          options.key_timeout_seconds > 0 ? std::min(options.key_timeout_seconds, 10.0) : 10.0;
      v.witness = FindWitness(history, ops, v.stuck_op, MakeLimits(wo, Clock::now()));
    }
  } else if (unknown) {
    result.verdict = Verdict::kUnknown;
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace check
}  // namespace kv
