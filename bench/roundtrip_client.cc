// The C++ client of bench/roundtrip_bench.py: runs cells of one kernel through a cellgate
// server with the generated C++ stub and reports each RunCell's round trip, timed here.
//
//   roundtrip_client <host:port> <token-file> <kernel_id>
//
// Reads cell ids from stdin, one per line; for each, answers one line on stdout:
//   "ok <nanoseconds> <result text, C-escaped>"   or   "error <gRPC status>".
// Ends at end of input.

#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "cellgate/v1/kernel_gateway.grpc.pb.h"

namespace {

std::string ReadToken(const std::string& path) {
  std::ifstream file(path);
  std::string line;
  while (std::getline(file, line)) {
    if (!line.empty() && line[0] != '#') return line;
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: " << argv[0] << " <host:port> <token-file> <kernel_id>\n";
    return 2;
  }
  const std::string token = ReadToken(argv[2]);
  const std::string kernel_id = argv[3];
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(-1);
  auto stub = cellgate::v1::KernelGateway::NewStub(
      grpc::CreateCustomChannel(argv[1], grpc::InsecureChannelCredentials(), arguments));

  std::string cell_id;
  while (std::getline(std::cin, cell_id)) {
    cellgate::v1::RunCellRequest request;
    request.set_kernel_id(kernel_id);
    request.set_cell_id(cell_id);
    cellgate::v1::ExecutionResult result;
    grpc::ClientContext context;
    context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    const auto start = std::chrono::steady_clock::now();
    const grpc::Status status = stub->RunCell(&context, request, &result);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    if (status.ok()) {
      std::cout << "ok " << std::chrono::nanoseconds(elapsed).count() << " "
                << absl::CEscape(result.text()) << std::endl;
    } else {
      std::cout << "error " << static_cast<int>(status.error_code()) << " "
                << absl::CEscape(status.error_message()) << std::endl;
    }
  }
  return 0;
}
