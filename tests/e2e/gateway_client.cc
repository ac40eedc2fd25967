#include "tests/e2e/gateway_client.h"

#include <chrono>

#include "gtest/gtest.h"

namespace cellgate::testing {

GatewayClient::GatewayClient(const std::string& target, std::string token,
                             const grpc::ChannelArguments& arguments)
    : channel_(grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), arguments)),
      stub_(v1::KernelGateway::NewStub(channel_)),
      token_(std::move(token)) {}

std::unique_ptr<grpc::ClientContext> GatewayClient::Context(int deadline_seconds) const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!token_.empty()) context->AddMetadata("authorization", "Bearer " + token_);
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(deadline_seconds));
  return context;
}

grpc::Status GatewayClient::StartKernel(const v1::StartKernelRequest& request,
                                        v1::Kernel* kernel) {
  return stub_->StartKernel(Context().get(), request, kernel);
}

std::string GatewayClient::MustStartKernel() {
  v1::Kernel kernel;
  grpc::Status status = StartKernel(v1::StartKernelRequest(), &kernel);
  EXPECT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
  return kernel.kernel_id();
}

v1::Cell GatewayClient::MustAddCell(const std::string& kernel_id, const std::string& source) {
  v1::AddCellRequest request;
  request.set_kernel_id(kernel_id);
  request.set_source(source);
  v1::Cell cell;
  grpc::Status status = stub_->AddCell(Context().get(), request, &cell);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return cell;
}

v1::ExecutionResult GatewayClient::MustRunCell(const std::string& kernel_id,
                                               const std::string& cell_id, int64_t timeout_ms) {
  v1::RunCellRequest request;
  request.set_kernel_id(kernel_id);
  request.set_cell_id(cell_id);
  request.set_timeout_ms(timeout_ms);
  v1::ExecutionResult result;
  grpc::Status status = stub_->RunCell(Context().get(), request, &result);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return result;
}

v1::ExecutionResult GatewayClient::MustExecute(const std::string& kernel_id,
                                               const std::string& code, int64_t timeout_ms) {
  v1::ExecuteRequest request;
  request.set_kernel_id(kernel_id);
  request.set_code(code);
  request.set_timeout_ms(timeout_ms);
  v1::ExecutionResult result;
  grpc::Status status = stub_->Execute(Context().get(), request, &result);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return result;
}

v1::Notebook GatewayClient::MustGetNotebook(const std::string& kernel_id) {
  v1::GetNotebookRequest request;
  request.set_kernel_id(kernel_id);
  v1::Notebook notebook;
  grpc::Status status = stub_->GetNotebook(Context().get(), request, &notebook);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return notebook;
}

grpc::Status GatewayClient::Shutdown(const std::string& kernel_id) {
  v1::ShutdownKernelRequest request;
  request.set_kernel_id(kernel_id);
  v1::ShutdownKernelResponse response;
  return stub_->ShutdownKernel(Context().get(), request, &response);
}

v1::Kernel GatewayClient::WaitForKernel(const std::string& kernel_id,
                                        const std::function<bool(const v1::Kernel&)>& done,
                                        absl::Duration timeout) {
  v1::GetKernelRequest get;
  get.set_kernel_id(kernel_id);
  v1::Kernel kernel;
  const absl::Time deadline = absl::Now() + timeout;
  do {
    kernel.Clear();
    if (!stub_->GetKernel(Context().get(), get, &kernel).ok()) break;
  } while (!done(kernel) && absl::Now() < deadline);
  return kernel;
}

v1::Cell GatewayClient::WaitForCell(const std::string& kernel_id, const std::string& cell_id,
                                    const std::function<bool(const v1::Cell&)>& done,
                                    absl::Duration timeout) {
  v1::GetCellRequest get;
  get.set_kernel_id(kernel_id);
  get.set_cell_id(cell_id);
  v1::Cell cell;
  const absl::Time deadline = absl::Now() + timeout;
  do {
    cell.Clear();
    if (!stub_->GetCell(Context().get(), get, &cell).ok()) break;
  } while (!done(cell) && absl::Now() < deadline);
  return cell;
}

}  // namespace cellgate::testing
