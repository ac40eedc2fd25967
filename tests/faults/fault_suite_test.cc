// The fault suite (issue #5): every case runs a fault in one kernel while a healthy neighbour
// kernel keeps executing a counter loop, and asserts that
//   (a) the fault is contained, with a clear status and reason,
//   (b) the neighbour lost nothing and was not slowed beyond a generous bound,
//   (c) the gateway's own RSS and fd count are back to their baseline afterwards, and no
//       process of either kernel's uid is left.
//
// One server per suite with limits small enough to make every fault quick and deterministic.
// The rlimits suite needs the server to run as root (per-kernel uids); the bwrap suite is
// skipped where bubblewrap does not work.

#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"

namespace cellgate {
namespace {

namespace fs = std::filesystem;
using ::testing::AnyOf;
using testing::GatewayClient;
using ::testing::HasSubstr;
using testing::ServerProcess;
using testing::ServerSuite;
using ::testing::StartsWith;

// ---------------------------------------------------------------------------------------------
// Limits of the suites' servers, and the bounds of the checks.

constexpr int64_t kMemoryLimit = 1ll << 30;     // RLIMIT_AS per kernel
constexpr int kMaxProcesses = 64;               // RLIMIT_NPROC per kernel uid
constexpr int kMaxOpenFiles = 256;              // RLIMIT_NOFILE
constexpr int64_t kMaxFileSize = 100ll << 20;   // RLIMIT_FSIZE
constexpr int64_t kMaxOutputBytes = 1ll << 20;  // stored outputs per execution
constexpr int64_t kEventLogBytes = 16ll << 20;  // EventLog per kernel

constexpr int kInterruptEscalationSeconds = 3;  // an ignored interrupt: killed after
constexpr int kUnresponsiveKillSeconds = 5;     // no heartbeat: killed after (plus 3 s to notice)

constexpr int kNeighbourMinRounds = 10;  // counter rounds, at least
constexpr absl::Duration kNeighbourP50Bound = absl::Seconds(1);
constexpr absl::Duration kNeighbourMaxBound = absl::Seconds(15);
constexpr int64_t kRssSlack = 64ll << 20;  // gateway RSS back within this of baseline
constexpr int kFdSlack = 8;                // gateway fds back within this of baseline
constexpr absl::Duration kSettleDeadline = absl::Seconds(30);

const char kToken[] = "fault-suite-token";

// The token file (mode 0600, owned by the test's user: kernels with their own uid can't read
// it), made once per test process and removed when it exits.
const std::string& TokenFile() {
  // A static object, so that the file goes when the process exits (an atexit handler would run
  // after the path itself was destroyed).
  struct File {
    File() {
      char pattern[] = "/tmp/cgfault-token-XXXXXX";
      const int fd = ::mkstemp(pattern);
      if (fd >= 0) {
        const std::string line = absl::StrCat(kToken, "\n");
        [[maybe_unused]] ssize_t written = ::write(fd, line.data(), line.size());
        ::close(fd);
      }
      path = pattern;
    }
    ~File() { ::unlink(path.c_str()); }
    std::string path;
  };
  static const File file;
  return file.path;
}

std::vector<std::string> LimitArgs() {
  return {absl::StrCat("--memory-limit-bytes=", kMemoryLimit),
          absl::StrCat("--max-processes=", kMaxProcesses),
          absl::StrCat("--max-open-files=", kMaxOpenFiles),
          absl::StrCat("--max-file-size-bytes=", kMaxFileSize),
          absl::StrCat("--max-output-bytes=", kMaxOutputBytes),
          absl::StrCat("--event-log-bytes=", kEventLogBytes),
          absl::StrCat("--interrupt-escalation-seconds=", kInterruptEscalationSeconds),
          absl::StrCat("--unresponsive-kill-seconds=", kUnresponsiveKillSeconds),
          "--auth-token-file=" + TokenFile()};
}

struct RlimitsFlags {
  static std::vector<std::string> Args() {
    std::vector<std::string> args = LimitArgs();
    args.push_back("--sandbox=rlimits");
    return args;
  }
  static std::vector<std::string> Env() { return {}; }
  static std::string Token() { return kToken; }
  static constexpr bool kMayBeUnavailable = false;
};

struct BwrapFlags {
  static std::vector<std::string> Args() {
    std::vector<std::string> args = LimitArgs();
    args.push_back("--sandbox=bwrap");
    return args;
  }
  static std::vector<std::string> Env() { return {}; }
  static std::string Token() { return kToken; }
  // The server refuses to start with --sandbox=bwrap where bubblewrap does not work.
  static constexpr bool kMayBeUnavailable = true;
};

// No address-space limit: the kernel's cgroup bounds its real memory instead.
constexpr int64_t kCgroupMemory = 256ll << 20;
struct CgroupFlags {
  static std::vector<std::string> Args() {
    std::vector<std::string> args = LimitArgs();
    args.push_back("--memory-limit-bytes=0");
    args.push_back(absl::StrCat("--cgroup-memory-bytes=", kCgroupMemory));
    return args;
  }
  static std::vector<std::string> Env() { return {}; }
  static std::string Token() { return kToken; }
  static constexpr bool kMayBeUnavailable = false;
};

// ---------------------------------------------------------------------------------------------
// /proc readings.

struct Gauges {
  int64_t rss_bytes = -1;
  int fds = -1;
};

Gauges ReadGauges(pid_t pid) {
  Gauges gauges;
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (!absl::StartsWith(line, "VmRSS:")) continue;
    std::vector<std::string> parts =
        absl::StrSplit(line.substr(6), absl::ByAnyChar(" \t"), absl::SkipEmpty());
    int64_t kib = 0;
    if (!parts.empty() && absl::SimpleAtoi(parts[0], &kib)) gauges.rss_bytes = kib * 1024;
  }
  std::error_code error;
  int fds = 0;
  for (fs::directory_iterator it(absl::StrCat("/proc/", pid, "/fd"), error);
       !error && it != fs::directory_iterator(); it.increment(error)) {
    ++fds;
  }
  if (!error) gauges.fds = fds;
  return gauges;
}

std::string MiB(int64_t bytes) {
  return absl::StrCat(bytes < 0 ? "-" : "+", std::abs(bytes) >> 20, " MiB");
}

// Pids of the processes whose real uid is `uid` (zombies included: a leftover zombie still
// counts against RLIMIT_NPROC).
std::vector<std::string> ProcessesOfUid(int uid) {
  std::vector<std::string> found;
  std::error_code error;
  for (fs::directory_iterator it("/proc", error); !error && it != fs::directory_iterator();
       it.increment(error)) {
    const std::string name = it->path().filename().string();
    int pid = 0;
    if (!absl::SimpleAtoi(name, &pid)) continue;
    std::ifstream status(it->path() / "status");
    std::string line, state;
    while (std::getline(status, line)) {
      if (absl::StartsWith(line, "State:")) {
        state = std::string(absl::StripAsciiWhitespace(line.substr(6)));
      }
      if (!absl::StartsWith(line, "Uid:")) continue;
      std::vector<std::string> ids =
          absl::StrSplit(line.substr(4), absl::ByAnyChar(" \t"), absl::SkipEmpty());
      int real_uid = -1;
      if (!ids.empty() && absl::SimpleAtoi(ids[0], &real_uid) && real_uid == uid) {
        found.push_back(absl::StrCat(pid, " (", state, ")"));
      }
      break;
    }
  }
  return found;
}

// Polls `condition` until it holds or `timeout` passes; the last evaluation is returned.
bool WaitFor(absl::Duration timeout, const std::function<bool()>& condition) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));  // polling a condition, with a deadline
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// RPC helpers.

