#pragma once

// Reading and writing Jupyter notebook files (.ipynb, nbformat 4).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cellgate/v1/notebook.pb.h"

namespace cellgate::notebook {

// A notebook file's contents, as the session keeps them.
struct IpynbNotebook {
  // The notebook metadata as JSON object text (compact); empty means `{}`.
  std::string metadata_json;

  // The cells in file order. ParseIpynb fills `cell_id`, `index`, `cell_type`, `source`,
  // `execution_count` (0 for null), `outputs` (code cells only), `metadata` (JSON object text)
  // and `state` (STALE for a code cell imported with outputs or an execution count, else NEW).
  std::vector<v1::Cell> cells;

  // Parallel to `cells`: the cell's other top-level keys (`attachments`, and any unknown key)
  // as JSON object text, empty if it has none. v1::Cell has no place for them; keep them next
  // to the cell so that an export gives them back. ExportIpynb treats a missing entry (the
  // vector shorter than `cells`) as empty.
  std::vector<std::string> cell_extras;

  // The file's `nbformat_minor` (0..5, or higher for a newer 4.x file). Exports are always 4.5.
  int nbformat_minor = 5;
};

// Parses an nbformat 4 notebook (4.0 to 4.5; a newer 4.x minor is read by the 4.5 rules).
//
// `source` may be a string or a list of strings (joined). Outputs are read with
// OutputFromNbformat. Cell ids: a missing id is generated (8 random hex digits, as nbformat
// does, unique in the notebook). An invalid id (not 1-64 characters of [a-zA-Z0-9-_]) or a
// duplicate one is replaced by a generated id in a file older than 4.5, and is an error in a
// 4.5 file. Markdown and raw cells get no outputs and no execution count (such keys in the file
// are dropped). A missing `metadata` is `{}`; a missing `outputs` or `execution_count` of a code
// cell is empty / null.
//
// Errors are INVALID_ARGUMENT, each saying where, e.g.
//   "ipynb is 3000000 bytes, more than the limit of 2097152"
//   "ipynb is not valid JSON: parse error at line 3, column 5: ..."
//   "nbformat: only nbformat 4 notebooks are supported, this one is nbformat 3"
//   "cells[3].outputs[1]: malformed output: `output_type` must be one of stream, ..."
//   "cells[2].id: duplicate cell id 'abc' (also cells[0].id)"
// Never throws.
absl::StatusOr<IpynbNotebook> ParseIpynb(absl::string_view bytes, int64_t max_bytes);

// Writes `notebook` as an nbformat 4.5 file, as Jupyter writes one: keys sorted, one-space
// indent, UTF-8 (not \u-escaped), sources as lists of lines, a trailing newline. Every cell has
// an `id` (an empty, invalid or duplicate `cell_id`, which the session never holds, is replaced
// by a generated one); a code cell's `execution_count` is null when 0. Metadata is written as
// is, unknown keys included (empty or unparsable metadata is written as `{}`). Outputs are
// written with OutputToNbformat. Never fails, never throws.
std::string ExportIpynb(const IpynbNotebook& notebook);

// True if `id` follows the nbformat 4.5 cell id rules: 1-64 characters of [a-zA-Z0-9-_].
bool IsValidCellId(absl::string_view id);

}  // namespace cellgate::notebook
