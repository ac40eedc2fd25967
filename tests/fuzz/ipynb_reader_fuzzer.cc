// libFuzzer target for ParseIpynb and ExportIpynb, and for the IOPub output readers over the
// same JSON views (ParseIopubOutputText against ParseIopubOutput). See docs/fuzzing.md.

#include "tests/fuzz/ipynb_reader_fuzzer.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <unordered_set>
#include <utility>

#include <simdjson.h>

#include "absl/status/statusor.h"
#include "server/common/json_nesting.h"
#include "server/notebook/iopub_output.h"
#include "server/notebook/ipynb.h"

namespace cellgate::notebook::fuzz {
namespace {

// The exported file is bigger than what was read (indentation, lists of lines): no cap there.
constexpr int64_t kNoCap = std::numeric_limits<int64_t>::max();

[[noreturn]] void InvariantBroken(const char* what, size_t cell = SIZE_MAX) {
  if (cell == SIZE_MAX) {
    std::fprintf(stderr, "ipynb reader invariant broken: %s\n", what);
  } else {
    std::fprintf(stderr, "ipynb reader invariant broken: %s (cells[%zu])\n", what, cell);
  }
  std::abort();
}

// What ParseIpynb promises about a notebook it returns.
void CheckParsed(const IpynbNotebook& notebook) {
  if (notebook.cell_extras.size() != notebook.cells.size()) {
    InvariantBroken("cell_extras is not parallel to cells");
  }
  if (notebook.metadata_json.empty() || notebook.metadata_json.front() != '{') {
    InvariantBroken("notebook metadata is not JSON object text");
  }
  std::unordered_set<std::string> ids;
  for (size_t i = 0; i < notebook.cells.size(); ++i) {
    const v1::Cell& cell = notebook.cells[i];
    if (cell.index() != static_cast<int32_t>(i)) InvariantBroken("index is not the position", i);
    if (!IsValidCellId(cell.cell_id())) InvariantBroken("invalid cell id", i);
    if (!ids.insert(cell.cell_id()).second) InvariantBroken("duplicate cell id", i);
    if (cell.metadata().empty() || cell.metadata().front() != '{') {
      InvariantBroken("cell metadata is not JSON object text", i);
    }
    if (cell.execution_count() < 0) InvariantBroken("negative execution count", i);
    switch (cell.cell_type()) {
      case v1::CELL_TYPE_CODE: {
        const bool stale = cell.execution_count() != 0 || cell.outputs_size() != 0;
        if (cell.state() != (stale ? v1::CELL_STATE_STALE : v1::CELL_STATE_NEW)) {
          InvariantBroken("code cell state is not STALE iff it has outputs or a count", i);
        }
        break;
      }
      case v1::CELL_TYPE_MARKDOWN:
      case v1::CELL_TYPE_RAW:
        if (cell.outputs_size() != 0 || cell.execution_count() != 0) {
          InvariantBroken("markdown or raw cell with outputs or an execution count", i);
        }
        if (cell.state() != v1::CELL_STATE_NEW) InvariantBroken("markdown or raw cell not NEW", i);
        break;
      default:
        InvariantBroken("cell type is not code, markdown or raw", i);
    }
  }
}

// `again` is `first` after ExportIpynb and ParseIpynb.
void CheckRoundTrip(const IpynbNotebook& first, const IpynbNotebook& again) {
  if (again.nbformat_minor != 5) InvariantBroken("the export is not read as nbformat 4.5");
  if (again.metadata_json != first.metadata_json) InvariantBroken("notebook metadata changed");
  if (again.cells.size() != first.cells.size()) InvariantBroken("the number of cells changed");
  for (size_t i = 0; i < first.cells.size(); ++i) {
    const v1::Cell& a = first.cells[i];
    const v1::Cell& b = again.cells[i];
    if (b.cell_id() != a.cell_id()) InvariantBroken("cell id changed", i);
    if (b.cell_type() != a.cell_type()) InvariantBroken("cell type changed", i);
    if (b.source() != a.source()) InvariantBroken("source changed", i);
    if (b.metadata() != a.metadata()) InvariantBroken("cell metadata changed", i);
    if (b.execution_count() != a.execution_count()) InvariantBroken("execution count changed", i);
    if (b.state() != a.state()) InvariantBroken("cell state changed", i);
    if (b.outputs_size() != a.outputs_size()) InvariantBroken("number of outputs changed", i);
    if (again.cell_extras[i] != first.cell_extras[i]) InvariantBroken("cell extras changed", i);
  }
}

// The input as the content of each IOPub output message, read from its text (simdjson, as
// kernel output is read) and, when nlohmann parses it, from nlohmann's DOM: both must give the
// same output or the same error.
void CheckIopubContent(const absl::string_view input) {
  constexpr size_t kMaxDepth = 64;
  const std::string text(input);
  const nlohmann::json dom = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  const bool dom_comparable =
      !dom.is_discarded() && FindExcessiveJsonNesting(input, kMaxDepth) == absl::string_view::npos;
  for (const char* type : {"stream", "display_data", "execute_result", "error",
                           "update_display_data", "clear_output"}) {
    absl::StatusOr<IopubEffect> from_text = ParseIopubOutputText(type, text, kMaxDepth);
    if (!from_text.ok() && (from_text.status().code() != absl::StatusCode::kInvalidArgument ||
                            from_text.status().message().empty())) {
      InvariantBroken("an IOPub content error is not INVALID_ARGUMENT with a message");
    }
    // As a kernel's message hands it over: padded, and given up (a stream is decoded in place).
    std::string padded;
    padded.reserve(text.size() + simdjson::SIMDJSON_PADDING);
    padded.append(text);
    absl::StatusOr<IopubEffect> from_padded =
        ParseIopubOutputText(type, std::move(padded), kMaxDepth);
    if (from_padded.status() != from_text.status() ||
        (from_padded.ok() && !SameIopubEffect(*from_padded, *from_text))) {
      InvariantBroken("IOPub content read in place and by the general reader disagree");
    }
    if (!dom_comparable) continue;
    absl::StatusOr<IopubEffect> from_dom = ParseIopubOutput(type, dom);
    if (from_text.status() != from_dom.status()) {
      std::fprintf(stderr, "%s: text %s, DOM %s\n", type, from_text.status().ToString().c_str(),
                   from_dom.status().ToString().c_str());
      InvariantBroken("IOPub content read from text and from the DOM disagree");
    }
    if (from_text.ok() && !SameIopubEffect(*from_text, *from_dom)) {
      InvariantBroken("IOPub content read from text and from the DOM give different outputs");
    }
  }
}

}  // namespace

IpynbReaderOutcome RunIpynbReader(std::string_view input_view) {
  // absl::string_view is not std::string_view in every Abseil build.
  const absl::string_view input(input_view.data(), input_view.size());
  IpynbReaderOutcome outcome;
  CheckIopubContent(input);
  absl::StatusOr<IpynbNotebook> notebook = ParseIpynb(input, kFuzzMaxIpynbBytes);
  if (!notebook.ok()) {
    if (notebook.status().message().empty()) InvariantBroken("error without a message");
    if (notebook.status().code() != absl::StatusCode::kInvalidArgument) {
      InvariantBroken("error is not INVALID_ARGUMENT");
    }
    outcome.parse = notebook.status();
    return outcome;
  }
  CheckParsed(*notebook);
  // One byte over the limit is refused before anything is parsed.
  if (!input.empty() && ParseIpynb(input, static_cast<int64_t>(input.size()) - 1).ok()) {
    InvariantBroken("a file over max_bytes was read");
  }

  const std::string exported = ExportIpynb(*notebook);
  absl::StatusOr<IpynbNotebook> again = ParseIpynb(exported, kNoCap);
  if (!again.ok()) {
    std::fprintf(stderr, "%s\n", again.status().ToString().c_str());
    InvariantBroken("an exported notebook does not parse");
  }
  CheckRoundTrip(*notebook, *again);
  // Exporting is canonical: what was read back exports to the same bytes.
  if (ExportIpynb(*again) != exported) InvariantBroken("a re-export differs from the export");

  outcome.cells = notebook->cells.size();
  for (const v1::Cell& cell : notebook->cells) outcome.outputs += cell.outputs_size();
  return outcome;
}

}  // namespace cellgate::notebook::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cellgate::notebook::fuzz::RunIpynbReader(
      std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