std::string StatusName(v1::ExecutionStatus status) { return v1::ExecutionStatus_Name(status); }

// "KERNEL_DIED (exited with code 3)", "ERROR (PermissionError: [Errno 1] ...)".
std::string Describe(const v1::ExecutionResult& result) {
  std::string out(absl::StripPrefix(StatusName(result.status()), "EXECUTION_STATUS_"));
  std::string why = result.status_detail();
  if (result.has_error() && !result.error().ename().empty()) {
    std::string error = result.error().ename();
    if (!result.error().evalue().empty()) {
      absl::StrAppend(&error, ": ", result.error().evalue().substr(0, 80));
    }
    why = why.empty() ? error : absl::StrCat(why, "; ", error);
  }
  if (!why.empty()) absl::StrAppend(&out, " (", why, ")");
  if (result.truncated()) absl::StrAppend(&out, " [truncated]");
  return out;
}

grpc::Status Execute(GatewayClient& client, const std::string& kernel_id, const std::string& code,
                     v1::ExecutionResult* result, int64_t timeout_ms = 0,
                     int deadline_seconds = 120) {
  v1::ExecuteRequest request;
  request.set_kernel_id(kernel_id);
  request.set_code(code);
  request.set_timeout_ms(timeout_ms);
  return client.stub().Execute(client.Context(deadline_seconds).get(), request, result);
}

v1::Kernel MustGetKernel(GatewayClient& client, const std::string& kernel_id) {
  v1::GetKernelRequest request;
  request.set_kernel_id(kernel_id);
  v1::Kernel kernel;
  grpc::Status status = client.stub().GetKernel(client.Context().get(), request, &kernel);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return kernel;
}

grpc::Status Restart(GatewayClient& client, const std::string& kernel_id, v1::Kernel* kernel) {
  v1::RestartKernelRequest request;
  request.set_kernel_id(kernel_id);
  return client.stub().RestartKernel(client.Context().get(), request, kernel);
}

// ---------------------------------------------------------------------------------------------
// The neighbour: a healthy kernel that keeps executing a counter loop, one short Execute per
// round, each checked and timed, from SetUp until the fault case is over.

class CounterLoop {
 public:
  CounterLoop(GatewayClient& client, std::string kernel_id)
      : client_(client), kernel_id_(std::move(kernel_id)) {}
  ~CounterLoop() { Stop(); }

  void Start() {
    thread_ = std::thread([this] { Run(); });
  }
  // Ends the loop after at least kNeighbourMinRounds rounds.
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  int rounds() const { return rounds_; }
  const std::vector<std::string>& problems() const { return problems_; }
  absl::Duration Percentile(double p) const {
    if (round_trips_.empty()) return absl::InfiniteDuration();
    std::vector<absl::Duration> sorted = round_trips_;
    std::sort(sorted.begin(), sorted.end());
    const size_t index = std::min(sorted.size() - 1, static_cast<size_t>(p * sorted.size()));
    return sorted[index];
  }

 private:
  void Run() {
    const absl::Time give_up = absl::Now() + absl::Minutes(5);
    for (int round = 1; round <= 100000 && absl::Now() < give_up; ++round) {
      if (stop_.load() && round > kNeighbourMinRounds) break;
      v1::ExecutionResult result;
      const absl::Time start = absl::Now();
      grpc::Status status =
          Execute(client_, kernel_id_, "n += 1\n_ = sum(range(2000))\nprint(n)", &result, 0, 60);
      round_trips_.push_back(absl::Now() - start);
      if (!status.ok()) {
        problems_.push_back(absl::StrCat("round ", round, ": rpc ", status.error_code(), " ",
                                         status.error_message()));
        return;
      }
      if (result.status() != v1::EXECUTION_STATUS_OK ||
          result.text() != absl::StrCat(round, "\n")) {
        problems_.push_back(
            absl::StrCat("round ", round, ": ", Describe(result), " text '", result.text(), "'"));
        return;
      }
      rounds_ = round;
    }
  }

  GatewayClient& client_;
  const std::string kernel_id_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  int rounds_ = 0;
  std::vector<absl::Duration> round_trips_;
  std::vector<std::string> problems_;
};

// ---------------------------------------------------------------------------------------------
// The fixture.

struct KernelFacts {
  std::string id;
  int pid = -1;
  int uid = -1;
  std::string dir;
};

template <typename Flags>
class FaultSuite : public ServerSuite<Flags> {
 protected:
  using Base = ServerSuite<Flags>;

  static void SetUpTestSuite() {
    Base::server_ = new ServerProcess(Flags::Args(), Flags::Env());
    if (Base::server_->WaitForPort(absl::Seconds(60)) <= 0) {
      std::string log = Base::server_->log();
      if (log.size() > 2000) log = log.substr(log.size() - 2000);
      if (Flags::kMayBeUnavailable) {
        unavailable_ = absl::StrCat("the server did not start with these flags here:\n", log);
        return;
      }
      FAIL() << "the server did not start:\n" << log;
    }
    Base::client_ = new GatewayClient(Base::server_->Target(), Flags::Token());
    GatewayClient& client = *Base::client_;
    ASSERT_TRUE(client.stub()
                    .GetServerInfo(client.Context().get(), v1::GetServerInfoRequest(), &info_)
                    .ok());
    // Warm up: the first kernel's start and shutdown allocate what the server keeps for good
    // (thread pools, gRPC and ZMQ state); the baselines are taken after it.
    const std::string warmup = client.MustStartKernel();
    ASSERT_FALSE(warmup.empty());
    ASSERT_EQ(client.MustExecute(warmup, "1").status(), v1::EXECUTION_STATUS_OK);
    ASSERT_TRUE(client.Shutdown(warmup).ok());
    suite_baseline_ = ReadGauges(Base::server_->pid());
  }

  static void TearDownTestSuite() {
    if (Base::server_ != nullptr && Base::client_ != nullptr) {
      // Over the whole suite, the gateway is back near where it started, too.
      const pid_t pid = Base::server_->pid();
      Gauges now;
      WaitFor(kSettleDeadline, [&] {
        now = ReadGauges(pid);
        return now.rss_bytes <= suite_baseline_.rss_bytes + kRssSlack &&
               now.fds <= suite_baseline_.fds + kFdSlack;
      });
      EXPECT_LE(now.rss_bytes, suite_baseline_.rss_bytes + kRssSlack)
          << "gateway RSS over the suite: " << MiB(now.rss_bytes - suite_baseline_.rss_bytes);
      EXPECT_LE(now.fds, suite_baseline_.fds + kFdSlack)
          << "gateway fds over the suite: " << suite_baseline_.fds << " -> " << now.fds;
      std::cout << "[fault suite] gateway over the suite: RSS "
                << MiB(now.rss_bytes - suite_baseline_.rss_bytes) << ", fds "
                << now.fds - suite_baseline_.fds << "\n";
    }
    Base::TearDownTestSuite();
  }

