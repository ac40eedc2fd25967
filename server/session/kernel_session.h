#pragma once

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cellgate/internal/kernel_state.pb.h"
#include "cellgate/v1/execution.pb.h"
#include "cellgate/v1/kernel.pb.h"
#include "cellgate/v1/notebook.pb.h"
#include "server/kernel/cell_analyzer.h"
#include "server/kernel/io_loop.h"
#include "server/kernel/kernel.h"
#include "server/kernel/workspace.h"
#include "server/notebook/iopub_output.h"
#include "server/notebook/notebook.h"
#include "server/notebook/output_list.h"
#include "server/session/event_log.h"
#include "server/session/gateway_config.h"
#include "server/session/state_store.h"

namespace cellgate::session {

// How one execution is bounded in time.
struct ExecutionOptions {
  // Counted from the start of the execution (time spent queued does not count).
  absl::Duration timeout = absl::InfiniteDuration();
  v1::OnTimeout on_timeout = v1::ON_TIMEOUT_INTERRUPT;
  // When the caller must have its answer (its gRPC deadline, less a margin), queued or not.
  // Then it gets TIMEOUT at once, and `on_timeout` decides what happens to the execution.
  absl::Time respond_by = absl::InfiniteFuture();
};

// Everything needed to (re)start this session's kernel process.
struct KernelLaunch {
  kernel::KernelSpec spec;
  std::string kernel_dir;
  kernel::SandboxPolicy policy;
  std::map<std::string, std::string> env;
  std::string bwrap_path = "/usr/bin/bwrap";
  absl::Duration startup_timeout = absl::Seconds(60);
  kernel::CgroupManager* cgroups = nullptr;  // null: no per-kernel cgroup
  uint64_t cgroup_memory_bytes = 0;
};

// One kernel and its notebook: the cells, a FIFO execution queue (one execution at a time, as
// Jupyter does), the execution state machine, and the EventLog that clients stream from.
// Thread-safe. Callbacks given to it run on the kernel I/O loop or the calling thread, never
// under the session's lock.
class KernelSession : public std::enable_shared_from_this<KernelSession> {
 public:
  using ResultCallback = absl::AnyInvocable<void(v1::ExecutionResult)>;
  using RunAllCallback = absl::AnyInvocable<void(v1::RunAllResult)>;
  using DoneCallback = absl::AnyInvocable<void(absl::Status)>;

  struct Params {
    std::string kernel_id;
    KernelLaunch launch;
    std::map<std::string, std::string> labels;
    int idle_timeout_seconds = 0;
    const GatewayConfig* config = nullptr;
    kernel::KernelIoLoop* loop = nullptr;
    // Analyzes the cells of Python kernels for the dependency graph; null: no graph.
    kernel::CellAnalyzer* analyzer = nullptr;
    // The request that started the kernel (without `notebook_ipynb`): saved with its state.
    v1::StartKernelRequest start_request;
    // Where the session's state is saved whenever it changes; null: nowhere.
    StateStore* state_store = nullptr;
    // A restored kernel keeps its creation time and continues its event numbering after
    // `first_seq - 1`.
    std::optional<absl::Time> created_at;
    int64_t first_seq = 1;
    // A restored kernel whose process outlived the last gateway: Start re-attaches it (and
    // starts a fresh one if that fails). `launch.kernel_dir` and the uid are the process's.
    std::optional<kernel::KernelProcess> attach;
    // Called once the session is finished (shut down, or detached by Detach): the registry
    // forgets it. `kernel_left_running`: Detach left the process for the next gateway, so its
    // uid and files must stay as they are.
    absl::AnyInvocable<void(bool kernel_left_running)> on_closed;
  };

  static std::shared_ptr<KernelSession> Create(Params params);
  ~KernelSession();

  // Launches the kernel; `done` gets OK once it answered kernel_info, else UNAVAILABLE.
  void Start(DoneCallback done);

  // What a later gateway needs to bring this kernel back: its notebook (cells, outputs, states,
  // last runs, metadata, last seq) and the request that started it; with the number of the last
  // change it includes (AfterSaved).
  StateStore::KernelSnapshot SaveState() const ABSL_LOCKS_EXCLUDED(mutex_);

