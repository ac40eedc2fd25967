// The warm pool (--pool-size): kernels of the default kernelspec started ahead, handed out by
// StartKernel with default settings, refilled in the background, each as fresh and as separate
// as a kernel started on request.

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/gateway_client.h"
#include "tests/support/server_process.h"

namespace cellgate {
namespace {

using ::testing::HasSubstr;
using testing::GatewayClient;
using testing::ServerProcess;
using testing::WaitForProcessEnd;

// The pids the server logged as pooled (`event=kernel_pooled ... pid=N`), oldest first.
std::vector<int> PooledPids(const std::string& log) {
  std::vector<int> pids;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (line.find("event=kernel_pooled") == absl::string_view::npos) continue;
    const size_t at = line.find(" pid=");
    int pid = 0;
    if (at == absl::string_view::npos) continue;
    const absl::string_view rest = line.substr(at + 5);
    if (absl::SimpleAtoi(rest.substr(0, rest.find(' ')), &pid)) pids.push_back(pid);
  }
  return pids;
}

// Waits until `server` has logged `count` pooled kernels in all (the log is the only outside
// sign of the pool), and returns their pids.
std::vector<int> WaitForPooledIn(const ServerProcess& server, size_t count) {
  const absl::Time deadline = absl::Now() + absl::Seconds(90);
  std::vector<int> pids = PooledPids(server.log());
  while (pids.size() < count && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));  // polling the log file, with a deadline
    pids = PooledPids(server.log());
  }
  EXPECT_GE(pids.size(), count) << "the pool did not fill";
  return pids;
}

// Time since boot, as /proc's process start times count it.
absl::Duration SinceBoot() {
  timespec now{};
  ::clock_gettime(CLOCK_BOOTTIME, &now);
  return absl::DurationFromTimespec(now);
}

// When process `pid` started, since boot (field 22 of /proc/<pid>/stat, in clock ticks).
std::optional<absl::Duration> ProcessStartSinceBoot(int pid) {
  std::ifstream file(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  const size_t comm_end = stat.rfind(')');  // the command name may hold spaces
  if (comm_end == std::string::npos) return std::nullopt;
  const std::vector<std::string> fields =
      absl::StrSplit(stat.substr(comm_end + 2), ' ', absl::SkipEmpty());
  int64_t ticks = 0;  // fields[0] is field 3 (state), so field 22 is fields[19]
  if (fields.size() < 20 || !absl::SimpleAtoi(fields[19], &ticks)) return std::nullopt;
  return absl::Seconds(static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK)));
}

class WarmPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ServerProcess>(
        std::vector<std::string>{"--pool-size=2", "--max-kernels=4", "--drain-seconds=1"});
    ASSERT_GT(server_->WaitForPort(absl::Seconds(60)), 0) << server_->log();
    client_ = std::make_unique<GatewayClient>(server_->Target());
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "server log:\n" << server_->log() << "\n";
  }

  std::vector<int> WaitForPooled(size_t count) { return WaitForPooledIn(*server_, count); }

  v1::Kernel Start(const v1::StartKernelRequest& request) {
    v1::Kernel kernel;
    const grpc::Status status = client_->StartKernel(request, &kernel);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return kernel;
  }

  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<GatewayClient> client_;
};

TEST_F(WarmPoolTest, DefaultStartsTakeThePooledKernelsAndThePoolRefills) {
  const std::vector<int> pooled = WaitForPooled(2);
  ASSERT_EQ(pooled.size(), 2u);
  // Pooled kernels are nobody's yet: not listed.
  v1::ListKernelsResponse listed;
  ASSERT_TRUE(client_->stub()
                  .ListKernels(client_->Context().get(), v1::ListKernelsRequest(), &listed)
                  .ok());
  EXPECT_EQ(listed.kernels_size(), 0);

  v1::StartKernelRequest request;
  (*request.mutable_labels())["team"] = "pool";
  request.set_idle_timeout_seconds(600);
  const absl::Time before = absl::Now();
  const v1::Kernel first = Start(request);
  EXPECT_EQ(first.state(), v1::KERNEL_STATE_IDLE);
  EXPECT_EQ(first.pid(), pooled[0]) << "not the kernel the pool had ready";
  EXPECT_EQ(first.labels().at("team"), "pool");
  EXPECT_EQ(first.idle_timeout_seconds(), 600);
  EXPECT_GE(first.created_at().seconds(), absl::ToUnixSeconds(before) - 1);
  const v1::Kernel second = Start(v1::StartKernelRequest());
  EXPECT_EQ(second.pid(), pooled[1]);
  EXPECT_TRUE(second.labels().empty());

  // Each is a kernel of its own: fresh namespace, own working dir, own uid when root.
  const std::string probe = "import os\nprint(os.getuid(), os.getcwd(), 'x' in dir())";
  const std::string a = client_->MustExecute(first.kernel_id(), probe).text();
  const std::string b = client_->MustExecute(second.kernel_id(), probe).text();
  EXPECT_THAT(a, HasSubstr("False"));
  EXPECT_THAT(b, HasSubstr("False"));
  const std::vector<std::string> a_fields = absl::StrSplit(a, ' ');
  const std::vector<std::string> b_fields = absl::StrSplit(b, ' ');
  ASSERT_EQ(a_fields.size(), 3u) << a;
  ASSERT_EQ(b_fields.size(), 3u) << b;
  EXPECT_NE(a_fields[1], b_fields[1]);
  if (::geteuid() == 0) {
    EXPECT_NE(a_fields[0], b_fields[0]);
  }

  // The pool refills in the background, and what it holds is handed out next.
  const std::vector<int> refilled = WaitForPooled(4);
  ASSERT_EQ(refilled.size(), 4u);
  EXPECT_EQ(Start(v1::StartKernelRequest()).pid(), refilled[2]);

  // --max-kernels counts the kernels handed out, not the pool.
  listed.Clear();
  ASSERT_TRUE(client_->stub()
                  .ListKernels(client_->Context().get(), v1::ListKernelsRequest(), &listed)
                  .ok());
  EXPECT_EQ(listed.kernels_size(), 3);

  // Stopping the gateway ends the pooled kernels too.
  ASSERT_EQ(::kill(server_->pid(), SIGTERM), 0);
  ASSERT_TRUE(server_->WaitForExit(absl::Seconds(60)).has_value());
  for (int pid : refilled) EXPECT_TRUE(WaitForProcessEnd(pid, absl::Seconds(30))) << pid;
}

