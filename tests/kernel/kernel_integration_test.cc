// Drives real ipykernel processes through Kernel: start, execute, outputs, errors, limits,
// death, isolation and shutdown.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/kernel/kernel.h"
#include "server/kernel/sandbox_probe.h"
#include "server/kernel/uid_pool.h"
#include "tests/kernel/kernel_test_support.h"

namespace cellgate::kernel {
namespace {

using ::testing::HasSubstr;
using testing::Collected;
using testing::MakeShortTempDir;
using testing::ProjectKernelsDir;
using testing::RunCode;
using testing::StartAndWait;
using testing::StartedKernel;

// Test processes may run in parallel: each takes its own uid range.
const int kFirstTestUid = 240000 + (::getpid() % 800) * 64;  // clear of 232000-232200

bool ProcessIsGone(pid_t pid) {
  // A zombie still answers kill(pid, 0); it is gone for our purposes.
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat) return true;
  std::string line;
  std::getline(stat, line);
  const size_t close_paren = line.rfind(')');
  return close_paren != std::string::npos && close_paren + 2 < line.size() &&
         line[close_paren + 2] == 'Z';
}

bool WaitUntil(absl::Duration timeout, const std::function<bool()>& condition) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(10));  // polling a condition with a deadline
  }
  return condition();
}

class KernelIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    runtime_dir_ = MakeShortTempDir();
    registry_ = std::make_unique<KernelSpecRegistry>(
        KernelSpecRegistry::DefaultSearchDirs(ProjectKernelsDir()));
    if (::geteuid() == 0) uid_pool_ = std::make_unique<UidPool>(kFirstTestUid, 64);
  }

  void TearDown() override {
    std::error_code error;
    std::filesystem::remove_all(runtime_dir_, error);
  }

  KernelOptions Options(const std::string& spec_name = "python3") {
    KernelOptions options;
    absl::StatusOr<KernelSpec> spec = registry_->Find(spec_name);
    EXPECT_TRUE(spec.ok()) << spec.status();
    if (spec.ok()) options.spec = *spec;
    options.kernel_dir = absl::StrCat(runtime_dir_, "/k", next_kernel_++);
    options.policy.limits.address_space_bytes = 4ull << 30;
    options.policy.limits.max_open_files = 1024;
    options.policy.limits.max_file_size_bytes = 1ull << 30;
    options.policy.limits.max_processes = 256;
    if (uid_pool_) {
      absl::StatusOr<int> uid = uid_pool_->Acquire();
      EXPECT_TRUE(uid.ok());
      options.policy.uid = options.policy.gid = *uid;
    }
    return options;
  }

  StartedKernel MustStart(KernelOptions options) {
    StartedKernel started = StartAndWait(loop_, std::move(options));
    EXPECT_TRUE(started.ready_status.ok()) << started.ready_status;
    return started;
  }

  std::string runtime_dir_;
  std::unique_ptr<KernelSpecRegistry> registry_;
  std::unique_ptr<UidPool> uid_pool_;
  int next_kernel_ = 0;
  KernelIoLoop loop_;
};

TEST_F(KernelIntegrationTest, StartsAndAnswersKernelInfo) {
  StartedKernel started = MustStart(Options());
  ASSERT_TRUE(started.ready_status.ok());
  const KernelInfo info = started.kernel->info();
  EXPECT_EQ(info.language, "python");
  EXPECT_TRUE(absl::StartsWith(info.protocol_version, "5.")) << info.protocol_version;
  EXPECT_FALSE(info.language_version.empty());
  EXPECT_EQ(started.kernel->phase(), KernelPhase::kReady);
  EXPECT_GT(started.kernel->pid(), 0);
}

TEST_F(KernelIntegrationTest, PrintYieldsStdoutStream) {
  StartedKernel started = MustStart(Options());
  Collected result = RunCode(*started.kernel, "print(1)");
  ASSERT_EQ(result.completion.kind, RequestCompletion::Kind::kReplied);
  EXPECT_EQ(result.completion.reply.content.value("status", ""), "ok");
  EXPECT_EQ(result.StreamText("stdout"), "1\n");
  // Output reaches the session as JSON text for its own, faster, reader.
  const protocol::Message* stream = result.First("stream");
  ASSERT_NE(stream, nullptr);
  ASSERT_TRUE(stream->content_text.has_value());
  EXPECT_EQ(nlohmann::json::parse(*stream->content_text).value("text", ""), "1\n");
}

TEST_F(KernelIntegrationTest, ExpressionYieldsExecuteResult) {
  StartedKernel started = MustStart(Options());
  Collected result = RunCode(*started.kernel, "1 + 1");
  const protocol::Message* execute_result = result.First("execute_result");
  ASSERT_NE(execute_result, nullptr);
  EXPECT_EQ(execute_result->content["data"]["text/plain"], "2");
}

