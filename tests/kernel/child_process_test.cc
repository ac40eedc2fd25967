#include "server/kernel/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/kernel/kernel_test_support.h"

namespace cellgate::kernel {
namespace {

namespace fs = std::filesystem;

using ::testing::HasSubstr;

constexpr absl::Duration kDeadline = absl::Seconds(20);
// Uids for the root-only tests; no account uses them.
constexpr int kTestUid = 232000;

int PollMs(absl::Duration left) {
  return static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(left), 0, 1000));
}

// Waits for `fd` to become readable, up to `timeout`.
bool WaitReadable(int fd, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    pollfd item{fd, POLLIN, 0};
    const int rc = ::poll(&item, 1, PollMs(deadline - absl::Now()));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return false;
    if (absl::Now() >= deadline) return false;
  }
}

// Waits on the child's pidfd, then reaps it. nullopt if it is still running at the deadline.
std::optional<ExitStatus> WaitForExit(ChildProcess& child, absl::Duration timeout = kDeadline) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (child.TryReap().has_value()) return child.exit_status();
    if (absl::Now() >= deadline) return std::nullopt;
    pollfd item{child.pidfd(), POLLIN, 0};
    // With no pidfd (fd -1) poll() only times out: the loop then re-checks every 10 ms.
    ::poll(&item, 1, child.pidfd() >= 0 ? PollMs(deadline - absl::Now()) : 10);
  }
}

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

class ChildProcessTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::MakeShortTempDir(); }
  void TearDown() override {
    std::error_code error;
    fs::remove_all(dir_, error);
  }

  // `/bin/sh -c script` in the temp dir, its output in log().
  LaunchPlan ShellPlan(const std::string& script) const {
    LaunchPlan plan;
    plan.argv = {"/bin/sh", "-c", script};
    plan.env = {"PATH=/usr/bin:/bin", "LANG=C"};
    plan.working_dir = dir_;
    plan.log_path = log_path();
    return plan;
  }

  // Runs `plan` to completion; its exit status must be "exited with code 0".
  std::string RunToCompletion(const LaunchPlan& plan) {
    absl::StatusOr<ChildProcess> child = SpawnChild(plan);
    EXPECT_TRUE(child.ok()) << child.status();
    if (!child.ok()) return "";
    std::optional<ExitStatus> status = WaitForExit(*child);
    EXPECT_TRUE(status.has_value()) << "child still running";
    if (status.has_value()) {
      EXPECT_EQ(status->Describe(), "exited with code 0") << ReadFile(log_path());
    }
    return ReadFile(log_path());
  }

  std::string log_path() const { return dir_ + "/log"; }

  std::string dir_;
};

// --- ExitStatus and SignalName ---------------------------------------------------------------

TEST(SignalNameTest, KnownAndUnknownSignals) {
  EXPECT_EQ(SignalName(9), "SIGKILL");
  EXPECT_EQ(SignalName(SIGTERM), "SIGTERM");
  EXPECT_EQ(SignalName(SIGSEGV), "SIGSEGV");
  EXPECT_EQ(SignalName(SIGINT), "SIGINT");
  EXPECT_EQ(SignalName(77), "signal 77");
  EXPECT_EQ(SignalName(1000), "signal 1000");
  EXPECT_EQ(SignalName(-1), "signal -1");
}

TEST(ExitStatusTest, Describe) {
  EXPECT_EQ((ExitStatus{.signaled = false, .code = 0}).Describe(), "exited with code 0");
  EXPECT_EQ((ExitStatus{.signaled = false, .code = 3}).Describe(), "exited with code 3");
  EXPECT_EQ((ExitStatus{.signaled = true, .signal = SIGKILL}).Describe(), "killed by SIGKILL");
  EXPECT_EQ((ExitStatus{.signaled = true, .signal = SIGSEGV, .core_dumped = true}).Describe(),
            "killed by SIGSEGV (core dumped)");
}

// --- Exit reporting --------------------------------------------------------------------------

