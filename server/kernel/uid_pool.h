#pragma once

#include <optional>
#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace cellgate::kernel {

// Hands out one unprivileged uid (gid = uid) per kernel from a fixed range, so that kernels
// can't signal or read each other and RLIMIT_NPROC counts one kernel's processes only.
// Only meaningful when the server runs as root. Thread-safe.
class UidPool {
 public:
  UidPool(int first_uid, int count);

  // RESOURCE_EXHAUSTED when every uid is taken. Any process still running under the uid
  // (left behind by an earlier kernel) is killed before the uid is handed out.
  absl::StatusOr<int> Acquire() ABSL_LOCKS_EXCLUDED(mutex_);

  // Takes `uid` as in use without killing anything: the uid of a kernel that outlived an
  // earlier gateway and is re-attached. INVALID_ARGUMENT outside the range, ALREADY_EXISTS when
  // taken. Call before any Acquire, which would kill what runs as the uid.
  absl::Status Reserve(int uid) ABSL_LOCKS_EXCLUDED(mutex_);

  // Kills every process still running as `uid`, then makes the uid available again.
  void Release(int uid) ABSL_LOCKS_EXCLUDED(mutex_);

  int first_uid() const { return first_uid_; }
  int count() const { return count_; }

 private:
  const int first_uid_;
  const int count_;
  absl::Mutex mutex_;
  std::set<int> in_use_ ABSL_GUARDED_BY(mutex_);
  int next_ ABSL_GUARDED_BY(mutex_) = 0;
};

// Sends SIGKILL to every process whose uid is `uid` (forks a child that becomes `uid` and
// calls kill(-1)). Needs root; a no-op otherwise. Returns once that child is done.
void KillAllProcessesOfUid(int uid);

}  // namespace cellgate::kernel
