#include "server/kernel/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <grp.h>
#include <linux/close_range.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/common/unique_fd.h"

namespace cellgate::kernel {
namespace {

// What the child writes to the error pipe when a step fails: the step and errno.
struct ChildFailure {
  int step;
  int error;
};

enum ChildStep : int {
  kStepSetsid = 1,
  kStepCgroup,
  kStepStdio,
  kStepRlimit,
  kStepGroups,
  kStepGid,
  kStepUid,
  kStepNoNewPrivs,
  kStepDeathSignal,
  kStepChdir,
  kStepCloseFds,
  kStepExec,
};

const char* StepName(int step) {
  switch (step) {
    case kStepSetsid: return "setsid";
    case kStepCgroup: return "join the kernel's cgroup";
    case kStepStdio: return "redirect stdio";
    case kStepRlimit: return "setrlimit";
    case kStepGroups: return "setgroups";
    case kStepGid: return "setgid";
    case kStepUid: return "setuid";
    case kStepNoNewPrivs: return "prctl(PR_SET_NO_NEW_PRIVS)";
    case kStepDeathSignal: return "prctl(PR_SET_PDEATHSIG)";
    case kStepChdir: return "chdir to the working directory";
    case kStepCloseFds: return "close inherited fds";
    case kStepExec: return "exec";
  }
  return "unknown step";
}

struct RlimitSetting {
  int resource;
  rlim_t value;
};

[[noreturn]] void FailInChild(int error_fd, int step) {
  ChildFailure failure{step, errno};
  // Best effort: the parent treats a short read as "exec succeeded".
  [[maybe_unused]] ssize_t written = ::write(error_fd, &failure, sizeof(failure));
  ::_exit(127);
}

// Everything here is async-signal-safe: the parent is multithreaded.
[[noreturn]] void RunChild(const LaunchPlan& plan, char* const* argv, char* const* envp,
                           const RlimitSetting* rlimits, int rlimit_count, int devnull_fd,
                           int log_fd, int error_fd, pid_t parent_pid) {
  if (::setsid() < 0) FailInChild(error_fd, kStepSetsid);
  for (int fd : plan.cgroup_procs_fds) {
    if (::write(fd, "0", 1) != 1) FailInChild(error_fd, kStepCgroup);
  }
  if (::dup2(plan.stdin_fd >= 0 ? plan.stdin_fd : devnull_fd, STDIN_FILENO) < 0 ||
      ::dup2(plan.stdout_fd >= 0 ? plan.stdout_fd : log_fd, STDOUT_FILENO) < 0 ||
      ::dup2(log_fd, STDERR_FILENO) < 0) {
    FailInChild(error_fd, kStepStdio);
  }
  for (int i = 0; i < rlimit_count; ++i) {
    const rlimit limit{rlimits[i].value, rlimits[i].value};
    if (::setrlimit(rlimits[i].resource, &limit) != 0) FailInChild(error_fd, kStepRlimit);
  }
  if (plan.policy.gid >= 0) {
    if (::setgroups(0, nullptr) != 0) FailInChild(error_fd, kStepGroups);
    if (::setresgid(plan.policy.gid, plan.policy.gid, plan.policy.gid) != 0) {
      FailInChild(error_fd, kStepGid);
    }
  }
  if (plan.policy.uid >= 0 &&
      ::setresuid(plan.policy.uid, plan.policy.uid, plan.policy.uid) != 0) {
    FailInChild(error_fd, kStepUid);
  }
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) FailInChild(error_fd, kStepNoNewPrivs);
  // After the uid change: changing credentials clears the parent-death signal.
  if (plan.die_with_parent) {
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) FailInChild(error_fd, kStepDeathSignal);
    if (::getppid() != parent_pid) ::_exit(126);  // the parent died before PDEATHSIG was set
  }
  if (::chdir(plan.working_dir.c_str()) != 0) FailInChild(error_fd, kStepChdir);
  // Everything above fd 2 closes at exec, the error pipe included.
  if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) FailInChild(error_fd, kStepCloseFds);
  // The server may block or ignore signals; the kernel starts with defaults.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
  }
  ::execve(argv[0], argv, envp);
  FailInChild(error_fd, kStepExec);
}

