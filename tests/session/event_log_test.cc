#include "server/session/event_log.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellgate::session {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kDeadline = absl::Seconds(10);

v1::OutputEvent StreamEvent(const std::string& text) {
  v1::OutputEvent event;
  event.set_kernel_id("k1");
  event.set_execution_id("e1");
  auto* stream = event.mutable_output()->mutable_stream();
  stream->set_name(v1::STREAM_NAME_STDOUT);
  stream->set_text(text);
  return event;
}

std::vector<int64_t> Seqs(const std::vector<EventLog::EventPtr>& events) {
  std::vector<int64_t> seqs;
  for (const auto& event : events) seqs.push_back(event->seq());
  return seqs;
}

EventLog::Options Unbounded() { return {.max_bytes = int64_t{1} << 40}; }

TEST(EventLogTest, NumbersEventsFromOneAndStampsTime) {
  EventLog log(Unbounded());
  EXPECT_EQ(log.last_seq(), 0);
  EXPECT_EQ(log.oldest_retained_seq(), 0);
  const absl::Time before = absl::Now();
  for (int i = 1; i <= 5; ++i) {
    EventLog::EventPtr event = log.Append(StreamEvent("x"));
    EXPECT_EQ(event->seq(), i);
    EXPECT_EQ(event->output().stream().text(), "x");
    EXPECT_GE(event->time().seconds(), absl::ToUnixSeconds(before));
  }
  EXPECT_EQ(log.last_seq(), 5);
  EXPECT_EQ(log.oldest_retained_seq(), 1);
  EXPECT_EQ(log.retained_events(), 5u);
}

TEST(EventLogTest, BytesAfterIsHowFarAReaderTrails) {
  EventLog log({.max_bytes = 1000});
  EXPECT_EQ(log.BytesAfter(0), 0);
  std::vector<int64_t> sizes;
  for (int i = 0; i < 20; ++i) {
    sizes.push_back(static_cast<int64_t>(log.Append(StreamEvent(std::string(90, 'x')))->ByteSizeLong()));
  }
  // Retained: the newest events that fit in 1000 bytes.
  const int64_t oldest = log.oldest_retained_seq();
  ASSERT_GT(oldest, 1);
  EXPECT_EQ(log.BytesAfter(log.last_seq()), 0);
  EXPECT_EQ(log.BytesAfter(log.last_seq() - 1), sizes.back());
  EXPECT_EQ(log.BytesAfter(log.last_seq() - 2), sizes[18] + sizes[19]);
  // A reader older than the window trails by everything retained.
  EXPECT_EQ(log.BytesAfter(oldest - 1), log.retained_bytes());
  EXPECT_EQ(log.BytesAfter(1), log.retained_bytes());
  EXPECT_EQ(log.BytesAfter(oldest), log.retained_bytes() - sizes[oldest - 1]);
}

TEST(EventLogTest, SeqSetByCallerIsOverwritten) {
  EventLog log(Unbounded());
  v1::OutputEvent event = StreamEvent("x");
  event.set_seq(42);
  EXPECT_EQ(log.Append(event)->seq(), 1);
}

TEST(EventLogTest, HonoursFirstSeq) {
  EventLog log({.max_bytes = 1 << 20, .first_seq = 101});
  EXPECT_EQ(log.last_seq(), 100);
  EXPECT_EQ(log.oldest_retained_seq(), 0);
  EXPECT_EQ(log.Append(StreamEvent("a"))->seq(), 101);
  EXPECT_EQ(log.Append(StreamEvent("b"))->seq(), 102);
  EXPECT_EQ(log.oldest_retained_seq(), 101);
  auto events = log.ReadAfter(100, 0);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_THAT(Seqs(*events), ::testing::ElementsAre(101, 102));
}

TEST(EventLogTest, FirstSeqBeforeAnyEventIsOutOfRangeBelowIt) {
  EventLog log({.max_bytes = 1 << 20, .first_seq = 101});
  EXPECT_TRUE(log.ReadAfter(100, 0).ok());  // "only new events"
  EXPECT_TRUE(log.ReadAfter(0, 0).ok());
  auto stale = log.ReadAfter(50, 0);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(stale.status().message(), HasSubstr("101"));
}

