#include "server/notebook/notebook.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include <google/protobuf/wire_format_lite.h>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/common/json_nesting.h"
#include "server/common/proto_wire.h"

namespace cellgate::notebook {
namespace {

constexpr size_t kMaxCellIdLength = 64;

// An id for an error message: quoted, escaped, and shortened when long.
std::string QuoteId(absl::string_view id) {
  constexpr size_t kShown = 70;
  if (id.size() <= kShown) return absl::StrCat("\"", absl::Utf8SafeCHexEscape(id), "\"");
  return absl::StrCat("\"", absl::Utf8SafeCHexEscape(id.substr(0, kShown)), "\"... (", id.size(),
                      " bytes)");
}

bool IsCellIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

bool HasRun(v1::CellState state) {
  return state == v1::CELL_STATE_OK || state == v1::CELL_STATE_ERROR ||
         state == v1::CELL_STATE_CANCELLED;
}

bool IsActive(v1::CellState state) {
  return state == v1::CELL_STATE_QUEUED || state == v1::CELL_STATE_RUNNING;
}

// `type` with UNSPECIFIED resolved to `unspecified`; INVALID_ARGUMENT for unknown values.
absl::StatusOr<v1::CellType> ResolveCellType(v1::CellType type, v1::CellType unspecified,
                                             absl::string_view field) {
  if (!v1::CellType_IsValid(type)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " ", static_cast<int>(type), " is not a valid CellType"));
  }
  return type == v1::CELL_TYPE_UNSPECIFIED ? unspecified : type;
}

// Metadata as stored: JSON object text re-serialized, "" for empty or `{}`.
constexpr size_t kMaxMetadataNesting = 256;

absl::StatusOr<std::string> CanonicalMetadata(const std::string& text, absl::string_view field) {
  if (text.empty() || text == "{}") return std::string();  // most cells: no parse needed
  // dump() below recurses once per level: bound the depth first.
  if (FindExcessiveJsonNesting(text, kMaxMetadataNesting) != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must not nest deeper than ", kMaxMetadataNesting, " levels"));
  }
  const nlohmann::json parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is not valid JSON"));
  }
  if (!parsed.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(field, " must be a JSON object"));
  }
  if (parsed.empty()) return std::string();
  return parsed.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

v1::CellState StateAfter(v1::ExecutionStatus status) {
  switch (status) {
    case v1::EXECUTION_STATUS_OK:
      return v1::CELL_STATE_OK;
    case v1::EXECUTION_STATUS_CANCELLED:
      return v1::CELL_STATE_CANCELLED;
    default:
      return v1::CELL_STATE_ERROR;
  }
}

}  // namespace

Notebook::Notebook(Limits limits) : Notebook(limits, DependencyTracking()) {}

Notebook::Notebook(Limits limits, DependencyTracking tracking)
    : limits_(limits), tracking_(std::move(tracking)) {
  std::random_device device;
  std::seed_seq seed{device(), device(), device(), device()};
  random_.seed(seed);
}

absl::Status Notebook::ValidateCellId(absl::string_view cell_id) {
  if (cell_id.empty()) return absl::InvalidArgumentError("cell_id is empty");
  if (cell_id.size() > kMaxCellIdLength ||
      !std::all_of(cell_id.begin(), cell_id.end(), IsCellIdChar)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cell_id ", QuoteId(cell_id), " is malformed: must be 1-64 characters of [a-zA-Z0-9-_]"));
  }
  return absl::OkStatus();
}

std::optional<size_t> Notebook::IndexOf(absl::string_view cell_id) const {
  const auto found = entries_by_id_.find(cell_id);
  if (found == entries_by_id_.end()) return std::nullopt;
  for (size_t i = 0; i < cells_.size(); ++i) {
    if (cells_[i].get() == found->second) return i;
  }
  return std::nullopt;
}

absl::StatusOr<size_t> Notebook::Find(const std::string& cell_id) const {
  if (absl::Status status = ValidateCellId(cell_id); !status.ok()) return status;
  const std::optional<size_t> index = IndexOf(cell_id);
  if (!index.has_value()) {
    return absl::NotFoundError(absl::StrCat("no cell with cell_id ", QuoteId(cell_id)));
  }
  return *index;
}

absl::StatusOr<Notebook::Entry*> Notebook::FindCodeCell(const std::string& cell_id) {
  absl::StatusOr<size_t> index = Find(cell_id);
  if (!index.ok()) return index.status();
  Entry* entry = cells_[*index].get();
  if (entry->cell.cell_type() != v1::CELL_TYPE_CODE) {
    return absl::FailedPreconditionError(
        absl::StrCat("cell ", QuoteId(cell_id), " is not a code cell"));
  }
  return entry;
}