std::vector<RlimitSetting> RlimitsFor(const SandboxPolicy& policy) {
  const ResourceLimits& limits = policy.limits;
  std::vector<RlimitSetting> settings = {{RLIMIT_CORE, 0}};
  if (limits.address_space_bytes > 0) settings.push_back({RLIMIT_AS, limits.address_space_bytes});
  if (limits.cpu_seconds > 0) settings.push_back({RLIMIT_CPU, limits.cpu_seconds});
  if (limits.max_open_files > 0) settings.push_back({RLIMIT_NOFILE, limits.max_open_files});
  if (limits.max_file_size_bytes > 0) {
    settings.push_back({RLIMIT_FSIZE, limits.max_file_size_bytes});
  }
  // Without its own uid, RLIMIT_NPROC would count every process of the server's user.
  if (limits.max_processes > 0 && policy.uid >= 0) {
    settings.push_back({RLIMIT_NPROC, limits.max_processes});
  }
  return settings;
}

std::vector<char*> CStringArray(const std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (const std::string& s : strings) pointers.push_back(const_cast<char*>(s.c_str()));
  pointers.push_back(nullptr);
  return pointers;
}


}  // namespace

int OpenPidfd(pid_t pid) {
  // Called through syscall(): glibc 2.36's <sys/pidfd.h> has no C++ linkage guards.
  const long fd = ::syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) ::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
  return static_cast<int>(fd);
}

std::string SignalName(int signal) {
  const char* abbrev = ::sigabbrev_np(signal);
  if (abbrev == nullptr) return absl::StrCat("signal ", signal);
  return absl::StrCat("SIG", abbrev);
}

std::string ExitStatus::Describe() const {
  if (unknown) return "ended (how is unknown: an earlier gateway started it)";
  if (!signaled) return absl::StrCat("exited with code ", code);
  return absl::StrCat("killed by ", SignalName(signal), core_dumped ? " (core dumped)" : "");
}

ChildProcess::ChildProcess(pid_t pid, int pidfd) : pid_(pid), pidfd_(pidfd) {}