TEST_F(ChildProcessTest, ReportsExitCode) {
  absl::StatusOr<ChildProcess> child = SpawnChild(ShellPlan("echo out; echo err >&2; exit 3"));
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_GT(child->pid(), 0);
  std::optional<ExitStatus> status = WaitForExit(*child);
  ASSERT_TRUE(status.has_value());
  EXPECT_FALSE(status->signaled);
  EXPECT_EQ(status->code, 3);
  EXPECT_EQ(status->Describe(), "exited with code 3");
  EXPECT_TRUE(child->exited());
  // stdout and stderr both go to the log.
  EXPECT_EQ(ReadFile(log_path()), "out\nerr\n");
}

TEST_F(ChildProcessTest, ReportsDeathBySignal) {
  absl::StatusOr<ChildProcess> child = SpawnChild(ShellPlan("kill -KILL $$"));
  ASSERT_TRUE(child.ok()) << child.status();
  std::optional<ExitStatus> status = WaitForExit(*child);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->signaled);
  EXPECT_EQ(status->signal, SIGKILL);
  EXPECT_FALSE(status->core_dumped);
  EXPECT_EQ(status->Describe(), "killed by SIGKILL");
}

TEST_F(ChildProcessTest, TryReapDoesNotBlockWhileRunning) {
  absl::StatusOr<ChildProcess> child = SpawnChild(ShellPlan("exec sleep 1000"));
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_FALSE(child->TryReap().has_value());
  EXPECT_FALSE(child->exited());
  child->SignalGroup(SIGTERM);
  std::optional<ExitStatus> status = WaitForExit(*child);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->Describe(), "killed by SIGTERM");
}

// --- Launch failures -------------------------------------------------------------------------

void ExpectNoChildren() {
  int status = 0;
  const pid_t reaped = ::waitpid(-1, &status, WNOHANG);
  const int error = errno;
  EXPECT_EQ(reaped, -1) << "a child process was left behind";
  EXPECT_EQ(error, ECHILD);
}

TEST_F(ChildProcessTest, ExecOfNonExecutableFileIsReported) {
  const std::string file = dir_ + "/not-a-program";
  std::ofstream(file) << "echo hi\n";
  ASSERT_EQ(::chmod(file.c_str(), 0644), 0);
  LaunchPlan plan = ShellPlan("");
  plan.argv = {file};
  absl::StatusOr<ChildProcess> child = SpawnChild(plan);
  ASSERT_FALSE(child.ok());
  const std::string message(child.status().message());
  EXPECT_THAT(message, HasSubstr("exec"));
  EXPECT_THAT(message, HasSubstr(std::strerror(EACCES)));
  EXPECT_THAT(message, HasSubstr(file));
  ExpectNoChildren();
}

TEST_F(ChildProcessTest, ExecOfMissingFileIsReported) {
  LaunchPlan plan = ShellPlan("");
  plan.argv = {dir_ + "/no-such-program", "arg"};
  absl::StatusOr<ChildProcess> child = SpawnChild(plan);
  ASSERT_FALSE(child.ok());
  const std::string message(child.status().message());
  EXPECT_THAT(message, HasSubstr("exec"));
  EXPECT_THAT(message, HasSubstr(std::strerror(ENOENT)));
  ExpectNoChildren();
}

TEST_F(ChildProcessTest, MissingWorkingDirIsReportedAsChdir) {
  LaunchPlan plan = ShellPlan("exit 0");
  plan.working_dir = dir_ + "/gone";
  absl::StatusOr<ChildProcess> child = SpawnChild(plan);
  ASSERT_FALSE(child.ok());
  const std::string message(child.status().message());
  EXPECT_THAT(message, HasSubstr("chdir"));
  EXPECT_THAT(message, HasSubstr(std::strerror(ENOENT)));
  ExpectNoChildren();
}

