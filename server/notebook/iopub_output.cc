#include "server/notebook/iopub_output.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"
#include "server/common/json_nesting.h"
#include "server/notebook/json_unescape.h"
#include "server/notebook/json_view.h"
#include "server/notebook/output_reader.h"

namespace cellgate::notebook {
namespace {

using Json = nlohmann::json;
using MimeBundle = google::protobuf::Map<std::string, std::string>;

}  // namespace

nlohmann::json NbformatMultiline(const std::string& text) {
  Json lines = Json::array();
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    end = end == std::string::npos ? text.size() : end + 1;
    lines.push_back(text.substr(start, end - start));
    start = end;
  }
  return lines;
}

namespace {

// Parses JSON text; nullopt if it does not parse.
std::optional<Json> ParseJson(const std::string& text) {
  Json parsed = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return std::nullopt;
  return parsed;
}

bool IsSplitMimeType(absl::string_view mime_type) {
  return absl::StartsWith(mime_type, "text/") || mime_type == "image/svg+xml" ||
         mime_type == "application/javascript";
}

Json BundleToNbformat(const MimeBundle& bundle) {
  Json data = Json::object();
  for (const auto& [mime_type, value] : bundle) {
    if (IsJsonMimeType(mime_type)) {
      std::optional<Json> parsed = ParseJson(value);
      data[mime_type] = parsed.has_value() ? *std::move(parsed) : Json(value);
    } else if (IsSplitMimeType(mime_type)) {
      data[mime_type] = NbformatMultiline(value);
    } else {
      data[mime_type] = value;
    }
  }
  return data;
}

Json MetadataToNbformat(const std::string& metadata) {
  if (metadata.empty()) return Json::object();
  std::optional<Json> parsed = ParseJson(metadata);
  if (!parsed.has_value() || !parsed->is_object()) return Json::object();
  return *std::move(parsed);
}

}  // namespace

bool IsJsonMimeType(absl::string_view mime_type) {
  return mime_type == "application/json" || absl::EndsWith(mime_type, "+json");
}

namespace {

bool IsIopubOutputType(absl::string_view msg_type) {
  return msg_type == "stream" || msg_type == "display_data" || msg_type == "execute_result" ||
         msg_type == "error" || msg_type == "update_display_data" || msg_type == "clear_output";
}

template <typename View>
absl::StatusOr<IopubEffect> ReadIopubOutput(absl::string_view msg_type, const View& view) {
  namespace reader = output_reader_internal;
  const std::string what = absl::StrCat(msg_type, " message");
  if (!view.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed ", what, ": content is not an object"));
  }
  absl::StatusOr<v1::Output> output;
  if (msg_type == "stream") {
    output = reader::ReadStream(view, what);
  } else if (msg_type == "display_data") {
    output = reader::ReadDisplayData(view, what);
  } else if (msg_type == "execute_result") {
    output = reader::ReadExecuteResult(view, what);
  } else if (msg_type == "error") {
    output = reader::ReadError(view, what);
  } else if (msg_type == "update_display_data") {
    absl::StatusOr<v1::DisplayUpdate> update = reader::ReadDisplayUpdate(view, what);
    if (!update.ok()) return update.status();
    return IopubEffect(*std::move(update));
  } else {  // clear_output
    v1::ClearOutput clear;
    const std::optional<View> wait = view.Field("wait");
    if (wait.has_value() && !wait->is_null()) {
      if (!wait->is_boolean()) return reader::Malformed(what, "wait", "must be a boolean");
      clear.set_wait(wait->boolean());
    }
    return IopubEffect(std::move(clear));
  }
  if (!output.ok()) return output.status();
  return IopubEffect(*std::move(output));
}

}  // namespace

absl::StatusOr<IopubEffect> ParseIopubOutput(const std::string& msg_type,
                                             const nlohmann::json& content) {
  if (!IsIopubOutputType(msg_type)) return IopubEffect(std::monostate());
  return ReadIopubOutput(msg_type, NlohmannJsonView(content));
}

