#include "tests/support/test_certificates.h"

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace cellgate::testing {
namespace {

absl::Status Run(const std::string& command) {
  const std::string quiet = absl::StrCat(command, " >/dev/null 2>&1");
  if (std::system(quiet.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("failed: ", command));
  }
  return absl::OkStatus();
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream file(path, std::ios::trunc);
  file << text;
  return file ? absl::OkStatus() : absl::InternalError(absl::StrCat("cannot write ", path));
}

// A self-signed CA: `name`.pem and `name`.key.
absl::Status MakeCa(const std::string& dir, const std::string& name) {
  return Run(absl::StrCat("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
                          "-nodes -days 2 -subj /CN=",
                          name, " -keyout ", dir, "/", name, ".key -out ", dir, "/", name,
                          ".pem"));
}

// `name`.pem and `name`.key, signed by `ca`, with the extensions in `extensions`.
absl::Status MakeLeaf(const std::string& dir, const std::string& name, const std::string& ca,
                      const std::string& subject, const std::string& extensions) {
  const std::string ext_file = absl::StrCat(dir, "/", name, ".ext");
  if (absl::Status status = WriteFile(ext_file, extensions); !status.ok()) return status;
  if (absl::Status status = Run(absl::StrCat(
          "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj ",
          subject, " -keyout ", dir, "/", name, ".key -out ", dir, "/", name, ".csr"));
      !status.ok()) {
    return status;
  }
  return Run(absl::StrCat("openssl x509 -req -days 2 -in ", dir, "/", name, ".csr -CA ", dir,
                          "/", ca, ".pem -CAkey ", dir, "/", ca, ".key -CAcreateserial -out ",
                          dir, "/", name, ".pem -extfile ", ext_file));
}

}  // namespace

std::string TestCertificates::Read(const std::string& path) {
  std::ifstream file(path);
  return std::string(std::istreambuf_iterator<char>(file), {});
}

absl::StatusOr<TestCertificates> MakeTestCertificates(const std::string& dir) {
  for (const char* ca : {"ca", "other-ca"}) {
    if (absl::Status status = MakeCa(dir, ca); !status.ok()) return status;
  }
  if (absl::Status status = MakeLeaf(dir, "server", "ca", "/CN=localhost",
                                     "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                     "extendedKeyUsage=serverAuth\n");
      !status.ok()) {
    return status;
  }
  for (const auto& [name, ca] : {std::pair{"client", "ca"}, std::pair{"stranger", "other-ca"}}) {
    if (absl::Status status = MakeLeaf(dir, name, ca, absl::StrCat("/CN=test-", name),
                                       "extendedKeyUsage=clientAuth\n");
        !status.ok()) {
      return status;
    }
  }
  TestCertificates certs;
  certs.dir = dir;
  certs.ca_pem = dir + "/ca.pem";
  certs.ca_key = dir + "/ca.key";
  certs.server_pem = dir + "/server.pem";
  certs.server_key = dir + "/server.key";
  certs.client_pem = dir + "/client.pem";
  certs.client_key = dir + "/client.key";
  certs.other_ca_pem = dir + "/other-ca.pem";
  certs.stranger_pem = dir + "/stranger.pem";
  certs.stranger_key = dir + "/stranger.key";
  return certs;
}

}  // namespace cellgate::testing