TEST_F(ChildProcessTest, UnwritableLogIsReported) {
  LaunchPlan plan = ShellPlan("exit 0");
  plan.log_path = dir_ + "/no-dir/log";
  absl::StatusOr<ChildProcess> child = SpawnChild(plan);
  ASSERT_FALSE(child.ok());
  EXPECT_THAT(std::string(child.status().message()), HasSubstr(plan.log_path));
  ExpectNoChildren();
}

TEST_F(ChildProcessTest, EmptyArgvIsRejected) {
  LaunchPlan plan = ShellPlan("");
  plan.argv.clear();
  absl::StatusOr<ChildProcess> child = SpawnChild(plan);
  ASSERT_FALSE(child.ok());
  EXPECT_EQ(child.status().code(), absl::StatusCode::kInvalidArgument);
}

// --- What the child gets ---------------------------------------------------------------------

TEST_F(ChildProcessTest, RlimitsAreAppliedInTheChild) {
  LaunchPlan plan = ShellPlan(
      "ulimit -n; ulimit -c; ulimit -v; grep -E '^Max (file size|cpu time|processes)' "
      "/proc/self/limits");
  plan.policy.limits.max_open_files = 64;
  plan.policy.limits.address_space_bytes = uint64_t{768} << 20;
  plan.policy.limits.max_file_size_bytes = uint64_t{3} << 20;
  plan.policy.limits.cpu_seconds = 77;
  plan.policy.limits.max_processes = 5;  // not applied: no per-kernel uid
  const std::vector<std::string> lines = Lines(RunToCompletion(plan));
  ASSERT_EQ(lines.size(), 6u) << absl::StrJoin(lines, "\n");
  EXPECT_EQ(lines[0], "64");
  EXPECT_EQ(lines[1], "0");
  EXPECT_EQ(lines[2], std::to_string((uint64_t{768} << 20) / 1024));
  EXPECT_THAT(lines[3], ::testing::MatchesRegex("Max cpu time +77 +77 +seconds *"));
  EXPECT_THAT(lines[4], ::testing::MatchesRegex("Max file size +3145728 +3145728 +bytes *"));
  // RLIMIT_NPROC would count every process of the server's own uid: left alone.
  EXPECT_THAT(lines[5], ::testing::Not(HasSubstr(" 5 ")));
}

TEST_F(ChildProcessTest, CoreLimitIsZeroEvenWithoutLimits) {
  const std::vector<std::string> lines = Lines(RunToCompletion(ShellPlan("ulimit -c")));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "0");
}

TEST_F(ChildProcessTest, FileSizeLimitIsEnforced) {
  LaunchPlan plan = ShellPlan("head -c 100000 /dev/zero > big; echo status=$?");
  plan.policy.limits.max_file_size_bytes = 4096;
  const std::string output = RunToCompletion(plan);
  EXPECT_THAT(output, HasSubstr("status=153")) << "128 + SIGXFSZ";
  EXPECT_EQ(fs::file_size(dir_ + "/big"), 4096u);
}

TEST_F(ChildProcessTest, ChildLeadsItsOwnSessionAndProcessGroup) {
  // /proc/<pid>/stat: pid (comm) state ppid pgrp session ...
  const std::string output = RunToCompletion(ShellPlan("cat /proc/$$/stat"));
  const size_t paren = output.rfind(')');
  ASSERT_NE(paren, std::string::npos) << output;
  const std::vector<std::string> fields =
      absl::StrSplit(output.substr(paren + 2), ' ', absl::SkipEmpty());
  ASSERT_GE(fields.size(), 4u) << output;
  const int pid = std::stoi(output);
  EXPECT_EQ(std::stoi(fields[2]), pid) << "pgrp";
  EXPECT_EQ(std::stoi(fields[3]), pid) << "session";
  EXPECT_EQ(std::stoi(fields[1]), ::getpid()) << "ppid";
}

TEST_F(ChildProcessTest, StdinIsDevNull) {
  const std::vector<std::string> lines =
      Lines(RunToCompletion(ShellPlan("readlink /proc/self/fd/0; read line; echo read=$?")));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "/dev/null");
  EXPECT_EQ(lines[1], "read=1");  // EOF at once
}

