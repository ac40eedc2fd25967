#pragma once

#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/kernel/child_process.h"
#include "server/kernel/io_loop.h"
#include "server/kernel/kernel_spec.h"
#include "server/kernel/sandbox_policy.h"
#include "server/protocol/connection_info.h"
#include "server/protocol/message.h"

namespace cellgate::kernel {

class KernelCore;
class CgroupManager;

struct KernelOptions {
  KernelSpec spec;
  // The kernel's private directory: created (mode 0700, owned by the kernel's uid) and used as
  // its working dir, HOME and IPYTHONDIR root. Its path must be short: the ipc sockets live in
  // it and unix socket paths are limited to 107 bytes.
  std::string kernel_dir;
  bool remove_kernel_dir_on_close = true;
  SandboxPolicy policy;
  std::string bwrap_path = "/usr/bin/bwrap";
  std::map<std::string, std::string> env;  // added to the allow-listed environment
  std::string transport = "ipc";           // "ipc" or "tcp" (loopback)
  absl::Duration startup_timeout = absl::Seconds(30);
  absl::Duration nudge_interval = absl::Milliseconds(100);
  absl::Duration heartbeat_interval = absl::Seconds(1);
  // After a request's reply, how long to wait for its `status: idle` on IOPub before
  // completing it anyway (nbclient's iopub_timeout plays the same part).
  absl::Duration iopub_grace = absl::Seconds(5);
  // After a shutdown_request: how long to wait before SIGTERM, then before SIGKILL.
  absl::Duration shutdown_grace = absl::Seconds(2);
  absl::Duration terminate_grace = absl::Seconds(2);
  // When set, each kernel process runs in a cgroup of its own with these limits (pids.max is
  // policy.limits.max_processes); its processes are killed through it when it ends.
  CgroupManager* cgroups = nullptr;
  uint64_t cgroup_memory_bytes = 0;
  // false: the process is not killed when the gateway dies (a later gateway may Attach it).
  bool die_with_parent = true;
};

// A running kernel process as a later gateway needs it to take the kernel over (Attach).
struct KernelProcess {
  int pid = 0;
  uint64_t start_time = 0;  // ProcessStartTime(pid) when it was started: tells pid reuse
  protocol::ConnectionInfo connection;
  std::vector<std::string> cgroup_dirs;  // empty: no cgroup of its own
};

// Counters of a kernel process's IOPub channel.
struct IopubTraffic {
  uint64_t messages = 0;  // verified
  uint64_t bytes = 0;     // of the verified messages, all frames
  uint64_t unparsed_output_bytes = 0;
  uint64_t rejected_messages = 0;
};

// What the kernel said about itself in kernel_info_reply.
struct KernelInfo {
  std::string protocol_version;
  std::string implementation;
  std::string language;
  std::string language_version;
  std::string banner;
  nlohmann::json raw;  // the whole reply content
};

// How a request ended.
struct RequestCompletion {
  enum class Kind {
    kReplied,     // the reply arrived (and, for execute, IOPub went idle)
    kKernelDied,  // the process ended first; `reason` says how
    kClosed,      // the kernel was shut down or closed first
    kSendFailed,  // the request could not be sent
  };
  Kind kind = Kind::kReplied;
  protocol::Message reply;  // when kReplied
  std::string reason;       // otherwise
  // kReplied without the closing `status: idle` on IOPub within KernelOptions::iopub_grace:
  // the kernel dropped IOPub messages, so output may be missing.
  bool iopub_incomplete = false;
};

struct RequestCallbacks {
  // IOPub messages whose parent is this request (status messages excluded). Output messages
  // (stream, display_data, update_display_data, execute_result) come with their content as
  // unparsed, unchecked JSON text in `content_text`, for notebook::ParseIopubOutputText. The
  // message is the callee's to keep or take apart.
  absl::AnyInvocable<void(protocol::Message)> on_iopub;
  // Exactly once.
  absl::AnyInvocable<void(RequestCompletion)> on_done;
  // Output (stream, display_data, update_display_data, execute_result) past this many bytes of
  // message content is only counted: not parsed, not passed to on_iopub. on_output_flood is
  // called once, for the first such message, with the bytes so far. 0 = no budget.
  int64_t output_budget_bytes = 0;
  absl::AnyInvocable<void(int64_t output_bytes)> on_output_flood;
};

struct ExecuteRequest {
  std::string code;
  bool silent = false;
  bool store_history = true;
  // ipykernel's stop_on_error aborts every execute_request that reaches it shortly after an
  // error, including ones sent after the failing request finished. Off unless asked for.
  bool stop_on_error = false;
};

// Events about the kernel as a whole. Called on the I/O loop thread; must not block.
struct KernelEvents {
  // The process ended (unexpectedly or after Shutdown). `reason` as ExitStatus::Describe(),
  // with a hint when a resource limit was the likely cause.
  absl::AnyInvocable<void(const ExitStatus&, const std::string& reason)> on_exit;
  // status busy/idle/starting from IOPub, whatever its parent.
  absl::AnyInvocable<void(const std::string& execution_state)> on_status;
  // IOPub messages that belong to no pending request (e.g. output of a background thread);
  // output messages with their content as text, as for RequestCallbacks::on_iopub.
  absl::AnyInvocable<void(protocol::Message)> on_unrouted_iopub;
  // The heartbeat stopped (false) or came back (true).
  absl::AnyInvocable<void(bool responsive)> on_heartbeat;
};

enum class KernelPhase { kStarting, kReady, kShuttingDown, kExited };

// One running Jupyter kernel: a sandboxed child process and the ZMQ connection to it.
// Thread-safe: every method may be called from any thread; work happens on the I/O loop and
// callbacks run there. Destroying the handle kills the process group at once and reaps it.
class Kernel {
 public:
  using ReadyCallback = absl::AnyInvocable<void(absl::Status)>;

