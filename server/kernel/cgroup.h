#pragma once

// Per-kernel cgroups: the kernel's memory (without swap) and process count bounded by the
// memory and pids controllers, every process of a kernel found and killed through its cgroup,
// and an OOM kill the gateway can name as such.
//
// cgroup v2 needs a delegated subtree: the gateway's own cgroup must let it create children
// and enable the memory and pids controllers for them (systemd `Delegate=yes`, or a container
// with a private, writable cgroup namespace). The gateway then moves itself into a leaf
// `<own>/gateway` (v2 allows processes only in leaves once controllers are enabled) and creates
// `<own>/kernel-<name>` per kernel. cgroup v1 (separate memory and pids hierarchies) works
// where those are writable: `<hierarchy>/<own>/cellgate-<pid>/kernel-<name>`.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace cellgate::kernel {

enum class CgroupVersion { kV1, kV2 };

struct CgroupLimits {
  uint64_t memory_bytes = 0;   // memory.max (v1: memory.limit_in_bytes); swap off. 0 = none
  uint64_t max_processes = 0;  // pids.max. 0 = none
};

class KernelCgroup;

class CgroupManager {
 public:
  struct Options {
    std::string mount_root = "/sys/fs/cgroup";
    std::string self_cgroup_file = "/proc/self/cgroup";  // which cgroup the gateway is in
    // Whether mount_root must be a cgroup2 filesystem for v2 (tests point it at a plain dir).
    bool check_filesystem = true;
    int gateway_pid = 0;  // 0 = this process
    // Kernels outlive the gateway and the next one re-attaches them. v2: kernel cgroups an
    // earlier gateway left in this cgroup are not killed. v1: the parent is named
    // cellgate-keep-<pid>, which no later gateway kills anything in (it is removed once empty);
    // cellgate-<pid> parents of gateways that are gone are killed and removed either way.
    bool keep_leftover_kernels = false;
  };

  // Finds a hierarchy the gateway can create kernel cgroups in, preferring v2, and prepares it
  // (v2: the gateway's leaf and the controllers). FAILED_PRECONDITION says why none is usable.
  static absl::StatusOr<std::unique_ptr<CgroupManager>> Detect(const Options& options);
  ~CgroupManager();  // removes the directories it created (kernel cgroups must be gone)

  CgroupVersion version() const { return version_; }
  // "cgroup v2 at /sys/fs/cgroup/…", for logs and GetServerInfo.
  std::string Describe() const;

  // Creates the cgroup of one kernel process, with its limits written. `name` must be unique
  // among live kernel cgroups.
  absl::StatusOr<std::unique_ptr<KernelCgroup>> Create(const std::string& name,
                                                       const CgroupLimits& limits);

  // Takes over the cgroup of a kernel an earlier gateway started (KernelCgroup::dirs() as it
  // was then): NOT_FOUND when its directories are gone or of another hierarchy layout.
  absl::StatusOr<std::unique_ptr<KernelCgroup>> Adopt(const std::vector<std::string>& dirs,
                                                      const CgroupLimits& limits);

 private:
  CgroupManager(CgroupVersion version, std::vector<std::string> parents,
                std::vector<std::string> created);

  CgroupVersion version_;
  // v2: one parent; v1: the memory then the pids hierarchy's parent.
  std::vector<std::string> parents_;
  std::vector<std::string> created_;  // directories to remove at the end, deepest first
};

class KernelCgroup {
 public:
  ~KernelCgroup();  // kills what is still in it and removes its directories
  KernelCgroup(const KernelCgroup&) = delete;
  KernelCgroup& operator=(const KernelCgroup&) = delete;

  // The `cgroup.procs` files, opened for writing: a child writes "0" into each before exec to
  // join the cgroup (SpawnChild does, through LaunchPlan::cgroup_procs_fds).
  const std::vector<int>& procs_fds() const { return procs_fds_; }
  void CloseProcsFds();

  // OOM kills in this cgroup so far (v2 memory.events, v1 memory.oom_control `oom_kill`).
  int64_t OomKills() const;
  const CgroupLimits& limits() const { return limits_; }

  // SIGKILLs every process in it, again until none is left (a fork may race the first pass).
  void KillAll() const;

  // Its directories (v2: one; v1: memory, pids), for Adopt by a later gateway.
  const std::vector<std::string>& dirs() const { return dirs_; }
  // Forgets the cgroup without killing or removing anything: its kernel outlives the gateway.
  void Release();

 private:
  friend class CgroupManager;
  KernelCgroup(CgroupVersion version, std::vector<std::string> dirs, CgroupLimits limits);

  CgroupVersion version_;
  std::vector<std::string> dirs_;  // v2: one; v1: memory, pids
  CgroupLimits limits_;
  std::vector<int> procs_fds_;
};

// The value of `key` in a flat-keyed cgroup file ("oom_kill 3\n..."), 0 when absent.
int64_t CgroupKeyedValue(const std::string& contents, const std::string& key);

}  // namespace cellgate::kernel
