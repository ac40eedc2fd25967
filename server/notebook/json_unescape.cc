#include "server/notebook/json_unescape.h"

#include <cstdint>
#include <cstring>

namespace cellgate::notebook {
namespace {

// The four hex digits at `in` (which has at least four bytes), or nullopt.
std::optional<uint32_t> ReadHex4(const char* in) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) {
    const char c = in[i];
    uint32_t digit;
    if (c >= '0' && c <= '9') {
      digit = static_cast<uint32_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<uint32_t>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      digit = static_cast<uint32_t>(c - 'A' + 10);
    } else {
      return std::nullopt;
    }
    value = value << 4 | digit;
  }
  return value;
}

// Writes `code` (a scalar value, not a surrogate) as UTF-8 at `out`; returns the end.
char* WriteUtf8(uint32_t code, char* out) {
  if (code < 0x80) {
    *out++ = static_cast<char>(code);
  } else if (code < 0x800) {
    *out++ = static_cast<char>(0xC0 | code >> 6);
    *out++ = static_cast<char>(0x80 | (code & 0x3F));
  } else if (code < 0x10000) {
    *out++ = static_cast<char>(0xE0 | code >> 12);
    *out++ = static_cast<char>(0x80 | (code >> 6 & 0x3F));
    *out++ = static_cast<char>(0x80 | (code & 0x3F));
  } else {
    *out++ = static_cast<char>(0xF0 | code >> 18);
    *out++ = static_cast<char>(0x80 | (code >> 12 & 0x3F));
    *out++ = static_cast<char>(0x80 | (code >> 6 & 0x3F));
    *out++ = static_cast<char>(0x80 | (code & 0x3F));
  }
  return out;
}

bool IsHighSurrogate(uint32_t code) { return code >= 0xD800 && code <= 0xDBFF; }
bool IsLowSurrogate(uint32_t code) { return code >= 0xDC00 && code <= 0xDFFF; }

}  // namespace

std::optional<size_t> UnescapeJsonString(const char* body, size_t size, char* out) {
  const char* in = body;
  const char* const end = body + size;
  char* const out_begin = out;
  // Each escape is read whole before its character is written, and is at least as long as
  // the character: `out` stays at or behind `in`.
  while (true) {
    const void* found = std::memchr(in, '\\', static_cast<size_t>(end - in));
    const char* const run_end = found != nullptr ? static_cast<const char*>(found) : end;
    const size_t run = static_cast<size_t>(run_end - in);
    if (out != in) std::memmove(out, in, run);
    out += run;
    in = run_end;
    if (in == end) return static_cast<size_t>(out - out_begin);
    if (end - in < 2) return std::nullopt;
    const char letter = in[1];
    in += 2;
    switch (letter) {
      case '"':
        *out++ = '"';
        break;
      case '\\':
        *out++ = '\\';
        break;
      case '/':
        *out++ = '/';
        break;
      case 'b':
        *out++ = '\b';
        break;
      case 'f':
        *out++ = '\f';
        break;
      case 'n':
        *out++ = '\n';
        break;
      case 'r':
        *out++ = '\r';
        break;
      case 't':
        *out++ = '\t';
        break;
      case 'u': {
        if (end - in < 4) return std::nullopt;
        std::optional<uint32_t> code = ReadHex4(in);
        if (!code.has_value() || IsLowSurrogate(*code)) return std::nullopt;
        in += 4;
        if (IsHighSurrogate(*code)) {
          if (end - in < 6 || in[0] != '\\' || in[1] != 'u') return std::nullopt;
          const std::optional<uint32_t> low = ReadHex4(in + 2);
          if (!low.has_value() || !IsLowSurrogate(*low)) return std::nullopt;
          in += 6;
          code = 0x10000 + ((*code - 0xD800) << 10) + (*low - 0xDC00);
        }
        out = WriteUtf8(*code, out);
        break;
      }
      default:
        return std::nullopt;
    }
  }
}

}  // namespace cellgate::notebook