v1::Cell Notebook::CellAt(size_t index, bool with_graph, bool with_outputs) const {
  const Entry& entry = *cells_[index];
  v1::Cell cell = entry.cell;
  cell.set_index(static_cast<int32_t>(index));
  if (with_outputs) *cell.mutable_outputs() = entry.outputs->outputs();
  cell.set_outputs_truncated(entry.outputs->truncated());
  if (cell.state() != v1::CELL_STATE_STALE) cell.clear_stale_reason();
  if (with_graph && tracking_.enabled && cell.cell_type() == v1::CELL_TYPE_CODE) {
    for (std::string& id : Graph().DependsOn(cell.cell_id())) cell.add_depends_on(std::move(id));
  }
  return cell;
}

void Notebook::MarkStale(v1::Cell& cell, const std::string& reason) {
  if (cell.cell_type() != v1::CELL_TYPE_CODE || !HasRun(cell.state())) return;
  cell.set_state(v1::CELL_STATE_STALE);
  cell.set_stale_reason(reason);
}

void Notebook::MarkDependentsStale(const std::string& cell_id, const std::string& reason) {
  if (!tracking_.enabled) return;
  const std::vector<std::string> dependents =
      Graph().Dependents(std::span<const std::string>(&cell_id, 1));
  if (dependents.empty()) return;
  size_t next = 0;  // both in notebook order
  for (auto& entry : cells_) {
    if (next == dependents.size()) break;
    if (entry->cell.cell_id() != dependents[next]) continue;
    ++next;
    MarkStale(entry->cell, reason);
  }
}

void Notebook::ResetAnalysis(Entry& entry, const std::string& change) const {
  v1::Cell& cell = entry.cell;
  cell.clear_defines();
  cell.clear_uses();
  cell.clear_analysis_detail();
  const bool analyzed = tracking_.enabled && cell.cell_type() == v1::CELL_TYPE_CODE;
  cell.set_analysis(analyzed ? v1::ANALYSIS_STATUS_PENDING : v1::ANALYSIS_STATUS_NOT_APPLICABLE);
  entry.change_awaiting_analysis = analyzed ? change : "";
}

absl::Status Notebook::CheckSource(const std::string& source, absl::string_view field) const {
  if (limits_.max_source_bytes > 0 &&
      static_cast<int64_t>(source.size()) > limits_.max_source_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is ", source.size(),
                                                   " bytes, over the cap of ",
                                                   limits_.max_source_bytes, " bytes"));
  }
  return absl::OkStatus();
}

std::string Notebook::NewCellId(const std::unordered_set<std::string>& taken) {
  static constexpr char kHexDigits[] = "0123456789abcdef";
  while (true) {
    uint64_t bits = random_();
    std::string id(8, '0');
    for (char& c : id) {
      c = kHexDigits[bits & 0xf];
      bits >>= 4;
    }
    if (!taken.contains(id) && !IndexOf(id).has_value()) return id;
  }
}

std::unique_ptr<OutputList> Notebook::NewOutputList() const {
  return std::make_unique<OutputList>(limits_.max_output_bytes);
}

absl::StatusOr<v1::Cell> Notebook::AddCell(const std::string& source, v1::CellType type,
                                           std::optional<int> index, const std::string& cell_id,
                                           const std::string& metadata_json) {
  if (!cell_id.empty()) {
    if (absl::Status status = ValidateCellId(cell_id); !status.ok()) return status;
    if (IndexOf(cell_id).has_value()) {
      return absl::AlreadyExistsError(
          absl::StrCat("a cell with cell_id ", QuoteId(cell_id), " already exists"));
    }
  }
  absl::StatusOr<v1::CellType> resolved_type =
      ResolveCellType(type, v1::CELL_TYPE_CODE, "cell_type");
  if (!resolved_type.ok()) return resolved_type.status();
  if (index.has_value() && (*index < 0 || *index > size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("index ", *index, " is out of range: must be 0..", size()));
  }
  if (absl::Status status = CheckSource(source, "source"); !status.ok()) return status;
  absl::StatusOr<std::string> metadata = CanonicalMetadata(metadata_json, "metadata");
  if (!metadata.ok()) return metadata.status();
  if (limits_.max_cells > 0 && size() >= limits_.max_cells) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the notebook has ", size(), " cells, the cap (max_cells)"));
  }

  auto entry = std::make_unique<Entry>();
  entry->cell.set_cell_id(cell_id.empty() ? NewCellId({}) : cell_id);
  entry->cell.set_cell_type(*resolved_type);
  entry->cell.set_source(source);
  entry->cell.set_state(v1::CELL_STATE_NEW);
  entry->cell.set_metadata(*std::move(metadata));
  entry->outputs = NewOutputList();
  ResetAnalysis(*entry, "added");
  const size_t position = index.has_value() ? static_cast<size_t>(*index) : cells_.size();
  entries_by_id_[entry->cell.cell_id()] = entry.get();
  cells_.insert(cells_.begin() + static_cast<std::ptrdiff_t>(position), std::move(entry));
  InvalidateGraph();
  return CellAt(position);
}

