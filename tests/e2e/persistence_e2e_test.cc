// Notebooks outlive the gateway: saved to --state-dir as they change, restored under the same
// kernel id by the next gateway on that directory, whether the last one stopped or was killed.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/gateway_client.h"
#include "tests/support/server_process.h"

namespace cellgate {
namespace {

using ::testing::HasSubstr;
using testing::GatewayClient;
using testing::ServerProcess;
using testing::WaitForProcessEnd;

// A notebook as a user brings it: markdown with an attachment, unknown metadata, four code
// cells of which the third runs for ten minutes.
constexpr char kNotebook[] = R"json({
 "cells": [
  {"cell_type": "markdown", "id": "title", "metadata": {"tags": ["intro"]},
   "attachments": {"dot.png": {"image/png": "iVBORw0KGgo="}},
   "source": ["# Analysis\n", "![dot](attachment:dot.png)"]},
  {"cell_type": "code", "id": "one", "metadata": {"custom": {"keep": [1, 2]}},
   "execution_count": null, "outputs": [], "source": "print('one')"},
  {"cell_type": "code", "id": "two", "metadata": {}, "execution_count": null, "outputs": [],
   "source": "x = 41\nx + 1"},
  {"cell_type": "code", "id": "slow", "metadata": {}, "execution_count": null, "outputs": [],
   "source": "import time\nprint('started', flush=True)\ntime.sleep(600)"},
  {"cell_type": "code", "id": "after", "metadata": {}, "execution_count": null, "outputs": [],
   "source": "print('after')"}
 ],
 "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
              "unknown_tool": {"setting": true}},
 "nbformat": 4, "nbformat_minor": 5
})json";

class PersistenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/cgp-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    ::chmod(dir_.c_str(), 0711);
  }
  void TearDown() override {
    if (HasFailure() && server_ != nullptr) std::cerr << "server log:\n" << server_->log() << "\n";
    client_.reset();
    server_.reset();
    std::error_code error;
    std::filesystem::remove_all(dir_, error);
  }

  // A server on this test's state dir (the runtime dir is its own unless `extra` says).
  void StartServer(std::vector<std::string> extra = {}) {
    client_.reset();
    extra.insert(extra.begin(), {"--state-dir=" + dir_ + "/state", "--drain-seconds=1"});
    server_ = std::make_unique<ServerProcess>(std::move(extra));
    ASSERT_GT(server_->WaitForPort(absl::Seconds(60)), 0) << server_->log();
    client_ = std::make_unique<GatewayClient>(server_->Target());
  }
  void KillServer() {
    ASSERT_EQ(::kill(server_->pid(), SIGKILL), 0);
    ASSERT_TRUE(server_->WaitForExit(absl::Seconds(10)).has_value());
  }
  void StopServer() {
    ASSERT_EQ(::kill(server_->pid(), SIGTERM), 0);
    const std::optional<int> status = server_->WaitForExit(absl::Seconds(60));
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << server_->log();
  }

  std::string StartKernelWithNotebook() {
    v1::StartKernelRequest request;
    request.set_notebook_ipynb(kNotebook);
    (*request.mutable_labels())["owner"] = "persistence-test";
    v1::Kernel kernel;
    const grpc::Status status = client_->StartKernel(request, &kernel);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return kernel.kernel_id();
  }

  grpc::Status GetKernel(const std::string& kernel_id, v1::Kernel* kernel) {
    v1::GetKernelRequest get;
    get.set_kernel_id(kernel_id);
    return client_->stub().GetKernel(client_->Context().get(), get, kernel);
  }

  // The oldest event the kernel's log still holds.
  v1::OutputEvent FirstEvent(const std::string& kernel_id) {
    v1::StreamOutputsRequest request;
    request.set_kernel_id(kernel_id);
    auto context = client_->Context(30);
    auto reader = client_->stub().StreamOutputs(context.get(), request);
    v1::OutputEvent event;
    EXPECT_TRUE(reader->Read(&event));
    context->TryCancel();
    reader->Finish();
    return event;
  }

  v1::Kernel WaitUntilIdle(const std::string& kernel_id) {
    return client_->WaitForKernel(
        kernel_id, [](const v1::Kernel& k) { return k.state() == v1::KERNEL_STATE_IDLE; });
  }

  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<GatewayClient> client_;
};

