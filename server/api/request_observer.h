#pragma once

// Watches every gRPC call the server finishes: counts it by method and status code
// (cellgate_grpc_requests_total) and logs each failed one with its method, code, message, the
// kernel_id it named and the client's x-request-id. Never the request's code or outputs.

#include <grpcpp/support/server_interceptor.h>

namespace cellgate::api {

class RequestObserverFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;
};

}  // namespace cellgate::api
