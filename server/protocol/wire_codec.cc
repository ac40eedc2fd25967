#include "server/protocol/wire_codec.h"

#include <array>
#include <iterator>
#include <limits>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/json_nesting.h"

namespace cellgate::protocol {
namespace {

// After the delimiter: signature, header, parent_header, metadata, content.
constexpr size_t kSignatureAndJsonFrames = 5;
constexpr std::array<const char*, 4> kJsonPartNames = {"header", "parent_header", "metadata",
                                                       "content"};

// Serialises a JSON part. Invalid UTF-8 in strings is replaced rather than thrown about.
std::string DumpJsonPart(const nlohmann::json& json) {
  return json.dump(/*indent=*/-1, /*indent_char=*/' ', /*ensure_ascii=*/false,
                   nlohmann::json::error_handler_t::replace);
}

// True when `text` nests arrays/objects deeper than `max_depth`.
bool NestsDeeperThan(std::string_view text, size_t max_depth) {
  return FindExcessiveJsonNesting(absl::string_view(text.data(), text.size()), max_depth) !=
         absl::string_view::npos;
}

const char* JsonTypeName(const nlohmann::json& json) {
  switch (json.type()) {
    case nlohmann::json::value_t::null:
      return "null";
    case nlohmann::json::value_t::object:
      return "object";
    case nlohmann::json::value_t::array:
      return "array";
    case nlohmann::json::value_t::string:
      return "string";
    case nlohmann::json::value_t::boolean:
      return "boolean";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
    case nlohmann::json::value_t::number_float:
      return "number";
    default:
      return "non-JSON value";
  }
}

// Parses one of the four JSON parts, which must be an object no deeper than `max_depth`.
absl::StatusOr<nlohmann::json> ParseJsonPart(const char* name, std::string_view text,
                                             size_t max_depth) {
  if (NestsDeeperThan(text, max_depth)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " nests deeper than the limit of ", max_depth));
  }
  nlohmann::json json = nlohmann::json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(name, " is not valid JSON"));
  }
  if (!json.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be a JSON object, got ", JsonTypeName(json)));
  }
  return json;
}

absl::Status CheckHeaderField(const nlohmann::json& header, const char* field) {
  const auto it = header.find(field);
  if (it == header.end()) {
    return absl::InvalidArgumentError(absl::StrCat("header has no ", field));
  }
  if (!it->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("header ", field, " must be a string, got ", JsonTypeName(*it)));
  }
  return absl::OkStatus();
}

// a + b, or SIZE_MAX when that overflows (limits may be set to SIZE_MAX for "unlimited").
size_t SaturatingAdd(size_t a, size_t b) {
  return a > std::numeric_limits<size_t>::max() - b ? std::numeric_limits<size_t>::max() : a + b;
}

// The index of the first delimiter frame, which must come after at most `max_identities`
// identities of at most `max_identity_bytes` each.
absl::StatusOr<size_t> FindDelimiter(const std::vector<std::string>& frames,
                                     const WireLimits& limits) {
  for (size_t index = 0; index < frames.size(); ++index) {
    if (frames[index] == kDelimiter) return index;
    if (index == limits.max_identities) break;
    if (frames[index].size() > limits.max_identity_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("identity ", index, " is ", frames[index].size(),
                       " bytes, over the limit of ", limits.max_identity_bytes));
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("no ", std::string(kDelimiter), " delimiter within the first ",
                   SaturatingAdd(limits.max_identities, 1), " frames"));
}

}  // namespace

WireCodec::WireCodec(std::unique_ptr<MessageSigner> signer, WireLimits limits)
    : signer_(std::move(signer)), limits_(limits) {}

std::vector<std::string> WireCodec::Encode(const Message& message) const {
  std::vector<std::string> frames;
  frames.reserve(message.identities.size() + 1 + kSignatureAndJsonFrames + message.buffers.size());
  frames.insert(frames.end(), message.identities.begin(), message.identities.end());
  frames.emplace_back(kDelimiter);
  std::array<std::string, 4> json_parts = {
      DumpJsonPart(message.header), DumpJsonPart(message.parent_header),
      DumpJsonPart(message.metadata), DumpJsonPart(message.content)};
  const std::array<std::string_view, 4> signed_parts = {json_parts[0], json_parts[1], json_parts[2],
                                                        json_parts[3]};
  frames.push_back(signer_ != nullptr ? signer_->Sign(signed_parts) : std::string());
  frames.insert(frames.end(), std::make_move_iterator(json_parts.begin()),
                std::make_move_iterator(json_parts.end()));
  frames.insert(frames.end(), message.buffers.begin(), message.buffers.end());
  return frames;
}

