// Runs the real cellgate binary: port 0 + --port-file, gRPC health, SIGTERM drain.

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/synchronization/notification.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/tools/health_check.h"
#include "tests/support/server_process.h"
#include "tests/support/test_certificates.h"

namespace cellgate {
namespace {

using testing::ServerProcess;
using testing::TestCertificates;

// The health status over plaintext to 127.0.0.1:`port`, -1 when the call failed.
int CheckHealth(int port) {
  absl::StatusOr<tools::ServingStatus> status = tools::CheckServerHealth(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()),
      absl::Seconds(10));
  if (!status.ok()) {
    ADD_FAILURE() << status.status();
    return -1;
  }
  return static_cast<int>(*status);
}

constexpr int kServing = 1;

// The exit status of cellgate-health with `args`.
int RunHealthProbe(const std::string& args) {
  const std::string command =
      absl::StrCat(CELLGATE_HEALTH_BINARY, " --timeout-ms=5000 ", args, " 2>/dev/null");
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(ServerBinaryTest, ServesHealthOnPortZeroAndDrainsOnSigterm) {
  ServerProcess server({});
  const int port = server.WaitForPort(absl::Seconds(30));
  ASSERT_GT(port, 0) << server.log();
  EXPECT_EQ(CheckHealth(port), kServing);
  EXPECT_EQ(RunHealthProbe(absl::StrCat("--target=127.0.0.1:", port)), 0);
  EXPECT_NE(server.log().find("event=sandbox_layer layer=rlimits available=true"),
            std::string::npos)
      << server.log();

  ASSERT_EQ(::kill(server.pid(), SIGTERM), 0);
  std::optional<int> status = server.WaitForExit(absl::Seconds(20));
  ASSERT_TRUE(status.has_value()) << "server did not exit after SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
  EXPECT_NE(server.log().find("event=stopped"), std::string::npos) << server.log();
  EXPECT_EQ(RunHealthProbe(absl::StrCat("--target=127.0.0.1:", port)), 1) << "nobody listens";
}

TEST(ServerBinaryTest, UnknownSandboxModeFailsStartNamingTheFlag) {
  ServerProcess server({"--sandbox=chroot"});
  std::optional<int> status = server.WaitForExit(absl::Seconds(20));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) != 0);
  EXPECT_NE(server.log().find("--sandbox: 'chroot'"), std::string::npos) << server.log();
}

// Start fails: a non-zero exit, and the reason in the log.
void ExpectStartFails(ServerProcess& server, const std::string& reason) {
  std::optional<int> status = server.WaitForExit(absl::Seconds(20));
  ASSERT_TRUE(status.has_value()) << "the server is still running";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) != 0) << *status;
  EXPECT_NE(server.log().find(reason), std::string::npos) << server.log();
}

class ScratchDir {
 public:
  ScratchDir() {
    char pattern[] = "/tmp/cgt-XXXXXX";
    path_ = ::mkdtemp(pattern);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string Write(const std::string& name, const std::string& text) const {
    const std::string file = path_ + "/" + name;
    std::ofstream(file, std::ios::trunc) << text;
    return file;
  }

 private:
  std::string path_;
};

TEST(ServerBinaryTest, AnAddressOtherHostsReachNeedsAuthentication) {
  ServerProcess refused({"--listen=0.0.0.0:0"});
  ExpectStartFails(refused, "can be reached from other hosts");

  ServerProcess allowed({"--listen=0.0.0.0:0", "--insecure-allow-unauthenticated"});
  const int port = allowed.WaitForPort(absl::Seconds(30));
  ASSERT_GT(port, 0) << allowed.log();
  EXPECT_EQ(CheckHealth(port), kServing);
  EXPECT_NE(allowed.log().find("event=unauthenticated_non_loopback"), std::string::npos);
}

TEST(ServerBinaryTest, AKernelIdPrefixOutsideTheIdAlphabetFailsStart) {
  ServerProcess server({"--kernel-id-prefix=pod/0"});
  ExpectStartFails(server, "--kernel-id-prefix: 'pod/0' must be 1-31 characters");
}

TEST(ServerBinaryTest, ANegativePoolRefillDelayFailsStart) {
  ServerProcess server({"--pool-size=1", "--pool-refill-delay-ms=-1"});
  ExpectStartFails(server, "--pool-refill-delay-ms: must be 0 (refill at once) or more");
}

TEST(ServerBinaryTest, ServesOnAUnixSocketWithTheModeAsked) {
  ScratchDir dir;
  const std::string socket = dir.path() + "/gw.sock";
  ServerProcess server({"--listen=unix:" + socket, "--unix-socket-mode=0660"});
  ASSERT_GT(server.WaitForPort(absl::Seconds(30)), 0) << server.log();
  struct stat info;
  ASSERT_EQ(::stat(socket.c_str(), &info), 0);
  EXPECT_TRUE(S_ISSOCK(info.st_mode));
  EXPECT_EQ(info.st_mode & 0777, 0660u);
  absl::StatusOr<tools::ServingStatus> status = tools::CheckServerHealth(
      grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()),
      absl::Seconds(10));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, tools::ServingStatus::kServing);
}

