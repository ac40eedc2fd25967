// The workflow an agent runs, and every RPC's success path, through the generated C++ stub
// against a real server with real ipykernels.

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"

namespace cellgate {
namespace {

using ::testing::HasSubstr;
using testing::DefaultFlags;
using testing::ServerSuite;

class WorkflowTest : public ServerSuite<DefaultFlags> {};

std::string StdoutOf(const v1::Cell& cell) {
  std::string text;
  for (const v1::Output& output : cell.outputs()) {
    if (output.has_stream() && output.stream().name() == v1::STREAM_NAME_STDOUT) {
      text += output.stream().text();
    }
  }
  return text;
}

TEST_F(WorkflowTest, EditedCellChangesTheRunAllResult) {
  const std::string kernel_id = client().MustStartKernel();
  const v1::Cell x = client().MustAddCell(kernel_id, "x = 10");
  const v1::Cell y = client().MustAddCell(kernel_id, "y = x * 2");
  const v1::Cell show = client().MustAddCell(kernel_id, "print(y)");

  v1::RunAllRequest run_all;
  run_all.set_kernel_id(kernel_id);
  v1::RunAllResult result;
  ASSERT_TRUE(client().stub().RunAll(client().Context().get(), run_all, &result).ok());
  ASSERT_EQ(result.results_size(), 3);
  for (const v1::ExecutionResult& cell_result : result.results()) {
    EXPECT_EQ(cell_result.status(), v1::EXECUTION_STATUS_OK) << cell_result.text();
  }
  EXPECT_EQ(result.results(2).text(), "20\n");

  v1::EditCellRequest edit;
  edit.set_kernel_id(kernel_id);
  edit.set_cell_id(y.cell_id());
  edit.set_source("y = x * 3");
  v1::Cell edited;
  ASSERT_TRUE(client().stub().EditCell(client().Context().get(), edit, &edited).ok());
  EXPECT_EQ(edited.state(), v1::CELL_STATE_STALE);

  result.Clear();
  ASSERT_TRUE(client().stub().RunAll(client().Context().get(), run_all, &result).ok());
  ASSERT_EQ(result.results_size(), 3);
  EXPECT_EQ(result.results(2).text(), "30\n");

  // The outputs stay readable per cell afterwards.
  const v1::Notebook notebook = client().MustGetNotebook(kernel_id);
  ASSERT_EQ(notebook.cells_size(), 3);
  EXPECT_EQ(notebook.cells(2).cell_id(), show.cell_id());
  EXPECT_EQ(StdoutOf(notebook.cells(2)), "30\n");
  EXPECT_EQ(notebook.cells(2).state(), v1::CELL_STATE_OK);
  EXPECT_GT(notebook.cells(2).execution_count(), 0);
  EXPECT_EQ(notebook.cells(0).cell_id(), x.cell_id());
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

TEST_F(WorkflowTest, KernelRpcsSucceed) {
  v1::StartKernelRequest start;
  (*start.mutable_labels())["team"] = "search";
  start.mutable_limits()->set_max_open_files(512);
  v1::Kernel kernel;
  ASSERT_TRUE(client().StartKernel(start, &kernel).ok());
  EXPECT_EQ(kernel.kernel_id().size(), 32u);  // 128 random bits, hex
  EXPECT_EQ(kernel.state(), v1::KERNEL_STATE_IDLE);
  EXPECT_EQ(kernel.kernel_spec(), "python3");
  EXPECT_EQ(kernel.language().name(), "python");
  EXPECT_GT(kernel.pid(), 0);
  EXPECT_EQ(kernel.limits().max_open_files(), 512);
  EXPECT_EQ(kernel.labels().at("team"), "search");

  v1::GetKernelRequest get;
  get.set_kernel_id(kernel.kernel_id());
  v1::Kernel got;
  ASSERT_TRUE(client().stub().GetKernel(client().Context().get(), get, &got).ok());
  EXPECT_EQ(got.kernel_id(), kernel.kernel_id());

  v1::ListKernelsRequest list;
  (*list.mutable_label_selector())["team"] = "search";
  v1::ListKernelsResponse listed;
  ASSERT_TRUE(client().stub().ListKernels(client().Context().get(), list, &listed).ok());
  ASSERT_EQ(listed.kernels_size(), 1);
  EXPECT_EQ(listed.kernels(0).kernel_id(), kernel.kernel_id());
  (*list.mutable_label_selector())["team"] = "ads";
  listed.Clear();
  ASSERT_TRUE(client().stub().ListKernels(client().Context().get(), list, &listed).ok());
  EXPECT_EQ(listed.kernels_size(), 0);

  const v1::Cell cell = client().MustAddCell(kernel.kernel_id(), "counter = 41");
  ASSERT_EQ(client().MustRunCell(kernel.kernel_id(), cell.cell_id()).status(),
            v1::EXECUTION_STATUS_OK);

  v1::InterruptKernelRequest interrupt;
  interrupt.set_kernel_id(kernel.kernel_id());
  v1::Kernel interrupted;
  ASSERT_TRUE(
      client().stub().InterruptKernel(client().Context().get(), interrupt, &interrupted).ok());

  v1::RestartKernelRequest restart;
  restart.set_kernel_id(kernel.kernel_id());
  v1::Kernel restarted;
  ASSERT_TRUE(client().stub().RestartKernel(client().Context().get(), restart, &restarted).ok());
  EXPECT_EQ(restarted.state(), v1::KERNEL_STATE_IDLE);
  EXPECT_EQ(restarted.restart_count(), 1);
  EXPECT_NE(restarted.pid(), kernel.pid());
  // Cells are kept and STALE; the kernel's memory is gone.
  const v1::Notebook notebook = client().MustGetNotebook(kernel.kernel_id());
  ASSERT_EQ(notebook.cells_size(), 1);
  EXPECT_EQ(notebook.cells(0).state(), v1::CELL_STATE_STALE);
  const v1::ExecutionResult probe = client().MustExecute(kernel.kernel_id(), "counter");
  EXPECT_EQ(probe.status(), v1::EXECUTION_STATUS_ERROR);
  EXPECT_EQ(probe.error().ename(), "NameError");

  v1::ListKernelSpecsResponse specs;
  ASSERT_TRUE(client()
                  .stub()
                  .ListKernelSpecs(client().Context().get(), v1::ListKernelSpecsRequest(), &specs)
                  .ok());
  EXPECT_EQ(specs.default_kernel_spec(), "python3");
  bool has_python3 = false;
  for (const v1::KernelSpec& spec : specs.kernel_specs()) has_python3 |= spec.name() == "python3";
  EXPECT_TRUE(has_python3);

  v1::ServerInfo info;
  ASSERT_TRUE(client()
                  .stub()
                  .GetServerInfo(client().Context().get(), v1::GetServerInfoRequest(), &info)
                  .ok());
  EXPECT_FALSE(info.version().empty());
  EXPECT_EQ(info.sandbox_mode(), "rlimits");
  EXPECT_GE(info.kernel_count(), 1);
  EXPECT_FALSE(info.auth_required());
  bool rlimits_in_force = false;
  for (const v1::SandboxLayer& layer : info.sandbox_layers()) {
    rlimits_in_force |= layer.name() == "rlimits" && layer.in_force();
  }
  EXPECT_TRUE(rlimits_in_force);

  ASSERT_TRUE(client().Shutdown(kernel.kernel_id()).ok());
  v1::Kernel gone;
  EXPECT_EQ(client().stub().GetKernel(client().Context().get(), get, &gone).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(WorkflowTest, CellRpcsSucceed) {
  const std::string kernel_id = client().MustStartKernel();
  const v1::Cell a = client().MustAddCell(kernel_id, "a = 1");
  const v1::Cell b = client().MustAddCell(kernel_id, "b = 2");

  v1::AddCellRequest add;
  add.set_kernel_id(kernel_id);
  add.set_source("# Title");
  add.set_cell_type(v1::CELL_TYPE_MARKDOWN);
  add.set_index(0);
  add.set_cell_id("intro");
  v1::Cell intro;
  ASSERT_TRUE(client().stub().AddCell(client().Context().get(), add, &intro).ok());
  EXPECT_EQ(intro.cell_id(), "intro");
  EXPECT_EQ(intro.index(), 0);
  // The same client-chosen id again is ALREADY_EXISTS: retries are idempotent.
  EXPECT_EQ(client().stub().AddCell(client().Context().get(), add, &intro).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);

  v1::MoveCellRequest move;
  move.set_kernel_id(kernel_id);
  move.set_cell_id(b.cell_id());
  move.set_index(1);
  v1::Cell moved;
  ASSERT_TRUE(client().stub().MoveCell(client().Context().get(), move, &moved).ok());
  EXPECT_EQ(moved.index(), 1);

  v1::GetCellRequest get;
  get.set_kernel_id(kernel_id);
  get.set_cell_id(a.cell_id());
  v1::Cell got;
  ASSERT_TRUE(client().stub().GetCell(client().Context().get(), get, &got).ok());
  EXPECT_EQ(got.index(), 2);
  EXPECT_EQ(got.source(), "a = 1");

  v1::DeleteCellRequest remove;
  remove.set_kernel_id(kernel_id);
  remove.set_cell_id(a.cell_id());
  v1::DeleteCellResponse removed;
  ASSERT_TRUE(client().stub().DeleteCell(client().Context().get(), remove, &removed).ok());
  EXPECT_EQ(client().stub().GetCell(client().Context().get(), get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);

  const v1::Notebook notebook = client().MustGetNotebook(kernel_id);
  ASSERT_EQ(notebook.cells_size(), 2);
  EXPECT_EQ(notebook.cells(0).cell_id(), "intro");
  EXPECT_EQ(notebook.cells(1).cell_id(), b.cell_id());

  // Export, then import into a fresh kernel: the same cells come back.
  ASSERT_EQ(client().MustRunCell(kernel_id, b.cell_id()).status(), v1::EXECUTION_STATUS_OK);
  v1::ExportNotebookRequest export_request;
  export_request.set_kernel_id(kernel_id);
  v1::ExportNotebookResponse exported;
  ASSERT_TRUE(
      client().stub().ExportNotebook(client().Context().get(), export_request, &exported).ok());
  EXPECT_THAT(exported.ipynb(), HasSubstr("\"nbformat_minor\": 5"));
  // Front ends open it with the right kernel.
  EXPECT_THAT(exported.ipynb(), HasSubstr("\"kernelspec\""));
  EXPECT_THAT(exported.ipynb(), HasSubstr("\"language_info\""));
  EXPECT_THAT(exported.ipynb(), HasSubstr("\"name\": \"python3\""));
  const std::string other = client().MustStartKernel();
  v1::ImportNotebookRequest import_request;
  import_request.set_kernel_id(other);
  import_request.set_ipynb(exported.ipynb());
  import_request.set_replace(true);
  v1::Notebook imported;
  ASSERT_TRUE(
      client().stub().ImportNotebook(client().Context().get(), import_request, &imported).ok());
  ASSERT_EQ(imported.cells_size(), 2);
  EXPECT_EQ(imported.cells(0).cell_id(), "intro");
  EXPECT_EQ(imported.cells(1).source(), "b = 2");

  // StartKernel can import too.
  v1::StartKernelRequest start;
  start.set_notebook_ipynb(exported.ipynb());
  v1::Kernel with_notebook;
  ASSERT_TRUE(client().StartKernel(start, &with_notebook).ok());
  EXPECT_EQ(with_notebook.cell_count(), 2);
  for (const std::string& id : {kernel_id, other, with_notebook.kernel_id()}) {
    EXPECT_TRUE(client().Shutdown(id).ok());
  }
}

TEST_F(WorkflowTest, ExecuteReturnsTextReadyForAPrompt) {
  const std::string kernel_id = client().MustStartKernel();
  const v1::ExecutionResult result = client().MustExecute(
      kernel_id,
      "import sys\nprint('out')\nprint('err', file=sys.stderr)\n6 * 7");
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_OK);
  EXPECT_TRUE(result.cell_id().empty());
  EXPECT_THAT(result.text(), HasSubstr("out\n"));
  EXPECT_THAT(result.text(), HasSubstr("err\n"));
  EXPECT_THAT(result.text(), HasSubstr("42"));
  EXPECT_GT(result.execution_count(), 0);

  const v1::ExecutionResult error = client().MustExecute(kernel_id, "1/0");
  EXPECT_EQ(error.status(), v1::EXECUTION_STATUS_ERROR);
  EXPECT_EQ(error.error().ename(), "ZeroDivisionError");
  for (const std::string& line : error.error().traceback()) {
    EXPECT_EQ(line.find('\x1b'), std::string::npos) << "ANSI escape in: " << line;
  }
  EXPECT_THAT(error.text(), HasSubstr("ZeroDivisionError"));
  EXPECT_EQ(error.text().find('\x1b'), std::string::npos);
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

TEST_F(WorkflowTest, KernelCountsItsIopubTraffic) {
  const std::string kernel_id = client().MustStartKernel();
  v1::GetKernelRequest request;
  request.set_kernel_id(kernel_id);
  v1::Kernel before;
  {
    auto context = client().Context();
    ASSERT_TRUE(client().stub().GetKernel(context.get(), request, &before).ok());
  }
  // 64 KiB of stdout: the counters grow by at least that much, and by several messages (busy,
  // execute_input, stream, idle).
  client().MustExecute(kernel_id, "print('x' * 65536)");
  v1::Kernel after;
  {
    auto context = client().Context();
    ASSERT_TRUE(client().stub().GetKernel(context.get(), request, &after).ok());
  }
  EXPECT_GE(after.iopub_traffic().messages(), before.iopub_traffic().messages() + 4);
  EXPECT_GE(after.iopub_traffic().bytes(), before.iopub_traffic().bytes() + 65536);
  EXPECT_EQ(after.iopub_traffic().unparsed_output_bytes(), 0u);
  EXPECT_EQ(after.iopub_traffic().rejected_messages(), 0u);
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

}  // namespace
}  // namespace cellgate