  void SetUp() override {
    if (!unavailable_.empty()) GTEST_SKIP() << unavailable_;
    ASSERT_NE(Base::client_, nullptr);
    baseline_ = ReadGauges(server().pid());
    ASSERT_GT(baseline_.rss_bytes, 0);
    ASSERT_GT(baseline_.fds, 0);

    auto start = [] { return Base::client().MustStartKernel(); };
    std::future<std::string> neighbour = std::async(std::launch::async, start);
    std::future<std::string> victim = std::async(std::launch::async, start);
    neighbour_.id = neighbour.get();
    victim_.id = victim.get();
    ASSERT_FALSE(neighbour_.id.empty());
    ASSERT_FALSE(victim_.id.empty());
    ReadFacts(neighbour_);
    ReadFacts(victim_);
    // Something for a fault to go after: a private file in the neighbour's directory.
    v1::ExecutionResult result;
    ASSERT_TRUE(Execute(client(), neighbour_.id,
                        "n = 0\nwith open('secret.txt', 'w') as f:\n    f.write('neighbour')",
                        &result)
                    .ok());
    ASSERT_EQ(result.status(), v1::EXECUTION_STATUS_OK) << result.text();
    counter_ = std::make_unique<CounterLoop>(client(), neighbour_.id);
    counter_->Start();
  }

  void TearDown() override {
    if (counter_ != nullptr) CheckNeighbour();
    ShutDownKernelsAndCheckLeftovers();
    if (!neighbour_.id.empty()) CheckGatewayBackToBaseline();
    std::cout << "[fault] " << ::testing::UnitTest::GetInstance()->current_test_info()->name()
              << " | " << (outcome_.empty() ? "-" : outcome_) << " | " << neighbour_summary_
              << " | " << gateway_summary_ << "\n";
    Base::TearDown();
  }

  static GatewayClient& client() { return Base::client(); }
  static ServerProcess& server() { return Base::server(); }
  static bool PerKernelUid() { return LayerInForce("per_kernel_uid"); }
  static bool LayerInForce(const std::string& name) {
    for (const v1::SandboxLayer& layer : info_.sandbox_layers()) {
      if (layer.name() == name) return layer.in_force();
    }
    return false;
  }

  // Records the fault's outcome for the summary line.
  void Observe(const v1::ExecutionResult& result) { Observe(Describe(result)); }
  void Observe(const std::string& outcome) {
    outcome_ = outcome_.empty() ? outcome : absl::StrCat(outcome_, "; ", outcome);
  }

  // Runs `code` in the victim and returns the result (the RPC must succeed).
  v1::ExecutionResult RunInVictim(const std::string& code, int64_t timeout_ms = 0,
                                  int deadline_seconds = 120) {
    v1::ExecutionResult result;
    grpc::Status status =
        Execute(client(), victim_.id, code, &result, timeout_ms, deadline_seconds);
    EXPECT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
    return result;
  }

  // The victim answers a trivial execution correctly.
  void ExpectVictimUsable() {
    const v1::ExecutionResult result = RunInVictim("print(6 * 7)");
    EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_OK) << Describe(result) << result.text();
    EXPECT_EQ(result.text(), "42\n");
  }

  // After a death: the kernel says why and comes back by itself (the restart policy, on by
  // default: DEAD, then after a backoff RESTARTING "automatic restart after: <reason>", then
  // IDLE), a new process with restart_count 1 and the reason kept.
  void ExpectRestartedAfterDeath(const std::string& reason_prefix) {
    v1::Kernel kernel;
    EXPECT_TRUE(WaitFor(absl::Seconds(30),
                        [&] {
                          kernel = MustGetKernel(client(), victim_.id);
                          return kernel.restart_count() >= 1 &&
                                 kernel.state() == v1::KERNEL_STATE_IDLE;
                        }))
        << "not restarted: " << v1::KernelState_Name(kernel.state()) << " ("
        << kernel.last_death_reason() << ")";
    EXPECT_EQ(kernel.restart_count(), 1);
    EXPECT_THAT(kernel.last_death_reason(), StartsWith(reason_prefix));
    EXPECT_NE(kernel.pid(), victim_.pid);
    // The event log tells the same story.
    v1::StreamOutputsRequest replay;
    replay.set_kernel_id(victim_.id);
    replay.set_follow(false);
    auto context = client().Context();
    auto reader = client().stub().StreamOutputs(context.get(), replay);
    std::vector<std::string> states;
    v1::OutputEvent event;
    while (reader->Read(&event)) {
      if (!event.has_kernel_status()) continue;
      const v1::KernelStatus& status = event.kernel_status();
      if (status.state() == v1::KERNEL_STATE_DEAD ||
          status.state() == v1::KERNEL_STATE_RESTARTING) {
        states.push_back(absl::StrCat(v1::KernelState_Name(status.state()), ": ", status.reason()));
      }
    }
    EXPECT_TRUE(reader->Finish().ok());
    ASSERT_EQ(states.size(), 2u) << absl::StrJoin(states, "\n");
    EXPECT_THAT(states[0], StartsWith("KERNEL_STATE_DEAD: " + reason_prefix));
    EXPECT_THAT(states[1],
                StartsWith("KERNEL_STATE_RESTARTING: automatic restart after: " + reason_prefix));
    Observe("restarted automatically");
    ExpectVictimUsable();
  }

  // Whether an event retained in the kernel's log satisfies `match`.
  static bool AnyEvent(const std::string& kernel_id,
                       const std::function<bool(const v1::OutputEvent&)>& match) {
    v1::StreamOutputsRequest replay;
    replay.set_kernel_id(kernel_id);
    replay.set_follow(false);
    auto context = client().Context();
    auto reader = client().stub().StreamOutputs(context.get(), replay);
    bool found = false;
    v1::OutputEvent event;
    while (reader->Read(&event)) found = found || match(event);
    return reader->Finish().ok() && found;
  }

  KernelFacts neighbour_, victim_;
  Gauges baseline_;  // the gateway before this case's kernels started
  static inline v1::ServerInfo info_;

 private:
  static void ReadFacts(KernelFacts& facts) {
    const v1::Kernel kernel = MustGetKernel(client(), facts.id);
    facts.pid = kernel.pid();
    v1::ExecutionResult result;
    ASSERT_TRUE(
        Execute(client(), facts.id, "import os\nprint(os.getuid(), os.getcwd())", &result).ok());
    ASSERT_EQ(result.status(), v1::EXECUTION_STATUS_OK) << result.text();
    std::vector<std::string> parts =
        absl::StrSplit(absl::StripAsciiWhitespace(result.text()), absl::MaxSplits(' ', 1));
    ASSERT_EQ(parts.size(), 2u) << result.text();
    ASSERT_TRUE(absl::SimpleAtoi(parts[0], &facts.uid)) << result.text();
    facts.dir = parts[1];
  }

  void CheckNeighbour() {
    counter_->Stop();
    const CounterLoop& loop = *counter_;
    EXPECT_TRUE(loop.problems().empty()) << absl::StrJoin(loop.problems(), "\n");
    EXPECT_GE(loop.rounds(), kNeighbourMinRounds);
    const absl::Duration p50 = loop.Percentile(0.5), max = loop.Percentile(1.0);
    EXPECT_LT(p50, kNeighbourP50Bound) << "neighbour round trips slowed";
    EXPECT_LT(max, kNeighbourMaxBound) << "neighbour round trips slowed";
    neighbour_summary_ = absl::StrCat(loop.rounds(), " rounds, p50 ", absl::FormatDuration(p50),
                                      ", max ", absl::FormatDuration(max));
    // It lost nothing: the counter is whole, same process, never restarted.
    v1::ExecutionResult result;
    ASSERT_TRUE(Execute(client(), neighbour_.id, "print(n)", &result).ok());
    EXPECT_EQ(result.text(), absl::StrCat(loop.rounds(), "\n")) << Describe(result);
    const v1::Kernel kernel = MustGetKernel(client(), neighbour_.id);
    EXPECT_EQ(kernel.state(), v1::KERNEL_STATE_IDLE);
    EXPECT_EQ(kernel.pid(), neighbour_.pid);
    EXPECT_EQ(kernel.restart_count(), 0);
    EXPECT_EQ(kernel.last_death_reason(), "");
    counter_.reset();
  }

  void ShutDownKernelsAndCheckLeftovers() {
    std::vector<std::future<grpc::Status>> shutdowns;
    for (const KernelFacts* facts : {&neighbour_, &victim_}) {
      if (facts->id.empty()) continue;
      shutdowns.push_back(
          std::async(std::launch::async, [id = facts->id] { return Base::client().Shutdown(id); }));
    }
    for (auto& shutdown : shutdowns) {
      const grpc::Status status = shutdown.get();
      EXPECT_TRUE(status.ok()) << status.error_message();
    }
    if (!PerKernelUid()) return;
    for (const KernelFacts* facts : {&neighbour_, &victim_}) {
      if (facts->uid <= 0 || facts->uid == static_cast<int>(::getuid())) continue;
      std::vector<std::string> left;
      WaitFor(absl::Seconds(10), [&] { return (left = ProcessesOfUid(facts->uid)).empty(); });
      EXPECT_TRUE(left.empty()) << "processes of kernel uid " << facts->uid
                                << " left after shutdown: " << absl::StrJoin(left, ", ");
    }
  }

  void CheckGatewayBackToBaseline() {
    Gauges now;
    WaitFor(kSettleDeadline, [&] {
      now = ReadGauges(server().pid());
      return now.rss_bytes <= baseline_.rss_bytes + kRssSlack &&
             now.fds <= baseline_.fds + kFdSlack;
    });
    EXPECT_LE(now.rss_bytes, baseline_.rss_bytes + kRssSlack)
        << "gateway RSS " << MiB(now.rss_bytes - baseline_.rss_bytes) << " over its baseline";
    EXPECT_LE(now.fds, baseline_.fds + kFdSlack)
        << "gateway fds " << baseline_.fds << " -> " << now.fds;
    gateway_summary_ =
        absl::StrCat("RSS ", MiB(now.rss_bytes - baseline_.rss_bytes), ", fds ",
                     now.fds - baseline_.fds >= 0 ? "+" : "", now.fds - baseline_.fds);
  }

  static inline std::string unavailable_;
  static inline Gauges suite_baseline_;
  std::unique_ptr<CounterLoop> counter_;
  std::string outcome_, neighbour_summary_ = "-", gateway_summary_ = "-";
};

