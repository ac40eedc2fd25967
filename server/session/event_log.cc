#include "server/session/event_log.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace cellgate::session {
namespace {

// What this thread's WakeupsDeferred of `log` hold: one entry per log it is inside one of.
struct HeldWakeups {
  const EventLog* log;
  int depth;  // nested WakeupsDeferred of that log
  std::vector<EventLog::WaitId> ids;
};
thread_local std::vector<HeldWakeups> held_wakeups;

std::vector<HeldWakeups>::iterator HeldFor(const EventLog* log) {
  return std::find_if(held_wakeups.begin(), held_wakeups.end(),
                      [log](const HeldWakeups& held) { return held.log == log; });
}

void SetTimestamp(absl::Time time, google::protobuf::Timestamp* out) {
  const int64_t seconds = absl::ToUnixSeconds(time);
  out->set_seconds(seconds);
  out->set_nanos(
      static_cast<int32_t>((time - absl::FromUnixSeconds(seconds)) / absl::Nanoseconds(1)));
}

}  // namespace

EventLog::EventLog(Options options)
    : max_bytes_(std::max<int64_t>(options.max_bytes, 0)),
      first_seq_(std::max<int64_t>(options.first_seq, 1)),
      next_seq_(first_seq_) {}

EventLog::~EventLog() = default;

EventLog::WakeupsDeferred::WakeupsDeferred(EventLog& log) : log_(log) {
  if (auto it = HeldFor(&log_); it != held_wakeups.end()) {
    ++it->depth;
  } else {
    held_wakeups.push_back(HeldWakeups{&log_, 1, {}});
  }
}

EventLog::WakeupsDeferred::~WakeupsDeferred() {
  auto it = HeldFor(&log_);
  if (--it->depth > 0) return;
  const std::vector<WaitId> ids = std::move(it->ids);
  held_wakeups.erase(it);  // before the wakeups run: they may defer their own
  if (!ids.empty()) log_.RunWakeups(ids);
}

void EventLog::DeferIfAskedLocked(std::vector<WaitId>& ids) {
  if (ids.empty() || held_wakeups.empty()) return;
  if (auto it = HeldFor(this); it != held_wakeups.end()) {
    it->ids.insert(it->ids.end(), ids.begin(), ids.end());
    ids.clear();
  }
}

EventLog::EventPtr EventLog::Append(v1::OutputEvent event) {
  std::vector<WaitId> wakeups;
  EventPtr stored;
  {
    absl::MutexLock lock(&mu_);
    const int64_t seq = next_seq_++;
    event.set_seq(seq);
    SetTimestamp(absl::Now(), event.mutable_time());
    const auto bytes = static_cast<int64_t>(event.ByteSizeLong());
    stored = std::make_shared<const v1::OutputEvent>(std::move(event));
    appended_bytes_ += bytes;
    events_.push_back(Entry{stored, bytes, appended_bytes_});
    retained_bytes_ += bytes;
    while (retained_bytes_ > max_bytes_ && events_.size() > 1) {
      retained_bytes_ -= events_.front().bytes;
      events_.pop_front();
    }
    wakeups = TakeWaiters([seq](const Waiter& w) { return w.after_seq < seq; });
    DeferIfAskedLocked(wakeups);
  }
  RunWakeups(wakeups);
  return stored;
}

int64_t EventLog::last_seq() const {
  absl::MutexLock lock(&mu_);
  return next_seq_ - 1;
}

int64_t EventLog::oldest_retained_seq() const {
  absl::MutexLock lock(&mu_);
  return events_.empty() ? 0 : events_.front().event->seq();
}

int64_t EventLog::retained_bytes() const {
  absl::MutexLock lock(&mu_);
  return retained_bytes_;
}

size_t EventLog::retained_events() const {
  absl::MutexLock lock(&mu_);
  return events_.size();
}

int64_t EventLog::BytesAfter(int64_t seq) const {
  absl::MutexLock lock(&mu_);
  if (events_.empty()) return 0;
  const int64_t first = events_.front().event->seq();
  if (seq < first) return retained_bytes_;
  if (seq >= next_seq_ - 1) return 0;
  return appended_bytes_ - events_[static_cast<size_t>(seq - first)].end_offset;
}

