#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/kernel/kernel_spec.h"
#include "server/kernel/sandbox_policy.h"

namespace cellgate::kernel {

// Everything the child needs between fork and exec, computed in the parent: the child only
// makes async-signal-safe calls.
struct LaunchPlan {
  std::vector<std::string> argv;  // argv[0] is an absolute path or looked up in PATH below
  std::vector<std::string> env;   // "KEY=value"
  std::string working_dir;
  std::string log_path;           // the child's stdout and stderr go here
  // When set: the child's stdin / stdout instead of /dev/null / the log (pipes of a helper
  // process the gateway talks to; stderr still goes to the log).
  int stdin_fd = -1;
  int stdout_fd = -1;
  SandboxPolicy policy;
  // `cgroup.procs` files open for writing: the child joins each cgroup (writes "0") first.
  std::vector<int> cgroup_procs_fds;
  // Killed when the gateway dies (PR_SET_PDEATHSIG, bwrap --die-with-parent); false for a
  // kernel that is to outlive the gateway and be re-attached by the next one.
  bool die_with_parent = true;
};

// Inputs of BuildLaunchPlan.
struct LaunchRequest {
  KernelSpec spec;
  std::string connection_file;
  std::string working_dir;  // private to this kernel; HOME and IPYTHONDIR live inside
  std::string log_path;
  std::map<std::string, std::string> extra_env;  // from the request; cannot set reserved keys
  SandboxPolicy policy;
  std::string bwrap_path = "/usr/bin/bwrap";
  bool die_with_parent = true;  // see LaunchPlan
};

// Environment keys a request may not set: the gateway owns them.
bool IsReservedEnvKey(const std::string& key);

// The environment a kernel sees: a fixed allow-list (PATH, LANG, HOME, IPYTHONDIR, TMPDIR,
// ...), then the kernelspec's env, then the request's. Nothing of the server's own
// environment leaks in. Keys that are empty or contain '=' or NUL are dropped.
std::vector<std::string> BuildKernelEnvironment(const LaunchRequest& request);

// The bubblewrap argv prefix for `policy` (ends with "--"): read-only system, private /tmp,
// /proc and /dev, the working dir the only writable place, optional empty network namespace,
// and (with `die_with_parent`) the sandbox killed when the gateway dies.
std::vector<std::string> BuildBwrapArgs(const std::string& bwrap_path,
                                        const std::string& working_dir, bool allow_network,
                                        bool die_with_parent = true);

// Resolves argv[0] against PATH when relative, expands the kernelspec templates and wraps in
// bwrap when the policy says so. INVALID_ARGUMENT when argv is empty or argv[0] can't be found.
absl::StatusOr<LaunchPlan> BuildLaunchPlan(const LaunchRequest& request);

}  // namespace cellgate::kernel
