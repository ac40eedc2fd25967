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
  // The process was not this gateway's child (an earlier gateway started it): it ended, but
  // how is not known.
  bool unknown = false;

  // "exited with code 3", "killed by SIGKILL", "killed by SIGSEGV (core dumped)".
  std::string Describe() const;
};

// A started child: its own session and process group (pgid == pid). Owns a pidfd, which the
// poller watches so that the exit is seen at once. Not thread-safe; move-only.
class ChildProcess {
 public:
  ChildProcess(pid_t pid, int pidfd);
  // A process an earlier gateway started (so not a child of this one): its end is seen through
  // the pidfd (or by polling), with an unknown exit status, and it is never waited for.
  static ChildProcess Adopt(pid_t pid, int pidfd);
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

  // Lets the process go on running: no signal, no wait, nothing more done to it.
  void Release();

 private:
  pid_t pid_;
  int pidfd_;
  bool adopted_ = false;
  std::optional<ExitStatus> exit_status_;
};

// When the process started, in clock ticks since boot (/proc/<pid>/stat field 22): with the
// pid, it tells a process from a later one given the same pid. nullopt when there is no such
// process, or it has ended (a zombie nobody reaped yet).
std::optional<uint64_t> ProcessStartTime(pid_t pid);

// The uid that owns /proc/<pid> (the process's effective uid), or -1 when there is no such
// process.
int ProcessUid(pid_t pid);

// Starts `plan` with fork/exec: in the child, a new session, rlimits (soft = hard), the uid/gid
// of the policy, PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG(SIGKILL) (unless the plan's kernel is to
// outlive the gateway), stdin from /dev/null,
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