int64_t EventLog::FirstRetainedSeq() const {
  return events_.empty() ? next_seq_ : events_.front().event->seq();
}

absl::StatusOr<std::vector<EventLog::EventPtr>> EventLog::ReadAfter(int64_t after_seq,
                                                                    size_t max_events) const {
  if (after_seq < 0) {
    return absl::InvalidArgumentError(absl::StrCat("after_seq: must be >= 0, got ", after_seq));
  }
  absl::MutexLock lock(&mu_);
  const int64_t last = next_seq_ - 1;
  if (after_seq > last) {
    return absl::OutOfRangeError(
        absl::StrCat("after_seq ", after_seq, " is beyond the last seq ", last));
  }
  const int64_t first = FirstRetainedSeq();
  if (after_seq != 0 && after_seq + 1 < first) {
    if (events_.empty()) {
      return absl::OutOfRangeError(absl::StrCat("events after seq ", after_seq,
                                                " are not retained; the log holds no events, "
                                                "the next one will be seq ",
                                                next_seq_));
    }
    return absl::OutOfRangeError(absl::StrCat("events after seq ", after_seq,
                                              " were evicted; the oldest retained seq is ", first));
  }
  const size_t begin = after_seq < first ? 0 : static_cast<size_t>(after_seq + 1 - first);
  size_t count = events_.size() - begin;
  if (max_events != 0) count = std::min(count, max_events);
  std::vector<EventPtr> out;
  out.reserve(count);
  for (size_t i = begin; i < begin + count; ++i) out.push_back(events_[i].event);
  return out;
}

EventLog::WaitId EventLog::WaitForEvents(int64_t after_seq, absl::AnyInvocable<void()> wake) {
  WaitId id;
  {
    absl::MutexLock lock(&mu_);
    id = next_wait_id_++;
    if (!closed_ && next_seq_ - 1 <= after_seq) {
      waiters_.emplace(id, Waiter{after_seq, std::move(wake)});
      return id;
    }
  }
  // Already satisfied: run now, on the caller's thread, without the lock. The id was never
  // registered, so CancelWait(id) is a no-op.
  wake();
  return id;
}

void EventLog::CancelWait(WaitId id) {
  absl::AnyInvocable<void()> dropped;  // destroyed after the lock is released
  absl::MutexLock lock(&mu_);
  if (auto it = waiters_.find(id); it != waiters_.end()) {
    dropped = std::move(it->second.wake);
    waiters_.erase(it);
    return;
  }
  for (auto it = in_flight_.find(id); it != in_flight_.end(); it = in_flight_.find(id)) {
    if (!it->second.started) {  // taken by an Append but not run yet: it never will be
      dropped = std::move(it->second.wake);
      in_flight_.erase(it);
      return;
    }
    if (it->second.thread == std::this_thread::get_id()) return;  // from its own callback
    wakeup_done_.Wait(&mu_);
  }
}

void EventLog::Close() {
  std::vector<WaitId> wakeups;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    closed_ = true;
    wakeups = TakeWaiters([](const Waiter&) { return true; });
    DeferIfAskedLocked(wakeups);
  }
  RunWakeups(wakeups);
}

bool EventLog::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

template <typename Pred>
std::vector<EventLog::WaitId> EventLog::TakeWaiters(Pred pred) {
  std::vector<WaitId> ids;
  const std::thread::id self = std::this_thread::get_id();
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (pred(it->second)) {
      ids.push_back(it->first);
      in_flight_.emplace(it->first, InFlight{self, false, std::move(it->second.wake)});
      it = waiters_.erase(it);
    } else {
      ++it;
    }
  }
  return ids;
}

void EventLog::RunWakeups(const std::vector<WaitId>& ids) {
  for (WaitId id : ids) {
    absl::AnyInvocable<void()> wake;
    {
      absl::MutexLock lock(&mu_);
      auto it = in_flight_.find(id);
      if (it == in_flight_.end()) continue;  // cancelled meanwhile
      it->second.started = true;
      wake = std::move(it->second.wake);
    }
    wake();
    wake = nullptr;  // destroy what it captured before CancelWait may return
    absl::MutexLock lock(&mu_);
    in_flight_.erase(id);
    wakeup_done_.SignalAll();
  }
}

}  // namespace cellgate::session
