// Every error code of the API's error table, each provoked by a request that should get it.

#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <chrono>
#include <future>

#include <grpcpp/impl/client_unary_call.h>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"

namespace cellgate {
namespace {

using ::testing::HasSubstr;
using testing::DefaultFlags;
using testing::GatewayClient;
using testing::ServerProcess;
using testing::ServerSuite;

std::string MakeTempDir() {
  char pattern[] = "/tmp/cge-XXXXXX";
  return ::mkdtemp(pattern);
}

// A killed kernel stays DEAD here, as a kernel does once its restarts are used up.
struct NoRestartFlags {
  static std::vector<std::string> Args() { return {"--restart-on-death=false"}; }
  static std::vector<std::string> Env() { return {}; }
  static std::string Token() { return ""; }
};
class ErrorTest : public ServerSuite<NoRestartFlags> {};

TEST_F(ErrorTest, AStreamOutputsRequestWhoseBytesDoNotParseIsInvalidArgument) {
  // StreamOutputs is served raw; a client that sends what is not a StreamOutputsRequest gets
  // the same kind of answer as from the methods gRPC parses itself.
  const grpc::internal::RpcMethod method("/cellgate.v1.KernelGateway/StreamOutputs",
                                         grpc::internal::RpcMethod::SERVER_STREAMING);
  grpc::Slice garbage(std::string("\xff\xff\xff\xff", 4));
  const grpc::ByteBuffer request(&garbage, 1);
  std::unique_ptr<grpc::ClientContext> context = client().Context();
  std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
      grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(
          client().channel().get(), method, context.get(), request));
  grpc::ByteBuffer event;
  EXPECT_FALSE(reader->Read(&event));
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("StreamOutputsRequest"));
}

TEST_F(ErrorTest, GetNotebookAndImportNotebookRequestsWhoseBytesDoNotParseAreInvalidArgument) {
  // Both are served raw too (their reply is written from the session's cells).
  for (const std::string name : {"GetNotebook", "ImportNotebook"}) {
    const std::string path = "/cellgate.v1.KernelGateway/" + name;
    const grpc::internal::RpcMethod method(path.c_str(), grpc::internal::RpcMethod::NORMAL_RPC);
    grpc::Slice garbage(std::string("\xff\xff\xff\xff", 4));
    const grpc::ByteBuffer request(&garbage, 1);
    grpc::ByteBuffer reply;
    std::unique_ptr<grpc::ClientContext> context = client().Context();
    const grpc::Status status =
        grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
            client().channel().get(), method, context.get(), request, &reply);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << name;
    EXPECT_THAT(status.error_message(), HasSubstr(name + "Request")) << name;
  }
}

