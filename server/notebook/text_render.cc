#include "server/notebook/text_render.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/notebook/iopub_output.h"

namespace cellgate::notebook {
namespace {

constexpr char kEsc = '\x1b';

bool InRange(char c, unsigned char low, unsigned char high) {
  const auto byte = static_cast<unsigned char>(c);
  return byte >= low && byte <= high;
}

bool IsUtf8Continuation(char c) { return InRange(c, 0x80, 0xBF); }

// The largest length <= `max_bytes` that does not cut `text` inside a UTF-8 character.
size_t Utf8Prefix(absl::string_view text, size_t max_bytes) {
  if (max_bytes >= text.size()) return text.size();
  size_t length = max_bytes;
  while (length > 0 && IsUtf8Continuation(text[length])) --length;
  return length;
}

// The smallest offset >= `offset` that starts a UTF-8 character (or is the end).
size_t Utf8Start(absl::string_view text, size_t offset) {
  while (offset < text.size() && IsUtf8Continuation(text[offset])) ++offset;
  return offset;
}

template <typename Text>
void EndLine(Text* text) {
  if (!text->empty() && text->back() != '\n') text->push_back('\n');
}

// Bytes read past a cut point to keep a UTF-8 character whole (Utf8Prefix reads one).
constexpr size_t kUtf8Slack = 4;

// The text a result renders to, of which only what a cut to `max_bytes` can keep is held: its
// first max_bytes (and a few) bytes and its last max_bytes. A big output is scanned, not
// copied whole. With max_bytes 0, all of it.
class RenderedText {
 public:
  explicit RenderedText(size_t max_bytes) : max_bytes_(max_bytes) {}

  void append(absl::string_view piece) {
    size_ += piece.size();
    if (max_bytes_ == 0) {
      head_.append(piece.data(), piece.size());
      return;
    }
    const size_t head_capacity = max_bytes_ + kUtf8Slack;
    const size_t to_head =
        head_.size() < head_capacity ? std::min(piece.size(), head_capacity - head_.size()) : 0;
    head_.append(piece.data(), to_head);
    piece.remove_prefix(to_head);
    if (piece.empty()) return;
    if (piece.size() >= max_bytes_) {
      tail_.assign(piece.data() + piece.size() - max_bytes_, max_bytes_);
    } else {
      tail_.append(piece.data(), piece.size());
      if (tail_.size() > 2 * max_bytes_) tail_.erase(0, tail_.size() - max_bytes_);
    }
  }
  void push_back(char c) { append(absl::string_view(&c, 1)); }
  bool empty() const { return size_ == 0; }
  char back() const { return tail_.empty() ? head_.back() : tail_.back(); }
  size_t size() const { return size_; }

  // The whole text, when it is within max_bytes (or there is no limit).
  std::string TakeWhole() && { return std::move(head_); }
  // The text with its middle cut out to fit max_bytes (which it exceeds).
  std::string TakeCut() && {
    if (head_.size() + tail_.size() == size_) {  // nothing dropped: all of it is here
      head_.append(tail_);
      return CutMiddle(head_, head_, size_, max_bytes_);
    }
    return CutMiddle(head_, tail_, size_, max_bytes_);
  }

 private:
  static std::string CutMiddle(absl::string_view head_bytes, absl::string_view tail_bytes,
                               size_t size, size_t max_bytes);