absl::StatusOr<Message> WireCodec::Decode(std::vector<std::string> frames) const {
  return Decode(std::move(frames),
                [](const Message&, size_t) { return ContentHandling::kParse; });
}

absl::StatusOr<Message> WireCodec::Decode(std::vector<std::string> frames,
                                          ContentFilter handle_content) const {
  if (signer_ == nullptr) {
    return absl::FailedPreconditionError("WireCodec has no signer: every message is refused");
  }
  // 1. Sizes, before looking at any content.
  const size_t max_frames = SaturatingAdd(
      SaturatingAdd(limits_.max_identities, 1 + kSignatureAndJsonFrames), limits_.max_buffers);
  if (frames.size() > max_frames) {
    return absl::InvalidArgumentError(
        absl::StrCat("message has ", frames.size(), " frames, over the limit of ", max_frames));
  }
  size_t total_bytes = 0;
  for (const std::string& frame : frames) total_bytes += frame.size();
  if (total_bytes > limits_.max_total_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "message is ", total_bytes, " bytes, over the limit of ", limits_.max_total_bytes));
  }

  // 2. The delimiter; the frames before it are routing identities.
  absl::StatusOr<size_t> found_delimiter = FindDelimiter(frames, limits_);
  if (!found_delimiter.ok()) return found_delimiter.status();
  const size_t delimiter_index = *found_delimiter;
  const size_t signature_index = delimiter_index + 1;
  const size_t first_json_index = signature_index + 1;
  const size_t first_buffer_index = first_json_index + kJsonPartNames.size();
  if (frames.size() < first_buffer_index) {
    return absl::InvalidArgumentError(absl::StrCat("message has ", frames.size() - signature_index,
                                                   " frames after ", std::string(kDelimiter),
                                                   ", needs at least ", kSignatureAndJsonFrames));
  }
  for (size_t part = 0; part < kJsonPartNames.size(); ++part) {
    const size_t part_bytes = frames[first_json_index + part].size();
    if (part_bytes > limits_.max_json_part_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(kJsonPartNames[part], " is ", part_bytes,
                                                     " bytes, over the limit of ",
                                                     limits_.max_json_part_bytes));
    }
  }
  const size_t buffer_count = frames.size() - first_buffer_index;
  if (buffer_count > limits_.max_buffers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "message has ", buffer_count, " buffers, over the limit of ", limits_.max_buffers));
  }

  // 3. The signature over the four raw JSON parts, before any JSON is parsed.
  const std::array<std::string_view, 4> signed_parts = {
      frames[first_json_index], frames[first_json_index + 1], frames[first_json_index + 2],
      frames[first_json_index + 3]};
  if (!signer_->Verify(signed_parts, frames[signature_index])) {
    return absl::UnauthenticatedError("message signature does not match");
  }

  // 4. The JSON parts, each an object; the content last, if the filter wants it.
  Message message;
  std::array<nlohmann::json*, 3> destinations = {&message.header, &message.parent_header,
                                                 &message.metadata};
  for (size_t part = 0; part < destinations.size(); ++part) {
    absl::StatusOr<nlohmann::json> parsed = ParseJsonPart(
        kJsonPartNames[part], frames[first_json_index + part], limits_.max_json_depth);
    if (!parsed.ok()) return parsed.status();
    *destinations[part] = *std::move(parsed);
  }
  if (absl::Status status = CheckHeaderField(message.header, "msg_type"); !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckHeaderField(message.header, "msg_id"); !status.ok()) {
    return status;
  }
  const size_t content_index = first_json_index + destinations.size();
  switch (handle_content(message, frames[content_index].size())) {
    case ContentHandling::kParse: {
      absl::StatusOr<nlohmann::json> parsed = ParseJsonPart(
          kJsonPartNames[destinations.size()], frames[content_index], limits_.max_json_depth);
      if (!parsed.ok()) return parsed.status();
      message.content = *std::move(parsed);
      break;
    }
    case ContentHandling::kKeepText:
      message.content_text = std::move(frames[content_index]);
      break;
    case ContentHandling::kSkip:
      message.unparsed_content_bytes = frames[content_index].size();
      break;
  }

  message.identities.assign(std::make_move_iterator(frames.begin()),
                            std::make_move_iterator(frames.begin() + delimiter_index));
  message.buffers.assign(std::make_move_iterator(frames.begin() + first_buffer_index),
                         std::make_move_iterator(frames.end()));
  return message;
}

}  // namespace cellgate::protocol
