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

// Something that has ZMQ sockets or fds for the I/O loop to watch. Called on the loop thread only.
class PollSource {
 public:
  virtual ~PollSource() = default;
  // Appends the items to watch. Asked once, when the source is added; the sockets and fds must
  // stay open until the source is removed.
  virtual void AppendPollItems(std::vector<zmq_pollitem_t>& items) = 0;
  // Called when some of the items are ready, with exactly the items this source appended and
  // `revents` filled in (zero for those not ready). Sources ready in the same round are called in
  // the order they were added. A handler need not read a socket empty: the
  // loop looks at the source's sockets again in the next round.
  virtual void OnPolled(std::span<const zmq_pollitem_t> items) = 0;
};

// One thread that serves every kernel: watches all sockets and fds, runs timers, and runs tasks
// posted from other threads. ZMQ sockets are only ever touched on this thread.
//
// Sockets and fds are watched with epoll (a ZMQ socket through its ZMQ_FD), so a round costs what
// is ready, not what is registered: an idle kernel costs nothing between its heartbeats.
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
  // A source calls this after sending on one of its ZMQ sockets outside OnPolled: a send may
  // consume the socket's readiness signal, so its sockets are looked at in the next round.
  void CheckSoon(const PollSource* source);
  size_t poll_source_count() const { return registrations_.size(); }

 private:
  // A source's items, and the fd epoll watches for each (a ZMQ socket's ZMQ_FD).
  struct Registration {
    std::shared_ptr<PollSource> source;
    std::vector<zmq_pollitem_t> items;
    std::vector<int> watched_fds;
    std::vector<int> owned_fds;     // dups made when an fd was already watched for another source
    std::vector<short> fd_revents;  // what epoll reported for plain fds this round
    bool has_sockets = false;
    bool due = false;  // in due_ for this round
  };

  void Run();
  void ServeDueSources();
  void Unwatch(Registration& registration);
  void DrainWakeups();
  void RunPostedTasks() ABSL_LOCKS_EXCLUDED(mutex_);
  void RunDueTimers();
  long PollTimeoutMs() const;

  zmq::context_t context_;
  int wakeup_fd_ = -1;  // eventfd
  int epoll_fd_ = -1;

  absl::Mutex mutex_;
  std::deque<Task> tasks_ ABSL_GUARDED_BY(mutex_);
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;

  // Loop-thread state.
  std::map<uint64_t, Registration> registrations_;  // by registration id
  std::map<const PollSource*, uint64_t> registration_ids_;
  uint64_t next_registration_id_ = 1;
  std::vector<uint64_t> due_;          // sources to serve this round
  std::vector<uint64_t> check_soon_;   // sources whose sockets are looked at next round
  std::vector<zmq_pollitem_t> scratch_items_;
  std::multimap<absl::Time, std::pair<TimerId, Task>> timers_;
  TimerId next_timer_id_ = 1;

  std::thread thread_;
  std::thread::id thread_id_;
};

}  // namespace cellgate::kernel