  const size_t max_bytes_;
  size_t size_ = 0;
  std::string head_;  // the first max_bytes_ + kUtf8Slack bytes (all, without a limit)
  std::string tail_;  // bytes after head_; once any are dropped, at least the last max_bytes_
};

// Base64 text without the whitespace (line breaks) that decoders must ignore.
std::string WithoutWhitespace(absl::string_view base64) {
  std::string compact;
  compact.reserve(base64.size());
  for (const char c : base64) {
    if (!absl::ascii_isspace(static_cast<unsigned char>(c))) compact.push_back(c);
  }
  return compact;
}

// The decoded size of (whitespace-free) base64 text.
size_t DecodedSize(absl::string_view base64) {
  size_t chars = base64.size();
  while (chars > 0 && base64[chars - 1] == '=') --chars;
  return chars * 3 / 4;
}

// Decodes the first `max_chars` characters (a multiple of 4) of base64 text, or all of it.
std::optional<std::string> DecodePrefix(absl::string_view base64, size_t max_chars) {
  std::string decoded;
  if (!absl::Base64Unescape(base64.substr(0, max_chars), &decoded)) return std::nullopt;
  return decoded;
}

uint32_t BigEndian(absl::string_view bytes, size_t offset, size_t width) {
  uint32_t value = 0;
  for (size_t i = 0; i < width; ++i) {
    value = (value << 8) | static_cast<unsigned char>(bytes[offset + i]);
  }
  return value;
}

struct Dimensions {
  uint32_t width;
  uint32_t height;
};

std::optional<Dimensions> PngDimensions(absl::string_view base64) {
  // Signature (8), IHDR length (4) and type (4), width (4), height (4): 24 bytes, 32 chars.
  const std::optional<std::string> head = DecodePrefix(base64, 32);
  if (!head.has_value() || head->size() < 24) return std::nullopt;
  if (head->compare(0, 8, "\x89PNG\r\n\x1a\n") != 0 || head->compare(12, 4, "IHDR") != 0) {
    return std::nullopt;
  }
  return Dimensions{BigEndian(*head, 16, 4), BigEndian(*head, 20, 4)};
}

std::optional<Dimensions> GifDimensions(absl::string_view base64) {
  // Signature and version (6), width (2), height (2), little-endian: 10 bytes, 16 chars.
  const std::optional<std::string> head = DecodePrefix(base64, 16);
  if (!head.has_value() || head->size() < 10 || head->compare(0, 3, "GIF") != 0) {
    return std::nullopt;
  }
  const auto byte = [&](size_t i) { return static_cast<uint32_t>((*head)[i] & 0xff); };
  return Dimensions{byte(6) | byte(7) << 8, byte(8) | byte(9) << 8};
}

// Walks the JPEG segments up to the first start-of-frame marker.
std::optional<Dimensions> JpegDimensions(absl::string_view base64) {
  const std::optional<std::string> bytes = DecodePrefix(base64, base64.size());
  if (!bytes.has_value() || bytes->size() < 4 || BigEndian(*bytes, 0, 2) != 0xFFD8) {
    return std::nullopt;
  }
  size_t pos = 2;
  while (pos + 4 <= bytes->size()) {
    if (static_cast<unsigned char>((*bytes)[pos]) != 0xFF) return std::nullopt;
    const unsigned char marker = static_cast<unsigned char>((*bytes)[pos + 1]);
    if (marker == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD9)) {  // no length field
      pos += 2;
      continue;
    }
    const uint32_t length = BigEndian(*bytes, pos + 2, 2);
    const bool is_frame =
        marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (is_frame) {
      // Length (2), precision (1), height (2), width (2).
      if (pos + 2 + 7 > bytes->size()) return std::nullopt;
      return Dimensions{BigEndian(*bytes, pos + 7, 2), BigEndian(*bytes, pos + 5, 2)};
    }
    if (length < 2) return std::nullopt;
    pos += 2 + length;
  }
  return std::nullopt;
}

bool IsBinaryMimeType(absl::string_view mime_type) {
  if (mime_type == "image/svg+xml") return false;
  return absl::StartsWith(mime_type, "image/") || absl::StartsWith(mime_type, "audio/") ||
         absl::StartsWith(mime_type, "video/") || mime_type == "application/pdf" ||
         mime_type == "application/octet-stream";
}

// The placeholder for a bundle with neither text/plain nor binary data.
std::string RichestPlaceholder(const google::protobuf::Map<std::string, std::string>& data) {
  static constexpr std::array<std::string_view, 6> kPreference = {
      "text/html",     "text/markdown",          "text/latex",
      "image/svg+xml", "application/javascript", "application/json"};
  for (const std::string_view mime_type : kPreference) {
    if (data.contains(std::string(mime_type))) {
      return absl::StrCat("[", absl::string_view(mime_type.data(), mime_type.size()), "]");
    }
  }
  std::string first;
  for (const auto& [mime_type, value] : data) {
    if (first.empty() || mime_type < first) first = mime_type;
  }
  return absl::StrCat("[", first, "]");
}

// ResolveOverwrites for one line (no '\n'), appended to `out`.
void ResolveLine(absl::string_view line, RenderedText* out) {
  if (line.find_first_of("\r\b") == absl::string_view::npos) {
    out->append(line);
    return;
  }
  std::string piece;       // text since the last '\r'
  std::string last_piece;  // the last non-empty piece before it
  for (const char c : line) {
    if (c == '\r') {
      // A '\r' just before the line's '\n' changes nothing: the piece before it is kept.
      if (!piece.empty()) last_piece = std::move(piece);
      piece.clear();
    } else if (c == '\b') {
      while (!piece.empty() && IsUtf8Continuation(piece.back())) piece.pop_back();
      if (!piece.empty()) piece.pop_back();
    } else {
      piece.push_back(c);
    }
  }
  out->append(piece.empty() ? last_piece : piece);
}

// ResolveOverwrites of `text`, appended to `out`.
void AppendResolvingOverwrites(absl::string_view text, RenderedText* out) {
  size_t start = 0;
  while (start < text.size()) {
    const size_t newline = text.find('\n', start);
    const size_t end = newline == absl::string_view::npos ? text.size() : newline;
    ResolveLine(text.substr(start, end - start), out);
    if (newline == absl::string_view::npos) break;
    out->push_back('\n');
    start = newline + 1;
  }
}

// The text of a stream output as rendered (StripAnsi, then ResolveOverwrites), appended to
// `out`: StripAnsi's copy is made only when there is an escape sequence to strip.
void AppendStreamText(absl::string_view text, RenderedText* out) {
  if (text.find(kEsc) == absl::string_view::npos) {
    AppendResolvingOverwrites(text, out);
    return;
  }
  AppendResolvingOverwrites(StripAnsi(text), out);
}

void RenderBundle(const google::protobuf::Map<std::string, std::string>& data, RenderedText* text) {
  if (data.empty()) return;
  std::vector<std::string> binary;
  for (const auto& [mime_type, value] : data) {
    if (IsBinaryMimeType(mime_type)) binary.push_back(mime_type);
  }
  std::sort(binary.begin(), binary.end());  // map order is unspecified
  const auto plain = data.find("text/plain");
  if (plain != data.end()) {
    AppendStreamText(plain->second, text);
    EndLine(text);
  }
  for (const std::string& mime_type : binary) {
    text->append(BinaryPlaceholder(mime_type, data.at(mime_type)));
    text->push_back('\n');
  }
  if (plain == data.end() && binary.empty()) {
    text->append(RichestPlaceholder(data));
    text->push_back('\n');
  }
}

void RenderError(const v1::ErrorOutput& error, RenderedText* text) {
  std::string header = StripAnsi(error.ename());
  if (!error.evalue().empty()) absl::StrAppend(&header, ": ", StripAnsi(error.evalue()));
  text->append(header);
  text->push_back('\n');
  const int lines = error.traceback_size();
  for (int i = 0; i < lines; ++i) {
    std::string line = StripAnsi(error.traceback(i));
    if (i == lines - 1 && absl::StripAsciiWhitespace(line) == header) break;
    text->append(line);
    EndLine(text);
  }
}

std::string TruncationMarker(size_t omitted) {
  return absl::StrCat("[... ", omitted, " bytes truncated ...]\n");
}

// Cuts the middle out of a text of `size` bytes so that it fits in `max_bytes`, keeping head
// and tail. Reads only the text's first bytes, `head_bytes` (at least max_bytes + kUtf8Slack
// of them), and its last, `tail_bytes` (at least max_bytes); the two may be the same whole text.
std::string RenderedText::CutMiddle(absl::string_view head_bytes, absl::string_view tail_bytes,
                                    size_t size, size_t max_bytes) {
  const size_t marker_max = TruncationMarker(size).size() + 1;  // + a newline before it
  if (max_bytes < marker_max + 2) {
    return std::string(head_bytes.substr(0, Utf8Prefix(head_bytes, max_bytes)));
  }
  const size_t keep = max_bytes - marker_max;
  size_t head = Utf8Prefix(head_bytes, keep / 2);
  // Prefer to end the head at a line end in its second half.
  const size_t head_newline = head_bytes.substr(0, head).rfind('\n');
  if (head_newline != absl::string_view::npos && head_newline + 1 >= head / 2) {
    head = head_newline + 1;
  }
  // Offsets from here on are the text's; tail_bytes[i] is the text's byte tail_offset + i.
  const size_t tail_offset = size - tail_bytes.size();
  size_t tail_start = tail_offset + Utf8Start(tail_bytes, size - (keep - keep / 2) - tail_offset);
  // Prefer to start the tail at a line start in its first half.
  const size_t found = tail_bytes.find('\n', tail_start - tail_offset);
  if (found != absl::string_view::npos) {
    const size_t tail_newline = tail_offset + found;
    if (tail_newline < size - 1 && tail_newline + 1 - tail_start <= (size - tail_start) / 2) {
      tail_start = tail_newline + 1;
    }
  }
  std::string result(head_bytes.substr(0, head));
  EndLine(&result);
  result.append(TruncationMarker(tail_start - head));
  result.append(tail_bytes.data() + (tail_start - tail_offset), size - tail_start);
  return result;
}

}  // namespace

