#pragma once

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "server/kernel/sandbox_policy.h"

namespace cellgate::session {

// What happens when a kernel process dies unexpectedly.
struct RestartPolicy {
  bool restart_on_death = true;
  int max_restarts = 3;                         // within `window`; beyond it the kernel stays DEAD
  absl::Duration window = absl::Minutes(5);
  absl::Duration backoff = absl::Milliseconds(500);  // doubles with each death in the window
  // An execution still running this long after the gateway interrupted it (timeout, flood,
  // InterruptKernel) had its interrupt ignored: the kernel is killed, which counts as a death
  // (and so restarts it per the policy). 0 = never.
  absl::Duration interrupt_escalation = absl::Seconds(10);
  // A kernel reported as not answering heartbeats that stays silent this much longer is killed,
  // again a death. 0 = report only.
  absl::Duration unresponsive_kill = absl::Seconds(30);
};

// The server's caps and defaults, from flags (or a config file). Requests may only tighten.
struct GatewayConfig {
  RestartPolicy restart_policy;
  // Kernels.
  int max_kernels = 64;
  // Kernel processes are not tied to the gateway: they go on running when it stops or dies,
  // their state file says how to reach them, and the next gateway re-attaches them.
  bool kernels_outlive_gateway = false;
  // Kernels of the default kernelspec, started ahead: a StartKernel with default settings takes
  // one (and the pool refills in the background) instead of waiting for a kernel to start.
  int pool_size = 0;
  // How long after a StartKernel takes a pooled kernel its replacement is started: a kernel's
  // start takes a core for about half a second, which the taken kernel's first executions would
  // otherwise share.
  absl::Duration pool_refill_delay = absl::Milliseconds(500);
  std::string default_kernel_spec = "python3";
  // Kernel ids are "<prefix>-<32 hex digits>" when set (the replica's name, so a client can
  // route a call to the replica that holds the kernel); 32 hex digits alone when empty.
  std::string kernel_id_prefix;
  kernel::ResourceLimits default_limits{
      .address_space_bytes = 8ull << 30,
      .cpu_seconds = 0,
      .max_processes = 512,
      .max_open_files = 1024,
      .max_file_size_bytes = 1ull << 30,
  };
  // Upper bounds a request's limits may not exceed (0 = unbounded for that resource).
  kernel::ResourceLimits max_limits = default_limits;
  kernel::SandboxMode sandbox_mode = kernel::SandboxMode::kRlimits;
  // Per-kernel cgroup memory limit where cgroups are in force; 0 = the kernel's address-space
  // limit.
  uint64_t cgroup_memory_bytes = 0;
  bool default_allow_network = true;  // bwrap only
  // Cap on network access: false = no kernel may have it (a request asking for it is
  // INVALID_ARGUMENT). Reported as `ServerInfo.caps.limits.allow_network`.
  bool max_allow_network = true;
  absl::Duration startup_timeout = absl::Seconds(60);
  int default_idle_timeout_seconds = 0;  // 0 = never culled
  absl::Duration max_kernel_lifetime = absl::ZeroDuration();  // 0 = none; busy or not
  int max_idle_timeout_seconds = 0;      // 0 = no cap

  // Notebook and outputs.
  int max_cells_per_kernel = 10000;
  int64_t max_source_bytes = 1 << 20;
  int64_t max_ipynb_bytes = 64 << 20;
  // UploadFile: the largest file, and the most a kernel's workspace may hold after an upload.
  int64_t max_upload_bytes = int64_t{1} << 30;
  int64_t max_workspace_bytes = int64_t{4} << 30;
  // TransferVariable: the largest pickle carried.
  int64_t max_transfer_bytes = int64_t{1} << 30;
  int64_t max_execution_output_bytes = 8 << 20;  // stored outputs of one cell / execution
  int64_t max_result_text_bytes = 256 << 10;     // ExecutionResult.text
  // An execution that prints more than this is interrupted. 0 = 8 x max_execution_output_bytes.
  int64_t output_hard_cap_bytes = 0;

  // Execution.
  int64_t default_timeout_ms = 0;  // 0 = no timeout
  int64_t max_timeout_ms = 24ll * 3600 * 1000;

  // Events.
  int64_t event_log_max_bytes = 64 << 20;
  // A StreamOutputs reader this far behind the newest event is cut off (RESOURCE_EXHAUSTED)
  // while what it missed is still retained. 0 = half of event_log_max_bytes.
  int64_t stream_max_lag_bytes = 0;

  // Limits of label and env maps in requests.
  int max_labels = 32;
  int max_env_entries = 256;
  int64_t max_env_bytes = 64 << 10;
};

}  // namespace cellgate::session