TEST_F(KernelIntegrationTest, DivisionByZeroYieldsError) {
  StartedKernel started = MustStart(Options());
  Collected result = RunCode(*started.kernel, "1/0");
  ASSERT_EQ(result.completion.kind, RequestCompletion::Kind::kReplied);
  EXPECT_EQ(result.completion.reply.content.value("status", ""), "error");
  const protocol::Message* error = result.First("error");
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->content.value("ename", ""), "ZeroDivisionError");
  // The kernel stays usable.
  EXPECT_EQ(RunCode(*started.kernel, "print('after')").StreamText(), "after\n");
}

TEST_F(KernelIntegrationTest, MatplotlibFigureYieldsPngDisplayData) {
  StartedKernel started = MustStart(Options());
  Collected result = RunCode(*started.kernel,
                         "import matplotlib.pyplot as plt\n"
                         "plt.plot([1, 2, 3], [1, 4, 9])\n"
                         "plt.show()\n");
  const protocol::Message* display = result.First("display_data");
  ASSERT_NE(display, nullptr) << result.StreamText("stderr");
  const std::string png = display->content["data"].value("image/png", "");
  // Base64 of the PNG signature \x89PNG.
  EXPECT_TRUE(absl::StartsWith(png, "iVBORw0KGgo")) << png.substr(0, 32);
}

TEST_F(KernelIntegrationTest, InputFailsFastInsteadOfHanging) {
  StartedKernel started = MustStart(Options());
  Collected result = RunCode(*started.kernel, "input('name? ')", absl::Seconds(20));
  ASSERT_EQ(result.completion.kind, RequestCompletion::Kind::kReplied);
  const protocol::Message* error = result.First("error");
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->content.value("ename", ""), "StdinNotImplementedError");
}

TEST_F(KernelIntegrationTest, MemoryBombIsContainedByAddressSpaceLimit) {
  KernelOptions bomb_options = Options();
  bomb_options.policy.limits.address_space_bytes = 1ull << 30;
  StartedKernel bomb = MustStart(std::move(bomb_options));
  StartedKernel neighbour = MustStart(Options());
  ASSERT_EQ(RunCode(*neighbour.kernel, "kept = 'still here'").completion.kind,
            RequestCompletion::Kind::kReplied);

  Collected result = RunCode(*bomb.kernel,
                         "hog = []\n"
                         "while True:\n"
                         "    hog.append(bytearray(64 * 1024 * 1024))\n");
  // Either Python's allocator refuses (MemoryError) or the process dies; both are reported.
  if (result.completion.kind == RequestCompletion::Kind::kReplied) {
    const protocol::Message* error = result.First("error");
    ASSERT_NE(error, nullptr);
    EXPECT_EQ(error->content.value("ename", ""), "MemoryError");
    // The bomb kernel recovers once the memory is released.
    EXPECT_EQ(RunCode(*bomb.kernel, "del hog\nprint('recovered')").StreamText(), "recovered\n");
  } else {
    EXPECT_EQ(result.completion.kind, RequestCompletion::Kind::kKernelDied);
    EXPECT_THAT(result.completion.reason, HasSubstr("killed by SIG"));
  }
  EXPECT_EQ(RunCode(*neighbour.kernel, "print(kept)").StreamText(), "still here\n");
}

TEST_F(KernelIntegrationTest, SigkillIsDetectedWithinOneSecond) {
  StartedKernel started = MustStart(Options());
  auto collector = std::make_shared<testing::RequestCollector>();
  started.kernel->Execute(ExecuteRequest{.code = "import time\nprint('sleeping', flush=True)\ntime.sleep(600)"},
                          collector->Callbacks());
  ASSERT_TRUE(collector->WaitForStdout("sleeping", absl::Seconds(30)));
  ASSERT_EQ(::kill(started.kernel->pid(), SIGKILL), 0);
  const absl::Time killed_at = absl::Now();
  ASSERT_TRUE(started.events->exited.WaitForNotificationWithTimeout(absl::Seconds(1)))
      << "kernel death not seen within 1 s";
  EXPECT_LT(absl::Now() - killed_at, absl::Seconds(1));
  {
    absl::MutexLock lock(&started.events->mutex);
    EXPECT_THAT(started.events->exit_reason, HasSubstr("killed by SIGKILL"));
  }
  ASSERT_TRUE(collector->Wait(absl::Seconds(5)));
  Collected result = collector->Take();
  EXPECT_EQ(result.completion.kind, RequestCompletion::Kind::kKernelDied);
  EXPECT_THAT(result.completion.reason, HasSubstr("SIGKILL"));
  EXPECT_EQ(started.kernel->phase(), KernelPhase::kExited);
}

