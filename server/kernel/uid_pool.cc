#include "server/kernel/uid_pool.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace cellgate::kernel {

UidPool::UidPool(int first_uid, int count) : first_uid_(first_uid), count_(count) {}

absl::StatusOr<int> UidPool::Acquire() {
  int uid = -1;
  {
    absl::MutexLock lock(&mutex_);
    for (int tried = 0; tried < count_; ++tried) {
      const int candidate = first_uid_ + (next_ + tried) % count_;
      if (!in_use_.contains(candidate)) {
        uid = candidate;
        next_ = (next_ + tried + 1) % count_;
        in_use_.insert(uid);
        break;
      }
    }
  }
  if (uid < 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("all ", count_, " kernel uids starting at ", first_uid_, " are in use"));
  }
  KillAllProcessesOfUid(uid);
  return uid;
}

absl::Status UidPool::Reserve(int uid) {
  if (uid < first_uid_ || uid >= first_uid_ + count_) {
    return absl::InvalidArgumentError(absl::StrCat("uid ", uid, " is outside the kernel uids [",
                                                   first_uid_, ", ", first_uid_ + count_, ")"));
  }
  absl::MutexLock lock(&mutex_);
  if (!in_use_.insert(uid).second) {
    return absl::AlreadyExistsError(absl::StrCat("uid ", uid, " is in use"));
  }
  return absl::OkStatus();
}

void UidPool::Release(int uid) {
  KillAllProcessesOfUid(uid);
  absl::MutexLock lock(&mutex_);
  in_use_.erase(uid);
}

void KillAllProcessesOfUid(int uid) {
  if (::geteuid() != 0 || uid <= 0) return;
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Async-signal-safe only. kill(-1) spares the caller itself.
    if (::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0) ::_exit(1);
    ::kill(-1, SIGKILL);
    ::_exit(0);
  }
  if (pid > 0) {
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

}  // namespace cellgate::kernel
