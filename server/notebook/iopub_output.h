#pragma once

// Conversion between Jupyter's output representations and the API's `Output` types:
// IOPub message content (what a kernel publishes) and nbformat 4 output JSON (what an .ipynb
// file stores).

#include <cstddef>
#include <optional>
#include <string>
#include <variant>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cellgate/v1/output.pb.h"

namespace cellgate::notebook {

// What one IOPub message means for the outputs of the execution it belongs to:
//   - std::monostate: nothing (execute_input, status, comm_*, shutdown_reply, ...);
//   - v1::Output: a new output (stream, display_data, execute_result, error);
//   - v1::DisplayUpdate: an `update_display_data`;
//   - v1::ClearOutput: a `clear_output`.
using IopubEffect = std::variant<std::monostate, v1::Output, v1::DisplayUpdate, v1::ClearOutput>;

// Converts the `content` of an IOPub message of type `msg_type`. Mime bundles become
// `map<string, string>` per the rule in output.proto: strings as is, nbformat's list-of-lines
// joined, JSON mime types (and any non-string value) serialized as compact JSON text. Output
// metadata becomes JSON object text, "" when empty or absent. Message types that carry no
// output give std::monostate. Malformed content of an output message (missing or mistyped
// fields, an unknown stream name, an `update_display_data` without a display id) is
// INVALID_ARGUMENT. Never throws.
absl::StatusOr<IopubEffect> ParseIopubOutput(const std::string& msg_type,
                                             const nlohmann::json& content);

// The same from the content's JSON text, parsed with simdjson (several times faster than
// nlohmann on big outputs; what it refuses goes to nlohmann). Text with SIMDJSON_PADDING bytes
// of spare capacity is parsed where it lies, other text is copied first. Content that is not
// JSON, or nests arrays and objects deeper than `max_depth`, is INVALID_ARGUMENT.
absl::StatusOr<IopubEffect> ParseIopubOutputText(const std::string& msg_type,
                                                 const std::string& content_json,
                                                 size_t max_depth);

// The same from content text the caller gives up (`content_json` is left unspecified), as the
// kernel's messages hand it over: a stream in the shape kernels send, in a buffer with that
// spare capacity, has its text decoded where it lies and the buffer becomes the output's
// text, so a big output is not copied at all. Gives what the overload above gives.
absl::StatusOr<IopubEffect> ParseIopubOutputText(const std::string& msg_type,
                                                 std::string&& content_json, size_t max_depth);

// Whether two effects are the same: the same alternative, with equal messages.
bool SameIopubEffect(const IopubEffect& a, const IopubEffect& b);

// The update a new output implies for earlier outputs: a display_data with a display id
// rewrites every earlier output with that id (as Jupyter front ends and nbclient do), besides
// being appended itself. nullopt for every other output.
std::optional<v1::DisplayUpdate> ImpliedDisplayUpdate(const v1::Output& output);

// True for mime types whose nbformat value is a JSON value: `application/json` and every type
// ending in `+json`.
bool IsJsonMimeType(absl::string_view mime_type);

// nbformat's multiline string: the text split into lines that keep their "\n" (Python's
// str.splitlines(keepends=True), at "\n" only). "a\nb" -> ["a\n", "b"]; "" -> [].
nlohmann::json NbformatMultiline(const std::string& text);

// The nbformat 4 JSON of an output, as an .ipynb file stores it: multi-line text (stream text,
// `text/*`, `image/svg+xml`, `application/javascript`) split into lists of lines, JSON mime
// values and metadata parsed back into JSON (a value that does not parse is kept as a string),
// an execute_result's `execution_count` 0 written as null. A display_data's display_id is
// transient and is not written. An output with nothing set gives an empty stream on stdout.
// OutputFromNbformat (output_reader.h) reads it back.
nlohmann::json OutputToNbformat(const v1::Output& output);

}  // namespace cellgate::notebook