absl::StatusOr<v1::Cell> Notebook::EditCell(const std::string& cell_id,
                                            std::optional<std::string> source, v1::CellType type,
                                            std::optional<std::string> metadata_json) {
  absl::StatusOr<size_t> index = Find(cell_id);
  if (!index.ok()) return index.status();
  Entry& entry = *cells_[*index];
  v1::Cell& cell = entry.cell;

  absl::StatusOr<v1::CellType> new_type = ResolveCellType(type, cell.cell_type(), "cell_type");
  if (!new_type.ok()) return new_type.status();
  if (source.has_value()) {
    if (absl::Status status = CheckSource(*source, "source"); !status.ok()) return status;
  }
  std::optional<std::string> metadata;
  if (metadata_json.has_value()) {
    absl::StatusOr<std::string> canonical = CanonicalMetadata(*metadata_json, "metadata");
    if (!canonical.ok()) return canonical.status();
    metadata = *std::move(canonical);
  }
  const bool type_changes = *new_type != cell.cell_type();
  if (type_changes && IsActive(cell.state())) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot change the cell_type of cell ", QuoteId(cell_id), " while it is ",
                     cell.state() == v1::CELL_STATE_QUEUED ? "queued" : "running"));
  }

  const bool source_changes = source.has_value() && *source != cell.source();
  if ((source_changes && cell.cell_type() == v1::CELL_TYPE_CODE) ||
      (type_changes && (cell.cell_type() == v1::CELL_TYPE_CODE ||
                        *new_type == v1::CELL_TYPE_CODE))) {
    // What depended on the cell as it was; what depends on it as it is now follows with its
    // analysis (SetAnalysis).
    const std::string reason = absl::StrCat("upstream cell ", cell_id, " edited");
    MarkDependentsStale(cell_id, reason);
  }
  if (source_changes) {
    cell.set_source(*std::move(source));
    if (cell.cell_type() == v1::CELL_TYPE_CODE) {
      MarkStale(cell, "source edited");
      if (cell.state() == v1::CELL_STATE_RUNNING) entry.edited_while_running = true;
    }
  }
  if (type_changes) {
    cell.set_cell_type(*new_type);
    if (*new_type != v1::CELL_TYPE_CODE) {
      entry.outputs->Reset();
      cell.set_execution_count(0);
      cell.clear_last_run();
      cell.set_state(v1::CELL_STATE_NEW);
      entry.edited_while_running = false;
    }
  }
  if (metadata.has_value()) cell.set_metadata(*std::move(metadata));
  if (source_changes || type_changes) {
    ResetAnalysis(entry, "edited");
    InvalidateGraph();
  }
  return CellAt(*index);
}

absl::Status Notebook::DeleteCell(const std::string& cell_id) {
  absl::StatusOr<size_t> index = Find(cell_id);
  if (!index.ok()) return index.status();
  const v1::CellState state = cells_[*index]->cell.state();
  if (IsActive(state)) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot delete cell ", QuoteId(cell_id), " while it is ",
                     state == v1::CELL_STATE_QUEUED ? "queued" : "running"));
  }
  MarkDependentsStale(cell_id, absl::StrCat("upstream cell ", cell_id, " deleted"));
  entries_by_id_.erase(cell_id);
  cells_.erase(cells_.begin() + static_cast<std::ptrdiff_t>(*index));
  InvalidateGraph();
  return absl::OkStatus();
}

absl::StatusOr<v1::Cell> Notebook::MoveCell(const std::string& cell_id, int index) {
  absl::StatusOr<size_t> from = Find(cell_id);
  if (!from.ok()) return from.status();
  if (index < 0 || index >= size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("index ", index, " is out of range: must be 0..", size() - 1));
  }
  const auto to = static_cast<size_t>(index);
  if (to == *from) return CellAt(to);
  const std::string reason = absl::StrCat("upstream cell ", cell_id, " moved");
  const std::vector<std::string> upstream_before =
      tracking_.enabled ? Graph().Upstream(cell_id) : std::vector<std::string>();
  MarkDependentsStale(cell_id, reason);
  std::unique_ptr<Entry> entry = std::move(cells_[*from]);
  cells_.erase(cells_.begin() + static_cast<std::ptrdiff_t>(*from));
  cells_.insert(cells_.begin() + static_cast<std::ptrdiff_t>(to), std::move(entry));
  InvalidateGraph();
  MarkDependentsStale(cell_id, reason);
  if (tracking_.enabled && Graph().Upstream(cell_id) != upstream_before) {
    // Where it stands now, what it reads comes from other cells.
    MarkStale(cells_[to]->cell, "moved: the cells it depends on changed");
  }
  return CellAt(to);
}

