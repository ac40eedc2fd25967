// StreamOutputs end to end: replay after reconnect, concurrent subscribers, a subscriber that
// never reads, and the end of a stream when its kernel shuts down.

#include <thread>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"

namespace cellgate {
namespace {

using testing::DefaultFlags;
using testing::ServerSuite;

class StreamTest : public ServerSuite<DefaultFlags> {
 protected:
  // Reads events of a non-following stream until it ends.
  std::vector<v1::OutputEvent> ReadAll(const std::string& kernel_id, int64_t after_seq,
                                       grpc::Status* status = nullptr) {
    v1::StreamOutputsRequest request;
    request.set_kernel_id(kernel_id);
    request.set_after_seq(after_seq);
    auto context = client().Context();
    auto reader = client().stub().StreamOutputs(context.get(), request);
    std::vector<v1::OutputEvent> events;
    v1::OutputEvent event;
    while (reader->Read(&event)) events.push_back(event);
    grpc::Status finish = reader->Finish();
    if (status != nullptr) *status = finish;
    EXPECT_TRUE(status != nullptr || finish.ok()) << finish.error_message();
    return events;
  }

  static std::vector<int64_t> Seqs(const std::vector<v1::OutputEvent>& events) {
    std::vector<int64_t> seqs;
    for (const auto& event : events) seqs.push_back(event.seq());
    return seqs;
  }
};

TEST_F(StreamTest, ReconnectWithTheLastSeqGetsExactlyTheMissedEvents) {
  const std::string kernel_id = client().MustStartKernel();
  client().MustExecute(kernel_id, "for i in range(3): print(i, flush=True)");
  const std::vector<v1::OutputEvent> first = ReadAll(kernel_id, 0);
  ASSERT_FALSE(first.empty());
  const int64_t last_seen = first.back().seq();
  for (size_t i = 1; i < first.size(); ++i) EXPECT_EQ(first[i].seq(), first[i - 1].seq() + 1);

  // Events happen while "disconnected".
  client().MustExecute(kernel_id, "print('missed', flush=True)");
  const std::vector<v1::OutputEvent> resumed = ReadAll(kernel_id, last_seen);
  ASSERT_FALSE(resumed.empty());
  EXPECT_EQ(resumed.front().seq(), last_seen + 1);
  for (size_t i = 1; i < resumed.size(); ++i) {
    EXPECT_EQ(resumed[i].seq(), resumed[i - 1].seq() + 1) << "gap or duplicate";
  }
  bool saw_missed = false;
  for (const auto& event : resumed) {
    saw_missed |= event.has_output() && event.output().stream().text() == "missed\n";
  }
  EXPECT_TRUE(saw_missed);
  // Together: the whole log, no gap, no duplicate.
  std::vector<v1::OutputEvent> all = ReadAll(kernel_id, 0);
  std::vector<int64_t> joined = Seqs(first);
  for (int64_t seq : Seqs(resumed)) joined.push_back(seq);
  EXPECT_EQ(joined, Seqs(all));

  grpc::Status status;
  ReadAll(kernel_id, all.back().seq() + 100, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

TEST_F(StreamTest, TwoFollowersSeeIdenticalSequencesAndStreamsEndAtShutdown) {
  const std::string kernel_id = client().MustStartKernel();
  auto follow = [&](std::vector<v1::OutputEvent>* events, grpc::Status* status,
                    absl::Notification* started) {
    v1::StreamOutputsRequest request;
    request.set_kernel_id(kernel_id);
    request.set_follow(true);
    auto context = client().Context(300);
    auto reader = client().stub().StreamOutputs(context.get(), request);
    v1::OutputEvent event;
    bool first = true;
    while (reader->Read(&event)) {
      events->push_back(event);
      if (first) started->Notify();
      first = false;
    }
    if (first) started->Notify();
    *status = reader->Finish();
  };
  std::vector<v1::OutputEvent> a, b;
  grpc::Status status_a, status_b;
  absl::Notification started_a, started_b;
  std::thread follower_a(follow, &a, &status_a, &started_a);
  std::thread follower_b(follow, &b, &status_b, &started_b);
  // The kernel's start events are already in the log: each follower gets them first.
  ASSERT_TRUE(started_a.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_TRUE(started_b.WaitForNotificationWithTimeout(absl::Seconds(30)));
  for (int i = 0; i < 5; ++i) client().MustExecute(kernel_id, "print('tick', flush=True)");
  ASSERT_TRUE(client().Shutdown(kernel_id).ok());
  follower_a.join();
  follower_b.join();
  EXPECT_TRUE(status_a.ok()) << status_a.error_message();
  EXPECT_TRUE(status_b.ok()) << status_b.error_message();
  EXPECT_EQ(Seqs(a), Seqs(b));
  int ticks = 0;
  for (const auto& event : a) ticks += event.has_output() && event.output().stream().text() == "tick\n";
  EXPECT_EQ(ticks, 5);
  ASSERT_FALSE(a.empty());
  EXPECT_TRUE(a.back().has_kernel_status());
  EXPECT_EQ(a.back().kernel_status().state(), v1::KERNEL_STATE_SHUTTING_DOWN);
}

TEST_F(StreamTest, ASubscriberThatNeverReadsDoesNotDelayExecution) {
  const std::string kernel_id = client().MustStartKernel();
  v1::StreamOutputsRequest request;
  request.set_kernel_id(kernel_id);
  request.set_follow(true);
  auto context = client().Context(300);
  // Opened and never read from.
  auto idle_reader = client().stub().StreamOutputs(context.get(), request);
  const v1::ExecutionResult result = client().MustExecute(
      kernel_id, "for i in range(20000):\n    print('x' * 100)\n", /*timeout_ms=*/60000);
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_OK);
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
  context->TryCancel();
}

TEST_F(StreamTest, CellFilterKeepsThatCellsEventsOnly) {
  const std::string kernel_id = client().MustStartKernel();
  const v1::Cell first = client().MustAddCell(kernel_id, "print('first')");
  const v1::Cell second = client().MustAddCell(kernel_id, "print('second')");
  client().MustRunCell(kernel_id, first.cell_id());
  client().MustRunCell(kernel_id, second.cell_id());
  v1::StreamOutputsRequest request;
  request.set_kernel_id(kernel_id);
  request.set_cell_id(second.cell_id());
  auto context = client().Context();
  auto reader = client().stub().StreamOutputs(context.get(), request);
  v1::OutputEvent event;
  int outputs = 0;
  while (reader->Read(&event)) {
    if (event.has_kernel_status() || event.has_display_update()) continue;
    EXPECT_EQ(event.cell_id(), second.cell_id());
    if (event.has_output()) {
      ++outputs;
      EXPECT_EQ(event.output().stream().text(), "second\n");
    }
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(outputs, 1);
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

}  // namespace
}  // namespace cellgate
