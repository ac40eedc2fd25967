#pragma once

#include <atomic>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "cellgate/v1/execution.pb.h"

namespace cellgate::session {

// The per-kernel log of output events: a bounded (by bytes) window of seq-numbered, immutable
// events that any number of readers replay and follow at their own pace.
//
// - `Append` numbers each event (seq strictly increasing, never reused), stamps its time,
//   stores it as a shared immutable event (readers share one object, nothing is copied per
//   subscriber) and evicts the oldest events while the retained bytes exceed `max_bytes`
//   (the newest event is always kept, whatever its size).
// - Readers pull with `ReadAfter(last_seen_seq)` and park with `WaitForEvents`. The log keeps
//   no per-reader queue, so a slow reader never blocks `Append` or other readers: one that
//   falls behind eviction gets OUT_OF_RANGE from `ReadAfter`.
//
// Thread-safe. Wake callbacks run without the log's lock held, on the thread that appends (or
// closes, or calls `WaitForEvents` when events are already there), so they may call back into
// the log; they should be short (e.g. start a gRPC write), since `Append` runs them before
// returning — or, while that thread holds a `WakeupsDeferred`, when the outermost one ends.
class EventLog {
 public:
  using EventPtr = std::shared_ptr<const v1::OutputEvent>;
  using WaitId = uint64_t;

  struct Options {
    // Bound on the retained events' serialized size (`ByteSizeLong`), in bytes.
    int64_t max_bytes = 64 << 20;
    // The seq of the first event appended: > 1 lets a restored kernel continue its numbering.
    int64_t first_seq = 1;
  };

  // While one exists on a thread, the wakeups that thread's `Append`s and `Close` would run
  // are held, and run when it is destroyed (the outermost one, when nested). An owner that
  // appends under a lock of its own declares one before taking that lock: readers are woken,
  // and write to their clients' streams, after the lock is released rather than under it.
  class WakeupsDeferred {
   public:
    explicit WakeupsDeferred(EventLog& log);  // no lock: what it holds is the thread's own
    ~WakeupsDeferred() ABSL_LOCKS_EXCLUDED(log_.mu_);
    WakeupsDeferred(const WakeupsDeferred&) = delete;
    WakeupsDeferred& operator=(const WakeupsDeferred&) = delete;

   private:
    EventLog& log_;
  };

  explicit EventLog(Options options);
  // Waiters still registered are dropped without being called: `Close` first to wake them.
  // No callback may be running (the owner must outlive every `Append`/`Close` call).
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // Sets `event.seq` and `event.time` (now), stores the event, evicts old ones, then wakes the
  // waiters whose `after_seq` is below the new seq. Returns the stored event. Appending after
  // `Close` still records the event (no waiter can be parked by then).
  EventPtr Append(v1::OutputEvent event) ABSL_LOCKS_EXCLUDED(mu_);

  // The seq of the newest event; `first_seq - 1` (0 by default) before the first append.
  int64_t last_seq() const ABSL_LOCKS_EXCLUDED(mu_);
  // The seq of the oldest retained event; 0 while the log is empty.
  int64_t oldest_retained_seq() const ABSL_LOCKS_EXCLUDED(mu_);
  // Serialized size of the retained events, in bytes.
  int64_t retained_bytes() const ABSL_LOCKS_EXCLUDED(mu_);
  // Number of retained events.
  size_t retained_events() const ABSL_LOCKS_EXCLUDED(mu_);
  // Serialized size of the events newer than `seq`: how far a reader that has seen `seq` is
  // behind. O(1). A `seq` older than what is retained counts every retained event.
  int64_t BytesAfter(int64_t seq) const ABSL_LOCKS_EXCLUDED(mu_);

  // The retained events with seq > `after_seq`, oldest first, at most `max_events` of them
  // (0 = no limit). Empty when there is nothing newer.
  //   - after_seq = 0: from the oldest retained event; never an error.
  //   - after_seq < 0: INVALID_ARGUMENT.
  //   - after_seq > last_seq(): OUT_OF_RANGE naming last_seq.
  //   - seq after_seq + 1 no longer retained (evicted, or before `first_seq`): OUT_OF_RANGE
  //     naming the oldest retained seq.
  absl::StatusOr<std::vector<EventPtr>> ReadAfter(int64_t after_seq, size_t max_events) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Calls `wake` exactly once, when an event with seq > `after_seq` exists or the log is
  // closed, whichever comes first. If that is already so, `wake` runs synchronously, before
  // this returns. Otherwise it runs later on the thread of the `Append` (or `Close`) that
  // satisfies it. Returns an id for `CancelWait` (cancelling a wait already woken is a no-op).
  WaitId WaitForEvents(int64_t after_seq, absl::AnyInvocable<void()> wake) ABSL_LOCKS_EXCLUDED(mu_);

  // Withdraws a wait. When it returns, that wait's callback is neither running nor will it
  // ever run (it has been destroyed), with one exception: called from inside that very
  // callback, it returns at once (the callback is the caller). If the callback is running on
  // another thread, this blocks until it has returned, so the caller must not hold a lock the
  // callback takes. Unknown or already finished ids are a no-op.
  void CancelWait(WaitId id) ABSL_LOCKS_EXCLUDED(mu_);

  // Marks the log closed (the kernel is gone) and wakes every waiter; later waits are woken
  // at once. Idempotent.
  void Close() ABSL_LOCKS_EXCLUDED(mu_);
  bool closed() const ABSL_LOCKS_EXCLUDED(mu_);

  // How many streams are reading this log right now (a kernel with readers isn't idle).
  void AddReader() { readers_.fetch_add(1); }
  void RemoveReader() { readers_.fetch_sub(1); }
  int readers() const { return readers_.load(); }

 private:
  struct Waiter {
    int64_t after_seq;
    absl::AnyInvocable<void()> wake;
  };
  // A wait taken out of `waiters_` by an Append or Close, to be run by that thread.
  struct InFlight {
    std::thread::id thread;           // the thread that runs it
    bool started = false;             // `wake` was moved out and is running (or just ran)
    absl::AnyInvocable<void()> wake;  // until started
  };
  struct Entry {
    EventPtr event;
    int64_t bytes;       // ByteSizeLong
    int64_t end_offset;  // bytes appended in all, this event included
  };

  // Moves the waiters that `pred` selects from `waiters_` to `in_flight_`, on this thread, and
  // returns their ids.
  template <typename Pred>
  std::vector<WaitId> TakeWaiters(Pred pred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Keeps `ids` for this thread's `WakeupsDeferred`, if it is inside one, and clears them.
  void DeferIfAskedLocked(std::vector<WaitId>& ids) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs the taken callbacks not cancelled meanwhile, one at a time, without holding `mu_`.
  void RunWakeups(const std::vector<WaitId>& ids) ABSL_LOCKS_EXCLUDED(mu_);
  int64_t FirstRetainedSeq() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::atomic<int> readers_{0};
  const int64_t max_bytes_;
  const int64_t first_seq_;

  mutable absl::Mutex mu_;
  absl::CondVar wakeup_done_;  // signalled when an in-flight callback finishes
  // Retained events; their seqs are consecutive, so the one with seq s is at s - front's seq.
  std::deque<Entry> events_ ABSL_GUARDED_BY(mu_);
  int64_t next_seq_ ABSL_GUARDED_BY(mu_);
  int64_t retained_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t appended_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // ever appended
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  WaitId next_wait_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<WaitId, Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  std::map<WaitId, InFlight> in_flight_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellgate::session
