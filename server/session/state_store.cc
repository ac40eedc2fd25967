#include "server/session/state_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include <google/protobuf/util/time_util.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/common/unique_fd.h"
#include "server/common/write_all.h"
#include "server/obs/log.h"

namespace cellgate::session {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kFormat = 1;
constexpr absl::string_view kSuffix = ".state";

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status FsyncDirectory(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoError("cannot open", dir);
  if (::fsync(fd.get()) != 0) return ErrnoError("cannot fsync", dir);
  return absl::OkStatus();
}

// Writes `bytes` to `path`.tmp and renames it over `path`. With `sync`, the file is fsynced and
// closed before the rename; without, it is returned open, for the caller to fsync.
absl::StatusOr<UniqueFd> WriteTemporaryAndRename(const std::string& path,
                                                 const std::string& bytes, bool sync) {
  const std::string temporary = path + ".tmp";
  UniqueFd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (fd.get() < 0) return ErrnoError("cannot create", temporary);
  absl::Status status = absl::OkStatus();
  if (const int error = WriteAll(fd.get(), bytes); error != 0) {
    errno = error;
    status = ErrnoError("cannot write", temporary);
  }
  if (status.ok() && sync && ::fsync(fd.get()) != 0) {
    status = ErrnoError("cannot fsync", temporary);
  }
  if (status.ok() && sync && ::close(fd.Release()) != 0) {
    status = ErrnoError("cannot close", temporary);
  }
  if (status.ok() && ::rename(temporary.c_str(), path.c_str()) != 0) {
    status = ErrnoError("cannot rename to", path);
  }
  if (!status.ok()) {
    ::unlink(temporary.c_str());
    return status;
  }
  return fd;
}

}  // namespace

absl::StatusOr<int> StateStore::WriteAndRename(const std::string& path,
                                               const std::string& bytes) {
  absl::StatusOr<UniqueFd> fd = WriteTemporaryAndRename(path, bytes, /*sync=*/false);
  if (!fd.ok()) return fd.status();
  return fd->Release();
}

void StateStore::SyncWritten(std::vector<int> fds) {
  if (fds.empty()) return;
  for (int fd : fds) {
    UniqueFd owned(fd);
    if (::fsync(owned.get()) != 0) {
      obs::Log(obs::LogLevel::kError, "state_write_failed",
               {{"error", std::string(ErrnoError("cannot fsync", kernels_dir_).message())}});
    }
  }
  if (absl::Status status = FsyncDirectory(kernels_dir_); !status.ok()) {
    obs::Log(obs::LogLevel::kError, "state_write_failed",
             {{"error", std::string(status.message())}});
  }
}

absl::Status StateStore::WriteAtomically(const std::string& path, const std::string& bytes) {
  if (absl::StatusOr<UniqueFd> written = WriteTemporaryAndRename(path, bytes, /*sync=*/true);
      !written.ok()) {
    return written.status();
  }
  return FsyncDirectory(fs::path(path).parent_path().string());
}

absl::StatusOr<std::unique_ptr<StateStore>> StateStore::Open(Options options) {
  const std::string kernels_dir = absl::StrCat(options.dir, "/kernels");
  std::error_code error;
  fs::create_directories(kernels_dir, error);
  if (error) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--state-dir: cannot create ", kernels_dir, ": ", error.message(),
        " (pass a writable directory, or --state-dir= to keep nothing)"));
  }
  ::chmod(options.dir.c_str(), 0700);
  ::chmod(kernels_dir.c_str(), 0700);
  // Proves the directory can be written, with the same steps as a real write.
  const std::string probe = absl::StrCat(kernels_dir, "/.probe");
  if (absl::Status status = WriteAtomically(probe, "probe"); !status.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("--state-dir: ", status.message(),
                     " (pass a writable directory, or --state-dir= to keep nothing)"));
  }
  fs::remove(probe, error);
  return std::unique_ptr<StateStore>(new StateStore(std::move(options)));
}

StateStore::StateStore(Options options)
    : options_(std::move(options)), kernels_dir_(absl::StrCat(options_.dir, "/kernels")) {
  writer_ = std::thread([this] { WriterLoop(); });
}

StateStore::~StateStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  writer_.join();
}

std::string StateStore::PathFor(const std::string& kernel_id) const {
  return absl::StrCat(kernels_dir_, "/", kernel_id, kSuffix);
}

StateStore::Loaded StateStore::LoadAll() const {
  Loaded loaded;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(kernels_dir_, error)) {
    const std::string path = entry.path().string();
    const std::string name = entry.path().filename().string();
    if (absl::EndsWith(name, ".tmp")) {
      // A write the last gateway did not finish: the file it was replacing is intact.
      fs::remove(entry.path(), error);
      continue;
    }
    if (!absl::EndsWith(name, kSuffix)) continue;
    const std::string kernel_id = name.substr(0, name.size() - kSuffix.size());
    std::ifstream in(path, std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    internal::KernelState state;
    std::string problem;
    if (!in.good() && !in.eof()) {
      problem = "cannot be read";
    } else if (!state.ParseFromString(bytes.str())) {
      problem = "is not a kernel state file";
    } else if (state.format() != kFormat) {
      problem = absl::StrCat("has format ", state.format(), ", this server reads ", kFormat);
    } else if (state.kernel_id() != kernel_id) {
      problem = absl::StrCat("holds kernel '", state.kernel_id(), "', not '", kernel_id, "'");
    }
    if (problem.empty()) {
      loaded.kernels.push_back(std::move(state));
      continue;
    }
    const std::string aside = path + ".bad";
    fs::rename(path, aside, error);
    loaded.problems.push_back(absl::StrCat(path, " ", problem, "; moved to ", aside));
  }
  return loaded;
}

