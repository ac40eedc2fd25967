#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cellgate/internal/kernel_state.pb.h"

namespace cellgate::session {

// Keeps each kernel's state (its notebook and how it was started) in a directory, one file per
// kernel (`<dir>/kernels/<kernel_id>.state`) and its journal beside it (`<kernel_id>.journal`,
// state_journal.h), so that a gateway started later on the same directory can restore them.
//
// A state that fits in the kernel's journal is appended to it and fdatasynced; one that doesn't
// replaces the state file atomically (write to a temporary file, fsync, rename, fsync the
// directory), and the journal starts afresh, with room for a few more states of its size. Either
// way a crash at any moment leaves the old state or the new one, never a torn one. Writes are
// coalesced: a kernel marked changed many times is written once per `write_interval`; a change
// marked `urgent` (a cell edited, an execution finished) is written as soon as the writer thread
// gets to it. One writer thread serves every kernel; it takes a kernel's snapshot when it writes,
// not when the change is marked. Thread-safe.
//
// A kernel numbers its changes; a reply that must report what is on disk waits for a write
// whose snapshot includes its change (AfterWritten), which may be the write already under way.
class StateStore {
 public:
  // A kernel's state, and the number of the last change it includes (the kernel's own count,
  // growing with each change).
  struct KernelSnapshot {
    internal::KernelState state;
    // Wire bytes of a v1::Notebook, merged into `state.notebook` as it is written: a kernel
    // can hand its notebook over serialized, without a copy of the message.
    std::string notebook_bytes;
    uint64_t change = 0;
  };
  // Returns the kernel's state now, or nullopt when there is nothing to write (it is gone).
  using Snapshot = absl::AnyInvocable<std::optional<KernelSnapshot>()>;

  struct Options {
    std::string dir;
    absl::Duration write_interval = absl::Milliseconds(500);
    // true: what waits for a write (a reply) runs once it is fsynced (a state file and its
    // directory, or the journal), so it survives a host crash. false: once the file is written
    // (a state file renamed into place, safe from a crash of the gateway), with the fsyncs
    // right after, batched per pass.
    bool fsync_before_reply = true;
    // A kernel's journal grows to at most this, or to room for `journal_states` states of the
    // size its state file was last written with when that is more: a kernel with large
    // outputs saves by appending too (one fdatasync, not a new file's two fsyncs), and its
    // journal stays within that many times its state. A state that would not fit is written
    // as the state file instead, and the journal starts afresh. 0: no journal.
    size_t max_journal_bytes = 1 << 20;
    size_t journal_states = 4;
  };

  // Creates `<dir>/kernels` (mode 0700) if needed and checks it can be written.
  // FAILED_PRECONDITION naming the directory when it can't.
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(Options options);

  // Writes what is pending, then stops the writer.
  ~StateStore();

  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // Reads every kernel file, and the newest state of its journal. A file that can't be read or
  // parsed is moved aside (renamed to `.state.bad`, its journal to `.journal.bad`) and reported
  // in `problems`; it is never deleted. A journal without its state file is deleted.
  struct Loaded {
    std::vector<internal::KernelState> kernels;
    std::vector<std::string> problems;
  };
  Loaded LoadAll() const;

  // From now on the kernel's state is taken with `snapshot` whenever it is written.
  void Register(const std::string& kernel_id, Snapshot snapshot) ABSL_LOCKS_EXCLUDED(mu_);

  // The kernel's state changed; it will be written. Cheap: callable under the caller's locks
  // (the snapshot is never taken inside this call).
  void MarkChanged(const std::string& kernel_id, bool urgent) ABSL_LOCKS_EXCLUDED(mu_);

  // Runs `then` once a write of a snapshot that includes the kernel's change number `change`
  // has finished: a reply sent from `then` reports what is on disk. The write under way serves
  // when its snapshot is late enough; otherwise the kernel is marked changed, urgently. At
  // once, on the caller's thread, for a kernel that isn't registered; otherwise on the writer
  // thread, never under the store's locks. A failed write runs it too (the failure is logged).
  void AfterWritten(const std::string& kernel_id, uint64_t change,
                    absl::AnyInvocable<void()> then) ABSL_LOCKS_EXCLUDED(mu_);

  // Forgets the kernel and deletes its files; a write in progress can't bring them back.
  void Remove(const std::string& kernel_id) ABSL_LOCKS_EXCLUDED(mu_, io_mu_);

  // Writes every changed kernel now and returns once they are on disk.
  void Flush() ABSL_LOCKS_EXCLUDED(mu_, io_mu_);

  const std::string& dir() const { return options_.dir; }

  // Writes `state` to `path` atomically (temporary file, fsync, rename, fsync of the directory).
  static absl::Status WriteAtomically(const std::string& path, const std::string& bytes);
  // The same but the fsyncs: the temporary file is written and renamed over `path`; returns
  // its still open fd, for the caller to fsync (then the directory) and close.
  static absl::StatusOr<int> WriteAndRename(const std::string& path, const std::string& bytes);