TEST_F(KernelIntegrationTest, TwoKernelsRunConcurrentlyWithoutSharingState) {
  StartedKernel first = MustStart(Options());
  StartedKernel second = MustStart(Options());
  // The second kernel's cell only finishes once the first kernel's cell, running at the same
  // time, has written its marker: the two must execute concurrently.
  const std::string marker = absl::StrCat(runtime_dir_, "/marker");
  ::chmod(runtime_dir_.c_str(), 0777);
  auto waiting = std::make_shared<testing::RequestCollector>();
  second.kernel->Execute(
      ExecuteRequest{.code = absl::StrCat("import os, time\n"
                                          "deadline = time.time() + 30\n"
                                          "while not os.path.exists('", marker,
                                          "') and time.time() < deadline:\n"
                                          "    time.sleep(0.01)\n"
                                          "print(os.path.exists('", marker, "'))\n")},
      waiting->Callbacks());
  Collected writer = RunCode(*first.kernel, absl::StrCat("secret = 42\nopen('", marker,
                                                     "', 'w').write('x')\n"));
  ASSERT_EQ(writer.completion.kind, RequestCompletion::Kind::kReplied);
  ASSERT_TRUE(waiting->Wait(absl::Seconds(40)));
  EXPECT_EQ(waiting->Take().StreamText(), "True\n");

  Collected probe = RunCode(*second.kernel, "print(secret)");
  const protocol::Message* error = probe.First("error");
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->content.value("ename", ""), "NameError");
}

TEST_F(KernelIntegrationTest, InterruptStopsARunningCell) {
  StartedKernel started = MustStart(Options());
  auto collector = std::make_shared<testing::RequestCollector>();
  started.kernel->Execute(ExecuteRequest{.code = "print('started', flush=True)\n"
                                                 "while True:\n    pass\n"},
                          collector->Callbacks());
  ASSERT_TRUE(collector->WaitForStdout("started", absl::Seconds(30)));
  started.kernel->Interrupt();
  ASSERT_TRUE(collector->Wait(absl::Seconds(30))) << "interrupt did not end the cell";
  Collected result = collector->Take();
  const protocol::Message* error = result.First("error");
  ASSERT_NE(error, nullptr);
  EXPECT_EQ(error->content.value("ename", ""), "KeyboardInterrupt");
  EXPECT_EQ(RunCode(*started.kernel, "print('alive')").StreamText(), "alive\n");
}

TEST_F(KernelIntegrationTest, ShutdownLeavesNoProcessBehind) {
  StartedKernel started = MustStart(Options());
  const std::string kernel_dir = started.kernel->kernel_dir();
  Collected spawned = RunCode(*started.kernel,
                          "import subprocess\n"
                          "child = subprocess.Popen(['sleep', '1000'])\n"
                          "print(child.pid)\n");
  int child_pid = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(spawned.StreamText()), &child_pid))
      << spawned.StreamText();
  const int kernel_pid = started.kernel->pid();
  ASSERT_FALSE(ProcessIsGone(child_pid));

  absl::Notification exited;
  started.kernel->Shutdown([&exited](const ExitStatus&) { exited.Notify(); });
  ASSERT_TRUE(exited.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(started.kernel->phase(), KernelPhase::kExited);
  EXPECT_TRUE(ProcessIsGone(kernel_pid));
  EXPECT_TRUE(WaitUntil(absl::Seconds(5), [&] { return ProcessIsGone(child_pid); }))
      << "background process " << child_pid << " outlived its kernel";
  started.kernel.reset();
  EXPECT_FALSE(std::filesystem::exists(kernel_dir));
}

TEST_F(KernelIntegrationTest, BrokenKernelReportsExitAndItsOutput) {
  const std::string spec_dir = absl::StrCat(runtime_dir_, "/specs/broken");
  std::filesystem::create_directories(spec_dir);
  std::ofstream(spec_dir + "/kernel.json")
      << R"({"argv": ["/bin/sh", "-c", "echo 'no such module' >&2; exit 3", "{connection_file}"],
             "display_name": "Broken", "language": "none"})";
  KernelSpecRegistry registry({absl::StrCat(runtime_dir_, "/specs")});
  KernelOptions options = Options();
  options.spec = *registry.Find("broken");
  StartedKernel started = StartAndWait(loop_, std::move(options));
  EXPECT_EQ(started.ready_status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(started.ready_status.message(), HasSubstr("exited with code 3"));
  EXPECT_THAT(started.ready_status.message(), HasSubstr("no such module"));
}