const v1::Cell& CellById(const v1::Notebook& notebook, const std::string& cell_id) {
  for (const v1::Cell& cell : notebook.cells()) {
    if (cell.cell_id() == cell_id) return cell;
  }
  static const v1::Cell* none = new v1::Cell();
  ADD_FAILURE() << "no cell " << cell_id;
  return *none;
}

TEST_F(PersistenceTest, SigkillInTheMiddleOfRunAllLosesNoFinishedOutput) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  const std::string kernel_id = StartKernelWithNotebook();
  ASSERT_FALSE(kernel_id.empty());

  // RunAll, in the background: it never answers, the gateway dies under it.
  auto run_all = std::async(std::launch::async, [this, kernel_id] {
    v1::RunAllRequest request;
    request.set_kernel_id(kernel_id);
    request.set_stop_on_error(true);
    v1::RunAllResult result;
    auto context = client_->Context(120);
    return client_->stub().RunAll(context.get(), request, &result);
  });
  const v1::Cell slow = client_->WaitForCell(kernel_id, "slow", [](const v1::Cell& cell) {
    return cell.state() == v1::CELL_STATE_RUNNING && cell.outputs_size() > 0;
  });
  ASSERT_EQ(slow.state(), v1::CELL_STATE_RUNNING);
  // A change whose reply comes once it is saved, and with it everything before it.
  v1::Cell added = client_->MustAddCell(kernel_id, "print('added while it ran')");
  const v1::Notebook before = client_->MustGetNotebook(kernel_id);
  v1::Kernel old_kernel;
  ASSERT_TRUE(GetKernel(kernel_id, &old_kernel).ok());

  ASSERT_NO_FATAL_FAILURE(KillServer());
  EXPECT_FALSE(run_all.get().ok());
  ASSERT_NO_FATAL_FAILURE(StartServer());

  // Same id, labels kept; a fresh kernel process.
  v1::Kernel kernel = WaitUntilIdle(kernel_id);
  ASSERT_EQ(kernel.state(), v1::KERNEL_STATE_IDLE) << kernel.DebugString();
  EXPECT_EQ(kernel.labels().at("owner"), "persistence-test");
  EXPECT_NE(kernel.pid(), old_kernel.pid());

  const v1::Notebook after = client_->MustGetNotebook(kernel_id);
  ASSERT_EQ(after.cells_size(), before.cells_size());
  for (int i = 0; i < before.cells_size(); ++i) {
    const v1::Cell& was = before.cells(i);
    const v1::Cell& is = after.cells(i);
    EXPECT_EQ(is.cell_id(), was.cell_id());
    EXPECT_EQ(is.source(), was.source());
    EXPECT_EQ(is.metadata(), was.metadata());
    EXPECT_EQ(is.execution_count(), was.execution_count()) << is.cell_id();
    ASSERT_EQ(is.outputs_size(), was.outputs_size()) << is.cell_id();
    for (int j = 0; j < was.outputs_size(); ++j) {
      EXPECT_EQ(is.outputs(j).SerializeAsString(), was.outputs(j).SerializeAsString())
          << is.cell_id() << " output " << j;
    }
  }
  // What ran is STALE (a fresh kernel); the cell that was running is marked; the queued one
  // was cancelled; the rest never ran.
  EXPECT_EQ(CellById(after, "title").state(), v1::CELL_STATE_NEW);
  EXPECT_EQ(CellById(after, "one").state(), v1::CELL_STATE_STALE);
  EXPECT_EQ(CellById(after, "one").outputs(0).stream().text(), "one\n");
  EXPECT_EQ(CellById(after, "two").state(), v1::CELL_STATE_STALE);
  EXPECT_EQ(CellById(after, "two").outputs(0).execute_result().data().at("text/plain"), "42");
  EXPECT_EQ(CellById(after, "slow").state(), v1::CELL_STATE_ERROR);
  EXPECT_EQ(CellById(after, "slow").last_run().status(), v1::EXECUTION_STATUS_KERNEL_DIED);
  EXPECT_EQ(CellById(after, "slow").outputs(0).stream().text(), "started\n");
  EXPECT_EQ(CellById(after, "after").state(), v1::CELL_STATE_CANCELLED);
  EXPECT_EQ(CellById(after, added.cell_id()).state(), v1::CELL_STATE_NEW);

  // The .ipynb keys the API has no field for came back too.
  v1::ExportNotebookRequest export_request;
  export_request.set_kernel_id(kernel_id);
  v1::ExportNotebookResponse exported;
  ASSERT_TRUE(
      client_->stub().ExportNotebook(client_->Context().get(), export_request, &exported).ok());
  EXPECT_THAT(exported.ipynb(), HasSubstr("\"dot.png\""));
  EXPECT_THAT(exported.ipynb(), HasSubstr("\"unknown_tool\""));

  // Events continue past every seq the old gateway gave out: an old seq is OUT_OF_RANGE.
  EXPECT_GT(kernel.last_seq(), old_kernel.last_seq());
  {
    v1::StreamOutputsRequest request;
    request.set_kernel_id(kernel_id);
    request.set_after_seq(old_kernel.last_seq());
    auto context = client_->Context(30);
    auto reader = client_->stub().StreamOutputs(context.get(), request);
    v1::OutputEvent event;
    EXPECT_FALSE(reader->Read(&event));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::OUT_OF_RANGE);
  }
  const v1::OutputEvent first = FirstEvent(kernel_id);
  EXPECT_GT(first.seq(), old_kernel.last_seq());
  EXPECT_THAT(first.kernel_status().reason(), HasSubstr("restored after a gateway restart"));

  // A new RunAll works (with the slow cell made quick).
  v1::EditCellRequest edit;
  edit.set_kernel_id(kernel_id);
  edit.set_cell_id("slow");
  edit.set_source("print('quick now')");
  v1::Cell edited;
  ASSERT_TRUE(client_->stub().EditCell(client_->Context().get(), edit, &edited).ok());
  v1::RunAllRequest request;
  request.set_kernel_id(kernel_id);
  v1::RunAllResult result;
  ASSERT_TRUE(client_->stub().RunAll(client_->Context().get(), request, &result).ok());
  ASSERT_EQ(result.results_size(), 5);
  for (const v1::ExecutionResult& run : result.results()) {
    EXPECT_EQ(run.status(), v1::EXECUTION_STATUS_OK) << run.cell_id() << ": " << run.text();
  }
  EXPECT_EQ(result.results(1).text(), "42\n");
  EXPECT_EQ(result.results(2).text(), "quick now\n");
}

