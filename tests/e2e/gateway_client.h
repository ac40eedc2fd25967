#pragma once

// A small synchronous wrapper over the generated C++ stub, for end-to-end tests.

#include <functional>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/time/time.h"

#include "cellgate/v1/kernel_gateway.grpc.pb.h"

namespace cellgate::testing {

class GatewayClient {
 public:
  explicit GatewayClient(const std::string& target, std::string token = "",
                         const grpc::ChannelArguments& arguments = grpc::ChannelArguments());

  v1::KernelGateway::Stub& stub() { return *stub_; }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }

  // A context with the bearer token (if any) and a deadline.
  std::unique_ptr<grpc::ClientContext> Context(int deadline_seconds = 120) const;

  grpc::Status StartKernel(const v1::StartKernelRequest& request, v1::Kernel* kernel);
  // Starts a default python3 kernel; fails the test on error.
  std::string MustStartKernel();
  v1::Cell MustAddCell(const std::string& kernel_id, const std::string& source);
  v1::ExecutionResult MustRunCell(const std::string& kernel_id, const std::string& cell_id,
                                  int64_t timeout_ms = 0);
  v1::ExecutionResult MustExecute(const std::string& kernel_id, const std::string& code,
                                  int64_t timeout_ms = 0);
  v1::Notebook MustGetNotebook(const std::string& kernel_id);
  grpc::Status Shutdown(const std::string& kernel_id);

  // Polls GetKernel / GetCell until `done` holds or `timeout` passes; returns the last one seen
  // (empty if the call failed).
  v1::Kernel WaitForKernel(const std::string& kernel_id,
                           const std::function<bool(const v1::Kernel&)>& done,
                           absl::Duration timeout = absl::Seconds(60));
  v1::Cell WaitForCell(const std::string& kernel_id, const std::string& cell_id,
                       const std::function<bool(const v1::Cell&)>& done,
                       absl::Duration timeout = absl::Seconds(60));

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::KernelGateway::Stub> stub_;
  std::string token_;
};

}  // namespace cellgate::testing
