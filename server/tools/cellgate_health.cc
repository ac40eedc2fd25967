// cellgate-health: exits 0 when a cellgate server answers grpc.health.v1.Health/Check with
// SERVING, 1 otherwise (saying why on stderr). For container health checks and Kubernetes exec
// probes; a plaintext server can also be probed by Kubernetes' own gRPC probe.
//
//   cellgate-health [--target=127.0.0.1:50051] [--timeout-ms=5000]
//                   [--tls-ca=CA.pem [--tls-cert=C.pem --tls-key=K.pem] [--tls-server-name=N]]

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <tuple>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "server/common/command_line.h"
#include "server/tools/health_check.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "The server: HOST:PORT or unix:/path");
ABSL_FLAG(int, timeout_ms, 5000, "How long to wait for the answer");
ABSL_FLAG(std::string, tls_ca, "", "Connect with TLS, trusting the server by these PEM CAs");
ABSL_FLAG(std::string, tls_cert, "", "With TLS: a client certificate (for mutual TLS)");
ABSL_FLAG(std::string, tls_key, "", "The PEM private key of --tls-cert");
ABSL_FLAG(std::string, tls_server_name, "",
          "With TLS: the name the server's certificate must carry, when not the target's host");

namespace {

bool ReadFile(const std::string& path, std::string& out) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return false;
  out.assign(std::istreambuf_iterator<char>(file), {});
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Exits 0 when a cellgate server reports SERVING");
  std::vector<std::string> args = cellgate::DashesToUnderscores(argc, argv);
  cellgate::ParseFlags(args);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments arguments;
  if (const std::string ca = absl::GetFlag(FLAGS_tls_ca); !ca.empty()) {
    grpc::SslCredentialsOptions options;
    for (const auto& [flag, path, into] :
         {std::tuple{"--tls-ca", ca, &options.pem_root_certs},
          std::tuple{"--tls-cert", absl::GetFlag(FLAGS_tls_cert), &options.pem_cert_chain},
          std::tuple{"--tls-key", absl::GetFlag(FLAGS_tls_key), &options.pem_private_key}}) {
      if (!path.empty() && !ReadFile(path, *into)) {
        std::fprintf(stderr, "cellgate-health: %s: cannot read %s\n", flag, path.c_str());
        return 1;
      }
    }
    credentials = grpc::SslCredentials(options);
    if (const std::string name = absl::GetFlag(FLAGS_tls_server_name); !name.empty()) {
      arguments.SetSslTargetNameOverride(name);
    }
  }
  const std::string target = absl::GetFlag(FLAGS_target);
  absl::StatusOr<cellgate::tools::ServingStatus> status = cellgate::tools::CheckServerHealth(
      grpc::CreateCustomChannel(target, credentials, arguments),
      absl::Milliseconds(absl::GetFlag(FLAGS_timeout_ms)));
  if (!status.ok()) {
    std::fprintf(stderr, "cellgate-health: %s: %s\n", target.c_str(),
                 std::string(status.status().message()).c_str());
    return 1;
  }
  if (*status != cellgate::tools::ServingStatus::kServing) {
    std::fprintf(stderr, "cellgate-health: %s: NOT_SERVING (draining or starting)\n",
                 target.c_str());
    return 1;
  }
  return 0;
}