// Samples the gateway's RSS in the background, keeping the peak.
class PeakRss {
 public:
  explicit PeakRss(pid_t pid)
      : thread_([this, pid] {
          while (!stop_.load()) {
            peak_ = std::max(peak_.load(), ReadGauges(pid).rss_bytes);
            absl::SleepFor(absl::Milliseconds(10));  // sampling, not synchronising
          }
        }) {}
  ~PeakRss() { Stop(); }
  int64_t Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return peak_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> peak_{0};
  std::thread thread_;
};

// =============================================================================================
// The rlimits sandbox (the default), server as root: kernels have their own uids.

class RlimitsFaultTest : public FaultSuite<RlimitsFlags> {
 protected:
  void SetUp() override {
    FaultSuite::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (!PerKernelUid()) {
      GTEST_SKIP() << "the fault suite needs per-kernel uids (run the server as root)";
    }
  }
};

TEST_F(RlimitsFaultTest, MemoryBombRaisesMemoryErrorUnderTheAddressSpaceLimit) {
  // Grows until RLIMIT_AS (1 GiB) refuses: MemoryError, and the kernel survives. A kernel that
  // dies of it instead must say so, with the limit as the likely cause.
  const v1::ExecutionResult result = RunInVictim(
      "hog = []\n"
      "while True:\n"
      "    hog.append(bytearray(32 << 20))\n");
  Observe(result);
  if (result.status() == v1::EXECUTION_STATUS_KERNEL_DIED) {
    EXPECT_THAT(result.status_detail(), HasSubstr("address-space limit of 1024 MiB"));
    ExpectRestartedAfterDeath("killed by");
    return;
  }
  ASSERT_EQ(result.status(), v1::EXECUTION_STATUS_ERROR) << result.text();
  EXPECT_EQ(result.error().ename(), "MemoryError");
  // The kernel survives: it frees the memory and runs on.
  const v1::ExecutionResult after = RunInVictim("n = len(hog)\ndel hog\nprint(n > 0)");
  EXPECT_EQ(after.text(), "True\n") << Describe(after);
  ExpectVictimUsable();
  EXPECT_EQ(MustGetKernel(client(), victim_.id).restart_count(), 0);
}

TEST_F(RlimitsFaultTest, ForkBombIsStoppedByTheProcessLimit) {
  // Every process forks until RLIMIT_NPROC refuses; the children then hold their slot. The
  // original process reports the refusal.
  const v1::ExecutionResult result = RunInVictim(
      "import os, time\n"
      "root = os.getpid()\n"
      "refused = None\n"
      "while refused is None:\n"
      "    try:\n"
      "        if os.fork() == 0:\n"
      "            continue\n"
      "    except OSError as e:\n"
      "        refused = e\n"
      "if os.getpid() != root:\n"
      "    try:\n"
      "        time.sleep(600)\n"
      "    finally:\n"
      "        os._exit(0)\n"
      "raise refused\n",
      0, 60);
  Observe(result);
  ASSERT_EQ(result.status(), v1::EXECUTION_STATUS_ERROR) << result.text();
  EXPECT_EQ(result.error().ename(), "BlockingIOError");
  EXPECT_THAT(result.error().evalue(), HasSubstr("Resource temporarily unavailable"));
  // The bomb's processes are all the victim's uid, at most the limit.
  const size_t processes = ProcessesOfUid(victim_.uid).size();
  EXPECT_LE(processes, static_cast<size_t>(kMaxProcesses));
  EXPECT_GE(processes, static_cast<size_t>(kMaxProcesses / 2));
  Observe(absl::StrCat(processes, " processes of the kernel's uid"));
  // A restart kills the process group, bomb included. The killed processes are orphans that
  // pid 1 reaps (lazily on some container hosts, and until then they still count against the
  // uid's RLIMIT_NPROC): once they are gone, the new kernel can fork again.
  v1::Kernel kernel;
  ASSERT_TRUE(Restart(client(), victim_.id, &kernel).ok());
  EXPECT_EQ(kernel.state(), v1::KERNEL_STATE_IDLE);
  const absl::Time restarted = absl::Now();
  std::vector<std::string> left;
  EXPECT_TRUE(
      WaitFor(absl::Seconds(20), [&] { return (left = ProcessesOfUid(victim_.uid)).size() <= 1; }))
      << "the bomb's processes outlived the restart: " << absl::StrJoin(left, ", ");
  Observe(absl::StrCat("bomb gone ", absl::FormatDuration(absl::Now() - restarted),
                       " after the restart"));
  const v1::ExecutionResult fork =
      RunInVictim("import subprocess\nprint(subprocess.run(['true']).returncode)");
  EXPECT_EQ(fork.text(), "0\n") << Describe(fork) << fork.text();
}