TEST_F(PersistenceTest, AStoppedGatewayRestoresItsKernelsButNotTheShutDownOnes) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  const std::string kept = StartKernelWithNotebook();
  const std::string dropped = client_->MustStartKernel();
  const v1::ExecutionResult ran = client_->MustRunCell(kept, "one");
  ASSERT_EQ(ran.status(), v1::EXECUTION_STATUS_OK);
  ASSERT_TRUE(client_->Shutdown(dropped).ok());
  ASSERT_NO_FATAL_FAILURE(StopServer());

  ASSERT_NO_FATAL_FAILURE(StartServer());
  v1::ListKernelsResponse listed;
  ASSERT_TRUE(client_->stub()
                  .ListKernels(client_->Context().get(), v1::ListKernelsRequest(), &listed)
                  .ok());
  ASSERT_EQ(listed.kernels_size(), 1);
  EXPECT_EQ(listed.kernels(0).kernel_id(), kept);
  v1::Kernel kernel;
  EXPECT_EQ(GetKernel(dropped, &kernel).error_code(), grpc::StatusCode::NOT_FOUND);
  const v1::Notebook notebook = client_->MustGetNotebook(kept);
  EXPECT_EQ(CellById(notebook, "one").state(), v1::CELL_STATE_STALE);
  EXPECT_EQ(CellById(notebook, "one").last_run().execution_id(), ran.execution_id());
  EXPECT_EQ(CellById(notebook, "one").outputs(0).stream().text(), "one\n");

  // Shut down for good: the next gateway has nothing to restore.
  ASSERT_TRUE(client_->Shutdown(kept).ok());
  ASSERT_NO_FATAL_FAILURE(StopServer());
  ASSERT_NO_FATAL_FAILURE(StartServer());
  listed.Clear();
  ASSERT_TRUE(client_->stub()
                  .ListKernels(client_->Context().get(), v1::ListKernelsRequest(), &listed)
                  .ok());
  EXPECT_EQ(listed.kernels_size(), 0);
}

TEST_F(PersistenceTest, ANotebookThatCannotBeRestoredIsSetAsideAndTheGatewayServes) {
  std::filesystem::create_directories(dir_ + "/state/kernels");
  std::ofstream(dir_ + "/state/kernels/0123456789abcdef.state") << "not a state file";
  ASSERT_NO_FATAL_FAILURE(StartServer());
  EXPECT_THAT(server_->log(), HasSubstr("event=state_file_unreadable"));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/state/kernels/0123456789abcdef.state.bad"));
  const std::string kernel_id = client_->MustStartKernel();
  EXPECT_EQ(client_->MustExecute(kernel_id, "print(6 * 7)").text(), "42\n");
}

