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
#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/api/auth.h"
#include "server/api/kernel_gateway_service.h"
#include "server/api/gauge_collector.h"
#include "server/api/request_observer.h"
#include "server/api/request_validation.h"
#include "server/api/transport_security.h"
#include "server/common/command_line.h"
#include "server/config_file.h"
#include "server/flags.h"
#include "server/kernel/cell_analyzer.h"
#include "server/kernel/cgroup.h"
#include "server/kernel/io_loop.h"
#include "server/kernel/kernel_spec.h"
#include "server/kernel/sandbox_policy.h"
#include "server/kernel/sandbox_probe.h"
#include "server/kernel/uid_pool.h"
#include "server/obs/log.h"
#include "server/obs/metrics.h"
#include "server/session/gateway_config.h"
#include "server/session/session_registry.h"
#include "server/session/state_store.h"

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

// Ids are at most 64 characters of [A-Za-z0-9_-]: the prefix, a dash, 32 hex digits.
absl::Status CheckKernelIdPrefix(const std::string& prefix) {
  const bool valid_chars = std::all_of(prefix.begin(), prefix.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
  if (prefix.size() > 31 || !valid_chars) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kernel-id-prefix: '", prefix, "' must be 1-31 characters of [A-Za-z0-9_-]"));
  }
  return absl::OkStatus();
}