namespace {

// Where the parts of a stream message's content lie, when it has the shape every kernel
// sends: {"name": "stdout"|"stderr", "text": "..."} and nothing else.
struct PlainStream {
  v1::StreamName name;
  const char* text_body;  // between the quotes, still escaped
  size_t text_body_bytes;
};

// The content's parts if it is a plain stream, found with simdjson's On-Demand API (which
// checks the whole document, UTF-8 included, but decodes only what it is asked for: the name
// here, not the text). Any other content, malformed content included, gives nullopt for the
// general reader, so that what is accepted and how errors read stay its own.
std::optional<PlainStream> FindPlainStream(const std::string& content_json) {
  namespace ondemand = simdjson::ondemand;
  if (content_json.capacity() - content_json.size() < simdjson::SIMDJSON_PADDING) {
    return std::nullopt;
  }
  ondemand::parser parser;
  ondemand::document document;
  ondemand::object object;
  if (parser.iterate(content_json.data(), content_json.size(), content_json.capacity())
              .get(document) != simdjson::SUCCESS ||
      document.get_object().get(object) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  std::optional<v1::StreamName> name;
  std::optional<std::string_view> text_body;
  for (simdjson::simdjson_result<ondemand::field> field : object) {
    ondemand::raw_json_string key;
    ondemand::value value;
    if (field.key().get(key) != simdjson::SUCCESS ||
        field.value().get(value) != simdjson::SUCCESS) {
      return std::nullopt;
    }
    if (key == "name" && !name.has_value()) {
      std::string_view word;
      if (value.get_string().get(word) != simdjson::SUCCESS) return std::nullopt;
      if (word == "stdout") {
        name = v1::STREAM_NAME_STDOUT;
      } else if (word == "stderr") {
        name = v1::STREAM_NAME_STDERR;
      } else {
        return std::nullopt;
      }
    } else if (key == "text" && !text_body.has_value()) {
      // The token: the string with its quotes, then any whitespace before the next token.
      const std::string_view token = value.raw_json_token();
      ondemand::raw_json_string raw;
      if (value.get_raw_json_string().get(raw) != simdjson::SUCCESS) return std::nullopt;
      const size_t closing_quote = token.rfind('"');
      if (token.empty() || token.front() != '"' || closing_quote == 0 ||
          closing_quote == std::string_view::npos) {
        return std::nullopt;
      }
      text_body = token.substr(1, closing_quote - 1);
    } else {
      return std::nullopt;
    }
  }
  // Nothing may follow the object: at the end, the document has no current location.
  const char* after_object = nullptr;
  if (!name.has_value() || !text_body.has_value() ||
      document.current_location().get(after_object) != simdjson::OUT_OF_BOUNDS) {
    return std::nullopt;
  }
  return PlainStream{*name, text_body->data(), text_body->size()};
}

v1::Output StreamOutput(v1::StreamName name, std::string text) {
  v1::Output output;
  output.mutable_stream()->set_name(name);
  output.mutable_stream()->set_text(std::move(text));
  return output;
}

// A plain stream read from content the caller gives up: its text decoded where it lies, to
// the front of the buffer, which becomes the output's text. No byte is copied into memory of
// its own, which for a big output is most of the cost. Once decoding started the content is
// no longer whole, so a malformed escape is an error here, worded as the general reader's.
std::optional<absl::StatusOr<v1::Output>> ReadPlainStreamInPlace(std::string& content_json) {
  const std::optional<PlainStream> stream = FindPlainStream(content_json);
  if (!stream.has_value()) return std::nullopt;
  const std::optional<size_t> decoded =
      UnescapeJsonString(stream->text_body, stream->text_body_bytes, content_json.data());
  if (!decoded.has_value()) {
    return absl::StatusOr<v1::Output>(
        absl::InvalidArgumentError("malformed stream message: content is not valid JSON"));
  }
  content_json.resize(*decoded);
  // Escapes can make the text several times shorter than its buffer (`\u0000` is six bytes
  // for one): kept in the event log, such a buffer would hold memory its size does not count.
  if (content_json.capacity() / 2 > content_json.size() + simdjson::SIMDJSON_PADDING) {
    content_json.shrink_to_fit();
  }
  return absl::StatusOr<v1::Output>(StreamOutput(stream->name, std::move(content_json)));
}

// The general reader of an output message's content text: simdjson's DOM, nlohmann's for
// what simdjson refuses.
absl::StatusOr<IopubEffect> ReadIopubOutputText(const std::string& msg_type,
                                                const std::string& content_json, size_t max_depth) {
  {
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    // simdjson reads up to SIMDJSON_PADDING bytes past the end: where the string has them
    // allocated, it parses in place instead of copying the text.
    const bool padded = content_json.capacity() - content_json.size() >= simdjson::SIMDJSON_PADDING;
    if (parser.allocate(content_json.size(), max_depth) == simdjson::SUCCESS &&
        parser.parse(content_json.data(), content_json.size(), /*realloc_if_needed=*/!padded)
                .get(root) == simdjson::SUCCESS) {
      return ReadIopubOutput(msg_type, SimdjsonView(root));
    }
  }
  // What simdjson refuses: too deep, not JSON, or JSON only nlohmann reads (integers beyond 64
  // bits, which it reads as doubles).
  if (FindExcessiveJsonNesting(content_json, max_depth) != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed ", msg_type, " message: content nests deeper than ", max_depth));
  }
  const Json content = Json::parse(content_json.begin(), content_json.end(), /*cb=*/nullptr,
                                   /*allow_exceptions=*/false);
  if (content.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed ", msg_type, " message: content is not valid JSON"));
  }
  return ReadIopubOutput(msg_type, NlohmannJsonView(content));
}

}  // namespace

absl::StatusOr<IopubEffect> ParseIopubOutputText(const std::string& msg_type,
                                                 const std::string& content_json,
                                                 size_t max_depth) {
  if (!IsIopubOutputType(msg_type)) return IopubEffect(std::monostate());
  return ReadIopubOutputText(msg_type, content_json, max_depth);
}

absl::StatusOr<IopubEffect> ParseIopubOutputText(const std::string& msg_type,
                                                 std::string&& content_json, size_t max_depth) {
  if (!IsIopubOutputType(msg_type)) return IopubEffect(std::monostate());
  if (msg_type == "stream") {
    if (std::optional<absl::StatusOr<v1::Output>> stream = ReadPlainStreamInPlace(content_json)) {
      if (!stream->ok()) return stream->status();
      return IopubEffect(**std::move(stream));
    }
  }
  return ReadIopubOutputText(msg_type, content_json, max_depth);
}

bool SameIopubEffect(const IopubEffect& a, const IopubEffect& b) {
  if (a.index() != b.index()) return false;
  using google::protobuf::util::MessageDifferencer;
  if (const auto* output = std::get_if<v1::Output>(&a)) {
    return MessageDifferencer::Equals(*output, std::get<v1::Output>(b));
  }
  if (const auto* update = std::get_if<v1::DisplayUpdate>(&a)) {
    return MessageDifferencer::Equals(*update, std::get<v1::DisplayUpdate>(b));
  }
  if (const auto* clear = std::get_if<v1::ClearOutput>(&a)) {
    return MessageDifferencer::Equals(*clear, std::get<v1::ClearOutput>(b));
  }
  return true;
}

std::optional<v1::DisplayUpdate> ImpliedDisplayUpdate(const v1::Output& output) {
  if (!output.has_display_data() || output.display_data().display_id().empty()) {
    return std::nullopt;
  }
  v1::DisplayUpdate update;
  update.set_display_id(output.display_data().display_id());
  *update.mutable_data() = output.display_data().data();
  update.set_metadata(output.display_data().metadata());
  return update;
}

nlohmann::json OutputToNbformat(const v1::Output& output) {
  Json json = Json::object();
  switch (output.output_case()) {
    case v1::Output::kDisplayData:
      json["output_type"] = "display_data";
      json["data"] = BundleToNbformat(output.display_data().data());
      json["metadata"] = MetadataToNbformat(output.display_data().metadata());
      break;
    case v1::Output::kExecuteResult: {
      const v1::ExecuteResult& result = output.execute_result();
      json["output_type"] = "execute_result";
      json["data"] = BundleToNbformat(result.data());
      json["metadata"] = MetadataToNbformat(result.metadata());
      json["execution_count"] =
          result.execution_count() > 0 ? Json(result.execution_count()) : Json(nullptr);
      break;
    }
    case v1::Output::kError: {
      const v1::ErrorOutput& error = output.error();
      json["output_type"] = "error";
      json["ename"] = error.ename();
      json["evalue"] = error.evalue();
      json["traceback"] = Json::array();
      for (const std::string& line : error.traceback()) json["traceback"].push_back(line);
      break;
    }
    case v1::Output::kStream:
    case v1::Output::OUTPUT_NOT_SET:
      json["output_type"] = "stream";
      json["name"] = output.stream().name() == v1::STREAM_NAME_STDERR ? "stderr" : "stdout";
      json["text"] = NbformatMultiline(output.stream().text());
      break;
  }
  return json;
}

}  // namespace cellgate::notebook
