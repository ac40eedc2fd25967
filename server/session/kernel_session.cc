#include "server/session/kernel_session.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "server/kernel/uid_pool.h"
#include "server/notebook/iopub_output.h"
#include "server/notebook/ipynb.h"
#include "server/notebook/text_render.h"
#include "server/obs/log.h"
#include "server/obs/metrics.h"
#include "server/protocol/message.h"
#include "server/protocol/wire_codec.h"

namespace cellgate::session {
namespace {

using google::protobuf::util::TimeUtil;

google::protobuf::Timestamp ToProtoTime(absl::Time time) {
  return TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(time));
}

std::string NewExecutionId() {
  std::string id = protocol::NewMessageId();
  std::erase(id, '-');
  return id.substr(0, 16);
}

const char* StatusWord(v1::ExecutionStatus status) {
  switch (status) {
    case v1::EXECUTION_STATUS_TIMEOUT: return "timed out";
    case v1::EXECUTION_STATUS_INTERRUPTED: return "interrupted";
    case v1::EXECUTION_STATUS_KERNEL_DIED: return "kernel died";
    case v1::EXECUTION_STATUS_CANCELLED: return "cancelled";
    default: return "";
  }
}

// What an IOPub message does to outputs. The kernel hands output messages over with their
// content unparsed (kernel::RequestCallbacks::on_iopub); anything else comes parsed. Called
// before the session's lock is taken: a big output's parse holds up nobody. The content text
// is used up: a stream's becomes the output's text where it lies.
absl::StatusOr<notebook::IopubEffect> ReadIopubEffect(protocol::Message& message) {
  if (message.content_text.has_value()) {
    return notebook::ParseIopubOutputText(message.msg_type(), std::move(*message.content_text),
                                          protocol::WireLimits().max_json_depth);
  }
  return notebook::ParseIopubOutput(message.msg_type(), message.content);
}

// Whether a cell's source has anything to run (empty and whitespace-only sources are not sent).
bool HasCode(const std::string& source) {
  return source.find_first_not_of(" \t\r\n") != std::string::npos;
}

// Why a cell could not be analysed, or what its analysis says, as the notebook keeps it.
notebook::Notebook::Analysis ToNotebookAnalysis(absl::StatusOr<kernel::CellAnalysis> result) {
  notebook::Notebook::Analysis analysis;
  if (!result.ok()) {
    analysis.status = v1::ANALYSIS_STATUS_UNAVAILABLE;
    analysis.detail = std::string(result.status().message());
    return analysis;
  }
  if (!result->error.empty() && !result->opaque) {
    analysis.status = v1::ANALYSIS_STATUS_SYNTAX_ERROR;
    analysis.detail = std::move(result->error);
    return analysis;
  }
  analysis.status = result->opaque ? v1::ANALYSIS_STATUS_OPAQUE : v1::ANALYSIS_STATUS_ANALYZED;
  analysis.defines = std::move(result->defines);
  analysis.uses = std::move(result->uses);
  analysis.detail = absl::StrJoin(result->reasons, "; ");
  if (!result->error.empty()) absl::StrAppend(&analysis.detail, ": ", result->error);
  return analysis;
}

notebook::Notebook::DependencyTracking TrackingFor(const KernelSession::Params& params) {
  if (params.analyzer == nullptr) {
    return {false, "dependency analysis is off (--dependency-analysis=false)"};
  }
  const std::string& language = params.launch.spec.language;
  if (!absl::EqualsIgnoreCase(language, "python")) {
    return {false, absl::StrCat("the kernel's language (", language.empty() ? "unknown" : language,
                                ") has no dependency analysis")};
  }
  return {true, ""};
}

}  // namespace

// A group of executions answered together (RunAll, RunStale, a RunCell cascade): their results
// in cell order and the cells it did not run.
struct KernelSession::GroupRun {
  bool stop_on_error = true;
  int remaining = 0;
  bool stopped = false;
  v1::SkipReason stop_reason = v1::SKIP_REASON_PREVIOUS_FAILED;
  v1::RunAllResult result;
  RunAllCallback done;
  // A RunCell cascade: the requested cell's execution, whose result is the reply itself.
  std::string requested_execution_id;
  std::optional<v1::ExecutionResult> requested_result;
  ResultCallback cascade_done;
};

struct KernelSession::Execution {
  std::string execution_id;
  std::string cell_id;  // empty for Execute
  std::string code;
  ExecutionOptions options;
  ResultCallback done;
  std::shared_ptr<GroupRun> group;  // null unless part of one
  v1::RunTrigger trigger = v1::RUN_TRIGGER_REQUESTED;
  std::string cause_cell_id;
  std::string reason = "requested";
  std::unique_ptr<notebook::OutputList> scratch_outputs;  // Execute only
  v1::CellState state_before_queued = v1::CELL_STATE_NEW;
  absl::Time started_at;
  int execution_count = 0;
  uint64_t generation = 0;
  bool started = false;
  bool interrupted = false;
  bool timed_out = false;
  bool reported = false;  // the caller already has its result (KEEP_RUNNING timeout)
  std::string kernel_msg_id;  // the execute_request's msg_id
  bool flooded = false;       // interrupted for printing past the hard cap
  bool escalation_armed = false;  // interrupted; killed if still running after the grace
  bool escalated = false;         // ignored the interrupt: the kernel was killed
};

std::shared_ptr<KernelSession> KernelSession::Create(Params params) {
  return std::shared_ptr<KernelSession>(new KernelSession(std::move(params)));
}

KernelSession::KernelSession(Params params)
    : params_(std::move(params)),
      config_(*params_.config),
      loop_(*params_.loop),
      event_log_(std::make_shared<EventLog>(
          EventLog::Options{config_.event_log_max_bytes, params_.first_seq})),
      created_at_(params_.created_at.value_or(absl::Now())),
      notebook_(notebook::Notebook::Limits{config_.max_cells_per_kernel, config_.max_source_bytes,
                                           config_.max_execution_output_bytes},
                TrackingFor(params_)),
      last_activity_at_(created_at_) {}

KernelSession::~KernelSession() {
  // The last reference may go inside a callback of this very kernel: destroy it from the loop.
  if (kernel_ != nullptr) loop_.Post([kernel = std::move(kernel_)]() mutable { kernel.reset(); });
}

void KernelSession::RunDeferred(Deferred& deferred) {
  for (auto& action : deferred) action();
  deferred.clear();
}

void KernelSession::Start(DoneCallback done) {
  Deferred deferred;
  {
    Locked lock(*this);
    LaunchKernelLocked(std::move(done));
  }
  RunDeferred(deferred);
}

void KernelSession::LaunchKernelLocked(DoneCallback done) {
  const uint64_t generation = ++generation_;
  process_.reset();
  kernel::KernelOptions options;
  options.spec = params_.launch.spec;
  options.kernel_dir = params_.launch.kernel_dir;
  options.remove_kernel_dir_on_close = false;  // the workspace outlives restarts
  options.policy = params_.launch.policy;
  options.env = params_.launch.env;
  options.bwrap_path = params_.launch.bwrap_path;
  options.startup_timeout = params_.launch.startup_timeout;
  options.cgroups = params_.launch.cgroups;
  options.cgroup_memory_bytes = params_.launch.cgroup_memory_bytes;
  options.die_with_parent = !config_.kernels_outlive_gateway;

  std::weak_ptr<KernelSession> weak = weak_from_this();
  kernel::KernelEvents events;
  events.on_unrouted_iopub = [weak, generation](protocol::Message message) {
    if (auto self = weak.lock()) self->OnLateIopub(generation, std::move(message));
  };
  events.on_exit = [weak, generation](const kernel::ExitStatus&, const std::string& reason) {
    if (auto self = weak.lock()) self->OnKernelExit(generation, reason);
  };
  events.on_heartbeat = [weak, generation](bool responsive) {
    if (auto self = weak.lock()) self->OnHeartbeat(generation, responsive);
  };
  responsive_ = true;
  std::optional<kernel::KernelProcess> attach = std::exchange(params_.attach, std::nullopt);
  const bool attaching = attach.has_value();
  auto on_ready = [weak, generation, attaching,
                   done = std::move(done)](absl::Status status) mutable {
    auto self = weak.lock();
    if (!self) return;
    Deferred deferred;
    {
      Locked lock(*self);
      if (generation == self->generation_ && !self->closed_ && attaching && !status.ok()) {
        // Gone, or not answering: a fresh kernel takes its place, as without re-attaching.
        self->notebook_.MarkAllStale("kernel restarted: the process that outlived the gateway "
                                     "could not be re-attached");
        self->execution_count_ = 0;
        self->SetStateLocked(
            v1::KERNEL_STATE_STARTING,
            absl::StrCat("could not re-attach the kernel process that outlived the gateway (",
                         status.message(), "): a fresh kernel is starting; cells that ran are "
                         "STALE"));
        // Inside this kernel's own callback: destroy its handle (which kills it) later.
        self->loop_.Post([kernel = std::move(self->kernel_)]() mutable { kernel.reset(); });
        self->LaunchKernelLocked(std::move(done));
        return;
      }
      if (generation == self->generation_ && !self->closed_) {
        if (status.ok()) {
          self->process_ = self->kernel_->process();
          self->SetStateLocked(v1::KERNEL_STATE_IDLE, "");
          // Executions asked for while the kernel was (re)starting start now.
          self->StartNextLocked();
        } else {
          self->last_death_reason_ = std::string(status.message());
          self->SetStateLocked(v1::KERNEL_STATE_DEAD, self->last_death_reason_);
          self->CancelQueuedLocked(v1::EXECUTION_STATUS_KERNEL_DIED, self->last_death_reason_,
                                   deferred);
        }
      }
    }
    RunDeferred(deferred);
    if (done) done(status);
  };
  kernel_ = attaching ? kernel::Kernel::Attach(loop_, std::move(options), *std::move(attach),
                                               std::move(events), std::move(on_ready))
                      : kernel::Kernel::Start(loop_, std::move(options), std::move(events),
                                              std::move(on_ready));
}

