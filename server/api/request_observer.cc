#include "server/api/request_observer.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <algorithm>
#include <string>

#include "absl/strings/match.h"
#include "cellgate/v1/kernel_gateway.pb.h"
#include "server/api/raw_message.h"
#include "server/api/status_mapping.h"
#include "server/obs/log.h"
#include "server/obs/metrics.h"

namespace cellgate::api {
namespace {

using grpc::experimental::InterceptionHookPoints;

// The request's `kernel_id` field, if its message has one ("" otherwise).
std::string KernelIdOf(const google::protobuf::Message& message) {
  const google::protobuf::FieldDescriptor* field =
      message.GetDescriptor()->FindFieldByName("kernel_id");
  if (field == nullptr || field->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_STRING ||
      field->is_repeated()) {
    return "";
  }
  return message.GetReflection()->GetString(message, field);
}

class RequestObserver : public grpc::experimental::Interceptor {
 public:
  explicit RequestObserver(const char* method)
      : method_(method != nullptr ? method : ""),
        // Only the gateway's own methods are sure to carry protobuf messages here; others (the
        // health service) may hand interceptors raw byte buffers.
        reads_messages_(absl::StartsWith(method_, "/cellgate.v1.KernelGateway/")),
        // The gateway serves this one raw: its request arrives as a grpc::ByteBuffer.
        raw_stream_outputs_(method_ == "/cellgate.v1.KernelGateway/StreamOutputs") {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      if (const auto* metadata = methods->GetRecvInitialMetadata()) {
        if (auto it = metadata->find("x-request-id"); it != metadata->end()) {
          request_id_.assign(it->second.data(), std::min<size_t>(it->second.size(), 128));
        }
      }
    }
    if (reads_messages_ && !seen_message_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE)) {
      seen_message_ = true;
      if (void* message = methods->GetRecvMessage(); message != nullptr && raw_stream_outputs_) {
        // Shares its slices; parsed only if the call fails (the service parses it anyway).
        raw_request_ = *static_cast<const grpc::ByteBuffer*>(message);
      } else if (message != nullptr) {
        kernel_id_ = KernelIdOf(*static_cast<const google::protobuf::Message*>(message));
      }
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      const std::string code(GrpcCodeName(status.error_code()));
      obs::Metrics::Get().RequestFinished(method_, code);
      if (!status.ok()) {
        if (raw_stream_outputs_ && raw_request_.Valid()) {
          v1::StreamOutputsRequest request;
          if (ParseByteBuffer(raw_request_, request)) kernel_id_ = request.kernel_id();
        }
        obs::Log(obs::LogLevel::kWarning, "request_failed",
                 {{"method", method_},
                  {"code", code},
                  {"error", status.error_message()},
                  {"kernel_id", kernel_id_},
                  {"request_id", request_id_}});
      }
    }
    methods->Proceed();
  }

 private:
  const std::string method_;
  const bool reads_messages_;
  const bool raw_stream_outputs_;
  grpc::ByteBuffer raw_request_;  // of StreamOutputs, until the call's status is known
  std::string kernel_id_;
  std::string request_id_;
  bool seen_message_ = false;
};

}  // namespace

grpc::experimental::Interceptor* RequestObserverFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new RequestObserver(info->method());
}

}  // namespace cellgate::api
