#include "node/watch_hub.h"

#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace kv::node {

namespace {

using Clock = WatchHub::Clock;

// A state machine whose changes feed a hub, as the applier does.
struct Feed {
  explicit Feed(WatchLimits limits = {}) : hub(limits) {}
  void Apply(const Command& cmd) {
    bool dup = false;
    std::vector<Change> changes;
    sm.Apply(++index, cmd, &dup, nullptr, &changes);
    hub.Applied(index, &changes);
  }
  void Put(const std::string& key, const std::string& value) {
    Command c;
    c.op = OpType::kPut;
    c.key = key;
    c.value = value;
    Apply(c);
  }
  void Del(const std::string& key) {
    Command c;
    c.op = OpType::kDelete;
    c.key = key;
    Apply(c);
  }
  std::vector<WatchHub::Out> Deliver(bool room = true) {
    std::vector<WatchHub::Out> out;
    hub.Deliver(
        now, [room](uint64_t) { return room; }, &out);
    return out;
  }
  StateMachine sm;
  WatchHub hub;
  uint64_t index = 0;
  Clock::time_point now = Clock::now();
};

// "put k=v@3", "del k@4", "expire k@5".
std::string Show(const net::WatchEvent& e) {
  const char* types[] = {"put", "del", "expire"};
  return std::string(types[static_cast<int>(e.type)]) + " " + e.key +
         (e.has_value ? "=" + e.value : "") + "@" + std::to_string(e.index);
}

std::vector<std::string> Events(const std::vector<WatchHub::Out>& out, uint64_t handle) {
  std::vector<std::string> seen;
  for (const WatchHub::Out& o : out) {
    if (o.handle != handle) continue;
    for (const net::WatchEvent& e : o.reply.events) seen.push_back(Show(e));
  }
  return seen;
}

}  // namespace

TEST_CASE("A watch from now gets the changes in its range, in batches that chain") {
  Feed f;
  f.Put("a/1", "x");
  f.hub.Add(1, PrefixRange("a/"), 0);
  ScanSpec b_to_c;
  b_to_c.start = "b";
  b_to_c.end = "c";
  b_to_c.keys_only = true;
  f.hub.Add(2, b_to_c, 0);
  auto out = f.Deliver();
  // The first message of each, empty: the watch is on, from index 2.
  REQUIRE(out.size() == 2);
  for (const auto& o : out) {
    REQUIRE((o.reply.status == net::ReplyStatus::kOk && o.reply.after == 1 && o.reply.upto == 1 &&
             o.reply.events.empty()));
  }
  f.Put("a/2", "y");
  f.Put("b", "z");
  f.Put("ab", "no");
  f.Del("a/1");
  f.Put("c", "no");
  out = f.Deliver();
  REQUIRE(Events(out, 1) == std::vector<std::string>{"put a/2=y@2", "del a/1@5"});
  REQUIRE(Events(out, 2) == std::vector<std::string>{"put b@3"});
  for (const auto& o : out) REQUIRE((o.reply.after == 1 && o.reply.upto == 6));
  // Nothing new: no message, until the progress interval passes.
  REQUIRE(f.Deliver().empty());
  std::vector<WatchHub::Out> progress;
  f.hub.Progress(
      f.now + std::chrono::seconds(2), [](uint64_t) { return true; }, &progress);
  REQUIRE(progress.size() == 2);
  REQUIRE((progress[0].reply.after == 6 && progress[0].reply.upto == 6));
  // Removed: nothing more.
  REQUIRE(f.hub.Remove(1));
  REQUIRE_FALSE(f.hub.Remove(1));
  f.Put("a/3", "w");
  REQUIRE(f.Deliver().empty());
}

TEST_CASE("A watch from an older index reads the history, in batches of whole entries") {
  WatchLimits limits;
  limits.batch_events = 2;
  Feed f(limits);
  for (int i = 0; i < 5; ++i) f.Put("k" + std::to_string(i), "v");
  // A transaction: three changes at one index, never split between batches.
  Command txn;
  txn.op = OpType::kTxn;
  txn.success = {{TxnOp::Kind::kPut, "t1", "1", 0, 0},
                 {TxnOp::Kind::kPut, "t2", "2", 0, 0},
                 {TxnOp::Kind::kDelete, "k0", "", 0, 0}};
  f.Apply(txn);
  f.hub.Add(7, PrefixRange(""), 2);
  std::vector<std::string> all;
  uint64_t after = 1;
  for (int round = 0; round < 10 && all.size() < 7; ++round) {
    for (const auto& o : f.Deliver()) {
      REQUIRE(o.reply.after == after);
      after = o.reply.upto;
      for (const auto& e : o.reply.events) all.push_back(Show(e));
      // Every batch ends with a whole entry.
      if (!o.reply.events.empty()) REQUIRE(o.reply.events.back().index == o.reply.upto);
    }
  }
  REQUIRE(all == std::vector<std::string>{"put k1=v@2", "put k2=v@3", "put k3=v@4", "put k4=v@5",
                                          "put t1=1@6", "put t2=2@6", "del k0@6"});
  // Caught up: live from here.
  f.Put("k9", "v");
  REQUIRE(Events(f.Deliver(), 7) == std::vector<std::string>{"put k9=v@7"});
}

