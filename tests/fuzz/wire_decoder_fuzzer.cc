// libFuzzer target for WireCodec::Decode. See docs/fuzzing.md.

#include "tests/fuzz/wire_decoder_fuzzer.h"

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "server/protocol/message_signer.h"
#include "server/protocol/wire_codec.h"

namespace cellgate::protocol::fuzz {
namespace {

std::unique_ptr<MessageSigner> SignerOrDie(std::string_view key) {
  absl::StatusOr<std::unique_ptr<MessageSigner>> signer = MakeMessageSigner("hmac-sha256", key);
  if (!signer.ok()) {
    std::fprintf(stderr, "MakeMessageSigner: %s\n", signer.status().ToString().c_str());
    std::abort();
  }
  return *std::move(signer);
}

// Limits small enough for fuzz inputs (a few KiB) to cross every one of them.
WireLimits TightLimits() {
  WireLimits limits;
  limits.max_identities = 3;
  limits.max_identity_bytes = 16;
  limits.max_json_part_bytes = 512;
  limits.max_buffers = 3;
  limits.max_total_bytes = 2048;
  limits.max_json_depth = 8;
  return limits;
}

struct Decoders {
  std::unique_ptr<MessageSigner> signer = SignerOrDie(kFuzzKey);
  WireCodec keyed{SignerOrDie(kFuzzKey)};
  WireCodec unsigned_tight{SignerOrDie(""), TightLimits()};
  // Re-decodes what unsigned_tight accepted: re-encoding may legitimately grow a part (1e5 is
  // dumped as 100000.0), so the round trip is checked without the tight limits.
  WireCodec unsigned_default{SignerOrDie("")};
};

const Decoders& GetDecoders() {
  static const Decoders* const decoders = new Decoders();
  return *decoders;
}

// Replaces the signature frame (after the first delimiter) with the HMAC of the four JSON
// parts, so that the keyed decoder gets past verification. False when there is no such frame.
bool Resign(const MessageSigner& signer, std::vector<std::string>& frames) {
  for (size_t i = 0; i < frames.size(); ++i) {
    if (frames[i] != kDelimiter) continue;
    if (frames.size() < i + 6) return false;
    const std::array<std::string_view, 4> parts = {frames[i + 2], frames[i + 3], frames[i + 4],
                                                   frames[i + 5]};
    frames[i + 1] = signer.Sign(parts);
    return true;
  }
  return false;
}

[[noreturn]] void InvariantBroken(const char* what) {
  std::fprintf(stderr, "wire decoder invariant broken: %s\n", what);
  std::abort();
}

// Decodes with `codec`; on success checks that the message survives `codec`'s Encode and
// `round_trip_codec`'s Decode unchanged.
absl::Status DecodeAndCheck(const WireCodec& codec, const WireCodec& round_trip_codec,
                            std::vector<std::string> frames) {
  absl::StatusOr<Message> decoded = codec.Decode(std::move(frames));
  if (!decoded.ok()) {
    if (decoded.status().message().empty()) InvariantBroken("error without a message");
    return decoded.status();
  }
  if (decoded->msg_type() != decoded->header.at("msg_type").get<std::string>()) {
    InvariantBroken("msg_type() differs from the header");
  }
  absl::StatusOr<Message> again = round_trip_codec.Decode(codec.Encode(*decoded));
  if (!again.ok()) InvariantBroken("a decoded message does not decode after Encode");
  if (again->identities != decoded->identities || again->header != decoded->header ||
      again->parent_header != decoded->parent_header || again->metadata != decoded->metadata ||
      again->content != decoded->content || again->buffers != decoded->buffers) {
    InvariantBroken("Encode then Decode changed the message");
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> SplitIntoFrames(std::string_view input) {
  std::vector<std::string> frames;
  while (true) {
    const size_t newline = input.find('\n');
    frames.emplace_back(input.substr(0, newline));
    if (newline == std::string_view::npos) return frames;
    input.remove_prefix(newline + 1);
  }
}

std::string JoinFrames(const std::vector<std::string>& frames) {
  std::string input;
  for (size_t i = 0; i < frames.size(); ++i) {
    if (i > 0) input.push_back('\n');
    input += frames[i];
  }
  return input;
}

WireDecoderOutcome RunWireDecoder(std::string_view input) {
  const Decoders& decoders = GetDecoders();
  std::vector<std::string> frames = SplitIntoFrames(input);
  WireDecoderOutcome outcome;
  outcome.keyed = DecodeAndCheck(decoders.keyed, decoders.keyed, frames);
  outcome.unsigned_tight =
      DecodeAndCheck(decoders.unsigned_tight, decoders.unsigned_default, frames);
  if (Resign(*decoders.signer, frames)) {
    outcome.keyed_resigned = DecodeAndCheck(decoders.keyed, decoders.keyed, std::move(frames));
  } else {
    outcome.keyed_resigned = outcome.keyed;
  }
  return outcome;
}

}  // namespace cellgate::protocol::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cellgate::protocol::fuzz::RunWireDecoder(
      std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
