// Unit tests of the pieces under the Raft core: MemoryStorage (what a node
// persisted), RaftLog (stable + unstable log), Progress (flow control) and
// Config::Validate.
#include "raft/log.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

#include "raft/memory_storage.h"
#include "raft/progress.h"
#include "raft/raft.h"

namespace kv::raft {
namespace {

Entry E(Index i, Term t, std::string data = "") {
  return Entry{t, i, EntryType::kNormal, std::move(data)};
}

// Entries 1..terms.size() with the given terms.
std::vector<Entry> Log(const std::vector<Term>& terms) {
  std::vector<Entry> out;
  for (size_t i = 0; i < terms.size(); ++i) out.push_back(E(i + 1, terms[i]));
  return out;
}

std::vector<Term> Terms(const LogStorage& s) {
  std::vector<Term> out;
  for (Index i = s.FirstIndex(); i <= s.LastIndex(); ++i) {
    Term t = 0;
    REQUIRE(s.TermAt(i, &t).ok());
    out.push_back(t);
  }
  return out;
}

// ---------------------------------------------------------------- MemoryStorage

TEST_CASE("MemoryStorage: Append replaces a conflicting suffix and refuses gaps") {
  MemoryStorage s;
  REQUIRE(s.Append(Log({1, 1, 2, 2, 2})).ok());
  CHECK(s.FirstIndex() == 1);
  CHECK(s.LastIndex() == 5);
  REQUIRE(s.Append({E(4, 3), E(5, 3), E(6, 3)}).ok());
  CHECK(Terms(s) == std::vector<Term>{1, 1, 2, 3, 3, 3});
  // Replacing with a shorter suffix truncates.
  REQUIRE(s.Append({E(3, 4)}).ok());
  CHECK(Terms(s) == std::vector<Term>{1, 1, 4});
  CHECK(s.Append({E(5, 4)}).IsInvalidArgument());
  CHECK(s.LastIndex() == 3);
}

TEST_CASE("MemoryStorage: Entries honours the byte limit but returns at least one entry") {
  MemoryStorage s;
  REQUIRE(s.Append({E(1, 1, "aaaa"), E(2, 1, "bbbb"), E(3, 1, "cccc")}).ok());
  const uint64_t one = E(1, 1, "aaaa").ByteSize();
  std::vector<Entry> out;
  REQUIRE(s.Entries(1, 4, 0, &out).ok());
  CHECK(out.size() == 1);
  out.clear();
  REQUIRE(s.Entries(1, 4, 2 * one, &out).ok());
  CHECK(out.size() == 2);
  out.clear();
  REQUIRE(s.Entries(1, 4, UINT64_MAX, &out).ok());
  CHECK(out.size() == 3);
  out.clear();
  CHECK(s.Entries(2, 5, UINT64_MAX, &out).IsUnavailable());
}

TEST_CASE("MemoryStorage: CreateSnapshot compacts the log and keeps the snapshot's term") {
  MemoryStorage s;
  REQUIRE(s.Append(Log({1, 1, 2, 2, 3})).ok());
  ConfState cs{{1, 2, 3}, {}};
  REQUIRE(s.CreateSnapshot(3, cs, "state@3").ok());
  CHECK(s.FirstIndex() == 4);
  CHECK(s.LastIndex() == 5);
  Term t = 0;
  REQUIRE(s.TermAt(3, &t).ok());
  CHECK(t == 2);
  CHECK(s.TermAt(2, &t).IsCompacted());
  std::vector<Entry> out;
  CHECK(s.Entries(3, 5, UINT64_MAX, &out).IsCompacted());
  REQUIRE(s.Entries(4, 6, UINT64_MAX, &out).ok());
  CHECK(out.size() == 2);
  Snapshot snap;
  REQUIRE(s.GetSnapshot(&snap).ok());
  CHECK(snap.meta.index == 3);
  CHECK(snap.meta.term == 2);
  CHECK(snap.meta.conf == cs);
  CHECK(snap.data == "state@3");
  HardState hs;
  ConfState init;
  REQUIRE(s.InitialState(&hs, &init).ok());
  CHECK(init == cs);
  CHECK(s.CreateSnapshot(3, cs, "again").IsInvalidArgument());
  CHECK(s.CreateSnapshot(9, cs, "future").IsInvalidArgument());
  // Entries already covered by the snapshot are ignored on append.
  REQUIRE(s.Append({E(2, 1), E(3, 2), E(4, 2), E(5, 3), E(6, 3)}).ok());
  CHECK(s.FirstIndex() == 4);
  CHECK(s.LastIndex() == 6);
}

TEST_CASE("MemoryStorage: ApplySnapshot replaces the whole log and refuses older ones") {
  MemoryStorage s;
  REQUIRE(s.Append(Log({1, 1, 1})).ok());
  Snapshot snap;
  snap.meta.index = 10;
  snap.meta.term = 4;
  snap.meta.conf.voters = {1, 2};
  snap.data = "x";
  REQUIRE(s.ApplySnapshot(snap).ok());
  CHECK(s.FirstIndex() == 11);
  CHECK(s.LastIndex() == 10);
  Term t = 0;
  REQUIRE(s.TermAt(10, &t).ok());
  CHECK(t == 4);
  Snapshot older = snap;
  older.meta.index = 5;
  CHECK(s.ApplySnapshot(older).IsInvalidArgument());
  REQUIRE(s.Append({E(11, 4)}).ok());
  CHECK(s.LastIndex() == 11);
}

// ---------------------------------------------------------------- RaftLog

TEST_CASE("RaftLog: unstable entries are handed out once and dropped when stable") {
  MemoryStorage s;
  REQUIRE(s.Append(Log({1, 1})).ok());
  RaftLog log(&s, UINT64_MAX);
  REQUIRE(log.Init().ok());
  CHECK(log.FirstIndex() == 1);
  CHECK(log.LastIndex() == 2);
  log.Append({E(3, 2), E(4, 2)});
  CHECK(log.LastIndex() == 4);
  CHECK(log.DurableIndex() == 2);
  REQUIRE(log.HasUnhandedEntries());
  std::vector<Entry> handed = log.TakeUnhandedEntries();
  REQUIRE(handed.size() == 2);
  CHECK(handed.front().index == 3);
  CHECK_FALSE(log.HasUnhandedEntries());
  // Slice reads across the stable and unstable parts.
  std::vector<Entry> all;
  REQUIRE(log.Slice(1, 5, UINT64_MAX, &all).ok());
  CHECK(all.size() == 4);
  // The driver persists and reports it.
  REQUIRE(s.Append(handed).ok());
  log.StableTo(4, 2);
  CHECK(log.DurableIndex() == 4);
  CHECK(log.LastIndex() == 4);
}

TEST_CASE("RaftLog: StableTo of a replaced entry does not drop its replacement") {
  MemoryStorage s;
  REQUIRE(s.Append(Log({1})).ok());
  RaftLog log(&s, UINT64_MAX);
  REQUIRE(log.Init().ok());
  log.Append({E(2, 1), E(3, 1)});
  std::vector<Entry> first = log.TakeUnhandedEntries();
  // Before the write of {2,3}@1 completes, a new leader replaces 3.
  log.Append({E(3, 2)});
  std::vector<Entry> second = log.TakeUnhandedEntries();
  REQUIRE(second.size() == 1);
  REQUIRE(s.Append(first).ok());
  log.StableTo(3, 1);  // stale: entry 3 now has term 2
  Term t = 0;
  REQUIRE(log.TermAt(3, &t).ok());
  CHECK(t == 2);
  CHECK(log.DurableIndex() < 3);
  REQUIRE(s.Append(second).ok());
  log.StableTo(3, 2);
  CHECK(log.DurableIndex() == 3);
}

TEST_CASE("RaftLog: MaybeAppend checks the previous entry and replaces a conflicting suffix") {
  MemoryStorage s;
  REQUIRE(s.Append(Log({1, 1, 2, 2})).ok());
  RaftLog log(&s, UINT64_MAX);
  REQUIRE(log.Init().ok());
  Index last_new = 0, conflict = 0;
  CHECK_FALSE(log.MaybeAppend(4, 3, {E(5, 3)}, &last_new, &conflict));
  CHECK_FALSE(log.MaybeAppend(6, 2, {E(7, 3)}, &last_new, &conflict));
  // Already held: nothing written.
  REQUIRE(log.MaybeAppend(2, 1, {E(3, 2)}, &last_new, &conflict));
  CHECK(last_new == 3);
  CHECK(conflict == 0);
  CHECK(log.LastIndex() == 4);
  // Conflict at 4: replaced.
  REQUIRE(log.MaybeAppend(3, 2, {E(4, 3), E(5, 3)}, &last_new, &conflict));
  CHECK(last_new == 5);
  CHECK(conflict == 4);
  Term t = 0;
  REQUIRE(log.TermAt(4, &t).ok());
  CHECK(t == 3);
  CHECK(log.LastIndex() == 5);
}

TEST_CASE("RaftLog: FindConflictByTerm skips a whole divergent term at once") {
  MemoryStorage s;
  REQUIRE(s.Append(Log({1, 1, 1, 4, 4, 5, 5, 6, 6, 6})).ok());
  RaftLog log(&s, UINT64_MAX);
  REQUIRE(log.Init().ok());
  Term found = 0;
  CHECK(log.FindConflictByTerm(10, 5, &found) == 7);
  CHECK(found == 5);
  CHECK(log.FindConflictByTerm(10, 3, &found) == 3);
  CHECK(found == 1);
  CHECK(log.FindConflictByTerm(10, 6, &found) == 10);
  CHECK(log.FindConflictByTerm(10, 0, &found) == 0);
}

TEST_CASE("RaftLog: the up-to-date check compares last term, then length") {
  MemoryStorage s;
  REQUIRE(s.Append(Log({1, 2, 2})).ok());
  RaftLog log(&s, UINT64_MAX);
  REQUIRE(log.Init().ok());
  CHECK(log.IsUpToDate(3, 2));
  CHECK(log.IsUpToDate(1, 3));
  CHECK_FALSE(log.IsUpToDate(2, 2));
  CHECK_FALSE(log.IsUpToDate(10, 1));
}

TEST_CASE("RaftLog: committed entries to apply respect the byte limit") {
  MemoryStorage s;
  REQUIRE(s.Append({E(1, 1, "aaaa"), E(2, 1, "bbbb"), E(3, 1, "cccc")}).ok());
  RaftLog log(&s, E(1, 1, "aaaa").ByteSize());
  REQUIRE(log.Init().ok());
  log.set_committed(3);
  std::vector<Entry> out;
  REQUIRE(log.TakeEntriesToApply(&out).ok());
  CHECK(out.size() == 1);
  CHECK(log.applied() == 1);
  out.clear();
  REQUIRE(log.TakeEntriesToApply(&out).ok());
  REQUIRE(log.TakeEntriesToApply(&out).ok());
  CHECK(log.applied() == 3);
  CHECK_FALSE(log.HasEntriesToApply());
}

TEST_CASE("RaftLog: Restore replaces the log with a snapshot") {
  MemoryStorage s;
  REQUIRE(s.Append(Log({1, 1})).ok());
  RaftLog log(&s, UINT64_MAX);
  REQUIRE(log.Init().ok());
  Snapshot snap;
  snap.meta.index = 20;
  snap.meta.term = 3;
  log.Restore(snap);
  CHECK(log.FirstIndex() == 21);
  CHECK(log.LastIndex() == 20);
  CHECK(log.committed() == 20);
  Term t = 0;
  REQUIRE(log.TermAt(20, &t).ok());
  CHECK(t == 3);
  REQUIRE(log.HasUnhandedSnapshot());
  CHECK(log.TakeUnhandedSnapshot().meta.index == 20);
  CHECK(log.applied() == 20);
  REQUIRE(s.ApplySnapshot(snap).ok());
  log.StableSnapTo(20);
  CHECK(log.FirstIndex() == 21);
}

// ---------------------------------------------------------------- Progress

TEST_CASE("Progress: a probe sends one message at a time") {
  Progress pr(5, 4, 0, false);
  CHECK(pr.state == ProgressState::kProbe);
  CHECK_FALSE(pr.IsPaused());
  pr.SentEntries(7, 100);
  CHECK(pr.IsPaused());
  // A rejection of the probe at 4 with the follower's hint 2.
  CHECK(pr.MaybeDecrTo(4, 2));
  CHECK(pr.next == 3);
  CHECK_FALSE(pr.IsPaused());
  // A stale rejection (not of the last probe) is ignored.
  CHECK_FALSE(pr.MaybeDecrTo(9, 1));
}

TEST_CASE("Progress: replicate pipelines up to the in-flight window") {
  Progress pr(1, 2, 0, false);
  REQUIRE(pr.MaybeUpdate(3));
  pr.BecomeReplicate();
  CHECK(pr.next == 4);
  pr.SentEntries(5, 100);
  pr.SentEntries(8, 100);
  CHECK(pr.next == 9);
  CHECK(pr.IsPaused());
  pr.FreeInflightsUpTo(5);
  CHECK_FALSE(pr.IsPaused());
  CHECK(pr.inflight_count() == 1);
  // A stale acknowledgement changes nothing.
  CHECK_FALSE(pr.MaybeUpdate(2));
  // A rejection past match falls back to match + 1.
  CHECK(pr.MaybeDecrTo(6, 5));
  CHECK(pr.next == 4);
  CHECK_FALSE(pr.MaybeDecrTo(3, 1));  // at or below match: stale
}

TEST_CASE("Progress: the window closes at max_inflight_bytes and acknowledgements reopen it") {
  Progress pr(1, 256, 100, false);
  REQUIRE(pr.MaybeUpdate(3));
  pr.BecomeReplicate();
  CHECK(pr.InflightBytesLeft() == 100);
  pr.SentEntries(5, 60);
  CHECK_FALSE(pr.IsPaused());
  CHECK(pr.InflightBytesLeft() == 40);
  // The leader's next message may overshoot by its one entry.
  pr.SentEntries(6, 50);
  CHECK(pr.inflight_bytes() == 110);
  CHECK(pr.IsPaused());
  pr.FreeInflightsUpTo(4);  // inside the first message: frees nothing
  CHECK(pr.IsPaused());
  pr.FreeInflightsUpTo(5);
  CHECK(pr.inflight_bytes() == 50);
  CHECK(pr.inflight_count() == 1);
  CHECK_FALSE(pr.IsPaused());
  CHECK(pr.InflightBytesLeft() == 50);
  // Probing after a rejection starts with an empty window.
  CHECK(pr.MaybeDecrTo(6, 5));
  pr.BecomeProbe();
  CHECK(pr.inflight_bytes() == 0);
  CHECK(pr.inflight_count() == 0);
  REQUIRE(pr.MaybeUpdate(5));
  pr.BecomeReplicate();
  CHECK(pr.InflightBytesLeft() == 100);
}

TEST_CASE("Progress: without a byte limit only the message count closes the window") {
  Progress pr(1, 2, 0, false);
  REQUIRE(pr.MaybeUpdate(1));
  pr.BecomeReplicate();
  CHECK(pr.InflightBytesLeft() == UINT64_MAX);
  pr.SentEntries(2, uint64_t{1} << 40);
  CHECK_FALSE(pr.IsPaused());
  pr.SentEntries(3, 1);
  CHECK(pr.IsPaused());
}

TEST_CASE("Progress: a snapshot empties the window") {
  Progress pr(1, 256, 100, false);
  REQUIRE(pr.MaybeUpdate(1));
  pr.BecomeReplicate();
  pr.SentEntries(9, 500);
  REQUIRE(pr.IsPaused());
  pr.BecomeSnapshot(50);
  CHECK(pr.inflight_bytes() == 0);
  REQUIRE(pr.MaybeUpdate(50));
  pr.BecomeProbe();
  pr.BecomeReplicate();
  CHECK_FALSE(pr.IsPaused());
  CHECK(pr.InflightBytesLeft() == 100);
}

TEST_CASE("Config: an in-flight byte window smaller than one message is refused") {
  MemoryStorage s;
  Config cfg;
  cfg.id = 1;
  cfg.storage = &s;
  REQUIRE(cfg.Validate().ok());
  cfg.max_msg_bytes = 1 << 20;
  cfg.max_inflight_bytes = (1 << 20) - 1;
  CHECK(cfg.Validate().IsInvalidArgument());
  cfg.max_inflight_bytes = 1 << 20;
  CHECK(cfg.Validate().ok());
  cfg.max_inflight_bytes = 0;  // no limit
  CHECK(cfg.Validate().ok());
}

TEST_CASE("Progress: snapshot state pauses until the snapshot is acknowledged") {
  Progress pr(1, 8, 0, false);
  pr.BecomeSnapshot(50);
  CHECK(pr.IsPaused());
  REQUIRE(pr.MaybeUpdate(50));
  pr.BecomeProbe();
  CHECK(pr.next == 51);
  CHECK_FALSE(pr.IsPaused());
}

}  // namespace
}  // namespace kv::raft