TEST_CASE("The history keeps whole entries up to its limits; older from_index is COMPACTED") {
  WatchLimits limits;
  limits.history_changes = 3;
  Feed f(limits);
  for (int i = 0; i < 5; ++i) f.Put("k", "v" + std::to_string(i));
  REQUIRE(f.hub.first_index() == 3);
  REQUIRE(f.hub.history_changes() == 3);
  f.hub.Add(1, PrefixRange(""), 2);
  f.hub.Add(2, PrefixRange(""), 3);
  auto out = f.Deliver();
  REQUIRE(out.size() == 2);
  REQUIRE(out[0].handle == 1);
  REQUIRE((out[0].last && out[0].reply.status == net::ReplyStatus::kCompacted &&
           out[0].reply.oldest == 3));
  REQUIRE(Events(out, 2) == std::vector<std::string>{"put k=v2@3", "put k=v3@4", "put k=v4@5"});
  REQUIRE(f.hub.watches() == 1);
  // By bytes too: a large value pushes the older entries out.
  WatchLimits small;
  small.history_bytes = 1000;
  Feed g(small);
  g.Put("a", "1");
  g.Put("b", std::string(900, 'x'));
  REQUIRE(g.hub.first_index() == 2);
  g.Put("c", std::string(900, 'x'));
  REQUIRE(g.hub.first_index() == 3);
}

TEST_CASE("A watcher without room pauses and resumes from the history without a gap") {
  WatchLimits limits;
  limits.history_changes = 10;
  Feed f(limits);
  f.hub.Add(1, PrefixRange("k"), 0);
  f.Deliver();
  f.Put("k1", "a");
  REQUIRE(f.Deliver(/*room=*/false).empty());  // paused
  f.Put("k2", "b");
  f.Put("x", "c");
  REQUIRE(f.Deliver(false).empty());
  auto out = f.Deliver(true);
  REQUIRE(Events(out, 1) == std::vector<std::string>{"put k1=a@1", "put k2=b@2"});
  REQUIRE((out[0].reply.after == 0 && out[0].reply.upto == 3));
  // Paused, it still hears every progress interval (its client may have
  // gone), but nothing that claims changes it was not sent.
  f.Put("k9", "z");
  REQUIRE(f.Deliver(false).empty());
  std::vector<WatchHub::Out> probes;
  f.hub.Progress(
      f.now + std::chrono::seconds(10), [](uint64_t) { return false; }, &probes);
  REQUIRE(probes.size() == 1);
  REQUIRE(
      (probes[0].reply.after == 3 && probes[0].reply.upto == 3 && probes[0].reply.events.empty()));
  out = f.Deliver(true);
  REQUIRE(Events(out, 1) == std::vector<std::string>{"put k9=z@4"});
  // Live again; then paused past what the history keeps: COMPACTED.
  f.Put("k3", "d");
  REQUIRE(f.Deliver(false).empty());
  for (int i = 0; i < 12; ++i) f.Put("k", std::to_string(i));
  out = f.Deliver(true);
  REQUIRE(out.size() == 1);
  REQUIRE((out[0].last && out[0].reply.status == net::ReplyStatus::kCompacted));
  REQUIRE(out[0].reply.error.find("from index 5 on") != std::string::npos);
}

TEST_CASE("A snapshot installed ends the watches that needed older changes") {
  Feed f;
  f.Put("a", "1");
  f.hub.Add(1, PrefixRange(""), 0);
  f.Deliver();
  f.hub.Add(2, PrefixRange(""), 10);  // ahead of the node: waits, and says it is alive
  f.Deliver();
  std::vector<WatchHub::Out> alive;
  f.hub.Progress(
      f.now + std::chrono::seconds(2), [](uint64_t) { return true; }, &alive);
  REQUIRE(alive.size() == 2);
  for (const auto& o : alive) REQUIRE(o.reply.events.empty());
  REQUIRE((alive[1].handle == 2 && alive[1].reply.after == 9 && alive[1].reply.upto == 9));
  std::vector<WatchHub::Out> out;
  f.hub.Reset(9, &out);  // the state jumped from 1 to 9
  REQUIRE(out.size() == 1);
  REQUIRE((out[0].handle == 1 && out[0].reply.status == net::ReplyStatus::kCompacted));
  f.index = 9;
  f.Put("b", "2");
  REQUIRE(Events(f.Deliver(), 2) == std::vector<std::string>{"put b=2@10"});
}

