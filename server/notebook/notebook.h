#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include <google/protobuf/timestamp.pb.h>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "cellgate/v1/execution.pb.h"
#include "cellgate/v1/notebook.pb.h"
#include "server/notebook/dependency_graph.h"
#include "server/notebook/output_list.h"

namespace cellgate::notebook {

// The notebook of one kernel: an ordered list of cells with stable ids, each with its stored
// outputs (an OutputList capped at `Limits::max_output_bytes`).
//
// Errors name the request field at fault: a malformed `cell_id` (nbformat 4.5: 1-64
// characters of [a-zA-Z0-9-_]) is INVALID_ARGUMENT, an unknown one NOT_FOUND, an `index` out
// of range or a `source` over the cap INVALID_ARGUMENT, one cell too many RESOURCE_EXHAUSTED,
// a change that a queued or running cell forbids FAILED_PRECONDITION.
//
// Cell states: markdown and raw cells are always NEW. A code cell is NEW until it runs,
// QUEUED / RUNNING while it does (QueueRun, BeginRun), then OK, ERROR or CANCELLED
// (FinishRun); it becomes STALE when its source is edited after it ran or while it runs, when
// the kernel restarts (MarkAllStale), or when it is imported with outputs.
//
// With dependency tracking, each code cell carries its analysis (what it defines and reads, set
// by the session from the analyzer: PENDING after every change of its source until SetAnalysis)
// and the notebook its DependencyGraph. Then a change marks STALE exactly the transitive
// dependents that had run, with the reason: editing a cell (its dependents under the old
// analysis at once, those under the new one when it arrives), deleting or moving it, adding
// one that defines what cells below read, and running it again (BeginRun). Without tracking,
// cells are in order only: the graph counts every code cell as depending on every one above,
// and nothing is marked STALE for depending on a change.
//
// Not thread-safe: the session guards it. Its const methods may run at the same time as each
// other (the session's readers share its lock): the graph they may build is guarded on its own.
class Notebook {
  struct Entry;

 public:
  // Zero or negative: no limit.
  struct Limits {
    int max_cells = 0;
    int64_t max_source_bytes = 0;
    // The cap of each cell's OutputList.
    int64_t max_output_bytes = 0;
  };

  struct DependencyTracking {
    bool enabled = false;
    // Without tracking: why, in words (goes into the graph's note).
    std::string why_not = "dependency analysis is off";
  };

  // What the analyzer said about a cell's source.
  struct Analysis {
    v1::AnalysisStatus status = v1::ANALYSIS_STATUS_UNAVAILABLE;  // ANALYZED .. UNAVAILABLE
    std::vector<std::string> defines;
    std::vector<std::string> uses;
    std::string detail;
  };

  // A code cell whose analysis is PENDING.
  struct PendingAnalysis {
    std::string cell_id;
    std::string source;
  };

  // Without dependency tracking.
  explicit Notebook(Limits limits);
  Notebook(Limits limits, DependencyTracking tracking);

  Notebook(const Notebook&) = delete;
  Notebook& operator=(const Notebook&) = delete;

  // Adds a cell at `index` (0..size(); nullopt appends) and returns it. `type` UNSPECIFIED
  // means CODE. An empty `cell_id` gets a generated one (8 lowercase hex characters, as
  // nbformat generates); a taken one is ALREADY_EXISTS. `metadata_json` is a JSON object text
  // or empty (= `{}`); it is stored re-serialized, and `{}` as "". The source may be empty.
  absl::StatusOr<v1::Cell> AddCell(const std::string& source, v1::CellType type,
                                   std::optional<int> index, const std::string& cell_id,
                                   const std::string& metadata_json);

  // Changes what is given: `source` (nullopt = unchanged), `type` (UNSPECIFIED = unchanged),
  // `metadata_json` (nullopt = unchanged). A new source (different from the old) makes a code
  // cell in state OK, ERROR or CANCELLED STALE; a running cell ends STALE when it finishes.
  // Changing the type of a QUEUED or RUNNING cell is FAILED_PRECONDITION; changing a cell to
  // markdown or raw clears its outputs, execution count and last run (state NEW). Validates
  // everything before changing anything.
  absl::StatusOr<v1::Cell> EditCell(const std::string& cell_id, std::optional<std::string> source,
                                    v1::CellType type, std::optional<std::string> metadata_json);

  // Deletes a cell; a QUEUED or RUNNING one is FAILED_PRECONDITION.
  absl::Status DeleteCell(const std::string& cell_id);

