#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "server/kernel/launch_plan.h"

namespace cellgate::kernel {

// How a child process ended.
struct ExitStatus {
  bool signaled = false;
  int code = 0;    // exit code when !signaled
  int signal = 0;  // terminating signal when signaled
  bool core_dumped = false;

  // "exited with code 3", "killed by SIGKILL", "killed by SIGSEGV (core dumped)".
  std::string Describe() const;
};

// A started child: its own session and process group (pgid == pid). Owns a pidfd, which the
// poller watches so that the exit is seen at once. Not thread-safe; move-only.
class ChildProcess {
 public:
  ChildProcess(pid_t pid, int pidfd);
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&&) = delete;
  ChildProcess(const ChildProcess&) = delete;
  ~ChildProcess();  // SIGKILLs the group and reaps if still running

  pid_t pid() const { return pid_; }
  // Readable when the child has exited; -1 if pidfd_open is unsupported.
  int pidfd() const { return pidfd_; }
  bool exited() const { return exit_status_.has_value(); }
  const std::optional<ExitStatus>& exit_status() const { return exit_status_; }

  // Sends `signal` to the child's whole process group. No-op once reaped.
  void SignalGroup(int signal) const;

  // Reaps the child if it has exited (never blocks). Returns its status once it has.
  const std::optional<ExitStatus>& TryReap();

 private:
  pid_t pid_;
  int pidfd_;
  std::optional<ExitStatus> exit_status_;
};

// Starts `plan` with fork/exec: in the child, a new session, rlimits (soft = hard), the uid/gid
// of the policy, PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG(SIGKILL), stdin from /dev/null,
// stdout/stderr to the plan's log, every other fd closed. An exec failure (or any failing
// step) is reported back through a CLOEXEC pipe as an error naming the step.
//
// The parent-death signal fires when the *thread* that forked exits: call this from a thread
// that lives as long as the kernel (the kernel I/O loop).
absl::StatusOr<ChildProcess> SpawnChild(const LaunchPlan& plan);

// A pidfd for `pid` (readable once it exits), or -1 where the kernel lacks pidfd_open.
int OpenPidfd(pid_t pid);

// "SIGKILL" for 9, "signal 77" for unknown numbers.
std::string SignalName(int signal);

}  // namespace cellgate::kernel