TEST_F(RlimitsFaultTest, InfiniteLoopTimesOutAndTheKernelStaysUsable) {
  const v1::ExecutionResult result = RunInVictim("x = 0\nwhile True:\n    x += 1\n", 1000);
  Observe(result);
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_TIMEOUT) << result.text();
  EXPECT_THAT(result.status_detail(), StartsWith("interrupted after "));
  EXPECT_EQ(result.error().ename(), "KeyboardInterrupt");
  // The interrupt worked: same process, state kept.
  const v1::ExecutionResult after = RunInVictim("print(x > 0)");
  EXPECT_EQ(after.text(), "True\n") << Describe(after);
  const v1::Kernel kernel = MustGetKernel(client(), victim_.id);
  EXPECT_EQ(kernel.pid(), victim_.pid);
  EXPECT_EQ(kernel.restart_count(), 0);
}

TEST_F(RlimitsFaultTest, InfiniteLoopIgnoringSigintIsEscalatedToARestart) {
  // The timeout's interrupt is ignored; kInterruptEscalationSeconds later the gateway kills the
  // kernel. The caller hears TIMEOUT with the reason, and the restart policy brings it back.
  const absl::Time start = absl::Now();
  const v1::ExecutionResult result = RunInVictim(
      "import signal\n"
      "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
      "while True:\n"
      "    pass\n",
      1000, 60);
  Observe(result);
  const absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Seconds(1 + kInterruptEscalationSeconds));
  EXPECT_LT(took, absl::Seconds(1 + kInterruptEscalationSeconds + 10));
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_TIMEOUT) << result.text();
  const std::string reason =
      absl::StrCat("ignored an interrupt for ", kInterruptEscalationSeconds, "s; killed");
  EXPECT_EQ(result.status_detail(), "timed out; " + reason);
  ExpectRestartedAfterDeath(reason);
}

TEST_F(RlimitsFaultTest, InterruptKernelOnAKernelIgnoringSigintIsEscalatedToARestart) {
  // The same escalation when the interrupt came from InterruptKernel: the execution ends
  // INTERRUPTED with the reason.
  const std::string code =
      "import signal\n"
      "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
      "print('ignoring', flush=True)\n"
      "while True:\n"
      "    pass\n";
  v1::ExecutionResult result;
  std::future<grpc::Status> running = std::async(std::launch::async, [&] {
    return Execute(client(), victim_.id, code, &result, 0, 60);
  });
  // Interrupt once the kernel has said it ignores SIGINT.
  ASSERT_TRUE(WaitFor(absl::Seconds(30), [&] {
    return AnyEvent(victim_.id, [](const v1::OutputEvent& event) {
      return event.has_output() && event.output().has_stream() &&
             event.output().stream().text() == "ignoring\n";
    });
  }));
  v1::InterruptKernelRequest interrupt;
  interrupt.set_kernel_id(victim_.id);
  v1::Kernel interrupted;
  auto context = client().Context();
  ASSERT_TRUE(client().stub().InterruptKernel(context.get(), interrupt, &interrupted).ok());
  ASSERT_EQ(running.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  const grpc::Status status = running.get();
  ASSERT_TRUE(status.ok()) << status.error_message();
  Observe(result);
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_INTERRUPTED) << result.text();
  const std::string reason =
      absl::StrCat("ignored an interrupt for ", kInterruptEscalationSeconds, "s; killed");
  EXPECT_EQ(result.status_detail(), reason);
  ExpectRestartedAfterDeath(reason);
}

TEST_F(RlimitsFaultTest, StoppedKernelIsReportedThenKilledAndRestarted) {
  // SIGSTOP: the kernel answers nothing, heartbeats included. It is reported as not answering,
  // then killed kUnresponsiveKillSeconds later, and restarted.
  const v1::ExecutionResult result =
      RunInVictim("import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)", 0, 60);
  Observe(result);
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_KERNEL_DIED) << result.text();
  const std::string reason = absl::StrCat("stopped answering heartbeats; killed after ",
                                          kUnresponsiveKillSeconds, "s of silence");
  EXPECT_EQ(result.status_detail(), reason);
  // The report came first, as a kernel_status event that keeps the state.
  EXPECT_TRUE(AnyEvent(victim_.id, [](const v1::OutputEvent& event) {
    return event.has_kernel_status() &&
           event.kernel_status().reason() ==
               absl::StrCat("not answering heartbeats; killed if still silent in ",
                            kUnresponsiveKillSeconds, "s");
  }));
  ExpectRestartedAfterDeath(reason);
}

TEST_F(RlimitsFaultTest, ExitCodeThreeIsReportedAsDeath) {
  const v1::ExecutionResult result = RunInVictim("import os\nos._exit(3)");
  Observe(result);
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_KERNEL_DIED) << result.text();
  EXPECT_EQ(result.status_detail(), "exited with code 3");
  EXPECT_THAT(result.text(), HasSubstr("[kernel died: exited with code 3]"));
  ExpectRestartedAfterDeath("exited with code 3");
}

TEST_F(RlimitsFaultTest, SegfaultViaCtypesIsReportedAsDeath) {
  const v1::ExecutionResult result = RunInVictim("import ctypes\nctypes.string_at(0)");
  Observe(result);
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_KERNEL_DIED) << result.text();
  EXPECT_THAT(result.status_detail(), StartsWith("killed by SIGSEGV"));
  ExpectRestartedAfterDeath("killed by SIGSEGV");
}

TEST_F(RlimitsFaultTest, KillingTheGatewayFromAKernelFails) {
  // In rlimits mode the kernel's parent is the gateway itself.
  const v1::ExecutionResult result =
      RunInVictim("import os\nprint(os.getppid())\nos.kill(os.getppid(), 9)");
  Observe(result);
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_ERROR) << result.text();
  EXPECT_EQ(result.error().ename(), "PermissionError");
  EXPECT_THAT(result.text(), StartsWith(absl::StrCat(server().pid(), "\n")));
  EXPECT_FALSE(server().ExitedWith().has_value());
  ExpectVictimUsable();
}

TEST_F(RlimitsFaultTest, KillingAnotherKernelFails) {
  const v1::ExecutionResult result =
      RunInVictim(absl::StrCat("import os, signal\n"
                               "for attempt in (lambda: os.kill(",
                               neighbour_.pid,
                               ", signal.SIGKILL),\n"
                               "                lambda: os.killpg(",
                               neighbour_.pid,
                               ", signal.SIGKILL),\n"
                               "                lambda: os.kill(",
                               neighbour_.pid,
                               ", signal.SIGSTOP)):\n"
                               "    try:\n"
                               "        attempt()\n"
                               "        print('delivered')\n"
                               "    except PermissionError as e:\n"
                               "        print('PermissionError')\n"
                               "os.kill(",
                               neighbour_.pid, ", signal.SIGKILL)\n"));
  Observe(result);
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_ERROR);
  EXPECT_EQ(result.error().ename(), "PermissionError");
  EXPECT_THAT(result.text(), StartsWith("PermissionError\nPermissionError\nPermissionError\n"));
  // CheckNeighbour (TearDown) then asserts the neighbour's pid and counter are intact.
}

