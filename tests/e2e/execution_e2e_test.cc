// Execution semantics end to end: timeouts, a crash mid-cell, queueing while busy, and the
// stored outputs of clear_output and display updates.

#include <fstream>
#include <future>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"

namespace cellgate {
namespace {

using ::testing::HasSubstr;
using testing::DefaultFlags;
using testing::ServerSuite;

class ExecutionTest : public ServerSuite<DefaultFlags> {};

TEST_F(ExecutionTest, TimeoutInterruptsAndTheKernelStaysUsable) {
  const std::string kernel_id = client().MustStartKernel();
  const v1::ExecutionResult result =
      client().MustExecute(kernel_id, "while True:\n    pass\n", /*timeout_ms=*/500);
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_TIMEOUT);
  EXPECT_THAT(result.text(), HasSubstr("timed out"));
  EXPECT_GE(result.duration_ms(), 500);
  EXPECT_EQ(client().MustExecute(kernel_id, "print('still here')").text(), "still here\n");
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

TEST_F(ExecutionTest, KeepRunningAnswersAtTheTimeoutAndTheCellFinishesLater) {
  const std::string kernel_id = client().MustStartKernel();
  const v1::Cell cell = client().MustAddCell(
      kernel_id, "import time\ntime.sleep(1.5)\nprint('finished')");
  v1::RunCellRequest request;
  request.set_kernel_id(kernel_id);
  request.set_cell_id(cell.cell_id());
  request.set_timeout_ms(200);
  request.set_on_timeout(v1::ON_TIMEOUT_KEEP_RUNNING);
  v1::ExecutionResult result;
  ASSERT_TRUE(client().stub().RunCell(client().Context().get(), request, &result).ok());
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_TIMEOUT);
  // The next execution queues behind it, so when it is done the cell has finished.
  EXPECT_EQ(client().MustExecute(kernel_id, "print('next')").text(), "next\n");
  v1::GetCellRequest get;
  get.set_kernel_id(kernel_id);
  get.set_cell_id(cell.cell_id());
  v1::Cell finished;
  ASSERT_TRUE(client().stub().GetCell(client().Context().get(), get, &finished).ok());
  EXPECT_EQ(finished.state(), v1::CELL_STATE_OK);
  ASSERT_EQ(finished.outputs_size(), 1);
  EXPECT_EQ(finished.outputs(0).stream().text(), "finished\n");
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

TEST_F(ExecutionTest, GrpcDeadlineIsHonouredAsATimeout) {
  const std::string kernel_id = client().MustStartKernel();
  v1::ExecuteRequest request;
  request.set_kernel_id(kernel_id);
  request.set_code("import time\ntime.sleep(30)");
  v1::ExecutionResult result;
  auto context = client().Context(/*deadline_seconds=*/2);
  grpc::Status status = client().stub().Execute(context.get(), request, &result);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_TIMEOUT);
  EXPECT_EQ(client().MustExecute(kernel_id, "print(1)").text(), "1\n");
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

TEST_F(ExecutionTest, DeadlineReachedWhileQueuedAnswersAndDropsTheExecution) {
  const std::string kernel_id = client().MustStartKernel();
  auto busy = std::async(std::launch::async, [&] {
    return client().MustExecute(kernel_id,
                                "import os, time\n"
                                "while not os.path.exists('release'):\n    time.sleep(0.01)\n");
  });
  v1::GetKernelRequest get;
  get.set_kernel_id(kernel_id);
  v1::Kernel kernel;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  do {
    ASSERT_TRUE(client().stub().GetKernel(client().Context().get(), get, &kernel).ok());
  } while (kernel.state() != v1::KERNEL_STATE_BUSY && absl::Now() < deadline);
  v1::ExecuteRequest request;
  request.set_kernel_id(kernel_id);
  request.set_code("open('ran', 'w').write('x')");
  v1::ExecutionResult result;
  auto context = client().Context(/*deadline_seconds=*/1);
  grpc::Status status = client().stub().Execute(context.get(), request, &result);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_TIMEOUT);
  EXPECT_THAT(result.status_detail(), HasSubstr("queued"));