absl::StatusOr<v1::Cell> Notebook::GetCell(const std::string& cell_id) const {
  absl::StatusOr<size_t> index = Find(cell_id);
  if (!index.ok()) return index.status();
  return CellAt(*index);
}

absl::StatusOr<const v1::Cell*> Notebook::StoredCell(const std::string& cell_id) const {
  absl::StatusOr<size_t> index = Find(cell_id);
  if (!index.ok()) return index.status();
  return &cells_[*index]->cell;
}

v1::Notebook Notebook::Snapshot(bool with_graph, bool with_outputs) const {
  v1::Notebook notebook;
  notebook.mutable_cells()->Reserve(size());
  for (size_t i = 0; i < cells_.size(); ++i) {
    *notebook.add_cells() = CellAt(i, with_graph, with_outputs);
  }
  notebook.set_metadata(metadata_json_);
  if (with_graph) *notebook.mutable_graph() = GraphProto();
  return notebook;
}

std::string Notebook::SerializedSnapshot(bool with_graph, bool with_outputs) const {
  // Each cell is its entry's cell followed by the fields CellAt sets on its copy (a parser
  // reads fields in any order, the last value of a field winning), by the outputs, written
  // straight from the OutputList as repeated `outputs` fields (appended in order), and by its
  // `depends_on` ids.
  using Lite = google::protobuf::internal::WireFormatLite;
  using common::LengthDelimitedHeaderSize;
  using common::WriteLengthDelimitedHeader;
  // Like protobuf's own serialization, fields at their default (index 0, not truncated) are
  // left out.
  auto index_size = [](size_t i) {
    return i == 0 ? 0
                  : Lite::TagSize(v1::Cell::kIndexFieldNumber, Lite::TYPE_INT32) +
                        Lite::Int32Size(static_cast<int32_t>(i));
  };
  auto truncated_size = [](const OutputList& outputs) {
    return outputs.truncated()
               ? Lite::TagSize(v1::Cell::kOutputsTruncatedFieldNumber, Lite::TYPE_BOOL) +
                     Lite::kBoolSize
               : 0;
  };
  auto clears_stale_reason = [](const v1::Cell& cell) {
    return cell.state() != v1::CELL_STATE_STALE && !cell.stale_reason().empty();
  };
  const size_t empty_stale_reason_size =
      LengthDelimitedHeaderSize(v1::Cell::kStaleReasonFieldNumber, 0);
  const bool with_depends_on = with_graph && tracking_.enabled;
  std::vector<size_t> cell_sizes(cells_.size());
  std::vector<std::vector<std::string>> depends_on(with_depends_on ? cells_.size() : 0);
  size_t total = 0;
  for (size_t i = 0; i < cells_.size(); ++i) {
    const Entry& entry = *cells_[i];
    size_t size = entry.cell.ByteSizeLong() + index_size(i) +  // caches sizes
                  truncated_size(*entry.outputs);
    if (clears_stale_reason(entry.cell)) size += empty_stale_reason_size;
    if (with_outputs) {
      for (const v1::Output& output : entry.outputs->outputs()) {
        const size_t output_size = output.ByteSizeLong();
        size += LengthDelimitedHeaderSize(v1::Cell::kOutputsFieldNumber, output_size) + output_size;
      }
    }
    if (with_depends_on && entry.cell.cell_type() == v1::CELL_TYPE_CODE) {
      depends_on[i] = Graph().DependsOn(entry.cell.cell_id());
      for (const std::string& id : depends_on[i]) {
        size += LengthDelimitedHeaderSize(v1::Cell::kDependsOnFieldNumber, id.size()) + id.size();
      }
    }
    cell_sizes[i] = size;
    total += LengthDelimitedHeaderSize(v1::Notebook::kCellsFieldNumber, size) + size;
  }
  v1::Notebook rest;
  rest.set_metadata(metadata_json_);
  if (with_graph) *rest.mutable_graph() = GraphProto();
  const size_t rest_size = rest.ByteSizeLong();

  std::string bytes(total + rest_size, '\0');
  uint8_t* at = reinterpret_cast<uint8_t*>(bytes.data());
  for (size_t i = 0; i < cells_.size(); ++i) {
    const Entry& entry = *cells_[i];
    at = WriteLengthDelimitedHeader(v1::Notebook::kCellsFieldNumber, cell_sizes[i], at);
    at = entry.cell.SerializeWithCachedSizesToArray(at);
    if (i != 0) {
      at = Lite::WriteInt32ToArray(v1::Cell::kIndexFieldNumber, static_cast<int32_t>(i), at);
    }
    if (entry.outputs->truncated()) {
      at = Lite::WriteBoolToArray(v1::Cell::kOutputsTruncatedFieldNumber, true, at);
    }
    if (clears_stale_reason(entry.cell)) {
      at = WriteLengthDelimitedHeader(v1::Cell::kStaleReasonFieldNumber, 0, at);
    }
    if (with_outputs) {
      for (const v1::Output& output : entry.outputs->outputs()) {
        at = WriteLengthDelimitedHeader(v1::Cell::kOutputsFieldNumber, output.GetCachedSize(), at);
        at = output.SerializeWithCachedSizesToArray(at);
      }
    }
    if (with_depends_on) {
      for (const std::string& id : depends_on[i]) {
        at = Lite::WriteStringToArray(v1::Cell::kDependsOnFieldNumber, id, at);
      }
    }
  }
  rest.SerializeWithCachedSizesToArray(at);
  return bytes;
}

