#include "server/kernel/launch_plan.h"

#include <unistd.h>

#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace cellgate::kernel {
namespace {

constexpr char kKernelPath[] = "/usr/local/bin:/usr/bin:/bin";

absl::StatusOr<std::string> ResolveExecutable(const std::string& program) {
  if (program.find('/') != std::string::npos) {
    if (::access(program.c_str(), X_OK) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("kernel_spec: executable '", program, "' not found or not executable"));
    }
    return program;
  }
  for (absl::string_view dir : absl::StrSplit(kKernelPath, ':')) {
    std::string candidate = absl::StrCat(dir, "/", program);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("kernel_spec: executable '", program, "' not found in ", kKernelPath));
}

// A key that a `KEY=value` entry carries unambiguously. "LD_PRELOAD=/x" as a key would become
// the entry "LD_PRELOAD=/x=...", which sets the reserved LD_PRELOAD after all.
bool IsWellFormedEnvKey(const std::string& key) {
  return !key.empty() && key.find('=') == std::string::npos && key.find('\0') == std::string::npos;
}

}  // namespace

const char* SandboxModeName(SandboxMode mode) {
  switch (mode) {
    case SandboxMode::kRlimits:
      return "rlimits";
    case SandboxMode::kBwrap:
      return "bwrap";
  }
  return "unknown";
}

bool IsReservedEnvKey(const std::string& key) {
  static const char* const kReserved[] = {"HOME", "IPYTHONDIR", "TMPDIR", "JUPYTER_RUNTIME_DIR",
                                          "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT"};
  for (const char* reserved : kReserved) {
    if (key == reserved) return true;
  }
  return false;
}

std::vector<std::string> BuildKernelEnvironment(const LaunchRequest& request) {
  std::map<std::string, std::string> env = {
      {"PATH", kKernelPath},
      {"LANG", "C.UTF-8"},
      {"LC_ALL", "C.UTF-8"},
      {"HOME", request.working_dir},
      {"IPYTHONDIR", absl::StrCat(request.working_dir, "/.ipython")},
      {"JUPYTER_RUNTIME_DIR", absl::StrCat(request.working_dir, "/.jupyter")},
      {"MPLCONFIGDIR", absl::StrCat(request.working_dir, "/.config/matplotlib")},
      {"TMPDIR", absl::StrCat(request.working_dir, "/tmp")},
      {"PYTHONDONTWRITEBYTECODE", "1"},
  };
  for (const auto& [key, value] : request.spec.env) {
    if (IsWellFormedEnvKey(key)) env[key] = value;
  }
  for (const auto& [key, value] : request.extra_env) {
    if (IsWellFormedEnvKey(key) && !IsReservedEnvKey(key)) env[key] = value;
  }
  std::vector<std::string> entries;
  entries.reserve(env.size());
  for (const auto& [key, value] : env) entries.push_back(absl::StrCat(key, "=", value));
  return entries;
}

std::vector<std::string> BuildBwrapArgs(const std::string& bwrap_path,
                                        const std::string& working_dir, bool allow_network,
                                        bool die_with_parent) {
  namespace fs = std::filesystem;
  std::vector<std::string> args = {bwrap_path, "--ro-bind", "/usr", "/usr"};
  // Debian 12 has a merged /usr: /bin, /lib, ... are symlinks into it. Mirror whatever is there.
  for (const char* top : {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}) {
    std::error_code error;
    const fs::file_status status = fs::symlink_status(top, error);
    if (error || !fs::exists(status)) continue;
    if (fs::is_symlink(status)) {
      args.insert(args.end(), {"--symlink", fs::read_symlink(top, error).string(), top});
    } else {
      args.insert(args.end(), {"--ro-bind", top, top});
    }
  }
  args.insert(args.end(), {"--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev",
                           "--tmpfs", "/tmp", "--tmpfs", "/run", "--bind", working_dir,
                           working_dir, "--chdir", working_dir, "--unshare-pid", "--unshare-ipc",
                           "--unshare-uts", "--unshare-cgroup-try"});
  if (die_with_parent) args.push_back("--die-with-parent");
  if (!allow_network) args.push_back("--unshare-net");
  args.push_back("--");
  return args;
}

absl::StatusOr<LaunchPlan> BuildLaunchPlan(const LaunchRequest& request) {
  if (request.spec.argv.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("kernel_spec '", request.spec.name, "': empty argv"));
  }
  std::vector<std::string> kernel_argv = request.spec.ExpandArgv(request.connection_file);
  absl::StatusOr<std::string> program = ResolveExecutable(kernel_argv[0]);
  if (!program.ok()) return program.status();
  kernel_argv[0] = *program;

  LaunchPlan plan;
  plan.env = BuildKernelEnvironment(request);
  plan.working_dir = request.working_dir;
  plan.log_path = request.log_path;
  plan.policy = request.policy;
  plan.die_with_parent = request.die_with_parent;
  if (request.policy.mode == SandboxMode::kBwrap) {
    plan.argv = BuildBwrapArgs(request.bwrap_path, request.working_dir,
                               request.policy.allow_network, request.die_with_parent);
  }
  plan.argv.insert(plan.argv.end(), kernel_argv.begin(), kernel_argv.end());
  return plan;
}

}  // namespace cellgate::kernel