  { std::ofstream(absl::StrCat("/proc/", kernel.pid(), "/cwd/release")) << "go"; }
  EXPECT_EQ(busy.get().status(), v1::EXECUTION_STATUS_OK);
  // The dropped execution never ran.
  EXPECT_EQ(client().MustExecute(kernel_id, "import os\nprint(os.path.exists('ran'))").text(),
            "False\n");
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

TEST_F(ExecutionTest, CrashMidCellIsKernelDiedAndTheKernelComesBack) {
  const std::string kernel_id = client().MustStartKernel();
  client().MustExecute(kernel_id, "kept_in_memory = 1");
  const v1::Cell cell =
      client().MustAddCell(kernel_id, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)");
  const v1::ExecutionResult result = client().MustRunCell(kernel_id, cell.cell_id());
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_KERNEL_DIED);
  EXPECT_THAT(result.status_detail(), HasSubstr("killed by SIGKILL"));

  // The restart policy brings a fresh process: notebook intact, cells STALE, memory gone.
  v1::GetKernelRequest get;
  get.set_kernel_id(kernel_id);
  v1::Kernel kernel;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  do {
    ASSERT_TRUE(client().stub().GetKernel(client().Context().get(), get, &kernel).ok());
  } while ((kernel.state() != v1::KERNEL_STATE_IDLE || kernel.restart_count() != 1) &&
           absl::Now() < deadline);
  EXPECT_EQ(kernel.state(), v1::KERNEL_STATE_IDLE);
  EXPECT_EQ(kernel.restart_count(), 1);
  EXPECT_THAT(kernel.last_death_reason(), HasSubstr("SIGKILL"));
  EXPECT_EQ(client().MustGetNotebook(kernel_id).cells(0).state(), v1::CELL_STATE_STALE);
  EXPECT_EQ(client().MustExecute(kernel_id, "kept_in_memory").error().ename(), "NameError");
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

TEST_F(ExecutionTest, RunCellWhileBusyQueuesAndRunsInOrder) {
  const std::string kernel_id = client().MustStartKernel();
  const v1::Cell slow = client().MustAddCell(
      kernel_id, "import time\nwhile not __import__('os').path.exists('go'):\n"
                 "    time.sleep(0.01)\norder = ['slow']");
  const v1::Cell fast = client().MustAddCell(kernel_id, "order.append('fast')\nprint(order)");

  auto run = [&](const std::string& cell_id) {
    return std::async(std::launch::async, [this_client = &client(), kernel_id, cell_id] {
      return this_client->MustRunCell(kernel_id, cell_id);
    });
  };
  auto slow_result = run(slow.cell_id());
  // Wait until the slow cell is running before queueing the next one.
  v1::GetCellRequest get;
  get.set_kernel_id(kernel_id);
  get.set_cell_id(slow.cell_id());
  v1::Cell state;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  do {
    ASSERT_TRUE(client().stub().GetCell(client().Context().get(), get, &state).ok());
  } while (state.state() != v1::CELL_STATE_RUNNING && absl::Now() < deadline);
  ASSERT_EQ(state.state(), v1::CELL_STATE_RUNNING);
  auto fast_result = run(fast.cell_id());
  get.set_cell_id(fast.cell_id());
  do {
    ASSERT_TRUE(client().stub().GetCell(client().Context().get(), get, &state).ok());
  } while (state.state() != v1::CELL_STATE_QUEUED && absl::Now() < deadline);
  EXPECT_EQ(state.state(), v1::CELL_STATE_QUEUED);

  // While both are pending the kernel is busy with two executions.
  v1::GetKernelRequest get_kernel;
  get_kernel.set_kernel_id(kernel_id);
  v1::Kernel kernel;
  ASSERT_TRUE(client().stub().GetKernel(client().Context().get(), get_kernel, &kernel).ok());
  EXPECT_EQ(kernel.state(), v1::KERNEL_STATE_BUSY);
  EXPECT_EQ(kernel.pending_executions(), 2);
  // Release the slow cell: create the file it waits for in the kernel's working directory.
  { std::ofstream(absl::StrCat("/proc/", kernel.pid(), "/cwd/go")) << "go"; }

  EXPECT_EQ(slow_result.get().status(), v1::EXECUTION_STATUS_OK);
  const v1::ExecutionResult fast_done = fast_result.get();
  EXPECT_EQ(fast_done.status(), v1::EXECUTION_STATUS_OK);
  EXPECT_EQ(fast_done.text(), "['slow', 'fast']\n");
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

TEST_F(ExecutionTest, StoredOutputsFollowClearOutputAndDisplayUpdates) {
  const std::string kernel_id = client().MustStartKernel();
  const v1::Cell shown = client().MustAddCell(
      kernel_id, "from IPython.display import display\nh = display('first', display_id=True)");
  const v1::Cell updater = client().MustAddCell(kernel_id, "h.update('second')");
  const v1::Cell cleared = client().MustAddCell(
      kernel_id,
      "from IPython.display import clear_output\n"
      "print('gone')\nclear_output(wait=True)\nprint('kept')");
  for (const v1::Cell& cell : {shown, updater, cleared}) {
    ASSERT_EQ(client().MustRunCell(kernel_id, cell.cell_id()).status(), v1::EXECUTION_STATUS_OK);
  }
  const v1::Notebook notebook = client().MustGetNotebook(kernel_id);
  ASSERT_EQ(notebook.cells_size(), 3);
  // The update from the second cell replaced the display in the first.
  ASSERT_EQ(notebook.cells(0).outputs_size(), 1);
  EXPECT_EQ(notebook.cells(0).outputs(0).display_data().data().at("text/plain"), "'second'");
  ASSERT_EQ(notebook.cells(2).outputs_size(), 1);
  EXPECT_EQ(notebook.cells(2).outputs(0).stream().text(), "kept\n");
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

TEST_F(ExecutionTest, OutputPrintedAfterTheCellFinishedStillLandsInIt) {
  const std::string kernel_id = client().MustStartKernel();
  const v1::Cell cell = client().MustAddCell(
      kernel_id,
      "import os, threading, time\n"
      "def later():\n"
      "    while not os.path.exists('release'):\n"
      "        time.sleep(0.01)\n"
      "    print('late', flush=True)\n"
      "threading.Thread(target=later).start()\n"
      "print('now')");
  const v1::ExecutionResult result = client().MustRunCell(kernel_id, cell.cell_id());
  ASSERT_EQ(result.status(), v1::EXECUTION_STATUS_OK);
  EXPECT_EQ(result.text(), "now\n");
  v1::GetKernelRequest get_kernel;
  get_kernel.set_kernel_id(kernel_id);
  v1::Kernel kernel;
  ASSERT_TRUE(client().stub().GetKernel(client().Context().get(), get_kernel, &kernel).ok());
  { std::ofstream(absl::StrCat("/proc/", kernel.pid(), "/cwd/release")) << "go"; }

  v1::GetCellRequest get;
  get.set_kernel_id(kernel_id);
  get.set_cell_id(cell.cell_id());
  v1::Cell stored;
  std::string text;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  do {
    ASSERT_TRUE(client().stub().GetCell(client().Context().get(), get, &stored).ok());
    text.clear();
    for (const v1::Output& output : stored.outputs()) text += output.stream().text();
  } while (text != "now\nlate\n" && absl::Now() < deadline);
  EXPECT_EQ(text, "now\nlate\n");
  // The event log has it too, under the execution that started the thread.
  v1::StreamOutputsRequest stream;
  stream.set_kernel_id(kernel_id);
  stream.set_execution_id(result.execution_id());
  auto context = client().Context();
  auto reader = client().stub().StreamOutputs(context.get(), stream);
  v1::OutputEvent event;
  bool saw_late = false;
  while (reader->Read(&event)) saw_late |= event.output().stream().text() == "late\n";
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(saw_late);
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

TEST_F(ExecutionTest, InterruptCancelsQueuedExecutions) {
  const std::string kernel_id = client().MustStartKernel();
  const v1::Cell busy = client().MustAddCell(kernel_id, "print('start', flush=True)\nwhile True:\n    pass");
  const v1::Cell queued = client().MustAddCell(kernel_id, "print('never')");
  auto busy_result = std::async(std::launch::async, [&] {
    return client().MustRunCell(kernel_id, busy.cell_id());
  });
  v1::GetCellRequest get;
  get.set_kernel_id(kernel_id);
  get.set_cell_id(busy.cell_id());
  v1::Cell state;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  do {
    ASSERT_TRUE(client().stub().GetCell(client().Context().get(), get, &state).ok());
  } while (state.outputs_size() == 0 && absl::Now() < deadline);
  auto queued_result = std::async(std::launch::async, [&] {
    return client().MustRunCell(kernel_id, queued.cell_id());
  });
  get.set_cell_id(queued.cell_id());
  do {
    ASSERT_TRUE(client().stub().GetCell(client().Context().get(), get, &state).ok());
  } while (state.state() != v1::CELL_STATE_QUEUED && absl::Now() < deadline);

  v1::InterruptKernelRequest interrupt;
  interrupt.set_kernel_id(kernel_id);
  v1::Kernel kernel;
  ASSERT_TRUE(client().stub().InterruptKernel(client().Context().get(), interrupt, &kernel).ok());
  EXPECT_EQ(busy_result.get().status(), v1::EXECUTION_STATUS_INTERRUPTED);
  EXPECT_EQ(queued_result.get().status(), v1::EXECUTION_STATUS_CANCELLED);
  ASSERT_TRUE(client().stub().GetCell(client().Context().get(), get, &state).ok());
  EXPECT_EQ(state.state(), v1::CELL_STATE_CANCELLED);
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

TEST_F(ExecutionTest, ExecutionAskedForDuringARestartRunsOnTheNewKernel) {
  const std::string kernel_id = client().MustStartKernel();
  auto restarted = std::async(std::launch::async, [&] {
    v1::RestartKernelRequest restart;
    restart.set_kernel_id(kernel_id);
    v1::Kernel kernel;
    return client().stub().RestartKernel(client().Context().get(), restart, &kernel);
  });
  v1::GetKernelRequest get;
  get.set_kernel_id(kernel_id);
  v1::Kernel kernel;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  do {
    ASSERT_TRUE(client().stub().GetKernel(client().Context().get(), get, &kernel).ok());
  } while (kernel.restart_count() == 0 && absl::Now() < deadline);
  ASSERT_EQ(kernel.restart_count(), 1);
  // Asked for while the new process starts: it waits for it, then runs.
  const v1::ExecutionResult result = client().MustExecute(kernel_id, "print('on the new kernel')");
  EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_OK);
  EXPECT_EQ(result.text(), "on the new kernel\n");
  EXPECT_TRUE(restarted.get().ok());
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

TEST_F(ExecutionTest, RunAllStopsOnErrorAndListsSkippedCells) {
  const std::string kernel_id = client().MustStartKernel();
  client().MustAddCell(kernel_id, "a = 1");
  const v1::Cell failing = client().MustAddCell(kernel_id, "raise ValueError('bad')");
  const v1::Cell after = client().MustAddCell(kernel_id, "print('after')");
  v1::RunAllRequest request;
  request.set_kernel_id(kernel_id);
  v1::RunAllResult result;
  ASSERT_TRUE(client().stub().RunAll(client().Context().get(), request, &result).ok());
  ASSERT_EQ(result.results_size(), 2);
  EXPECT_EQ(result.results(1).cell_id(), failing.cell_id());
  EXPECT_EQ(result.results(1).status(), v1::EXECUTION_STATUS_ERROR);
  ASSERT_EQ(result.skipped_size(), 1);
  EXPECT_EQ(result.skipped(0).cell_id(), after.cell_id());
  EXPECT_EQ(result.skipped(0).reason(), v1::SKIP_REASON_PREVIOUS_FAILED);

  request.set_stop_on_error(false);
  result.Clear();
  grpc::Status status = client().stub().RunAll(client().Context().get(), request, &result);
  ASSERT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
  ASSERT_EQ(result.results_size(), 3);
  EXPECT_EQ(result.results(2).text(), "after\n");
  EXPECT_TRUE(client().Shutdown(kernel_id).ok());
}

}  // namespace
}  // namespace cellgate