TEST_F(ChildProcessTest, WorkingDirAndEnvironmentAreThePlans) {
  LaunchPlan plan = ShellPlan("pwd; env | sort");
  plan.env = {"PATH=/usr/bin:/bin", "ONLY_THIS=1"};
  ::setenv("CELLGATE_PARENT_ONLY", "leak", 1);
  const std::vector<std::string> lines = Lines(RunToCompletion(plan));
  ::unsetenv("CELLGATE_PARENT_ONLY");
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(fs::canonical(lines[0]), fs::canonical(dir_));
  // dash adds PWD itself; nothing of the parent's environment is there.
  EXPECT_THAT(std::vector<std::string>(lines.begin() + 1, lines.end()),
              ::testing::IsSupersetOf({"ONLY_THIS=1", "PATH=/usr/bin:/bin"}));
  for (const std::string& line : lines) EXPECT_THAT(line, ::testing::Not(HasSubstr("leak")));
}

TEST_F(ChildProcessTest, NoFdBeyondStderrIsInherited) {
  // Two fds without CLOEXEC, at numbers `ls` would not pick for itself.
  const int devnull = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(devnull, 0);
  ASSERT_EQ(::dup2(devnull, 100), 100);
  ASSERT_EQ(::dup2(devnull, 201), 201);
  ::close(devnull);
  ASSERT_EQ(::fcntl(100, F_GETFD) & FD_CLOEXEC, 0);

  const std::vector<std::string> lines = Lines(RunToCompletion(ShellPlan("ls /proc/self/fd")));
  ::close(100);
  ::close(201);
  std::set<int> fds;
  for (const std::string& line : lines) {
    int fd;
    ASSERT_TRUE(absl::SimpleAtoi(line, &fd)) << line;
    fds.insert(fd);
  }
  EXPECT_TRUE(fds.contains(0) && fds.contains(1) && fds.contains(2));
  EXPECT_FALSE(fds.contains(100));
  EXPECT_FALSE(fds.contains(201));
  // Besides 0, 1, 2 only the directory `ls` itself opened.
  EXPECT_LE(fds.size(), 4u) << absl::StrJoin(lines, " ");
}

TEST_F(ChildProcessTest, NoNewPrivsIsSet) {
  const std::vector<std::string> lines =
      Lines(RunToCompletion(ShellPlan("grep '^NoNewPrivs:' /proc/self/status")));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], ::testing::MatchesRegex("NoNewPrivs:\\s+1"));
}

TEST_F(ChildProcessTest, SignalDispositionsAndMaskAreReset) {
  // The server may ignore or block signals; the kernel must start with the defaults.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction old_action {};
  ASSERT_EQ(::sigaction(SIGUSR2, &ignore, &old_action), 0);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &block, &old_mask), 0);

  const std::vector<std::string> lines =
      Lines(RunToCompletion(ShellPlan("grep -E '^Sig(Ign|Blk):' /proc/self/status")));
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ::sigaction(SIGUSR2, &old_action, nullptr);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], ::testing::MatchesRegex("SigBlk:\\s+0+"));
  EXPECT_THAT(lines[1], ::testing::MatchesRegex("SigIgn:\\s+0+"));
}

// --- pidfd and process groups ----------------------------------------------------------------

TEST_F(ChildProcessTest, PidfdBecomesReadableWhenTheChildExits) {
  absl::StatusOr<ChildProcess> child = SpawnChild(ShellPlan("exec sleep 1000"));
  ASSERT_TRUE(child.ok()) << child.status();
  ASSERT_GE(child->pidfd(), 0) << "pidfd_open unsupported";
  EXPECT_NE(::fcntl(child->pidfd(), F_GETFD) & FD_CLOEXEC, 0);
  pollfd item{child->pidfd(), POLLIN, 0};
  EXPECT_EQ(::poll(&item, 1, 0), 0) << "readable while the child runs";

  ::kill(child->pid(), SIGKILL);
  EXPECT_TRUE(WaitReadable(child->pidfd(), kDeadline));
  ASSERT_TRUE(child->TryReap().has_value()) << "readable pidfd but not reapable";
  EXPECT_EQ(child->exit_status()->Describe(), "killed by SIGKILL");
}

