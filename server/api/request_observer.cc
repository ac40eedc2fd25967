#include "server/api/request_observer.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <algorithm>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
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

// For a method the gateway serves raw (its request arrives as a grpc::ByteBuffer), an empty
// request of its type; null for the others.
const google::protobuf::Message* RawRequestPrototype(const std::string& method) {
  static constexpr absl::string_view kService = "/cellgate.v1.KernelGateway/";
  if (!absl::StartsWith(method, kService)) return nullptr;
  const absl::string_view name = absl::string_view(method).substr(kService.size());
  if (name == "StreamOutputs") return &v1::StreamOutputsRequest::default_instance();
  if (name == "GetNotebook") return &v1::GetNotebookRequest::default_instance();
  if (name == "ImportNotebook") return &v1::ImportNotebookRequest::default_instance();
  return nullptr;
}

class RequestObserver : public grpc::experimental::Interceptor {
 public:
  explicit RequestObserver(const char* method)
      : method_(method != nullptr ? method : ""),
        // Only the gateway's own methods are sure to carry protobuf messages here; others (the
        // health service) may hand interceptors raw byte buffers.
        reads_messages_(absl::StartsWith(method_, "/cellgate.v1.KernelGateway/")),
        raw_request_prototype_(RawRequestPrototype(method_)) {}

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
      if (void* message = methods->GetRecvMessage();
          message != nullptr && raw_request_prototype_ != nullptr) {
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
        if (raw_request_prototype_ != nullptr && raw_request_.Valid()) {
          std::unique_ptr<google::protobuf::Message> request(raw_request_prototype_->New());
          if (ParseByteBuffer(raw_request_, *request)) kernel_id_ = KernelIdOf(*request);
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
  const google::protobuf::Message* const raw_request_prototype_;  // null unless served raw
  grpc::ByteBuffer raw_request_;  // of a method served raw, until the call's status is known
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
