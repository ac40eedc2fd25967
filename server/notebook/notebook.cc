#include "server/notebook/notebook.h"

#include <algorithm>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/common/json_nesting.h"

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

Notebook::Notebook(Limits limits) : limits_(limits) {
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
  for (size_t i = 0; i < cells_.size(); ++i) {
    if (cells_[i]->cell.cell_id() == cell_id) return i;
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

v1::Cell Notebook::CellAt(size_t index) const {
  const Entry& entry = *cells_[index];
  v1::Cell cell = entry.cell;
  cell.set_index(static_cast<int32_t>(index));
  *cell.mutable_outputs() = entry.outputs->outputs();
  cell.set_outputs_truncated(entry.outputs->truncated());
  return cell;
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
  const size_t position = index.has_value() ? static_cast<size_t>(*index) : cells_.size();
  cells_.insert(cells_.begin() + static_cast<std::ptrdiff_t>(position), std::move(entry));
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

  if (source.has_value() && *source != cell.source()) {
    cell.set_source(*std::move(source));
    if (cell.cell_type() == v1::CELL_TYPE_CODE) {
      if (HasRun(cell.state())) cell.set_state(v1::CELL_STATE_STALE);
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
  cells_.erase(cells_.begin() + static_cast<std::ptrdiff_t>(*index));
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
  std::unique_ptr<Entry> entry = std::move(cells_[*from]);
  cells_.erase(cells_.begin() + static_cast<std::ptrdiff_t>(*from));
  cells_.insert(cells_.begin() + static_cast<std::ptrdiff_t>(to), std::move(entry));
  return CellAt(to);
}

absl::StatusOr<v1::Cell> Notebook::GetCell(const std::string& cell_id) const {
  absl::StatusOr<size_t> index = Find(cell_id);
  if (!index.ok()) return index.status();
  return CellAt(*index);
}

v1::Notebook Notebook::Snapshot() const {
  v1::Notebook notebook;
  notebook.mutable_cells()->Reserve(size());
  for (size_t i = 0; i < cells_.size(); ++i) *notebook.add_cells() = CellAt(i);
  notebook.set_metadata(metadata_json_);
  return notebook;
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
  };
  std::vector<RunState> saved;
  saved.reserve(cells.size());
  for (v1::Cell& cell : cells) {
    RunState& run = saved.emplace_back();
    run.state = cell.state();
    if (cell.has_last_run()) run.last_run = std::move(*cell.mutable_last_run());
    run.outputs.Swap(cell.mutable_outputs());
    run.outputs_truncated = cell.outputs_truncated();
  }
  if (absl::Status status = LoadCells(std::move(cells), /*replace=*/true); !status.ok()) {
    return status;
  }
  for (size_t i = 0; i < saved.size() && i < cells_.size(); ++i) {
    v1::Cell& restored = cells_[i]->cell;
    RunState& run = saved[i];
    if (run.state != v1::CELL_STATE_UNSPECIFIED) restored.set_state(run.state);
    if (run.last_run.has_value()) *restored.mutable_last_run() = std::move(*run.last_run);
    if (restored.cell_type() == v1::CELL_TYPE_CODE) {
      cells_[i]->outputs->RestoreSaved(std::move(run.outputs), run.outputs_truncated);
    }
  }
  return absl::OkStatus();
}

absl::Status Notebook::LoadCells(std::vector<v1::Cell> cells, bool replace) {
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
    loaded.push_back(std::move(entry));
  }

  if (replace) cells_.clear();
  std::unordered_set<std::string> taken;
  for (const auto& entry : cells_) taken.insert(entry->cell.cell_id());
  for (auto& entry : loaded) {
    const std::string& id = entry->cell.cell_id();
    if (!ValidateCellId(id).ok() || taken.contains(id)) {
      entry->cell.set_cell_id(NewCellId(taken));
    }
    taken.insert(entry->cell.cell_id());
  }
  for (auto& entry : loaded) cells_.push_back(std::move(entry));
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
  cell.set_state((*entry)->edited_while_running ? v1::CELL_STATE_STALE : StateAfter(status));
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

void Notebook::MarkAllStale() {
  for (auto& entry : cells_) {
    v1::Cell& cell = entry->cell;
    if (cell.cell_type() == v1::CELL_TYPE_CODE && HasRun(cell.state())) {
      cell.set_state(v1::CELL_STATE_STALE);
    }
  }
}

std::optional<std::string> Notebook::source(const std::string& cell_id) const {
  const std::optional<size_t> index = IndexOf(cell_id);
  if (!index.has_value()) return std::nullopt;
  return cells_[*index]->cell.source();
}

}  // namespace cellgate::notebook
