// cellgate: a gRPC gateway to sandboxed Jupyter kernels.
//
// Wiring only: flags, the sandbox probe, the gRPC server (health and reflection), the port
// file, and the SIGTERM/SIGINT drain.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>
#include <algorithm>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/api/auth.h"
#include "server/api/kernel_gateway_service.h"
#include "server/api/request_validation.h"
#include "server/kernel/cgroup.h"
#include "server/kernel/io_loop.h"
#include "server/kernel/kernel_spec.h"
#include "server/kernel/sandbox_policy.h"
#include "server/kernel/sandbox_probe.h"
#include "server/kernel/uid_pool.h"
#include "server/obs/log.h"
#include "server/session/gateway_config.h"
#include "server/session/session_registry.h"
#include "server/session/state_store.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "Address to serve gRPC on: HOST:PORT (port 0 picks a free port) or unix:/path");
ABSL_FLAG(std::string, port_file, "",
          "Once listening, write the bound port here (how tests and scripts find it)");
ABSL_FLAG(std::string, state_dir, "/var/lib/cellgate",
          "Directory where every kernel's notebook is saved as it changes; a gateway started on "
          "the same directory restores them. Empty: nothing is saved");
ABSL_FLAG(int, state_write_interval_ms, 500,
          "How often a kernel's saved state is rewritten while outputs stream in; cell edits, "
          "finished executions and kernel state changes are written at once");
ABSL_FLAG(std::string, runtime_dir, "",
          "Directory for kernel working dirs and sockets; keep it short (unix socket paths are "
          "limited to 107 bytes). Default: /tmp/cellgate-<pid>");
ABSL_FLAG(std::string, sandbox, "rlimits",
          "Kernel sandbox: 'rlimits' (rlimits, own session, no_new_privs, per-kernel uid when "
          "root) or 'bwrap' (all that inside bubblewrap namespaces: no network by default, "
          "read-only system, private /tmp)");
ABSL_FLAG(std::string, bwrap_path, "/usr/bin/bwrap", "The bubblewrap binary");
ABSL_FLAG(std::string, kernels_dir, "",
          "Directory of the kernelspecs cellgate ships (searched after $JUPYTER_PATH, before "
          "/usr/local/share/jupyter/kernels and /usr/share/jupyter/kernels). Default: the "
          "installed share/cellgate/kernels, else the source tree's kernels/");
ABSL_FLAG(std::string, auth_token_file, "",
          "File of bearer tokens, one a line; clients send 'authorization: Bearer <token>'. "
          "Empty: no auth (warned about when not listening on loopback)");
ABSL_FLAG(std::string, log_format, "logfmt", "Log line format: 'logfmt' or 'json'");
ABSL_FLAG(int, max_kernels, 64, "Most kernels alive at once");
ABSL_FLAG(std::string, default_kernel_spec, "python3", "Kernelspec when a request names none");
ABSL_FLAG(int, startup_timeout_seconds, 60, "How long a kernel may take to answer kernel_info");
ABSL_FLAG(int64_t, default_timeout_ms, 0,
          "Execution timeout when a request gives none (0 = none; a gRPC deadline still applies)");
ABSL_FLAG(int64_t, max_timeout_ms, 24ll * 3600 * 1000, "Largest timeout_ms a request may ask for");
ABSL_FLAG(int, max_cells, 10000, "Most cells in one kernel's notebook");
ABSL_FLAG(int64_t, max_source_bytes, 1 << 20, "Largest cell source or Execute code, in bytes");
ABSL_FLAG(int64_t, max_output_bytes, 8 << 20,
          "Stored outputs of one cell or execution, in bytes; beyond it outputs are truncated "
          "with a visible marker");
ABSL_FLAG(int64_t, max_ipynb_bytes, 64 << 20, "Largest .ipynb import, in bytes");
ABSL_FLAG(int64_t, event_log_bytes, 64 << 20,
          "Per kernel: bytes of output events kept for StreamOutputs replay");
ABSL_FLAG(int64_t, stream_max_lag_bytes, 0,
          "A StreamOutputs follower this many bytes of events behind is cut off with "
          "RESOURCE_EXHAUSTED while it can still resume by seq; 0 = half of --event-log-bytes");