TEST_F(ErrorTest, UnknownKernelAndCellAreNotFound) {
  v1::GetKernelRequest get;
  get.set_kernel_id("0123456789abcdef0123456789abcdef");
  v1::Kernel kernel;
  grpc::Status status = client().stub().GetKernel(client().Context().get(), get, &kernel);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("kernel_id"));

  const std::string kernel_id = client().MustStartKernel();
  v1::GetCellRequest get_cell;
  get_cell.set_kernel_id(kernel_id);
  get_cell.set_cell_id("nosuchcell");
  v1::Cell cell;
  EXPECT_EQ(client().stub().GetCell(client().Context().get(), get_cell, &cell).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::RunCellRequest run;
  run.set_kernel_id(kernel_id);
  run.set_cell_id("nosuchcell");
  v1::ExecutionResult result;
  EXPECT_EQ(client().stub().RunCell(client().Context().get(), run, &result).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

TEST_F(ErrorTest, BadInputIsInvalidArgumentNamingTheField) {
  v1::GetKernelRequest get;
  get.set_kernel_id("not/a/valid/id");
  v1::Kernel kernel;
  grpc::Status status = client().stub().GetKernel(client().Context().get(), get, &kernel);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("kernel_id"));

  v1::StartKernelRequest unknown_spec;
  unknown_spec.set_kernel_spec("cobol");
  status = client().StartKernel(unknown_spec, &kernel);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            "kernel_spec: no kernelspec named 'cobol' (ListKernelSpecs lists what is available)");

  v1::StartKernelRequest bad_notebook;
  bad_notebook.set_notebook_ipynb("{not json");
  status = client().StartKernel(bad_notebook, &kernel);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("ipynb"));

  const std::string kernel_id = client().MustStartKernel();
  v1::ExecuteRequest empty;
  empty.set_kernel_id(kernel_id);
  empty.set_code("   \n");
  v1::ExecutionResult result;
  status = client().stub().Execute(client().Context().get(), empty, &result);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("code"));

  v1::AddCellRequest oversized;
  oversized.set_kernel_id(kernel_id);
  oversized.set_source(std::string((1 << 20) + 1, 'x'));
  v1::Cell cell;
  status = client().stub().AddCell(client().Context().get(), oversized, &cell);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("source"));

  v1::ImportNotebookRequest bad_import;
  bad_import.set_kernel_id(kernel_id);
  bad_import.set_ipynb(R"({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "cells": []})");
  v1::Notebook notebook;
  status = client().stub().ImportNotebook(client().Context().get(), bad_import, &notebook);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("nbformat"));

  v1::AddCellRequest markdown;
  markdown.set_kernel_id(kernel_id);
  markdown.set_source("# notes");
  markdown.set_cell_type(v1::CELL_TYPE_MARKDOWN);
  ASSERT_TRUE(client().stub().AddCell(client().Context().get(), markdown, &cell).ok());
  v1::RunCellRequest run_markdown;
  run_markdown.set_kernel_id(kernel_id);
  run_markdown.set_cell_id(cell.cell_id());
  status = client().stub().RunCell(client().Context().get(), run_markdown, &result);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

TEST_F(ErrorTest, AKernelWhoseStartWasAbandonedIsNotKept) {
  v1::Kernel kernel;
  auto context = client().Context();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
  grpc::Status status = client().stub().StartKernel(context.get(), v1::StartKernelRequest(), &kernel);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // Nobody got its id: once it has started it is shut down again.
  v1::ListKernelsResponse listed;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  do {
    listed.Clear();
    ASSERT_TRUE(client()
                    .stub()
                    .ListKernels(client().Context().get(), v1::ListKernelsRequest(), &listed)
                    .ok());
  } while (listed.kernels_size() > 0 && absl::Now() < deadline);
  EXPECT_EQ(listed.kernels_size(), 0);
}

