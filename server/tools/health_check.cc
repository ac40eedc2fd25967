#include "server/tools/health_check.h"

#include <chrono>
#include <string>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"

namespace cellgate::tools {

absl::StatusOr<ServingStatus> CheckServerHealth(const std::shared_ptr<grpc::Channel>& channel,
                                                absl::Duration timeout) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout)));
  grpc::Slice empty;
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  grpc::Status status;
  absl::Notification done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                 &response, [&](grpc::Status result) {
                   status = std::move(result);
                   done.Notify();
                 });
  done.WaitForNotification();
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        status.error_message());
  }
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return absl::InternalError("unreadable health reply");
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  // HealthCheckResponse{status = 1}: tag 0x08, then the varint (the enum's values fit one byte).
  if (bytes.empty()) return ServingStatus::kUnknown;  // status 0 is not serialized
  if (bytes.size() != 2 || bytes[0] != 0x08) {
    return absl::InternalError(absl::StrCat("not a HealthCheckResponse (", bytes.size(), " bytes)"));
  }
  switch (bytes[1]) {
    case 1: return ServingStatus::kServing;
    case 2: return ServingStatus::kNotServing;
    default: return ServingStatus::kUnknown;
  }
}

}  // namespace cellgate::tools