ABSL_FLAG(int64_t, memory_limit_bytes, 8ll << 30,
          "Default per-kernel address-space limit (RLIMIT_AS), bytes; 0 = none");
ABSL_FLAG(int64_t, max_memory_limit_bytes, 8ll << 30,
          "Largest address-space limit a request may ask for; 0 = no cap");
ABSL_FLAG(int64_t, cpu_limit_seconds, 0, "Default per-kernel CPU time limit (RLIMIT_CPU); 0 = none");
ABSL_FLAG(int, max_processes, 512,
          "Per-kernel process/thread limit (RLIMIT_NPROC; in force with per-kernel uids)");
ABSL_FLAG(int, max_open_files, 1024, "Per-kernel open file limit (RLIMIT_NOFILE)");
ABSL_FLAG(int64_t, max_file_size_bytes, 1ll << 30, "Per-kernel file size limit (RLIMIT_FSIZE)");
ABSL_FLAG(bool, allow_network, false,
          "With --sandbox=bwrap: whether kernels get the network by default (requests may ask "
          "for no network either way)");
ABSL_FLAG(bool, restart_on_death, true,
          "Restart a kernel that died unexpectedly (notebook kept, cells STALE)");
ABSL_FLAG(int, max_restarts, 3,
          "Most automatic restarts within --restart-window-seconds; then the kernel stays DEAD");
ABSL_FLAG(int, restart_window_seconds, 300, "The window --max-restarts counts deaths in");
ABSL_FLAG(std::string, cgroup, "auto",
          "Per-kernel cgroups (memory without swap, pids, kill of everything a kernel started): "
          "'auto' uses them where a writable cgroup v2 (or v1) hierarchy is found, 'off' never");
ABSL_FLAG(int64_t, cgroup_memory_bytes, 0,
          "Per-kernel cgroup memory limit where cgroups are in force; 0 = the kernel's "
          "address-space limit");
ABSL_FLAG(int, restart_backoff_ms, 500,
          "Wait before an automatic restart; doubles with each death in the window");
ABSL_FLAG(int, interrupt_escalation_seconds, 10,
          "Kill (and so restart, per the restart policy) a kernel whose execution is still "
          "running this long after the gateway interrupted it; 0 = never");
ABSL_FLAG(int, unresponsive_kill_seconds, 30,
          "Kill (and so restart) a kernel that stays silent this long after it was reported "
          "not answering heartbeats; 0 = report only");
ABSL_FLAG(int, idle_timeout_seconds, 0,
          "Shut down a kernel idle this long (nothing running, no StreamOutputs reader, no call "
          "naming it) when its request gave no idle_timeout_seconds; 0 = never");
ABSL_FLAG(int, max_idle_timeout_seconds, 0,
          "Largest idle_timeout_seconds a request may ask for; 0 = no cap");
ABSL_FLAG(int, max_kernel_lifetime_seconds, 0,
          "Shut down any kernel this old, busy or not; 0 = no limit");
ABSL_FLAG(int64_t, output_hard_cap_bytes, 0,
          "Interrupt an execution once it has printed this many bytes (its stored outputs stop "
          "at --max-output-bytes long before); 0 = 8 x --max-output-bytes");
ABSL_FLAG(int, kernel_uid_base, 200000,
          "When root: kernels run as uids [base, base + --max-kernels + --pool-size) (gid = "
          "uid). Leftover processes of those uids are killed, so two servers on one host need "
          "disjoint ranges");
ABSL_FLAG(int, drain_seconds, 10, "On SIGTERM: how long running work may take to finish");
ABSL_FLAG(int, pool_size, 0,
          "Kernels of the default kernelspec kept started ahead (the warm pool): a StartKernel "
          "with default settings takes one at once and the pool refills in the background; "
          "requests with their own env, limits or kernelspec start a kernel as usual");
ABSL_FLAG(bool, kernels_outlive_gateway, false,
          "Kernel processes go on running when the gateway stops or dies (no parent-death "
          "signal; on SIGTERM they are left running), and the next gateway on the same "
          "--state-dir re-attaches them with their memory intact. Needs --state-dir");