TEST_F(ChildProcessTest, StartTimeTellsARunningProcessAndEndsWithIt) {
  absl::StatusOr<ChildProcess> child = SpawnChild(ShellPlan("exec sleep 1000"));
  ASSERT_TRUE(child.ok()) << child.status();
  const std::optional<uint64_t> started = ProcessStartTime(child->pid());
  ASSERT_TRUE(started.has_value());
  EXPECT_GT(*started, 0u);
  EXPECT_EQ(ProcessStartTime(child->pid()), started);
  EXPECT_NE(ProcessStartTime(::getpid()), std::nullopt);
  EXPECT_EQ(ProcessUid(child->pid()), static_cast<int>(::geteuid()));

  ::kill(child->pid(), SIGKILL);
  ASSERT_TRUE(WaitReadable(child->pidfd(), kDeadline));
  // Not reaped yet: a zombie has ended all the same.
  EXPECT_EQ(ProcessStartTime(child->pid()), std::nullopt);
  ASSERT_TRUE(child->TryReap().has_value());
  EXPECT_EQ(ProcessStartTime(child->pid()), std::nullopt);
  EXPECT_EQ(ProcessStartTime(4194304 + 1), std::nullopt);
  EXPECT_EQ(ProcessUid(4194304 + 1), -1);
}

TEST_F(ChildProcessTest, AnAdoptedProcessEndsWithAnUnknownStatusAndIsNotWaitedFor) {
  absl::StatusOr<ChildProcess> child = SpawnChild(ShellPlan("exec sleep 1000"));
  ASSERT_TRUE(child.ok()) << child.status();
  ChildProcess adopted = ChildProcess::Adopt(child->pid(), OpenPidfd(child->pid()));
  EXPECT_FALSE(adopted.TryReap().has_value());
  adopted.SignalGroup(SIGKILL);
  ASSERT_TRUE(WaitReadable(adopted.pidfd(), kDeadline));
  ASSERT_TRUE(adopted.TryReap().has_value());
  EXPECT_TRUE(adopted.exit_status()->unknown);
  EXPECT_THAT(adopted.exit_status()->Describe(), HasSubstr("unknown"));
  // The adopter did not reap it: its real parent still can.
  std::optional<ExitStatus> status = WaitForExit(*child);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->Describe(), "killed by SIGKILL");
}

TEST_F(ChildProcessTest, AReleasedProcessGoesOnRunning) {
  pid_t pid = -1;
  {
    absl::StatusOr<ChildProcess> child = SpawnChild(ShellPlan("exec sleep 1000"));
    ASSERT_TRUE(child.ok()) << child.status();
    pid = child->pid();
    child->Release();
  }
  EXPECT_NE(ProcessStartTime(pid), std::nullopt) << "released, yet killed";
  ::kill(pid, SIGKILL);
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  ExpectNoChildren();
}

TEST_F(ChildProcessTest, OpenPidfdOfMissingProcessFails) {
  // Reaped children's pids are free; pid_max is never above 4194304.
  EXPECT_EQ(OpenPidfd(4194304 + 1), -1);
  const int self = OpenPidfd(::getpid());
  EXPECT_GE(self, 0);
  if (self >= 0) ::close(self);
}