ChildProcess ChildProcess::Adopt(pid_t pid, int pidfd) {
  ChildProcess process(pid, pidfd);
  process.adopted_ = true;
  return process;
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(other.pid_),
      pidfd_(other.pidfd_),
      adopted_(other.adopted_),
      exit_status_(std::move(other.exit_status_)) {
  other.pid_ = -1;
  other.pidfd_ = -1;
}

void ChildProcess::Release() {
  pid_ = -1;
  if (pidfd_ >= 0) ::close(pidfd_);
  pidfd_ = -1;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !exit_status_.has_value()) {
    SignalGroup(SIGKILL);
    int status = 0;
    // Only a child can be waited for; an adopted process is reaped by whoever adopted it.
    if (adopted_) {
      if (pidfd_ >= 0) ::close(pidfd_);
      return;
    }
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (pidfd_ >= 0) ::close(pidfd_);
}

void ChildProcess::SignalGroup(int signal) const {
  if (pid_ <= 0 || exit_status_.has_value()) {
    // The leader is gone, but processes it left in its group may not be.
    if (pid_ > 0) ::kill(-pid_, signal);
    return;
  }
  ::kill(-pid_, signal);
}

const std::optional<ExitStatus>& ChildProcess::TryReap() {
  if (exit_status_.has_value() || pid_ <= 0) return exit_status_;
  if (adopted_) {
    bool ended = false;
    if (pidfd_ >= 0) {
      pollfd item{pidfd_, POLLIN, 0};
      ended = ::poll(&item, 1, 0) > 0 && (item.revents & (POLLIN | POLLHUP)) != 0;
    } else {
      ended = ::kill(pid_, 0) != 0 && errno == ESRCH;
    }
    if (ended) exit_status_ = ExitStatus{.unknown = true};
    return exit_status_;
  }
  siginfo_t info;
  std::memset(&info, 0, sizeof(info));
  int rc;
  do {
    rc = ::waitid(P_PID, pid_, &info, WEXITED | WNOHANG);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    // ECHILD: somebody else reaped it; report it as gone.
    if (errno == ECHILD) exit_status_ = ExitStatus{.signaled = false, .code = -1};
    return exit_status_;
  }
  if (info.si_pid == 0) return exit_status_;  // still running
  ExitStatus status;
  if (info.si_code == CLD_EXITED) {
    status.code = info.si_status;
  } else {
    status.signaled = true;
    status.signal = info.si_status;
    status.core_dumped = info.si_code == CLD_DUMPED;
  }
  exit_status_ = status;
  return exit_status_;
}

absl::StatusOr<ChildProcess> SpawnChild(const LaunchPlan& plan) {
  if (plan.argv.empty()) return absl::InvalidArgumentError("empty argv");
  std::vector<char*> argv = CStringArray(plan.argv);
  std::vector<char*> envp = CStringArray(plan.env);
  const std::vector<RlimitSetting> rlimits = RlimitsFor(plan.policy);

  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (devnull.get() < 0) return absl::InternalError("open /dev/null failed");
  UniqueFd log(::open(plan.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (log.get() < 0) {
    return absl::InternalError(
        absl::StrCat("cannot open kernel log ", plan.log_path, ": ", std::strerror(errno)));
  }
  if (plan.policy.uid >= 0 && ::fchown(log.get(), plan.policy.uid, plan.policy.gid) != 0) {
    return absl::InternalError(absl::StrCat("chown of kernel log failed: ", std::strerror(errno)));
  }
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return absl::InternalError("pipe2 failed");
  UniqueFd error_read(pipe_fds[0]);
  UniqueFd error_write(pipe_fds[1]);

  const pid_t parent_pid = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    return absl::ResourceExhaustedError(absl::StrCat("fork failed: ", std::strerror(errno)));
  }
  if (pid == 0) {
    RunChild(plan, argv.data(), envp.data(), rlimits.data(), static_cast<int>(rlimits.size()),
             devnull.get(), log.get(), error_write.get(), parent_pid);
  }
  error_write.Reset();
  ChildFailure failure{};
  ssize_t got;
  do {
    got = ::read(error_read.get(), &failure, sizeof(failure));
  } while (got < 0 && errno == EINTR);

  const int pidfd = OpenPidfd(pid);
  ChildProcess child(pid, pidfd);
  if (got == static_cast<ssize_t>(sizeof(failure))) {
    // The child _exit()s right after reporting; ~ChildProcess reaps it.
    return absl::UnavailableError(absl::StrCat("kernel launch failed at ", StepName(failure.step),
                                               " (", plan.argv[0], "): ",
                                               std::strerror(failure.error)));
  }
  return child;
}

std::optional<uint64_t> ProcessStartTime(pid_t pid) {
  std::ifstream file(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (pid <= 0 || !file || !std::getline(file, line)) return std::nullopt;
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses; it ends at the last ')'.
  const size_t comm_end = line.rfind(')');
  if (comm_end == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(comm_end + 1));
  std::string field;
  // Field 3 is the state: a zombie (Z) or dead (X) process has ended.
  if (!(fields >> field) || field == "Z" || field == "X") return std::nullopt;
  for (int i = 4; i <= 22 && fields >> field; ++i) {
    if (i == 22) {
      uint64_t ticks = 0;
      if (absl::SimpleAtoi(field, &ticks)) return ticks;
    }
  }
  return std::nullopt;
}

int ProcessUid(pid_t pid) {
  struct stat info;
  if (pid <= 0 || ::stat(absl::StrCat("/proc/", pid).c_str(), &info) != 0) return -1;
  return static_cast<int>(info.st_uid);
}

}  // namespace cellgate::kernel