TEST(ServerBinaryTest, ABadConfigFileFailsStartNamingTheField) {
  ScratchDir dir;
  ServerProcess unknown({"--config=" + dir.Write("a.json", R"({"max_kernelz": 4})")});
  ExpectStartFails(unknown, "field 'max_kernelz' is not a setting");
  ServerProcess mistyped({"--config=" + dir.Write("b.json", R"({"pool_size": "two"})")});
  ExpectStartFails(mistyped, "field 'pool_size': \\\"two\\\" is not of type int32");
}

TEST(ServerBinaryTest, TheConfigFileIsAppliedAndTheCommandLineWinsOverIt) {
  ScratchDir dir;
  const std::string config = dir.Write("c.json", R"({"sandbox": "chroot", "drain_seconds": 1})");
  ServerProcess from_file({"--config=" + config});
  ExpectStartFails(from_file, "--sandbox: 'chroot'");

  ServerProcess overridden({"--config=" + config, "--sandbox=rlimits"});
  const int port = overridden.WaitForPort(absl::Seconds(30));
  ASSERT_GT(port, 0) << overridden.log();
  EXPECT_EQ(CheckHealth(port), kServing);
}

class TlsServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new ScratchDir;
    auto made = testing::MakeTestCertificates(dir_->path());
    ASSERT_TRUE(made.ok()) << made.status();
    certs_ = new TestCertificates(*made);
  }
  static void TearDownTestSuite() {
    delete certs_;
    delete dir_;
  }

  // Health over TLS trusting `ca`, presenting `cert`/`key` when given: OK when SERVING, else
  // the code of the failed call.
  static absl::StatusCode HealthOverTls(int port, const std::string& ca,
                                        const std::string& cert = "",
                                        const std::string& key = "") {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = TestCertificates::Read(ca);
    if (!cert.empty()) {
      options.pem_cert_chain = TestCertificates::Read(cert);
      options.pem_private_key = TestCertificates::Read(key);
    }
    return Code(tools::CheckServerHealth(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::SslCredentials(options)),
        absl::Seconds(10)));
  }
  static absl::StatusCode HealthInPlaintext(int port) {
    return Code(tools::CheckServerHealth(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()),
        absl::Seconds(10)));
  }
  static absl::StatusCode Code(const absl::StatusOr<tools::ServingStatus>& status) {
    if (!status.ok()) return status.status().code();
    return *status == tools::ServingStatus::kServing ? absl::StatusCode::kOk
                                                     : absl::StatusCode::kInternal;
  }

  static ScratchDir* dir_;
  static TestCertificates* certs_;
};
ScratchDir* TlsServerTest::dir_ = nullptr;
TestCertificates* TlsServerTest::certs_ = nullptr;

TEST_F(TlsServerTest, ServesTlsAndRefusesPlaintext) {
  ServerProcess server({"--tls-cert=" + certs_->server_pem, "--tls-key=" + certs_->server_key});
  const int port = server.WaitForPort(absl::Seconds(30));
  ASSERT_GT(port, 0) << server.log();
  EXPECT_NE(server.log().find("tls=on"), std::string::npos) << server.log();

  EXPECT_EQ(HealthOverTls(port, certs_->ca_pem), absl::StatusCode::kOk);
  EXPECT_EQ(HealthInPlaintext(port), absl::StatusCode::kUnavailable);
  // A client that does not trust the server's CA does not get through either.
  EXPECT_EQ(HealthOverTls(port, certs_->other_ca_pem), absl::StatusCode::kUnavailable);
}

TEST_F(TlsServerTest, MutualTlsAdmitsOnlyClientsWithACertificateOfItsCa) {
  ServerProcess server({"--tls-cert=" + certs_->server_pem, "--tls-key=" + certs_->server_key,
                        "--tls-client-ca=" + certs_->ca_pem, "--listen=0.0.0.0:0"});
  // Mutual TLS authenticates clients, so listening beyond loopback needs no token.
  const int port = server.WaitForPort(absl::Seconds(30));
  ASSERT_GT(port, 0) << server.log();
  EXPECT_NE(server.log().find("tls=mutual"), std::string::npos) << server.log();

  EXPECT_EQ(HealthOverTls(port, certs_->ca_pem, certs_->client_pem, certs_->client_key),
            absl::StatusCode::kOk);
  EXPECT_EQ(HealthOverTls(port, certs_->ca_pem), absl::StatusCode::kUnavailable);
  EXPECT_EQ(HealthOverTls(port, certs_->ca_pem, certs_->stranger_pem, certs_->stranger_key),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(HealthInPlaintext(port), absl::StatusCode::kUnavailable);

  const std::string target = absl::StrCat("--target=127.0.0.1:", port);
  EXPECT_EQ(RunHealthProbe(absl::StrCat(target, " --tls-ca=", certs_->ca_pem, " --tls-cert=",
                                        certs_->client_pem, " --tls-key=", certs_->client_key)),
            0);
  EXPECT_EQ(RunHealthProbe(absl::StrCat(target, " --tls-ca=", certs_->ca_pem)), 1);
}

TEST_F(TlsServerTest, AKeyThatIsNotTheCertificatesFailsStart) {
  ServerProcess server({"--tls-cert=" + certs_->server_pem, "--tls-key=" + certs_->client_key});
  ExpectStartFails(server, "is not the key of the certificate");
}

}  // namespace
}  // namespace cellgate
