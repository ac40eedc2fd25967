#include "server/api/kernel_gateway_service.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "server/api/file_reactors.h"
#include "server/api/raw_message.h"
#include "server/api/request_validation.h"
#include "server/api/status_mapping.h"
#include "server/api/stream_outputs_reactor.h"
#include "server/obs/metrics.h"
#include "server/session/variable_transfer.h"

namespace cellgate::api {
namespace {

using google::protobuf::util::TimeUtil;

grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Finishes with `result`'s status, copying its value into `response` when OK.
template <typename T>
grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context, absl::StatusOr<T> result,
                                T* response) {
  if (result.ok()) *response = *std::move(result);
  return Reply(context, result.status());
}

// As Reply, but a success is sent once the kernel's saved state includes the change: a client
// told its change was made can count on it surviving a gateway restart.
grpc::ServerUnaryReactor* ReplyWhenSaved(grpc::CallbackServerContext* context,
                                         const session::KernelSession& session,
                                         const absl::Status& status) {
  if (!status.ok()) return Reply(context, status);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  session.AfterSaved([reactor] { reactor->Finish(grpc::Status::OK); });
  return reactor;
}

template <typename T>
grpc::ServerUnaryReactor* ReplyWhenSaved(grpc::CallbackServerContext* context,
                                         const session::KernelSession& session,
                                         absl::StatusOr<T> result, T* response) {
  if (result.ok()) *response = *std::move(result);
  return ReplyWhenSaved(context, session, result.status());
}

// As ReplyWhenSaved for a changed cell, once its analysis is in (KernelSession::WhenAnalyzed):
// the reply shows what it defines, uses and depends on.
grpc::ServerUnaryReactor* ReplyWithAnalyzedCell(
    grpc::CallbackServerContext* context, std::shared_ptr<session::KernelSession> session,
    absl::StatusOr<v1::Cell> result, v1::Cell* response) {
  if (!result.ok()) return Reply(context, result.status());
  *response = *std::move(result);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  session->WhenAnalyzed([session, reactor, response] {
    // Unless a later request deleted it meanwhile.
    if (absl::StatusOr<v1::Cell> cell = session->GetCell(response->cell_id()); cell.ok()) {
      *response = *std::move(cell);
    }
    session->AfterSaved([reactor] { reactor->Finish(grpc::Status::OK); });
  });
  return reactor;
}

// A request's `timeout_ms`, 0 meaning the server's default; no timeout when both are 0.
absl::Duration TimeoutFor(int64_t timeout_ms, const session::GatewayConfig& config) {
  if (timeout_ms == 0) timeout_ms = config.default_timeout_ms;
  return timeout_ms > 0 ? absl::Milliseconds(timeout_ms) : absl::InfiniteDuration();
}

v1::InterruptMode ToProto(kernel::InterruptMode mode) {
  return mode == kernel::InterruptMode::kMessage ? v1::INTERRUPT_MODE_MESSAGE
                                                 : v1::INTERRUPT_MODE_SIGNAL;
}

// A callback that answers the call with the execution's result.
template <typename Result>
absl::AnyInvocable<void(Result)> FinishWithResult(grpc::ServerUnaryReactor* reactor,
                                                   Result* response) {
  return [reactor, response](Result result) {
    *response = std::move(result);
    reactor->Finish(grpc::Status::OK);
  };
}

bool MatchesSelector(const session::KernelSession& session,
                     const google::protobuf::Map<std::string, std::string>& selector) {
  const auto& labels = session.labels();
  return std::all_of(selector.begin(), selector.end(), [&labels](const auto& entry) {
    auto it = labels.find(entry.first);
    return it != labels.end() && it->second == entry.second;
  });
}

}  // namespace

KernelGatewayService::KernelGatewayService(session::SessionRegistry& registry,
                                           const session::GatewayConfig& config,
                                           const kernel::KernelSpecRegistry& specs,
                                           const TokenAuthenticator& auth, ServerIdentity identity)
    : registry_(registry),
      config_(config),
      specs_(specs),
      auth_(auth),
      identity_(std::move(identity)) {}

absl::Status KernelGatewayService::CheckAuth(grpc::CallbackServerContext* context) const {
  absl::Status status = auth_.Check(context->client_metadata());
  if (!status.ok()) obs::Metrics::Get().AuthFailed();
  return status;
}