void StateStore::Register(const std::string& kernel_id, Snapshot snapshot) {
  absl::MutexLock lock(&mu_);
  snapshots_[kernel_id] = std::make_shared<Snapshot>(std::move(snapshot));
  changed_.insert(kernel_id);
  urgent_ = true;
}

void StateStore::MarkChanged(const std::string& kernel_id, bool urgent) {
  absl::MutexLock lock(&mu_);
  if (!snapshots_.contains(kernel_id)) return;
  changed_.insert(kernel_id);
  urgent_ = urgent_ || urgent;
}

void StateStore::AfterNextWrite(const std::string& kernel_id, absl::AnyInvocable<void()> then) {
  {
    absl::MutexLock lock(&mu_);
    if (snapshots_.contains(kernel_id)) {
      changed_.insert(kernel_id);
      urgent_ = true;
      waiting_[kernel_id].push_back(std::move(then));
      return;
    }
  }
  then();
}

void StateStore::Remove(const std::string& kernel_id) {
  std::vector<absl::AnyInvocable<void()>> waiting;
  {
    absl::MutexLock io_lock(&io_mu_);
    {
      absl::MutexLock lock(&mu_);
      snapshots_.erase(kernel_id);
      changed_.erase(kernel_id);
      if (auto it = waiting_.find(kernel_id); it != waiting_.end()) {
        waiting = std::move(it->second);
        waiting_.erase(it);
      }
    }
    std::error_code error;
    fs::remove(PathFor(kernel_id), error);
  }
  for (auto& then : waiting) then();
}

void StateStore::Flush() {
  absl::MutexLock lock(&mu_);
  flush_requested_ = true;
  const uint64_t target = passes_started_ + 1;
  auto written = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return passes_done_ >= target;
  };
  mu_.Await(absl::Condition(&written));
}

void StateStore::WriterLoop() {
  absl::Time last_pass_end = absl::InfinitePast();
  while (true) {
    std::set<std::string> batch;
    std::vector<absl::AnyInvocable<void()>> then;
    uint64_t pass = 0;
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !changed_.empty() || stopping_ || flush_requested_;
      };
      mu_.Await(absl::Condition(&has_work));
      // Coalesce: changes that are not urgent wait out the interval since the last pass.
      auto now_please = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return urgent_ || stopping_ || flush_requested_;
      };
      mu_.AwaitWithDeadline(absl::Condition(&now_please), last_pass_end + options_.write_interval);
      batch.swap(changed_);
      for (const std::string& kernel_id : batch) {
        auto it = waiting_.find(kernel_id);
        if (it == waiting_.end()) continue;
        for (auto& callback : it->second) then.push_back(std::move(callback));
        waiting_.erase(it);
      }
      urgent_ = false;
      flush_requested_ = false;
      pass = ++passes_started_;
      if (stopping_ && batch.empty()) {
        passes_done_ = pass;
        return;
      }
    }
    std::vector<int> unsynced = WriteKernels(batch);
    for (auto& callback : then) callback();
    SyncWritten(std::move(unsynced));
    last_pass_end = absl::Now();
    absl::MutexLock lock(&mu_);
    passes_done_ = pass;
  }
}

std::vector<int> StateStore::WriteKernels(const std::set<std::string>& kernel_ids) {
  std::vector<int> unsynced;
  for (const std::string& kernel_id : kernel_ids) {
    std::shared_ptr<Snapshot> snapshot;
    {
      absl::MutexLock lock(&mu_);
      auto it = snapshots_.find(kernel_id);
      if (it == snapshots_.end()) continue;
      snapshot = it->second;
    }
    std::optional<internal::KernelState> state = (*snapshot)();
    if (!state.has_value()) continue;
    state->set_format(kFormat);
    state->set_kernel_id(kernel_id);
    *state->mutable_written_at() =
        google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(absl::Now()));
    const std::string bytes = state->SerializeAsString();

    absl::MutexLock io_lock(&io_mu_);
    {
      absl::MutexLock lock(&mu_);
      if (!snapshots_.contains(kernel_id)) continue;  // removed meanwhile: stays removed
    }
    absl::Status status;
    if (options_.fsync_before_reply) {
      status = WriteAtomically(PathFor(kernel_id), bytes);
    } else if (absl::StatusOr<int> fd = WriteAndRename(PathFor(kernel_id), bytes); fd.ok()) {
      unsynced.push_back(*fd);
    } else {
      status = fd.status();
    }
    if (!status.ok()) {
      obs::Log(obs::LogLevel::kError, "state_write_failed",
               {{"kernel_id", kernel_id}, {"error", std::string(status.message())}});
    }
  }
  return unsynced;
}

}  // namespace cellgate::session
