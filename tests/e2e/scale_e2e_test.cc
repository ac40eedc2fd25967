// 50 kernels alive at once, RunCell on all of them concurrently, and the server's thread count
// independent of the number of kernels and of waiting calls.

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"

namespace cellgate {
namespace {

using testing::DefaultFlags;
using testing::ServerSuite;

class ScaleTest : public ServerSuite<DefaultFlags> {};

constexpr int kKernels = 50;

TEST_F(ScaleTest, FiftyKernelsRunConcurrentlyWithAFixedThreadCount) {
  // Baseline: one kernel, one finished execution.
  const std::string first = client().MustStartKernel();
  ASSERT_EQ(client().MustExecute(first, "1").status(), v1::EXECUTION_STATUS_OK);
  const int baseline_threads = server().ThreadCount();
  ASSERT_GT(baseline_threads, 0);

  std::vector<std::future<std::string>> starts;
  for (int i = 1; i < kKernels; ++i) {
    starts.push_back(std::async(std::launch::async, [] { return client().MustStartKernel(); }));
  }
  std::vector<std::string> kernel_ids = {first};
  for (auto& start : starts) kernel_ids.push_back(start.get());
  for (const std::string& id : kernel_ids) ASSERT_FALSE(id.empty());

  // Every kernel gets a cell that holds until a shared file appears, so that all 50 RunCells
  // are waiting at the same time while we count threads.
  char pattern[] = "/tmp/cgscale-XXXXXX";
  const std::string gate_dir = ::mkdtemp(pattern);
  ::chmod(gate_dir.c_str(), 0777);
  const std::string gate = gate_dir + "/go";
  std::vector<std::future<v1::ExecutionResult>> runs;
  for (size_t i = 0; i < kernel_ids.size(); ++i) {
    const v1::Cell cell = client().MustAddCell(
        kernel_ids[i], absl::StrCat("import os, time\n"
                                    "while not os.path.exists('", gate, "'):\n"
                                    "    time.sleep(0.02)\n"
                                    "print(", i, " * 2)\n"));
    runs.push_back(std::async(std::launch::async, [id = kernel_ids[i], cell_id = cell.cell_id()] {
      return client().MustRunCell(id, cell_id);
    }));
  }
  // Wait until every kernel is busy with its cell.
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  int busy = 0;
  while (absl::Now() < deadline) {
    v1::ListKernelsResponse listed;
    ASSERT_TRUE(client()
                    .stub()
                    .ListKernels(client().Context().get(), v1::ListKernelsRequest(), &listed)
                    .ok());
    busy = 0;
    for (const v1::Kernel& kernel : listed.kernels()) busy += kernel.state() == v1::KERNEL_STATE_BUSY;
    if (busy == kKernels) break;
  }
  ASSERT_EQ(busy, kKernels);
  const int loaded_threads = server().ThreadCount();
  // A thread per kernel or per waiting call would add 50 or 100 here.
  EXPECT_LE(loaded_threads, baseline_threads + 8)
      << "baseline " << baseline_threads << " threads, with " << kKernels
      << " kernels and as many waiting RunCells " << loaded_threads;

  { std::ofstream(gate) << "go"; }
  for (size_t i = 0; i < runs.size(); ++i) {
    const v1::ExecutionResult result = runs[i].get();
    EXPECT_EQ(result.status(), v1::EXECUTION_STATUS_OK);
    EXPECT_EQ(result.text(), absl::StrCat(i * 2, "\n"));
  }
  std::vector<std::future<grpc::Status>> shutdowns;
  for (const std::string& id : kernel_ids) {
    shutdowns.push_back(
        std::async(std::launch::async, [id] { return client().Shutdown(id); }));
  }
  for (auto& shutdown : shutdowns) EXPECT_TRUE(shutdown.get().ok());
  std::filesystem::remove_all(gate_dir);
}

}  // namespace
}  // namespace cellgate
