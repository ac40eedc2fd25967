#pragma once

// A client of grpc.health.v1.Health/Check for a whole server (the empty service name), spoken
// with a generic stub: the request is an empty message, the reply one varint field.

#include <memory>

#include <grpcpp/channel.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace cellgate::tools {

enum class ServingStatus { kUnknown = 0, kServing = 1, kNotServing = 2 };

// The server's status, or the error of the call (UNAVAILABLE when nothing answers, ...).
absl::StatusOr<ServingStatus> CheckServerHealth(const std::shared_ptr<grpc::Channel>& channel,
                                                absl::Duration timeout);

}  // namespace cellgate::tools