absl::Status KernelGatewayService::CheckNotDraining() const {
  if (registry_.draining()) return absl::UnavailableError("server is draining: no new work");
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<session::KernelSession>> KernelGatewayService::Authorize(
    grpc::CallbackServerContext* context, const std::string& kernel_id) const {
  if (absl::Status status = CheckAuth(context); !status.ok()) return status;
  if (absl::Status status = ValidateKernelId(kernel_id); !status.ok()) return status;
  absl::StatusOr<std::shared_ptr<session::KernelSession>> session = registry_.Find(kernel_id);
  if (session.ok()) (*session)->Touch();  // any call naming a kernel keeps it from idling out
  return session;
}

template <typename Request>
absl::StatusOr<std::shared_ptr<session::KernelSession>> KernelGatewayService::ParseAndAuthorize(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer& raw_request,
    Request& request) const {
  if (!ParseByteBuffer(raw_request, request)) {
    if (absl::Status status = CheckAuth(context); !status.ok()) return status;
    return absl::InvalidArgumentError(absl::StrCat(
        "request: not a ", Request::descriptor()->full_name(), " (its bytes do not parse)"));
  }
  return Authorize(context, request.kernel_id());
}

session::ExecutionOptions KernelGatewayService::ExecutionOptionsFor(
    grpc::CallbackServerContext* context, int64_t timeout_ms, v1::OnTimeout on_timeout) const {
  session::ExecutionOptions options;
  options.timeout = TimeoutFor(timeout_ms, config_);
  options.on_timeout = on_timeout == v1::ON_TIMEOUT_KEEP_RUNNING ? v1::ON_TIMEOUT_KEEP_RUNNING
                                                                   : v1::ON_TIMEOUT_INTERRUPT;
  const auto deadline = context->deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    // Answer a little before the client gives up, so that it gets a result rather than
    // DEADLINE_EXCEEDED: a fifth of the time left, between 50 ms and 1 s.
    const absl::Time client_deadline = absl::FromChrono(deadline);
    const absl::Duration margin = std::clamp((client_deadline - absl::Now()) / 5,
                                             absl::Milliseconds(50), absl::Seconds(1));
    options.respond_by = client_deadline - margin;
  }
  return options;
}

// ---- Kernels ----

