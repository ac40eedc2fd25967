#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cellgate::kernel {

// Resource limits applied to one kernel process (as rlimits with soft = hard).
// Zero means "no limit" for that resource.
struct ResourceLimits {
  uint64_t address_space_bytes = 0;  // RLIMIT_AS
  uint64_t cpu_seconds = 0;          // RLIMIT_CPU
  uint64_t max_processes = 0;        // RLIMIT_NPROC; only in force with a per-kernel uid
  uint64_t max_open_files = 0;       // RLIMIT_NOFILE
  uint64_t max_file_size_bytes = 0;  // RLIMIT_FSIZE
};

enum class SandboxMode {
  kRlimits,  // rlimits, own session, no_new_privs, per-kernel uid when root
  kBwrap,    // all of the above, inside bubblewrap namespaces
};

// How a kernel is confined. Built by the server from its flags and the request.
struct SandboxPolicy {
  SandboxMode mode = SandboxMode::kRlimits;
  ResourceLimits limits;
  bool allow_network = true;  // bwrap only: false gives the kernel an empty network namespace
  // When >= 0 the child switches to this uid/gid (needs root). -1 keeps the server's ids.
  int uid = -1;
  int gid = -1;
};

// The sandbox layers this host supports, detected once at startup.
struct SandboxLayer {
  std::string name;    // "rlimits", "setsid", "no_new_privs", "per_kernel_uid", "bwrap", ...
  bool available = false;
  std::string detail;  // why not, or what it does here
};

struct SandboxCapabilities {
  bool per_kernel_uid = false;  // running as root: kernels get their own uid
  bool bwrap = false;           // bubblewrap runs here with the namespaces cellgate asks for
  bool pidfd = false;           // pidfd_open works: child exit is seen by the poller at once
  std::string bwrap_path;
  std::vector<SandboxLayer> layers;
};

const char* SandboxModeName(SandboxMode mode);

}  // namespace cellgate::kernel
