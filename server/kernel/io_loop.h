#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace cellgate::kernel {

// Something that has ZMQ sockets or fds for the I/O loop to poll. Called on the loop thread only.
class PollSource {
 public:
  virtual ~PollSource() = default;
  // Appends the items to poll this round.
  virtual void AppendPollItems(std::vector<zmq_pollitem_t>& items) = 0;
  // Called after a poll with exactly the items this source appended, `revents` filled in.
  virtual void OnPolled(std::span<const zmq_pollitem_t> items) = 0;
};

// One thread that serves every kernel: polls all sockets and fds, runs timers, and runs tasks
// posted from other threads. ZMQ sockets are only ever touched on this thread.
class KernelIoLoop {
 public:
  using Task = absl::AnyInvocable<void() &&>;
  using TimerId = uint64_t;

  KernelIoLoop();
  ~KernelIoLoop();  // stops the thread; tasks already posted still run, timers do not
  KernelIoLoop(const KernelIoLoop&) = delete;
  KernelIoLoop& operator=(const KernelIoLoop&) = delete;

  zmq::context_t& zmq_context() { return context_; }

  // Runs `task` on the loop thread soon. Thread-safe.
  void Post(Task task) ABSL_LOCKS_EXCLUDED(mutex_);

  // Runs `task` on the loop thread and waits for it. Must not be called on the loop thread.
  void RunAndWait(Task task);

  // Runs `task` on the loop thread after `delay`. Thread-safe; there is no cancel: a task that
  // may have become moot checks for itself (e.g. through a weak_ptr or a generation number).
  void PostAfter(absl::Duration delay, Task task);

  bool IsLoopThread() const { return std::this_thread::get_id() == thread_id_; }

  // Loop thread only.
  TimerId RunAfter(absl::Duration delay, Task task);
  void CancelTimer(TimerId id);
  void AddPollSource(std::shared_ptr<PollSource> source);
  void RemovePollSource(const PollSource* source);
  size_t poll_source_count() const { return sources_.size(); }

 private:
  void Run();
  void DrainWakeups();
  void RunPostedTasks() ABSL_LOCKS_EXCLUDED(mutex_);
  void RunDueTimers();
  long PollTimeoutMs() const;

  zmq::context_t context_;
  int wakeup_fd_ = -1;  // eventfd

  absl::Mutex mutex_;
  std::deque<Task> tasks_ ABSL_GUARDED_BY(mutex_);
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;

  // Loop-thread state.
  std::vector<std::shared_ptr<PollSource>> sources_;
  std::multimap<absl::Time, std::pair<TimerId, Task>> timers_;
  TimerId next_timer_id_ = 1;

  std::thread thread_;
  std::thread::id thread_id_;
};

}  // namespace cellgate::kernel
