#include "server/protocol/message.h"

#include <openssl/rand.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <random>
#include <utility>

namespace cellgate::protocol {
namespace {

constexpr std::string_view kUsername = "cellgate";

// `json[key]` when `json` is an object holding a string there; "" otherwise. Never throws.
std::string StringField(const nlohmann::json& json, const char* key) {
  if (!json.is_object()) return "";
  const auto it = json.find(key);
  if (it == json.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

// Fills `bytes` from OpenSSL's CSPRNG (thread-safe). Should OpenSSL ever fail, falls back to a
// per-thread generator seeded from std::random_device so that ids stay unique.
void FillRandom(std::array<unsigned char, 16>& bytes) {
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) == 1) return;
  thread_local std::mt19937_64 fallback = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }();
  for (size_t i = 0; i < bytes.size(); i += 8) {
    const uint64_t word = fallback();
    for (size_t j = 0; j < 8; ++j) bytes[i + j] = static_cast<unsigned char>(word >> (8 * j));
  }
}

}  // namespace

std::string Message::msg_type() const { return StringField(header, "msg_type"); }

std::string Message::msg_id() const { return StringField(header, "msg_id"); }

std::string Message::parent_msg_id() const { return StringField(parent_header, "msg_id"); }

std::string NewMessageId() {
  std::array<unsigned char, 16> bytes;
  FillRandom(bytes);
  bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0f) | 0x40);  // version 4
  bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3f) | 0x80);  // RFC 4122 variant

  static constexpr char kHexDigits[] = "0123456789abcdef";
  std::string id;
  id.reserve(36);
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) id.push_back('-');
    id.push_back(kHexDigits[bytes[i] >> 4]);
    id.push_back(kHexDigits[bytes[i] & 0x0f]);
  }
  return id;
}

std::string UtcTimestamp() {
  using std::chrono::duration_cast;
  using std::chrono::microseconds;
  using std::chrono::seconds;
  using std::chrono::system_clock;

  const auto since_epoch = duration_cast<microseconds>(system_clock::now().time_since_epoch());
  const auto whole_seconds = duration_cast<seconds>(since_epoch);
  const auto fraction = since_epoch - duration_cast<microseconds>(whole_seconds);
  const std::time_t time = static_cast<std::time_t>(whole_seconds.count());
  std::tm utc{};
  gmtime_r(&time, &utc);

  char text[64];
  const int length =
      std::snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", utc.tm_year + 1900,
                    utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                    static_cast<long long>(fraction.count()));
  if (length <= 0) return "";
  return std::string(text, static_cast<size_t>(length));
}

Message MakeMessage(std::string_view msg_type, nlohmann::json content, std::string_view session_id,
                    const Message* parent) {
  Message message;
  message.header = {
      {"msg_id", NewMessageId()},           {"session", std::string(session_id)},
      {"username", std::string(kUsername)}, {"date", UtcTimestamp()},
      {"msg_type", std::string(msg_type)},  {"version", std::string(kProtocolVersion)},
  };
  if (parent != nullptr) message.parent_header = parent->header;
  // `MakeMessage("kernel_info_request", {}, ...)` passes a JSON null: content is always an object.
  message.content = content.is_null() ? nlohmann::json::object() : std::move(content);
  return message;
}

}  // namespace cellgate::protocol