void KernelSession::SetStateLocked(v1::KernelState state, const std::string& reason) {
  if (state == state_ && reason.empty()) return;
  state_ = state;
  v1::OutputEvent event;
  event.mutable_kernel_status()->set_state(state);
  event.mutable_kernel_status()->set_reason(reason);
  AppendEventLocked(std::move(event));
}

void KernelSession::AppendEventLocked(v1::OutputEvent event) {
  event.set_kernel_id(params_.kernel_id);
  // Only what the notebook keeps is saved: a cell's outputs within the store's interval
  // however many, its end at once. Execute (no cell) changes nothing saved, except through a
  // display update, which may reach any cell; a kernel status may come with cells made STALE.
  const bool of_a_cell = !event.cell_id().empty();
  const bool urgent = of_a_cell && event.has_execution_finished();
  const bool changed = of_a_cell || event.has_display_update() || event.has_kernel_status();
  event_log_->Append(std::move(event));
  if (changed) MarkChangedLocked(urgent);
}

void KernelSession::MarkChangedLocked(bool urgent) {
  ++changes_;
  if (params_.state_store != nullptr) params_.state_store->MarkChanged(params_.kernel_id, urgent);
}

void KernelSession::AfterSaved(absl::AnyInvocable<void()> then) const {
  uint64_t change = 0;
  {
    Locked lock(*this);
    change = changes_;
  }
  AfterSavedThrough(change, std::move(then));
}

void KernelSession::AfterSavedThrough(uint64_t change, absl::AnyInvocable<void()> then) const {
  if (params_.state_store == nullptr) {
    then();
    return;
  }
  params_.state_store->AfterWritten(params_.kernel_id, change, std::move(then));
}

kernel::Workspace KernelSession::workspace() const {
  return kernel::Workspace({.root = params_.launch.kernel_dir,
                            .uid = params_.launch.policy.uid,
                            .gid = params_.launch.policy.gid,
                            .max_file_bytes = config_.max_upload_bytes,
                            .max_workspace_bytes = config_.max_workspace_bytes});
}

void KernelSession::WhenAnalyzed(absl::AnyInvocable<void()> then) {
  {
    Locked lock(*this);
    if (analyses_unanswered_ > 0) {
      analysis_waiters_.push_back(std::move(then));
      return;
    }
  }
  then();
}

void KernelSession::RequestAnalysesLocked() {
  if (!notebook_.tracks_dependencies()) return;
  notebook_.RetryUnavailableAnalyses();
  bool answered_at_once = false;
  for (notebook::Notebook::PendingAnalysis& pending : notebook_.PendingAnalyses()) {
    // A source analysed before (a re-import, a restore, the same cell in another kernel) is
    // answered in this change: one save, and the caller's reply already has the analysis.
    if (std::optional<kernel::CellAnalysis> cached = params_.analyzer->Cached(pending.source)) {
      answered_at_once |= ApplyAnalysisLocked(pending.cell_id, pending.source, *std::move(cached));
      continue;
    }
    auto [it, inserted] = analyses_in_flight_.try_emplace(pending.cell_id, pending.source);
    if (!inserted) {
      if (it->second == pending.source) continue;  // already asked
      it->second = pending.source;
    }
    ++analyses_unanswered_;
    std::weak_ptr<KernelSession> weak = weak_from_this();
    std::string source = pending.source;  // one copy for the analyzer, one to compare with
    params_.analyzer->Analyze(
        std::move(source), [weak, cell_id = std::move(pending.cell_id),
                            source = std::move(pending.source)](
                               absl::StatusOr<kernel::CellAnalysis> analysis) mutable {
          if (auto self = weak.lock()) self->OnAnalysis(cell_id, source, std::move(analysis));
        });
  }
  if (answered_at_once) MarkChangedLocked(/*urgent=*/false);
}

bool KernelSession::ApplyAnalysisLocked(const std::string& cell_id, const std::string& source,
                                        absl::StatusOr<kernel::CellAnalysis> analysis) {
  if (auto it = analyses_in_flight_.find(cell_id);
      it != analyses_in_flight_.end() && it->second == source) {
    analyses_in_flight_.erase(it);
  }
  return notebook_.SetAnalysis(cell_id, source, ToNotebookAnalysis(std::move(analysis)));
}

void KernelSession::OnAnalysis(const std::string& cell_id, const std::string& source,
                               absl::StatusOr<kernel::CellAnalysis> analysis) {
  std::vector<absl::AnyInvocable<void()>> waiters;
  {
    Locked lock(*this);
    if (ApplyAnalysisLocked(cell_id, source, std::move(analysis))) {
      MarkChangedLocked(/*urgent=*/false);
    }
    if (--analyses_unanswered_ == 0) waiters.swap(analysis_waiters_);
  }
  for (auto& waiter : waiters) waiter();
}

void KernelSession::ReplyWhenSavedLocked(absl::AnyInvocable<void()> reply,
                                         Deferred& deferred) const {
  // Run after the lock is released: the store may call `reply` at once. The change it reports
  // is numbered by now, so a write whose snapshot is taken after this (even one started
  // already, waiting for the lock) answers it.
  deferred.push_back([self = shared_from_this(), change = changes_,
                      reply = std::move(reply)]() mutable {
    self->AfterSavedThrough(change, std::move(reply));
  });
}

StateStore::KernelSnapshot KernelSession::SaveState() const {
  StateStore::KernelSnapshot snapshot;
  internal::KernelState& state = snapshot.state;
  absl::ReaderMutexLock lock(&mutex_);  // only reads: a reply can be copied meanwhile
  snapshot.change = changes_;
  state.set_kernel_id(params_.kernel_id);
  *state.mutable_start_request() = params_.start_request;
  *state.mutable_created_at() = ToProtoTime(created_at_);
  v1::Notebook* notebook = state.mutable_notebook();  // merged with the cells when written
  notebook->set_kernel_id(params_.kernel_id);
  notebook->set_last_seq(event_log_->last_seq());
  snapshot.notebook_bytes = notebook_.SerializedSnapshot();
  state.mutable_cell_extras()->insert(cell_extras_.begin(), cell_extras_.end());
  if (config_.kernels_outlive_gateway && process_.has_value()) {
    internal::KernelProcessState* process = state.mutable_process();
    process->set_pid(process_->pid);
    process->set_start_time(process_->start_time);
    process->set_uid(params_.launch.policy.uid);
    process->set_kernel_dir(params_.launch.kernel_dir);
    const protocol::ConnectionInfo& connection = process_->connection;
    process->set_transport(connection.transport);
    process->set_ip(connection.ip);
    process->set_shell_port(connection.shell_port);
    process->set_iopub_port(connection.iopub_port);
    process->set_stdin_port(connection.stdin_port);
    process->set_control_port(connection.control_port);
    process->set_hb_port(connection.hb_port);
    process->set_key(connection.key);
    process->set_signature_scheme(connection.signature_scheme);
    for (const std::string& dir : process_->cgroup_dirs) process->add_cgroup_dirs(dir);
  }
  return snapshot;
}

absl::Status KernelSession::Restore(const internal::KernelState& state) {
  std::vector<v1::Cell> cells(state.notebook().cells().begin(), state.notebook().cells().end());
  if (params_.attach.has_value()) return RestoreAttached(state, std::move(cells));
  int interrupted = 0;
  for (v1::Cell& cell : cells) {
    switch (cell.state()) {
      case v1::CELL_STATE_RUNNING:
        cell.set_state(v1::CELL_STATE_ERROR);
        cell.mutable_last_run()->set_status(v1::EXECUTION_STATUS_KERNEL_DIED);
        ++interrupted;
        break;
      case v1::CELL_STATE_QUEUED:
        cell.set_state(v1::CELL_STATE_CANCELLED);
        cell.mutable_last_run()->set_status(v1::EXECUTION_STATUS_CANCELLED);
        break;
      case v1::CELL_STATE_OK:
      case v1::CELL_STATE_ERROR:
      case v1::CELL_STATE_CANCELLED:
        cell.set_state(v1::CELL_STATE_STALE);
        cell.set_stale_reason("the gateway restarted and the kernel process is a fresh one");
        break;
      default:
        break;
    }
  }
  Locked lock(*this);
  if (absl::Status status = LoadSavedNotebookLocked(state, std::move(cells)); !status.ok()) {
    return status;
  }
  std::string reason =
      "restored after a gateway restart: a fresh kernel is starting; cells that ran are STALE";
  if (interrupted > 0) {
    absl::StrAppend(&reason, "; the cell that was running ends with KERNEL_DIED");
  }
  SetStateLocked(v1::KERNEL_STATE_STARTING, reason);
  return absl::OkStatus();
}