TEST_F(KernelIntegrationTest, ExecutionCompletesWhenTheKernelDropsItsIdleStatus) {
  KernelSpecRegistry test_kernels({CELLGATE_SOURCE_DIR "/tests/kernel/testkernels"});
  KernelOptions options = Options();
  absl::StatusOr<KernelSpec> spec = test_kernels.Find("idle_dropper");
  ASSERT_TRUE(spec.ok()) << spec.status();
  options.spec = *spec;
  options.iopub_grace = absl::Milliseconds(300);
  StartedKernel started = MustStart(std::move(options));
  ASSERT_TRUE(started.ready_status.ok());
  Collected result = RunCode(*started.kernel, "anything", absl::Seconds(20));
  ASSERT_EQ(result.completion.kind, RequestCompletion::Kind::kReplied);
  EXPECT_TRUE(result.completion.iopub_incomplete);
  EXPECT_EQ(result.StreamText(), "ran\n");
  // And the kernel takes the next one.
  EXPECT_EQ(RunCode(*started.kernel, "again", absl::Seconds(20)).StreamText(), "ran\n");
}

TEST_F(KernelIntegrationTest, MissingExecutableIsInvalidArgument) {
  KernelOptions options = Options();
  options.spec.argv = {"/nonexistent/python", "-f", "{connection_file}"};
  StartedKernel started = StartAndWait(loop_, std::move(options));
  EXPECT_EQ(started.ready_status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(started.ready_status.message(), HasSubstr("/nonexistent/python"));
}

TEST_F(KernelIntegrationTest, EnvironmentIsAllowListed) {
  ::setenv("CELLGATE_TEST_SERVER_SECRET", "hunter2", 1);
  KernelOptions options = Options();
  options.env["GREETING"] = "hello";
  options.env["HOME"] = "/root";  // reserved: the gateway owns HOME
  StartedKernel started = MustStart(std::move(options));
  Collected result = RunCode(*started.kernel,
                         "import os\n"
                         "print(os.environ.get('CELLGATE_TEST_SERVER_SECRET'))\n"
                         "print(os.environ.get('GREETING'))\n"
                         "print(os.environ['HOME'] == os.getcwd())\n");
  EXPECT_EQ(result.StreamText(), "None\nhello\nTrue\n");
}

TEST_F(KernelIntegrationTest, EachKernelHasItsOwnUidWhenServerIsRoot) {
  if (::geteuid() != 0) GTEST_SKIP() << "per-kernel uids need root";
  StartedKernel first = MustStart(Options());
  StartedKernel second = MustStart(Options());
  const std::string first_uid = RunCode(*first.kernel, "import os; print(os.getuid())").StreamText();
  const std::string second_uid =
      RunCode(*second.kernel, "import os; print(os.getuid())").StreamText();
  EXPECT_NE(first_uid, "0\n");
  EXPECT_NE(first_uid, second_uid);
  // One kernel can neither signal the other nor read its directory.
  Collected attack = RunCode(*first.kernel,
                         absl::StrCat("import os\n"
                                      "try:\n"
                                      "    os.kill(", second.kernel->pid(), ", 9)\n"
                                      "    print('killed')\n"
                                      "except PermissionError:\n"
                                      "    print('denied')\n"
                                      "try:\n"
                                      "    os.listdir('", second.kernel->kernel_dir(), "')\n"
                                      "    print('read')\n"
                                      "except PermissionError:\n"
                                      "    print('denied')\n"));
  EXPECT_EQ(attack.StreamText(), "denied\ndenied\n");
  EXPECT_EQ(RunCode(*second.kernel, "print('alive')").StreamText(), "alive\n");
}

TEST_F(KernelIntegrationTest, BwrapKernelHasNoNetworkAndReadOnlySystem) {
  const SandboxCapabilities caps =
      ProbeSandbox("/usr/bin/bwrap", runtime_dir_, uid_pool_ ? kFirstTestUid + 63 : -1);
  if (!caps.bwrap) GTEST_SKIP() << "bubblewrap does not work on this host";
  KernelOptions options = Options();
  options.policy.mode = SandboxMode::kBwrap;
  options.policy.allow_network = false;
  StartedKernel started = MustStart(std::move(options));
  Collected result = RunCode(*started.kernel,
                         "import socket, os\n"
                         "try:\n"
                         "    socket.create_connection(('127.0.0.1', 22), timeout=2)\n"
                         "    print('connected')\n"
                         "except OSError as e:\n"
                         "    print('no network')\n"
                         "try:\n"
                         "    open('/usr/cellgate-escape', 'w')\n"
                         "    print('wrote system')\n"
                         "except OSError:\n"
                         "    print('read-only')\n"
                         "open('mine.txt', 'w').write('ok')\n"
                         "print(open('mine.txt').read())\n"
                         "print(sorted(os.listdir('/tmp')) == sorted(os.listdir('/tmp')))\n");
  EXPECT_EQ(result.StreamText(), "no network\nread-only\nok\nTrue\n");
}

}  // namespace
}  // namespace cellgate::kernel