TEST_F(WarmPoolTest, RequestsWithSettingsOfTheirOwnStartAKernelOfTheirOwn) {
  const std::vector<int> pooled = WaitForPooled(2);
  const std::set<int> pooled_pids(pooled.begin(), pooled.end());

  v1::StartKernelRequest with_env;
  (*with_env.mutable_env())["POOL_TEST"] = "cold";
  const v1::Kernel env_kernel = Start(with_env);
  EXPECT_FALSE(pooled_pids.contains(env_kernel.pid()));
  EXPECT_EQ(
      client_->MustExecute(env_kernel.kernel_id(), "import os; print(os.environ['POOL_TEST'])")
          .text(),
      "cold\n");

  v1::StartKernelRequest with_limits;
  with_limits.mutable_limits()->set_max_open_files(256);
  const v1::Kernel limited = Start(with_limits);
  EXPECT_FALSE(pooled_pids.contains(limited.pid()));
  EXPECT_EQ(client_->MustExecute(limited.kernel_id(),
                                 "import resource; print(resource.getrlimit("
                                 "resource.RLIMIT_NOFILE)[0])")
                .text(),
            "256\n");

  // A notebook comes with a pooled kernel as with any other.
  v1::StartKernelRequest with_notebook;
  with_notebook.set_notebook_ipynb(
      R"json({"cells": [{"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": null,
          "outputs": [], "source": "print('from the notebook')"}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5})json");
  const v1::Kernel notebook_kernel = Start(with_notebook);
  EXPECT_TRUE(pooled_pids.contains(notebook_kernel.pid()));
  EXPECT_EQ(client_->MustRunCell(notebook_kernel.kernel_id(), "c1").text(),
            "from the notebook\n");
  // A bad one is refused as with any other, and the pool keeps its kernel.
  v1::StartKernelRequest bad_notebook;
  bad_notebook.set_notebook_ipynb("{not json");
  v1::Kernel refused;
  const grpc::Status status = client_->StartKernel(bad_notebook, &refused);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("notebook_ipynb"));
  EXPECT_TRUE(pooled_pids.contains(Start(v1::StartKernelRequest()).pid()));
}

TEST(WarmPoolRefillTest, ThePoolStartsTheReplacementOfATakenKernelAfterTheRefillDelay) {
  // Its start would take a core from the first executions of the kernel just handed out.
  constexpr int kDelayMs = 2000;
  ServerProcess server({"--pool-size=1", absl::StrCat("--pool-refill-delay-ms=", kDelayMs),
                        "--max-kernels=2", "--drain-seconds=1"});
  ASSERT_GT(server.WaitForPort(absl::Seconds(60)), 0) << server.log();
  GatewayClient client(server.Target());
  const std::vector<int> pooled = WaitForPooledIn(server, 1);
  ASSERT_EQ(pooled.size(), 1u);

  const absl::Duration taken_at = SinceBoot();
  v1::Kernel taken;
  const grpc::Status status = client.StartKernel(v1::StartKernelRequest(), &taken);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(taken.pid(), pooled[0]);
  EXPECT_EQ(client.MustExecute(taken.kernel_id(), "print(1 + 1)").text(), "2\n");

  const std::vector<int> refilled = WaitForPooledIn(server, 2);
  ASSERT_EQ(refilled.size(), 2u) << server.log();
  const std::optional<absl::Duration> started = ProcessStartSinceBoot(refilled[1]);
  ASSERT_TRUE(started.has_value()) << "no start time for pid " << refilled[1];
  // /proc counts in clock ticks (10 ms), rounded down.
  EXPECT_GE(*started - taken_at, absl::Milliseconds(kDelayMs - 20))
      << "the replacement started " << *started - taken_at << " after the take";
}

}  // namespace
}  // namespace cellgate