// With --listen=unix:PATH, who may connect is the socket file's permission bits.
absl::Status SetUnixSocketMode(const std::string& listen, const std::string& mode_text) {
  if (!absl::StartsWith(listen, "unix:")) return absl::OkStatus();
  std::string path = listen.substr(5);
  if (absl::StartsWith(path, "//")) path = path.substr(2);
  char* end = nullptr;
  const long mode = std::strtol(mode_text.c_str(), &end, 8);
  if (mode_text.empty() || *end != '\0' || mode < 0 || mode > 0777) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--unix-socket-mode: '", mode_text, "' is not an octal permission such as 0600 or 0660"));
  }
  if (::chmod(path.c_str(), static_cast<mode_t>(mode)) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("--unix-socket-mode: cannot chmod ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
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

// Prometheus metrics over HTTP at /metrics: the counters the layers keep and the gauges read
// from the registry at each scrape.
absl::StatusOr<std::unique_ptr<prometheus::Exposer>> ServeMetrics(
    const std::string& listen, const std::shared_ptr<prometheus::Collectable>& gauges) {
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(listen, /*num_threads=*/2);
  } catch (const std::exception& error) {
    return absl::UnavailableError(
        absl::StrCat("--metrics-listen: cannot listen on ", listen, ": ", error.what()));
  }
  exposer->RegisterCollectable(obs::Metrics::Get().registry());
  exposer->RegisterCollectable(gauges);
  return exposer;
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
  config.pool_refill_delay =
      absl::Milliseconds(std::max(0, absl::GetFlag(FLAGS_pool_refill_delay_ms)));
  config.default_kernel_spec = absl::GetFlag(FLAGS_default_kernel_spec);
  config.kernel_id_prefix = absl::GetFlag(FLAGS_kernel_id_prefix);
  config.sandbox_mode = mode;
  config.default_allow_network = absl::GetFlag(FLAGS_allow_network);
  config.startup_timeout = absl::Seconds(absl::GetFlag(FLAGS_startup_timeout_seconds));
  config.default_timeout_ms = absl::GetFlag(FLAGS_default_timeout_ms);
  config.max_timeout_ms = absl::GetFlag(FLAGS_max_timeout_ms);
  config.max_cells_per_kernel = absl::GetFlag(FLAGS_max_cells);
  config.max_source_bytes = absl::GetFlag(FLAGS_max_source_bytes);
  config.max_execution_output_bytes = absl::GetFlag(FLAGS_max_output_bytes);
  config.max_ipynb_bytes = absl::GetFlag(FLAGS_max_ipynb_bytes);
  config.max_upload_bytes = std::max<int64_t>(0, absl::GetFlag(FLAGS_max_upload_bytes));
  config.max_workspace_bytes = std::max<int64_t>(0, absl::GetFlag(FLAGS_max_workspace_bytes));
  config.max_transfer_bytes = std::max<int64_t>(0, absl::GetFlag(FLAGS_max_transfer_bytes));
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

// The cell analyzer shared by all kernels (null with --dependency-analysis=false): confined like
// a kernel, with a uid of its own outside the kernels' range when the gateway runs as root.
absl::StatusOr<std::unique_ptr<kernel::CellAnalyzer>> MakeCellAnalyzer(
    kernel::KernelIoLoop& loop, const std::string& runtime_dir,
    const kernel::SandboxCapabilities& caps, int uid_after_kernels) {
  if (!absl::GetFlag(FLAGS_dependency_analysis)) return nullptr;
  kernel::CellAnalyzer::Options options;
  options.script = absl::GetFlag(FLAGS_analyzer_script);
  if (options.script.empty()) {
    options.script = DefaultKernelsDir() + "/analyzer/cellgate_analyzer.py";
  }
  std::error_code error;
  if (!std::filesystem::is_regular_file(options.script, error)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--analyzer-script: ", options.script,
                     " is not a file (or --dependency-analysis=false to run without it)"));
  }
  options.working_dir = runtime_dir + "/analyzer";
  std::filesystem::create_directories(options.working_dir, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot create ", options.working_dir, ": ", error.message()));
  }
  options.policy.limits.address_space_bytes = uint64_t{1} << 30;
  options.policy.limits.max_open_files = 64;
  options.policy.limits.max_file_size_bytes = uint64_t{16} << 20;
  if (caps.per_kernel_uid) {
    options.policy.uid = uid_after_kernels;
    options.policy.gid = uid_after_kernels;
    options.policy.limits.max_processes = 16;
    if (::chown(options.working_dir.c_str(), uid_after_kernels, uid_after_kernels) != 0) {
      return absl::InternalError(absl::StrCat("cannot chown ", options.working_dir, ": ",
                                              std::strerror(errno)));
    }
  }
  auto analyzer = std::make_unique<kernel::CellAnalyzer>(loop, std::move(options));
  // Started now: its first answer pays for importing IPython's transformer (~0.3 s), which
  // should not be the first AddCell's wait.
  analyzer->Analyze("pass", [](absl::StatusOr<kernel::CellAnalysis>) {});
  return analyzer;
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
  const std::string log_format = absl::GetFlag(FLAGS_log_format);
  if (log_format == "json") obs::SetLogFormat(obs::LogFormat::kJson);
  if (log_format != "json" && log_format != "logfmt") {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--log-format: '", log_format, "' is neither 'logfmt' nor 'json'")));
  }

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
  if (absl::Status status = CheckKernelIdPrefix(absl::GetFlag(FLAGS_kernel_id_prefix));
      !status.ok()) {
    return Fail(status);
  }
  if (absl::GetFlag(FLAGS_pool_size) < 0) {
    return Fail(absl::InvalidArgumentError("--pool-size: must be 0 (no pool) or more"));
  }
  if (absl::GetFlag(FLAGS_pool_refill_delay_ms) < 0) {
    return Fail(
        absl::InvalidArgumentError("--pool-refill-delay-ms: must be 0 (refill at once) or more"));
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
  const api::TlsFiles tls{absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key),
                          absl::GetFlag(FLAGS_tls_client_ca)};
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      api::MakeServerCredentials(tls);
  if (!credentials.ok()) return Fail(credentials.status());
  const bool insecure_allowed = absl::GetFlag(FLAGS_insecure_allow_unauthenticated);
  if (absl::Status status =
          api::CheckListenIsAuthenticated(listen, auth.enabled(), tls.mutual(), insecure_allowed);
      !status.ok()) {
    return Fail(status);
  }
  if (insecure_allowed && !api::IsLocalOnlyAddress(listen) && !auth.enabled() && !tls.mutual()) {
    Log(LogLevel::kWarning, "unauthenticated_non_loopback",
        {{"listen", listen},
         {"detail", "--insecure-allow-unauthenticated: anyone who reaches it can run code"}});
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
  absl::StatusOr<std::unique_ptr<kernel::CellAnalyzer>> analyzer = MakeCellAnalyzer(
      loop, runtime_dir, caps,
      absl::GetFlag(FLAGS_kernel_uid_base) + config.max_kernels + config.pool_size);
  if (!analyzer.ok()) return Fail(analyzer.status());
  std::unique_ptr<session::StateStore> state_store;
  if (const std::string state_dir = absl::GetFlag(FLAGS_state_dir); !state_dir.empty()) {
    absl::StatusOr<std::unique_ptr<session::StateStore>> opened = session::StateStore::Open(
        {state_dir, absl::Milliseconds(std::max(absl::GetFlag(FLAGS_state_write_interval_ms), 0)),
         absl::GetFlag(FLAGS_state_fsync_before_reply)});
    if (!opened.ok()) return Fail(opened.status());
    state_store = *std::move(opened);
  }
  session::RegistryDeps deps;
  deps.config = &config;
  deps.loop = &loop;
  deps.analyzer = analyzer->get();
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
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> observers;
  observers.push_back(std::make_unique<api::RequestObserverFactory>());
  builder.experimental().SetInterceptorCreators(std::move(observers));
  int bound_port = 0;
  builder.AddListeningPort(listen, *credentials, &bound_port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(static_cast<int>(
      std::min<int64_t>(INT32_MAX, std::max<int64_t>(config.max_ipynb_bytes, 4 << 20) + (1 << 20))));
  builder.SetMaxSendMessageSize(INT32_MAX);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || (bound_port == 0 && !absl::StartsWith(listen, "unix:"))) {
    return Fail(absl::UnavailableError(absl::StrCat("cannot listen on ", listen)));
  }
  if (absl::Status status = SetUnixSocketMode(listen, absl::GetFlag(FLAGS_unix_socket_mode));
      !status.ok()) {
    return Fail(status);
  }
  const auto gauges = std::make_shared<api::GaugeCollector>(registry);
  std::unique_ptr<prometheus::Exposer> metrics;
  int metrics_port = 0;
  if (const std::string metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
      !metrics_listen.empty()) {
    absl::StatusOr<std::unique_ptr<prometheus::Exposer>> served =
        ServeMetrics(metrics_listen, gauges);
    if (!served.ok()) return Fail(served.status());
    metrics = *std::move(served);
    const std::vector<int> ports = metrics->GetListeningPorts();
    metrics_port = ports.empty() ? 0 : ports.front();
    if (const std::string port_file = absl::GetFlag(FLAGS_metrics_port_file); !port_file.empty()) {
      if (absl::Status status = WritePortFile(port_file, metrics_port); !status.ok()) {
        return Fail(status);
      }
    }
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
       {"tls", tls.mutual() ? "mutual" : tls.enabled() ? "on" : "off"},
       {"metrics_port", metrics ? absl::StrCat(metrics_port) : "off"},
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
  metrics.reset();  // its collector reads the registry
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

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "cellgate: a gRPC gateway to sandboxed Jupyter kernels.\n"
      "Usage: cellgate [--config=FILE.json] [--listen=127.0.0.1:50051] [--port-file=PATH] "
      "[--sandbox=rlimits|bwrap] [--tls-cert=PEM --tls-key=PEM [--tls-client-ca=PEM]]");
  std::vector<std::string> args = cellgate::DashesToUnderscores(argc, argv);
  // The config file first: flags on the command line then override what it set.
  if (const std::string config = cellgate::ConfigPathFromArgs(args); !config.empty()) {
    if (absl::Status status = cellgate::ApplyConfigFile(config); !status.ok()) {
      cellgate::obs::Log(cellgate::obs::LogLevel::kError, "startup_failed",
                         {{"error", std::string(status.message())}});
      return 2;
    }
  }
  cellgate::ParseFlags(args);
  return cellgate::Serve();
}