absl::Status KernelSession::LoadSavedNotebookLocked(const internal::KernelState& state,
                                                    std::vector<v1::Cell> cells) {
  if (absl::Status status = notebook_.RestoreCells(std::move(cells)); !status.ok()) return status;
  notebook_.set_metadata_json(state.notebook().metadata()).IgnoreError();
  cell_extras_ = {state.cell_extras().begin(), state.cell_extras().end()};
  RequestAnalysesLocked();  // cells saved before their analysis arrived
  return absl::OkStatus();
}

absl::Status KernelSession::RestoreAttached(const internal::KernelState& state,
                                            std::vector<v1::Cell> cells) {
  int cut_off = 0;
  int execution_count = 0;
  for (v1::Cell& cell : cells) {
    execution_count = std::max(execution_count, cell.execution_count());
    if (cell.state() == v1::CELL_STATE_RUNNING || cell.state() == v1::CELL_STATE_QUEUED) {
      if (cell.state() == v1::CELL_STATE_RUNNING) ++cut_off;
      cell.set_state(v1::CELL_STATE_CANCELLED);
      cell.mutable_last_run()->set_status(v1::EXECUTION_STATUS_CANCELLED);
    }
  }
  Locked lock(*this);
  if (absl::Status status = LoadSavedNotebookLocked(state, std::move(cells)); !status.ok()) {
    return status;
  }
  execution_count_ = execution_count;
  uncaptured_execution_ = cut_off > 0;
  std::string reason =
      "restored after a gateway restart: re-attaching the kernel process, which went on running "
      "(its memory is intact)";
  if (cut_off > 0) {
    absl::StrAppend(&reason, "; the cell that was running ends CANCELLED: the kernel may still "
                             "be running it, and its output after the old gateway stopped was "
                             "not captured");
  }
  SetStateLocked(v1::KERNEL_STATE_STARTING, reason);
  return absl::OkStatus();
}

void KernelSession::Detach() {
  Deferred deferred;
  std::unique_ptr<kernel::Kernel> kernel;
  bool left_running = false;
  absl::AnyInvocable<void(bool)> on_closed;
  {
    Locked lock(*this);
    if (closed_ || state_ == v1::KERNEL_STATE_SHUTTING_DOWN) return;
    ++generation_;  // nothing of the process reaches this session any more
    const std::string why =
        "the gateway is stopping: the kernel goes on running and the next gateway re-attaches "
        "it; output from here on is not captured";
    if (running_ != nullptr) {
      std::shared_ptr<Execution> execution = std::move(running_);
      FinishLocked(execution, v1::EXECUTION_STATUS_CANCELLED, why, deferred);
    }
    CancelQueuedLocked(v1::EXECUTION_STATUS_CANCELLED, why, deferred);
    kernel = std::move(kernel_);
    left_running = kernel != nullptr && process_.has_value();
    if (!left_running) process_.reset();  // nothing to re-attach: the next gateway starts afresh
    closed_ = true;
    on_closed = std::move(params_.on_closed);
  }
  RunDeferred(deferred);
  if (left_running) kernel->Detach();
  kernel.reset();  // kills a process that was not left running
  event_log_->Close();
  if (on_closed) on_closed(left_running);
}

bool KernelSession::Claim(const v1::StartKernelRequest& request, int idle_timeout_seconds) {
  Locked lock(*this);
  if (closed_ || state_ != v1::KERNEL_STATE_IDLE) return false;
  params_.labels = {request.labels().begin(), request.labels().end()};
  params_.idle_timeout_seconds = idle_timeout_seconds;
  params_.start_request = request;
  params_.start_request.clear_notebook_ipynb();
  created_at_ = absl::Now();
  last_activity_at_ = created_at_;
  MarkChangedLocked(/*urgent=*/true);
  return true;
}

void KernelSession::TouchLocked() { last_activity_at_ = absl::Now(); }

v1::KernelState KernelSession::state() const {
  Locked lock(*this);
  return state_;
}

bool KernelSession::has_running_execution() const {
  Locked lock(*this);
  return running_ != nullptr || !queue_.empty();
}

size_t KernelSession::queued_executions() const {
  Locked lock(*this);
  return queue_.size();
}

v1::Kernel KernelSession::Describe() const {
  Locked lock(*this);
  v1::Kernel kernel;
  kernel.set_kernel_id(params_.kernel_id);
  kernel.set_kernel_spec(params_.launch.spec.name);
  kernel.set_state(state_);
  if (kernel_ != nullptr) {
    const kernel::KernelInfo info = kernel_->info();
    kernel.mutable_language()->set_name(info.language.empty() ? params_.launch.spec.language
                                                              : info.language);
    kernel.mutable_language()->set_version(info.language_version);
    kernel.set_pid(kernel_->pid());
    const kernel::IopubTraffic traffic = kernel_->iopub_traffic();
    v1::IopubTraffic* out = kernel.mutable_iopub_traffic();
    out->set_messages(traffic.messages);
    out->set_bytes(traffic.bytes);
    out->set_unparsed_output_bytes(traffic.unparsed_output_bytes);
    out->set_rejected_messages(traffic.rejected_messages);
  }
  *kernel.mutable_created_at() = ToProtoTime(created_at_);
  *kernel.mutable_last_activity_at() = ToProtoTime(last_activity_at_);
  kernel.set_execution_count(execution_count_);
  kernel.set_cell_count(notebook_.size());
  kernel.set_last_seq(event_log_->last_seq());
  kernel.set_oldest_retained_seq(event_log_->oldest_retained_seq());
  for (const auto& [key, value] : params_.labels) (*kernel.mutable_labels())[key] = value;
  const kernel::ResourceLimits& limits = params_.launch.policy.limits;
  v1::ResourceLimits* out = kernel.mutable_limits();
  out->set_address_space_bytes(static_cast<int64_t>(limits.address_space_bytes));
  out->set_cpu_seconds(static_cast<int64_t>(limits.cpu_seconds));
  out->set_max_processes(static_cast<int32_t>(limits.max_processes));
  out->set_max_open_files(static_cast<int32_t>(limits.max_open_files));
  out->set_max_file_size_bytes(static_cast<int64_t>(limits.max_file_size_bytes));
  // Only bubblewrap takes the network away; under rlimits a kernel always has it.
  out->set_allow_network(params_.launch.policy.mode != kernel::SandboxMode::kBwrap ||
                         params_.launch.policy.allow_network);
  kernel.set_restart_count(restart_count_);
  kernel.set_last_death_reason(last_death_reason_);
  kernel.set_idle_timeout_seconds(params_.idle_timeout_seconds);
  kernel.set_pending_executions(static_cast<int32_t>(queue_.size() + (running_ ? 1 : 0)));
  return kernel;
}

// ---- Cells ----

absl::StatusOr<v1::Cell> KernelSession::AddCell(const std::string& source, v1::CellType type,
                                                std::optional<int> index,
                                                const std::string& cell_id,
                                                const std::string& metadata) {
  Locked lock(*this);
  TouchLocked();
  auto cell = notebook_.AddCell(source, type, index, cell_id, metadata);
  if (cell.ok()) {
    MarkChangedLocked(/*urgent=*/true);
    RequestAnalysesLocked();
  }
  return cell;
}

absl::StatusOr<v1::Cell> KernelSession::EditCell(const std::string& cell_id,
                                                 std::optional<std::string> source,
                                                 v1::CellType type,
                                                 std::optional<std::string> metadata) {
  Locked lock(*this);
  TouchLocked();
  auto cell = notebook_.EditCell(cell_id, std::move(source), type, std::move(metadata));
  if (cell.ok()) {
    MarkChangedLocked(/*urgent=*/true);
    RequestAnalysesLocked();
  }
  return cell;
}

absl::Status KernelSession::DeleteCell(const std::string& cell_id) {
  Locked lock(*this);
  TouchLocked();
  absl::Status status = notebook_.DeleteCell(cell_id);
  if (status.ok()) {
    cell_extras_.erase(cell_id);
    MarkChangedLocked(/*urgent=*/true);
  }
  return status;
}

absl::StatusOr<v1::Cell> KernelSession::MoveCell(const std::string& cell_id, int index) {
  Locked lock(*this);
  TouchLocked();
  auto cell = notebook_.MoveCell(cell_id, index);
  if (cell.ok()) MarkChangedLocked(/*urgent=*/true);
  return cell;
}

absl::StatusOr<v1::Cell> KernelSession::GetCell(const std::string& cell_id) const {
  Locked lock(*this);
  return notebook_.GetCell(cell_id);
}

std::string KernelSession::SerializedNotebook(bool with_outputs) const {
  absl::ReaderMutexLock lock(&mutex_);
  std::string bytes = notebook_.SerializedSnapshot(/*with_graph=*/true, with_outputs);
  v1::Notebook rest;  // appended: a parser takes a message's fields in any order
  rest.set_kernel_id(params_.kernel_id);
  // Taken under the same lock that appends events: the snapshot reflects every event so far.
  rest.set_last_seq(event_log_->last_seq());
  rest.AppendToString(&bytes);
  return bytes;
}