std::vector<std::string> Notebook::cell_ids() const {
  std::vector<std::string> ids;
  ids.reserve(cells_.size());
  for (const auto& entry : cells_) ids.push_back(entry->cell.cell_id());
  return ids;
}

absl::Status Notebook::set_metadata_json(const std::string& metadata_json) {
  absl::StatusOr<std::string> metadata = CanonicalMetadata(metadata_json, "metadata");
  if (!metadata.ok()) return metadata.status();
  metadata_json_ = *std::move(metadata);
  return absl::OkStatus();
}

absl::Status Notebook::RestoreCells(std::vector<v1::Cell> cells) {
  // LoadCells takes what an import gives; the rest of each cell is put back afterwards.
  struct RunState {
    v1::CellState state;
    std::optional<v1::LastRun> last_run;
    google::protobuf::RepeatedPtrField<v1::Output> outputs;
    bool outputs_truncated;
    std::string stale_reason;
    v1::Cell analysis;  // defines, uses, analysis, analysis_detail
  };
  std::vector<RunState> saved;
  saved.reserve(cells.size());
  for (v1::Cell& cell : cells) {
    RunState& run = saved.emplace_back();
    run.state = cell.state();
    if (cell.has_last_run()) run.last_run = std::move(*cell.mutable_last_run());
    run.outputs.Swap(cell.mutable_outputs());
    run.outputs_truncated = cell.outputs_truncated();
    run.stale_reason = std::move(*cell.mutable_stale_reason());
    run.analysis.mutable_defines()->Swap(cell.mutable_defines());
    run.analysis.mutable_uses()->Swap(cell.mutable_uses());
    run.analysis.set_analysis(cell.analysis());
    run.analysis.set_analysis_detail(std::move(*cell.mutable_analysis_detail()));
  }
  if (absl::Status status = LoadCells(std::move(cells), /*replace=*/true); !status.ok()) {
    return status;
  }
  for (size_t i = 0; i < saved.size() && i < cells_.size(); ++i) {
    v1::Cell& restored = cells_[i]->cell;
    RunState& run = saved[i];
    if (run.state != v1::CELL_STATE_UNSPECIFIED) restored.set_state(run.state);
    if (run.last_run.has_value()) *restored.mutable_last_run() = std::move(*run.last_run);
    restored.set_stale_reason(std::move(run.stale_reason));
    if (restored.cell_type() == v1::CELL_TYPE_CODE) {
      cells_[i]->outputs->RestoreSaved(std::move(run.outputs), run.outputs_truncated);
      // An analysis saved with the cell is as good as a new one: it is of the same source.
      const v1::AnalysisStatus status = run.analysis.analysis();
      if (tracking_.enabled && status >= v1::ANALYSIS_STATUS_ANALYZED &&
          status <= v1::ANALYSIS_STATUS_SYNTAX_ERROR) {
        restored.mutable_defines()->Swap(run.analysis.mutable_defines());
        restored.mutable_uses()->Swap(run.analysis.mutable_uses());
        restored.set_analysis(status);
        restored.set_analysis_detail(std::move(*run.analysis.mutable_analysis_detail()));
      }
    }
  }
  InvalidateGraph();
  return absl::OkStatus();
}

