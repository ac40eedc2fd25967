#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace cellgate::protocol {

// The Jupyter messaging protocol version this gateway speaks.
inline constexpr std::string_view kProtocolVersion = "5.3";

// One Jupyter message: routing identities, the four JSON parts and raw buffers.
// See https://jupyter-client.readthedocs.io/en/stable/messaging.html#the-wire-protocol
struct Message {
  std::vector<std::string> identities;
  nlohmann::json header = nlohmann::json::object();
  nlohmann::json parent_header = nlohmann::json::object();
  nlohmann::json metadata = nlohmann::json::object();
  nlohmann::json content = nlohmann::json::object();
  std::vector<std::string> buffers;
  // The content part as JSON text, when the receiver chose to parse it itself
  // (ContentHandling::kKeepText): checked by the signature only. `content` is then an empty
  // object.
  std::optional<std::string> content_text;
  // Bytes of a content part the receiver chose to skip (ContentHandling::kSkip); `content` is
  // then an empty object.
  size_t unparsed_content_bytes = 0;

  // Header fields; empty when absent or not a string.
  std::string msg_type() const;
  std::string msg_id() const;
  // `parent_header.msg_id`: which request this message answers or belongs to.
  std::string parent_msg_id() const;
};

// A new random message id (UUID v4, lowercase hex with dashes).
std::string NewMessageId();

// The current UTC time as ISO 8601 with microseconds, e.g. "2026-01-02T03:04:05.123456Z".
std::string UtcTimestamp();

// Builds a message with a complete header (fresh msg_id, date, version, session, username).
// When `parent` is given its header becomes this message's parent_header.
Message MakeMessage(std::string_view msg_type, nlohmann::json content,
                    std::string_view session_id, const Message* parent = nullptr);

}  // namespace cellgate::protocol
