#include "server/api/transport_security.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_certificates.h"

namespace cellgate::api {
namespace {

using ::testing::HasSubstr;

class TransportSecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "transport_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    auto made = testing::MakeTestCertificates(pattern);
    ASSERT_TRUE(made.ok()) << made.status();
    certs_ = new testing::TestCertificates(*made);
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(certs_->dir);
    delete certs_;
  }
  static testing::TestCertificates* certs_;
};
testing::TestCertificates* TransportSecurityTest::certs_ = nullptr;

std::string ErrorOf(const TlsFiles& files) {
  auto made = MakeServerCredentials(files);
  return made.ok() ? "" : std::string(made.status().message());
}

TEST_F(TransportSecurityTest, NoFilesIsPlaintext) {
  auto made = MakeServerCredentials({});
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_NE(*made, nullptr);
}

TEST_F(TransportSecurityTest, ACertificateWithItsKeyAndAClientCaMakeCredentials) {
  EXPECT_EQ(ErrorOf({certs_->server_pem, certs_->server_key, ""}), "");
  EXPECT_EQ(ErrorOf({certs_->server_pem, certs_->server_key, certs_->ca_pem}), "");
}

TEST_F(TransportSecurityTest, EachMistakeIsNamedWithItsFlag) {
  EXPECT_THAT(ErrorOf({certs_->server_pem, "", ""}), HasSubstr("--tls-key: missing"));
  EXPECT_THAT(ErrorOf({"", certs_->server_key, ""}), HasSubstr("--tls-cert: missing"));
  EXPECT_THAT(ErrorOf({"", "", certs_->ca_pem}), HasSubstr("--tls-client-ca: mutual TLS needs"));
  EXPECT_THAT(ErrorOf({certs_->dir + "/absent.pem", certs_->server_key, ""}),
              HasSubstr("--tls-cert: cannot read"));
  EXPECT_THAT(ErrorOf({certs_->server_key, certs_->server_key, ""}),
              HasSubstr("--tls-cert: " + certs_->server_key + " holds no PEM certificate"));
  EXPECT_THAT(ErrorOf({certs_->server_pem, certs_->server_pem, ""}),
              HasSubstr("--tls-key: " + certs_->server_pem + " holds no unencrypted PEM"));
  EXPECT_THAT(ErrorOf({certs_->server_pem, certs_->client_key, ""}),
              HasSubstr("is not the key of the certificate"));
  EXPECT_THAT(ErrorOf({certs_->server_pem, certs_->server_key, certs_->server_key}),
              HasSubstr("--tls-client-ca: " + certs_->server_key + " holds no PEM certificate"));
}

TEST(ListenPolicyTest, LoopbackAndUnixSocketsAreLocal) {
  for (const char* listen : {"127.0.0.1:0", "127.0.0.2:50051", "localhost:1", "[::1]:50051",
                             "unix:/run/cellgate.sock", "unix:///run/c.sock"}) {
    EXPECT_TRUE(IsLocalOnlyAddress(listen)) << listen;
  }
  for (const char* listen : {"0.0.0.0:50051", "[::]:50051", "10.0.0.5:50051", "cellgate:1"}) {
    EXPECT_FALSE(IsLocalOnlyAddress(listen)) << listen;
  }
}

TEST(ListenPolicyTest, AReachableAddressNeedsTokensOrMutualTlsOrAnExplicitOptOut) {
  const absl::Status refused = CheckListenIsAuthenticated("0.0.0.0:50051", false, false, false);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("--auth-token-file"));
  EXPECT_THAT(std::string(refused.message()), HasSubstr("--insecure-allow-unauthenticated"));
  EXPECT_TRUE(CheckListenIsAuthenticated("0.0.0.0:50051", true, false, false).ok());
  EXPECT_TRUE(CheckListenIsAuthenticated("0.0.0.0:50051", false, true, false).ok());
  EXPECT_TRUE(CheckListenIsAuthenticated("0.0.0.0:50051", false, false, true).ok());
  EXPECT_TRUE(CheckListenIsAuthenticated("127.0.0.1:50051", false, false, false).ok());
}

}  // namespace
}  // namespace cellgate::api
