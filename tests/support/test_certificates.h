#pragma once

// A throwaway PKI for TLS tests, made with the openssl command in a directory of the test's:
// a CA, a server certificate for localhost / 127.0.0.1 signed by it, a client certificate
// signed by it, and a second CA that signed nothing the server trusts.

#include <string>

#include "absl/status/statusor.h"

namespace cellgate::testing {

struct TestCertificates {
  std::string dir;
  std::string ca_pem, ca_key;              // the CA both certificates chain to
  std::string server_pem, server_key;      // CN=localhost, SAN DNS:localhost, IP:127.0.0.1
  std::string client_pem, client_key;      // CN=test-client, clientAuth
  std::string other_ca_pem;                // an unrelated CA
  std::string stranger_pem, stranger_key;  // a client certificate of the unrelated CA

  // Reads one of the files above.
  static std::string Read(const std::string& path);
};

// Creates the files under `dir` (which must exist).
absl::StatusOr<TestCertificates> MakeTestCertificates(const std::string& dir);

}  // namespace cellgate::testing