TEST_F(RlimitsFaultTest, WritingTenGigabytesStopsAtTheFileSizeLimit) {
  // RLIMIT_FSIZE is 100 MiB. CPython ignores SIGXFSZ, so the write fails with EFBIG; a kernel
  // that did not ignore it would be killed by SIGXFSZ, with the limit named.
  const v1::ExecutionResult result = RunInVictim(
      "chunk = b'\\0' * (1 << 20)\n"
      "with open('big.bin', 'wb') as f:\n"
      "    for _ in range(10 * 1024):\n"
      "        f.write(chunk)\n",
      0, 60);
  Observe(result);
  if (result.status() == v1::EXECUTION_STATUS_KERNEL_DIED) {
    EXPECT_THAT(result.status_detail(), StartsWith("killed by SIGXFSZ"));
    EXPECT_THAT(result.status_detail(), HasSubstr("file size limit of 100 MiB"));
    ExpectRestartedAfterDeath("killed by SIGXFSZ");
  } else {
    ASSERT_EQ(result.status(), v1::EXECUTION_STATUS_ERROR) << result.text();
    EXPECT_EQ(result.error().ename(), "OSError");
    EXPECT_THAT(result.error().evalue(), HasSubstr("File too large"));
    ExpectVictimUsable();
  }
  const v1::ExecutionResult size = RunInVictim("import os\nprint(os.path.getsize('big.bin'))");
  EXPECT_EQ(size.text(), absl::StrCat(kMaxFileSize, "\n")) << Describe(size);
}

TEST_F(RlimitsFaultTest, OpeningFilesUntilFailureIsContained) {
  // RLIMIT_NOFILE (256) stops it with EMFILE. The cell gives 16 fds back before re-raising: a
  // kernel left with none cannot publish its error (ipykernel needs a zmq socket per thread
  // that writes output), so the reason never reaches the caller and ipykernel's IOStream.flush
  // stalls 10 s; the gateway then reports a bare ERROR, which is all it is told.
  const v1::ExecutionResult result = RunInVictim(
      "held = []\n"
      "try:\n"
      "    while True:\n"
      "        held.append(open('/dev/null'))\n"
      "except OSError:\n"
      "    for f in held[-16:]:\n"
      "        f.close()  # room for the kernel to report it (see below)\n"
      "    raise\n");
  Observe(result);
  ASSERT_EQ(result.status(), v1::EXECUTION_STATUS_ERROR) << result.text();
  EXPECT_EQ(result.error().ename(), "OSError");
  EXPECT_THAT(result.error().evalue(), HasSubstr("Too many open files"));
  // The kernel survives at its fd limit, and recovers once the files are closed.
  const v1::ExecutionResult after =
      RunInVictim("n = len(held)\nfor f in held:\n    f.close()\nheld = None\nprint(n)");
  int held = 0;
  EXPECT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(after.text()), &held))
      << Describe(after) << after.text();
  EXPECT_GT(held, kMaxOpenFiles / 2);
  EXPECT_LT(held, kMaxOpenFiles);
  Observe(absl::StrCat(held, " files opened"));
  const v1::ExecutionResult fresh = RunInVictim("open('/dev/null').close()\nprint('ok')");
  EXPECT_EQ(fresh.text(), "ok\n") << Describe(fresh);
}

TEST_F(RlimitsFaultTest, DeepRecursionRaisesRecursionError) {
  const v1::ExecutionResult result = RunInVictim("def down(n):\n    return down(n + 1)\ndown(0)");
  Observe(result);
  ASSERT_EQ(result.status(), v1::EXECUTION_STATUS_ERROR) << result.text();
  EXPECT_EQ(result.error().ename(), "RecursionError");
  ExpectVictimUsable();
}

TEST_F(RlimitsFaultTest, RecursionPastTheCStackKillsOnlyThatKernel) {
  // With the recursion limit lifted, C recursion (repr of a deeply nested list) overflows the
  // stack: SIGSEGV, reported as a death; the kernel is restarted.
  const v1::ExecutionResult result = RunInVictim(
      "import sys\n"
      "sys.setrecursionlimit(10**8)\n"
      "nested = []\n"
      "for _ in range(10**6):\n"
      "    nested = [nested]\n"
      "repr(nested)\n",
      0, 60);
  Observe(result);
  ASSERT_EQ(result.status(), v1::EXECUTION_STATUS_KERNEL_DIED) << result.text();
  EXPECT_THAT(result.status_detail(), StartsWith("killed by SIGSEGV"));
  ExpectRestartedAfterDeath("killed by SIGSEGV");
}

// What the gateway may hold at the peak of a 1 GiB flood: its caps (the 16 MiB event log, the
// 8 MiB hard cap) plus what the kernel writes between crossing the hard cap and taking the
// interrupt (a rate times a latency, 20-140 MiB seen on a 2-core machine). A quarter of the
// flood: a gateway that held the flood would be far past it.
constexpr int64_t kFloodRssBound = 256ll << 20;

// Prints `mib` MiB to stdout in 1 MiB writes in the victim, sampling the gateway's RSS.
struct Flood {
  v1::ExecutionResult result;
  int64_t peak_rss = 0;
  absl::Duration took;
};

Flood PrintMegabytes(GatewayClient& client, pid_t gateway, const std::string& kernel_id, int mib) {
  Flood flood;
  PeakRss peak(gateway);
  const absl::Time start = absl::Now();
  grpc::Status status = Execute(client, kernel_id,
                                absl::StrCat("import sys\n"
                                             "chunk = ('x' * 1023 + '\\n') * 1024\n"
                                             "for _ in range(",
                                             mib,
                                             "):\n"
                                             "    sys.stdout.write(chunk)\n"
                                             "    sys.stdout.flush()\n"
                                             "print('done')\n"),
                                &flood.result, 0, 120);
  EXPECT_TRUE(status.ok()) << status.error_message();
  flood.took = absl::Now() - start;
  flood.peak_rss = peak.Stop();
  return flood;
}

TEST_F(RlimitsFaultTest, AGigabyteOfStdoutIsInterruptedAndTheGatewayDoesNotGrowWithIt) {
  // Output past the hard cap (8 MiB here) is counted, not parsed, and the execution is
  // interrupted: the gateway keeps pace with the kernel, so nothing piles up in its IOPub queue.
  const Flood flood = PrintMegabytes(client(), server().pid(), victim_.id, 1024);
  Observe(flood.result);
  Observe(absl::StrCat("took ", absl::FormatDuration(flood.took), ", gateway peak RSS ",
                       MiB(flood.peak_rss - baseline_.rss_bytes)));
  // Past the output hard cap (8 x --max-output-bytes) the execution is interrupted; its
  // stored outputs stopped at --max-output-bytes (1 MiB) with a marker.
  const v1::ExecutionResult& result = flood.result;
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_INTERRUPTED) << Describe(result);
  EXPECT_EQ(result.status_detail(),
            absl::StrCat("printed more than the output hard cap of ", 8 * kMaxOutputBytes,
                         " bytes; interrupted"));
  EXPECT_TRUE(result.truncated());
  EXPECT_LE(static_cast<int64_t>(result.ByteSizeLong()), kMaxOutputBytes + (512 << 10));
  bool marker = false;
  for (const v1::Output& output : result.outputs()) {
    if (output.has_stream() &&
        absl::StrContains(output.stream().text(), "output truncated: cap of 1048576 bytes")) {
      marker = true;
    }
  }
  EXPECT_TRUE(marker) << "no truncation marker in the stored outputs";
  // What it printed past the cap was counted, not parsed; nothing was rejected.
  const v1::IopubTraffic traffic = MustGetKernel(client(), victim_.id).iopub_traffic();
  EXPECT_GT(traffic.unparsed_output_bytes(), 0u);
  EXPECT_GT(traffic.bytes(), traffic.unparsed_output_bytes() + 8 * kMaxOutputBytes);
  EXPECT_EQ(traffic.rejected_messages(), 0u);
  EXPECT_LE(flood.peak_rss, baseline_.rss_bytes + kFloodRssBound)
      << "gateway peak RSS " << MiB(flood.peak_rss - baseline_.rss_bytes) << " over baseline";
  ExpectVictimUsable();
}

