#pragma once

#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/status.h"

namespace cellgate::api {

// The one mapping from the layers' absl::Status to the gRPC status an RPC returns: same code
// (mapped explicitly, not by number), same message. Codes absl may add later map to UNKNOWN.
grpc::Status ToGrpcStatus(const absl::Status& status);

// The gRPC code for an absl code (UNKNOWN for codes gRPC does not have).
grpc::StatusCode ToGrpcCode(absl::StatusCode code);

// The canonical name of a gRPC code: "OK", "NOT_FOUND", ... ("UNKNOWN" past the known ones).
std::string GrpcCodeName(grpc::StatusCode code);

}  // namespace cellgate::api