absl::Status Notebook::LoadCells(std::vector<v1::Cell> cells, bool replace, RemovedCells* removed) {
  if (replace) {
    for (const auto& entry : cells_) {
      if (IsActive(entry->cell.state())) {
        return absl::FailedPreconditionError(absl::StrCat("cannot replace the cells while cell ",
                                                          QuoteId(entry->cell.cell_id()),
                                                          " is queued or running"));
      }
    }
  }
  const size_t total = (replace ? 0 : cells_.size()) + cells.size();
  if (limits_.max_cells > 0 && total > static_cast<size_t>(limits_.max_cells)) {
    return absl::ResourceExhaustedError(absl::StrCat("the notebook would have ", total,
                                                     " cells, over the cap of ", limits_.max_cells,
                                                     " (max_cells)"));
  }

  // Validate everything before changing anything.
  std::vector<std::unique_ptr<Entry>> loaded;
  loaded.reserve(cells.size());
  for (size_t i = 0; i < cells.size(); ++i) {
    v1::Cell& in = cells[i];
    const std::string field = absl::StrCat("cells[", i, "]");
    absl::StatusOr<v1::CellType> type =
        ResolveCellType(in.cell_type(), v1::CELL_TYPE_CODE, absl::StrCat(field, ".cell_type"));
    if (!type.ok()) return type.status();
    if (absl::Status status = CheckSource(in.source(), absl::StrCat(field, ".source"));
        !status.ok()) {
      return status;
    }
    absl::StatusOr<std::string> metadata =
        CanonicalMetadata(in.metadata(), absl::StrCat(field, ".metadata"));
    if (!metadata.ok()) return metadata.status();

    auto entry = std::make_unique<Entry>();
    v1::Cell& cell = entry->cell;
    cell.set_cell_id(std::move(*in.mutable_cell_id()));
    cell.set_cell_type(*type);
    cell.set_source(std::move(*in.mutable_source()));
    cell.set_metadata(*std::move(metadata));
    entry->outputs = NewOutputList();
    if (*type == v1::CELL_TYPE_CODE) {
      cell.set_execution_count(std::max(in.execution_count(), 0));
      for (v1::Output& output : *in.mutable_outputs()) {
        if (output.output_case() != v1::Output::OUTPUT_NOT_SET) {
          entry->outputs->Append(std::move(output));
        }
      }
    }
    const bool ran = !entry->outputs->empty() || cell.execution_count() > 0;
    cell.set_state(ran ? v1::CELL_STATE_STALE : v1::CELL_STATE_NEW);
    if (ran) cell.set_stale_reason("imported with outputs");
    ResetAnalysis(*entry, "");
    loaded.push_back(std::move(entry));
  }

  if (replace) {
    if (removed != nullptr) {
      std::move(cells_.begin(), cells_.end(), std::back_inserter(removed->entries_));
    }
    cells_.clear();
    entries_by_id_.clear();
  }
  std::unordered_set<std::string> taken;
  for (const auto& entry : cells_) taken.insert(entry->cell.cell_id());
  for (auto& entry : loaded) {
    const std::string& id = entry->cell.cell_id();
    if (!ValidateCellId(id).ok() || taken.contains(id)) {
      entry->cell.set_cell_id(NewCellId(taken));
    }
    taken.insert(entry->cell.cell_id());
  }
  for (auto& entry : loaded) {
    entries_by_id_[entry->cell.cell_id()] = entry.get();
    cells_.push_back(std::move(entry));
  }
  InvalidateGraph();
  return absl::OkStatus();
}

absl::Status Notebook::SetState(const std::string& cell_id, v1::CellState state) {
  if (!v1::CellState_IsValid(state) || state == v1::CELL_STATE_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        absl::StrCat("state ", static_cast<int>(state), " is not a valid CellState"));
  }
  absl::StatusOr<size_t> index = Find(cell_id);
  if (!index.ok()) return index.status();
  v1::Cell& cell = cells_[*index]->cell;
  if (cell.cell_type() != v1::CELL_TYPE_CODE && state != v1::CELL_STATE_NEW) {
    return absl::FailedPreconditionError(
        absl::StrCat("cell ", QuoteId(cell_id), " is not a code cell"));
  }
  cell.set_state(state);
  return absl::OkStatus();
}

absl::Status Notebook::QueueRun(const std::string& cell_id, const std::string& execution_id) {
  absl::StatusOr<Entry*> entry = FindCodeCell(cell_id);
  if (!entry.ok()) return entry.status();
  v1::Cell& cell = (*entry)->cell;
  cell.set_state(v1::CELL_STATE_QUEUED);
  cell.clear_last_run();
  cell.mutable_last_run()->set_execution_id(execution_id);
  return absl::OkStatus();
}

