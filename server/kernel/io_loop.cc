#include "server/kernel/io_loop.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/synchronization/notification.h"

namespace cellgate::kernel {

KernelIoLoop::KernelIoLoop() : context_(1) {
  wakeup_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wakeup_fd_ < 0) {
    std::fprintf(stderr, "cellgate: eventfd failed: %s\n", std::strerror(errno));
    std::abort();
  }
  absl::Notification started;
  thread_ = std::thread([this, &started] {
    thread_id_ = std::this_thread::get_id();
    started.Notify();
    Run();
  });
  started.WaitForNotification();
}

KernelIoLoop::~KernelIoLoop() {
  {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
  }
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t written = ::write(wakeup_fd_, &one, sizeof(one));
  thread_.join();
  ::close(wakeup_fd_);
}

void KernelIoLoop::Post(Task task) {
  bool was_empty;
  {
    absl::MutexLock lock(&mutex_);
    was_empty = tasks_.empty();
    tasks_.push_back(std::move(task));
  }
  if (was_empty) {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t written = ::write(wakeup_fd_, &one, sizeof(one));
  }
}

void KernelIoLoop::PostAfter(absl::Duration delay, Task task) {
  Post([this, delay, task = std::move(task)]() mutable { RunAfter(delay, std::move(task)); });
}

void KernelIoLoop::RunAndWait(Task task) {
  absl::Notification done;
  Post([&task, &done]() mutable {
    std::move(task)();
    done.Notify();
  });
  done.WaitForNotification();
}

KernelIoLoop::TimerId KernelIoLoop::RunAfter(absl::Duration delay, Task task) {
  const TimerId id = next_timer_id_++;
  timers_.emplace(absl::Now() + delay, std::make_pair(id, std::move(task)));
  return id;
}

void KernelIoLoop::CancelTimer(TimerId id) {
  for (auto it = timers_.begin(); it != timers_.end(); ++it) {
    if (it->second.first == id) {
      timers_.erase(it);
      return;
    }
  }
}

void KernelIoLoop::AddPollSource(std::shared_ptr<PollSource> source) {
  sources_.push_back(std::move(source));
}

void KernelIoLoop::RemovePollSource(const PollSource* source) {
  // Null it out rather than erase: Run() may be iterating. Compacted after each round.
  for (auto& entry : sources_) {
    if (entry.get() == source) entry.reset();
  }
}

void KernelIoLoop::DrainWakeups() {
  uint64_t count;
  while (::read(wakeup_fd_, &count, sizeof(count)) > 0) {
  }
}

void KernelIoLoop::RunPostedTasks() {
  std::deque<Task> batch;
  {
    absl::MutexLock lock(&mutex_);
    batch.swap(tasks_);
  }
  for (Task& task : batch) std::move(task)();
}

void KernelIoLoop::RunDueTimers() {
  const absl::Time now = absl::Now();
  while (!timers_.empty() && timers_.begin()->first <= now) {
    Task task = std::move(timers_.begin()->second.second);
    timers_.erase(timers_.begin());
    std::move(task)();
  }
}

long KernelIoLoop::PollTimeoutMs() const {
  if (timers_.empty()) return -1;
  const absl::Duration until = timers_.begin()->first - absl::Now();
  if (until <= absl::ZeroDuration()) return 0;
  return static_cast<long>(absl::ToInt64Milliseconds(absl::Ceil(until, absl::Milliseconds(1))));
}

void KernelIoLoop::Run() {
  std::vector<zmq_pollitem_t> items;
  std::vector<std::pair<size_t, size_t>> ranges;  // per source: [begin, end) in items
  while (true) {
    {
      absl::MutexLock lock(&mutex_);
      if (stopping_) break;
    }
    items.clear();
    ranges.clear();
    items.push_back(zmq_pollitem_t{nullptr, wakeup_fd_, ZMQ_POLLIN, 0});
    const size_t source_count = sources_.size();
    for (size_t i = 0; i < source_count; ++i) {
      const size_t begin = items.size();
      if (sources_[i]) sources_[i]->AppendPollItems(items);
      ranges.emplace_back(begin, items.size());
    }
    const int rc = zmq_poll(items.data(), static_cast<int>(items.size()), PollTimeoutMs());
    if (rc < 0 && zmq_errno() != EINTR) {
      std::fprintf(stderr, "cellgate: zmq_poll failed: %s\n", zmq_strerror(zmq_errno()));
    }
    if (rc > 0) {
      if (items[0].revents & ZMQ_POLLIN) DrainWakeups();
      for (size_t i = 0; i < source_count; ++i) {
        const auto [begin, end] = ranges[i];
        if (begin == end) continue;
        bool any = false;
        for (size_t j = begin; j < end; ++j) any |= items[j].revents != 0;
        // Keep the source alive while it handles its events (it may remove itself).
        std::shared_ptr<PollSource> source = sources_[i];
        if (any && source) source->OnPolled(std::span(items).subspan(begin, end - begin));
      }
    }
    RunPostedTasks();
    RunDueTimers();
    std::erase(sources_, nullptr);
  }
  // Release sources and timers on this thread: their destructors close ZMQ sockets.
  timers_.clear();
  sources_.clear();
  RunPostedTasks();
}

}  // namespace cellgate::kernel
