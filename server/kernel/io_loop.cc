#include "server/kernel/io_loop.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/synchronization/notification.h"

namespace cellgate::kernel {
namespace {

// epoll_event.data of the wakeup eventfd; a source's item is (registration id << 16) | index.
constexpr uint64_t kWakeupTag = 0;
constexpr size_t kMaxItemsPerSource = 1 << 16;

[[noreturn]] void DieOnSetupError(const char* what) {
  std::fprintf(stderr, "cellgate: %s failed: %s\n", what, std::strerror(errno));
  std::abort();
}

uint32_t EpollEventsFor(short zmq_events) {
  uint32_t events = 0;
  if (zmq_events & ZMQ_POLLIN) events |= EPOLLIN;
  if (zmq_events & ZMQ_POLLOUT) events |= EPOLLOUT;
  if (zmq_events & ZMQ_POLLPRI) events |= EPOLLPRI;
  return events;
}

// As zmq_poll reports a plain fd: anything beyond in/out/pri is an error.
short ZmqEventsFor(uint32_t epoll_events) {
  short events = 0;
  if (epoll_events & EPOLLIN) events |= ZMQ_POLLIN;
  if (epoll_events & EPOLLOUT) events |= ZMQ_POLLOUT;
  if (epoll_events & EPOLLPRI) events |= ZMQ_POLLPRI;
  if (epoll_events & ~static_cast<uint32_t>(EPOLLIN | EPOLLOUT | EPOLLPRI)) events |= ZMQ_POLLERR;
  return events;
}

// What a ZMQ socket is ready for now (reading ZMQ_EVENTS also re-arms its ZMQ_FD).
short SocketReadiness(void* socket) {
  int events = 0;
  size_t size = sizeof(events);
  if (zmq_getsockopt(socket, ZMQ_EVENTS, &events, &size) != 0) return ZMQ_POLLERR;
  return static_cast<short>(events);
}

}  // namespace

KernelIoLoop::KernelIoLoop() : context_(1) {
  wakeup_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wakeup_fd_ < 0) DieOnSetupError("eventfd");
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) DieOnSetupError("epoll_create1");
  epoll_event wakeup{};
  wakeup.events = EPOLLIN;
  wakeup.data.u64 = kWakeupTag;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wakeup_fd_, &wakeup) != 0) DieOnSetupError("epoll_ctl");
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
  ::close(epoll_fd_);
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
  const uint64_t id = next_registration_id_++;
  Registration& registration = registrations_[id];
  source->AppendPollItems(registration.items);
  if (registration.items.size() > kMaxItemsPerSource) {
    std::fprintf(stderr, "cellgate: a poll source has %zu items\n", registration.items.size());
    std::abort();
  }
  registration.fd_revents.assign(registration.items.size(), 0);
  for (size_t index = 0; index < registration.items.size(); ++index) {
    const zmq_pollitem_t& item = registration.items[index];
    int fd = item.fd;
    uint32_t events = EpollEventsFor(item.events);
    if (item.socket != nullptr) {
      size_t size = sizeof(fd);
      if (zmq_getsockopt(item.socket, ZMQ_FD, &fd, &size) != 0) DieOnSetupError("ZMQ_FD");
      events = EPOLLIN;  // ZMQ_FD signals any change of ZMQ_EVENTS
      registration.has_sockets = true;
    }
    epoll_event event{};
    event.events = events;
    event.data.u64 = (id << 16) | index;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0 && errno == EEXIST) {
      // The same fd for two items: epoll watches each (fd, file) pair once, so watch a dup.
      fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
      if (fd < 0) DieOnSetupError("dup");
      registration.owned_fds.push_back(fd);
      if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) DieOnSetupError("epoll_ctl");
    }
    registration.watched_fds.push_back(fd);
  }
  registration_ids_[source.get()] = id;
  registration.source = std::move(source);
  // Whatever is already queued on a socket has signalled before we watched it.
  CheckSoon(registration.source.get());
}