absl::Status Notebook::BeginRun(const std::string& cell_id, const std::string& execution_id,
                                const google::protobuf::Timestamp& started_at) {
  absl::StatusOr<Entry*> entry = FindCodeCell(cell_id);
  if (!entry.ok()) return entry.status();
  v1::Cell& cell = (*entry)->cell;
  // What read the values it is about to redefine no longer matches them.
  MarkDependentsStale(cell_id, absl::StrCat("upstream cell ", cell_id, " ran"));
  (*entry)->outputs->Reset();
  (*entry)->edited_while_running = false;
  cell.set_execution_count(0);
  cell.set_state(v1::CELL_STATE_RUNNING);
  cell.clear_last_run();
  cell.mutable_last_run()->set_execution_id(execution_id);
  *cell.mutable_last_run()->mutable_started_at() = started_at;
  return absl::OkStatus();
}

absl::Status Notebook::FinishRun(const std::string& cell_id, v1::ExecutionStatus status,
                                 int execution_count, int64_t duration_ms) {
  if (!v1::ExecutionStatus_IsValid(status) || status == v1::EXECUTION_STATUS_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        absl::StrCat("status ", static_cast<int>(status), " is not a valid ExecutionStatus"));
  }
  absl::StatusOr<Entry*> entry = FindCodeCell(cell_id);
  if (!entry.ok()) return entry.status();
  v1::Cell& cell = (*entry)->cell;
  if (cell.state() == v1::CELL_STATE_RUNNING) cell.set_execution_count(execution_count);
  if ((*entry)->edited_while_running) {
    cell.set_state(v1::CELL_STATE_STALE);
    cell.set_stale_reason("source edited while it ran");
  } else {
    cell.set_state(StateAfter(status));
  }
  (*entry)->edited_while_running = false;
  cell.mutable_last_run()->set_status(status);
  cell.mutable_last_run()->set_duration_ms(duration_ms);
  return absl::OkStatus();
}

OutputList* Notebook::outputs(const std::string& cell_id) {
  const std::optional<size_t> index = IndexOf(cell_id);
  return index.has_value() ? cells_[*index]->outputs.get() : nullptr;
}

bool Notebook::ApplyDisplayUpdateEverywhere(const v1::DisplayUpdate& update) {
  bool matched = false;
  for (auto& entry : cells_) matched = entry->outputs->UpdateDisplay(update) || matched;
  return matched;
}

void Notebook::MarkAllStale(const std::string& reason) {
  for (auto& entry : cells_) MarkStale(entry->cell, reason);
}

std::optional<std::string> Notebook::source(const std::string& cell_id) const {
  const std::optional<size_t> index = IndexOf(cell_id);
  if (!index.has_value()) return std::nullopt;
  return cells_[*index]->cell.source();
}

std::optional<v1::CellState> Notebook::state(const std::string& cell_id) const {
  const std::optional<size_t> index = IndexOf(cell_id);
  if (!index.has_value()) return std::nullopt;
  return cells_[*index]->cell.state();
}

std::vector<std::string> Notebook::CellIdsInState(v1::CellState state) const {
  std::vector<std::string> ids;
  for (const auto& entry : cells_) {
    if (entry->cell.state() == state) ids.push_back(entry->cell.cell_id());
  }
  return ids;
}

// ---- Dependencies ----

std::vector<Notebook::PendingAnalysis> Notebook::PendingAnalyses() const {
  std::vector<PendingAnalysis> pending;
  for (const auto& entry : cells_) {
    if (entry->cell.analysis() == v1::ANALYSIS_STATUS_PENDING) {
      pending.push_back({entry->cell.cell_id(), entry->cell.source()});
    }
  }
  return pending;
}

void Notebook::RetryUnavailableAnalyses() {
  for (auto& entry : cells_) {
    if (entry->cell.analysis() == v1::ANALYSIS_STATUS_UNAVAILABLE) {
      entry->cell.set_analysis(v1::ANALYSIS_STATUS_PENDING);
      entry->cell.clear_analysis_detail();
    }
  }
}

bool Notebook::SetAnalysis(const std::string& cell_id, const std::string& source,
                           Analysis analysis) {
  const auto found = entries_by_id_.find(cell_id);
  if (found == entries_by_id_.end()) return false;
  Entry& entry = *found->second;
  v1::Cell& cell = entry.cell;
  if (cell.analysis() != v1::ANALYSIS_STATUS_PENDING || cell.source() != source) return false;
  cell.set_analysis(analysis.status);
  cell.set_analysis_detail(std::move(analysis.detail));
  for (std::string& name : analysis.defines) cell.add_defines(std::move(name));
  for (std::string& name : analysis.uses) cell.add_uses(std::move(name));
  InvalidateGraph();
  if (!entry.change_awaiting_analysis.empty()) {
    // An UNAVAILABLE analysis leaves the cell depended on by everything below: conservative.
    MarkDependentsStale(cell_id,
                        absl::StrCat("upstream cell ", cell_id, " ",
                                     entry.change_awaiting_analysis));
    entry.change_awaiting_analysis.clear();
  }
  return true;
}