std::string KernelSession::MetadataForExportLocked() const {
  nlohmann::json metadata = nlohmann::json::object();
  if (!notebook_.metadata_json().empty()) {
    metadata = nlohmann::json::parse(notebook_.metadata_json(), nullptr, false);
    if (!metadata.is_object()) metadata = nlohmann::json::object();
  }
  // What Jupyter front ends need to open the file with the right kernel, unless the notebook
  // already says.
  const kernel::KernelSpec& spec = params_.launch.spec;
  if (!metadata.contains("kernelspec")) {
    metadata["kernelspec"] = {{"name", spec.name},
                              {"display_name", spec.display_name},
                              {"language", spec.language}};
  }
  if (!metadata.contains("language_info") && kernel_ != nullptr) {
    const kernel::KernelInfo info = kernel_->info();
    if (info.raw.contains("language_info") && info.raw["language_info"].is_object()) {
      metadata["language_info"] = info.raw["language_info"];
    }
  }
  return metadata.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string KernelSession::ExportNotebook() const {
  Locked lock(*this);
  notebook::IpynbNotebook file;
  file.metadata_json = MetadataForExportLocked();
  v1::Notebook snapshot = notebook_.Snapshot(/*with_graph=*/false);
  for (v1::Cell& cell : *snapshot.mutable_cells()) {
    auto extras = cell_extras_.find(cell.cell_id());
    file.cell_extras.push_back(extras == cell_extras_.end() ? "" : extras->second);
    file.cells.push_back(std::move(cell));
  }
  return notebook::ExportIpynb(file);
}

absl::Status KernelSession::ImportNotebook(const std::string& ipynb, bool replace) {
  absl::StatusOr<notebook::IpynbNotebook> file =
      notebook::ParseIpynb(ipynb, config_.max_ipynb_bytes);
  if (!file.ok()) return file.status();
  notebook::Notebook::RemovedCells replaced;  // freed after the lock is released
  {
    Locked lock(*this);
    TouchLocked();
    const size_t loaded = file->cells.size();
    if (absl::Status status = notebook_.LoadCells(std::move(file->cells), replace, &replaced);
        !status.ok()) {
      return status;
    }
    if (replace) cell_extras_.clear();
    if (replace || notebook_.metadata_json().empty() || notebook_.metadata_json() == "{}") {
      notebook_.set_metadata_json(file->metadata_json).IgnoreError();
    }
    // The loaded cells are the notebook's last `loaded` ones, in file order (LoadCells may have
    // renamed ids that clashed, so go by position).
    const std::vector<std::string> ids = notebook_.cell_ids();
    const size_t first = ids.size() - loaded;
    for (size_t i = 0; i < loaded && i < file->cell_extras.size(); ++i) {
      if (!file->cell_extras[i].empty()) cell_extras_[ids[first + i]] = file->cell_extras[i];
    }
    MarkChangedLocked(/*urgent=*/true);
    RequestAnalysesLocked();
  }
  return absl::OkStatus();
}

// ---- Execution ----

absl::Status KernelSession::CheckCanExecuteLocked() const {
  switch (state_) {
    case v1::KERNEL_STATE_DEAD:
      return absl::FailedPreconditionError(
          absl::StrCat("kernel ", params_.kernel_id, " is dead (", last_death_reason_,
                       "); RestartKernel brings it back"));
    case v1::KERNEL_STATE_SHUTTING_DOWN:
      return absl::FailedPreconditionError(
          absl::StrCat("kernel ", params_.kernel_id, " is shutting down"));
    default:
      return absl::OkStatus();
  }
}

std::shared_ptr<KernelSession::Execution> KernelSession::NewExecutionLocked(
    const std::string& cell_id, std::string code, ExecutionOptions options) {
  auto execution = std::make_shared<Execution>();
  execution->execution_id = NewExecutionId();
  execution->cell_id = cell_id;
  execution->code = std::move(code);
  execution->options = options;
  if (cell_id.empty()) {
    execution->scratch_outputs =
        std::make_unique<notebook::OutputList>(config_.max_execution_output_bytes);
  }
  return execution;
}

absl::Status KernelSession::RunCell(const std::string& cell_id, ExecutionOptions options,
                                    ResultCallback done) {
  {
    Locked lock(*this);
    if (absl::Status status = CheckCanExecuteLocked(); !status.ok()) return status;
    absl::StatusOr<std::string> source = RunnableSourceLocked(cell_id);
    if (!source.ok()) return source.status();
    TouchLocked();
    auto execution = NewExecutionLocked(cell_id, *std::move(source), options);
    execution->done = std::move(done);
    EnqueueLocked(std::move(execution));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> KernelSession::RunnableSourceLocked(const std::string& cell_id) const {
  absl::StatusOr<const v1::Cell*> cell = notebook_.StoredCell(cell_id);
  if (!cell.ok()) return cell.status();
  if ((*cell)->cell_type() != v1::CELL_TYPE_CODE) {
    return absl::InvalidArgumentError(
        absl::StrCat("cell_id: cell ", cell_id, " is not a code cell"));
  }
  if (!HasCode((*cell)->source())) {
    return absl::InvalidArgumentError(
        absl::StrCat("cell_id: cell ", cell_id, " has no code to run"));
  }
  return (*cell)->source();
}

absl::Status KernelSession::RunCellCascade(const std::string& cell_id, v1::Cascade cascade,
                                           absl::Duration per_cell_timeout, ResultCallback done) {
  Deferred deferred;
  {
    Locked lock(*this);
    if (absl::Status status = CheckCanExecuteLocked(); !status.ok()) return status;
    if (absl::StatusOr<std::string> source = RunnableSourceLocked(cell_id); !source.ok()) {
      return source.status();
    }
    TouchLocked();
    const notebook::DependencyGraph& graph = notebook_.Graph();
    std::vector<GroupCell> cells;
    if (cascade == v1::CASCADE_UPSTREAM) {
      // The upstream cells that have not run OK, and those depending on one of them (running
      // the first makes them stale), then the cell.
      const std::vector<std::string> upstream = graph.Upstream(cell_id);
      std::vector<std::string> needed;
      for (const std::string& id : upstream) {
        const std::optional<v1::CellState> state = notebook_.state(id);
        if (state != v1::CELL_STATE_OK && state != v1::CELL_STATE_QUEUED &&
            state != v1::CELL_STATE_RUNNING) {
          needed.push_back(id);
        }
      }
      const std::vector<std::string> affected = graph.WithDependents(needed);
      const absl::flat_hash_set<std::string> chosen(affected.begin(), affected.end());
      for (const std::string& id : upstream) {
        if (!chosen.contains(id)) continue;
        cells.push_back({id, v1::RUN_TRIGGER_CASCADE_UPSTREAM, cell_id,
                         absl::StrCat("upstream of ", cell_id)});
      }
      cells.push_back({cell_id, v1::RUN_TRIGGER_REQUESTED, "", "requested"});
    } else {
      cells.push_back({cell_id, v1::RUN_TRIGGER_REQUESTED, "", "requested"});
      for (const std::string& id : graph.Dependents(std::span<const std::string>(&cell_id, 1))) {
        cells.push_back({id, v1::RUN_TRIGGER_CASCADE_DEPENDENT, cell_id,
                         absl::StrCat("cascade from ", cell_id)});
      }
    }
    auto run = std::make_shared<GroupRun>();
    run->cascade_done = std::move(done);
    run->result.set_note(notebook_.GraphNote());
    RunGroupLocked(cells, per_cell_timeout, std::move(run), deferred);
  }
  RunDeferred(deferred);
  return absl::OkStatus();
}

absl::Status KernelSession::RunStale(bool stop_on_error, absl::Duration per_cell_timeout,
                                     RunAllCallback done) {
  Deferred deferred;
  {
    Locked lock(*this);
    if (absl::Status status = CheckCanExecuteLocked(); !status.ok()) return status;
    TouchLocked();
    std::vector<GroupCell> cells;
    for (const std::string& id :
         notebook_.Graph().WithDependents(notebook_.CellIdsInState(v1::CELL_STATE_STALE))) {
      cells.push_back({id, v1::RUN_TRIGGER_RUN_STALE, "", "RunStale"});
    }
    auto run = std::make_shared<GroupRun>();
    run->stop_on_error = stop_on_error;
    run->done = std::move(done);
    run->result.set_note(notebook_.GraphNote());
    RunGroupLocked(cells, per_cell_timeout, std::move(run), deferred);
  }
  RunDeferred(deferred);
  return absl::OkStatus();
}

absl::Status KernelSession::Execute(const std::string& code, ExecutionOptions options,
                                    ResultCallback done) {
  {
    Locked lock(*this);
    if (absl::Status status = CheckCanExecuteLocked(); !status.ok()) return status;
    TouchLocked();
    auto execution = NewExecutionLocked("", code, options);
    execution->done = std::move(done);
    EnqueueLocked(std::move(execution));
  }
  return absl::OkStatus();
}

absl::Status KernelSession::RunAll(bool stop_on_error, absl::Duration per_cell_timeout,
                                   RunAllCallback done) {
  Deferred deferred;
  {
    Locked lock(*this);
    if (absl::Status status = CheckCanExecuteLocked(); !status.ok()) return status;
    TouchLocked();
    std::vector<GroupCell> cells;
    for (const std::string& cell_id : notebook_.cell_ids()) {
      cells.push_back({cell_id, v1::RUN_TRIGGER_RUN_ALL, "", "RunAll"});
    }
    auto run = std::make_shared<GroupRun>();
    run->stop_on_error = stop_on_error;
    run->done = std::move(done);
    RunGroupLocked(cells, per_cell_timeout, std::move(run), deferred);
  }
  RunDeferred(deferred);
  return absl::OkStatus();
}

void KernelSession::RunGroupLocked(const std::vector<GroupCell>& cells,
                                   absl::Duration per_cell_timeout, std::shared_ptr<GroupRun> run,
                                   Deferred& deferred) {
  std::vector<std::shared_ptr<Execution>> runs;
  for (const GroupCell& group_cell : cells) {
    absl::StatusOr<const v1::Cell*> cell = notebook_.StoredCell(group_cell.cell_id);
    if (!cell.ok() || (*cell)->cell_type() != v1::CELL_TYPE_CODE) continue;
    if (!HasCode((*cell)->source())) {
      v1::SkippedCell* skipped = run->result.add_skipped();
      skipped->set_cell_id(group_cell.cell_id);
      skipped->set_reason(v1::SKIP_REASON_EMPTY_SOURCE);
      continue;
    }
    auto execution =
        NewExecutionLocked(group_cell.cell_id, (*cell)->source(),
                           ExecutionOptions{per_cell_timeout, v1::ON_TIMEOUT_INTERRUPT});
    execution->group = run;
    execution->trigger = group_cell.trigger;
    execution->cause_cell_id = group_cell.cause_cell_id;
    execution->reason = group_cell.reason;
    if (run->cascade_done && group_cell.trigger == v1::RUN_TRIGGER_REQUESTED) {
      run->requested_execution_id = execution->execution_id;
    }
    runs.push_back(std::move(execution));
  }
  run->remaining = static_cast<int>(runs.size());
  if (runs.empty()) {  // (a cascade always has its own cell)
    deferred.push_back([done = std::exchange(run->done, nullptr),
                        result = std::move(run->result)]() mutable { done(std::move(result)); });
  }
  for (auto& execution : runs) EnqueueLocked(std::move(execution));
}

void KernelSession::EnqueueLocked(std::shared_ptr<Execution> execution) {
  if (!execution->cell_id.empty()) {
    if (absl::StatusOr<const v1::Cell*> cell = notebook_.StoredCell(execution->cell_id);
        cell.ok()) {
      execution->state_before_queued = (*cell)->state();
    }
    notebook_.QueueRun(execution->cell_id, execution->execution_id).IgnoreError();
  }
  v1::OutputEvent event;
  event.set_cell_id(execution->cell_id);
  event.set_execution_id(execution->execution_id);
  v1::ExecutionQueued* queued = event.mutable_execution_queued();
  queued->set_trigger(execution->trigger);
  queued->set_cause_cell_id(execution->cause_cell_id);
  queued->set_reason(execution->reason);
  AppendEventLocked(std::move(event));
  if (execution->options.respond_by != absl::InfiniteFuture()) {
    std::weak_ptr<KernelSession> weak = weak_from_this();
    loop_.PostAfter(execution->options.respond_by - absl::Now(),
                    [weak, execution_id = execution->execution_id]() {
                      if (auto self = weak.lock()) self->OnRespondBy(execution_id);
                    });
  }
  queue_.push_back(std::move(execution));
  if (running_ == nullptr) StartNextLocked();
}

void KernelSession::StartNextLocked() {
  if (running_ != nullptr || queue_.empty() || kernel_ == nullptr) return;
  if (state_ != v1::KERNEL_STATE_IDLE && state_ != v1::KERNEL_STATE_BUSY &&
      state_ != v1::KERNEL_STATE_STARTING) {
    return;
  }
  std::shared_ptr<Execution> execution = std::move(queue_.front());
  queue_.pop_front();
  running_ = execution;
  execution->started = true;
  execution->started_at = absl::Now();
  TouchLocked();
  execution->generation = generation_;
  if (!execution->cell_id.empty()) {
    notebook_.BeginRun(execution->cell_id, execution->execution_id,
                       ToProtoTime(execution->started_at)).IgnoreError();
  }
  if (state_ == v1::KERNEL_STATE_IDLE) SetStateLocked(v1::KERNEL_STATE_BUSY, "");

  std::weak_ptr<KernelSession> weak = weak_from_this();
  const uint64_t generation = generation_;
  const std::string execution_id = execution->execution_id;
  kernel::RequestCallbacks callbacks;
  callbacks.on_iopub = [weak, generation, execution_id](protocol::Message message) {
    if (auto self = weak.lock()) self->OnIopub(generation, execution_id, std::move(message));
  };
  callbacks.on_done = [weak, generation, execution_id](kernel::RequestCompletion completion) {
    if (auto self = weak.lock()) {
      self->OnExecutionDone(generation, execution_id, std::move(completion));
    }
  };
  // Past the hard cap, output is counted, not parsed or stored, and the execution interrupted.
  callbacks.output_budget_bytes = OutputHardCap();
  callbacks.on_output_flood = [weak, generation, execution_id](int64_t) {
    if (auto self = weak.lock()) self->OnOutputFlood(generation, execution_id);
  };
  // The gateway sends one execution at a time and applies RunAll's stop_on_error itself. The
  // kernel's own stop_on_error would abort whatever request reaches it just after an error —
  // here the next, unrelated, execution — so it is always off.
  execution->kernel_msg_id = kernel_->Execute(
      kernel::ExecuteRequest{.code = execution->code, .stop_on_error = false},
      std::move(callbacks));
  if (execution->options.timeout != absl::InfiniteDuration()) {
    loop_.PostAfter(execution->options.timeout, [weak, generation, execution_id]() {
      if (auto self = weak.lock()) self->OnTimeout(generation, execution_id);
    });
  }
}

void KernelSession::OnIopub(uint64_t generation, const std::string& execution_id,
                            protocol::Message message) {
  absl::StatusOr<notebook::IopubEffect> effect = ReadIopubEffect(message);
  if (!effect.ok()) return;
  Locked lock(*this);
  if (generation != generation_ || running_ == nullptr ||
      running_->execution_id != execution_id) {
    return;
  }
  Execution& execution = *running_;
  if (message.msg_type() == "execute_input") {
    execution.execution_count = message.content.value("execution_count", 0);
    execution_count_ = std::max(execution_count_, execution.execution_count);
    v1::OutputEvent event;
    event.set_cell_id(execution.cell_id);
    event.set_execution_id(execution_id);
    event.mutable_execution_started()->set_execution_count(execution.execution_count);
    AppendEventLocked(std::move(event));
    return;
  }
  notebook::OutputList* outputs = execution.cell_id.empty()
                                      ? execution.scratch_outputs.get()
                                      : notebook_.outputs(execution.cell_id);
  ApplyOutputLocked(execution.cell_id, execution_id, outputs, execution.scratch_outputs.get(),
                    *std::move(effect));
}

int64_t KernelSession::OutputHardCap() const {
  return config_.output_hard_cap_bytes > 0 ? config_.output_hard_cap_bytes
                                           : 8 * config_.max_execution_output_bytes;
}

void KernelSession::OnOutputFlood(uint64_t generation, const std::string& execution_id) {
  Locked lock(*this);
  if (generation != generation_ || running_ == nullptr ||
      running_->execution_id != execution_id || running_->flooded) {
    return;
  }
  // Output still arriving after the cap was crossed: interrupt it rather than let it run on
  // printing what nobody stores. (One big final flush of a finished cell is not a flood: the
  // kernel only counts output that comes after the cap was passed.)
  running_->flooded = true;
  running_->interrupted = true;
  InterruptRunningLocked();
}

void KernelSession::ApplyOutputLocked(const std::string& cell_id,
                                      const std::string& execution_id,
                                      notebook::OutputList* outputs,
                                      notebook::OutputList* scratch_outputs,
                                      notebook::IopubEffect effect) {
  v1::OutputEvent event;
  event.set_cell_id(cell_id);
  event.set_execution_id(execution_id);
  if (auto* output = std::get_if<v1::Output>(&effect)) {
    // display_data reusing a display_id also replaces the earlier outputs with that id.
    if (std::optional<v1::DisplayUpdate> implied = notebook::ImpliedDisplayUpdate(*output)) {
      notebook_.ApplyDisplayUpdateEverywhere(*implied);
      if (scratch_outputs != nullptr) scratch_outputs->UpdateDisplay(*implied);
      // It may change any cell's outputs, even from Execute (whose event has no cell).
      MarkChangedLocked(/*urgent=*/false);
    }
    if (outputs != nullptr) outputs->Append(*output);
    *event.mutable_output() = std::move(*output);
  } else if (auto* update = std::get_if<v1::DisplayUpdate>(&effect)) {
    notebook_.ApplyDisplayUpdateEverywhere(*update);
    if (scratch_outputs != nullptr) scratch_outputs->UpdateDisplay(*update);
    *event.mutable_display_update() = std::move(*update);
  } else if (auto* clear = std::get_if<v1::ClearOutput>(&effect)) {
    if (outputs != nullptr) outputs->Clear(clear->wait());
    *event.mutable_clear_output() = std::move(*clear);
  } else {
    return;
  }
  AppendEventLocked(std::move(event));
}

void KernelSession::OnLateIopub(uint64_t generation, protocol::Message message) {
  absl::StatusOr<notebook::IopubEffect> effect = ReadIopubEffect(message);
  if (!effect.ok() || std::holds_alternative<std::monostate>(*effect)) return;
  Locked lock(*this);
  if (generation != generation_) return;
  const std::string parent = message.parent_msg_id();
  for (const FinishedRequest& finished : recently_finished_) {
    if (finished.kernel_msg_id != parent) continue;
    // Stored only while the cell still shows that run; the event log always gets it.
    notebook::OutputList* outputs = nullptr;
    if (!finished.cell_id.empty()) {
      absl::StatusOr<const v1::Cell*> cell = notebook_.StoredCell(finished.cell_id);
      if (cell.ok() && (*cell)->last_run().execution_id() == finished.execution_id) {
        outputs = notebook_.outputs(finished.cell_id);
      }
    }
    ApplyOutputLocked(finished.cell_id, finished.execution_id, outputs, nullptr,
                      *std::move(effect));
    return;
  }
}

void KernelSession::OnTimeout(uint64_t generation, const std::string& execution_id) {
  Deferred deferred;
  {
    Locked lock(*this);
    if (generation != generation_ || running_ == nullptr ||
        running_->execution_id != execution_id || running_->reported) {
      return;
    }
    std::shared_ptr<Execution> execution = running_;
    execution->timed_out = true;
    if (execution->options.on_timeout == v1::ON_TIMEOUT_KEEP_RUNNING) {
      // The caller gets its answer now; the execution goes on and its outputs still land in
      // the cell and the event log.
      ReportEarlyLocked(*execution,
                        absl::StrCat("still running after ",
                                     absl::ToInt64Milliseconds(execution->options.timeout), " ms"),
                        deferred);
    } else {
      InterruptRunningLocked();
    }
  }
  RunDeferred(deferred);
}

void KernelSession::InterruptRunningLocked() {
  if (kernel_ == nullptr) return;
  kernel_->Interrupt();
  if (running_ == nullptr || running_->escalation_armed ||
      config_.restart_policy.interrupt_escalation <= absl::ZeroDuration()) {
    return;
  }
  running_->escalation_armed = true;  // the first interrupt's deadline stands
  std::weak_ptr<KernelSession> weak = weak_from_this();
  loop_.PostAfter(config_.restart_policy.interrupt_escalation,
                  [weak, generation = generation_, execution_id = running_->execution_id]() {
                    if (auto self = weak.lock()) self->OnInterruptIgnored(generation, execution_id);
                  });
}

void KernelSession::OnInterruptIgnored(uint64_t generation, const std::string& execution_id) {
  Locked lock(*this);
  if (generation != generation_ || running_ == nullptr ||
      running_->execution_id != execution_id || kernel_ == nullptr) {
    return;  // it stopped (or the kernel was replaced) in time
  }
  running_->escalated = true;
  kernel_->Kill(absl::StrCat("ignored an interrupt for ",
                             absl::FormatDuration(config_.restart_policy.interrupt_escalation),
                             "; killed"));
}

void KernelSession::OnHeartbeat(uint64_t generation, bool responsive) {
  Locked lock(*this);
  if (generation != generation_ || closed_ || responsive == responsive_) return;
  responsive_ = responsive;
  if (responsive) {
    SetStateLocked(state_, "answering heartbeats again");
    return;
  }
  const absl::Duration kill_after = config_.restart_policy.unresponsive_kill;
  const uint64_t silence = ++silences_;
  SetStateLocked(state_, kill_after > absl::ZeroDuration()
                             ? absl::StrCat("not answering heartbeats; killed if still silent in ",
                                            absl::FormatDuration(kill_after))
                             : "not answering heartbeats");
  if (kill_after <= absl::ZeroDuration()) return;
  std::weak_ptr<KernelSession> weak = weak_from_this();
  loop_.PostAfter(kill_after, [weak, generation, silence]() {
    if (auto self = weak.lock()) self->OnSilentTooLong(generation, silence);
  });
}

void KernelSession::OnSilentTooLong(uint64_t generation, uint64_t silence) {
  Locked lock(*this);
  if (generation != generation_ || silence != silences_ || responsive_ || kernel_ == nullptr ||
      closed_ || state_ == v1::KERNEL_STATE_SHUTTING_DOWN ||
      state_ == v1::KERNEL_STATE_RESTARTING) {
    return;
  }
  kernel_->Kill(absl::StrCat("stopped answering heartbeats; killed after ",
                             absl::FormatDuration(config_.restart_policy.unresponsive_kill),
                             " of silence"));
}

void KernelSession::ReportEarlyLocked(Execution& execution, const std::string& detail,
                                      Deferred& deferred) {
  execution.reported = true;
  if (!execution.done) return;
  deferred.push_back([done = std::exchange(execution.done, nullptr),
                      result = BuildResultLocked(execution, v1::EXECUTION_STATUS_TIMEOUT,
                                                 detail)]() mutable { done(std::move(result)); });
}

void KernelSession::OnRespondBy(const std::string& execution_id) {
  Deferred deferred;
  {
    Locked lock(*this);
    const bool interrupt = [&] {
      if (running_ != nullptr && running_->execution_id == execution_id) {
        return running_->options.on_timeout == v1::ON_TIMEOUT_INTERRUPT;
      }
      for (const auto& queued : queue_) {
        if (queued->execution_id == execution_id) {
          return queued->options.on_timeout == v1::ON_TIMEOUT_INTERRUPT;
        }
      }
      return false;
    }();
    if (running_ != nullptr && running_->execution_id == execution_id) {
      if (!running_->reported) {
        ReportEarlyLocked(*running_,
                          interrupt ? "the call's deadline came; interrupted"
                                    : "the call's deadline came; still running",
                          deferred);
        if (interrupt) {
          running_->timed_out = true;
          InterruptRunningLocked();
        }
      }
    } else {
      for (auto it = queue_.begin(); it != queue_.end(); ++it) {
        if ((*it)->execution_id != execution_id || (*it)->reported) continue;
        std::shared_ptr<Execution> execution = *it;
        if (interrupt) {
          // It never starts: the caller that wanted it has given up.
          queue_.erase(it);
          FinishLocked(execution, v1::EXECUTION_STATUS_TIMEOUT,
                       "the call's deadline came while it was queued", deferred);
        } else {
          ReportEarlyLocked(*execution, "the call's deadline came while it was queued",
                            deferred);
        }
        break;
      }
    }
  }
  RunDeferred(deferred);
}

void KernelSession::OnExecutionDone(uint64_t generation, const std::string& execution_id,
                                    kernel::RequestCompletion completion) {
  Deferred deferred;
  {
    Locked lock(*this);
    if (generation != generation_ || running_ == nullptr ||
        running_->execution_id != execution_id) {
      return;
    }
    std::shared_ptr<Execution> execution = running_;
    v1::ExecutionStatus status = v1::EXECUTION_STATUS_OK;
    std::string detail;
    switch (completion.kind) {
      case kernel::RequestCompletion::Kind::kReplied: {
        uncaptured_execution_ = false;  // whatever ran before this has ended
        const nlohmann::json& content = completion.reply.content;
        const std::string reply_status = content.value("status", "");
        if (content.contains("execution_count") && content["execution_count"].is_number()) {
          execution->execution_count = content["execution_count"].get<int>();
          execution_count_ = std::max(execution_count_, execution->execution_count);
        }
        if (reply_status == "ok") {
          status = v1::EXECUTION_STATUS_OK;
        } else if (reply_status == "aborted") {
          status = v1::EXECUTION_STATUS_CANCELLED;
          detail = "aborted by the kernel";
        } else if (execution->timed_out &&
                   execution->options.on_timeout == v1::ON_TIMEOUT_INTERRUPT) {
          status = v1::EXECUTION_STATUS_TIMEOUT;
          detail = absl::StrCat(
              "interrupted after ",
              absl::ToInt64Milliseconds(absl::Now() - execution->started_at), " ms");
        } else if (execution->flooded) {
          status = v1::EXECUTION_STATUS_INTERRUPTED;
          detail = absl::StrCat("printed more than the output hard cap of ", OutputHardCap(),
                                " bytes; interrupted");
        } else if (execution->interrupted) {
          status = v1::EXECUTION_STATUS_INTERRUPTED;
          detail = "interrupted by InterruptKernel";
        } else {
          status = v1::EXECUTION_STATUS_ERROR;
        }
        if (completion.iopub_incomplete) {
          absl::StrAppend(&detail, detail.empty() ? "" : "; ",
                          "output may be incomplete: the kernel dropped IOPub messages");
        }
        break;
      }
      case kernel::RequestCompletion::Kind::kKernelDied:
        last_death_reason_ = completion.reason;
        if (execution->escalated && execution->timed_out) {
          // The caller hears about its timeout; the kernel's death is the kernel's news.
          status = v1::EXECUTION_STATUS_TIMEOUT;
          detail = absl::StrCat("timed out; ", completion.reason);
        } else if (execution->escalated) {
          status = v1::EXECUTION_STATUS_INTERRUPTED;
          detail = completion.reason;
        } else {
          status = v1::EXECUTION_STATUS_KERNEL_DIED;
          detail = completion.reason;
        }
        break;
      case kernel::RequestCompletion::Kind::kClosed:
        status = v1::EXECUTION_STATUS_CANCELLED;
        detail = completion.reason;
        break;
      case kernel::RequestCompletion::Kind::kSendFailed:
        status = v1::EXECUTION_STATUS_ERROR;
        detail = completion.reason;
        break;
    }
    running_ = nullptr;
    FinishLocked(execution, status, detail, deferred);
    if (completion.kind == kernel::RequestCompletion::Kind::kKernelDied) {
      OnDeathLocked(completion.reason, deferred);
    } else {
      if (queue_.empty() && state_ == v1::KERNEL_STATE_BUSY) {
        SetStateLocked(v1::KERNEL_STATE_IDLE, "");
      }
      StartNextLocked();
    }
  }
  RunDeferred(deferred);
}

v1::ExecutionResult KernelSession::BuildResultLocked(Execution& execution,
                                                     v1::ExecutionStatus status,
                                                     const std::string& detail, bool take_scratch) {
  v1::ExecutionResult result;
  result.set_execution_id(execution.execution_id);
  result.set_cell_id(execution.cell_id);
  result.set_status(status);
  result.set_execution_count(execution.execution_count);
  result.set_status_detail(detail);
  if (execution.started) {
    *result.mutable_started_at() = ToProtoTime(execution.started_at);
    result.set_duration_ms(absl::ToInt64Milliseconds(absl::Now() - execution.started_at));
  }
  const notebook::OutputList* outputs = execution.cell_id.empty()
                                            ? execution.scratch_outputs.get()
                                            : notebook_.outputs(execution.cell_id);
  std::string text;
  if (outputs != nullptr && execution.started) {
    for (const v1::Output& output : outputs->outputs()) {
      if (output.has_error()) {
        *result.mutable_error() = notebook::ErrorInfoFromOutput(output.error());
      }
    }
    bool text_truncated = false;
    text = notebook::RenderResultText(
        outputs->outputs(), static_cast<size_t>(config_.max_result_text_bytes), &text_truncated);
    result.set_truncated(outputs->truncated() || text_truncated);
    if (take_scratch && outputs == execution.scratch_outputs.get()) {
      *result.mutable_outputs() = execution.scratch_outputs->TakeOutputs();
    } else {
      *result.mutable_outputs() = outputs->outputs();
    }
  }
  if (const char* word = StatusWord(status); *word != '\0') {
    if (!text.empty() && text.back() != '\n') text.push_back('\n');
    absl::StrAppend(&text, "[", word, detail.empty() ? "" : ": ", detail, "]");
  }
  result.set_text(std::move(text));
  return result;
}

void KernelSession::FinishLocked(const std::shared_ptr<Execution>& execution,
                                 v1::ExecutionStatus status, std::string detail,
                                 Deferred& deferred) {
  // Output after this goes to the event log only (OnLateIopub): the scratch outputs are done.
  v1::ExecutionResult result = BuildResultLocked(*execution, status, detail, /*take_scratch=*/true);
  TouchLocked();
  if (execution->started) {
    // Output published after the reply (e.g. by a background thread) still finds its cell.
    recently_finished_.push_back(
        {execution->kernel_msg_id, execution->cell_id, execution->execution_id});
    if (recently_finished_.size() > kRecentlyFinishedKept) recently_finished_.pop_front();
  }
  if (!execution->cell_id.empty()) {
    if (execution->started) {
      notebook_.FinishRun(execution->cell_id, status, execution->execution_count,
                          result.duration_ms())
          .IgnoreError();
    } else if (execution->group && execution->group->stopped) {
      notebook_.SetState(execution->cell_id, execution->state_before_queued).IgnoreError();
    } else {
      notebook_.SetState(execution->cell_id, v1::CELL_STATE_CANCELLED).IgnoreError();
    }
  }
  v1::OutputEvent event;
  event.set_cell_id(execution->cell_id);
  event.set_execution_id(execution->execution_id);
  v1::ExecutionFinished* finished = event.mutable_execution_finished();
  finished->set_status(status);
  finished->set_duration_ms(result.duration_ms());
  finished->set_status_detail(detail);
  AppendEventLocked(std::move(event));
  const std::string status_label =
      obs::Metrics::EnumLabel(v1::ExecutionStatus_Name(status), "EXECUTION_STATUS_");
  obs::Metrics::Get().ExecutionFinished(
      status_label, execution->started ? std::optional(absl::Milliseconds(result.duration_ms())) : std::nullopt);

  if (std::shared_ptr<GroupRun> run = execution->group) {
    const bool requested =
        !run->requested_execution_id.empty() && execution->execution_id == run->requested_execution_id;
    if (requested) {
      run->requested_result = std::move(result);
    } else if (execution->started) {
      *run->result.add_results() = std::move(result);
    } else {
      v1::SkippedCell* skipped = run->result.add_skipped();
      skipped->set_cell_id(execution->cell_id);
      skipped->set_reason(run->stopped ? run->stop_reason
                          : status == v1::EXECUTION_STATUS_KERNEL_DIED
                              ? v1::SKIP_REASON_KERNEL_DIED
                              : v1::SKIP_REASON_CANCELLED);
    }
    --run->remaining;
    const bool failed = execution->started && status != v1::EXECUTION_STATUS_OK;
    if (failed && !run->stopped &&
        (run->stop_on_error || status == v1::EXECUTION_STATUS_KERNEL_DIED ||
         status == v1::EXECUTION_STATUS_INTERRUPTED)) {
      run->stopped = true;
      run->stop_reason = status == v1::EXECUTION_STATUS_KERNEL_DIED ? v1::SKIP_REASON_KERNEL_DIED
                         : status == v1::EXECUTION_STATUS_CANCELLED
                             ? v1::SKIP_REASON_CANCELLED
                             : v1::SKIP_REASON_PREVIOUS_FAILED;
      const std::string stop_detail =
          absl::StrCat("a previous cell failed (", execution->cell_id, ": ", status_label, ")");
      // This run's queued cells leave the queue: they are skipped, not run.
      std::deque<std::shared_ptr<Execution>> kept;
      std::vector<std::shared_ptr<Execution>> dropped;
      for (auto& queued : queue_) {
        if (queued->group == run) {
          dropped.push_back(std::move(queued));
        } else {
          kept.push_back(std::move(queued));
        }
      }
      queue_.swap(kept);
      for (auto& skipped : dropped) {
        FinishLocked(skipped, v1::EXECUTION_STATUS_CANCELLED, stop_detail, deferred);
      }
    }
    // Taken out here, so that the nested FinishLocked of skipped cells and this one can't
    // both schedule it.
    if (run->remaining == 0 && (run->done || run->cascade_done)) {
      SortSkippedInNotebookOrderLocked(run->result);
      if (run->cascade_done) {
        v1::ExecutionResult reply = std::move(*run->requested_result);
        *reply.mutable_cascade() = std::move(run->result);
        ReplyWhenSavedLocked([done = std::exchange(run->cascade_done, nullptr),
                              reply = std::move(reply)]() mutable { done(std::move(reply)); },
                             deferred);
      } else {
        ReplyWhenSavedLocked([done = std::exchange(run->done, nullptr),
                              result = std::move(run->result)]() mutable {
          done(std::move(result));
        }, deferred);
      }
    }
    return;
  }
  // After a KEEP_RUNNING timeout the caller already has its answer: `done` is empty.
  if (execution->done) {
    absl::AnyInvocable<void()> reply = [done = std::exchange(execution->done, nullptr),
                                        result = std::move(result)]() mutable {
      done(std::move(result));
    };
    // A cell's result is sent once it is saved; Execute's changes nothing that is.
    if (execution->cell_id.empty()) {
      deferred.push_back(std::move(reply));
    } else {
      ReplyWhenSavedLocked(std::move(reply), deferred);
    }
  }
}

void KernelSession::SortSkippedInNotebookOrderLocked(v1::RunAllResult& result) const {
  const std::vector<std::string> ids = notebook_.cell_ids();
  auto position = [&ids](const v1::SkippedCell& cell) {
    return std::find(ids.begin(), ids.end(), cell.cell_id()) - ids.begin();
  };
  std::stable_sort(result.mutable_skipped()->begin(), result.mutable_skipped()->end(),
                   [&](const v1::SkippedCell& a, const v1::SkippedCell& b) {
                     return position(a) < position(b);
                   });
}

void KernelSession::CancelQueuedLocked(v1::ExecutionStatus status, const std::string& detail,
                                       Deferred& deferred) {
  std::deque<std::shared_ptr<Execution>> queued;
  queued.swap(queue_);
  for (auto& execution : queued) FinishLocked(execution, status, detail, deferred);
}

absl::Status KernelSession::Interrupt() {
  Deferred deferred;
  {
    Locked lock(*this);
    if (absl::Status status = CheckCanExecuteLocked(); !status.ok()) return status;
    TouchLocked();
    CancelQueuedLocked(v1::EXECUTION_STATUS_CANCELLED, "kernel interrupted", deferred);
    if (running_ != nullptr) {
      running_->interrupted = true;
      InterruptRunningLocked();
    } else if (uncaptured_execution_ && kernel_ != nullptr) {
      // A re-attached kernel may still run what it was given before the restart.
      kernel_->Interrupt();
    }
  }
  RunDeferred(deferred);
  return absl::OkStatus();
}

void KernelSession::OnKernelExit(uint64_t generation, const std::string& reason) {
  Deferred deferred;
  {
    Locked lock(*this);
    if (generation != generation_ || closed_) return;
    if (state_ == v1::KERNEL_STATE_SHUTTING_DOWN || state_ == v1::KERNEL_STATE_RESTARTING) return;
    OnDeathLocked(reason, deferred);
  }
  RunDeferred(deferred);
}

void KernelSession::OnDeathLocked(const std::string& reason, Deferred& deferred) {
  // The failed execution and the exit event both report one death: handle it once.
  if (death_handled_generation_ == generation_) return;
  death_handled_generation_ = generation_;
  process_.reset();
  last_death_reason_ = reason;
  CancelQueuedLocked(v1::EXECUTION_STATUS_KERNEL_DIED, reason, deferred);

  const RestartPolicy& policy = config_.restart_policy;
  const absl::Time now = absl::Now();
  while (!recent_deaths_.empty() && now - recent_deaths_.front() > policy.window) {
    recent_deaths_.pop_front();
  }
  recent_deaths_.push_back(now);
  const int deaths = static_cast<int>(recent_deaths_.size());
  const bool restarts = policy.restart_on_death && deaths <= policy.max_restarts;
  obs::Metrics::Get().KernelDied(obs::Metrics::DeathReasonClass(reason));
  deferred.push_back([kernel_id = params_.kernel_id, reason, restarts, deaths]() {
    obs::Log(obs::LogLevel::kWarning, "kernel_died",
             {{"kernel_id", kernel_id}, {"reason", reason},
              {"class", std::string(obs::Metrics::DeathReasonClass(reason))},
              {"deaths_in_window", absl::StrCat(deaths)},
              {"restarting", restarts ? "true" : "false"}});
  });
  if (!restarts) {
    const std::string why =
        policy.restart_on_death
            ? absl::StrCat(reason, "; not restarted: ", deaths, " deaths within ",
                           absl::FormatDuration(policy.window), " (limit ", policy.max_restarts,
                           ")")
            : reason;
    last_death_reason_ = why;
    SetStateLocked(v1::KERNEL_STATE_DEAD, why);
    return;
  }
  SetStateLocked(v1::KERNEL_STATE_DEAD, reason);
  // Backoff doubles with each death in the window: base, 2 base, 4 base, ...
  const absl::Duration backoff = policy.backoff * (1 << std::min(deaths - 1, 10));
  std::weak_ptr<KernelSession> weak = weak_from_this();
  const uint64_t dead_generation = generation_;
  loop_.PostAfter(backoff, [weak, dead_generation, reason]() {
    auto self = weak.lock();
    if (self == nullptr) return;
    {
      Locked lock(*self);
      // Someone restarted or shut it down meanwhile.
      if (self->generation_ != dead_generation || self->state_ != v1::KERNEL_STATE_DEAD) return;
    }
    self->RestartFor(absl::StrCat("automatic restart after: ", reason), nullptr).IgnoreError();
  });
}

absl::Status KernelSession::Restart(DoneCallback done) {
  return RestartFor("restart requested", std::move(done));
}

absl::Status KernelSession::RestartFor(const std::string& reason, DoneCallback done) {
  Deferred deferred;
  std::unique_ptr<kernel::Kernel> old_kernel;
  {
    Locked lock(*this);
    if (closed_ || state_ == v1::KERNEL_STATE_SHUTTING_DOWN) {
      return absl::FailedPreconditionError(
          absl::StrCat("kernel ", params_.kernel_id, " is shutting down"));
    }
    if (state_ == v1::KERNEL_STATE_RESTARTING || state_ == v1::KERNEL_STATE_STARTING) {
      return absl::FailedPreconditionError(
          absl::StrCat("kernel ", params_.kernel_id, " is already starting"));
    }
    TouchLocked();
    SetStateLocked(v1::KERNEL_STATE_RESTARTING, reason);
    ++generation_;  // callbacks of the old process are ignored from here on
    if (running_ != nullptr) {
      std::shared_ptr<Execution> execution = std::move(running_);
      FinishLocked(execution, v1::EXECUTION_STATUS_CANCELLED, "kernel restarted", deferred);
    }
    CancelQueuedLocked(v1::EXECUTION_STATUS_CANCELLED, "kernel restarted", deferred);
    notebook_.MarkAllStale(absl::StrCat("kernel restarted (", reason, ")"));
    ++restart_count_;
    execution_count_ = 0;
    process_.reset();
    old_kernel = std::move(kernel_);
  }
  RunDeferred(deferred);
  const bool automatic = absl::StartsWith(reason, "automatic");
  obs::Metrics::Get().KernelRestarted(automatic ? "automatic" : "requested");
  obs::Log(obs::LogLevel::kInfo, "kernel_restarting",
           {{"kernel_id", params_.kernel_id}, {"trigger", automatic ? "automatic" : "requested"}});
  old_kernel.reset();  // kills and reaps the old process group before the new one binds
  // Processes that left the group (setsid) still run as the kernel's uid: end them too.
  if (params_.launch.policy.uid >= 0) kernel::KillAllProcessesOfUid(params_.launch.policy.uid);
  {
    Locked lock(*this);
    if (closed_ || state_ != v1::KERNEL_STATE_RESTARTING) {
      if (done) done(absl::FailedPreconditionError("kernel was shut down during restart"));
      return absl::OkStatus();
    }
    LaunchKernelLocked(std::move(done));
  }
  RunDeferred(deferred);
  return absl::OkStatus();
}

void KernelSession::Touch() {
  Locked lock(*this);
  TouchLocked();
}

std::optional<std::string> KernelSession::CullReason(absl::Time now,
                                                     absl::Duration max_lifetime) const {
  Locked lock(*this);
  if (closed_ || state_ == v1::KERNEL_STATE_SHUTTING_DOWN) return std::nullopt;
  if (max_lifetime > absl::ZeroDuration() && now - created_at_ > max_lifetime) {
    return absl::StrCat("max lifetime of ", absl::FormatDuration(max_lifetime), " reached");
  }
  const int idle_seconds = params_.idle_timeout_seconds;
  if (idle_seconds <= 0 || running_ != nullptr || !queue_.empty() ||
      event_log_->readers() > 0 || state_ == v1::KERNEL_STATE_STARTING ||
      state_ == v1::KERNEL_STATE_RESTARTING) {
    return std::nullopt;
  }
  if (now - last_activity_at_ < absl::Seconds(idle_seconds)) return std::nullopt;
  return absl::StrCat("idle for ", idle_seconds, " s (idle_timeout_seconds)");
}

void KernelSession::Shutdown(absl::AnyInvocable<void()> done, const std::string& reason) {
  Deferred deferred;
  std::shared_ptr<kernel::Kernel> kernel;
  bool already = false;
  {
    Locked lock(*this);
    already = closed_ || state_ == v1::KERNEL_STATE_SHUTTING_DOWN;
    if (!already) {
      SetStateLocked(v1::KERNEL_STATE_SHUTTING_DOWN, reason);
      ++generation_;
      if (running_ != nullptr) {
        std::shared_ptr<Execution> execution = std::move(running_);
        FinishLocked(execution, v1::EXECUTION_STATUS_CANCELLED, "kernel shut down", deferred);
      }
      CancelQueuedLocked(v1::EXECUTION_STATUS_CANCELLED, "kernel shut down", deferred);
      process_.reset();
      kernel = std::shared_ptr<kernel::Kernel>(std::move(kernel_));
    }
  }
  RunDeferred(deferred);
  if (already) {
    if (done) done();
    return;
  }
  obs::Log(obs::LogLevel::kInfo, "kernel_shutdown",
           {{"kernel_id", params_.kernel_id}, {"reason", reason}});
  auto finalize = [self = shared_from_this(), done = std::move(done)]() mutable {
    absl::AnyInvocable<void(bool)> on_closed;
    {
      Locked lock(*self);
      self->closed_ = true;
      on_closed = std::move(self->params_.on_closed);
    }
    self->event_log_->Close();
    if (on_closed) on_closed(/*kernel_left_running=*/false);
    if (done) done();
  };
  if (kernel == nullptr) {
    finalize();
    return;
  }
  kernel::KernelIoLoop* loop = &loop_;
  kernel->Shutdown([kernel, loop, finalize = std::move(finalize)](
                       const kernel::ExitStatus&) mutable {
    // We are inside the kernel's own exit callback: destroy its handle later, on the loop.
    loop->Post([kernel = std::move(kernel)]() mutable { kernel.reset(); });
    finalize();
  });
}

}  // namespace cellgate::session
