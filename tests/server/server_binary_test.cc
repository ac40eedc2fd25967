// Runs the real cellgate binary: port 0 + --port-file, gRPC health, SIGTERM drain.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/synchronization/notification.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/support/server_process.h"

namespace cellgate {
namespace {

using testing::ServerProcess;

// grpc.health.v1.Health/Check for the whole server, over the wire with a generic stub: the
// request (empty service name) serialises to no bytes; the response is field 1, a varint
// status (1 = SERVING, 2 = NOT_SERVING). Returns the status, or -1 when the call failed.
int CheckHealth(int port) {
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                     grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::ByteBuffer request;
  grpc::Slice empty;
  request = grpc::ByteBuffer(&empty, 1);
  grpc::ByteBuffer response;
  grpc::Status status;
  absl::Notification done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                 &response, [&](grpc::Status result) {
                   status = result;
                   done.Notify();
                 });
  done.WaitForNotification();
  if (!status.ok()) {
    ADD_FAILURE() << status.error_message();
    return -1;
  }
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return -1;
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  if (bytes.size() != 2 || bytes[0] != 0x08) return -1;
  return bytes[1];
}

constexpr int kServing = 1;

TEST(ServerBinaryTest, ServesHealthOnPortZeroAndDrainsOnSigterm) {
  ServerProcess server({});
  const int port = server.WaitForPort(absl::Seconds(30));
  ASSERT_GT(port, 0) << server.log();
  EXPECT_EQ(CheckHealth(port), kServing);
  EXPECT_NE(server.log().find("event=sandbox_layer layer=rlimits available=true"),
            std::string::npos)
      << server.log();

  ASSERT_EQ(::kill(server.pid(), SIGTERM), 0);
  std::optional<int> status = server.WaitForExit(absl::Seconds(20));
  ASSERT_TRUE(status.has_value()) << "server did not exit after SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
  EXPECT_NE(server.log().find("event=stopped"), std::string::npos) << server.log();
}

TEST(ServerBinaryTest, UnknownSandboxModeFailsStartNamingTheFlag) {
  ServerProcess server({"--sandbox=chroot"});
  std::optional<int> status = server.WaitForExit(absl::Seconds(20));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) != 0);
  EXPECT_NE(server.log().find("--sandbox: 'chroot'"), std::string::npos) << server.log();
}

}  // namespace
}  // namespace cellgate
