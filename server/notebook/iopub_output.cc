#include "server/notebook/iopub_output.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace cellgate::notebook {
namespace {

using Json = nlohmann::json;
using MimeBundle = google::protobuf::Map<std::string, std::string>;

std::string DumpJson(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// `object[key]`, or nullptr when `object` is not an object or has no such key.
const Json* Field(const Json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

absl::Status Malformed(absl::string_view what, absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("malformed ", what, ": `", field, "` ", why));
}

// nbformat's multiline string: a string, or a list of strings to concatenate.
absl::StatusOr<std::string> MultilineString(const Json* value, absl::string_view what,
                                            absl::string_view field) {
  if (value == nullptr) return Malformed(what, field, "is missing");
  if (value->is_string()) return value->get_ref<const std::string&>();
  if (value->is_array()) {
    std::string joined;
    for (const Json& line : *value) {
      if (!line.is_string()) return Malformed(what, field, "must be a string or list of strings");
      joined += line.get_ref<const std::string&>();
    }
    return joined;
  }
  return Malformed(what, field, "must be a string or list of strings");
}

absl::StatusOr<std::string> RequiredString(const Json& object, const char* key,
                                           absl::string_view what) {
  const Json* value = Field(object, key);
  if (value == nullptr) return Malformed(what, key, "is missing");
  if (!value->is_string()) return Malformed(what, key, "must be a string");
  return value->get_ref<const std::string&>();
}

// Output metadata as JSON object text; "" when absent, null or empty.
absl::StatusOr<std::string> MetadataText(const Json& object, absl::string_view what) {
  const Json* metadata = Field(object, "metadata");
  if (metadata == nullptr || metadata->is_null()) return std::string();
  if (!metadata->is_object()) return Malformed(what, "metadata", "must be an object");
  if (metadata->empty()) return std::string();
  return DumpJson(*metadata);
}

absl::Status ReadMimeBundle(const Json& object, absl::string_view what, MimeBundle* bundle) {
  const Json* data = Field(object, "data");
  if (data == nullptr) return Malformed(what, "data", "is missing");
  if (!data->is_object()) return Malformed(what, "data", "must be an object");
  for (const auto& [mime_type, value] : data->items()) {
    std::string text;
    if (IsJsonMimeType(mime_type)) {
      text = DumpJson(value);
    } else if (value.is_string()) {
      text = value.get_ref<const std::string&>();
    } else if (value.is_array() && std::all_of(value.begin(), value.end(),
                                               [](const Json& line) { return line.is_string(); })) {
      for (const Json& line : value) text += line.get_ref<const std::string&>();
    } else {
      text = DumpJson(value);
    }
    (*bundle)[mime_type] = std::move(text);
  }
  return absl::OkStatus();
}

// `transient.display_id` (IOPub only); "" when absent.
absl::StatusOr<std::string> DisplayId(const Json& object, absl::string_view what) {
  const Json* transient = Field(object, "transient");
  if (transient == nullptr || transient->is_null()) return std::string();
  if (!transient->is_object()) return Malformed(what, "transient", "must be an object");
  const Json* display_id = Field(*transient, "display_id");
  if (display_id == nullptr || display_id->is_null()) return std::string();
  if (!display_id->is_string()) return Malformed(what, "transient.display_id", "must be a string");
  return display_id->get_ref<const std::string&>();
}

absl::StatusOr<int32_t> ExecutionCount(const Json& object, absl::string_view what) {
  const Json* count = Field(object, "execution_count");
  if (count == nullptr || count->is_null()) return 0;
  if (!count->is_number_integer()) return Malformed(what, "execution_count", "must be an integer");
  if (count->is_number_unsigned()) {
    const uint64_t value = count->get<uint64_t>();
    if (value > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())) {
      return Malformed(what, "execution_count", "is out of range");
    }
    return static_cast<int32_t>(value);
  }
  const int64_t value = count->get<int64_t>();
  if (value < 0 || value > std::numeric_limits<int32_t>::max()) {
    return Malformed(what, "execution_count", "is out of range");
  }
  return static_cast<int32_t>(value);
}

absl::StatusOr<v1::Output> ReadStream(const Json& object, absl::string_view what) {
  absl::StatusOr<std::string> name = RequiredString(object, "name", what);
  if (!name.ok()) return name.status();
  v1::Output output;
  v1::StreamOutput* stream = output.mutable_stream();
  if (*name == "stdout") {
    stream->set_name(v1::STREAM_NAME_STDOUT);
  } else if (*name == "stderr") {
    stream->set_name(v1::STREAM_NAME_STDERR);
  } else {
    return Malformed(what, "name", "must be \"stdout\" or \"stderr\"");
  }
  absl::StatusOr<std::string> text = MultilineString(Field(object, "text"), what, "text");
  if (!text.ok()) return text.status();
  stream->set_text(*std::move(text));
  return output;
}

absl::StatusOr<v1::Output> ReadDisplayData(const Json& object, absl::string_view what) {
  v1::Output output;
  v1::DisplayData* display = output.mutable_display_data();
  if (absl::Status status = ReadMimeBundle(object, what, display->mutable_data()); !status.ok()) {
    return status;
  }
  absl::StatusOr<std::string> metadata = MetadataText(object, what);
  if (!metadata.ok()) return metadata.status();
  display->set_metadata(*std::move(metadata));
  absl::StatusOr<std::string> display_id = DisplayId(object, what);
  if (!display_id.ok()) return display_id.status();
  display->set_display_id(*std::move(display_id));
  return output;
}

absl::StatusOr<v1::Output> ReadExecuteResult(const Json& object, absl::string_view what) {
  v1::Output output;
  v1::ExecuteResult* result = output.mutable_execute_result();
  if (absl::Status status = ReadMimeBundle(object, what, result->mutable_data()); !status.ok()) {
    return status;
  }
  absl::StatusOr<std::string> metadata = MetadataText(object, what);
  if (!metadata.ok()) return metadata.status();
  result->set_metadata(*std::move(metadata));
  absl::StatusOr<int32_t> count = ExecutionCount(object, what);
  if (!count.ok()) return count.status();
  result->set_execution_count(*count);
  return output;
}

absl::StatusOr<v1::Output> ReadError(const Json& object, absl::string_view what) {
  absl::StatusOr<std::string> ename = RequiredString(object, "ename", what);
  if (!ename.ok()) return ename.status();
  absl::StatusOr<std::string> evalue = RequiredString(object, "evalue", what);
  if (!evalue.ok()) return evalue.status();
  v1::Output output;
  v1::ErrorOutput* error = output.mutable_error();
  error->set_ename(*std::move(ename));
  error->set_evalue(*std::move(evalue));
  const Json* traceback = Field(object, "traceback");
  if (traceback == nullptr || traceback->is_null()) return output;
  if (!traceback->is_array()) return Malformed(what, "traceback", "must be a list of strings");
  for (const Json& line : *traceback) {
    if (!line.is_string()) return Malformed(what, "traceback", "must be a list of strings");
    error->add_traceback(line.get_ref<const std::string&>());
  }
  return output;
}

absl::StatusOr<v1::DisplayUpdate> ReadDisplayUpdate(const Json& object, absl::string_view what) {
  absl::StatusOr<v1::Output> display = ReadDisplayData(object, what);
  if (!display.ok()) return display.status();
  v1::DisplayData* data = display->mutable_display_data();
  if (data->display_id().empty()) return Malformed(what, "transient.display_id", "is missing");
  v1::DisplayUpdate update;
  update.set_display_id(std::move(*data->mutable_display_id()));
  update.mutable_data()->swap(*data->mutable_data());
  update.set_metadata(std::move(*data->mutable_metadata()));
  return update;
}

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

absl::StatusOr<IopubEffect> ParseIopubOutput(const std::string& msg_type,
                                             const nlohmann::json& content) {
  const bool is_output = msg_type == "stream" || msg_type == "display_data" ||
                         msg_type == "execute_result" || msg_type == "error";
  if (!is_output && msg_type != "update_display_data" && msg_type != "clear_output") {
    return IopubEffect(std::monostate());
  }
  const std::string what = absl::StrCat(msg_type, " message");
  if (!content.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed ", what, ": content is not an object"));
  }
  absl::StatusOr<v1::Output> output;
  if (msg_type == "stream") {
    output = ReadStream(content, what);
  } else if (msg_type == "display_data") {
    output = ReadDisplayData(content, what);
  } else if (msg_type == "execute_result") {
    output = ReadExecuteResult(content, what);
  } else if (msg_type == "error") {
    output = ReadError(content, what);
  } else if (msg_type == "update_display_data") {
    absl::StatusOr<v1::DisplayUpdate> update = ReadDisplayUpdate(content, what);
    if (!update.ok()) return update.status();
    return IopubEffect(*std::move(update));
  } else {  // clear_output
    v1::ClearOutput clear;
    const Json* wait = Field(content, "wait");
    if (wait != nullptr && !wait->is_null()) {
      if (!wait->is_boolean()) return Malformed(what, "wait", "must be a boolean");
      clear.set_wait(wait->get<bool>());
    }
    return IopubEffect(std::move(clear));
  }
  if (!output.ok()) return output.status();
  return IopubEffect(*std::move(output));
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

absl::StatusOr<v1::Output> OutputFromNbformat(const nlohmann::json& output) {
  if (!output.is_object()) {
    return absl::InvalidArgumentError("malformed output: not an object");
  }
  absl::StatusOr<std::string> type = RequiredString(output, "output_type", "output");
  if (!type.ok()) return type.status();
  const std::string what = absl::StrCat(*type, " output");
  if (*type == "stream") return ReadStream(output, what);
  if (*type == "display_data") return ReadDisplayData(output, what);
  if (*type == "execute_result") return ReadExecuteResult(output, what);
  if (*type == "error") return ReadError(output, what);
  return Malformed("output", "output_type",
                   "must be one of stream, display_data, execute_result, error");
}

}  // namespace cellgate::notebook