  // Moves a cell to `index` (0..size()-1, its index after the move) and returns it.
  absl::StatusOr<v1::Cell> MoveCell(const std::string& cell_id, int index);

  // One cell with its index and outputs.
  absl::StatusOr<v1::Cell> GetCell(const std::string& cell_id) const;
  // The cell as stored, with no copy: its outputs, index, outputs_truncated and depends_on are
  // not in it (and its stale_reason is meaningful only when STALE). Errors as GetCell. Valid
  // until the notebook next changes.
  absl::StatusOr<const v1::Cell*> StoredCell(const std::string& cell_id) const;

  // All cells in order, with index, outputs and outputs_truncated; `metadata` set,
  // `kernel_id` and `last_seq` left for the session. `with_graph`: also `graph` and each cell's
  // `depends_on` (derived: not needed to save and restore the notebook). `with_outputs` false:
  // the cells' `outputs` are left empty (outputs_truncated still says whether they were cut).
  v1::Notebook Snapshot(bool with_graph = true, bool with_outputs = true) const;
  // The wire bytes of Snapshot(with_graph, with_outputs), written from the cells as they are:
  // no copy of them or their outputs is made (what a save needs under the session's lock, and
  // a reply of the whole notebook).
  std::string SerializedSnapshot(bool with_graph = false, bool with_outputs = true) const;

  int size() const { return static_cast<int>(cells_.size()); }
  std::vector<std::string> cell_ids() const;

  // Notebook metadata as JSON object text; "" means `{}`.
  const std::string& metadata_json() const { return metadata_json_; }
  // INVALID_ARGUMENT (naming `metadata`) unless a JSON object text or empty.
  absl::Status set_metadata_json(const std::string& metadata_json);

  // The cells a replacing LoadCells took out, for the caller to free after it released its
  // lock: freeing a big notebook is a good part of an import's time.
  class RemovedCells {
   public:
    RemovedCells() = default;

   private:
    friend class Notebook;
    std::vector<std::unique_ptr<Entry>> entries_;
  };

  // Bulk load for .ipynb import: appends `cells` (or, with `replace`, replaces all cells) in
  // one step, all or nothing. Each cell gives cell_id, cell_type (UNSPECIFIED = CODE), source,
  // metadata, execution_count and outputs; index, state, last_run and outputs_truncated are
  // ignored. A cell_id that is empty, malformed or already taken (by an earlier cell of
  // `cells` or, without `replace`, by a cell of the notebook) is replaced by a generated one.
  // Outputs of markdown and raw cells are dropped; a code cell imported with outputs or an
  // execution count is STALE, else NEW. Errors: RESOURCE_EXHAUSTED over max_cells;
  // INVALID_ARGUMENT naming `cells[i].source`, `cells[i].cell_type` or `cells[i].metadata`;
  // with `replace`, FAILED_PRECONDITION if a cell is QUEUED or RUNNING. The replaced cells go
  // to `removed` if given, else are freed here.
  absl::Status LoadCells(std::vector<v1::Cell> cells, bool replace,
                         RemovedCells* removed = nullptr);

  // Replaces every cell with `cells` as Snapshot gave them (saved by a gateway before it
  // restarted): ids, types, sources, metadata, execution counts, outputs (as they were,
  // truncation included), states and last runs are taken as given. All or nothing; errors as
  // LoadCells.
  absl::Status RestoreCells(std::vector<v1::Cell> cells);

  // For the session. Each is NOT_FOUND / INVALID_ARGUMENT for an unknown / malformed id and
  // FAILED_PRECONDITION for a markdown or raw cell (except SetState(NEW)).

  // Sets the state (not UNSPECIFIED) without touching anything else.
  absl::Status SetState(const std::string& cell_id, v1::CellState state);
  // The cell was queued to run as `execution_id`: state QUEUED, last_run = {execution_id}.
  absl::Status QueueRun(const std::string& cell_id, const std::string& execution_id);
  // The kernel started running it: outputs cleared, execution_count 0, state RUNNING,
  // last_run = {execution_id, started_at}. The session must send the source as of this call.
  absl::Status BeginRun(const std::string& cell_id, const std::string& execution_id,
                        const google::protobuf::Timestamp& started_at);
  // The run ended: state OK (OK), ERROR (ERROR, TIMEOUT, INTERRUPTED, KERNEL_DIED) or
  // CANCELLED (CANCELLED), or STALE if the source was edited while it ran; last_run.status and
  // duration_ms set. `execution_count` is stored only if the cell was RUNNING (a cell
  // cancelled while queued keeps its previous outputs and count).
  absl::Status FinishRun(const std::string& cell_id, v1::ExecutionStatus status,
                         int execution_count, int64_t duration_ms);
  // The cell's outputs; nullptr for an unknown id. Valid until the cell is deleted or replaced.
  OutputList* outputs(const std::string& cell_id);
  // Applies a display update to the outputs of every cell; true if any output matched.
  bool ApplyDisplayUpdateEverywhere(const v1::DisplayUpdate& update);
  // After a kernel restart: every code cell in state OK, ERROR or CANCELLED becomes STALE,
  // `reason` its stale_reason.
  void MarkAllStale(const std::string& reason);