TEST_F(RlimitsFaultTest, BackgroundProcessThatOutlivesItsCellIsReapedWithTheKernel) {
  // Two escapees: one in the kernel's process group, one in a session of its own.
  const v1::ExecutionResult result = RunInVictim(
      "import subprocess\n"
      "same_group = subprocess.Popen(['sleep', '600'])\n"
      "own_session = subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
      "print(same_group.pid, own_session.pid)\n");
  Observe(result);
  ASSERT_EQ(result.status(), v1::EXECUTION_STATUS_OK) << result.text();
  std::vector<std::string> pids = absl::StrSplit(absl::StripAsciiWhitespace(result.text()), ' ');
  ASSERT_EQ(pids.size(), 2u);
  for (const std::string& pid : pids) {
    EXPECT_TRUE(fs::exists("/proc/" + pid)) << "background process " << pid << " not running";
  }
  // The cell is over; they run on as the kernel's uid. TearDown shuts the kernel down and
  // asserts that no process of its uid is left.
  EXPECT_GE(ProcessesOfUid(victim_.uid).size(), 3u);
}

TEST_F(RlimitsFaultTest, BackgroundProcessDoesNotSurviveARestart) {
  const v1::ExecutionResult result = RunInVictim(
      "import subprocess\n"
      "same_group = subprocess.Popen(['sleep', '600'])\n"
      "own_session = subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
      "print(same_group.pid, own_session.pid)\n");
  Observe(result);
  ASSERT_EQ(result.status(), v1::EXECUTION_STATUS_OK) << result.text();
  v1::Kernel kernel;
  ASSERT_TRUE(Restart(client(), victim_.id, &kernel).ok());
  // Only the new kernel process is left of the uid.
  std::vector<std::string> left;
  WaitFor(absl::Seconds(10), [&] { return (left = ProcessesOfUid(victim_.uid)).size() <= 1; });
  EXPECT_EQ(left.size(), 1u) << "processes of the kernel's uid after RestartKernel: "
                             << absl::StrJoin(left, ", ") << " (new kernel pid " << kernel.pid()
                             << "; background pids " << result.text() << ")";
  Observe(absl::StrCat(left.size(), " processes of the uid after restart"));
}

TEST_F(RlimitsFaultTest, ReadingAnotherKernelsDirectoryFails) {
  const std::string dir = neighbour_.dir;
  const v1::ExecutionResult result =
      RunInVictim(absl::StrCat("import os\n"
                               "outcomes = []\n"
                               "for attempt in (lambda: os.listdir('",
                               dir,
                               "'),\n"
                               "                lambda: open('",
                               dir,
                               "/secret.txt').read(),\n"
                               "                lambda: os.listdir('/proc/",
                               neighbour_.pid,
                               "/cwd'),\n"
                               "                lambda: open('/proc/",
                               neighbour_.pid,
                               "/environ').read(),\n"
                               "                lambda: open('",
                               TokenFile(),
                               "').read()):\n"
                               "    try:\n"
                               "        attempt()\n"
                               "        outcomes.append('read')\n"
                               "    except OSError as e:\n"
                               "        outcomes.append(type(e).__name__)\n"
                               "print(' '.join(outcomes))\n"
                               "open('",
                               dir, "/secret.txt').read()\n"));
  Observe(result);
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_ERROR);
  EXPECT_EQ(result.error().ename(), "PermissionError");
  EXPECT_THAT(result.text(), StartsWith("PermissionError PermissionError PermissionError "
                                        "PermissionError PermissionError\n"));
}

TEST_F(RlimitsFaultTest, GatewayPortFromAKernelNeedsTheToken) {
  // rlimits mode keeps the network: a kernel reaches the port, but without the token every
  // KernelGateway call is UNAUTHENTICATED (a generic call: no stubs needed in the kernel).
  const int port = server().WaitForPort(absl::Seconds(1));
  const v1::ExecutionResult result = RunInVictim(
      absl::StrCat("import socket\n"
                   "socket.create_connection(('127.0.0.1', ",
                   port,
                   "), timeout=10).close()\n"
                   "print('tcp connected')\n"
                   "import grpc\n"
                   "channel = grpc.insecure_channel('127.0.0.1:",
                   port,
                   "')\n"
                   "call = channel.unary_unary('/cellgate.v1.KernelGateway/ListKernels',\n"
                   "                           request_serializer=lambda x: x,\n"
                   "                           response_deserializer=lambda x: x)\n"
                   "for metadata in (None, [('authorization', 'Bearer guessed')]):\n"
                   "    try:\n"
                   "        call(b'', timeout=10, metadata=metadata)\n"
                   "        print('answered')\n"
                   "    except grpc.RpcError as e:\n"
                   "        print(e.code().name, e.details())\n"
                   "channel.close()\n"),
      0, 60);
  Observe(result);
  if (result.has_error() && result.error().ename() == "ModuleNotFoundError") {
    GTEST_SKIP() << "python3-grpcio is not installed for the kernels' python3";
  }
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_OK) << result.text();
  EXPECT_EQ(result.text(),
            "tcp connected\n"
            "UNAUTHENTICATED missing authorization metadata\n"
            "UNAUTHENTICATED invalid token\n");
}

// =============================================================================================
// --sandbox=bwrap: no network, a pid namespace, and only the kernel's own directory.

class BwrapFaultTest : public FaultSuite<BwrapFlags> {
 protected:
  void SetUp() override {
    FaultSuite::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (!LayerInForce("bwrap")) GTEST_SKIP() << "bwrap is not in force on this server";
  }
};

TEST_F(BwrapFaultTest, GatewayPortIsUnreachableFromAKernel) {
  const int port = server().WaitForPort(absl::Seconds(1));
  const v1::ExecutionResult result =
      RunInVictim(absl::StrCat("import socket\n"
                               "socket.create_connection(('127.0.0.1', ",
                               port, "), timeout=5)\n"));
  Observe(result);
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_ERROR) << result.text();
  // An empty network namespace: loopback is down, nothing listens.
  EXPECT_THAT(result.error().ename(), AnyOf("OSError", "ConnectionRefusedError", "TimeoutError"));
  ExpectVictimUsable();
}

