#include "server/kernel/io_loop.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <iterator>
#include <string>
#include <utility>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include <zmq_addon.hpp>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellgate::kernel {
namespace {

using ::testing::ElementsAre;

constexpr absl::Duration kDeadline = absl::Seconds(20);

TEST(KernelIoLoopTest, PostRunsOnTheLoopThread) {
  KernelIoLoop loop;
  EXPECT_FALSE(loop.IsLoopThread());
  absl::Notification ran;
  bool on_loop_thread = false;
  std::thread::id task_thread;
  loop.Post([&] {
    on_loop_thread = loop.IsLoopThread();
    task_thread = std::this_thread::get_id();
    ran.Notify();
  });
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(kDeadline));
  EXPECT_TRUE(on_loop_thread);
  EXPECT_NE(task_thread, std::this_thread::get_id());
}

TEST(KernelIoLoopTest, TasksRunInPostOrder) {
  KernelIoLoop loop;
  std::vector<int> order;  // loop thread only
  for (int i = 0; i < 200; ++i) loop.Post([&order, i] { order.push_back(i); });
  std::vector<int> seen;
  loop.RunAndWait([&] { seen = order; });
  ASSERT_EQ(seen.size(), 200u);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(seen[i], i);
}

TEST(KernelIoLoopTest, PostsFromManyThreadsAllRunInPerThreadOrder) {
  KernelIoLoop loop;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::vector<std::vector<int>> per_thread(kThreads);  // loop thread only
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&loop, &per_thread, t] {
      for (int i = 0; i < kPerThread; ++i) {
        loop.Post([&per_thread, t, i] { per_thread[t].push_back(i); });
      }
    });
  }
  for (std::thread& poster : posters) poster.join();
  std::vector<std::vector<int>> seen;
  loop.RunAndWait([&] { seen = per_thread; });
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(seen[t].size(), static_cast<size_t>(kPerThread)) << "thread " << t;
    for (int i = 0; i < kPerThread; ++i) ASSERT_EQ(seen[t][i], i);
  }
}

TEST(KernelIoLoopTest, RunAndWaitReturnsAfterTheTaskRan) {
  KernelIoLoop loop;
  for (int round = 0; round < 20; ++round) {
    std::atomic<bool> finished{false};
    loop.RunAndWait([&] {
      // Some work before the flag, so that returning early would be seen.
      volatile uint64_t sum = 0;
      for (int i = 0; i < 200000; ++i) sum = sum + i;
      finished.store(true);
    });
    ASSERT_TRUE(finished.load()) << "round " << round;
  }
}

TEST(KernelIoLoopTest, TimersFireInDeadlineOrderAndNotEarly) {
  KernelIoLoop loop;
  std::vector<int> fired;  // loop thread only
  bool early = false;
  absl::Notification done;
  loop.RunAndWait([&] {
    const absl::Time start = absl::Now();
    auto at = [&](int ms, int label) {
      loop.RunAfter(absl::Milliseconds(ms), [&, ms, label, start] {
        if (absl::Now() < start + absl::Milliseconds(ms)) early = true;
        fired.push_back(label);
      });
    };
    at(60, 3);
    at(0, 0);
    at(20, 1);
    at(40, 2);
    loop.RunAfter(absl::Milliseconds(80), [&] { done.Notify(); });
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kDeadline));
  std::vector<int> seen;
  loop.RunAndWait([&] { seen = fired; });
  EXPECT_THAT(seen, ElementsAre(0, 1, 2, 3));
  EXPECT_FALSE(early);
}

