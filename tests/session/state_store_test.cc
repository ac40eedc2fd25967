#include "server/session/state_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellgate::session {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/cgstate-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code error;
    fs::remove_all(dir_, error);
  }

  // A store that never writes by itself within a test (no urgent change): only Register,
  // urgent changes and Flush make it write.
  std::unique_ptr<StateStore> OpenStore(absl::Duration interval = absl::Hours(1)) {
    absl::StatusOr<std::unique_ptr<StateStore>> store = StateStore::Open({dir_, interval});
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  // A kernel whose snapshot counts how often it was taken and carries `source` in its cell.
  struct FakeKernel {
    std::atomic<int> snapshots{0};
    std::atomic<bool> gone{false};
    std::string source = "print(1)";
  };
  StateStore::Snapshot SnapshotOf(const std::string& id, FakeKernel& kernel) {
    return [id, &kernel]() -> std::optional<internal::KernelState> {
      if (kernel.gone) return std::nullopt;
      ++kernel.snapshots;
      internal::KernelState state;
      state.set_kernel_id(id);
      state.mutable_start_request()->set_kernel_spec("python3");
      v1::Cell* cell = state.mutable_notebook()->add_cells();
      cell->set_cell_id("c1");
      cell->set_source(kernel.source);
      state.mutable_notebook()->set_last_seq(kernel.snapshots);
      return state;
    };
  }
  std::string KernelFile(const std::string& id) const { return dir_ + "/kernels/" + id + ".state"; }

  std::string dir_;
};

