#pragma once

// How the gRPC listener is secured: TLS (optionally mutual) from PEM files, and the rule that
// an address other hosts can reach must authenticate its clients.

#include <memory>
#include <string>

#include <grpcpp/security/server_credentials.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cellgate::api {

struct TlsFiles {
  std::string cert_file;       // PEM certificate chain, leaf first
  std::string key_file;        // PEM private key of the leaf
  std::string client_ca_file;  // PEM CAs; set: clients must present a certificate they signed
  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
  bool mutual() const { return !client_ca_file.empty(); }
};

// Plaintext credentials when `files` is empty; otherwise reads and checks the files (PEM, the
// key belongs to the certificate, the CA file holds a certificate) before building TLS
// credentials. Errors name the flag: "--tls-key: ...".
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files);

// Whether `listen` (a gRPC listen address) is reachable only from this host: a unix socket or
// a loopback address.
bool IsLocalOnlyAddress(absl::string_view listen);

// An address other hosts can reach needs a way to tell clients apart: bearer tokens or mutual
// TLS. Without either, start is refused unless the operator said so explicitly.
absl::Status CheckListenIsAuthenticated(absl::string_view listen, bool tokens, bool mutual_tls,
                                        bool insecure_allow_unauthenticated);

}  // namespace cellgate::api