  // Launches the kernel (on the loop thread) and calls `on_ready` once it answered kernel_info
  // with IOPub live (OK), or failed to start (UNAVAILABLE with the reason and its log tail;
  // INVALID_ARGUMENT for a spec that can't run).
  static std::unique_ptr<Kernel> Start(KernelIoLoop& loop, KernelOptions options,
                                       KernelEvents events, ReadyCallback on_ready);

  // Takes over a kernel process an earlier gateway started with `die_with_parent` false and
  // left running: `options` as it was started (kernel_dir, spec, policy, cgroups), `process`
  // as process() told then. Connects with the saved connection info, adopts its cgroup, and
  // asks kernel_info on control, which ipykernel answers even while it executes. `on_ready`
  // as for Start: OK once it answered with IOPub live; UNAVAILABLE when it is gone, or silent
  // for options.startup_timeout (then it is killed). Its exit status is never known (it is not
  // this gateway's child): on_exit reports it as ExitStatus::unknown.
  static std::unique_ptr<Kernel> Attach(KernelIoLoop& loop, KernelOptions options,
                                        KernelProcess process, KernelEvents events,
                                        ReadyCallback on_ready);
  ~Kernel();
  Kernel(const Kernel&) = delete;
  Kernel& operator=(const Kernel&) = delete;

  // Sends `msg_type` with `content` on shell (or control) and routes the reply and the IOPub
  // messages it causes. Returns the request's msg_id. A request sent before the kernel is ready
  // is queued until it is.
  std::string SendRequest(const std::string& msg_type, nlohmann::json content,
                          RequestCallbacks callbacks, bool on_control = false);

  // execute_request with allow_stdin=false: done when execute_reply and status idle arrived.
  std::string Execute(const ExecuteRequest& request, RequestCallbacks callbacks);

  // Interrupts the running execution per the kernelspec's interrupt_mode.
  void Interrupt();

  // Kills the process group at once (SIGKILL): for a kernel that ignored an interrupt or stopped
  // answering. The exit is reported like any death (on_exit, pending requests kKernelDied), with
  // `reason` in place of "killed by SIGKILL".
  void Kill(std::string reason);

  // Graceful: shutdown_request on control, then SIGTERM, then SIGKILL to the process group,
  // waiting the configured graces in between. `on_exited` runs once the process is reaped.
  void Shutdown(absl::AnyInvocable<void(const ExitStatus&)> on_exited);

  // Leaves the process running for a later gateway to Attach: the sockets close, pending
  // requests end kClosed, no callback runs again, its files and cgroup stay. Returns once done.
  void Detach();

  // Snapshot accessors (thread-safe).
  KernelPhase phase() const;
  int pid() const;
  // Set once the process was started or adopted; what Attach needs of it.
  std::optional<KernelProcess> process() const;
  KernelInfo info() const;
  IopubTraffic iopub_traffic() const;
  std::string kernel_dir() const { return kernel_dir_; }
  std::string log_tail(size_t max_bytes = 4096) const;

 private:
  explicit Kernel(KernelIoLoop& loop, std::string kernel_dir, std::string log_path);
  // A handle and its core, nothing started yet.
  static std::unique_ptr<Kernel> NewHandle(KernelIoLoop& loop, KernelOptions options,
                                           KernelEvents events, ReadyCallback on_ready);

  KernelIoLoop& loop_;
  const std::string kernel_dir_;
  const std::string log_path_;
  std::string session_id_;
  std::shared_ptr<KernelCore> core_;
  bool detached_ = false;  // set by Detach: the destructor leaves the files alone
};

// The last `max_bytes` of a file (for a kernel's log in error messages).
std::string ReadFileTail(const std::string& path, size_t max_bytes);

}  // namespace cellgate::kernel
