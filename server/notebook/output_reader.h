#pragma once

// Reading Jupyter outputs from JSON: the content of an IOPub output message, or an nbformat 4
// output of an .ipynb file. Written once over a JSON view (json_view.h) so that both, whichever
// parser read them (simdjson, or nlohmann for what it refuses), are read by the same rules.
//
// Mime bundles become `map<string, string>` per the rule in output.proto: strings as is,
// nbformat's list-of-lines joined, JSON mime types (and any non-string value) serialized as
// compact JSON text. Output metadata becomes JSON object text, "" when empty or absent.
// Malformed input is INVALID_ARGUMENT saying which field, e.g.
// "malformed stream output: `name` must be \"stdout\" or \"stderr\"". Nothing here throws.

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "cellgate/v1/output.pb.h"
#include "server/notebook/iopub_output.h"

namespace cellgate::notebook {
namespace output_reader_internal {

inline absl::Status Malformed(absl::string_view what, absl::string_view field,
                              absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("malformed ", what, ": `", field, "` ", why));
}

// True if `value` is a list whose elements are all strings.
template <typename View>
bool IsListOfStrings(const View& value) {
  if (!value.is_array()) return false;
  return value
      .ForEachElement([](size_t, const View& line) {
        return line.is_string() ? absl::OkStatus() : absl::CancelledError();
      })
      .ok();
}

// nbformat's multiline string, a string or a list of strings; the strings joined.
template <typename View>
std::string JoinLines(const View& lines) {
  std::string joined;
  lines
      .ForEachElement([&joined](size_t, const View& line) {
        absl::StrAppend(&joined, line.string());
        return absl::OkStatus();
      })
      .IgnoreError();
  return joined;
}

template <typename View>
absl::StatusOr<std::string> MultilineString(const std::optional<View>& value,
                                            absl::string_view what, absl::string_view field) {
  if (!value.has_value()) return Malformed(what, field, "is missing");
  if (value->is_string()) return std::string(value->string());
  if (IsListOfStrings(*value)) return JoinLines(*value);
  return Malformed(what, field, "must be a string or list of strings");
}

template <typename View>
absl::StatusOr<std::string> RequiredString(const View& object, absl::string_view key,
                                           absl::string_view what) {
  const std::optional<View> value = object.Field(key);
  if (!value.has_value()) return Malformed(what, key, "is missing");
  if (!value->is_string()) return Malformed(what, key, "must be a string");
  return std::string(value->string());
}

// Output metadata as JSON object text; "" when absent, null or empty.
template <typename View>
absl::StatusOr<std::string> MetadataText(const View& object, absl::string_view what) {
  const std::optional<View> metadata = object.Field("metadata");
  if (!metadata.has_value() || metadata->is_null()) return std::string();
  if (!metadata->is_object()) return Malformed(what, "metadata", "must be an object");
  if (metadata->size() == 0) return std::string();
  return metadata->Dump();
}

template <typename View>
absl::Status ReadMimeBundle(const View& object, absl::string_view what,
                            google::protobuf::Map<std::string, std::string>* bundle) {
  const std::optional<View> data = object.Field("data");
  if (!data.has_value()) return Malformed(what, "data", "is missing");
  if (!data->is_object()) return Malformed(what, "data", "must be an object");
  return data->ForEachMember([bundle](absl::string_view mime_type, const View& value) {
    std::string text;
    if (IsJsonMimeType(mime_type)) {
      text = value.Dump();
    } else if (value.is_string()) {
      text = std::string(value.string());
    } else if (IsListOfStrings(value)) {
      text = JoinLines(value);
    } else {
      text = value.Dump();
    }
    (*bundle)[std::string(mime_type)] = std::move(text);
    return absl::OkStatus();
  });
}

// `transient.display_id` (IOPub only); "" when absent.
template <typename View>
absl::StatusOr<std::string> DisplayId(const View& object, absl::string_view what) {
  const std::optional<View> transient = object.Field("transient");
  if (!transient.has_value() || transient->is_null()) return std::string();
  if (!transient->is_object()) return Malformed(what, "transient", "must be an object");
  const std::optional<View> display_id = transient->Field("display_id");
  if (!display_id.has_value() || display_id->is_null()) return std::string();
  if (!display_id->is_string()) return Malformed(what, "transient.display_id", "must be a string");
  return std::string(display_id->string());
}

template <typename View>
absl::StatusOr<int32_t> ExecutionCount(const View& object, absl::string_view what) {
  const std::optional<View> count = object.Field("execution_count");
  if (!count.has_value() || count->is_null()) return 0;
  if (!count->is_integer()) return Malformed(what, "execution_count", "must be an integer");
  const std::optional<int64_t> value = count->int64();
  if (!value.has_value() || *value < 0 || *value > std::numeric_limits<int32_t>::max()) {
    return Malformed(what, "execution_count", "is out of range");
  }
  return static_cast<int32_t>(*value);
}

template <typename View>
absl::StatusOr<v1::Output> ReadStream(const View& object, absl::string_view what) {
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
  absl::StatusOr<std::string> text = MultilineString(object.Field("text"), what, "text");
  if (!text.ok()) return text.status();
  stream->set_text(*std::move(text));
  return output;
}

// The mime bundle and metadata of a display_data or execute_result (`message`).
template <typename View, typename Message>
absl::Status ReadDataAndMetadata(const View& object, absl::string_view what, Message* message) {
  if (absl::Status status = ReadMimeBundle(object, what, message->mutable_data()); !status.ok()) {
    return status;
  }
  absl::StatusOr<std::string> metadata = MetadataText(object, what);
  if (!metadata.ok()) return metadata.status();
  message->set_metadata(*std::move(metadata));
  return absl::OkStatus();
}

template <typename View>
absl::StatusOr<v1::Output> ReadDisplayData(const View& object, absl::string_view what) {
  v1::Output output;
  v1::DisplayData* display = output.mutable_display_data();
  if (absl::Status status = ReadDataAndMetadata(object, what, display); !status.ok()) {
    return status;
  }
  absl::StatusOr<std::string> display_id = DisplayId(object, what);
  if (!display_id.ok()) return display_id.status();
  display->set_display_id(*std::move(display_id));
  return output;
}

template <typename View>
absl::StatusOr<v1::Output> ReadExecuteResult(const View& object, absl::string_view what) {
  v1::Output output;
  v1::ExecuteResult* result = output.mutable_execute_result();
  if (absl::Status status = ReadDataAndMetadata(object, what, result); !status.ok()) {
    return status;
  }
  absl::StatusOr<int32_t> count = ExecutionCount(object, what);
  if (!count.ok()) return count.status();
  result->set_execution_count(*count);
  return output;
}

template <typename View>
absl::StatusOr<v1::Output> ReadError(const View& object, absl::string_view what) {
  absl::StatusOr<std::string> ename = RequiredString(object, "ename", what);
  if (!ename.ok()) return ename.status();
  absl::StatusOr<std::string> evalue = RequiredString(object, "evalue", what);
  if (!evalue.ok()) return evalue.status();
  v1::Output output;
  v1::ErrorOutput* error = output.mutable_error();
  error->set_ename(*std::move(ename));
  error->set_evalue(*std::move(evalue));
  const std::optional<View> traceback = object.Field("traceback");
  if (!traceback.has_value() || traceback->is_null()) return output;
  if (!IsListOfStrings(*traceback)) {
    return Malformed(what, "traceback", "must be a list of strings");
  }
  traceback
      ->ForEachElement([error](size_t, const View& line) {
        error->add_traceback(std::string(line.string()));
        return absl::OkStatus();
      })
      .IgnoreError();
  return output;
}

template <typename View>
absl::StatusOr<v1::DisplayUpdate> ReadDisplayUpdate(const View& object, absl::string_view what) {
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

}  // namespace output_reader_internal

// Reads one nbformat 4 output (`output_type` stream, display_data, execute_result or error).
// Accepts strings or lists of strings for multi-line text, a missing or null `metadata`, a null
// `execution_count` (read as 0) and, though nbformat never stores it, `transient.display_id`.
// Anything else malformed is INVALID_ARGUMENT saying which field.
template <typename View>
absl::StatusOr<v1::Output> OutputFromNbformat(const View& output) {
  namespace internal = output_reader_internal;
  if (!output.is_object()) return absl::InvalidArgumentError("malformed output: not an object");
  absl::StatusOr<std::string> type = internal::RequiredString(output, "output_type", "output");
  if (!type.ok()) return type.status();
  const std::string what = absl::StrCat(*type, " output");
  if (*type == "stream") return internal::ReadStream(output, what);
  if (*type == "display_data") return internal::ReadDisplayData(output, what);
  if (*type == "execute_result") return internal::ReadExecuteResult(output, what);
  if (*type == "error") return internal::ReadError(output, what);
  return internal::Malformed("output", "output_type",
                             "must be one of stream, display_data, execute_result, error");
}

}  // namespace cellgate::notebook
