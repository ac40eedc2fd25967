#pragma once

#include <array>
#include <map>
#include <string>
#include <vector>

#include <grpcpp/support/string_ref.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cellgate::api {

// Bearer-token authentication of gRPC calls (`authorization: Bearer <token>` metadata).
//
// Tokens are kept only as SHA-256 digests; a presented token is hashed and compared against
// every configured digest with CRYPTO_memcmp, without stopping at a match, so the time taken
// says nothing about which token (or which prefix, or which length) was close.
// A default-constructed authenticator is disabled: every call passes.
class TokenAuthenticator {
 public:
  TokenAuthenticator() = default;

  // Reads tokens from a file: one a line, surrounding whitespace trimmed, blank lines and
  // lines starting with `#` skipped. A token must be printable ASCII without spaces (what a
  // gRPC metadata value can carry), else INVALID_ARGUMENT naming the line (never the token).
  // No token at all: INVALID_ARGUMENT "no tokens". Unreadable: the error names the path.
  static absl::StatusOr<TokenAuthenticator> FromFile(const std::string& path);

  // Builds from tokens directly (same rules as FromFile, errors name the token's position).
  static absl::StatusOr<TokenAuthenticator> FromTokens(const std::vector<std::string>& tokens);

  bool enabled() const { return !digests_.empty(); }
  size_t token_count() const { return digests_.size(); }

  // OK when disabled, or when the call carries `authorization: Bearer <token>` (scheme
  // case-insensitive) with a configured token. UNAUTHENTICATED otherwise: "missing
  // authorization metadata", "authorization metadata is not a Bearer token", or "invalid
  // token". Messages never contain what the client sent.
  absl::Status Check(
      const std::multimap<grpc::string_ref, grpc::string_ref>& client_metadata) const;

 private:
  using Digest = std::array<unsigned char, 32>;

  bool Matches(const char* token, size_t size) const;

  std::vector<Digest> digests_;
};

}  // namespace cellgate::api