TEST(KernelIoLoopTest, CancelledTimerNeverFires) {
  KernelIoLoop loop;
  bool cancelled_fired = false;
  bool cancelled_by_timer_fired = false;
  absl::Notification done;
  loop.RunAndWait([&] {
    const KernelIoLoop::TimerId cancelled =
        loop.RunAfter(absl::Milliseconds(10), [&] { cancelled_fired = true; });
    const KernelIoLoop::TimerId later =
        loop.RunAfter(absl::Milliseconds(40), [&] { cancelled_by_timer_fired = true; });
    EXPECT_NE(cancelled, later);
    // A timer may cancel another that is not due yet.
    loop.RunAfter(absl::Milliseconds(20), [&loop, later] { loop.CancelTimer(later); });
    loop.CancelTimer(cancelled);
    loop.CancelTimer(987654);  // unknown ids are ignored
    loop.RunAfter(absl::Milliseconds(60), [&] { done.Notify(); });
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kDeadline));
  bool first = true, second = true;
  loop.RunAndWait([&] {
    first = cancelled_fired;
    second = cancelled_by_timer_fired;
  });
  EXPECT_FALSE(first);
  EXPECT_FALSE(second);
}

TEST(KernelIoLoopTest, PostAfterRunsOnTheLoopThreadAfterTheDelay) {
  KernelIoLoop loop;
  absl::Notification ran;
  bool on_loop_thread = false;
  const absl::Time posted = absl::Now();
  absl::Time ran_at;
  loop.PostAfter(absl::Milliseconds(30), [&] {
    on_loop_thread = loop.IsLoopThread();
    ran_at = absl::Now();
    ran.Notify();
  });
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(kDeadline));
  EXPECT_TRUE(on_loop_thread);
  EXPECT_GE(ran_at - posted, absl::Milliseconds(30));
}

// Polls the read end of a pipe; counts its calls and optionally removes itself when called.
class PipeSource : public PollSource {
 public:
  PipeSource(KernelIoLoop& loop, int fd, bool drain, bool remove_self)
      : loop_(loop), fd_(fd), drain_(drain), remove_self_(remove_self) {}

  void AppendPollItems(std::vector<zmq_pollitem_t>& items) override {
    ++append_calls;
    items.push_back(zmq_pollitem_t{nullptr, fd_, ZMQ_POLLIN, 0});
  }

  void OnPolled(std::span<const zmq_pollitem_t> items) override {
    ++calls;
    items_seen = items.size();
    saw_pollin = items.size() == 1 && (items[0].revents & ZMQ_POLLIN) != 0;
    on_loop_thread = loop_.IsLoopThread();
    if (drain_) {
      char buffer[64];
      const ssize_t got = ::read(fd_, buffer, sizeof(buffer));
      if (got > 0) data.append(buffer, static_cast<size_t>(got));
    }
    if (also_remove != nullptr) loop_.RemovePollSource(also_remove);
    if (remove_self_) loop_.RemovePollSource(this);
    polled.Notify();
  }

  // Loop thread only, except `polled`.
  int append_calls = 0;
  int calls = 0;
  size_t items_seen = 0;
  bool saw_pollin = false;
  bool on_loop_thread = false;
  std::string data;
  const PollSource* also_remove = nullptr;
  absl::Notification polled;

 private:
  KernelIoLoop& loop_;
  const int fd_;
  const bool drain_;
  const bool remove_self_;
};

class Pipe {
 public:
  Pipe() { EXPECT_EQ(::pipe2(fds_, O_CLOEXEC | O_NONBLOCK), 0); }
  ~Pipe() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  int read_fd() const { return fds_[0]; }
  void Write(const std::string& text) const {
    EXPECT_EQ(::write(fds_[1], text.data(), text.size()), static_cast<ssize_t>(text.size()));
  }

 private:
  int fds_[2] = {-1, -1};
};

