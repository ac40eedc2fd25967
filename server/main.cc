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
#include "server/kernel/sandbox_policy.h"
#include "server/kernel/sandbox_probe.h"
#include "server/obs/log.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "Address to serve gRPC on: HOST:PORT (port 0 picks a free port) or unix:/path");
ABSL_FLAG(std::string, port_file, "",
          "Once listening, write the bound port here (how tests and scripts find it)");
ABSL_FLAG(std::string, state_dir, "/var/lib/cellgate",
          "Directory for persisted notebooks and server state");
ABSL_FLAG(std::string, runtime_dir, "",
          "Directory for kernel working dirs and sockets; keep it short (unix socket paths are "
          "limited to 107 bytes). Default: /tmp/cellgate-<pid>");
ABSL_FLAG(std::string, sandbox, "rlimits",
          "Kernel sandbox: 'rlimits' (rlimits, own session, no_new_privs, per-kernel uid when "
          "root) or 'bwrap' (all that inside bubblewrap namespaces: no network by default, "
          "read-only system, private /tmp)");
ABSL_FLAG(std::string, bwrap_path, "/usr/bin/bwrap", "The bubblewrap binary");
ABSL_FLAG(std::string, log_format, "logfmt", "Log line format: 'logfmt' or 'json'");
ABSL_FLAG(int, drain_seconds, 10, "On SIGTERM: how long running work may take to finish");

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

  std::string runtime_dir = absl::GetFlag(FLAGS_runtime_dir);
  if (runtime_dir.empty()) runtime_dir = absl::StrCat("/tmp/cellgate-", ::getpid());
  if (absl::Status status = EnsureDirectory(runtime_dir, 0711); !status.ok()) {
    return Fail(status);
  }

  const kernel::SandboxCapabilities caps =
      kernel::ProbeSandbox(absl::GetFlag(FLAGS_bwrap_path), runtime_dir, ::geteuid() == 0 ? 65534 : -1);
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

  const std::string listen = absl::GetFlag(FLAGS_listen);
  if (!IsLoopbackAddress(listen)) {
    Log(LogLevel::kWarning, "unauthenticated_non_loopback",
        {{"listen", listen}, {"detail", "no auth token file: anyone who reaches it can run code"}});
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &bound_port);
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
       {"pid", absl::StrCat(::getpid())}});

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  Log(LogLevel::kInfo, "draining", {{"signal", strsignal(signal_number)}});
  server->GetHealthCheckService()->SetServingStatus(false);
  server->Shutdown(std::chrono::system_clock::now() +
                   std::chrono::seconds(absl::GetFlag(FLAGS_drain_seconds)));
  server->Wait();
  std::error_code error;
  std::filesystem::remove_all(runtime_dir, error);
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
