#include "server/api/file_reactors.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "server/api/status_mapping.h"

namespace cellgate::api {
namespace {

constexpr size_t kDownloadChunkBytes = 1 << 20;

v1::FileKind ToProto(kernel::WorkspaceEntry::Kind kind) {
  switch (kind) {
    case kernel::WorkspaceEntry::Kind::kFile: return v1::FILE_KIND_FILE;
    case kernel::WorkspaceEntry::Kind::kDirectory: return v1::FILE_KIND_DIRECTORY;
    case kernel::WorkspaceEntry::Kind::kSymlink: return v1::FILE_KIND_SYMLINK;
    default: return v1::FILE_KIND_OTHER;
  }
}

}  // namespace

v1::FileInfo ToProto(const kernel::WorkspaceEntry& entry) {
  v1::FileInfo info;
  info.set_path(entry.path);
  info.set_kind(ToProto(entry.kind));
  info.set_size(entry.size);
  *info.mutable_modified() =
      google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(entry.modified));
  return info;
}

UploadFileReactor::UploadFileReactor(KernelFinder find, v1::FileInfo* response)
    : find_(std::move(find)), response_(response) {
  StartRead(&request_);
}

void UploadFileReactor::Fail(const absl::Status& status) {
  upload_.reset();  // removes the temporary file
  finished_ = true;
  Finish(ToGrpcStatus(status));
}

void UploadFileReactor::OnReadDone(bool ok) {
  if (finished_) return;
  if (!ok) {  // closed or cancelled before UploadFileEnd: abandoned
    Fail(absl::InvalidArgumentError(
        upload_ == nullptr ? "header: the stream ended without an UploadFileHeader"
                           : "end: the stream ended without UploadFileEnd; nothing was written"));
    return;
  }
  if (request_.has_end()) {
    if (upload_ == nullptr) {
      Fail(absl::InvalidArgumentError("header: the first message must be an UploadFileHeader"));
      return;
    }
    absl::StatusOr<kernel::WorkspaceEntry> entry = upload_->Commit();
    if (!entry.ok()) {
      Fail(entry.status());
      return;
    }
    *response_ = ToProto(*entry);
    finished_ = true;
    Finish(grpc::Status::OK);
    return;
  }
  if (request_.has_header()) {
    if (upload_ != nullptr) {
      Fail(absl::InvalidArgumentError("header: only the first message may be a header"));
      return;
    }
    const v1::UploadFileHeader& header = request_.header();
    absl::StatusOr<std::shared_ptr<session::KernelSession>> session = find_(header.kernel_id());
    if (!session.ok()) {
      Fail(session.status());
      return;
    }
    absl::StatusOr<std::unique_ptr<kernel::Workspace::Upload>> upload =
        (*session)->workspace().BeginUpload(header.path(), header.overwrite(), header.size());
    if (!upload.ok()) {
      Fail(upload.status());
      return;
    }
    upload_ = *std::move(upload);
  } else {
    if (upload_ == nullptr) {
      Fail(absl::InvalidArgumentError("header: the first message must be an UploadFileHeader"));
      return;
    }
    if (absl::Status status = upload_->Write(request_.chunk()); !status.ok()) {
      Fail(status);
      return;
    }
  }
  request_.Clear();
  StartRead(&request_);
}

DownloadFileReactor::DownloadFileReactor(
    const absl::StatusOr<std::shared_ptr<session::KernelSession>>& session,
    const std::string& path) {
  if (!session.ok()) {
    Finish(ToGrpcStatus(session.status()));
    return;
  }
  kernel::WorkspaceEntry info;
  absl::StatusOr<UniqueFd> file = (*session)->workspace().OpenForReading(path, &info);
  if (!file.ok()) {
    Finish(ToGrpcStatus(file.status()));
    return;
  }
  file_ = *std::move(file);
  *chunk_.mutable_info() = ToProto(info);
  WriteNext();
}

void DownloadFileReactor::WriteNext() {
  std::string* data = chunk_.mutable_data();
  data->resize(kDownloadChunkBytes);
  ssize_t n;
  do {
    n = ::read(file_.get(), data->data(), data->size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    Finish(ToGrpcStatus(absl::InternalError(absl::StrCat("reading: ", std::strerror(errno)))));
    return;
  }
  data->resize(static_cast<size_t>(n));
  if (n == 0 && !first_) {
    Finish(grpc::Status::OK);
    return;
  }
  first_ = false;
  StartWrite(&chunk_);
}

void DownloadFileReactor::OnWriteDone(bool ok) {
  if (!ok) {
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
    return;
  }
  chunk_.clear_info();
  if (chunk_.data().empty()) {  // that was the empty file's only message
    Finish(grpc::Status::OK);
    return;
  }
  WriteNext();
}

}  // namespace cellgate::api
