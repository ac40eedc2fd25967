#include "server/protocol/message_signer.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <array>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace cellgate::protocol {
namespace {

constexpr char kHmacSha256[] = "hmac-sha256";
constexpr size_t kSha256Bytes = 32;
constexpr size_t kSha256HexChars = 2 * kSha256Bytes;

// Signs nothing and accepts everything: the protocol's "authentication disabled" (empty key).
class UnsignedMessageSigner final : public MessageSigner {
 public:
  std::string Sign(std::span<const std::string_view> /*parts*/) const override { return ""; }
  bool Verify(std::span<const std::string_view> /*parts*/,
              std::string_view /*signature*/) const override {
    return true;
  }
};

// HMAC-SHA256 over the concatenated parts, as jupyter_client's Session.sign computes it.
// The key and digest are set up once, in a template context; each call works on a copy of it
// (EVP_MAC_CTX_dup), so no call fetches the digest or hashes the key again. Thread-safe: the
// template is never changed after construction.
class HmacSha256MessageSigner final : public MessageSigner {
 public:
  // Takes ownership of `keyed`, an initialised HMAC-SHA256 context.
  explicit HmacSha256MessageSigner(EVP_MAC_CTX* keyed) : keyed_(keyed) {}
  ~HmacSha256MessageSigner() override { EVP_MAC_CTX_free(keyed_); }
  HmacSha256MessageSigner(const HmacSha256MessageSigner&) = delete;
  HmacSha256MessageSigner& operator=(const HmacSha256MessageSigner&) = delete;

  std::string Sign(std::span<const std::string_view> parts) const override {
    std::array<unsigned char, kSha256Bytes> digest;
    if (!ComputeDigest(parts, digest)) return "";
    return ToHex(digest);
  }

  bool Verify(std::span<const std::string_view> parts, std::string_view signature) const override {
    if (signature.size() != kSha256HexChars) return false;
    std::array<unsigned char, kSha256Bytes> digest;
    if (!ComputeDigest(parts, digest)) return false;
    const std::string expected = ToHex(digest);
    return CRYPTO_memcmp(expected.data(), signature.data(), kSha256HexChars) == 0;
  }

 private:
  bool ComputeDigest(std::span<const std::string_view> parts,
                     std::array<unsigned char, kSha256Bytes>& digest) const {
    EVP_MAC_CTX* context = EVP_MAC_CTX_dup(keyed_);
    if (context == nullptr) return false;
    bool ok = true;
    for (size_t i = 0; ok && i < parts.size(); ++i) {
      ok = EVP_MAC_update(context, reinterpret_cast<const unsigned char*>(parts[i].data()),
                          parts[i].size()) == 1;
    }
    size_t written = 0;
    ok = ok && EVP_MAC_final(context, digest.data(), &written, digest.size()) == 1 &&
         written == digest.size();
    EVP_MAC_CTX_free(context);
    return ok;
  }

  static std::string ToHex(const std::array<unsigned char, kSha256Bytes>& digest) {
    static constexpr char kHexDigits[] = "0123456789abcdef";
    std::string hex(kSha256HexChars, '\0');
    for (size_t i = 0; i < digest.size(); ++i) {
      hex[2 * i] = kHexDigits[digest[i] >> 4];
      hex[2 * i + 1] = kHexDigits[digest[i] & 0x0f];
    }
    return hex;
  }

  EVP_MAC_CTX* const keyed_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MessageSigner>> MakeMessageSigner(std::string_view scheme,
                                                                 std::string_view key) {
  if (scheme != kHmacSha256) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported signature_scheme \"",
                                                   std::string(scheme), "\" (only \"", kHmacSha256,
                                                   "\" is)"));
  }
  if (key.empty()) return std::make_unique<UnsignedMessageSigner>();
  EVP_MAC* mac = EVP_MAC_fetch(/*libctx=*/nullptr, "HMAC", /*properties=*/nullptr);
  if (mac == nullptr) return absl::InternalError("OpenSSL has no HMAC implementation");
  EVP_MAC_CTX* keyed = EVP_MAC_CTX_new(mac);
  EVP_MAC_free(mac);  // the context keeps its own reference
  if (keyed == nullptr) return absl::InternalError("OpenSSL could not make an HMAC context");
  char digest_name[] = "SHA256";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
      OSSL_PARAM_construct_end(),
  };
  if (EVP_MAC_init(keyed, reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                   params) != 1) {
    EVP_MAC_CTX_free(keyed);
    return absl::InternalError("OpenSSL could not set up HMAC-SHA256 with the key");
  }
  return std::make_unique<HmacSha256MessageSigner>(keyed);
}

}  // namespace cellgate::protocol
