// Server policies end to end: automatic restarts and their limit, idle culling, max lifetime,
// and the output hard cap.

#include <signal.h>

#include <future>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"

namespace cellgate {
namespace {

using ::testing::HasSubstr;
using testing::GatewayClient;
using testing::ServerSuite;

// Whether ListKernels (which touches no kernel) still lists `kernel_id`.
bool Listed(GatewayClient& client, const std::string& kernel_id) {
  v1::ListKernelsResponse listed;
  EXPECT_TRUE(
      client.stub().ListKernels(client.Context().get(), v1::ListKernelsRequest(), &listed).ok());
  for (const v1::Kernel& kernel : listed.kernels()) {
    if (kernel.kernel_id() == kernel_id) return true;
  }
  return false;
}

bool WaitUntilUnlisted(GatewayClient& client, const std::string& kernel_id) {
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (Listed(client, kernel_id) && absl::Now() < deadline) {
  }
  return !Listed(client, kernel_id);
}

struct RestartLimitFlags {
  static std::vector<std::string> Args() {
    return {"--max-restarts=1", "--restart-backoff-ms=50", "--restart-window-seconds=600"};
  }
  static std::vector<std::string> Env() { return {}; }
  static std::string Token() { return ""; }
};
class RestartPolicyTest : public ServerSuite<RestartLimitFlags> {};

TEST_F(RestartPolicyTest, RestartsOnDeathUntilTheLimitThenStaysDeadWithTheReason) {
  const std::string kernel_id = client().MustStartKernel();
  v1::Kernel kernel = client().WaitForKernel(kernel_id, [](const v1::Kernel&) { return true; });
  ASSERT_EQ(::kill(kernel.pid(), SIGKILL), 0);
  kernel = client().WaitForKernel(kernel_id, [&](const v1::Kernel& k) {
    return k.state() == v1::KERNEL_STATE_IDLE && k.restart_count() == 1;
  });
  ASSERT_EQ(kernel.restart_count(), 1);
  EXPECT_EQ(client().MustExecute(kernel_id, "print('after one death')").text(),
            "after one death\n");

  // The second death within the window is over the limit of one restart.
  ASSERT_EQ(::kill(kernel.pid(), SIGKILL), 0);
  kernel = client().WaitForKernel(kernel_id,
                         [](const v1::Kernel& k) { return k.state() == v1::KERNEL_STATE_DEAD; });
  EXPECT_EQ(kernel.state(), v1::KERNEL_STATE_DEAD);
  EXPECT_THAT(kernel.last_death_reason(), HasSubstr("killed by SIGKILL"));
  EXPECT_THAT(kernel.last_death_reason(), HasSubstr("not restarted"));
  EXPECT_EQ(kernel.restart_count(), 1);
  // A client can still bring it back by hand.
  v1::RestartKernelRequest restart;
  restart.set_kernel_id(kernel_id);
  ASSERT_TRUE(client().stub().RestartKernel(client().Context().get(), restart, &kernel).ok());
  EXPECT_EQ(kernel.state(), v1::KERNEL_STATE_IDLE);
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

struct IdleFlags {
  static std::vector<std::string> Args() { return {"--idle-timeout-seconds=2"}; }
  static std::vector<std::string> Env() { return {}; }
  static std::string Token() { return ""; }
};
class IdleCullingTest : public ServerSuite<IdleFlags> {};

TEST_F(IdleCullingTest, IdleKernelIsShutDownButOneWithAFollowerIsNot) {
  const std::string followed = client().MustStartKernel();
  v1::StreamOutputsRequest request;
  request.set_kernel_id(followed);
  request.set_follow(true);
  auto context = client().Context(120);
  auto follower = client().stub().StreamOutputs(context.get(), request);
  v1::OutputEvent event;
  ASSERT_TRUE(follower->Read(&event));  // the stream is open on the server

  const std::string idle = client().MustStartKernel();  // started later: idle for less time
  EXPECT_TRUE(WaitUntilUnlisted(client(), idle)) << "idle kernel was not culled";
  EXPECT_TRUE(Listed(client(), followed)) << "a kernel with a follower was culled";

  // Without its follower it goes too, and its stream ends.
  context->TryCancel();
  follower->Finish().IgnoreError();
  EXPECT_TRUE(WaitUntilUnlisted(client(), followed));
}

TEST_F(IdleCullingTest, ABusyKernelIsNotIdle) {
  const std::string kernel_id = client().MustStartKernel();
  // Runs for longer than the idle timeout; it must not be culled mid-run.
  const v1::ExecutionResult result =
      client().MustExecute(kernel_id, "import time\ntime.sleep(4)\nprint('done')");
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_OK);
  EXPECT_EQ(result.text(), "done\n");
  EXPECT_TRUE(WaitUntilUnlisted(client(), kernel_id));
}

struct FloodFlags {
  static std::vector<std::string> Args() {
    return {"--max-output-bytes=4096", "--output-hard-cap-bytes=200000"};
  }
  static std::vector<std::string> Env() { return {}; }
  static std::string Token() { return ""; }
};
class OutputFloodTest : public ServerSuite<FloodFlags> {};

TEST_F(OutputFloodTest, AnExecutionThatFloodsOutputIsInterrupted) {
  const std::string kernel_id = client().MustStartKernel();
  // Flushed as it goes, as progress output is. (ipykernel holds back unflushed output of a tight
  // loop in the kernel until the loop ends: the gateway can only cap what is published.)
  const v1::ExecutionResult result = client().MustExecute(
      kernel_id, "while True:\n    print('x' * 1000, flush=True)\n", 60000);
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_INTERRUPTED);
  EXPECT_THAT(result.status_detail(), HasSubstr("hard cap"));
  EXPECT_TRUE(result.truncated());
  EXPECT_EQ(client().MustExecute(kernel_id, "print('calm')").text(), "calm\n");
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

struct LifetimeFlags {
  static std::vector<std::string> Args() { return {"--max-kernel-lifetime-seconds=4"}; }
  static std::vector<std::string> Env() { return {}; }
  static std::string Token() { return ""; }
};
class LifetimeTest : public ServerSuite<LifetimeFlags> {};

TEST_F(LifetimeTest, KernelPastItsMaxLifetimeIsShutDownEvenWhenBusy) {
  const std::string kernel_id = client().MustStartKernel();
  const v1::ExecutionResult result =
      client().MustExecute(kernel_id, "import time\ntime.sleep(60)", 120000);
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_CANCELLED);
  EXPECT_THAT(result.status_detail(), HasSubstr("shut down"));
  EXPECT_TRUE(WaitUntilUnlisted(client(), kernel_id));
}

}  // namespace
}  // namespace cellgate