  // Before Start, on a session created for a saved kernel: takes its notebook back. The kernel
  // that Start launches is a fresh process, so what ran is STALE; a cell that was running when
  // the old gateway stopped ends ERROR with `last_run.status` KERNEL_DIED, a queued one
  // CANCELLED. With Params::attach the process is the same one, memory intact: cells keep
  // their states, the running one ends CANCELLED (its output after the old gateway stopped was
  // not captured). Appends a kernel_status event saying which.
  absl::Status Restore(const internal::KernelState& state) ABSL_LOCKS_EXCLUDED(mutex_);

  // The gateway stops and kernels outlive it: the running execution and the queue end
  // CANCELLED, and the process is left running for the next gateway (Kernel::Detach) if it was
  // up; else it is killed. Then the session is closed as by Shutdown.
  void Detach() ABSL_LOCKS_EXCLUDED(mutex_);

  // A session started ahead for the warm pool becomes the kernel of `request` (default kernel
  // settings, which is what the pool starts): its labels, idle timeout and request, created
  // now. Before it is registered; false (nothing changed) unless the kernel is IDLE.
  bool Claim(const v1::StartKernelRequest& request, int idle_timeout_seconds)
      ABSL_LOCKS_EXCLUDED(mutex_);

  // Runs `then` once the saved state includes every change made so far (at once when nothing
  // is saved). Replies to changes go through it: what a client was told is on disk.
  void AfterSaved(absl::AnyInvocable<void()> then) const ABSL_LOCKS_EXCLUDED(mutex_);

  // Runs `then` once no analysis asked for is still unanswered (at once when none is), on the
  // loop thread or the calling one: then every cell changed so far has its analysis (or
  // UNAVAILABLE) and the graph includes it. Replies to cell changes and cascades go through it.
  void WhenAnalyzed(absl::AnyInvocable<void()> then) ABSL_LOCKS_EXCLUDED(mutex_);

  const std::string& kernel_id() const { return params_.kernel_id; }
  // The kernel's language, from its kernelspec (e.g. "python").
  const std::string& language() const { return params_.launch.spec.language; }
  // The kernel's working directory as clients read and write it, with the server's caps.
  kernel::Workspace workspace() const;
  const std::map<std::string, std::string>& labels() const { return params_.labels; }
  std::shared_ptr<EventLog> event_log() const { return event_log_; }
  v1::Kernel Describe() const ABSL_LOCKS_EXCLUDED(mutex_);
  v1::KernelState state() const ABSL_LOCKS_EXCLUDED(mutex_);
  bool has_running_execution() const ABSL_LOCKS_EXCLUDED(mutex_);
  // Executions waiting behind the running one.
  size_t queued_executions() const ABSL_LOCKS_EXCLUDED(mutex_);

  // Cells. Errors as documented on the RPCs (NOT_FOUND, INVALID_ARGUMENT, ...).
  absl::StatusOr<v1::Cell> AddCell(const std::string& source, v1::CellType type,
                                   std::optional<int> index, const std::string& cell_id,
                                   const std::string& metadata) ABSL_LOCKS_EXCLUDED(mutex_);
  absl::StatusOr<v1::Cell> EditCell(const std::string& cell_id, std::optional<std::string> source,
                                    v1::CellType type, std::optional<std::string> metadata)
      ABSL_LOCKS_EXCLUDED(mutex_);
  absl::Status DeleteCell(const std::string& cell_id) ABSL_LOCKS_EXCLUDED(mutex_);
  absl::StatusOr<v1::Cell> MoveCell(const std::string& cell_id, int index)
      ABSL_LOCKS_EXCLUDED(mutex_);
  absl::StatusOr<v1::Cell> GetCell(const std::string& cell_id) const ABSL_LOCKS_EXCLUDED(mutex_);
  // GetNotebook's reply, a v1::Notebook, as wire bytes written from the notebook as it is (no
  // copy of its cells is made). `with_outputs` false: the cells come without their outputs
  // (Notebook::Snapshot).
  std::string SerializedNotebook(bool with_outputs = true) const ABSL_LOCKS_EXCLUDED(mutex_);
  // The notebook as .ipynb (nbformat 4.5), outputs included.
  std::string ExportNotebook() const ABSL_LOCKS_EXCLUDED(mutex_);
  // Loads cells from .ipynb bytes: appended, or replacing every cell (`replace`). All or
  // nothing: INVALID_ARGUMENT naming what and where for bad input.
  absl::Status ImportNotebook(const std::string& ipynb, bool replace) ABSL_LOCKS_EXCLUDED(mutex_);