TEST_F(ChildProcessTest, SignalGroupKillsGrandchildren) {
  // The log is a FIFO so the test can wait for the grandchild's pid without polling a file.
  ASSERT_EQ(::mkfifo(log_path().c_str(), 0600), 0);
  const int reader = ::open(log_path().c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  absl::StatusOr<ChildProcess> child = SpawnChild(ShellPlan("sleep 1000 & echo $!; wait"));
  ASSERT_TRUE(child.ok()) << child.status();

  std::string output;
  const absl::Time deadline = absl::Now() + kDeadline;
  while (output.find('\n') == std::string::npos && absl::Now() < deadline) {
    ASSERT_TRUE(WaitReadable(reader, deadline - absl::Now()));
    char buffer[64];
    const ssize_t got = ::read(reader, buffer, sizeof(buffer));
    if (got > 0) output.append(buffer, static_cast<size_t>(got));
  }
  ::close(reader);
  int grandchild = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(output), &grandchild)) << output;
  ASSERT_NE(grandchild, child->pid());
  const int grandchild_pidfd = OpenPidfd(grandchild);
  ASSERT_GE(grandchild_pidfd, 0);
  EXPECT_EQ(::getpgid(grandchild), child->pid());

  child->SignalGroup(SIGKILL);
  EXPECT_TRUE(WaitReadable(grandchild_pidfd, kDeadline)) << "grandchild survived";
  ::close(grandchild_pidfd);
  std::optional<ExitStatus> status = WaitForExit(*child);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->Describe(), "killed by SIGKILL");
}

TEST_F(ChildProcessTest, DestructorKillsAndReapsARunningChild) {
  pid_t pid = -1;
  {
    absl::StatusOr<ChildProcess> child = SpawnChild(ShellPlan("exec sleep 1000"));
    ASSERT_TRUE(child.ok()) << child.status();
    pid = child->pid();
    // A move leaves the moved-from object inert: the child survives it.
    ChildProcess moved(std::move(*child));
    EXPECT_EQ(moved.pid(), pid);
    EXPECT_EQ(::kill(pid, 0), 0);
  }
  // Killed and reaped: the pid no longer names anything of ours.
  const int rc = ::kill(pid, 0);
  const int error = errno;
  EXPECT_EQ(rc, -1);
  EXPECT_EQ(error, ESRCH);
  ExpectNoChildren();
}

// --- Per-kernel uid (root only) --------------------------------------------------------------

TEST_F(ChildProcessTest, SwitchesUidAndGidWhenRoot) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  LaunchPlan plan = ShellPlan(
      "id -u; id -g; id -G; grep -E '^Max processes' /proc/self/limits; echo x > owned; "
      "stat -c %u owned");
  plan.policy.uid = kTestUid;
  plan.policy.gid = kTestUid;
  plan.policy.limits.max_processes = 50;
  // The kernel's working dir belongs to it (the server chowns it).
  ASSERT_EQ(::chown(dir_.c_str(), kTestUid, kTestUid), 0);
  const std::vector<std::string> lines = Lines(RunToCompletion(plan));
  ASSERT_EQ(lines.size(), 5u) << absl::StrJoin(lines, "\n");
  const std::string uid = std::to_string(kTestUid);
  EXPECT_EQ(lines[0], uid);
  EXPECT_EQ(lines[1], uid);
  EXPECT_EQ(lines[2], uid) << "supplementary groups must be dropped";
  EXPECT_THAT(lines[3], ::testing::MatchesRegex("Max processes +50 +50 +processes *"));
  EXPECT_EQ(lines[4], uid);
  // The log was handed to the kernel's uid.
  struct stat log_stat {};
  ASSERT_EQ(::stat(log_path().c_str(), &log_stat), 0);
  EXPECT_EQ(static_cast<int>(log_stat.st_uid), kTestUid);
}

TEST_F(ChildProcessTest, UnprivilegedChildCannotSignalTheServer) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  LaunchPlan plan = ShellPlan(absl::StrCat("kill -0 ", ::getpid(), " 2>/dev/null; echo rc=$?"));
  plan.policy.uid = kTestUid + 1;
  plan.policy.gid = kTestUid + 1;
  EXPECT_EQ(Lines(RunToCompletion(plan)), std::vector<std::string>{"rc=1"});
}

}  // namespace
}  // namespace cellgate::kernel