std::string StripAnsi(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    // The text up to the next escape, in one piece (most text has none).
    const size_t escape = text.find(kEsc, i);
    if (escape == absl::string_view::npos) {
      out.append(text.data() + i, n - i);
      break;
    }
    out.append(text.data() + i, escape - i);
    i = escape;
    if (i + 1 >= n) break;  // a lone ESC at the end
    const char next = text[i + 1];
    size_t j = i + 2;
    if (next == '[') {  // CSI: parameters, intermediates, one final byte
      while (j < n && InRange(text[j], 0x30, 0x3F)) ++j;
      while (j < n && InRange(text[j], 0x20, 0x2F)) ++j;
      if (j < n && InRange(text[j], 0x40, 0x7E)) ++j;
    } else if (next == ']' || next == 'P' || next == 'X' || next == '^' || next == '_') {
      // OSC, DCS, SOS, PM, APC: a string up to BEL or ST (ESC \), or, unterminated, up to the
      // end of the line.
      while (j < n && text[j] != '\x07' && text[j] != '\n' &&
             !(text[j] == kEsc && j + 1 < n && text[j + 1] == '\\')) {
        ++j;
      }
      if (j < n && text[j] == '\x07') {
        ++j;
      } else if (j < n && text[j] == kEsc) {
        j += 2;
      }
    } else if (InRange(next, 0x20, 0x2F)) {  // nF: intermediates, then one final byte
      j = i + 1;
      while (j < n && InRange(text[j], 0x20, 0x2F)) ++j;
      if (j < n && InRange(text[j], 0x30, 0x7E)) ++j;
    } else if (!InRange(next, 0x30, 0x7E)) {  // a lone ESC: drop only it
      j = i + 1;
    }
    i = j;
  }
  return out;
}