  // Execution. The returned status is for requests that can't be queued (unknown cell,
  // markdown cell, empty source, dead kernel); otherwise `done` is called exactly once.
  absl::Status RunCell(const std::string& cell_id, ExecutionOptions options, ResultCallback done)
      ABSL_LOCKS_EXCLUDED(mutex_);
  absl::Status Execute(const std::string& code, ExecutionOptions options, ResultCallback done)
      ABSL_LOCKS_EXCLUDED(mutex_);
  absl::Status RunAll(bool stop_on_error, absl::Duration per_cell_timeout, RunAllCallback done)
      ABSL_LOCKS_EXCLUDED(mutex_);
  // RunCell with a cascade (DEPENDENTS or UPSTREAM; NONE is RunCell): the cells the graph
  // names are queued with it, each bounded by `per_cell_timeout`, the first failure cancels the
  // rest, and `done` gets the cell's result with the others in `cascade`.
  absl::Status RunCellCascade(const std::string& cell_id, v1::Cascade cascade,
                              absl::Duration per_cell_timeout, ResultCallback done)
      ABSL_LOCKS_EXCLUDED(mutex_);
  // Runs every STALE code cell and every cell depending on one, in notebook order.
  absl::Status RunStale(bool stop_on_error, absl::Duration per_cell_timeout, RunAllCallback done)
      ABSL_LOCKS_EXCLUDED(mutex_);

  // Interrupts the running execution; queued ones end CANCELLED.
  absl::Status Interrupt() ABSL_LOCKS_EXCLUDED(mutex_);
  // Replaces the kernel process with a fresh one: executions CANCELLED, cells kept and STALE.
  absl::Status Restart(DoneCallback done) ABSL_LOCKS_EXCLUDED(mutex_);
  // Graceful shutdown; `done` once the process is reaped and the event log closed. `reason`
  // goes into the SHUTTING_DOWN kernel_status event.
  void Shutdown(absl::AnyInvocable<void()> done,
                const std::string& reason = "shutdown requested") ABSL_LOCKS_EXCLUDED(mutex_);

  // A client used this kernel: it is not idle.
  void Touch() ABSL_LOCKS_EXCLUDED(mutex_);
  // Why this kernel should be shut down now (idle past its timeout with nothing running and
  // no reader, or older than `max_lifetime`), or nullopt.
  std::optional<std::string> CullReason(absl::Time now, absl::Duration max_lifetime) const
      ABSL_LOCKS_EXCLUDED(mutex_);

 private:
  struct Execution;
  struct GroupRun;
  using Deferred = std::vector<absl::AnyInvocable<void()>>;

  // One cell of a group run (RunAll, RunStale, a cascade) and why it runs.
  struct GroupCell {
    std::string cell_id;
    v1::RunTrigger trigger = v1::RUN_TRIGGER_REQUESTED;
    std::string cause_cell_id;
    std::string reason;
  };

  explicit KernelSession(Params params);