  // ---- Dependencies ----
  bool tracks_dependencies() const { return tracking_.enabled; }
  // Code cells whose analysis is PENDING, in notebook order, with the source to analyze.
  std::vector<PendingAnalysis> PendingAnalyses() const;
  // UNAVAILABLE analyses become PENDING again (to be asked anew).
  void RetryUnavailableAnalyses();
  // Stores the analysis of `cell_id` if it is still a code cell with that `source` and PENDING
  // (false otherwise: a later change asked again). If the cell was added or edited, its
  // dependents under the new analysis that had run become STALE.
  bool SetAnalysis(const std::string& cell_id, const std::string& source, Analysis analysis);
  // The dependency graph of the cells as they are now (rebuilt after a change).
  const DependencyGraph& Graph() const ABSL_LOCKS_EXCLUDED(graph_mutex_);
  // The graph as the API shows it.
  v1::DependencyGraph GraphProto() const;
  // Why the graph is incomplete or absent, in words; empty when it is complete.
  std::string GraphNote() const;
  // The cell's source; nullopt for an unknown id.
  std::optional<std::string> source(const std::string& cell_id) const;
  // The cell's state; nullopt for an unknown id.
  std::optional<v1::CellState> state(const std::string& cell_id) const;
  // The ids of the cells in `state`, in order.
  std::vector<std::string> CellIdsInState(v1::CellState state) const;

  // OK if `cell_id` follows the nbformat 4.5 id rules, else INVALID_ARGUMENT naming `cell_id`.
  static absl::Status ValidateCellId(absl::string_view cell_id);

 private:
  struct Entry {
    v1::Cell cell;  // without outputs, index, outputs_truncated and depends_on
    std::unique_ptr<OutputList> outputs;
    bool edited_while_running = false;
    // Set by AddCell / EditCell until the analysis arrives: "added" or "edited" (its
    // dependents under the new analysis are then marked STALE).
    std::string change_awaiting_analysis;
  };

  // The position of a cell, or NOT_FOUND / INVALID_ARGUMENT.
  absl::StatusOr<size_t> Find(const std::string& cell_id) const;
  // Find, then FAILED_PRECONDITION unless a code cell.
  absl::StatusOr<Entry*> FindCodeCell(const std::string& cell_id);
  std::optional<size_t> IndexOf(absl::string_view cell_id) const;
  v1::Cell CellAt(size_t index, bool with_graph = true, bool with_outputs = true) const;
  absl::Status CheckSource(const std::string& source, absl::string_view field) const;
  // A fresh id not in `taken`.
  std::string NewCellId(const std::unordered_set<std::string>& taken);
  std::unique_ptr<OutputList> NewOutputList() const;
  // A code cell that had run becomes STALE with `reason` (an already STALE one keeps its first
  // reason); others are left alone.
  static void MarkStale(v1::Cell& cell, const std::string& reason);
  // With tracking: every cell depending on `cell_id` (in Graph() as it is) that had run
  // becomes STALE.
  void MarkDependentsStale(const std::string& cell_id, const std::string& reason);
  // The cell's source changed (or it became a code cell): its analysis is PENDING.
  void ResetAnalysis(Entry& entry, const std::string& change) const;
  void InvalidateGraph() ABSL_LOCKS_EXCLUDED(graph_mutex_);

  Limits limits_;
  DependencyTracking tracking_;
  std::vector<std::unique_ptr<Entry>> cells_;
  // Every entry of cells_ by its cell id: lookups without comparing ids along the notebook.
  absl::flat_hash_map<std::string, Entry*> entries_by_id_;
  // Built by the first const reader that needs it, dropped by a change (which has the notebook
  // to itself: a reference Graph() gave stays valid until then).
  mutable absl::Mutex graph_mutex_;
  mutable std::unique_ptr<DependencyGraph> graph_ ABSL_GUARDED_BY(graph_mutex_);  // null: to build
  std::string metadata_json_;
  std::mt19937_64 random_;
};

}  // namespace cellgate::notebook
