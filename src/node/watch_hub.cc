#include "node/watch_hub.h"

#include <algorithm>
#include <utility>

namespace kv::node {

namespace {

// What an item costs the history beyond its key and value: the deque's
// slot and the change's bookkeeping.
constexpr size_t kItemOverhead = 64;

// The prefix whose range `range` is, if it is one.
std::optional<std::string> PrefixOf(const ScanSpec& range) {
  if (PrefixRange(range.start).end == range.end) return range.start;
  return std::nullopt;
}

}  // namespace

bool WatchHub::InRange(const Watch& w, std::string_view key) {
  return key >= w.range.start && (!w.range.end || key < *w.range.end);
}

size_t WatchHub::BytesOf(const Change& c) {
  return kItemOverhead + c.changed_key().size() +
         (c.kind == Change::Kind::kPut ? c.record->value().size() : 0);
}

net::WatchEvent WatchHub::EventOf(uint64_t index, const Change& c, bool keys_only) {
  net::WatchEvent e;
  e.index = index;
  e.key.assign(c.changed_key());
  switch (c.kind) {
    case Change::Kind::kPut:
      e.type = net::WatchEvent::Type::kPut;
      e.create_index = c.record->version().create_index;
      if (!keys_only) {
        e.has_value = true;
        e.value.assign(c.record->value());
      }
      break;
    case Change::Kind::kDelete:
      e.type = net::WatchEvent::Type::kDelete;
      break;
    case Change::Kind::kExpire:
      e.type = net::WatchEvent::Type::kExpire;
      break;
  }
  return e;
}

void WatchHub::Reset(uint64_t applied, std::vector<Out>* out) {
  // Every watch reads on from the history, which starts after `applied`:
  // one that still needed an older change would miss it.
  for (auto& [handle, w] : watches_) {
    if (w.live) MakeBehind(handle, w);
  }
  applied_ = applied;
  first_ = applied + 1;
  history_.clear();
  history_bytes_ = 0;
  std::vector<uint64_t> ended;
  for (const auto& [handle, w] : watches_) {
    if (w.next <= applied) ended.push_back(handle);
  }
  for (uint64_t handle : ended) Compacted(handle, out);
}

void WatchHub::Applied(uint64_t index, std::vector<Change>* changes) {
  applied_ = index;
  for (Change& c : *changes) {
    // Live watches get the change now.
    const std::string_view key = c.changed_key();
    auto match = [&](uint64_t handle) {
      Watch& w = watches_.at(handle);
      w.pending.push_back(EventOf(index, c, w.range.keys_only));
      dirty_.insert(handle);
    };
    for (const auto& [length, count] : prefix_lengths_) {
      if (length > key.size()) break;
      // (Abseil's string_view is not std's in Debian's build.)
      auto it = by_prefix_.find(absl::string_view(key.data(), length));
      if (it == by_prefix_.end()) continue;
      for (uint64_t handle : it->second) match(handle);
    }
    for (uint64_t handle : live_ranges_) {
      if (InRange(watches_.at(handle), key)) match(handle);
    }
    history_bytes_ += BytesOf(c);
    history_.push_back(Item{index, std::move(c)});
  }
  changes->clear();
  Trim();
}

void WatchHub::Trim() {
  // Whole entries go, so that a watch never starts in the middle of one.
  while (!history_.empty() &&
         (history_.size() > limits_.history_changes || history_bytes_ > limits_.history_bytes)) {
    const uint64_t index = history_.front().index;
    while (!history_.empty() && history_.front().index == index) {
      history_bytes_ -= BytesOf(history_.front().change);
      history_.pop_front();
    }
    first_ = index + 1;
  }
}

void WatchHub::Add(uint64_t handle, const ScanSpec& range, uint64_t from_index) {
  Watch& w = watches_[handle];
  w.range = range;
  w.prefix = PrefixOf(range);
  w.next = from_index != 0 ? from_index : applied_ + 1;
  w.sent_upto = w.next - 1;
  behind_.insert(handle);
}

bool WatchHub::Remove(uint64_t handle) {
  auto it = watches_.find(handle);
  if (it == watches_.end()) return false;
  if (it->second.live) MakeBehind(handle, it->second);
  behind_.erase(handle);
  watches_.erase(it);
  return true;
}

void WatchHub::MakeLive(uint64_t handle, Watch& w) {
  w.live = true;
  behind_.erase(handle);
  if (w.prefix) {
    by_prefix_[*w.prefix].insert(handle);
    prefix_lengths_[w.prefix->size()]++;
  } else {
    live_ranges_.insert(handle);
  }
}

void WatchHub::MakeBehind(uint64_t handle, Watch& w) {
  // It reads again from its first change not sent: nothing before it
  // matched since its last batch.
  w.next = w.pending.empty() ? applied_ + 1 : w.pending.front().index;
  w.pending.clear();
  w.live = false;
  dirty_.erase(handle);
  behind_.insert(handle);
  if (w.prefix) {
    auto it = by_prefix_.find(*w.prefix);
    it->second.erase(handle);
    if (it->second.empty()) by_prefix_.erase(it);
    if (--prefix_lengths_[w.prefix->size()] == 0) prefix_lengths_.erase(w.prefix->size());
  } else {
    live_ranges_.erase(handle);
  }
}

void WatchHub::Send(uint64_t handle, Watch& w, uint64_t upto, std::vector<net::WatchEvent> events,
                    Clock::time_point now, std::vector<Out>* out) {
  Out& o = out->emplace_back();
  o.handle = handle;
  o.reply.after = w.sent_upto;
  o.reply.upto = upto;
  o.reply.events = std::move(events);
  w.sent_upto = upto;
  w.greeted = true;
  w.last_sent = now;
}

void WatchHub::Compacted(uint64_t handle, std::vector<Out>* out) {
  Out& o = out->emplace_back();
  o.handle = handle;
  o.last = true;
  o.reply.status = net::ReplyStatus::kCompacted;
  o.reply.oldest = first_;
  o.reply.error = "the changes from index " + std::to_string(watches_.at(handle).next) +
                  " on are no longer kept here (the oldest kept is " + std::to_string(first_) +
                  "): read the range again and watch from the read's index";
  Remove(handle);
}

void WatchHub::CatchUp(uint64_t handle, Watch& w, Clock::time_point now, std::vector<Out>* out) {
  // The first change at or after w.next, then a batch of whole entries.
  auto it = std::lower_bound(history_.begin(), history_.end(), w.next,
                             [](const Item& item, uint64_t index) { return item.index < index; });
  std::vector<net::WatchEvent> events;
  size_t bytes = 0;
  uint64_t upto = applied_;
  for (; it != history_.end(); ++it) {
    const bool entry_starts = events.empty() || it->index != events.back().index;
    if (entry_starts && (events.size() >= limits_.batch_events || bytes >= limits_.batch_bytes)) {
      upto = it->index - 1;  // the batch ends with the entry before
      break;
    }
    if (!InRange(w, it->change.changed_key())) continue;
    events.push_back(EventOf(it->index, it->change, w.range.keys_only));
    bytes += events.back().key.size() + events.back().value.size();
  }
  if (!w.greeted || !events.empty() || upto > w.sent_upto) {
    Send(handle, w, std::max(upto, w.sent_upto), std::move(events), now, out);
  }
  w.next = std::max(w.next, upto + 1);
}

void WatchHub::Deliver(Clock::time_point now, const HasRoom& has_room, std::vector<Out>* out) {
  // Live watches with changes: a batch each, unless the connection is full.
  for (uint64_t handle : std::vector<uint64_t>(dirty_.begin(), dirty_.end())) {
    Watch& w = watches_.at(handle);
    if (!has_room(handle)) {
      MakeBehind(handle, w);
      continue;
    }
    Send(handle, w, applied_, std::move(w.pending), now, out);
    w.pending.clear();
    dirty_.erase(handle);
  }
  // Behind watches read the history, a batch per call, while they have room.
  for (uint64_t handle : std::vector<uint64_t>(behind_.begin(), behind_.end())) {
    Watch& w = watches_.at(handle);
    if (w.next < first_ && w.next <= applied_) {
      Compacted(handle, out);
      continue;
    }
    if (!has_room(handle)) continue;
    CatchUp(handle, w, now, out);
    if (w.next == applied_ + 1) MakeLive(handle, w);
  }
}

void WatchHub::Progress(Clock::time_point now, const HasRoom& has_room, std::vector<Out>* out) {
  for (auto& [handle, w] : watches_) {
    if (w.live && w.pending.empty() && now - w.last_sent >= limits_.progress && has_room(handle)) {
      Send(handle, w, applied_, {}, now, out);
    } else if (!w.live && w.greeted && now - w.last_sent >= limits_.progress) {
      // A watch paused for want of room, or waiting for the node to reach
      // its from_index: a few bytes, room or not, claiming nothing new, so
      // that its client knows the node is alive, and the node notices a
      // client gone away (the send fails).
      Send(handle, w, w.sent_upto, {}, now, out);
    }
  }
}

}  // namespace kv::node