TEST(EventLogTest, ReadAfterRangesAndMaxEvents) {
  EventLog log(Unbounded());
  for (int i = 0; i < 10; ++i) log.Append(StreamEvent("x"));

  auto all = log.ReadAfter(0, 0);
  ASSERT_TRUE(all.ok());
  EXPECT_THAT(Seqs(*all), ::testing::ElementsAre(1, 2, 3, 4, 5, 6, 7, 8, 9, 10));

  auto tail = log.ReadAfter(7, 0);
  ASSERT_TRUE(tail.ok());
  EXPECT_THAT(Seqs(*tail), ::testing::ElementsAre(8, 9, 10));

  auto page = log.ReadAfter(2, 3);
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(Seqs(*page), ::testing::ElementsAre(3, 4, 5));

  auto first_page = log.ReadAfter(0, 2);
  ASSERT_TRUE(first_page.ok());
  EXPECT_THAT(Seqs(*first_page), ::testing::ElementsAre(1, 2));

  auto none = log.ReadAfter(10, 0);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST(EventLogTest, ReadAfterOnEmptyLog) {
  EventLog log(Unbounded());
  auto events = log.ReadAfter(0, 0);
  ASSERT_TRUE(events.ok());
  EXPECT_TRUE(events->empty());
  EXPECT_EQ(log.ReadAfter(1, 0).status().code(), absl::StatusCode::kOutOfRange);
}

TEST(EventLogTest, ReadAfterErrors) {
  EventLog log(Unbounded());
  for (int i = 0; i < 3; ++i) log.Append(StreamEvent("x"));

  auto negative = log.ReadAfter(-1, 0);
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(negative.status().message(), HasSubstr("after_seq"));

  auto beyond = log.ReadAfter(4, 0);
  EXPECT_EQ(beyond.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(beyond.status().message(), HasSubstr("last seq 3"));
}

TEST(EventLogTest, EvictsOldestByBytesAndKeepsTheNewest) {
  const std::string payload(1000, 'p');
  const int64_t one_event = static_cast<int64_t>(StreamEvent(payload).ByteSizeLong());
  // Room for about three events (seq and time add a few bytes each).
  EventLog log({.max_bytes = one_event * 3 + 60});
  for (int i = 0; i < 10; ++i) log.Append(StreamEvent(payload));

  EXPECT_EQ(log.last_seq(), 10);
  EXPECT_EQ(log.oldest_retained_seq(), 8);
  EXPECT_LE(log.retained_bytes(), one_event * 3 + 60);
  EXPECT_GT(log.retained_bytes(), one_event * 2);

  auto evicted = log.ReadAfter(5, 0);
  EXPECT_EQ(evicted.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(evicted.status().message(), HasSubstr("oldest retained seq is 8"));

  // after_seq just before the oldest retained one loses nothing.
  auto edge = log.ReadAfter(7, 0);
  ASSERT_TRUE(edge.ok()) << edge.status();
  EXPECT_THAT(Seqs(*edge), ::testing::ElementsAre(8, 9, 10));

  // 0 is never out of range: it starts from the oldest retained event.
  auto from_start = log.ReadAfter(0, 0);
  ASSERT_TRUE(from_start.ok());
  EXPECT_THAT(Seqs(*from_start), ::testing::ElementsAre(8, 9, 10));
}

TEST(EventLogTest, KeepsTheNewestEventEvenIfLargerThanTheBound) {
  EventLog log({.max_bytes = 10});
  log.Append(StreamEvent("small"));
  log.Append(StreamEvent(std::string(5000, 'b')));
  EXPECT_EQ(log.retained_events(), 1u);
  EXPECT_EQ(log.oldest_retained_seq(), 2);
  EXPECT_GT(log.retained_bytes(), 5000);
  auto events = log.ReadAfter(1, 0);
  ASSERT_TRUE(events.ok());
  EXPECT_THAT(Seqs(*events), ::testing::ElementsAre(2));
}

TEST(EventLogTest, RetainedBytesMatchesStoredEvents) {
  EventLog log(Unbounded());
  int64_t total = 0;
  for (int i = 0; i < 4; ++i)
    total += log.Append(StreamEvent(std::string(i * 10, 'z')))->ByteSizeLong();
  EXPECT_EQ(log.retained_bytes(), total);
}

TEST(EventLogTest, ReadersShareTheSameEventObject) {
  EventLog log(Unbounded());
  EventLog::EventPtr appended = log.Append(StreamEvent("shared"));
  auto a = log.ReadAfter(0, 0);
  auto b = log.ReadAfter(0, 0);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->size(), 1u);
  ASSERT_EQ(b->size(), 1u);
  EXPECT_EQ((*a)[0].get(), (*b)[0].get());
  EXPECT_EQ((*a)[0].get(), appended.get());
}

TEST(EventLogTest, WaiterWokenAtOnceWhenEventsAlreadyExist) {
  EventLog log(Unbounded());
  log.Append(StreamEvent("x"));
  int wakes = 0;
  log.WaitForEvents(0, [&] { ++wakes; });
  EXPECT_EQ(wakes, 1);  // synchronously
  log.Append(StreamEvent("y"));
  EXPECT_EQ(wakes, 1);
}

TEST(EventLogTest, WaiterWokenOnceByLaterAppend) {
  EventLog log(Unbounded());
  log.Append(StreamEvent("x"));
  int wakes = 0;
  log.WaitForEvents(1, [&] { ++wakes; });
  EXPECT_EQ(wakes, 0);
  log.Append(StreamEvent("y"));
  EXPECT_EQ(wakes, 1);
  log.Append(StreamEvent("z"));
  log.Close();
  EXPECT_EQ(wakes, 1);
}

TEST(EventLogTest, WaiterAheadOfTheLogWaitsForItsSeq) {
  EventLog log(Unbounded());
  int wakes = 0;
  log.WaitForEvents(2, [&] { ++wakes; });
  log.Append(StreamEvent("1"));
  log.Append(StreamEvent("2"));
  EXPECT_EQ(wakes, 0);
  log.Append(StreamEvent("3"));
  EXPECT_EQ(wakes, 1);
}

TEST(EventLogTest, WaiterWokenByAppendOnAnotherThread) {
  EventLog log(Unbounded());
  absl::Notification woken;
  std::thread::id wake_thread;
  log.WaitForEvents(0, [&] {
    wake_thread = std::this_thread::get_id();
    woken.Notify();
  });
  std::thread appender([&] { log.Append(StreamEvent("x")); });
  ASSERT_TRUE(woken.WaitForNotificationWithTimeout(kDeadline));
  appender.join();
  EXPECT_NE(wake_thread, std::this_thread::get_id());
}

TEST(EventLogTest, CloseWakesWaitersAndLaterWaits) {
  EventLog log(Unbounded());
  int first = 0;
  int second = 0;
  log.WaitForEvents(0, [&] { ++first; });
  log.WaitForEvents(5, [&] { ++second; });
  EXPECT_FALSE(log.closed());
  log.Close();
  EXPECT_TRUE(log.closed());
  EXPECT_EQ(first, 1);
  EXPECT_EQ(second, 1);
  log.Close();  // idempotent
  EXPECT_EQ(first, 1);

  int late = 0;
  log.WaitForEvents(0, [&] { ++late; });
  EXPECT_EQ(late, 1);
}

TEST(EventLogTest, CancelWaitStopsWakes) {
  EventLog log(Unbounded());
  int wakes = 0;
  const EventLog::WaitId id = log.WaitForEvents(0, [&] { ++wakes; });
  log.CancelWait(id);
  log.Append(StreamEvent("x"));
  log.Close();
  EXPECT_EQ(wakes, 0);
  log.CancelWait(id);  // unknown by now: no-op
}

TEST(EventLogTest, CancelWaitDestroysTheCallback) {
  EventLog log(Unbounded());
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> weak = token;
  const EventLog::WaitId id = log.WaitForEvents(0, [token = std::move(token)] {});
  EXPECT_FALSE(weak.expired());
  log.CancelWait(id);
  EXPECT_TRUE(weak.expired());
}

TEST(EventLogTest, CancelWaitFromInsideTheCallbackDoesNotDeadlock) {
  EventLog log(Unbounded());
  int wakes = 0;
  EventLog::WaitId id = 0;
  id = log.WaitForEvents(0, [&] {
    ++wakes;
    log.CancelWait(id);
  });
  log.Append(StreamEvent("x"));
  EXPECT_EQ(wakes, 1);
}

TEST(EventLogTest, CallbackMayCallBackIntoTheLog) {
  EventLog log(Unbounded());
  std::vector<int64_t> seen;
  int64_t last = 0;
  // A follower in the style of a stream reactor: read what is there, then wait again.
  std::function<void()> on_wake = [&] {
    auto events = log.ReadAfter(last, 0);
    ASSERT_TRUE(events.ok());
    for (const auto& event : *events) seen.push_back(event->seq());
    if (!events->empty()) last = events->back()->seq();
    if (!log.closed()) log.WaitForEvents(last, [&] { on_wake(); });
  };
  log.WaitForEvents(0, [&] { on_wake(); });
  for (int i = 0; i < 5; ++i) log.Append(StreamEvent("x"));
  log.Close();
  EXPECT_THAT(seen, ::testing::ElementsAre(1, 2, 3, 4, 5));
}

TEST(EventLogTest, CancelWaitBlocksWhileTheCallbackRunsOnAnotherThread) {
  EventLog log(Unbounded());
  absl::Notification entered;
  absl::Notification release;
  std::atomic<bool> finished{false};
  const EventLog::WaitId id = log.WaitForEvents(0, [&] {
    entered.Notify();
    ASSERT_TRUE(release.WaitForNotificationWithTimeout(kDeadline));
    finished = true;
  });
  std::thread appender([&] { log.Append(StreamEvent("x")); });
  ASSERT_TRUE(entered.WaitForNotificationWithTimeout(kDeadline));

  absl::Notification cancelled;
  std::thread canceller([&] {
    log.CancelWait(id);
    EXPECT_TRUE(finished.load());  // returned only after the callback did
    cancelled.Notify();
  });
  // While the callback is held, CancelWait must not return.
  EXPECT_FALSE(cancelled.WaitForNotificationWithTimeout(absl::Milliseconds(100)));
  release.Notify();
  EXPECT_TRUE(cancelled.WaitForNotificationWithTimeout(kDeadline));
  canceller.join();
  appender.join();
}

TEST(EventLogTest, CancelWaitOfATakenButNotStartedWakeSkipsIt) {
  // Two waiters woken by the same Append run one after the other; the first cancels the
  // second, which must then never run.
  EventLog log(Unbounded());
  int second_wakes = 0;
  EventLog::WaitId second = 0;
  log.WaitForEvents(0, [&] { log.CancelWait(second); });
  second = log.WaitForEvents(0, [&] { ++second_wakes; });
  log.Append(StreamEvent("x"));
  EXPECT_EQ(second_wakes, 0);
}

TEST(EventLogTest, WakeupsDeferredRunWhenItEndsOnTheAppendingThread) {
  // An owner appending under its own lock wakes its readers after releasing it.
  EventLog log(Unbounded());
  absl::Mutex owner_lock;
  int wakes = 0;
  bool lock_held_at_wake = true;
  std::thread::id wake_thread;
  log.WaitForEvents(0, [&] {
    ++wakes;
    wake_thread = std::this_thread::get_id();
    lock_held_at_wake = !owner_lock.TryLock();
    if (!lock_held_at_wake) owner_lock.Unlock();
  });
  {
    EventLog::WakeupsDeferred deferred(log);
    absl::MutexLock lock(&owner_lock);
    log.Append(StreamEvent("x"));
    EXPECT_EQ(wakes, 0);
    EXPECT_EQ(log.last_seq(), 1);  // the event itself is there at once
  }
  EXPECT_EQ(wakes, 1);
  EXPECT_FALSE(lock_held_at_wake);
  EXPECT_EQ(wake_thread, std::this_thread::get_id());
}

TEST(EventLogTest, NestedWakeupsDeferredRunAtTheOutermostEnd) {
  EventLog log(Unbounded());
  int first = 0;
  int second = 0;
  log.WaitForEvents(0, [&] { ++first; });
  {
    EventLog::WakeupsDeferred outer(log);
    {
      EventLog::WakeupsDeferred inner(log);
      log.Append(StreamEvent("x"));
    }
    EXPECT_EQ(first, 0);
    log.WaitForEvents(1, [&] { ++second; });
    log.Close();
    EXPECT_EQ(second, 0);
  }
  EXPECT_EQ(first, 1);
  EXPECT_EQ(second, 1);
}

TEST(EventLogTest, WakeupsDeferredHoldsOnlyItsOwnThreadsWakeups) {
  EventLog log(Unbounded());
  absl::Notification woken;
  log.WaitForEvents(0, [&] { woken.Notify(); });
  EventLog::WakeupsDeferred deferred(log);
  std::thread appender([&] { log.Append(StreamEvent("x")); });
  EXPECT_TRUE(woken.WaitForNotificationWithTimeout(kDeadline));
  appender.join();
}

TEST(EventLogTest, CancelWaitOfADeferredWakeDropsItWithoutWaiting) {
  EventLog log(Unbounded());
  int wakes = 0;
  const EventLog::WaitId id = log.WaitForEvents(0, [&] { ++wakes; });
  {
    EventLog::WakeupsDeferred deferred(log);
    log.Append(StreamEvent("x"));
    absl::Notification cancelled;
    std::thread canceller([&] {
      log.CancelWait(id);
      cancelled.Notify();
    });
    EXPECT_TRUE(cancelled.WaitForNotificationWithTimeout(kDeadline));
    canceller.join();
  }
  EXPECT_EQ(wakes, 0);
}

TEST(EventLogTest, ConcurrentAppendersAndReadersSeeAGapFreeSequence) {
  constexpr int kAppenders = 4;
  constexpr int kPerAppender = 2000;
  constexpr int kReaders = 3;
  constexpr int64_t kTotal = kAppenders * kPerAppender;
  EventLog log(Unbounded());

  std::vector<std::vector<int64_t>> seen(kReaders);
  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&log, &seen, r] {
      int64_t last = 0;
      const absl::Time deadline = absl::Now() + kDeadline;
      while (last < kTotal && absl::Now() < deadline) {
        absl::Notification ready;
        const EventLog::WaitId id = log.WaitForEvents(last, [&ready] { ready.Notify(); });
        if (!ready.WaitForNotificationWithTimeout(deadline - absl::Now())) {
          log.CancelWait(id);
          break;
        }
        auto events = log.ReadAfter(last, 100);
        ASSERT_TRUE(events.ok()) << events.status();
        for (const auto& event : *events) {
          seen[r].push_back(event->seq());
          last = event->seq();
        }
      }
    });
  }
  std::vector<std::thread> appenders;
  for (int a = 0; a < kAppenders; ++a) {
    appenders.emplace_back([&log] {
      for (int i = 0; i < kPerAppender; ++i) log.Append(StreamEvent("x"));
    });
  }
  for (auto& t : appenders) t.join();
  for (auto& t : readers) t.join();

  EXPECT_EQ(log.last_seq(), kTotal);
  for (int r = 0; r < kReaders; ++r) {
    ASSERT_EQ(static_cast<int64_t>(seen[r].size()), kTotal) << "reader " << r;
    for (int64_t i = 0; i < kTotal; ++i) ASSERT_EQ(seen[r][i], i + 1) << "reader " << r;
  }
}

TEST(EventLogTest, SlowReaderFallsBehindWithoutBlockingAppend) {
  const int64_t one_event = static_cast<int64_t>(StreamEvent("x").ByteSizeLong()) + 20;
  EventLog log({.max_bytes = one_event * 4});
  // A reader parks and never reads; appends go on regardless.
  int wakes = 0;
  log.WaitForEvents(0, [&] { ++wakes; });
  for (int i = 0; i < 1000; ++i) log.Append(StreamEvent("x"));
  EXPECT_EQ(wakes, 1);
  EXPECT_EQ(log.last_seq(), 1000);
  auto behind = log.ReadAfter(1, 0);
  EXPECT_EQ(behind.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(behind.status().message(), HasSubstr(std::to_string(log.oldest_retained_seq())));
}

}  // namespace
}  // namespace cellgate::session