TEST_F(ErrorTest, DuplicateClientCellIdIsAlreadyExists) {
  const std::string kernel_id = client().MustStartKernel();
  v1::AddCellRequest add;
  add.set_kernel_id(kernel_id);
  add.set_cell_id("step-1");
  add.set_source("1");
  v1::Cell cell;
  ASSERT_TRUE(client().stub().AddCell(client().Context().get(), add, &cell).ok());
  EXPECT_EQ(client().stub().AddCell(client().Context().get(), add, &cell).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

TEST_F(ErrorTest, DeadKernelIsFailedPrecondition) {
  const std::string kernel_id = client().MustStartKernel();
  v1::GetKernelRequest get;
  get.set_kernel_id(kernel_id);
  v1::Kernel kernel;
  ASSERT_TRUE(client().stub().GetKernel(client().Context().get(), get, &kernel).ok());
  ASSERT_EQ(::kill(kernel.pid(), SIGKILL), 0);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  do {
    ASSERT_TRUE(client().stub().GetKernel(client().Context().get(), get, &kernel).ok());
  } while (kernel.state() != v1::KERNEL_STATE_DEAD && absl::Now() < deadline);
  ASSERT_EQ(kernel.state(), v1::KERNEL_STATE_DEAD);
  v1::ExecuteRequest execute;
  execute.set_kernel_id(kernel_id);
  execute.set_code("1");
  v1::ExecutionResult result;
  grpc::Status status = client().stub().Execute(client().Context().get(), execute, &result);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("SIGKILL"));
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

struct SmallCapsFlags {
  static std::vector<std::string> Args() {
    return {"--max-kernels=1", "--max-cells=3", "--max-memory-limit-bytes=4294967296",
            "--memory-limit-bytes=4294967296", "--max-output-bytes=4096",
            "--output-hard-cap-bytes=1000000000", "--event-log-bytes=65536"};
  }
  static std::vector<std::string> Env() { return {}; }
  static std::string Token() { return ""; }
};
class CapsTest : public ServerSuite<SmallCapsFlags> {};

TEST_F(CapsTest, CapsAreResourceExhaustedAndLimitsAboveCapsInvalid) {
  v1::StartKernelRequest greedy;
  greedy.mutable_limits()->set_address_space_bytes(8ll << 30);
  v1::Kernel kernel;
  grpc::Status status = client().StartKernel(greedy, &kernel);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("address_space_bytes"));

  const std::string kernel_id = client().MustStartKernel();
  status = client().StartKernel(v1::StartKernelRequest(), &kernel);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  client().MustAddCell(kernel_id, "1");
  client().MustAddCell(kernel_id, "2");
  const v1::Cell flood = client().MustAddCell(kernel_id, "print('y' * 100000)");
  v1::AddCellRequest fourth;
  fourth.set_kernel_id(kernel_id);
  fourth.set_source("4");
  v1::Cell cell;
  EXPECT_EQ(client().stub().AddCell(client().Context().get(), fourth, &cell).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);

  // Stored outputs stop at the cap, with a visible marker.
  const v1::ExecutionResult result = client().MustRunCell(kernel_id, flood.cell_id());
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_OK);
  EXPECT_TRUE(result.truncated());
  EXPECT_THAT(result.text(), HasSubstr("truncated"));
  EXPECT_LT(result.text().size(), 8192u);
  v1::GetCellRequest get;
  get.set_kernel_id(kernel_id);
  get.set_cell_id(flood.cell_id());
  ASSERT_TRUE(client().stub().GetCell(client().Context().get(), get, &cell).ok());
  EXPECT_TRUE(cell.outputs_truncated());
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

TEST_F(CapsTest, ReaderFarBehindTheLogIsCutOffAndToldWhatIsGone) {
  const std::string kernel_id = client().MustStartKernel();
  v1::StreamOutputsRequest request;
  request.set_kernel_id(kernel_id);
  request.set_follow(true);
  // A stalled reader: without BDP probing the HTTP/2 window stays at its 64 KiB default, so
  // the transport can't absorb the whole output on the reader's behalf.
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  GatewayClient stalled(server().Target(), "", arguments);
  auto context = stalled.Context(120);
  auto reader = stalled.stub().StreamOutputs(context.get(), request);
  v1::OutputEvent event;
  ASSERT_TRUE(reader->Read(&event));  // the kernel's start events
  int64_t last_seq = event.seq();
  // While this reader stalls, ~2 MB of events go through a 64 KiB log.
  ASSERT_EQ(client()
                .MustExecute(kernel_id, "for i in range(2000):\n    print(str(i) * 300, flush=True)",
                             60000)
                .status(),
            v1::EXECUTION_STATUS_OK);
  while (reader->Read(&event)) last_seq = event.seq();
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("fell behind"));

  // ~2 MB went through a 64 KiB log: resuming from the last seq seen says exactly what is gone
  // ...
  request.set_follow(false);
  request.set_after_seq(last_seq);
  auto resume_context = client().Context();
  auto resumed = client().stub().StreamOutputs(resume_context.get(), request);
  EXPECT_FALSE(resumed->Read(&event));
  const grpc::Status out_of_range = resumed->Finish();
  EXPECT_EQ(out_of_range.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_THAT(out_of_range.error_message(), HasSubstr("oldest retained seq"));
  // ... and the retained window is still there, gap-free, up to the last event.
  request.set_after_seq(0);
  auto window_context = client().Context();
  auto window = client().stub().StreamOutputs(window_context.get(), request);
  int64_t previous = 0;
  while (window->Read(&event)) {
    if (previous != 0) {
      EXPECT_EQ(event.seq(), previous + 1);
    }
    previous = event.seq();
  }
  EXPECT_TRUE(window->Finish().ok());
  EXPECT_GT(previous, last_seq);
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

struct LagFlags {
  static std::vector<std::string> Args() {
    return {"--event-log-bytes=1048576", "--stream-max-lag-bytes=131072"};
  }
  static std::vector<std::string> Env() { return {}; }
  static std::string Token() { return ""; }
};
class LagTest : public ServerSuite<LagFlags> {};

TEST_F(LagTest, LaggingReaderIsCutOffWhileItCanStillResumeWithoutLoss) {
  const std::string kernel_id = client().MustStartKernel();
  v1::StreamOutputsRequest request;
  request.set_kernel_id(kernel_id);
  request.set_follow(true);
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);  // a 64 KiB window: the stall is real
  GatewayClient stalled(server().Target(), "", arguments);
  auto context = stalled.Context(120);
  auto reader = stalled.stub().StreamOutputs(context.get(), request);
  v1::OutputEvent event;
  std::vector<int64_t> seen;
  ASSERT_TRUE(reader->Read(&event));
  seen.push_back(event.seq());
  // ~600 KB of events while the reader stalls: more than the lag limit, less than the log.
  ASSERT_EQ(client()
                .MustExecute(kernel_id, "for i in range(2000):\n    print(str(i) * 100, flush=True)",
                             60000)
                .status(),
            v1::EXECUTION_STATUS_OK);
  while (reader->Read(&event)) seen.push_back(event.seq());
  const grpc::Status status = reader->Finish();
  ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("resume with StreamOutputs(after_seq="));

  // Resuming from the last seq received continues exactly where it stopped.
  request.set_follow(false);
  request.set_after_seq(seen.back());
  auto resume_context = client().Context();
  auto resumed = client().stub().StreamOutputs(resume_context.get(), request);
  while (resumed->Read(&event)) seen.push_back(event.seq());
  ASSERT_TRUE(resumed->Finish().ok());
  request.set_after_seq(0);
  auto replay_context = client().Context();
  auto replay = client().stub().StreamOutputs(replay_context.get(), request);
  std::vector<int64_t> all;
  while (replay->Read(&event)) all.push_back(event.seq());
  ASSERT_TRUE(replay->Finish().ok());
  EXPECT_EQ(seen, all) << "gap or duplicate across the cut";
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

struct BrokenSpecFlags {
  static std::vector<std::string> Args() { return {"--startup-timeout-seconds=20"}; }
  static std::vector<std::string> Env() {
    static const std::string dir = [] {
      const std::string root = MakeTempDir();
      std::filesystem::create_directories(root + "/kernels/broken");
      std::ofstream(root + "/kernels/broken/kernel.json")
          << R"({"argv": ["/bin/sh", "-c", "echo 'ModuleNotFoundError: kernelpkg' >&2; exit 1",)"
          << R"( "{connection_file}"], "display_name": "Broken", "language": "none"})";
      return root;
    }();
    return {"JUPYTER_PATH=" + dir};
  }
  static std::string Token() { return ""; }
};
class BrokenSpecTest : public ServerSuite<BrokenSpecFlags> {};

TEST_F(BrokenSpecTest, KernelThatFailsToStartIsUnavailableWithItsStderr) {
  v1::StartKernelRequest start;
  start.set_kernel_spec("broken");
  v1::Kernel kernel;
  grpc::Status status = client().StartKernel(start, &kernel);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("exited with code 1"));
  EXPECT_THAT(status.error_message(), HasSubstr("ModuleNotFoundError: kernelpkg"));
  // The failed kernel is not kept.
  v1::ListKernelsResponse listed;
  ASSERT_TRUE(client()
                  .stub()
                  .ListKernels(client().Context().get(), v1::ListKernelsRequest(), &listed)
                  .ok());
  EXPECT_EQ(listed.kernels_size(), 0);
}

