#include "server/session/state_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/session/state_journal.h"

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

  std::unique_ptr<StateStore> OpenStoreWithJournalLimit(size_t max_journal_bytes) {
    absl::StatusOr<std::unique_ptr<StateStore>> store = StateStore::Open(
        {.dir = dir_, .write_interval = absl::Hours(1), .max_journal_bytes = max_journal_bytes});
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  // A kernel whose snapshot counts how often it was taken and carries `source` in its cell and
  // `change` as the number of its last change. `while_taken`, when set, runs inside the
  // snapshot (on the writer thread, as a change racing with the write would).
  struct FakeKernel {
    std::atomic<int> snapshots{0};
    std::atomic<bool> gone{false};
    std::string source = "print(1)";
    uint64_t change = 0;
    std::function<void()> while_taken;
    // The cells handed over as a serialized v1::Notebook (KernelSnapshot::notebook_bytes), as
    // the session does.
    bool cells_as_bytes = false;
  };
  StateStore::Snapshot SnapshotOf(const std::string& id, FakeKernel& kernel) {
    return [id, &kernel]() -> std::optional<StateStore::KernelSnapshot> {
      if (kernel.gone) return std::nullopt;
      ++kernel.snapshots;
      StateStore::KernelSnapshot snapshot;
      snapshot.change = kernel.change;
      internal::KernelState& state = snapshot.state;
      state.set_kernel_id(id);
      state.mutable_start_request()->set_kernel_spec("python3");
      v1::Notebook cells;
      v1::Cell* cell = cells.add_cells();
      cell->set_cell_id("c1");
      cell->set_source(kernel.source);
      if (kernel.cells_as_bytes) {
        snapshot.notebook_bytes = cells.SerializeAsString();
      } else {
        state.mutable_notebook()->MergeFrom(cells);
      }
      state.mutable_notebook()->set_last_seq(kernel.snapshots);
      if (kernel.while_taken) std::exchange(kernel.while_taken, nullptr)();
      return snapshot;
    };
  }
  std::string KernelFile(const std::string& id) const { return dir_ + "/kernels/" + id + ".state"; }
  std::string JournalFile(const std::string& id) const {
    return dir_ + "/kernels/" + id + ".journal";
  }
  // The cell's source in the state file alone, without its journal.
  std::string SourceInStateFile(const std::string& id) const {
    std::ifstream in(KernelFile(id), std::ios::binary);
    internal::KernelState state;
    EXPECT_TRUE(state.ParseFromIstream(&in));
    return state.notebook().cells_size() > 0 ? state.notebook().cells(0).source() : "";
  }
  // Registers `kernel` as k1 and waits for its first write (its state file).
  void RegisterAndWrite(StateStore& store, FakeKernel& kernel) {
    store.Register("k1", SnapshotOf("k1", kernel));
    store.Flush();
  }
  // Changes the kernel's cell and waits until the change is written.
  static void Change(StateStore& store, FakeKernel& kernel, const std::string& source) {
    kernel.source = source;
    ++kernel.change;
    store.MarkChanged("k1", /*urgent=*/true);
    store.Flush();
  }
  std::string LoadedSource() {
    std::unique_ptr<StateStore> reader = OpenStore();
    const StateStore::Loaded loaded = reader->LoadAll();
    EXPECT_THAT(loaded.problems, IsEmpty());
    return loaded.kernels.empty() ? "" : loaded.kernels.at(0).notebook().cells(0).source();
  }

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
  kernel.change = 1;
  store->MarkChanged("k1", /*urgent=*/true);
  absl::Notification written;
  std::string on_disk;
  store->AfterWritten("k1", 1, [&] {
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
  kernel.change = 1;
  store->MarkChanged("k1", /*urgent=*/true);
  absl::Notification written;
  std::string on_disk;
  bool temporary_left = true;
  store->AfterWritten("k1", 1, [&] {
    on_disk = store->LoadAll().kernels.at(0).notebook().cells(0).source();
    temporary_left = fs::exists(KernelFile("k1") + ".tmp");
    written.Notify();
  });
  ASSERT_TRUE(written.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(on_disk, "edited");
  EXPECT_FALSE(temporary_left);
  store->Flush();  // the pass ends with the fsyncs, which close the files
  EXPECT_EQ(OpenFds(), fds_between_writes);
  // The journal started once the first state file was synced: the edit went there.
  EXPECT_EQ(SourceInStateFile("k1"), "print(1)");
}

TEST_F(StateStoreTest, AfterWrittenOfAnUnknownKernelRunsAtOnce) {
  std::unique_ptr<StateStore> store = OpenStore();
  bool ran = false;
  store->AfterWritten("nobody", 1, [&] { ran = true; });
  EXPECT_TRUE(ran);
}

// A reply registered while its change's write is under way (the change was marked urgent, the
// writer took the kernel, the reply comes a moment later) is answered by that write when its
// snapshot includes the change: one write per change, not two.
TEST_F(StateStoreTest, TheWriteUnderWayAnswersAReplyItsSnapshotIncludes) {
  std::unique_ptr<StateStore> store = OpenStore();
  FakeKernel kernel;
  store->Register("k1", SnapshotOf("k1", kernel));
  store->Flush();
  ASSERT_EQ(kernel.snapshots, 1);
  absl::Notification replied;
  kernel.change = 1;
  kernel.source = "edited";
  kernel.while_taken = [&] { store->AfterWritten("k1", 1, [&] { replied.Notify(); }); };
  store->MarkChanged("k1", /*urgent=*/true);
  ASSERT_TRUE(replied.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(store->LoadAll().kernels.at(0).notebook().cells(0).source(), "edited");
  store->Flush();
  EXPECT_EQ(kernel.snapshots, 2) << "the reply made no second write";
}

// A reply that asks once the write including its change is over (an import's reply is copied
// while the state is written) is answered at once, not by another write.
TEST_F(StateStoreTest, AReplyAskingAfterItsChangeWasWrittenIsAnsweredWithoutAnotherWrite) {
  std::unique_ptr<StateStore> store = OpenStore();
  FakeKernel kernel;
  RegisterAndWrite(*store, kernel);
  Change(*store, kernel, "edited");
  ASSERT_EQ(kernel.snapshots, 2);
  bool replied = false;
  store->AfterWritten("k1", kernel.change, [&] { replied = true; });
  EXPECT_TRUE(replied) << "the write that included the change answers it";
  store->Flush();
  EXPECT_EQ(kernel.snapshots, 2) << "no second write";

  // A change not written yet still waits for its write.
  ++kernel.change;
  absl::Notification written;
  store->AfterWritten("k1", kernel.change, [&] { written.Notify(); });
  ASSERT_TRUE(written.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(kernel.snapshots, 3);

  // A kernel registered again under the id numbers its changes afresh: what was written for
  // the one before answers none of its replies.
  store->Remove("k1");
  FakeKernel again;
  RegisterAndWrite(*store, again);
  ASSERT_EQ(again.snapshots, 1);
  again.change = 1;
  absl::Notification again_written;
  store->AfterWritten("k1", 1, [&] { again_written.Notify(); });
  ASSERT_TRUE(again_written.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(again.snapshots, 2) << "its change 1 was written for it";
}

// A kernel shut down and another started under its id while the writer takes the first one's
// snapshot: the write of the first answers no reply of the second.
TEST_F(StateStoreTest, AWriteOfAKernelRemovedMeanwhileAnswersNoReplyOfTheOneRegisteredAfter) {
  std::unique_ptr<StateStore> store = OpenStore();
  FakeKernel old_kernel;
  RegisterAndWrite(*store, old_kernel);
  old_kernel.change = 5;
  FakeKernel new_kernel;
  new_kernel.source = "the new kernel";
  new_kernel.change = 1;
  absl::Notification replied;
  int new_snapshots_when_replied = -1;
  old_kernel.while_taken = [&] {
    store->Remove("k1");
    store->Register("k1", SnapshotOf("k1", new_kernel));
    store->AfterWritten("k1", 1, [&] {
      new_snapshots_when_replied = new_kernel.snapshots;
      replied.Notify();
    });
  };
  store->MarkChanged("k1", /*urgent=*/true);
  ASSERT_TRUE(replied.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_GE(new_snapshots_when_replied, 1) << "answered before the new kernel was written";
  store->Flush();
  EXPECT_EQ(LoadedSource(), "the new kernel");
}

// A reply for a change made after the snapshot under way was taken waits for the next write.
TEST_F(StateStoreTest, AChangeTheWriteUnderWayMissedIsWrittenNextBeforeItsReply) {
  std::unique_ptr<StateStore> store = OpenStore();
  FakeKernel kernel;
  store->Register("k1", SnapshotOf("k1", kernel));
  store->Flush();
  absl::Notification replied;
  int snapshots_when_replied = 0;
  kernel.change = 1;
  kernel.while_taken = [&] {
    // Numbered 2, after this snapshot (which reports change 1) is taken.
    store->AfterWritten("k1", 2, [&] {
      snapshots_when_replied = kernel.snapshots;
      replied.Notify();
    });
    kernel.change = 2;
  };
  store->MarkChanged("k1", /*urgent=*/true);
  ASSERT_TRUE(replied.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(snapshots_when_replied, 3) << "registration, the write under way, then the one for 2";
}

TEST_F(StateStoreTest, RemoveDeletesTheFileAndAPendingWriteDoesNotBringItBack) {
  std::unique_ptr<StateStore> store = OpenStore();
  FakeKernel kernel;
  store->Register("k1", SnapshotOf("k1", kernel));
  store->Flush();
  ASSERT_TRUE(fs::exists(KernelFile("k1")));
  kernel.change = 1;
  store->MarkChanged("k1", /*urgent=*/false);
  bool replied = false;
  store->AfterWritten("k1", 1, [&] { replied = true; });
  store->Remove("k1");
  EXPECT_TRUE(replied) << "a reply waiting for the write is sent when the kernel goes";
  store->Flush();
  EXPECT_FALSE(fs::exists(KernelFile("k1")));
  EXPECT_FALSE(fs::exists(JournalFile("k1")));
  EXPECT_THAT(store->LoadAll().kernels, IsEmpty());
}

TEST_F(StateStoreTest, ChangesAfterTheFirstWriteAreAppendedToTheJournal) {
  std::unique_ptr<StateStore> store = OpenStore();
  FakeKernel kernel;
  RegisterAndWrite(*store, kernel);
  ASSERT_TRUE(fs::exists(JournalFile("k1")));
  const auto journal_size = fs::file_size(JournalFile("k1"));
  Change(*store, kernel, "second");
  Change(*store, kernel, "third");
  EXPECT_EQ(SourceInStateFile("k1"), "print(1)") << "the state file is not rewritten";
  EXPECT_GT(fs::file_size(JournalFile("k1")), journal_size);
  EXPECT_EQ(LoadedSource(), "third");
}

TEST_F(StateStoreTest, ANotebookHandedOverAsBytesIsPartOfTheStateInTheFileAndTheJournal) {
  std::unique_ptr<StateStore> store = OpenStore();
  FakeKernel kernel;
  kernel.cells_as_bytes = true;
  RegisterAndWrite(*store, kernel);
  EXPECT_EQ(SourceInStateFile("k1"), "print(1)");
  Change(*store, kernel, "second");
  ASSERT_GT(fs::file_size(JournalFile("k1")), 0u);
  EXPECT_EQ(SourceInStateFile("k1"), "print(1)") << "the change went to the journal";
  store.reset();
  std::unique_ptr<StateStore> reader = OpenStore();
  const StateStore::Loaded loaded = reader->LoadAll();
  EXPECT_THAT(loaded.problems, IsEmpty());
  ASSERT_THAT(loaded.kernels, SizeIs(1));
  const v1::Notebook& notebook = loaded.kernels[0].notebook();
  ASSERT_EQ(notebook.cells_size(), 1);
  EXPECT_EQ(notebook.cells(0).source(), "second");
  EXPECT_EQ(notebook.last_seq(), static_cast<uint64_t>(kernel.snapshots.load()))
      << "the state's own notebook fields are kept";
  EXPECT_EQ(loaded.kernels[0].start_request().kernel_spec(), "python3");
}

TEST_F(StateStoreTest, AJournalRecordCutShortByACrashLeavesTheStateBeforeIt) {
  std::unique_ptr<StateStore> store = OpenStore();
  FakeKernel kernel;
  RegisterAndWrite(*store, kernel);
  Change(*store, kernel, "second");
  Change(*store, kernel, "third");
  store.reset();
  fs::resize_file(JournalFile("k1"), fs::file_size(JournalFile("k1")) - 1);
  EXPECT_EQ(LoadedSource(), "second");
}

TEST_F(StateStoreTest, AStateTooBigForTheJournalIsWrittenAsTheStateFile) {
  std::unique_ptr<StateStore> store = OpenStoreWithJournalLimit(4096);
  FakeKernel kernel;
  RegisterAndWrite(*store, kernel);
  Change(*store, kernel, "small");
  EXPECT_EQ(SourceInStateFile("k1"), "print(1)");
  const std::string big(8000, 'x');
  Change(*store, kernel, big);
  EXPECT_EQ(SourceInStateFile("k1"), big);
  EXPECT_EQ(LoadedSource(), big) << "the journal before it does not count";
  // The journal starts afresh, with room for states of that size: what follows is appended.
  EXPECT_EQ(fs::file_size(JournalFile("k1")), kJournalHeaderBytes);
  Change(*store, kernel, "small again");
  EXPECT_EQ(SourceInStateFile("k1"), big);
  EXPECT_EQ(LoadedSource(), "small again");
}

TEST_F(StateStoreTest, AKernelWithAStateBiggerThanTheJournalLimitSavesByAppendingToo) {
  // Each state is about twice the limit: the journal makes room for four of them
  // (Options::journal_states), so the state file is rewritten once in four or five writes.
  std::unique_ptr<StateStore> store = OpenStoreWithJournalLimit(4096);
  FakeKernel kernel;
  RegisterAndWrite(*store, kernel);
  const std::string first(8000, 'a');
  Change(*store, kernel, first);
  ASSERT_EQ(SourceInStateFile("k1"), first);
  const uintmax_t state_file_bytes = fs::file_size(KernelFile("k1"));
  int rewritten_at = 0;
  for (int i = 1; i <= 6 && rewritten_at == 0; ++i) {
    const std::string source(8000, static_cast<char>('a' + i));
    Change(*store, kernel, source);
    EXPECT_EQ(LoadedSource(), source);
    if (SourceInStateFile("k1") == source) {
      rewritten_at = i;
    } else {
      EXPECT_LE(fs::file_size(JournalFile("k1")),
                kJournalHeaderBytes + 4 * (kJournalRecordOverhead + state_file_bytes + 8))
          << "the journal stays within four states of the file's size";
    }
  }
  // Three appends fit whatever a state's timestamp adds to its size; the fourth fits when it
  // is no bigger than the state in the file.
  EXPECT_GE(rewritten_at, 4) << "the writes after the state file's went to the journal";
  EXPECT_LE(rewritten_at, 5) << "a full journal is not written past";
}

TEST_F(StateStoreTest, AJournalOlderThanItsStateFileIsIgnored) {
  // A crash after the state file was rewritten, before the journal was emptied.
  std::unique_ptr<StateStore> store = OpenStoreWithJournalLimit(4096);
  FakeKernel kernel;
  RegisterAndWrite(*store, kernel);
  Change(*store, kernel, "in the old journal");
  const std::string old_journal = JournalFile("k1") + ".old";
  fs::copy_file(JournalFile("k1"), old_journal);
  Change(*store, kernel, std::string(8000, 'y'));
  store.reset();
  fs::rename(old_journal, JournalFile("k1"));
  EXPECT_EQ(LoadedSource(), std::string(8000, 'y'));
}

TEST_F(StateStoreTest, WithoutAJournalEveryWriteIsAStateFile) {
  std::unique_ptr<StateStore> store = OpenStoreWithJournalLimit(0);
  FakeKernel kernel;
  RegisterAndWrite(*store, kernel);
  Change(*store, kernel, "second");
  EXPECT_EQ(SourceInStateFile("k1"), "second");
  EXPECT_FALSE(fs::exists(JournalFile("k1")));
}

TEST_F(StateStoreTest, AJournalRecordThatIsNotAStateSetsTheKernelAsideWithItsJournal) {
  FakeKernel kernel;
  {
    std::unique_ptr<StateStore> store = OpenStore();
    RegisterAndWrite(*store, kernel);
  }
  // A whole record (its checksum right) of bytes that are not a kernel state.
  std::ifstream in(KernelFile("k1"), std::ios::binary);
  internal::KernelState state;
  ASSERT_TRUE(state.ParseFromIstream(&in));
  ASSERT_NE(state.journal_epoch(), 0u);
  std::ofstream(JournalFile("k1"), std::ios::binary | std::ios::trunc)
      << EncodeJournalHeader(state.journal_epoch()) << EncodeJournalRecord("not a state");
  std::unique_ptr<StateStore> store = OpenStore();
  const StateStore::Loaded loaded = store->LoadAll();
  EXPECT_THAT(loaded.kernels, IsEmpty()) << "not restored as it was before its last save";
  ASSERT_THAT(loaded.problems, SizeIs(1));
  EXPECT_THAT(loaded.problems[0], HasSubstr("has a journal whose last record is not its state"));
  EXPECT_TRUE(fs::exists(KernelFile("k1") + ".bad"));
  EXPECT_TRUE(fs::exists(JournalFile("k1") + ".bad"));
}

TEST_F(StateStoreTest, AJournalThatCannotBeReadSetsTheKernelAsideNotRestoredOlder) {
  FakeKernel kernel;
  {
    std::unique_ptr<StateStore> store = OpenStore();
    RegisterAndWrite(*store, kernel);
    Change(*store, kernel, "only in the journal");
  }
  // Not a file that can be read (what an I/O error would give).
  fs::remove(JournalFile("k1"));
  fs::create_directory(JournalFile("k1"));
  std::unique_ptr<StateStore> store = OpenStore();
  const StateStore::Loaded loaded = store->LoadAll();
  EXPECT_THAT(loaded.kernels, IsEmpty());
  ASSERT_THAT(loaded.problems, SizeIs(1));
  EXPECT_THAT(loaded.problems[0], HasSubstr("has a journal that cannot be read"));
  EXPECT_TRUE(fs::exists(KernelFile("k1") + ".bad"));
}

TEST_F(StateStoreTest, AJournalWithoutItsStateFileIsDeletedOnLoad) {
  std::ofstream(JournalFile("orphan")) << "left by a crash during a removal";
  std::unique_ptr<StateStore> store = OpenStore();
  EXPECT_THAT(store->LoadAll().kernels, IsEmpty());
  EXPECT_FALSE(fs::exists(JournalFile("orphan")));
}

TEST_F(StateStoreTest, AFailedWriteIsWrittenAgainOnceItCanBe) {
  std::unique_ptr<StateStore> store = OpenStore();
  FakeKernel kernel;
  // Where the state file's temporary goes, a directory: the write fails.
  ASSERT_TRUE(fs::create_directories(KernelFile("k1") + ".tmp"));
  RegisterAndWrite(*store, kernel);
  ASSERT_FALSE(fs::exists(KernelFile("k1")));
  fs::remove(KernelFile("k1") + ".tmp");
  // No change since: only the retry can write it.
  store->Flush();
  ASSERT_TRUE(fs::exists(KernelFile("k1")));
  EXPECT_EQ(LoadedSource(), "print(1)");
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