TEST(KernelIoLoopTest, PollSourceIsCalledWhenThePipeBecomesReadable) {
  KernelIoLoop loop;
  Pipe pipe;
  auto source = std::make_shared<PipeSource>(loop, pipe.read_fd(), /*drain=*/true,
                                             /*remove_self=*/false);
  loop.RunAndWait([&] { loop.AddPollSource(source); });
  // A few loop rounds with nothing to read: not called.
  for (int i = 0; i < 3; ++i) loop.RunAndWait([] {});
  int calls_before = -1;
  loop.RunAndWait([&] { calls_before = source->calls; });
  EXPECT_EQ(calls_before, 0);

  pipe.Write("hello");
  ASSERT_TRUE(source->polled.WaitForNotificationWithTimeout(kDeadline));
  loop.RunAndWait([&] {
    EXPECT_EQ(source->calls, 1);
    EXPECT_EQ(source->append_calls, 1);  // its items are asked once, not every round
    EXPECT_EQ(source->items_seen, 1u);
    EXPECT_TRUE(source->saw_pollin);
    EXPECT_TRUE(source->on_loop_thread);
    EXPECT_EQ(source->data, "hello");
    EXPECT_EQ(loop.poll_source_count(), 1u);
    loop.RemovePollSource(source.get());
  });
  loop.RunAndWait([&] { EXPECT_EQ(loop.poll_source_count(), 0u); });
}

