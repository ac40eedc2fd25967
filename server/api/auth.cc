#include "server/api/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "server/common/read_file.h"

namespace cellgate::api {
namespace {

constexpr char kMissing[] = "missing authorization metadata";
constexpr char kNotBearer[] = "authorization metadata is not a Bearer token";
constexpr char kInvalid[] = "invalid token";

// What a gRPC metadata value can carry, minus the space that separates scheme and token.
bool IsTokenChar(char c) { return c > 0x20 && c < 0x7f; }

absl::Status CheckTokenShape(absl::string_view token, absl::string_view where) {
  for (char c : token) {
    if (!IsTokenChar(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": a token must be printable ASCII without spaces (the token is not shown)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TokenAuthenticator> TokenAuthenticator::FromFile(const std::string& path) {
  absl::StatusOr<std::string> content = ReadWholeFile(path);
  if (!content.ok()) {
    return absl::Status(content.status().code(),
                        absl::StrCat("auth token file ", content.status().message()));
  }
  std::vector<std::string> tokens;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(*content, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    if (absl::Status shape = CheckTokenShape(line, absl::StrCat(path, ":", line_number));
        !shape.ok()) {
      return shape;
    }
    tokens.emplace_back(line);
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("auth token file ", path, ": no tokens"));
  }
  return FromTokens(tokens);
}

absl::StatusOr<TokenAuthenticator> TokenAuthenticator::FromTokens(
    const std::vector<std::string>& tokens) {
  if (tokens.empty()) return absl::InvalidArgumentError("no tokens");
  TokenAuthenticator auth;
  auth.digests_.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("token ", i + 1, ": empty"));
    }
    if (absl::Status shape = CheckTokenShape(tokens[i], absl::StrCat("token ", i + 1));
        !shape.ok()) {
      return shape;
    }
    Digest digest;
    if (EVP_Digest(tokens[i].data(), tokens[i].size(), digest.data(), nullptr, EVP_sha256(),
                   nullptr) != 1) {
      return absl::InternalError("SHA-256 failed");
    }
    auth.digests_.push_back(digest);
  }
  return auth;
}

bool TokenAuthenticator::Matches(const char* token, size_t size) const {
  Digest presented;
  if (EVP_Digest(token, size, presented.data(), nullptr, EVP_sha256(), nullptr) != 1) {
    return false;
  }
  // Every digest is compared, whatever the earlier comparisons gave.
  int matched = 0;
  for (const Digest& digest : digests_) {
    matched |= static_cast<int>(CRYPTO_memcmp(presented.data(), digest.data(), digest.size()) == 0);
  }
  OPENSSL_cleanse(presented.data(), presented.size());
  return matched != 0;
}

absl::Status TokenAuthenticator::Check(
    const std::multimap<grpc::string_ref, grpc::string_ref>& client_metadata) const {
  if (!enabled()) return absl::OkStatus();
  const auto [begin, end] = client_metadata.equal_range(grpc::string_ref("authorization"));
  if (begin == end) return absl::UnauthenticatedError(kMissing);
  bool any_bearer = false;
  bool matched = false;
  for (auto it = begin; it != end; ++it) {
    absl::string_view value =
        absl::StripAsciiWhitespace(absl::string_view(it->second.data(), it->second.size()));
    const size_t space = value.find_first_of(" \t");
    if (space == absl::string_view::npos) continue;
    if (!absl::EqualsIgnoreCase(value.substr(0, space), "Bearer")) continue;
    absl::string_view token = absl::StripLeadingAsciiWhitespace(value.substr(space));
    if (token.empty()) continue;
    any_bearer = true;
    // No early exit: each presented value is checked against every token.
    matched |= Matches(token.data(), token.size());
  }
  if (!any_bearer) return absl::UnauthenticatedError(kNotBearer);
  if (!matched) return absl::UnauthenticatedError(kInvalid);
  return absl::OkStatus();
}

}  // namespace cellgate::api