void KernelIoLoop::Unwatch(Registration& registration) {
  for (int fd : registration.watched_fds) ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  for (int fd : registration.owned_fds) ::close(fd);
  registration.watched_fds.clear();
  registration.owned_fds.clear();
}

void KernelIoLoop::RemovePollSource(const PollSource* source) {
  auto id = registration_ids_.find(source);
  if (id == registration_ids_.end()) return;
  auto registration = registrations_.find(id->second);
  Unwatch(registration->second);
  // Pending events and checks carry the id and find nothing. The source stays alive while its
  // OnPolled runs: the caller holds a reference.
  registrations_.erase(registration);
  registration_ids_.erase(id);
}

void KernelIoLoop::CheckSoon(const PollSource* source) {
  auto id = registration_ids_.find(source);
  if (id != registration_ids_.end()) check_soon_.push_back(id->second);
}

void KernelIoLoop::ServeDueSources() {
  std::sort(due_.begin(), due_.end());  // in the order they were added, whatever epoll's order
  for (const uint64_t id : due_) {
    auto found = registrations_.find(id);
    if (found == registrations_.end()) continue;
    Registration& registration = found->second;
    registration.due = false;
    scratch_items_.assign(registration.items.begin(), registration.items.end());
    bool any = false;
    for (size_t index = 0; index < scratch_items_.size(); ++index) {
      zmq_pollitem_t& item = scratch_items_[index];
      if (item.socket != nullptr) {
        item.revents = static_cast<short>(SocketReadiness(item.socket) & (item.events | ZMQ_POLLERR));
      } else {
        item.revents = registration.fd_revents[index];
        registration.fd_revents[index] = 0;
      }
      any |= item.revents != 0;
    }
    if (!any) continue;
    // A copy of the items and a reference to the source: OnPolled may remove it.
    std::shared_ptr<PollSource> source = registration.source;
    const std::vector<zmq_pollitem_t> items = scratch_items_;
    if (registration.has_sockets) check_soon_.push_back(id);  // what it left unread, next round
    source->OnPolled(items);
  }
  due_.clear();
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
  std::array<epoll_event, 256> events;
  while (true) {
    {
      absl::MutexLock lock(&mutex_);
      if (stopping_) break;
    }
    const int timeout = check_soon_.empty() ? static_cast<int>(PollTimeoutMs()) : 0;
    const int ready = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout);
    if (ready < 0 && errno != EINTR) {
      std::fprintf(stderr, "cellgate: epoll_wait failed: %s\n", std::strerror(errno));
    }
    auto make_due = [this](uint64_t id) -> Registration* {
      auto found = registrations_.find(id);
      if (found == registrations_.end()) return nullptr;
      if (!found->second.due) {
        found->second.due = true;
        due_.push_back(id);
      }
      return &found->second;
    };
    for (int i = 0; i < ready; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kWakeupTag) {
        DrainWakeups();
        continue;
      }
      Registration* registration = make_due(tag >> 16);
      if (registration == nullptr) continue;
      const size_t index = tag & (kMaxItemsPerSource - 1);
      if (registration->items[index].socket == nullptr) {
        registration->fd_revents[index] |= ZmqEventsFor(events[i].events);
      }
    }
    std::vector<uint64_t> checks;
    checks.swap(check_soon_);
    for (const uint64_t id : checks) make_due(id);
    ServeDueSources();
    RunPostedTasks();
    RunDueTimers();
  }
  // Release sources and timers on this thread: their destructors close ZMQ sockets.
  timers_.clear();
  for (auto& [id, registration] : registrations_) Unwatch(registration);
  std::map<uint64_t, Registration> registrations;
  registrations.swap(registrations_);
  registration_ids_.clear();
  registrations.clear();
  RunPostedTasks();
}

}  // namespace cellgate::kernel