TEST_F(BwrapFaultTest, AnotherKernelIsOutOfReach) {
  const v1::ExecutionResult result =
      RunInVictim(absl::StrCat("import os, signal\n"
                               "outcomes = []\n"
                               "for attempt in (lambda: os.kill(",
                               neighbour_.pid,
                               ", signal.SIGKILL),\n"
                               "                lambda: os.listdir('",
                               neighbour_.dir,
                               "'),\n"
                               "                lambda: open('",
                               neighbour_.dir,
                               "/secret.txt').read()):\n"
                               "    try:\n"
                               "        attempt()\n"
                               "        outcomes.append('reached')\n"
                               "    except OSError as e:\n"
                               "        outcomes.append(type(e).__name__)\n"
                               "print(' '.join(outcomes))\n"));
  Observe(result);
  Observe(std::string(absl::StripAsciiWhitespace(result.text())));
  ASSERT_EQ(result.status(), v1::EXECUTION_STATUS_OK) << result.text();
  // Another pid namespace and a private mount tree: the neighbour does not exist in here (or,
  // should a pid collide, belongs to another uid).
  std::vector<std::string> outcomes =
      absl::StrSplit(absl::StripAsciiWhitespace(result.text()), ' ');
  ASSERT_EQ(outcomes.size(), 3u) << result.text();
  EXPECT_THAT(outcomes[0], AnyOf("ProcessLookupError", "PermissionError"));
  EXPECT_THAT(outcomes[1], AnyOf("FileNotFoundError", "PermissionError"));
  EXPECT_THAT(outcomes[2], AnyOf("FileNotFoundError", "PermissionError"));
}

TEST_F(BwrapFaultTest, KillingTheParentDoesNotReachTheGateway) {
  // Inside the pid namespace the parent is bubblewrap's init, which ignores signals from its
  // namespace; the gateway is not visible at all.
  const v1::ExecutionResult result =
      RunInVictim(absl::StrCat("import os\n"
                               "try:\n"
                               "    os.kill(os.getppid(), 9)\n"
                               "    print('sent')\n"
                               "except OSError as e:\n"
                               "    print(type(e).__name__)\n"
                               "try:\n"
                               "    os.kill(",
                               server().pid(),
                               ", 9)\n"
                               "    print('sent')\n"
                               "except OSError as e:\n"
                               "    print(type(e).__name__)\n"));
  Observe(result);
  Observe(absl::StrJoin(absl::StrSplit(absl::StripAsciiWhitespace(result.text()), '\n'), ", "));
  EXPECT_FALSE(server().ExitedWith().has_value());
  ASSERT_EQ(result.status(), v1::EXECUTION_STATUS_OK) << result.text();
  std::vector<std::string> lines = absl::StrSplit(absl::StripAsciiWhitespace(result.text()), '\n');
  ASSERT_EQ(lines.size(), 2u) << result.text();
  EXPECT_THAT(lines[0], AnyOf("sent", "PermissionError"));
  EXPECT_THAT(lines[1], AnyOf("ProcessLookupError", "PermissionError"));
  ExpectVictimUsable();
  EXPECT_EQ(MustGetKernel(client(), victim_.id).restart_count(), 0);
}

// Per-kernel cgroups, where the host has a writable hierarchy (v2, or v1 memory and pids).
class CgroupFaultTest : public FaultSuite<CgroupFlags> {
 protected:
  void SetUp() override {
    FaultSuite::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (!LayerInForce("cgroup")) GTEST_SKIP() << "no writable cgroup hierarchy on this host";
  }
};

TEST_F(CgroupFaultTest, MemoryBombIsKilledByTheCgroupAndNamedAsSuch) {
  const v1::ExecutionResult result = RunInVictim(
      "hog = []\n"
      "while True:\n"
      "    hog.append(bytearray(32 << 20))\n");
  Observe(result);
  const std::string reason =
      absl::StrCat("killed by SIGKILL (cgroup OOM: memory limit of ", kCgroupMemory >> 20, " MiB)");
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_KERNEL_DIED) << result.text();
  EXPECT_EQ(result.status_detail(), reason);
  ExpectRestartedAfterDeath(reason);
}

TEST_F(CgroupFaultTest, ForkBombIsStoppedAtTheProcessLimit) {
  const v1::ExecutionResult result = RunInVictim(
      "import os\n"
      "children = 0\n"
      "try:\n"
      "    while True:\n"
      "        if os.fork() == 0:\n"
      "            import time\n"
      "            time.sleep(600)\n"
      "        children += 1\n"
      "finally:\n"
      "    print(children)\n");
  Observe(result);
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_ERROR) << result.text();
  EXPECT_EQ(result.error().ename(), "BlockingIOError") << result.text();
  int children = 0;
  EXPECT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(result.outputs(0).stream().text()),
                               &children))
      << result.text();
  EXPECT_LT(children, kMaxProcesses);
  ExpectVictimUsable();
}

// Whether `pid` is a live process (a zombie is not: it only waits to be reaped).
bool ProcessAlive(int pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z';
}

// SIGKILL of the gateway runs no handler of its own. Its kernels die with it (PDEATHSIG), and a
// server started again on the same runtime dir, state dir and uid range serves at once: no
// stale socket or directory stands in its way, and what escaped the first kernel's process
// group is ended when its uid is handed out again.
TEST(GatewayKillTest, KernelsDieWithTheGatewayAndTheNextStartWorks) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs per-kernel uids (run as root)";
  char pattern[] = "/tmp/cgk-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::string dir = pattern;
  ::chmod(dir.c_str(), 0711);
  const int uid_base = 204000 + (::getpid() % 1000) * 4;
  const std::vector<std::string> args = {"--runtime-dir=" + dir + "/r",
                                         "--state-dir=" + dir + "/s",
                                         absl::StrCat("--kernel-uid-base=", uid_base),
                                         "--max-kernels=4"};
  std::vector<int> kernel_pids;
  int escapee = 0;
  {
    ServerProcess first(args);
    ASSERT_GT(first.WaitForPort(absl::Seconds(30)), 0) << first.log();
    GatewayClient client(first.Target());
    for (int i = 0; i < 2; ++i) {
      const std::string id = client.MustStartKernel();
      kernel_pids.push_back(MustGetKernel(client, id).pid());
      if (i == 0) {
        const v1::ExecutionResult result = client.MustExecute(
            id,
            "import subprocess\n"
            "print(subprocess.Popen(['sleep', '600'], start_new_session=True).pid)");
        ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(result.text()), &escapee))
            << result.text();
      }
    }
    ASSERT_TRUE(ProcessAlive(escapee));
    ASSERT_EQ(::kill(first.pid(), SIGKILL), 0);
    ASSERT_TRUE(first.WaitForExit(absl::Seconds(10)).has_value());
  }
  for (int pid : kernel_pids) {
    EXPECT_TRUE(WaitFor(absl::Seconds(10), [&] { return !ProcessAlive(pid); }))
        << "kernel " << pid << " outlived the gateway";
  }

  ServerProcess second(args);
  ASSERT_GT(second.WaitForPort(absl::Seconds(30)), 0) << second.log();
  GatewayClient client(second.Target());
  const std::string id = client.MustStartKernel();
  const v1::ExecutionResult result = client.MustExecute(id, "print(6 * 7)");
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_OK) << result.text();
  EXPECT_EQ(result.text(), "42\n");
  EXPECT_TRUE(WaitFor(absl::Seconds(10), [&] { return !ProcessAlive(escapee); }))
      << "the first server's escapee " << escapee << " still runs";
  std::error_code error;
  std::filesystem::remove_all(dir, error);
}

}  // namespace
}  // namespace cellgate
