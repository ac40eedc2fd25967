#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
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
// kernel (`<dir>/kernels/<kernel_id>.state`), so that a gateway started later on the same
// directory can restore them.
//
// Writes are atomic (write to a temporary file, fsync, rename, fsync the directory): a crash at
// any moment leaves the old file or the new one, never a torn one. They are coalesced: a kernel
// marked changed many times is written once per `write_interval`; a change marked `urgent` (a
// cell edited, an execution finished) is written as soon as the writer thread gets to it. One
// writer thread serves every kernel; it takes a kernel's snapshot when it writes, not when the
// change is marked. Thread-safe.
class StateStore {
 public:
  // Returns the kernel's state now, or nullopt when there is nothing to write (it is gone).
  using Snapshot = absl::AnyInvocable<std::optional<internal::KernelState>()>;

  struct Options {
    std::string dir;
    absl::Duration write_interval = absl::Milliseconds(500);
    // true: what waits for a write (a reply) runs once the file and its directory are
    // fsynced, so it survives a host crash. false: once the file is written and renamed into
    // place (safe from a crash of the gateway), with the fsyncs right after, batched per pass.
    bool fsync_before_reply = true;
  };

  // Creates `<dir>/kernels` (mode 0700) if needed and checks it can be written.
  // FAILED_PRECONDITION naming the directory when it can't.
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(Options options);

  // Writes what is pending, then stops the writer.
  ~StateStore();

  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // Reads every kernel file. A file that can't be read or parsed is moved aside (renamed to
  // `.state.bad`) and reported in `problems`; it is never deleted.
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

  // Runs `then` once a write of the kernel that starts after this call has finished (the
  // kernel is marked changed, urgently): a reply sent from `then` reports what is on disk. At
  // once, on the caller's thread, for a kernel that isn't registered; otherwise on the writer
  // thread, never under the store's locks. A failed write runs it too (the failure is logged).
  void AfterNextWrite(const std::string& kernel_id, absl::AnyInvocable<void()> then)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Forgets the kernel and deletes its file; a write in progress can't bring it back.
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
  void WriterLoop() ABSL_LOCKS_EXCLUDED(mu_, io_mu_);
  // Takes the snapshots of `kernel_ids` and writes them. Returns the open fds of files written
  // but not yet fsynced (without `fsync_before_reply`), for SyncWritten.
  std::vector<int> WriteKernels(const std::set<std::string>& kernel_ids)
      ABSL_LOCKS_EXCLUDED(mu_, io_mu_);
  // fsyncs and closes `fds`, then fsyncs the kernels directory (once for them all).
  void SyncWritten(std::vector<int> fds);

  const Options options_;
  const std::string kernels_dir_;

  // Held while a kernel's file is written or removed, so the two never interleave. Taken
  // before `mu_` when both are needed; snapshots are taken without either.
  absl::Mutex io_mu_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Snapshot>> snapshots_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> changed_ ABSL_GUARDED_BY(mu_);
  // Per kernel: what waits for its next write.
  std::map<std::string, std::vector<absl::AnyInvocable<void()>>> waiting_ ABSL_GUARDED_BY(mu_);
  bool urgent_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Bumped when a writer pass finishes: Flush waits for a pass that started after it was called.
  uint64_t passes_started_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t passes_done_ ABSL_GUARDED_BY(mu_) = 0;
  bool flush_requested_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_;
};

}  // namespace cellgate::session
