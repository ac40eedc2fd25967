#pragma once

// The streaming RPCs of a kernel's workspace files: UploadFile (client-streaming) and
// DownloadFile (server-streaming), on the gRPC callback API. The file I/O is done on the
// callback thread, a chunk at a time.

#include <functional>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "cellgate/v1/files.pb.h"
#include "server/kernel/workspace.h"
#include "server/session/kernel_session.h"

namespace cellgate::api {

// Finds the kernel a request names, with the call's auth checked (KernelGatewayService's).
using KernelFinder = std::function<absl::StatusOr<std::shared_ptr<session::KernelSession>>(
    const std::string& kernel_id)>;

class UploadFileReactor : public grpc::ServerReadReactor<v1::UploadFileRequest> {
 public:
  UploadFileReactor(KernelFinder find, v1::FileInfo* response);
  void OnReadDone(bool ok) override;
  void OnDone() override { delete this; }
  void OnCancel() override {}

 private:
  void Fail(const absl::Status& status);

  KernelFinder find_;
  v1::FileInfo* response_;
  v1::UploadFileRequest request_;
  std::unique_ptr<kernel::Workspace::Upload> upload_;
  bool finished_ = false;
};

class DownloadFileReactor : public grpc::ServerWriteReactor<v1::FileChunk> {
 public:
  // Opens the file; a failure finishes the call at once.
  DownloadFileReactor(const absl::StatusOr<std::shared_ptr<session::KernelSession>>& session,
                      const std::string& path);
  void OnWriteDone(bool ok) override;
  void OnDone() override { delete this; }
  void OnCancel() override {}

 private:
  void WriteNext();

  UniqueFd file_;
  v1::FileChunk chunk_;
  bool first_ = true;
};

v1::FileInfo ToProto(const kernel::WorkspaceEntry& entry);

}  // namespace cellgate::api