namespace cellgate {
namespace {

using obs::Log;
using obs::LogLevel;

absl::StatusOr<kernel::SandboxMode> ParseSandboxMode(const std::string& value) {
  if (value == "rlimits") return kernel::SandboxMode::kRlimits;
  if (value == "bwrap") return kernel::SandboxMode::kBwrap;
  return absl::InvalidArgumentError(
      absl::StrCat("--sandbox: '", value, "' is not one of rlimits, bwrap"));
}

bool IsLoopbackAddress(const std::string& address) {
  return absl::StartsWith(address, "unix:") || absl::StartsWith(address, "127.") ||
         absl::StartsWith(address, "localhost:") || absl::StartsWith(address, "[::1]:");
}

absl::Status EnsureDirectory(const std::string& path, mode_t mode) {
  std::error_code error;
  std::filesystem::create_directories(path, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create directory ", path, ": ", error.message()));
  }
  ::chmod(path.c_str(), mode);
  return absl::OkStatus();
}

absl::Status WritePortFile(const std::string& path, int port) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream file(temp, std::ios::trunc);
    file << port << "\n";
    if (!file) return absl::InternalError(absl::StrCat("cannot write ", temp));
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", temp, " to ", path));
  }
  return absl::OkStatus();
}

session::GatewayConfig ConfigFromFlags(kernel::SandboxMode mode) {
  session::GatewayConfig config;
  config.max_kernels = absl::GetFlag(FLAGS_max_kernels);
  config.kernels_outlive_gateway = absl::GetFlag(FLAGS_kernels_outlive_gateway);
  config.pool_size = std::max(0, absl::GetFlag(FLAGS_pool_size));
  config.default_kernel_spec = absl::GetFlag(FLAGS_default_kernel_spec);
  config.sandbox_mode = mode;
  config.default_allow_network = absl::GetFlag(FLAGS_allow_network);
  config.startup_timeout = absl::Seconds(absl::GetFlag(FLAGS_startup_timeout_seconds));
  config.default_timeout_ms = absl::GetFlag(FLAGS_default_timeout_ms);
  config.max_timeout_ms = absl::GetFlag(FLAGS_max_timeout_ms);
  config.max_cells_per_kernel = absl::GetFlag(FLAGS_max_cells);
  config.max_source_bytes = absl::GetFlag(FLAGS_max_source_bytes);
  config.max_execution_output_bytes = absl::GetFlag(FLAGS_max_output_bytes);
  config.max_ipynb_bytes = absl::GetFlag(FLAGS_max_ipynb_bytes);
  config.event_log_max_bytes = absl::GetFlag(FLAGS_event_log_bytes);
  config.stream_max_lag_bytes = absl::GetFlag(FLAGS_stream_max_lag_bytes);
  config.output_hard_cap_bytes = absl::GetFlag(FLAGS_output_hard_cap_bytes);
  config.restart_policy.restart_on_death = absl::GetFlag(FLAGS_restart_on_death);
  config.restart_policy.max_restarts = absl::GetFlag(FLAGS_max_restarts);
  config.restart_policy.window = absl::Seconds(absl::GetFlag(FLAGS_restart_window_seconds));
  config.restart_policy.backoff = absl::Milliseconds(absl::GetFlag(FLAGS_restart_backoff_ms));
  config.restart_policy.interrupt_escalation =
      absl::Seconds(absl::GetFlag(FLAGS_interrupt_escalation_seconds));
  config.restart_policy.unresponsive_kill =
      absl::Seconds(absl::GetFlag(FLAGS_unresponsive_kill_seconds));
  config.default_idle_timeout_seconds = absl::GetFlag(FLAGS_idle_timeout_seconds);
  config.max_idle_timeout_seconds = absl::GetFlag(FLAGS_max_idle_timeout_seconds);
  config.max_kernel_lifetime = absl::Seconds(absl::GetFlag(FLAGS_max_kernel_lifetime_seconds));
  config.cgroup_memory_bytes =
      static_cast<uint64_t>(std::max<int64_t>(0, absl::GetFlag(FLAGS_cgroup_memory_bytes)));
  kernel::ResourceLimits limits;
  limits.address_space_bytes = static_cast<uint64_t>(absl::GetFlag(FLAGS_memory_limit_bytes));
  limits.cpu_seconds = static_cast<uint64_t>(absl::GetFlag(FLAGS_cpu_limit_seconds));
  limits.max_processes = static_cast<uint64_t>(absl::GetFlag(FLAGS_max_processes));
  limits.max_open_files = static_cast<uint64_t>(absl::GetFlag(FLAGS_max_open_files));
  limits.max_file_size_bytes = static_cast<uint64_t>(absl::GetFlag(FLAGS_max_file_size_bytes));
  config.default_limits = limits;
  config.max_limits = limits;
  config.max_limits.address_space_bytes =
      static_cast<uint64_t>(absl::GetFlag(FLAGS_max_memory_limit_bytes));
  config.max_limits.cpu_seconds = 0;  // a request may ask for any CPU limit
  return config;
}