TEST(KernelIoLoopTest, SourceRemovedInItsOwnOnPolledIsNotCalledAgain) {
  KernelIoLoop loop;
  Pipe pipe;
  // It never drains the pipe: were it still polled, it would be called on every round.
  auto source = std::make_shared<PipeSource>(loop, pipe.read_fd(), /*drain=*/false,
                                             /*remove_self=*/true);
  std::weak_ptr<PipeSource> weak = source;
  loop.RunAndWait([&] { loop.AddPollSource(source); });
  pipe.Write("x");
  ASSERT_TRUE(source->polled.WaitForNotificationWithTimeout(kDeadline));
  for (int i = 0; i < 5; ++i) loop.RunAndWait([] {});
  int calls = 0;
  size_t count = 1;
  loop.RunAndWait([&] {
    calls = source->calls;
    count = loop.poll_source_count();
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(count, 0u);
  // The loop let go of it.
  source.reset();
  EXPECT_TRUE(weak.expired());
}

TEST(KernelIoLoopTest, SourceRemovedByAnotherInTheSameRoundIsNotCalled) {
  KernelIoLoop loop;
  Pipe pipe;
  auto first = std::make_shared<PipeSource>(loop, pipe.read_fd(), false, true);
  auto second = std::make_shared<PipeSource>(loop, pipe.read_fd(), false, true);
  first->also_remove = second.get();
  loop.RunAndWait([&] {
    loop.AddPollSource(first);
    loop.AddPollSource(second);
  });
  pipe.Write("x");  // both are readable in the same round
  ASSERT_TRUE(first->polled.WaitForNotificationWithTimeout(kDeadline));
  for (int i = 0; i < 3; ++i) loop.RunAndWait([] {});
  int first_calls = 0, second_calls = -1;
  size_t count = 1;
  loop.RunAndWait([&] {
    first_calls = first->calls;
    second_calls = second->calls;
    count = loop.poll_source_count();
  });
  EXPECT_EQ(first_calls, 1);
  EXPECT_EQ(second_calls, 0);
  EXPECT_EQ(count, 0u);
}

// A DEALER socket on the loop talking to a ROUTER on the test thread. It reads at most one
// message per OnPolled call, so what it leaves must be served without new traffic.
class DealerSource : public PollSource {
 public:
  DealerSource(KernelIoLoop& loop, const std::string& endpoint)
      : loop_(loop), socket_(loop.zmq_context(), zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.connect(endpoint);
  }

  void AppendPollItems(std::vector<zmq_pollitem_t>& items) override {
    items.push_back(zmq_pollitem_t{socket_.handle(), 0, ZMQ_POLLIN, 0});
  }

  void OnPolled(std::span<const zmq_pollitem_t> items) override {
    if (!(items[0].revents & ZMQ_POLLIN)) return;
    zmq::message_t message;
    if (!socket_.recv(message, zmq::recv_flags::dontwait)) return;
    received.push_back(message.to_string());
    received_count.store(static_cast<int>(received.size()));
    if (received.size() == expected) done.Notify();
  }

  int fd() { return socket_.get(zmq::sockopt::fd); }

  // Loop thread only. Looking at ZMQ_EVENTS with nothing queued lets the socket's inbound pipe
  // sleep: the next message to arrive then signals the fd.
  void CheckEmpty() { EXPECT_EQ(socket_.get(zmq::sockopt::events) & ZMQ_POLLIN, 0); }

  // Loop thread only.
  void Send(const std::string& text) {
    socket_.send(zmq::buffer(text), zmq::send_flags::dontwait);
    loop_.CheckSoon(this);
  }

  std::vector<std::string> received;  // loop thread only
  std::atomic<int> received_count{0};
  size_t expected = 0;
  absl::Notification done;

 private:
  KernelIoLoop& loop_;
  zmq::socket_t socket_;
};

// Receives one message on a ROUTER socket; returns the peer's identity and the text.
std::pair<std::string, std::string> ReceiveOnRouter(zmq::socket_t& router) {
  std::vector<zmq::message_t> parts;
  EXPECT_TRUE(zmq::recv_multipart(router, std::back_inserter(parts)).has_value());
  EXPECT_EQ(parts.size(), 2u);
  if (parts.size() != 2) return {};
  return {parts[0].to_string(), parts[1].to_string()};
}

void SendOnRouter(zmq::socket_t& router, const std::string& peer, const std::string& text) {
  router.send(zmq::buffer(peer), zmq::send_flags::sndmore);
  router.send(zmq::buffer(text));
}

struct Router {
  Router() : socket(context, zmq::socket_type::router) {
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::rcvtimeo, static_cast<int>(absl::ToInt64Milliseconds(kDeadline)));
    socket.bind("tcp://127.0.0.1:*");
    endpoint = socket.get(zmq::sockopt::last_endpoint);
  }
  zmq::context_t context;
  zmq::socket_t socket;
  std::string endpoint;
};

TEST(KernelIoLoopTest, MessagesQueuedOnASocketAreAllServedThoughTheHandlerReadsOneAtATime) {
  Router router;
  KernelIoLoop loop;
  auto source = std::make_shared<DealerSource>(loop, router.endpoint);
  constexpr int kMessages = 300;
  source->expected = kMessages;
  loop.RunAndWait([&] {
    loop.AddPollSource(source);
    source->Send("hello");
  });
  const std::string peer = ReceiveOnRouter(router.socket).first;
  // All sent in one burst: the socket's fd signals once for many messages.
  for (int i = 0; i < kMessages; ++i) SendOnRouter(router.socket, peer, absl::StrCat(i));
  ASSERT_TRUE(source->done.WaitForNotificationWithTimeout(kDeadline))
      << "messages were left on the socket";
  loop.RunAndWait([&] {
    ASSERT_EQ(source->received.size(), static_cast<size_t>(kMessages));
    for (int i = 0; i < kMessages; ++i) EXPECT_EQ(source->received[i], absl::StrCat(i));
    loop.RemovePollSource(source.get());
  });
}

TEST(KernelIoLoopTest, AReplyThatArrivesAsATaskSendsIsNotMissed) {
  // A send on a ZMQ socket processes its pending commands, which takes the signal that a reply
  // has come in. Each round: a ping; then, on the loop thread, once the echo has signalled the
  // socket's fd, a send that gets no answer. The echo must still be seen, with nothing else
  // arriving to wake the loop.
  Router router;
  KernelIoLoop loop;
  auto source = std::make_shared<DealerSource>(loop, router.endpoint);
  constexpr int kRounds = 500;
  source->expected = kRounds;
  loop.RunAndWait([&] { loop.AddPollSource(source); });
  std::atomic<int> echoed{0};
  std::thread peer([&router, &echoed] {
    while (echoed.load() < kRounds) {
      auto [identity, text] = ReceiveOnRouter(router.socket);
      if (identity.empty()) return;  // timed out: the test fails below
      if (text == "unanswered") continue;
      SendOnRouter(router.socket, identity, text);
      echoed.fetch_add(1);
    }
  });
  const absl::Time deadline = absl::Now() + kDeadline;
  bool all_seen = true;
  for (int i = 0; i < kRounds && all_seen; ++i) {
    loop.Post([&source, i] {
      source->CheckEmpty();  // so that the echo's arrival signals the fd
      source->Send(absl::StrCat("ping ", i));
    });
    loop.Post([&source, &echoed, i, deadline] {
      while (echoed.load() <= i && absl::Now() < deadline) std::this_thread::yield();
      if (source->received_count.load() <= i) {  // else the echo was served already
        pollfd signalled{source->fd(), POLLIN, 0};
        const int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
        ::poll(&signalled, 1, static_cast<int>(std::max<int64_t>(left_ms, 0)));
      }
      source->Send("unanswered");
    });
    while (source->received_count.load() <= i && absl::Now() < deadline) {
      std::this_thread::yield();
    }
    all_seen = source->received_count.load() > i;
  }
  echoed.store(kRounds);  // let the peer go if a round failed
  peer.join();
  ASSERT_TRUE(all_seen) << "an echo was left unseen on the socket";
  loop.RunAndWait([&] {
    EXPECT_EQ(source->received.back(), absl::StrCat("ping ", kRounds - 1));
    loop.RemovePollSource(source.get());
  });
}

TEST(KernelIoLoopTest, ManyIdleSourcesAndOneBusy) {
  // Hundreds of registered sources with nothing to read do not keep the busy one from being
  // served, and none of them is ever called.
  KernelIoLoop loop;
  std::vector<std::unique_ptr<Pipe>> pipes;
  std::vector<std::shared_ptr<PipeSource>> idle;
  for (int i = 0; i < 300; ++i) {
    pipes.push_back(std::make_unique<Pipe>());
    idle.push_back(std::make_shared<PipeSource>(loop, pipes.back()->read_fd(), true, false));
  }
  Pipe busy_pipe;
  auto busy = std::make_shared<PipeSource>(loop, busy_pipe.read_fd(), true, false);
  loop.RunAndWait([&] {
    for (auto& source : idle) loop.AddPollSource(source);
    loop.AddPollSource(busy);
  });
  busy_pipe.Write("x");
  ASSERT_TRUE(busy->polled.WaitForNotificationWithTimeout(kDeadline));
  loop.RunAndWait([&] {
    EXPECT_EQ(loop.poll_source_count(), 301u);
    int idle_calls = 0;
    for (auto& source : idle) idle_calls += source->calls;
    EXPECT_EQ(idle_calls, 0);
    EXPECT_EQ(busy->data, "x");
    for (auto& source : idle) loop.RemovePollSource(source.get());
    loop.RemovePollSource(busy.get());
  });
}

TEST(KernelIoLoopTest, DestroyingWithPendingTimersDoesNotHangAndReleasesThem) {
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> weak = token;
  absl::Notification done;
  std::thread destroyer([&done, token = std::move(token)]() mutable {
    auto loop = std::make_unique<KernelIoLoop>();
    loop->RunAndWait([&loop, token = std::move(token)]() mutable {
      loop->RunAfter(absl::Hours(1), [token] {});
      loop->RunAfter(absl::Minutes(5), [token = std::move(token)] {});
    });
    loop.reset();
    done.Notify();
  });
  const bool finished = done.WaitForNotificationWithTimeout(kDeadline);
  if (finished) {
    destroyer.join();
  } else {
    destroyer.detach();  // don't turn a failure into a hang
  }
  ASSERT_TRUE(finished) << "~KernelIoLoop hung with pending timers";
  EXPECT_TRUE(weak.expired()) << "timer tasks were not released";
}

TEST(KernelIoLoopTest, DestroyingReleasesPollSources) {
  Pipe pipe;
  std::weak_ptr<PipeSource> weak;
  {
    KernelIoLoop loop;
    auto source = std::make_shared<PipeSource>(loop, pipe.read_fd(), false, false);
    weak = source;
    loop.RunAndWait([&] { loop.AddPollSource(std::move(source)); });
    EXPECT_FALSE(weak.expired());
  }
  EXPECT_TRUE(weak.expired());
}

}  // namespace
}  // namespace cellgate::kernel