TEST_F(StateStoreTest, WhatIsWrittenIsLoadedBack) {
  FakeKernel kernel;
  kernel.source = "x = 'ü' * 3";
  {
    std::unique_ptr<StateStore> store = OpenStore();
    ASSERT_NE(store, nullptr);
    store->Register("k1", SnapshotOf("k1", kernel));
    store->Flush();
  }
  std::unique_ptr<StateStore> store = OpenStore();
  const StateStore::Loaded loaded = store->LoadAll();
  EXPECT_THAT(loaded.problems, IsEmpty());
  ASSERT_THAT(loaded.kernels, SizeIs(1));
  EXPECT_EQ(loaded.kernels[0].kernel_id(), "k1");
  EXPECT_EQ(loaded.kernels[0].format(), 1u);
  EXPECT_EQ(loaded.kernels[0].start_request().kernel_spec(), "python3");
  ASSERT_EQ(loaded.kernels[0].notebook().cells_size(), 1);
  EXPECT_EQ(loaded.kernels[0].notebook().cells(0).source(), "x = 'ü' * 3");
  EXPECT_GT(loaded.kernels[0].written_at().seconds(), 0);
  struct stat info {};
  ASSERT_EQ(::stat(KernelFile("k1").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u) << "state files hold code and outputs: owner only";
}

TEST_F(StateStoreTest, ManyChangesWithinTheIntervalCostOneWrite) {
  std::unique_ptr<StateStore> store = OpenStore();
  FakeKernel kernel;
  store->Register("k1", SnapshotOf("k1", kernel));
  store->Flush();
  ASSERT_EQ(kernel.snapshots, 1);
  for (int i = 0; i < 1000; ++i) store->MarkChanged("k1", /*urgent=*/false);
  store->Flush();
  EXPECT_EQ(kernel.snapshots, 2);
}

TEST_F(StateStoreTest, AnUrgentChangeIsWrittenWithoutWaitingForTheInterval) {
  std::unique_ptr<StateStore> store = OpenStore();  // interval: an hour
  FakeKernel kernel;
  store->Register("k1", SnapshotOf("k1", kernel));
  store->Flush();
  kernel.source = "edited";
  store->MarkChanged("k1", /*urgent=*/true);
  absl::Notification written;
  std::string on_disk;
  store->AfterNextWrite("k1", [&] {
    // What the reply would report is on disk by now.
    on_disk = store->LoadAll().kernels.at(0).notebook().cells(0).source();
    written.Notify();
  });
  ASSERT_TRUE(written.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(on_disk, "edited");
}

int OpenFds() {
  int count = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator("/proc/self/fd")) ++count;
  return count;
}

TEST_F(StateStoreTest, WithTheFsyncAfterTheReplyTheReplyStillFindsTheWholeNewFile) {
  absl::StatusOr<std::unique_ptr<StateStore>> opened =
      StateStore::Open({dir_, absl::Hours(1), /*fsync_before_reply=*/false});
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::unique_ptr<StateStore> store = *std::move(opened);
  FakeKernel kernel;
  store->Register("k1", SnapshotOf("k1", kernel));
  store->Flush();
  const int fds_between_writes = OpenFds();
  kernel.source = "edited";
  store->MarkChanged("k1", /*urgent=*/true);
  absl::Notification written;
  std::string on_disk;
  bool temporary_left = true;
  store->AfterNextWrite("k1", [&] {
    on_disk = store->LoadAll().kernels.at(0).notebook().cells(0).source();
    temporary_left = fs::exists(KernelFile("k1") + ".tmp");
    written.Notify();
  });
  ASSERT_TRUE(written.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(on_disk, "edited");
  EXPECT_FALSE(temporary_left);
  store->Flush();  // the pass ends with the fsyncs, which close the files
  EXPECT_EQ(OpenFds(), fds_between_writes);
}

TEST_F(StateStoreTest, AfterNextWriteOfAnUnknownKernelRunsAtOnce) {
  std::unique_ptr<StateStore> store = OpenStore();
  bool ran = false;
  store->AfterNextWrite("nobody", [&] { ran = true; });
  EXPECT_TRUE(ran);
}

TEST_F(StateStoreTest, RemoveDeletesTheFileAndAPendingWriteDoesNotBringItBack) {
  std::unique_ptr<StateStore> store = OpenStore();
  FakeKernel kernel;
  store->Register("k1", SnapshotOf("k1", kernel));
  store->Flush();
  ASSERT_TRUE(fs::exists(KernelFile("k1")));
  store->MarkChanged("k1", /*urgent=*/false);
  bool replied = false;
  store->AfterNextWrite("k1", [&] { replied = true; });
  store->Remove("k1");
  EXPECT_TRUE(replied) << "a reply waiting for the write is sent when the kernel goes";
  store->Flush();
  EXPECT_FALSE(fs::exists(KernelFile("k1")));
  EXPECT_THAT(store->LoadAll().kernels, IsEmpty());
}

TEST_F(StateStoreTest, GoneKernelsAreNotWritten) {
  std::unique_ptr<StateStore> store = OpenStore();
  FakeKernel kernel;
  store->Register("k1", SnapshotOf("k1", kernel));
  store->Flush();
  kernel.gone = true;
  kernel.source = "never written";
  store->MarkChanged("k1", /*urgent=*/true);
  store->Flush();
  EXPECT_EQ(store->LoadAll().kernels.at(0).notebook().cells(0).source(), "print(1)");
}

TEST_F(StateStoreTest, AnUnfinishedWriteLeavesTheLastFileIntact) {
  FakeKernel kernel;
  {
    std::unique_ptr<StateStore> store = OpenStore();
    store->Register("k1", SnapshotOf("k1", kernel));
    store->Flush();
  }
  // What a gateway killed in the middle of a write leaves: a temporary file, half written.
  std::ofstream(KernelFile("k1") + ".tmp") << "\x0a\x05half";
  std::unique_ptr<StateStore> store = OpenStore();
  const StateStore::Loaded loaded = store->LoadAll();
  EXPECT_THAT(loaded.problems, IsEmpty());
  ASSERT_THAT(loaded.kernels, SizeIs(1));
  EXPECT_EQ(loaded.kernels[0].notebook().cells(0).source(), "print(1)");
  EXPECT_FALSE(fs::exists(KernelFile("k1") + ".tmp"));
}

TEST_F(StateStoreTest, AnUnreadableFileIsSetAsideAndReportedNotDeleted) {
  FakeKernel kernel;
  std::unique_ptr<StateStore> store = OpenStore();
  store->Register("good", SnapshotOf("good", kernel));
  store->Flush();
  std::ofstream(KernelFile("junk")) << "this is not a kernel state";
  fs::copy_file(KernelFile("good"), KernelFile("renamed"));

  const StateStore::Loaded loaded = store->LoadAll();
  ASSERT_THAT(loaded.kernels, SizeIs(1));
  EXPECT_EQ(loaded.kernels[0].kernel_id(), "good");
  ASSERT_THAT(loaded.problems, SizeIs(2));
  const std::string problems = loaded.problems[0] + "\n" + loaded.problems[1];
  EXPECT_THAT(problems, HasSubstr("junk.state is not a kernel state file; moved to"));
  EXPECT_THAT(problems, HasSubstr("holds kernel 'good', not 'renamed'"));
  EXPECT_TRUE(fs::exists(KernelFile("junk") + ".bad"));
  EXPECT_TRUE(fs::exists(KernelFile("renamed") + ".bad"));
}

TEST_F(StateStoreTest, AStateDirThatCannotBeCreatedIsAClearError) {
  std::ofstream(dir_ + "/a-file") << "x";
  absl::StatusOr<std::unique_ptr<StateStore>> store =
      StateStore::Open({dir_ + "/a-file/state", absl::Seconds(1)});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("--state-dir: cannot create"));
  EXPECT_THAT(store.status().message(), HasSubstr("a-file/state/kernels"));
}

}  // namespace
}  // namespace cellgate::session
