#include "server/kernel/sandbox_probe.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "server/kernel/child_process.h"
#include "server/kernel/kernel.h"
#include "server/kernel/launch_plan.h"

namespace cellgate::kernel {
namespace {

namespace fs = std::filesystem;

SandboxLayer ProbeBwrap(const std::string& bwrap_path, const std::string& scratch_dir,
                        int probe_uid) {
  SandboxLayer layer{"bwrap", false, ""};
  if (::access(bwrap_path.c_str(), X_OK) != 0) {
    layer.detail = absl::StrCat(bwrap_path, " not found (install the bubblewrap package)");
    return layer;
  }
  const std::string dir = absl::StrCat(scratch_dir, "/bwrap-probe-", ::getpid());
  std::error_code error;
  fs::remove_all(dir, error);
  if (::mkdir(dir.c_str(), 0700) != 0) {
    layer.detail = absl::StrCat("cannot create ", dir, ": ", std::strerror(errno));
    return layer;
  }
  if (probe_uid >= 0 && ::chown(dir.c_str(), probe_uid, probe_uid) != 0) {
    layer.detail = absl::StrCat("cannot chown ", dir, ": ", std::strerror(errno));
    fs::remove_all(dir, error);
    return layer;
  }
  LaunchPlan plan;
  plan.argv = BuildBwrapArgs(bwrap_path, dir, /*allow_network=*/false);
  plan.argv.push_back("/bin/sh");
  plan.argv.push_back("-c");
  plan.argv.push_back("touch ./probe && test -w ./probe");
  plan.env = {"PATH=/usr/bin:/bin"};
  plan.working_dir = dir;
  plan.log_path = dir + ".log";
  plan.policy.uid = probe_uid;
  plan.policy.gid = probe_uid;
  absl::StatusOr<ChildProcess> child = SpawnChild(plan);
  if (!child.ok()) {
    layer.detail = std::string(child.status().message());
  } else {
    int status = 0;
    while (::waitpid(child->pid(), &status, 0) < 0 && errno == EINTR) {
    }
    // Mark it reaped for ~ChildProcess.
    child->TryReap();
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      layer.available = true;
      layer.detail = "no network, private /tmp, read-only system, only the kernel dir writable";
    } else {
      layer.detail = absl::StrCat("bwrap trial failed: ", ReadFileTail(plan.log_path, 512));
    }
  }
  fs::remove_all(dir, error);
  fs::remove(plan.log_path, error);
  return layer;
}

}  // namespace

SandboxCapabilities ProbeSandbox(const std::string& bwrap_path, const std::string& scratch_dir,
                                 int probe_uid) {
  SandboxCapabilities caps;
  caps.bwrap_path = bwrap_path;
  caps.layers.push_back({"rlimits", true, "address space, open files, file size, core 0, cpu"});
  caps.layers.push_back({"session", true, "own session and process group; killed with it"});
  caps.layers.push_back({"no_new_privs", true, "PR_SET_NO_NEW_PRIVS: no setuid escalation"});
  caps.layers.push_back({"parent_death_signal", true, "PR_SET_PDEATHSIG: dies with the server"});

  caps.per_kernel_uid = ::geteuid() == 0;
  caps.layers.push_back(
      {"per_kernel_uid", caps.per_kernel_uid,
       caps.per_kernel_uid ? "each kernel runs as its own unprivileged uid; RLIMIT_NPROC in force"
                           : "server is not root: kernels share its uid; RLIMIT_NPROC not applied"});

  const int pidfd = OpenPidfd(::getpid());
  caps.pidfd = pidfd >= 0;
  if (pidfd >= 0) ::close(pidfd);
  caps.layers.push_back({"pidfd", caps.pidfd,
                         caps.pidfd ? "kernel exit seen at once"
                                    : "pidfd_open unsupported: exits polled every 100 ms"});

  SandboxLayer bwrap = ProbeBwrap(bwrap_path, scratch_dir, probe_uid);
  caps.bwrap = bwrap.available;
  caps.layers.push_back(std::move(bwrap));
  return caps;
}

}  // namespace cellgate::kernel