  absl::Status CheckCanExecuteLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  std::shared_ptr<Execution> NewExecutionLocked(const std::string& cell_id, std::string code,
                                                ExecutionOptions options)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // The cell's source if it can be run (a code cell with code), else why not.
  absl::StatusOr<std::string> RunnableSourceLocked(const std::string& cell_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Queues `cells` as one group: `run` collects their results and answers once all ended.
  void RunGroupLocked(const std::vector<GroupCell>& cells, absl::Duration per_cell_timeout,
                      std::shared_ptr<GroupRun> run, Deferred& deferred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Asks the analyzer about every cell whose analysis is PENDING (once per source); a source
  // it remembers is answered at once.
  void RequestAnalysesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Stores the analysis of `cell_id`'s `source`, which is no longer in flight; true if the
  // notebook took it (the cell is still PENDING with that source).
  bool ApplyAnalysisLocked(const std::string& cell_id, const std::string& source,
                           absl::StatusOr<kernel::CellAnalysis> analysis)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void OnAnalysis(const std::string& cell_id, const std::string& source,
                  absl::StatusOr<kernel::CellAnalysis> analysis) ABSL_LOCKS_EXCLUDED(mutex_);
  void EnqueueLocked(std::shared_ptr<Execution> execution) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void StartNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void OnIopub(uint64_t generation, const std::string& execution_id, protocol::Message message)
      ABSL_LOCKS_EXCLUDED(mutex_);
  // IOPub output whose request has already finished (e.g. from a background thread).
  void OnLateIopub(uint64_t generation, protocol::Message message) ABSL_LOCKS_EXCLUDED(mutex_);
  // Stores an output message's effect in `outputs` (may be null: event only) and the event log.
  void ApplyOutputLocked(const std::string& cell_id, const std::string& execution_id,
                         notebook::OutputList* outputs, notebook::OutputList* scratch_outputs,
                         notebook::IopubEffect effect) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void OnExecutionDone(uint64_t generation, const std::string& execution_id,
                       kernel::RequestCompletion completion) ABSL_LOCKS_EXCLUDED(mutex_);
  void OnTimeout(uint64_t generation, const std::string& execution_id) ABSL_LOCKS_EXCLUDED(mutex_);
  void OnRespondBy(const std::string& execution_id) ABSL_LOCKS_EXCLUDED(mutex_);
  // Output bytes after which an execution is a flood.
  int64_t OutputHardCap() const;
  void OnOutputFlood(uint64_t generation, const std::string& execution_id)
      ABSL_LOCKS_EXCLUDED(mutex_);
  // Interrupts the running execution and arms the escalation: killed if it ignores the interrupt.
  void InterruptRunningLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void OnInterruptIgnored(uint64_t generation, const std::string& execution_id)
      ABSL_LOCKS_EXCLUDED(mutex_);
  void OnHeartbeat(uint64_t generation, bool responsive) ABSL_LOCKS_EXCLUDED(mutex_);
  void OnSilentTooLong(uint64_t generation, uint64_t silence) ABSL_LOCKS_EXCLUDED(mutex_);
  // Answers the caller now with TIMEOUT; the execution itself goes on being tracked.
  void ReportEarlyLocked(Execution& execution, const std::string& detail, Deferred& deferred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // The execution's result as it stands. `take_scratch`: an Execute's own outputs are moved
  // into it rather than copied (for its end: nothing reads them after).
  v1::ExecutionResult BuildResultLocked(Execution& execution, v1::ExecutionStatus status,
                                        const std::string& detail, bool take_scratch = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void FinishLocked(const std::shared_ptr<Execution>& execution, v1::ExecutionStatus status,
                    std::string detail, Deferred& deferred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void SortSkippedInNotebookOrderLocked(v1::RunAllResult& result) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void CancelQueuedLocked(v1::ExecutionStatus status, const std::string& detail,
                          Deferred& deferred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void LaunchKernelLocked(DoneCallback done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void OnKernelExit(uint64_t generation, const std::string& reason) ABSL_LOCKS_EXCLUDED(mutex_);
  // The kernel process died unexpectedly: DEAD, queue cancelled, and a restart scheduled when
  // the restart policy allows one.
  void OnDeathLocked(const std::string& reason, Deferred& deferred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  absl::Status RestartFor(const std::string& reason, DoneCallback done)
      ABSL_LOCKS_EXCLUDED(mutex_);
  void SetStateLocked(v1::KernelState state, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void AppendEventLocked(v1::OutputEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void TouchLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // What both restores take from the saved state: cells (as the caller adjusted them), notebook
  // metadata and cell extras.
  absl::Status LoadSavedNotebookLocked(const internal::KernelState& state,
                                       std::vector<v1::Cell> cells)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Restore for a kernel that is re-attached (Params::attach).
  absl::Status RestoreAttached(const internal::KernelState& state, std::vector<v1::Cell> cells)
      ABSL_LOCKS_EXCLUDED(mutex_);
  // The state to save changed: written soon (`urgent`) or within the store's interval. Numbers
  // the change (changes_). Every change to what SaveState returns goes through it.
  void MarkChangedLocked(bool urgent) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Runs `then` once a saved state includes change number `change`.
  void AfterSavedThrough(uint64_t change, absl::AnyInvocable<void()> then) const
      ABSL_LOCKS_EXCLUDED(mutex_);
  // The notebook metadata with `kernelspec` and `language_info` filled in when missing.
  std::string MetadataForExportLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  static void RunDeferred(Deferred& deferred);
  // Defers `reply` until the state it reports is saved (AfterSaved).
  void ReplyWhenSavedLocked(absl::AnyInvocable<void()> reply, Deferred& deferred) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  // The session's lock, with the event log's wakeups held until after it is released: a reader
  // woken by an event writes to its client's stream, which never happens under the lock (nor
  // before an execute_request, sent under it, is on its way to the kernel).
  class ABSL_SCOPED_LOCKABLE Locked {
   public:
    explicit Locked(const KernelSession& session) ABSL_EXCLUSIVE_LOCK_FUNCTION(session.mutex_)
        : wakeups_(*session.event_log_), lock_(&session.mutex_) {}
    ~Locked() ABSL_UNLOCK_FUNCTION() {}
    Locked(const Locked&) = delete;
    Locked& operator=(const Locked&) = delete;

   private:
    EventLog::WakeupsDeferred wakeups_;  // destroyed after `lock_`, so run after the release
    absl::MutexLock lock_;
  };

  Params params_;
  const GatewayConfig& config_;
  kernel::KernelIoLoop& loop_;
  std::shared_ptr<EventLog> event_log_;
  absl::Time created_at_;  // set once, before the session is registered (Claim)

  mutable absl::Mutex mutex_;
  notebook::Notebook notebook_ ABSL_GUARDED_BY(mutex_);
  std::unique_ptr<kernel::Kernel> kernel_ ABSL_GUARDED_BY(mutex_);
  uint64_t generation_ ABSL_GUARDED_BY(mutex_) = 0;  // bumped per kernel process
  uint64_t changes_ ABSL_GUARDED_BY(mutex_) = 0;     // to the saved state (MarkChangedLocked)
  v1::KernelState state_ ABSL_GUARDED_BY(mutex_) = v1::KERNEL_STATE_STARTING;
  std::string last_death_reason_ ABSL_GUARDED_BY(mutex_);
  uint64_t death_handled_generation_ ABSL_GUARDED_BY(mutex_) = 0;
  std::deque<absl::Time> recent_deaths_ ABSL_GUARDED_BY(mutex_);  // within the policy window
  int restart_count_ ABSL_GUARDED_BY(mutex_) = 0;
  // Counts heartbeat losses: a kill scheduled for one silence is void once it ended.
  uint64_t silences_ ABSL_GUARDED_BY(mutex_) = 0;
  bool responsive_ ABSL_GUARDED_BY(mutex_) = true;
  int execution_count_ ABSL_GUARDED_BY(mutex_) = 0;
  // The running kernel process, once it answered; saved so that a later gateway can re-attach
  // it (with GatewayConfig::kernels_outlive_gateway).
  std::optional<kernel::KernelProcess> process_ ABSL_GUARDED_BY(mutex_);
  // Re-attached while a cell ran: the kernel may still be running it, unseen, until an
  // execution of this gateway finishes (the kernel runs them in order).
  bool uncaptured_execution_ ABSL_GUARDED_BY(mutex_) = false;
  absl::Time last_activity_at_ ABSL_GUARDED_BY(mutex_);
  std::shared_ptr<Execution> running_ ABSL_GUARDED_BY(mutex_);
  std::deque<std::shared_ptr<Execution>> queue_ ABSL_GUARDED_BY(mutex_);
  bool closed_ ABSL_GUARDED_BY(mutex_) = false;
  struct FinishedRequest {
    std::string kernel_msg_id;
    std::string cell_id;
    std::string execution_id;
  };
  static constexpr size_t kRecentlyFinishedKept = 64;
  std::deque<FinishedRequest> recently_finished_ ABSL_GUARDED_BY(mutex_);
  // Per cell id: the .ipynb cell keys v1::Cell has no field for (attachments, unknown keys).
  std::map<std::string, std::string> cell_extras_ ABSL_GUARDED_BY(mutex_);
  // Per cell id: the source of its latest analysis request not answered yet.
  std::map<std::string, std::string> analyses_in_flight_ ABSL_GUARDED_BY(mutex_);
  int analyses_unanswered_ ABSL_GUARDED_BY(mutex_) = 0;
  std::vector<absl::AnyInvocable<void()>> analysis_waiters_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace cellgate::session