std::string DefaultKernelsDir() {
  std::error_code error;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) {
    const std::filesystem::path installed = exe.parent_path() / "../share/cellgate/kernels";
    if (std::filesystem::exists(installed, error)) {
      return std::filesystem::weakly_canonical(installed, error).string();
    }
  }
  return CELLGATE_SOURCE_KERNELS_DIR;
}

// Kernels with their own uid must be able to reach their directory: every directory above
// it needs the execute bit for others.
absl::Status CheckReachableByOtherUids(const std::string& dir) {
  std::filesystem::path path = std::filesystem::absolute(dir);
  for (; !path.empty() && path != path.root_path(); path = path.parent_path()) {
    struct stat info;
    if (::stat(path.c_str(), &info) != 0) {
      return absl::FailedPreconditionError(absl::StrCat("cannot stat ", path.string()));
    }
    if ((info.st_mode & S_IXOTH) == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--runtime-dir: kernels run as their own uid and cannot reach ", dir, ": ",
          path.string(), " is not searchable by others (chmod o+x, or choose another dir)"));
    }
  }
  return absl::OkStatus();
}

// Brings back the kernels an earlier gateway saved in the state dir.
void RestoreKernels(session::StateStore& store, session::SessionRegistry& registry,
                    const session::GatewayConfig& config) {
  session::StateStore::Loaded loaded = store.LoadAll();
  for (const std::string& problem : loaded.problems) {
    Log(LogLevel::kError, "state_file_unreadable", {{"detail", problem}});
  }
  registry.RestoreKernels(
      std::move(loaded.kernels),
      [&config](const v1::StartKernelRequest& request) {
        return api::EffectiveLimits(request.limits(), config);
      },
      [](const internal::KernelState& state, const absl::Status& status) {
        if (status.ok()) {
          Log(LogLevel::kInfo, "kernel_restored",
              {{"kernel_id", state.kernel_id()},
               {"cells", absl::StrCat(state.notebook().cells_size())},
               {"saved_last_seq", absl::StrCat(state.notebook().last_seq())},
               {"saved_pid", absl::StrCat(state.process().pid())}});
        } else {
          Log(LogLevel::kError, "kernel_not_restored",
              {{"kernel_id", state.kernel_id()}, {"error", std::string(status.message())},
               {"detail", "its state file is kept for a later gateway"}});
        }
      });
}

int Fail(const absl::Status& status) {
  Log(LogLevel::kError, "startup_failed", {{"error", std::string(status.message())}});
  return 2;
}

