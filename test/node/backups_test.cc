#include "node/backups.h"

#include <catch2/catch.hpp>

namespace kv::node {
namespace {

// Puts `keys` keys of 100 kB into sm.
void Fill(StateMachine& sm, int keys) {
  bool dup = false;
  for (int i = 1; i <= keys; ++i) {
    Command put;
    put.op = OpType::kPut;
    put.key = "key" + std::to_string(i);
    put.value = std::string(100000, 'v');
    sm.Apply(static_cast<uint64_t>(i), put, &dup);
  }
}

TEST_CASE("Backups: a backup is read in pieces from any cursor and closed past its last") {
  StateMachine sm;
  Fill(sm, 25);
  const StateView view = sm.TakeDataView();
  Backups backups;
  net::BackupReply begun;
  REQUIRE(backups.Open(7, view, &begun).ok());
  CHECK(begun.index == 25);
  CHECK(begun.keys == 25);
  CHECK(begun.size == view.SerializedSize());
  raft::GroupId group = 0;
  REQUIRE(backups.GroupOf(begun.backup, &group).ok());
  CHECK(group == 7);

  std::string data;
  uint64_t cursor = 0;
  std::vector<uint64_t> cursors;
  net::BackupReply piece;
  do {
    cursors.push_back(cursor);
    REQUIRE(backups.Piece(begun.backup, cursor, &piece).ok());
    REQUIRE(piece.is_piece);
    data += piece.data;
    cursor = piece.cursor;
    // The writes go on: the backup keeps the state it started at.
    bool dup = false;
    Command del;
    del.op = OpType::kDelete;
    del.key = "key" + std::to_string(cursors.size());
    sm.Apply(sm.applied_index() + 1, del, &dup);
  } while (!piece.done);
  CHECK(cursors.size() >= 3);  // 2.5 MB in pieces of about 1 MiB
  CHECK(data == view.Serialize());
  StateMachine copy;
  REQUIRE(copy.Restore(data).ok());
  CHECK(copy.size() == 25);
  // Asked past its last piece, it closes.
  net::BackupReply past;
  REQUIRE(backups.Piece(begun.backup, piece.cursor, &past).ok());
  CHECK((past.done && past.data.empty()));
  CHECK(backups.Piece(begun.backup, cursors[1], &piece).IsNotFound());
  CHECK(backups.open() == 0);
}

TEST_CASE(
    "Backups: a resent piece is the same (the last too), idle ones go, bad cursors and caps") {
  StateMachine sm;
  Fill(sm, 3);
  Backups backups;
  net::BackupReply begun, first, again;
  REQUIRE(backups.Open(1, sm.TakeDataView(), &begun).ok());
  REQUIRE(backups.Piece(begun.backup, 0, &first).ok());
  REQUIRE(backups.Piece(begun.backup, 0, &again).ok());
  CHECK(first.done);  // 300 kB: one piece
  CHECK(first.data == again.data);
  CHECK(first.cursor == again.cursor);

  net::BackupReply other;
  REQUIRE(backups.Open(1, sm.TakeDataView(), &other).ok());
  std::shared_ptr<const StateView> closed;
  REQUIRE(backups.Close(other.backup, &closed).ok());
  CHECK(closed != nullptr);
  CHECK(backups.Close(other.backup, &closed).IsNotFound());
  CHECK(backups.DropIdle(Backups::Clock::now()).empty());
  CHECK(backups.open() == 1);
  CHECK(backups.DropIdle(Backups::Clock::now() + Backups::kIdle).size() == 1);
  CHECK(backups.open() == 0);
  raft::GroupId group = 0;
  const Status gone = backups.GroupOf(begun.backup, &group);
  CHECK(gone.IsNotFound());
  CHECK(gone.message().find("start it again") != std::string::npos);

  // A cursor no piece gave is refused.
  REQUIRE(backups.Open(1, sm.TakeDataView(), &begun).ok());
  CHECK(backups.Piece(begun.backup, 1000, &first).IsInvalidArgument());
  for (size_t i = 1; i < Backups::kMaxOpenPerGroup; ++i) {
    REQUIRE(backups.Open(1, sm.TakeDataView(), &begun).ok());
  }
  CHECK(backups.Open(1, sm.TakeDataView(), &begun).IsBusy());
  for (uint64_t next_group = 2; backups.open() < Backups::kMaxOpen; ++next_group) {
    REQUIRE(backups.Open(next_group, sm.TakeDataView(), &begun).ok());
  }
  CHECK(backups.Open(999, sm.TakeDataView(), &begun).IsBusy());
}

}  // namespace
}  // namespace kv::node