grpc::ServerUnaryReactor* KernelGatewayService::StartKernel(grpc::CallbackServerContext* context,
                                                            const v1::StartKernelRequest* request,
                                                            v1::Kernel* response) {
  absl::Status status = CheckAuth(context);
  if (status.ok()) status = CheckNotDraining();
  if (status.ok()) {
    status =
        ValidateStartKernel(*request, config_, config_.sandbox_mode == kernel::SandboxMode::kBwrap);
  }
  if (!status.ok()) return Reply(context, status);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  status = registry_.StartKernel(
      *request, EffectiveLimits(request->limits(), config_),
      [this, context, reactor, response](absl::StatusOr<v1::Kernel> kernel) {
        if (kernel.ok() && context->IsCancelled()) {
          // Nobody will learn this kernel's id: don't keep it.
          if (auto session = registry_.Find(kernel->kernel_id()); session.ok()) {
            (*session)->Shutdown(nullptr);
          }
          reactor->Finish(grpc::Status::CANCELLED);
          return;
        }
        if (kernel.ok()) *response = *std::move(kernel);
        reactor->Finish(ToGrpcStatus(kernel.status()));
      });
  if (!status.ok()) reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* KernelGatewayService::GetKernel(grpc::CallbackServerContext* context,
                                                          const v1::GetKernelRequest* request,
                                                          v1::Kernel* response) {
  auto session = Authorize(context, request->kernel_id());
  if (!session.ok()) return Reply(context, session.status());
  *response = (*session)->Describe();
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* KernelGatewayService::ListKernels(grpc::CallbackServerContext* context,
                                                            const v1::ListKernelsRequest* request,
                                                            v1::ListKernelsResponse* response) {
  absl::Status status = CheckAuth(context);
  if (status.ok()) status = ValidateListKernels(*request, config_);
  if (!status.ok()) return Reply(context, status);
  for (const auto& session : registry_.List()) {
    if (MatchesSelector(*session, request->label_selector())) {
      *response->add_kernels() = session->Describe();
    }
  }
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* KernelGatewayService::InterruptKernel(
    grpc::CallbackServerContext* context, const v1::InterruptKernelRequest* request,
    v1::Kernel* response) {
  auto session = Authorize(context, request->kernel_id());
  if (!session.ok()) return Reply(context, session.status());
  if (absl::Status status = (*session)->Interrupt(); !status.ok()) return Reply(context, status);
  *response = (*session)->Describe();
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* KernelGatewayService::RestartKernel(
    grpc::CallbackServerContext* context, const v1::RestartKernelRequest* request,
    v1::Kernel* response) {
  auto session = Authorize(context, request->kernel_id());
  absl::Status status = session.status();
  if (status.ok()) status = CheckNotDraining();
  if (!status.ok()) return Reply(context, status);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::weak_ptr<session::KernelSession> weak = *session;
  status = (*session)->Restart([reactor, response, weak](absl::Status result) {
    if (result.ok()) {
      if (auto session = weak.lock()) *response = session->Describe();
    }
    reactor->Finish(ToGrpcStatus(result));
  });
  if (!status.ok()) reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* KernelGatewayService::ShutdownKernel(
    grpc::CallbackServerContext* context, const v1::ShutdownKernelRequest* request,
    v1::ShutdownKernelResponse*) {
  auto session = Authorize(context, request->kernel_id());
  if (!session.ok()) return Reply(context, session.status());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  (*session)->Shutdown([reactor]() { reactor->Finish(grpc::Status::OK); });
  return reactor;
}

grpc::ServerUnaryReactor* KernelGatewayService::ListKernelSpecs(
    grpc::CallbackServerContext* context, const v1::ListKernelSpecsRequest*,
    v1::ListKernelSpecsResponse* response) {
  if (absl::Status status = CheckAuth(context); !status.ok()) return Reply(context, status);
  for (const kernel::KernelSpec& spec : specs_.List()) {
    v1::KernelSpec* out = response->add_kernel_specs();
    out->set_name(spec.name);
    out->set_display_name(spec.display_name);
    out->set_language(spec.language);
    out->set_interrupt_mode(ToProto(spec.interrupt_mode));
  }
  response->set_default_kernel_spec(config_.default_kernel_spec);
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* KernelGatewayService::GetServerInfo(grpc::CallbackServerContext* context,
                                                              const v1::GetServerInfoRequest*,
                                                              v1::ServerInfo* response) {
  if (absl::Status status = CheckAuth(context); !status.ok()) return Reply(context, status);
  response->set_version(identity_.version);
  *response->mutable_started_at() =
      TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(identity_.started_at));
  response->set_sandbox_mode(kernel::SandboxModeName(config_.sandbox_mode));
  for (const kernel::SandboxLayer& layer : identity_.capabilities.layers) {
    v1::SandboxLayer* out = response->add_sandbox_layers();
    out->set_name(layer.name);
    out->set_available(layer.available);
    const bool is_bwrap = layer.name == "bwrap";
    out->set_in_force(layer.available &&
                      (!is_bwrap || config_.sandbox_mode == kernel::SandboxMode::kBwrap));
    out->set_detail(layer.detail);
  }
  v1::ServerCaps* caps = response->mutable_caps();
  caps->set_max_kernels(config_.max_kernels);
  caps->set_max_cells_per_kernel(config_.max_cells_per_kernel);
  caps->set_max_source_bytes(config_.max_source_bytes);
  caps->set_max_ipynb_bytes(config_.max_ipynb_bytes);
  caps->set_max_upload_bytes(config_.max_upload_bytes);
  caps->set_max_workspace_bytes(config_.max_workspace_bytes);
  caps->set_max_transfer_bytes(config_.max_transfer_bytes);
  caps->set_max_execution_output_bytes(config_.max_execution_output_bytes);
  caps->set_max_result_text_bytes(config_.max_result_text_bytes);
  caps->set_event_log_max_bytes(config_.event_log_max_bytes);
  caps->set_max_timeout_ms(config_.max_timeout_ms);
  caps->set_max_idle_timeout_seconds(config_.max_idle_timeout_seconds);
  ToProto(config_.max_limits, config_.max_allow_network, caps->mutable_limits());
  v1::ServerDefaults* defaults = response->mutable_defaults();
  defaults->set_kernel_spec(config_.default_kernel_spec);
  defaults->set_timeout_ms(config_.default_timeout_ms);
  defaults->set_idle_timeout_seconds(config_.default_idle_timeout_seconds);
  // Only bubblewrap takes the network away; under rlimits a kernel always has it.
  const bool isolating = config_.sandbox_mode == kernel::SandboxMode::kBwrap;
  ToProto(config_.default_limits, !isolating || config_.default_allow_network,
          defaults->mutable_limits());
  std::map<v1::KernelState, int> counts;
  const auto sessions = registry_.List();
  for (const auto& session : sessions) ++counts[session->state()];
  response->set_kernel_count(static_cast<int32_t>(sessions.size()));
  for (const auto& [state, count] : counts) {
    v1::KernelStateCount* out = response->add_kernel_counts();
    out->set_state(state);
    out->set_count(count);
  }
  response->set_auth_required(auth_.enabled());
  return Reply(context, absl::OkStatus());
}

// ---- Cells ----

grpc::ServerUnaryReactor* KernelGatewayService::AddCell(grpc::CallbackServerContext* context,
                                                        const v1::AddCellRequest* request,
                                                        v1::Cell* response) {
  auto session = Authorize(context, request->kernel_id());
  absl::Status status = session.status();
  if (status.ok()) status = ValidateAddCell(*request, config_);
  if (!status.ok()) return Reply(context, status);
  std::optional<int> index;
  if (request->has_index()) index = request->index();
  return ReplyWithAnalyzedCell(context, *session,
                               (*session)->AddCell(request->source(), request->cell_type(), index,
                                                   request->cell_id(), request->metadata()),
                               response);
}

grpc::ServerUnaryReactor* KernelGatewayService::EditCell(grpc::CallbackServerContext* context,
                                                         const v1::EditCellRequest* request,
                                                         v1::Cell* response) {
  auto session = Authorize(context, request->kernel_id());
  absl::Status status = session.status();
  if (status.ok()) status = ValidateEditCell(*request, config_);
  if (!status.ok()) return Reply(context, status);
  std::optional<std::string> metadata;
  if (request->has_metadata()) metadata = request->metadata();
  return ReplyWithAnalyzedCell(context, *session,
                               (*session)->EditCell(request->cell_id(), request->source(),
                                                    request->cell_type(), std::move(metadata)),
                               response);
}

grpc::ServerUnaryReactor* KernelGatewayService::DeleteCell(grpc::CallbackServerContext* context,
                                                           const v1::DeleteCellRequest* request,
                                                           v1::DeleteCellResponse*) {
  auto session = Authorize(context, request->kernel_id());
  absl::Status status = session.status();
  if (status.ok()) status = ValidateCellId(request->cell_id());
  if (!status.ok()) return Reply(context, status);
  return ReplyWhenSaved(context, **session, (*session)->DeleteCell(request->cell_id()));
}

grpc::ServerUnaryReactor* KernelGatewayService::MoveCell(grpc::CallbackServerContext* context,
                                                         const v1::MoveCellRequest* request,
                                                         v1::Cell* response) {
  auto session = Authorize(context, request->kernel_id());
  absl::Status status = session.status();
  if (status.ok()) status = ValidateMoveCell(*request, config_);
  if (!status.ok()) return Reply(context, status);
  return ReplyWhenSaved(context, **session,
                        (*session)->MoveCell(request->cell_id(), request->index()), response);
}

grpc::ServerUnaryReactor* KernelGatewayService::GetNotebook(grpc::CallbackServerContext* context,
                                                            const grpc::ByteBuffer* raw_request,
                                                            grpc::ByteBuffer* raw_response) {
  v1::GetNotebookRequest request;
  auto session = ParseAndAuthorize(context, *raw_request, request);
  if (!session.ok()) return Reply(context, session.status());
  *raw_response =
      ByteBufferOwning((*session)->SerializedNotebook(/*with_outputs=*/!request.omit_outputs()));
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* KernelGatewayService::GetCell(grpc::CallbackServerContext* context,
                                                        const v1::GetCellRequest* request,
                                                        v1::Cell* response) {
  auto session = Authorize(context, request->kernel_id());
  absl::Status status = session.status();
  if (status.ok()) status = ValidateCellId(request->cell_id());
  if (!status.ok()) return Reply(context, status);
  return Reply(context, (*session)->GetCell(request->cell_id()), response);
}

grpc::ServerUnaryReactor* KernelGatewayService::ExportNotebook(
    grpc::CallbackServerContext* context, const v1::ExportNotebookRequest* request,
    v1::ExportNotebookResponse* response) {
  auto session = Authorize(context, request->kernel_id());
  if (!session.ok()) return Reply(context, session.status());
  response->set_ipynb((*session)->ExportNotebook());
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* KernelGatewayService::ImportNotebook(grpc::CallbackServerContext* context,
                                                               const grpc::ByteBuffer* raw_request,
                                                               grpc::ByteBuffer* raw_response) {
  v1::ImportNotebookRequest request;
  auto session = ParseAndAuthorize(context, *raw_request, request);
  absl::Status status = session.status();
  if (status.ok()) status = ValidateImportNotebook(request, config_);
  if (status.ok()) status = (*session)->ImportNotebook(request.ipynb(), request.replace());
  if (!status.ok()) return Reply(context, status);
  // The reply is the notebook after the import, written under the session's shared lock while
  // the state writer serializes the import under another and then writes it: the two run side
  // by side. A change made in between by another call shows in the reply.
  *raw_response =
      ByteBufferOwning((*session)->SerializedNotebook(/*with_outputs=*/!request.omit_outputs()));
  return ReplyWhenSaved(context, **session, absl::OkStatus());
}

// ---- Execution ----

grpc::ServerUnaryReactor* KernelGatewayService::RunCell(grpc::CallbackServerContext* context,
                                                        const v1::RunCellRequest* request,
                                                        v1::ExecutionResult* response) {
  auto session = Authorize(context, request->kernel_id());
  absl::Status status = session.status();
  if (status.ok()) status = ValidateRunCell(*request, config_);
  if (status.ok()) status = CheckNotDraining();
  if (!status.ok()) return Reply(context, status);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (request->cascade() == v1::CASCADE_DEPENDENTS || request->cascade() == v1::CASCADE_UPSTREAM) {
    // The cascade follows the graph with every change so far analysed.
    (*session)->WhenAnalyzed([session = *session, reactor, response,
                              cell_id = request->cell_id(), cascade = request->cascade(),
                              timeout = TimeoutFor(request->timeout_ms(), config_)] {
      const absl::Status status = session->RunCellCascade(cell_id, cascade, timeout,
                                                          FinishWithResult(reactor, response));
      if (!status.ok()) reactor->Finish(ToGrpcStatus(status));
    });
    return reactor;
  }
  status = (*session)->RunCell(request->cell_id(),
                               ExecutionOptionsFor(context, request->timeout_ms(),
                                                   request->on_timeout()),
                               FinishWithResult(reactor, response));
  if (!status.ok()) reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* KernelGatewayService::RunStale(grpc::CallbackServerContext* context,
                                                         const v1::RunStaleRequest* request,
                                                         v1::RunAllResult* response) {
  auto session = Authorize(context, request->kernel_id());
  absl::Status status = session.status();
  if (status.ok()) status = ValidateRunStale(*request, config_);
  if (status.ok()) status = CheckNotDraining();
  if (!status.ok()) return Reply(context, status);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  (*session)->WhenAnalyzed([session = *session, reactor, response,
                            stop_on_error = !request->has_stop_on_error() || request->stop_on_error(),
                            timeout = TimeoutFor(request->timeout_ms(), config_)] {
    const absl::Status status =
        session->RunStale(stop_on_error, timeout, FinishWithResult(reactor, response));
    if (!status.ok()) reactor->Finish(ToGrpcStatus(status));
  });
  return reactor;
}

grpc::ServerUnaryReactor* KernelGatewayService::RunAll(grpc::CallbackServerContext* context,
                                                       const v1::RunAllRequest* request,
                                                       v1::RunAllResult* response) {
  auto session = Authorize(context, request->kernel_id());
  absl::Status status = session.status();
  if (status.ok()) status = ValidateRunAll(*request, config_);
  if (status.ok()) status = CheckNotDraining();
  if (!status.ok()) return Reply(context, status);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  status = (*session)->RunAll(!request->has_stop_on_error() || request->stop_on_error(),
                              TimeoutFor(request->timeout_ms(), config_),
                              FinishWithResult(reactor, response));
  if (!status.ok()) reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* KernelGatewayService::Execute(grpc::CallbackServerContext* context,
                                                        const v1::ExecuteRequest* request,
                                                        v1::ExecutionResult* response) {
  auto session = Authorize(context, request->kernel_id());
  absl::Status status = session.status();
  if (status.ok()) status = ValidateExecute(*request, config_);
  if (status.ok()) status = CheckNotDraining();
  if (!status.ok()) return Reply(context, status);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  status = (*session)->Execute(request->code(),
                               ExecutionOptionsFor(context, request->timeout_ms(),
                                                   request->on_timeout()),
                               FinishWithResult(reactor, response));
  if (!status.ok()) reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* KernelGatewayService::StreamOutputs(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw_request) {
  v1::StreamOutputsRequest request;
  absl::StatusOr<std::shared_ptr<session::KernelSession>> session =
      ParseAndAuthorize(context, *raw_request, request);
  absl::Status status = session.status();
  if (status.ok()) status = ValidateStreamOutputs(request, config_);
  auto* reactor =
      new StreamOutputsReactor(status.ok() ? (*session)->event_log() : nullptr, request.after_seq(),
                               request.follow(), request.cell_id(), request.execution_id(),
                               config_.stream_max_lag_bytes > 0 ? config_.stream_max_lag_bytes
                                                                : config_.event_log_max_bytes / 2);
  if (!status.ok()) {
    reactor->FinishWithError(ToGrpcStatus(status));
  } else {
    reactor->Begin();
  }
  return reactor;
}

// ---- Files ----

grpc::ServerReadReactor<v1::UploadFileRequest>* KernelGatewayService::UploadFile(
    grpc::CallbackServerContext* context, v1::FileInfo* response) {
  return new UploadFileReactor(
      [this, context](const std::string& kernel_id) { return Authorize(context, kernel_id); },
      response);
}

grpc::ServerWriteReactor<v1::FileChunk>* KernelGatewayService::DownloadFile(
    grpc::CallbackServerContext* context, const v1::DownloadFileRequest* request) {
  return new DownloadFileReactor(Authorize(context, request->kernel_id()), request->path());
}

grpc::ServerUnaryReactor* KernelGatewayService::ListFiles(grpc::CallbackServerContext* context,
                                                          const v1::ListFilesRequest* request,
                                                          v1::ListFilesResponse* response) {
  constexpr size_t kMaxListed = 10'000;
  auto session = Authorize(context, request->kernel_id());
  if (!session.ok()) return Reply(context, session.status());
  bool truncated = false;
  absl::StatusOr<std::vector<kernel::WorkspaceEntry>> entries =
      (*session)->workspace().List(request->path(), request->recursive(), kMaxListed, &truncated);
  if (!entries.ok()) return Reply(context, entries.status());
  for (const kernel::WorkspaceEntry& entry : *entries) *response->add_files() = ToProto(entry);
  response->set_truncated(truncated);
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* KernelGatewayService::DeleteFile(grpc::CallbackServerContext* context,
                                                           const v1::DeleteFileRequest* request,
                                                           v1::DeleteFileResponse*) {
  auto session = Authorize(context, request->kernel_id());
  if (!session.ok()) return Reply(context, session.status());
  return Reply(context, (*session)->workspace().Delete(request->path(), request->recursive()));
}

// ---- Variables between kernels ----

grpc::ServerUnaryReactor* KernelGatewayService::TransferVariable(
    grpc::CallbackServerContext* context, const v1::TransferVariableRequest* request,
    v1::TransferVariableResponse* response) {
  absl::Status status = CheckAuth(context);
  if (status.ok()) status = ValidateTransferVariable(*request, config_);
  if (status.ok()) status = CheckNotDraining();
  if (!status.ok()) return Reply(context, status);
  auto from = Authorize(context, request->from_kernel_id());
  if (!from.ok()) return Reply(context, from.status());
  auto to = Authorize(context, request->to_kernel_id());
  if (!to.ok()) return Reply(context, to.status());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  session::VariableTransfer transfer;
  transfer.name = request->name();
  transfer.as_name = request->as_name().empty() ? request->name() : request->as_name();
  transfer.timeout = TimeoutFor(request->timeout_ms(), config_);
  transfer.max_bytes = config_.max_transfer_bytes;
  session::TransferVariable(
      *std::move(from), *std::move(to), std::move(transfer),
      [reactor, response](absl::StatusOr<v1::TransferVariableResponse> result) {
        if (result.ok()) *response = *std::move(result);
        reactor->Finish(ToGrpcStatus(result.status()));
      });
  return reactor;
}

}  // namespace cellgate::api
