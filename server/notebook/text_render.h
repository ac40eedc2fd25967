#pragma once

// Plain-text renderings of outputs, for `ExecutionResult.text` and `ExecutionResult.error`.

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"
#include "cellgate/v1/execution.pb.h"
#include "cellgate/v1/output.pb.h"

namespace cellgate::notebook {

// `text` without ANSI/VT100 escape sequences: CSI sequences (colours, cursor moves, erase),
// OSC sequences (terminated by BEL or ESC \), DCS/SOS/PM/APC strings, two- and three-byte
// escapes (e.g. ESC ( B), and a lone ESC. An unterminated OSC/DCS/... string is dropped up to
// the end of its line.
std::string StripAnsi(absl::string_view text);

// Terminal text as a reader would see it in a notebook: `\r\n` is a newline; within a line
// the text after the last `\r` replaces what came before it (the last non-empty piece wins,
// so a progress bar collapses to its last state and `"done\r"` stays "done"); `\b` erases the
// character before it on the line. Other bytes are kept as they are.
std::string ResolveOverwrites(absl::string_view text);

// A plain-text rendering of `outputs` for an LLM prompt, one piece per output, each ending in
// a newline:
//   - stream: the text with ANSI escapes removed and overwrites resolved (ResolveOverwrites);
//   - execute_result / display_data: the `text/plain` value, then one placeholder per binary
//     value: `[image/png 640x480]` (PNG, JPEG and GIF sizes are read from the data) or
//     `[image/webp 12345 bytes]`; a bundle with neither gets a placeholder naming its richest
//     mime type, e.g. `[text/html]`;
//   - error: `ename: evalue`, then the traceback with ANSI escapes removed (the traceback's
//     last line is left out when it repeats `ename: evalue`, as IPython's does).
// When the rendering is longer than `max_bytes` (0 = no limit) the middle is cut out: the head
// and the tail are kept (cut at line ends where one is near, never inside a UTF-8 character)
// around a line `[... N bytes truncated ...]`, the result is at most `max_bytes` long, and
// `*truncated` is set to true (else false; `truncated` may be null).
std::string RenderResultText(const google::protobuf::RepeatedPtrField<v1::Output>& outputs,
                             size_t max_bytes, bool* truncated);

// The placeholder RenderResultText uses for one binary mime value (`data` is base64), e.g.
// `[image/png 640x480]`, or `[application/pdf 12345 bytes]` when the size is not known.
std::string BinaryPlaceholder(absl::string_view mime_type, absl::string_view data);

// The error for `ExecutionResult.error`: the same fields, ANSI escapes removed from `ename`,
// `evalue` and each traceback line (one line per line of `error.traceback`).
v1::ErrorInfo ErrorInfoFromOutput(const v1::ErrorOutput& error);

}  // namespace cellgate::notebook
