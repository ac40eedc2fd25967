#include "tests/support/server_process.h"

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace cellgate::testing {

bool WaitForProcessEnd(int pid, absl::Duration timeout) {
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return errno == ESRCH;
  pollfd item{pidfd, POLLIN, 0};
  const int ready = ::poll(&item, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  ::close(pidfd);
  return ready > 0;
}

ServerProcess::ServerProcess(std::vector<std::string> extra_args,
                             std::vector<std::string> extra_env) {
  char pattern[] = "/tmp/cgs-XXXXXX";
  dir_ = ::mkdtemp(pattern);
  ::chmod(dir_.c_str(), 0711);  // kernels with their own uid must reach the runtime dir
  // Servers running at the same time (parallel tests) need disjoint kernel uid ranges.
  static int servers_started = 0;
  const int uid_base = 300000 + ((::getpid() % 4000) * 8 + servers_started++ % 8) * 128;
  port_file_ = dir_ + "/port";
  log_file_ = dir_ + "/server.log";
  std::vector<std::string> args = {CELLGATE_BINARY, "--listen=127.0.0.1:0",
                                   "--port-file=" + port_file_, "--runtime-dir=" + dir_ + "/r",
                                   "--state-dir=" + dir_ + "/state",
                                   absl::StrCat("--kernel-uid-base=", uid_base)};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  pid_ = ::fork();
  if (pid_ == 0) {
    for (std::string& entry : extra_env) ::putenv(entry.data());
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    if (std::freopen(log_file_.c_str(), "w", stderr) == nullptr) ::_exit(126);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && !ExitedWith().has_value()) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  std::error_code error;
  std::filesystem::remove_all(dir_, error);
}

int ServerProcess::WaitForPort(absl::Duration timeout) {
  if (port_ > 0) return port_;
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    std::ifstream file(port_file_);
    std::string text;
    int port = 0;
    if (file >> text && absl::SimpleAtoi(text, &port) && port > 0) return port_ = port;
    if (ExitedWith().has_value()) return 0;
    absl::SleepFor(absl::Milliseconds(20));  // polling for the file, with a deadline
  }
  return 0;
}

std::string ServerProcess::Target() {
  return absl::StrCat("127.0.0.1:", WaitForPort(absl::Seconds(60)));
}

std::optional<int> ServerProcess::ExitedWith() {
  if (exited_) return exit_status_;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    exited_ = true;
    exit_status_ = status;
    return status;
  }
  return std::nullopt;
}

std::optional<int> ServerProcess::WaitForExit(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (auto status = ExitedWith()) return status;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return ExitedWith();
}

std::string ServerProcess::log() const {
  std::ifstream file(log_file_);
  return std::string(std::istreambuf_iterator<char>(file), {});
}

int ServerProcess::ThreadCount() const {
  std::ifstream status(absl::StrCat("/proc/", pid_, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    int threads = 0;
    if (absl::StartsWith(line, "Threads:") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(8)), &threads)) {
      return threads;
    }
  }
  return -1;
}

}  // namespace cellgate::testing