 private:
  explicit StateStore(Options options);
  std::string PathFor(const std::string& kernel_id) const;
  std::string JournalPathFor(const std::string& kernel_id) const;
  void WriterLoop() ABSL_LOCKS_EXCLUDED(mu_, io_mu_);
  // What a pass did: per kernel of its batch, the change its snapshot included (absent for a
  // kernel with nothing to write); the open fds of files written but not yet fsynced (without
  // `fsync_before_reply`), with their kernels, for SyncWritten.
  struct Pass {
    struct Taken {
      uint64_t change;
      // The registration it came from: a kernel removed and registered again under the same
      // id during the pass numbers its changes afresh.
      std::shared_ptr<Snapshot> source;
    };
    std::map<std::string, Taken> snapshot_taken;
    std::vector<std::pair<std::string, int>> unsynced;
    // Kernels whose state file was rewritten but not yet fsynced: their journals start once it
    // is (SyncWritten).
    struct JournalToStart {
      std::string kernel_id;
      uint64_t epoch;  // the one the state file names
      size_t max_bytes;
    };
    std::vector<JournalToStart> journals_to_start;
    // Kernels whose write failed: written again after the interval (RetryFailedLocked).
    std::set<std::string> failed;
  };
  // Takes the snapshots of `kernel_ids` and writes them.
  Pass WriteKernels(const std::set<std::string>& kernel_ids) ABSL_LOCKS_EXCLUDED(mu_, io_mu_);
  // Writes the snapshot's state: appended to the kernel's journal when it fits, else as its
  // state file.
  absl::Status WriteKernelLocked(const std::string& kernel_id, KernelSnapshot& snapshot, Pass& pass)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  absl::Status AppendToJournalLocked(const std::string& kernel_id, const std::string& bytes,
                                     Pass& pass) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  absl::Status RewriteStateFileLocked(const std::string& kernel_id, KernelSnapshot& snapshot,
                                      Pass& pass) ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // How big the journal of a state file holding `state_bytes` may grow (0: none).
  size_t MaxJournalBytesFor(size_t state_bytes) const;
  // Empties the kernel's journal (creating it if needed) and heads it with `epoch`, the one its
  // state file, on disk, names; it takes records up to `max_bytes` in all. Logs a failure:
  // without a journal the next write rewrites the state file.
  void StartJournalLocked(const std::string& kernel_id, uint64_t epoch, size_t max_bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Marks the pass's failed kernels (still registered) changed, not urgently: the next pass,
  // once the interval is over, writes them again, and so on until a write works. What waited
  // for the failed write was answered (the failure is logged).
  void RetryFailedLocked(const std::set<std::string>& failed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a pass over `batch`: takes out what waited for the changes it wrote (or tried to; all
  // of a kernel with nothing to write) and marks changed again the kernels still waited for.
  std::vector<absl::AnyInvocable<void()>> TakeServedLocked(const std::set<std::string>& batch,
                                                           const Pass& pass)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // fsyncs and closes the pass's fds, fsyncs the kernels directory (once for them all), then
  // starts the journals of the state files it rewrote. A failed fsync is retried as a failed
  // write is.
  void SyncWritten(Pass& pass) ABSL_LOCKS_EXCLUDED(mu_, io_mu_);

  const Options options_;
  const std::string kernels_dir_;

  // Held while a kernel's file is written or removed, so the two never interleave. Taken
  // before `mu_` when both are needed; snapshots are taken without either.
  absl::Mutex io_mu_;
  // Per kernel with a journal started by this store: its epoch, where the next record goes and
  // how far records may go.
  struct JournalEnd {
    uint64_t epoch;
    uint64_t offset;
    uint64_t max_bytes;
  };
  std::map<std::string, JournalEnd> journals_ ABSL_GUARDED_BY(io_mu_);
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Snapshot>> snapshots_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> changed_ ABSL_GUARDED_BY(mu_);
  // The kernels of the pass under way (their snapshots may not be taken yet).
  std::set<std::string> writing_ ABSL_GUARDED_BY(mu_);
  // Per kernel: what waits for a write that includes a change.
  struct Waiter {
    uint64_t change;
    absl::AnyInvocable<void()> then;
  };
  std::map<std::string, std::vector<Waiter>> waiting_ ABSL_GUARDED_BY(mu_);
  // Per kernel, the last change a write included (whether its fsync is done or follows, as
  // for what waits): a reply asking after the write is answered at once.
  std::map<std::string, uint64_t> written_change_ ABSL_GUARDED_BY(mu_);
  bool urgent_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Bumped when a writer pass finishes: Flush waits for a pass that started after it was called.
  uint64_t passes_started_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t passes_done_ ABSL_GUARDED_BY(mu_) = 0;
  bool flush_requested_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_;
};

}  // namespace cellgate::session