std::string ResolveOverwrites(absl::string_view text) {
  RenderedText out(/*max_bytes=*/0);
  AppendResolvingOverwrites(text, &out);
  return std::move(out).TakeWhole();
}

std::string BinaryPlaceholder(absl::string_view mime_type, absl::string_view data) {
  const std::string base64 = WithoutWhitespace(data);
  std::optional<Dimensions> dimensions;
  if (mime_type == "image/png") {
    dimensions = PngDimensions(base64);
  } else if (mime_type == "image/jpeg") {
    dimensions = JpegDimensions(base64);
  } else if (mime_type == "image/gif") {
    dimensions = GifDimensions(base64);
  }
  if (dimensions.has_value()) {
    return absl::StrCat("[", mime_type, " ", dimensions->width, "x", dimensions->height, "]");
  }
  return absl::StrCat("[", mime_type, " ", DecodedSize(base64), " bytes]");
}

std::string RenderResultText(const google::protobuf::RepeatedPtrField<v1::Output>& outputs,
                             size_t max_bytes, bool* truncated) {
  RenderedText text(max_bytes);
  for (const v1::Output& output : outputs) {
    switch (output.output_case()) {
      case v1::Output::kStream:
        AppendStreamText(output.stream().text(), &text);
        break;
      case v1::Output::kDisplayData:
        RenderBundle(output.display_data().data(), &text);
        break;
      case v1::Output::kExecuteResult:
        RenderBundle(output.execute_result().data(), &text);
        break;
      case v1::Output::kError:
        RenderError(output.error(), &text);
        break;
      case v1::Output::OUTPUT_NOT_SET:
        break;
    }
    EndLine(&text);
  }
  const bool cut = max_bytes > 0 && text.size() > max_bytes;
  if (truncated != nullptr) *truncated = cut;
  return cut ? std::move(text).TakeCut() : std::move(text).TakeWhole();
}

v1::ErrorInfo ErrorInfoFromOutput(const v1::ErrorOutput& error) {
  v1::ErrorInfo info;
  info.set_ename(StripAnsi(error.ename()));
  info.set_evalue(StripAnsi(error.evalue()));
  for (const std::string& line : error.traceback()) info.add_traceback(StripAnsi(line));
  return info;
}

}  // namespace cellgate::notebook
