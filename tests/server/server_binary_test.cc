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

namespace cellgate {
namespace {

class ServerProcess {
 public:
  explicit ServerProcess(std::vector<std::string> extra_args) {
    char pattern[] = "/tmp/cgs-XXXXXX";
    dir_ = ::mkdtemp(pattern);
    port_file_ = dir_ + "/port";
    log_file_ = dir_ + "/server.log";
    std::vector<std::string> args = {CELLGATE_BINARY, "--listen=127.0.0.1:0",
                                     "--port-file=" + port_file_, "--runtime-dir=" + dir_ + "/r",
                                     "--state-dir=" + dir_ + "/state"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (std::string& arg : args) argv.push_back(arg.data());
      argv.push_back(nullptr);
      std::FILE* log = std::freopen(log_file_.c_str(), "w", stderr);
      (void)log;
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }

  ~ServerProcess() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    std::error_code error;
    std::filesystem::remove_all(dir_, error);
  }

  // The bound port once the port file appears; 0 after `timeout`.
  int WaitForPort(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      std::ifstream file(port_file_);
      std::string text;
      int port = 0;
      if (file >> text && absl::SimpleAtoi(text, &port) && port > 0) return port;
      if (ExitedWith().has_value()) return 0;
      absl::SleepFor(absl::Milliseconds(20));  // polling for the file, with a deadline
    }
    return 0;
  }

  // The exit status if the process has ended, without blocking.
  std::optional<int> ExitedWith() {
    if (exited_) return exit_status_;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      exit_status_ = status;
      return status;
    }
    return std::nullopt;
  }

  std::optional<int> WaitForExit(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (auto status = ExitedWith()) return status;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return ExitedWith();
  }

  pid_t pid() const { return pid_; }
  std::string log() const {
    std::ifstream file(log_file_);
    return std::string(std::istreambuf_iterator<char>(file), {});
  }

 private:
  std::string dir_, port_file_, log_file_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int exit_status_ = 0;
};

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