struct AuthFlags {
  static std::string TokenFile() {
    static const std::string path = [] {
      const std::string file = MakeTempDir() + "/tokens";
      std::ofstream(file) << "# agents\nsecret-token-1\n\nsecret-token-2\n";
      return file;
    }();
    return path;
  }
  static std::vector<std::string> Args() { return {"--auth-token-file=" + TokenFile()}; }
  static std::vector<std::string> Env() { return {}; }
  static std::string Token() { return "secret-token-2"; }
};
class AuthTest : public ServerSuite<AuthFlags> {};

TEST_F(AuthTest, WrongOrMissingTokenIsUnauthenticatedAndHealthNeedsNone) {
  GatewayClient anonymous(server().Target());
  GatewayClient impostor(server().Target(), "secret-token-3");
  v1::ListKernelsResponse listed;
  grpc::Status status = anonymous.stub().ListKernels(anonymous.Context().get(),
                                                     v1::ListKernelsRequest(), &listed);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  status = impostor.stub().ListKernels(impostor.Context().get(), v1::ListKernelsRequest(),
                                       &listed);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), ::testing::Not(HasSubstr("secret-token-3")));
  status = client().stub().ListKernels(client().Context().get(), v1::ListKernelsRequest(),
                                       &listed);
  EXPECT_TRUE(status.ok()) << status.error_message();
  v1::ServerInfo info;
  ASSERT_TRUE(client()
                  .stub()
                  .GetServerInfo(client().Context().get(), v1::GetServerInfoRequest(), &info)
                  .ok());
  EXPECT_TRUE(info.auth_required());
  // Streams are guarded too.
  v1::StreamOutputsRequest stream;
  stream.set_kernel_id("0123456789abcdef0123456789abcdef");
  auto context = anonymous.Context();
  auto reader = anonymous.stub().StreamOutputs(context.get(), stream);
  v1::OutputEvent event;
  EXPECT_FALSE(reader->Read(&event));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST(DrainTest, SigtermFinishesRunningWorkRefusesNewWorkAndExitsZero) {
  ServerProcess server({"--drain-seconds=20"});
  GatewayClient client(server.Target());
  const std::string kernel_id = client.MustStartKernel();
  const v1::Cell cell = client.MustAddCell(kernel_id, "print('ready', flush=True)\n"
                                                      "import time\ntime.sleep(2)\nprint('done')");
  auto running = std::async(std::launch::async, [&] {
    return client.MustRunCell(kernel_id, cell.cell_id());
  });
  // Wait until it runs, then ask the server to stop.
  v1::GetCellRequest get;
  get.set_kernel_id(kernel_id);
  get.set_cell_id(cell.cell_id());
  v1::Cell state;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  do {
    ASSERT_TRUE(client.stub().GetCell(client.Context().get(), get, &state).ok());
  } while (state.outputs_size() == 0 && absl::Now() < deadline);
  ASSERT_EQ(::kill(server.pid(), SIGTERM), 0);
  // New work is refused while draining.
  grpc::Status refused;
  const absl::Time refuse_deadline = absl::Now() + absl::Seconds(10);
  do {
    v1::ExecuteRequest execute;
    execute.set_kernel_id(kernel_id);
    execute.set_code("1");
    v1::ExecutionResult result;
    refused = client.stub().Execute(client.Context().get(), execute, &result);
  } while (refused.ok() && absl::Now() < refuse_deadline);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  // The running cell gets its grace period and finishes.
  const v1::ExecutionResult result = running.get();
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_OK);
  EXPECT_EQ(result.text(), "ready\ndone\n");
  std::optional<int> exit = server.WaitForExit(absl::Seconds(40));
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0) << server.log();
}

}  // namespace
}  // namespace cellgate
