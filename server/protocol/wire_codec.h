#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "server/protocol/message.h"
#include "server/protocol/message_signer.h"

namespace cellgate::protocol {

// The delimiter frame between routing identities and the signature.
inline constexpr std::string_view kDelimiter = "<IDS|MSG>";

// Spare capacity a receiver leaves after each frame it reads, so that a JSON parser that reads
// past the end of its input (simdjson reads up to 64 bytes further) can parse a part where it
// lies instead of copying it.
inline constexpr size_t kFrameTailroom = 64;

// Bounds on what Decode accepts; frames beyond them are rejected before parsing.
struct WireLimits {
  size_t max_identities = 16;
  size_t max_identity_bytes = 1024;
  size_t max_json_part_bytes = 64u << 20;  // each of the four JSON parts
  size_t max_buffers = 64;
  size_t max_total_bytes = 256u << 20;     // all frames together
  // Deepest array/object nesting in a JSON part. Bounds the recursion of nlohmann's dump() and
  // copy on messages from a kernel (user code holds the key and can sign anything).
  size_t max_json_depth = 256;
};

// Turns messages into ZMQ multipart frames and back:
//   [identities...] <IDS|MSG> signature header parent_header metadata content [buffers...]
class WireCodec {
 public:
  explicit WireCodec(std::unique_ptr<MessageSigner> signer, WireLimits limits = {});

  // The frames of `message`, signed.
  std::vector<std::string> Encode(const Message& message) const;

  // Parses `frames` into a message. Order of checks: frame count and sizes, delimiter,
  // signature (before any JSON is parsed), then each JSON part must be an object.
  // Any malformed input gives INVALID_ARGUMENT (bad signature: UNAUTHENTICATED); never throws.
  absl::StatusOr<Message> Decode(std::vector<std::string> frames) const;

  // What Decode does with a content part, decided from the message's header and parent_header
  // and the content's size. Parsing is most of a big message's cost: a receiver that will only
  // count a flood's output skips it, one with a faster reader of its own keeps the text. The
  // signature is checked over every part whatever the choice.
  enum class ContentHandling {
    kParse,     // into Message::content, checked as the other parts are (the default)
    kKeepText,  // moved, unparsed, into Message::content_text
    kSkip,      // dropped; its size in Message::unparsed_content_bytes
  };
  using ContentFilter =
      absl::FunctionRef<ContentHandling(const Message& envelope, size_t content_bytes)>;
  absl::StatusOr<Message> Decode(std::vector<std::string> frames,
                                 ContentFilter handle_content) const;

 private:
  std::unique_ptr<MessageSigner> signer_;
  WireLimits limits_;
};

}  // namespace cellgate::protocol