void Notebook::InvalidateGraph() {
  absl::MutexLock lock(&graph_mutex_);
  graph_.reset();
}

const DependencyGraph& Notebook::Graph() const {
  absl::MutexLock lock(&graph_mutex_);
  if (graph_ == nullptr) {
    std::vector<DependencyGraph::Cell> cells;
    cells.reserve(cells_.size());
    for (const auto& entry : cells_) {
      const v1::Cell& cell = entry->cell;
      DependencyGraph::Cell& node = cells.emplace_back();
      node.cell_id = cell.cell_id();
      if (cell.cell_type() != v1::CELL_TYPE_CODE) {
        node.kind = DependencyGraph::Cell::Kind::kNotCode;
        continue;
      }
      switch (tracking_.enabled ? cell.analysis() : v1::ANALYSIS_STATUS_NOT_APPLICABLE) {
        case v1::ANALYSIS_STATUS_ANALYZED:
        case v1::ANALYSIS_STATUS_OPAQUE:
        case v1::ANALYSIS_STATUS_SYNTAX_ERROR:
          node.kind = DependencyGraph::Cell::Kind::kAnalyzed;
          node.defines.assign(cell.defines().begin(), cell.defines().end());
          node.uses.assign(cell.uses().begin(), cell.uses().end());
          node.opaque = cell.analysis() == v1::ANALYSIS_STATUS_OPAQUE;
          break;
        default:  // without tracking, in order only: as if nothing were analysed
          node.kind = DependencyGraph::Cell::Kind::kUnknown;
          break;
      }
    }
    graph_ = std::make_unique<DependencyGraph>(std::move(cells));
  }
  return *graph_;
}

v1::DependencyGraph Notebook::GraphProto() const {
  v1::DependencyGraph proto;
  proto.set_note(GraphNote());
  if (!tracking_.enabled) return proto;
  proto.set_available(true);
  const DependencyGraph& graph = Graph();
  for (const auto& entry : cells_) {
    for (DependencyGraph::Edge& edge : graph.DirectEdges(entry->cell.cell_id())) {
      v1::Dependency* dependency = proto.add_dependencies();
      dependency->set_cell_id(entry->cell.cell_id());
      dependency->set_depends_on(std::move(edge.depends_on));
      for (std::string& name : edge.names) dependency->add_names(std::move(name));
    }
  }
  for (std::string& id : graph.Unknown()) proto.add_unanalyzed_cell_ids(std::move(id));
  return proto;
}

std::string Notebook::GraphNote() const {
  if (!tracking_.enabled) {
    return absl::StrCat(tracking_.why_not,
                        ": cells are in order only, each code cell taken as depending on "
                        "every code cell above it");
  }
  std::vector<std::string> pending;
  std::vector<std::string> unavailable;
  std::string why_unavailable;
  for (const auto& entry : cells_) {
    const v1::Cell& cell = entry->cell;
    if (cell.analysis() == v1::ANALYSIS_STATUS_PENDING) pending.push_back(cell.cell_id());
    if (cell.analysis() == v1::ANALYSIS_STATUS_UNAVAILABLE) {
      unavailable.push_back(cell.cell_id());
      if (why_unavailable.empty()) why_unavailable = cell.analysis_detail();
    }
  }
  if (pending.empty() && unavailable.empty()) return "";
  constexpr size_t kListed = 10;
  auto list = [](const std::vector<std::string>& ids) {
    std::string text;
    for (size_t i = 0; i < ids.size() && i < kListed; ++i) {
      absl::StrAppend(&text, i == 0 ? "" : ", ", ids[i]);
    }
    if (ids.size() > kListed) absl::StrAppend(&text, " and ", ids.size() - kListed, " more");
    return text;
  };
  std::string note;
  if (!unavailable.empty()) {
    absl::StrAppend(&note, "dependency analysis unavailable for cells ", list(unavailable), " (",
                    why_unavailable, ")");
  }
  if (!pending.empty()) {
    absl::StrAppend(&note, note.empty() ? "" : "; ", "dependency analysis pending for cells ",
                    list(pending));
  }
  absl::StrAppend(&note, ": taken as depending on every code cell above and depended on by "
                         "every code cell below");
  return note;
}

}  // namespace cellgate::notebook
