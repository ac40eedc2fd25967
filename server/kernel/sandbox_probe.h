#pragma once

#include <string>

#include "server/kernel/sandbox_policy.h"

namespace cellgate::kernel {

// Finds out which sandbox layers work on this host, by trying them: runs bubblewrap once with
// the namespaces cellgate asks for, opens a pidfd, checks for root. (The cgroup layer is found
// by CgroupManager::Detect, which also prepares the hierarchy.)
// `scratch_dir` is a writable directory for the bwrap trial; `probe_uid` the uid kernels would
// get (-1 when not root). Never fails: a layer that doesn't work is reported with the reason.
SandboxCapabilities ProbeSandbox(const std::string& bwrap_path, const std::string& scratch_dir,
                                 int probe_uid);

}  // namespace cellgate::kernel