bool ProcessRuns(int pid) { return !WaitForProcessEnd(pid, absl::ZeroDuration()); }

// With --kernels-outlive-gateway, kernel processes go on running when the gateway dies or stops,
// and the next gateway takes them over: same process, same memory.
class OutlivingKernelsTest : public PersistenceTest {
 protected:
  void TearDown() override {
    for (int pid : kernel_pids_) {
      if (ProcessRuns(pid)) ::kill(-pid, SIGKILL);  // whatever a failed test left running
    }
    PersistenceTest::TearDown();
  }

  // Every gateway of the test shares the runtime dir and the kernel uid range, as one
  // restarted by systemd or Docker would.
  void StartGateway(bool kernels_outlive_gateway) {
    StartServer({absl::StrCat("--kernels-outlive-gateway=", kernels_outlive_gateway),
                 "--runtime-dir=" + dir_ + "/run",
                 absl::StrCat("--kernel-uid-base=", 300000 + ((::getpid() % 4000) * 8 + 7) * 128)});
  }

  int PidOf(const std::string& kernel_id) {
    v1::Kernel kernel;
    EXPECT_TRUE(GetKernel(kernel_id, &kernel).ok());
    kernel_pids_.push_back(kernel.pid());
    return kernel.pid();
  }

  std::string FirstEventReason(const std::string& kernel_id) {
    return FirstEvent(kernel_id).kernel_status().reason();
  }

  std::vector<int> kernel_pids_;
};

TEST_F(OutlivingKernelsTest, AKilledGatewaysKernelIsReattachedWithItsMemory) {
  ASSERT_NO_FATAL_FAILURE(StartGateway(true));
  const std::string kernel_id = StartKernelWithNotebook();
  ASSERT_FALSE(kernel_id.empty());
  ASSERT_EQ(client_->MustRunCell(kernel_id, "two").text(), "42\n");  // x = 41
  // The slow cell is running when the gateway dies.
  auto slow = std::async(std::launch::async, [this, kernel_id] {
    v1::RunCellRequest request;
    request.set_kernel_id(kernel_id);
    request.set_cell_id("slow");
    v1::ExecutionResult result;
    auto context = client_->Context(120);
    return client_->stub().RunCell(context.get(), request, &result);
  });
  client_->WaitForCell(kernel_id, "slow", [](const v1::Cell& cell) {
    return cell.state() == v1::CELL_STATE_RUNNING && cell.outputs_size() > 0;
  });
  // Its reply comes once saved, with everything before it.
  client_->MustAddCell(kernel_id, "print('added while it ran')");
  const int pid = PidOf(kernel_id);
  ASSERT_GT(pid, 0);

  ASSERT_NO_FATAL_FAILURE(KillServer());
  EXPECT_FALSE(slow.get().ok());
  ASSERT_TRUE(ProcessRuns(pid)) << "the kernel died with the gateway";

  ASSERT_NO_FATAL_FAILURE(StartGateway(true));
  const v1::Kernel kernel = WaitUntilIdle(kernel_id);
  ASSERT_EQ(kernel.state(), v1::KERNEL_STATE_IDLE) << kernel.DebugString();
  EXPECT_EQ(kernel.pid(), pid);
  EXPECT_EQ(kernel.labels().at("owner"), "persistence-test");
  EXPECT_THAT(FirstEventReason(kernel_id), HasSubstr("re-attaching the kernel process"));
  const v1::Notebook notebook = client_->MustGetNotebook(kernel_id);
  // Nothing is STALE: the kernel is the one that ran the cells.
  EXPECT_EQ(CellById(notebook, "two").state(), v1::CELL_STATE_OK);
  EXPECT_EQ(CellById(notebook, "two").outputs(0).execute_result().data().at("text/plain"), "42");
  // The cell cut off by the gateway's death keeps what it printed and ends CANCELLED.
  EXPECT_EQ(CellById(notebook, "slow").state(), v1::CELL_STATE_CANCELLED);
  ASSERT_EQ(CellById(notebook, "slow").outputs_size(), 1);
  EXPECT_EQ(CellById(notebook, "slow").outputs(0).stream().text(), "started\n");

  // The kernel is still sleeping in that cell, unseen: InterruptKernel reaches it all the same.
  v1::InterruptKernelRequest interrupt;
  interrupt.set_kernel_id(kernel_id);
  v1::Kernel interrupted;
  ASSERT_TRUE(
      client_->stub().InterruptKernel(client_->Context().get(), interrupt, &interrupted).ok());
  const v1::ExecutionResult x = client_->MustExecute(kernel_id, "x + 1");
  EXPECT_EQ(x.status(), v1::EXECUTION_STATUS_OK);
  EXPECT_EQ(x.text(), "42\n");
  EXPECT_EQ(client_->MustRunCell(kernel_id, "after").text(), "after\n");
  ASSERT_TRUE(client_->Shutdown(kernel_id).ok());
  EXPECT_TRUE(WaitForProcessEnd(pid, absl::Seconds(30)));
}

