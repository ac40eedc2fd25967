#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

// The wire decoder fuzz target, callable from ordinary tests (wire_decoder_corpus_test) as well
// as from libFuzzer (LLVMFuzzerTestOneInput, defined in wire_decoder_fuzzer.cc).
namespace cellgate::protocol::fuzz {

// The key the keyed decoders use; tests sign with it to build inputs that decode.
inline constexpr std::string_view kFuzzKey = "cellgate-fuzz-key";

// The fuzz input format: frames separated by '\n' (so a seed file is one frame per line, and a
// frame cannot contain '\n'). Every piece is a frame: "" is one empty frame, "a\n" is two.
std::vector<std::string> SplitIntoFrames(std::string_view input);
std::string JoinFrames(const std::vector<std::string>& frames);

// What each of the decoders said about one input.
struct WireDecoderOutcome {
  absl::Status keyed;           // HMAC-SHA256 signer, default limits, frames as given
  absl::Status keyed_resigned;  // same, with the signature frame replaced by the right HMAC
  absl::Status unsigned_tight;  // no-op signer (empty key), small limits
};

// Decodes `input` with every decoder. Aborts when an invariant breaks: a decoded message must
// re-encode and decode to the same message.
WireDecoderOutcome RunWireDecoder(std::string_view input);

}  // namespace cellgate::protocol::fuzz
