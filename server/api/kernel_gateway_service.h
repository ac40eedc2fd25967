#pragma once

#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/time/time.h"
#include "cellgate/v1/kernel_gateway.grpc.pb.h"
#include "server/api/auth.h"
#include "server/kernel/kernel_spec.h"
#include "server/kernel/sandbox_policy.h"
#include "server/session/gateway_config.h"
#include "server/session/session_registry.h"

namespace cellgate::api {

// What the service reports about the server itself (GetServerInfo).
struct ServerIdentity {
  std::string version;
  absl::Time started_at;
  kernel::SandboxCapabilities capabilities;
};

// The cellgate.v1.KernelGateway service on gRPC's callback API: no thread waits per pending
// RunCell or per stream. Validates every request, checks the bearer token, maps absl::Status
// to gRPC codes in one place (status_mapping.h). StreamOutputs is served raw: its request is
// parsed here and its events are written as byte buffers that share the log's strings. So are
// GetNotebook and ImportNotebook, whose reply (a whole notebook) is written straight from the
// session's cells instead of from a copy of them.
class KernelGatewayService final : public v1::KernelGateway::WithRawCallbackMethod_StreamOutputs<
                                       v1::KernelGateway::WithRawCallbackMethod_GetNotebook<
                                           v1::KernelGateway::WithRawCallbackMethod_ImportNotebook<
                                               v1::KernelGateway::CallbackService>>> {
 public:
  KernelGatewayService(session::SessionRegistry& registry, const session::GatewayConfig& config,
                       const kernel::KernelSpecRegistry& specs, const TokenAuthenticator& auth,
                       ServerIdentity identity);

  grpc::ServerUnaryReactor* StartKernel(grpc::CallbackServerContext* context,
                                        const v1::StartKernelRequest* request,
                                        v1::Kernel* response) override;
  grpc::ServerUnaryReactor* GetKernel(grpc::CallbackServerContext* context,
                                      const v1::GetKernelRequest* request,
                                      v1::Kernel* response) override;
  grpc::ServerUnaryReactor* ListKernels(grpc::CallbackServerContext* context,
                                        const v1::ListKernelsRequest* request,
                                        v1::ListKernelsResponse* response) override;
  grpc::ServerUnaryReactor* InterruptKernel(grpc::CallbackServerContext* context,
                                            const v1::InterruptKernelRequest* request,
                                            v1::Kernel* response) override;
  grpc::ServerUnaryReactor* RestartKernel(grpc::CallbackServerContext* context,
                                          const v1::RestartKernelRequest* request,
                                          v1::Kernel* response) override;
  grpc::ServerUnaryReactor* ShutdownKernel(grpc::CallbackServerContext* context,
                                           const v1::ShutdownKernelRequest* request,
                                           v1::ShutdownKernelResponse* response) override;
  grpc::ServerUnaryReactor* ListKernelSpecs(grpc::CallbackServerContext* context,
                                            const v1::ListKernelSpecsRequest* request,
                                            v1::ListKernelSpecsResponse* response) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const v1::GetServerInfoRequest* request,
                                          v1::ServerInfo* response) override;
  grpc::ServerUnaryReactor* AddCell(grpc::CallbackServerContext* context,
                                    const v1::AddCellRequest* request, v1::Cell* response) override;
  grpc::ServerUnaryReactor* EditCell(grpc::CallbackServerContext* context,
                                     const v1::EditCellRequest* request,
                                     v1::Cell* response) override;
  grpc::ServerUnaryReactor* DeleteCell(grpc::CallbackServerContext* context,
                                       const v1::DeleteCellRequest* request,
                                       v1::DeleteCellResponse* response) override;
  grpc::ServerUnaryReactor* MoveCell(grpc::CallbackServerContext* context,
                                     const v1::MoveCellRequest* request,
                                     v1::Cell* response) override;
  // Raw: a v1::GetNotebookRequest in, a v1::Notebook out.
  grpc::ServerUnaryReactor* GetNotebook(grpc::CallbackServerContext* context,
                                        const grpc::ByteBuffer* raw_request,
                                        grpc::ByteBuffer* raw_response) override;
  grpc::ServerUnaryReactor* GetCell(grpc::CallbackServerContext* context,
                                    const v1::GetCellRequest* request, v1::Cell* response) override;
  grpc::ServerUnaryReactor* ExportNotebook(grpc::CallbackServerContext* context,
                                           const v1::ExportNotebookRequest* request,
                                           v1::ExportNotebookResponse* response) override;
  // Raw: a v1::ImportNotebookRequest in, a v1::Notebook out.
  grpc::ServerUnaryReactor* ImportNotebook(grpc::CallbackServerContext* context,
                                           const grpc::ByteBuffer* raw_request,
                                           grpc::ByteBuffer* raw_response) override;
  grpc::ServerUnaryReactor* RunCell(grpc::CallbackServerContext* context,
                                    const v1::RunCellRequest* request,
                                    v1::ExecutionResult* response) override;
  grpc::ServerUnaryReactor* RunAll(grpc::CallbackServerContext* context,
                                   const v1::RunAllRequest* request,
                                   v1::RunAllResult* response) override;
  grpc::ServerUnaryReactor* RunStale(grpc::CallbackServerContext* context,
                                     const v1::RunStaleRequest* request,
                                     v1::RunAllResult* response) override;
  grpc::ServerUnaryReactor* Execute(grpc::CallbackServerContext* context,
                                    const v1::ExecuteRequest* request,
                                    v1::ExecutionResult* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* StreamOutputs(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) override;
  grpc::ServerReadReactor<v1::UploadFileRequest>* UploadFile(
      grpc::CallbackServerContext* context, v1::FileInfo* response) override;
  grpc::ServerWriteReactor<v1::FileChunk>* DownloadFile(
      grpc::CallbackServerContext* context, const v1::DownloadFileRequest* request) override;
  grpc::ServerUnaryReactor* ListFiles(grpc::CallbackServerContext* context,
                                      const v1::ListFilesRequest* request,
                                      v1::ListFilesResponse* response) override;
  grpc::ServerUnaryReactor* DeleteFile(grpc::CallbackServerContext* context,
                                       const v1::DeleteFileRequest* request,
                                       v1::DeleteFileResponse* response) override;
  grpc::ServerUnaryReactor* TransferVariable(grpc::CallbackServerContext* context,
                                             const v1::TransferVariableRequest* request,
                                             v1::TransferVariableResponse* response) override;

 private:
  // Auth, then the kernel id's shape, then the lookup.
  absl::StatusOr<std::shared_ptr<session::KernelSession>> Authorize(
      grpc::CallbackServerContext* context, const std::string& kernel_id) const;
  // For a method served raw: parses its request into `request`, then Authorize. Bytes that are
  // not a `request` are INVALID_ARGUMENT, once the caller is authenticated.
  template <typename Request>
  absl::StatusOr<std::shared_ptr<session::KernelSession>> ParseAndAuthorize(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer& raw_request,
      Request& request) const;
  absl::Status CheckAuth(grpc::CallbackServerContext* context) const;
  absl::Status CheckNotDraining() const;
  // The request's timeout (else the server default) and the call's gRPC deadline.
  session::ExecutionOptions ExecutionOptionsFor(grpc::CallbackServerContext* context,
                                                int64_t timeout_ms, v1::OnTimeout on_timeout) const;

  session::SessionRegistry& registry_;
  const session::GatewayConfig& config_;
  const kernel::KernelSpecRegistry& specs_;
  const TokenAuthenticator& auth_;
  const ServerIdentity identity_;
};

}  // namespace cellgate::api
