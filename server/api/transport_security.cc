#include "server/api/transport_security.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>
#include <sstream>

#include <grpcpp/security/server_credentials.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace cellgate::api {
namespace {

absl::StatusOr<std::string> ReadPemFile(absl::string_view flag, const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  }
  std::ostringstream text;
  text << file.rdbuf();
  if (text.str().empty()) return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " is empty"));
  return text.str();
}

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "not PEM";
  char buffer[256];
  ERR_error_string_n(code, buffer, sizeof buffer);
  return buffer;
}

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Deleter {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct KeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};

std::unique_ptr<BIO, BioDeleter> MemoryBio(const std::string& pem) {
  return std::unique_ptr<BIO, BioDeleter>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

absl::StatusOr<std::unique_ptr<X509, X509Deleter>> FirstCertificate(absl::string_view flag,
                                                                     const std::string& path,
                                                                     const std::string& pem) {
  auto bio = MemoryBio(pem);
  std::unique_ptr<X509, X509Deleter> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " holds no PEM certificate (", OpenSslError(), ")"));
  }
  return cert;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files) {
  if (!files.enabled()) {
    if (files.mutual()) {
      return absl::InvalidArgumentError(
          "--tls-client-ca: mutual TLS needs TLS on: give --tls-cert and --tls-key too");
    }
    return grpc::InsecureServerCredentials();
  }
  if (files.cert_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert: missing; --tls-key needs its certificate");
  }
  if (files.key_file.empty()) {
    return absl::InvalidArgumentError("--tls-key: missing; --tls-cert needs its private key");
  }
  absl::StatusOr<std::string> cert_pem = ReadPemFile("--tls-cert", files.cert_file);
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = ReadPemFile("--tls-key", files.key_file);
  if (!key_pem.ok()) return key_pem.status();

  absl::StatusOr<std::unique_ptr<X509, X509Deleter>> cert =
      FirstCertificate("--tls-cert", files.cert_file, *cert_pem);
  if (!cert.ok()) return cert.status();
  auto key_bio = MemoryBio(*key_pem);
  std::unique_ptr<EVP_PKEY, KeyDeleter> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-key: ", files.key_file, " holds no unencrypted PEM private key (", OpenSslError(),
        ")"));
  }
  if (X509_check_private_key(cert->get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("--tls-key: ", files.key_file,
                                                    " is not the key of the certificate in ",
                                                    files.cert_file));
  }

  grpc::SslServerCredentialsOptions options;
  options.pem_key_cert_pairs.push_back({*key_pem, *cert_pem});
  if (files.mutual()) {
    absl::StatusOr<std::string> ca_pem = ReadPemFile("--tls-client-ca", files.client_ca_file);
    if (!ca_pem.ok()) return ca_pem.status();
    if (absl::StatusOr<std::unique_ptr<X509, X509Deleter>> ca =
            FirstCertificate("--tls-client-ca", files.client_ca_file, *ca_pem);
        !ca.ok()) {
      return ca.status();
    }
    options.pem_root_certs = *ca_pem;
    options.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

bool IsLocalOnlyAddress(absl::string_view listen) {
  return absl::StartsWith(listen, "unix:") || absl::StartsWith(listen, "unix-abstract:") ||
         absl::StartsWith(listen, "127.") || absl::StartsWith(listen, "localhost:") ||
         absl::StartsWith(listen, "[::1]:");
}

absl::Status CheckListenIsAuthenticated(absl::string_view listen, bool tokens, bool mutual_tls,
                                        bool insecure_allow_unauthenticated) {
  if (tokens || mutual_tls || insecure_allow_unauthenticated || IsLocalOnlyAddress(listen)) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "--listen=", listen,
      " can be reached from other hosts, and anyone who reaches it could run code: give "
      "--auth-token-file (bearer tokens) or --tls-client-ca (mutual TLS), listen on loopback "
      "or a unix socket, or pass --insecure-allow-unauthenticated"));
}

}  // namespace cellgate::api
