#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace cellgate::protocol {

// Signs and verifies the four JSON parts of a message (header, parent_header, metadata,
// content), as the Jupyter wire protocol requires.
class MessageSigner {
 public:
  virtual ~MessageSigner() = default;

  // The signature of `parts` as lowercase hex; empty for an unsigned session.
  virtual std::string Sign(std::span<const std::string_view> parts) const = 0;

  // True when `signature` is the signature of `parts`. Checks the length first and compares
  // in constant time; never throws.
  virtual bool Verify(std::span<const std::string_view> parts,
                      std::string_view signature) const = 0;
};

// The signer for a connection's `signature_scheme` and `key`: "hmac-sha256" with a key gives
// an HMAC-SHA256 signer; an empty key gives a signer that signs with "" and accepts anything
// (the protocol's "authentication disabled"). Any other scheme is INVALID_ARGUMENT.
absl::StatusOr<std::unique_ptr<MessageSigner>> MakeMessageSigner(std::string_view scheme,
                                                                 std::string_view key);

}  // namespace cellgate::protocol