TEST_CASE("Live prefix and range watches match by index, not by looking at every watch") {
  Feed f;
  // Prefixes of several lengths, a range that is no prefix, and everything.
  const std::vector<std::string> prefixes = {"", "a", "ab", "abc", "b/", "zz"};
  for (size_t i = 0; i < prefixes.size(); ++i) f.hub.Add(i + 1, PrefixRange(prefixes[i]), 0);
  ScanSpec range;
  range.start = "ab";
  range.end = "b/x";
  f.hub.Add(100, range, 0);
  f.Deliver();
  for (const char* key : {"a", "abcd", "ab", "b/1", "b/y", "zz", "z", ""}) f.Put(key, "v");
  const auto out = f.Deliver();
  auto keys = [&](uint64_t handle) {
    std::vector<std::string> k;
    for (const auto& o : out) {
      if (o.handle != handle) continue;
      for (const auto& e : o.reply.events) k.push_back(e.key);
    }
    return k;
  };
  REQUIRE(keys(1) == std::vector<std::string>{"a", "abcd", "ab", "b/1", "b/y", "zz", "z", ""});
  REQUIRE(keys(2) == std::vector<std::string>{"a", "abcd", "ab"});
  REQUIRE(keys(3) == std::vector<std::string>{"abcd", "ab"});
  REQUIRE(keys(4) == std::vector<std::string>{"abcd"});
  REQUIRE(keys(5) == std::vector<std::string>{"b/1", "b/y"});
  REQUIRE(keys(6) == std::vector<std::string>{"zz"});
  REQUIRE(keys(100) == std::vector<std::string>{"abcd", "ab", "b/1"});
}

TEST_CASE("Random watches, pauses and trims: each watch sees exactly its changes, or COMPACTED") {
  size_t checked = 0, compacted = 0;  // events compared, watches ended: the run is not vacuous
  for (uint32_t seed = 1; seed <= 30; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    WatchLimits limits;
    limits.history_changes = 20 + rng() % 40;
    limits.batch_events = 1 + rng() % 8;
    Feed f(limits);
    // What every entry changed, to compare with: index -> "type key".
    std::vector<std::pair<uint64_t, std::string>> log;
    struct Seen {
      std::string prefix;
      uint64_t from = 0;
      uint64_t upto = 0;
      std::vector<std::pair<uint64_t, std::string>> events;
      bool compacted = false;
    };
    std::map<uint64_t, Seen> seen;
    uint64_t next_handle = 1;
    for (int step = 0; step < 400; ++step) {
      const int what = static_cast<int>(rng() % 10);
      const std::string key =
          std::string(1, static_cast<char>('a' + rng() % 3)) + std::to_string(rng() % 4);
      if (what < 5) {
        f.Put(key, std::to_string(step));
        log.emplace_back(f.index, "put " + key);
      } else if (what < 7) {
        const bool existed = f.sm.Find(key) != nullptr;
        f.Del(key);
        if (existed) log.emplace_back(f.index, "del " + key);
      } else if (what == 7 && seen.size() < 6) {
        const uint64_t from = f.index + 1 - std::min<uint64_t>(f.index, rng() % 30);
        Seen s;
        s.prefix = std::string(rng() % 2, static_cast<char>('a' + rng() % 3));
        s.from = from;
        s.upto = from - 1;
        f.hub.Add(next_handle, PrefixRange(s.prefix), from);
        seen[next_handle++] = s;
      } else {
        std::vector<WatchHub::Out> out;
        const bool room = rng() % 3 != 0;
        f.hub.Deliver(
            f.now, [&](uint64_t) { return room; }, &out);
        for (const auto& o : out) {
          Seen& s = seen.at(o.handle);
          REQUIRE_FALSE(s.compacted);
          if (o.reply.status == net::ReplyStatus::kCompacted) {
            s.compacted = true;
            continue;
          }
          REQUIRE(o.reply.after == s.upto);
          s.upto = o.reply.upto;
          for (const auto& e : o.reply.events) {
            s.events.emplace_back(
                e.index, (e.type == net::WatchEvent::Type::kPut ? "put " : "del ") + e.key);
          }
        }
      }
    }
    for (const auto& [handle, s] : seen) {
      if (s.compacted) {
        ++compacted;
        continue;
      }
      std::vector<std::pair<uint64_t, std::string>> expected;
      for (const auto& [index, change] : log) {
        const std::string key = change.substr(change.find(' ') + 1);
        if (index >= s.from && index <= s.upto && key.compare(0, s.prefix.size(), s.prefix) == 0) {
          expected.emplace_back(index, change);
        }
      }
      CAPTURE(handle, s.prefix, s.from, s.upto);
      REQUIRE(s.events == expected);
      checked += expected.size();
    }
  }
  CHECK(checked > 1000);
  CHECK(compacted > 5);
}

}  // namespace kv::node