int Serve() {
  if (absl::GetFlag(FLAGS_log_format) == "json") obs::SetLogFormat(obs::LogFormat::kJson);

  // Signals are taken by one thread with sigwait; block them before any thread starts.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<kernel::SandboxMode> mode = ParseSandboxMode(absl::GetFlag(FLAGS_sandbox));
  if (!mode.ok()) return Fail(mode.status());

  const bool kernels_outlive_gateway = absl::GetFlag(FLAGS_kernels_outlive_gateway);
  if (kernels_outlive_gateway && absl::GetFlag(FLAGS_state_dir).empty()) {
    return Fail(absl::InvalidArgumentError(
        "--kernels-outlive-gateway needs a --state-dir: it is where the next gateway finds them"));
  }
  std::string runtime_dir = absl::GetFlag(FLAGS_runtime_dir);
  if (runtime_dir.empty()) runtime_dir = absl::StrCat("/tmp/cellgate-", ::getpid());
  if (absl::Status status = EnsureDirectory(runtime_dir, 0711); !status.ok()) {
    return Fail(status);
  }

  if (::geteuid() == 0) {
    if (absl::Status status = CheckReachableByOtherUids(runtime_dir); !status.ok()) {
      return Fail(status);
    }
  }
  kernel::SandboxCapabilities caps =
      kernel::ProbeSandbox(absl::GetFlag(FLAGS_bwrap_path), runtime_dir,
                           ::geteuid() == 0 ? absl::GetFlag(FLAGS_kernel_uid_base) : -1);
  if (absl::GetFlag(FLAGS_pool_size) < 0) {
    return Fail(absl::InvalidArgumentError("--pool-size: must be 0 (no pool) or more"));
  }
  const std::string cgroup_mode = absl::GetFlag(FLAGS_cgroup);
  if (cgroup_mode != "auto" && cgroup_mode != "off") {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--cgroup: '", cgroup_mode, "' is neither 'auto' nor 'off'")));
  }
  std::unique_ptr<kernel::CgroupManager> cgroups;
  if (cgroup_mode == "off") {
    caps.layers.push_back({"cgroup", false, "--cgroup=off"});
  } else if (absl::StatusOr<std::unique_ptr<kernel::CgroupManager>> detected =
                 kernel::CgroupManager::Detect(
                     {.keep_leftover_kernels = kernels_outlive_gateway});
             detected.ok()) {
    cgroups = *std::move(detected);
    caps.layers.push_back({"cgroup", true, cgroups->Describe()});
  } else {
    caps.layers.push_back({"cgroup", false, std::string(detected.status().message())});
  }
  if (kernels_outlive_gateway) {
    for (kernel::SandboxLayer& layer : caps.layers) {
      if (layer.name != "parent_death_signal") continue;
      layer.available = false;
      layer.detail = "--kernels-outlive-gateway: kernels go on running without the gateway";
    }
  }
  for (const kernel::SandboxLayer& layer : caps.layers) {
    Log(layer.available ? LogLevel::kInfo : LogLevel::kWarning, "sandbox_layer",
        {{"layer", layer.name}, {"available", layer.available ? "true" : "false"},
         {"detail", layer.detail}});
  }
  if (*mode == kernel::SandboxMode::kBwrap && !caps.bwrap) {
    return Fail(absl::FailedPreconditionError(
        "--sandbox=bwrap was asked for but bubblewrap does not work here (see the "
        "sandbox_layer line above); use --sandbox=rlimits or grant user namespaces"));
  }

  const session::GatewayConfig config = ConfigFromFlags(*mode);
  api::TokenAuthenticator auth;
  if (const std::string path = absl::GetFlag(FLAGS_auth_token_file); !path.empty()) {
    absl::StatusOr<api::TokenAuthenticator> loaded = api::TokenAuthenticator::FromFile(path);
    if (!loaded.ok()) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--auth-token-file: ", loaded.status().message())));
    }
    auth = *std::move(loaded);
  }
  const std::string listen = absl::GetFlag(FLAGS_listen);
  if (!IsLoopbackAddress(listen) && !auth.enabled()) {
    Log(LogLevel::kWarning, "unauthenticated_non_loopback",
        {{"listen", listen}, {"detail", "no --auth-token-file: anyone who reaches it can run code"}});
  }

  std::string kernels_dir = absl::GetFlag(FLAGS_kernels_dir);
  if (kernels_dir.empty()) kernels_dir = DefaultKernelsDir();
  const kernel::KernelSpecRegistry specs(kernel::KernelSpecRegistry::DefaultSearchDirs(kernels_dir));
  kernel::KernelIoLoop loop;
  std::unique_ptr<kernel::UidPool> uid_pool;
  if (caps.per_kernel_uid) {
    uid_pool = std::make_unique<kernel::UidPool>(absl::GetFlag(FLAGS_kernel_uid_base),
                                                 config.max_kernels + config.pool_size);
  }
  std::unique_ptr<session::StateStore> state_store;
  if (const std::string state_dir = absl::GetFlag(FLAGS_state_dir); !state_dir.empty()) {
    absl::StatusOr<std::unique_ptr<session::StateStore>> opened = session::StateStore::Open(
        {state_dir, absl::Milliseconds(std::max(absl::GetFlag(FLAGS_state_write_interval_ms), 0))});
    if (!opened.ok()) return Fail(opened.status());
    state_store = *std::move(opened);
  }
  session::RegistryDeps deps;
  deps.config = &config;
  deps.loop = &loop;
  deps.specs = &specs;
  deps.uid_pool = uid_pool.get();
  deps.capabilities = caps;
  deps.runtime_dir = runtime_dir;
  deps.bwrap_path = absl::GetFlag(FLAGS_bwrap_path);
  deps.cgroups = cgroups.get();
  deps.state_store = state_store.get();
  session::SessionRegistry registry(std::move(deps));
  if (state_store != nullptr) RestoreKernels(*state_store, registry, config);
  registry.FillPool();
  api::KernelGatewayService service(
      registry, config, specs, auth,
      api::ServerIdentity{CELLGATE_VERSION, absl::Now(), caps});

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &bound_port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(static_cast<int>(
      std::min<int64_t>(INT32_MAX, std::max<int64_t>(config.max_ipynb_bytes, 4 << 20) + (1 << 20))));
  builder.SetMaxSendMessageSize(INT32_MAX);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || (bound_port == 0 && !absl::StartsWith(listen, "unix:"))) {
    return Fail(absl::UnavailableError(absl::StrCat("cannot listen on ", listen)));
  }
  server->GetHealthCheckService()->SetServingStatus(true);
  if (const std::string port_file = absl::GetFlag(FLAGS_port_file); !port_file.empty()) {
    if (absl::Status status = WritePortFile(port_file, bound_port); !status.ok()) {
      return Fail(status);
    }
  }
  Log(LogLevel::kInfo, "serving",
      {{"listen", listen}, {"port", absl::StrCat(bound_port)},
       {"sandbox", kernel::SandboxModeName(*mode)}, {"runtime_dir", runtime_dir},
       {"kernels_dir", kernels_dir}, {"auth", auth.enabled() ? "on" : "off"},
       {"pid", absl::StrCat(::getpid())}});

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  Log(LogLevel::kInfo, "draining", {{"signal", strsignal(signal_number)}});
  // Health goes NOT_SERVING and new work is refused; running executions get the grace period.
  server->GetHealthCheckService()->SetServingStatus(false);
  registry.BeginDrain();
  const absl::Time drain_deadline = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_drain_seconds));
  registry.WaitForIdle(drain_deadline);
  if (kernels_outlive_gateway) {
    // Kernels go on running; their files stay for the next gateway. Closing the sessions ends
    // every stream.
    registry.DetachAll();
  } else {
    // Every notebook as it stands, before shutting kernels down: the next gateway restores them.
    if (state_store != nullptr) state_store->Flush();
    // Shutting kernels down closes their event logs, which ends every stream.
    registry.ShutdownAll(drain_deadline + absl::Seconds(10));
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server->Wait();
  std::error_code error;
  if (kernels_outlive_gateway) {
    std::filesystem::remove(runtime_dir, error);  // only once no kernel lives in it
  } else {
    std::filesystem::remove_all(runtime_dir, error);
  }
  Log(LogLevel::kInfo, "stopped");
  return 0;
}

}  // namespace
}  // namespace cellgate

// Flags are documented with dashes (--port-file); Abseil names them with underscores.
std::vector<std::string> DashesToUnderscores(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  for (size_t i = 1; i < args.size(); ++i) {
    std::string& arg = args[i];
    if (arg == "--") break;
    if (!absl::StartsWith(arg, "--")) continue;
    const size_t name_end = std::min(arg.find('='), arg.size());
    std::replace(arg.begin() + 2, arg.begin() + static_cast<std::ptrdiff_t>(name_end), '-', '_');
  }
  return args;
}

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "cellgate: a gRPC gateway to sandboxed Jupyter kernels.\n"
      "Usage: cellgate [--listen=127.0.0.1:50051] [--port-file=PATH] [--sandbox=rlimits|bwrap]");
  std::vector<std::string> args = DashesToUnderscores(argc, argv);
  std::vector<char*> arg_pointers;
  for (std::string& arg : args) arg_pointers.push_back(arg.data());
  absl::ParseCommandLine(static_cast<int>(arg_pointers.size()), arg_pointers.data());
  return cellgate::Serve();
}