TEST_F(OutlivingKernelsTest, AStoppedGatewayLeavesItsKernelsForTheNextOne) {
  ASSERT_NO_FATAL_FAILURE(StartGateway(true));
  const std::string kernel_id = client_->MustStartKernel();
  ASSERT_EQ(client_->MustExecute(kernel_id, "y = 6 * 7").status(), v1::EXECUTION_STATUS_OK);
  const int pid = PidOf(kernel_id);
  ASSERT_NO_FATAL_FAILURE(StopServer());
  ASSERT_TRUE(ProcessRuns(pid)) << "the kernel was stopped with the gateway";

  ASSERT_NO_FATAL_FAILURE(StartGateway(true));
  EXPECT_EQ(WaitUntilIdle(kernel_id).pid(), pid);
  // A kernel this gateway starts gets a dir of its own, not the re-attached kernel's.
  const std::string other = client_->MustStartKernel();
  EXPECT_EQ(client_->MustExecute(other, "print('other')").text(), "other\n");
  EXPECT_EQ(client_->MustExecute(kernel_id, "y").text(), "42\n");
  const int other_pid = PidOf(other);

  // A gateway that doesn't let kernels outlive it ends what the last one left running, and
  // starts fresh kernels for the saved notebooks.
  ASSERT_NO_FATAL_FAILURE(StopServer());
  ASSERT_NO_FATAL_FAILURE(StartGateway(false));
  EXPECT_TRUE(WaitForProcessEnd(pid, absl::Seconds(30)));
  EXPECT_TRUE(WaitForProcessEnd(other_pid, absl::Seconds(30)));
  const v1::Kernel fresh = WaitUntilIdle(kernel_id);
  EXPECT_NE(fresh.pid(), pid);
  EXPECT_THAT(FirstEventReason(kernel_id), HasSubstr("a fresh kernel is starting"));
  EXPECT_EQ(client_->MustExecute(kernel_id, "y").status(), v1::EXECUTION_STATUS_ERROR);

  // And its own kernels die with it again.
  const int fresh_pid = PidOf(kernel_id);
  ASSERT_NO_FATAL_FAILURE(KillServer());
  EXPECT_TRUE(WaitForProcessEnd(fresh_pid, absl::Seconds(30)));
}

TEST_F(OutlivingKernelsTest, AKernelThatDiedWhileNoGatewayRanIsStartedAfresh) {
  ASSERT_NO_FATAL_FAILURE(StartGateway(true));
  const std::string kernel_id = StartKernelWithNotebook();
  ASSERT_EQ(client_->MustRunCell(kernel_id, "two").status(), v1::EXECUTION_STATUS_OK);
  const int pid = PidOf(kernel_id);
  ASSERT_NO_FATAL_FAILURE(KillServer());
  ASSERT_EQ(::kill(-pid, SIGKILL), 0);
  ASSERT_TRUE(WaitForProcessEnd(pid, absl::Seconds(30)));

  ASSERT_NO_FATAL_FAILURE(StartGateway(true));
  const v1::Kernel kernel = WaitUntilIdle(kernel_id);
  EXPECT_NE(kernel.pid(), pid);
  EXPECT_THAT(FirstEventReason(kernel_id), HasSubstr("a fresh kernel is starting"));
  EXPECT_EQ(CellById(client_->MustGetNotebook(kernel_id), "two").state(), v1::CELL_STATE_STALE);
  EXPECT_EQ(client_->MustRunCell(kernel_id, "two").text(), "42\n");
  ASSERT_TRUE(client_->Shutdown(kernel_id).ok());
}

}  // namespace
}  // namespace cellgate
