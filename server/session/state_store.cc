#include "server/session/state_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <utility>

#include <google/protobuf/util/time_util.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/common/proto_wire.h"
#include "server/common/read_file.h"
#include "server/common/unique_fd.h"
#include "server/common/write_all.h"
#include "server/obs/log.h"
#include "server/session/state_journal.h"

namespace cellgate::session {
namespace {

// The snapshot's state with its notebook bytes merged into the `notebook` field (a field
// given twice is merged by the parser), and that size without serializing.
size_t SerializedSize(const StateStore::KernelSnapshot& snapshot) {
  const size_t notebook_bytes = snapshot.notebook_bytes.size();
  size_t size = snapshot.state.ByteSizeLong();
  if (notebook_bytes > 0) {
    size += common::LengthDelimitedHeaderSize(internal::KernelState::kNotebookFieldNumber,
                                              notebook_bytes) +
            notebook_bytes;
  }
  return size;
}

std::string Serialized(const StateStore::KernelSnapshot& snapshot) {
  std::string bytes = snapshot.state.SerializeAsString();
  if (!snapshot.notebook_bytes.empty()) {
    const int field = internal::KernelState::kNotebookFieldNumber;
    const size_t state_size = bytes.size();
    bytes.resize(state_size +
                 common::LengthDelimitedHeaderSize(field, snapshot.notebook_bytes.size()));
    common::WriteLengthDelimitedHeader(field, snapshot.notebook_bytes.size(),
                                       reinterpret_cast<uint8_t*>(bytes.data()) + state_size);
    bytes.append(snapshot.notebook_bytes);
  }
  return bytes;
}

namespace fs = std::filesystem;

constexpr uint32_t kFormat = 1;
constexpr absl::string_view kSuffix = ".state";
constexpr absl::string_view kJournalSuffix = ".journal";

// Never 0 (what a state file without a journal has), so every epoch serializes alike.
uint64_t NewJournalEpoch() {
  std::random_device random;
  uint64_t epoch = 0;
  while (epoch == 0) epoch = (static_cast<uint64_t>(random()) << 32) ^ random();
  return epoch;
}

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

void StateStore::SyncWritten(Pass& pass) {
  if (pass.unsynced.empty()) return;
  // Kernels a file of which did not reach the disk: their journals can't be trusted to follow
  // on from what is there, so their next write rewrites the state file.
  std::set<std::string> failed;
  for (const auto& [kernel_id, fd] : pass.unsynced) {
    UniqueFd owned(fd);
    if (::fsync(owned.get()) != 0) {
      obs::Log(obs::LogLevel::kError, "state_write_failed",
               {{"kernel_id", kernel_id},
                {"error", std::string(ErrnoError("cannot fsync", kernels_dir_).message())},
                {"then", "written again after the interval"}});
      failed.insert(kernel_id);
    }
  }
  pass.unsynced.clear();
  bool directory_synced = true;
  if (absl::Status status = FsyncDirectory(kernels_dir_); !status.ok()) {
    obs::Log(obs::LogLevel::kError, "state_write_failed",
             {{"error", std::string(status.message())}});
    directory_synced = false;  // the rewritten state files may not be on disk
  }
  absl::MutexLock io_lock(&io_mu_);
  for (const std::string& kernel_id : failed) journals_.erase(kernel_id);
  {
    absl::MutexLock lock(&mu_);
    RetryFailedLocked(failed);
  }
  if (!directory_synced) return;  // no journal starts: their next writes rewrite the files
  for (const Pass::JournalToStart& journal : pass.journals_to_start) {
    if (failed.contains(journal.kernel_id)) continue;
    {
      absl::MutexLock lock(&mu_);
      if (!snapshots_.contains(journal.kernel_id)) continue;  // removed meanwhile
    }
    StartJournalLocked(journal.kernel_id, journal.epoch, journal.max_bytes);
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

std::string StateStore::JournalPathFor(const std::string& kernel_id) const {
  return absl::StrCat(kernels_dir_, "/", kernel_id, kJournalSuffix);
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
    if (absl::EndsWith(name, kJournalSuffix)) {
      // A kernel removed between the deletions of its two files.
      const std::string id = name.substr(0, name.size() - kJournalSuffix.size());
      std::error_code state_error;
      if (!fs::exists(PathFor(id), state_error) && !state_error) fs::remove(entry.path(), error);
      continue;
    }
    if (!absl::EndsWith(name, kSuffix)) continue;
    const std::string kernel_id = name.substr(0, name.size() - kSuffix.size());
    absl::StatusOr<std::string> bytes = ReadWholeFile(path);
    internal::KernelState state;
    std::string problem;
    if (!bytes.ok()) {
      problem = "cannot be read";
    } else if (!state.ParseFromString(*bytes)) {
      problem = "is not a kernel state file";
    } else if (state.format() != kFormat) {
      problem = absl::StrCat("has format ", state.format(), ", this server reads ", kFormat);
    } else if (state.kernel_id() != kernel_id) {
      problem = absl::StrCat("holds kernel '", state.kernel_id(), "', not '", kernel_id, "'");
    }
    if (problem.empty() && state.journal_epoch() != 0) {
      // The journal's last whole record, when it goes with this file, is newer. A journal that
      // is there but can't be read may hold it: the kernel is set aside, not restored older.
      const absl::StatusOr<std::string> journal = ReadWholeFile(JournalPathFor(kernel_id));
      const std::optional<absl::string_view> record =
          journal.ok() ? LastJournalRecord(*journal, state.journal_epoch()) : std::nullopt;
      internal::KernelState newer;
      if (!journal.ok() && !absl::IsNotFound(journal.status())) {
        problem = absl::StrCat("has a journal that cannot be read (", journal.status().message(),
                               ")");
      } else if (record.has_value() &&
                 newer.ParseFromArray(record->data(), static_cast<int>(record->size())) &&
                 newer.format() == kFormat && newer.kernel_id() == kernel_id) {
        state = std::move(newer);
      } else if (record.has_value()) {
        problem = "has a journal whose last record is not its state";
      }
    }
    if (problem.empty()) {
      loaded.kernels.push_back(std::move(state));
      continue;
    }
    const std::string aside = path + ".bad";
    fs::rename(path, aside, error);
    if (fs::exists(JournalPathFor(kernel_id), error)) {
      fs::rename(JournalPathFor(kernel_id), JournalPathFor(kernel_id) + ".bad", error);
    }
    loaded.problems.push_back(absl::StrCat(path, " ", problem, "; moved to ", aside));
  }
  return loaded;
}

void StateStore::Register(const std::string& kernel_id, Snapshot snapshot) {
  absl::MutexLock lock(&mu_);
  snapshots_[kernel_id] = std::make_shared<Snapshot>(std::move(snapshot));
  written_change_.erase(kernel_id);  // a kernel numbers its changes from its start
  changed_.insert(kernel_id);
  urgent_ = true;
}

void StateStore::MarkChanged(const std::string& kernel_id, bool urgent) {
  absl::MutexLock lock(&mu_);
  if (!snapshots_.contains(kernel_id)) return;
  changed_.insert(kernel_id);
  urgent_ = urgent_ || urgent;
}

void StateStore::AfterWritten(const std::string& kernel_id, uint64_t change,
                              absl::AnyInvocable<void()> then) {
  {
    absl::MutexLock lock(&mu_);
    auto written = written_change_.find(kernel_id);
    // A write that included the change may have ended before the reply asks (an import's
    // reply is copied while its state is written): then it is answered without another.
    const bool written_already = written != written_change_.end() && written->second >= change;
    if (snapshots_.contains(kernel_id) && !written_already) {
      waiting_[kernel_id].push_back({change, std::move(then)});
      // A kernel being written is looked at again when the pass ends (TakeServedLocked).
      if (!writing_.contains(kernel_id)) {
        changed_.insert(kernel_id);
        urgent_ = true;
      }
      return;
    }
  }
  then();
}

void StateStore::Remove(const std::string& kernel_id) {
  std::vector<Waiter> waiting;
  {
    absl::MutexLock io_lock(&io_mu_);
    {
      absl::MutexLock lock(&mu_);
      snapshots_.erase(kernel_id);
      changed_.erase(kernel_id);
      written_change_.erase(kernel_id);
      if (auto it = waiting_.find(kernel_id); it != waiting_.end()) {
        waiting = std::move(it->second);
        waiting_.erase(it);
      }
    }
    journals_.erase(kernel_id);
    // The state file first: a journal left alone by a crash is deleted by the next LoadAll.
    std::error_code error;
    fs::remove(PathFor(kernel_id), error);
    fs::remove(JournalPathFor(kernel_id), error);
  }
  for (Waiter& waiter : waiting) waiter.then();
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
    uint64_t pass_number = 0;
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
      writing_ = batch;
      urgent_ = false;
      flush_requested_ = false;
      pass_number = ++passes_started_;
      if (stopping_ && batch.empty()) {
        passes_done_ = pass_number;
        return;
      }
    }
    Pass pass = WriteKernels(batch);
    std::vector<absl::AnyInvocable<void()>> served;
    {
      absl::MutexLock lock(&mu_);
      served = TakeServedLocked(batch, pass);
      RetryFailedLocked(pass.failed);
      writing_.clear();
    }
    for (auto& then : served) then();
    SyncWritten(pass);
    last_pass_end = absl::Now();
    absl::MutexLock lock(&mu_);
    passes_done_ = pass_number;
  }
}

void StateStore::RetryFailedLocked(const std::set<std::string>& failed) {
  for (const std::string& kernel_id : failed) {
    if (snapshots_.contains(kernel_id)) changed_.insert(kernel_id);
  }
}

std::vector<absl::AnyInvocable<void()>> StateStore::TakeServedLocked(
    const std::set<std::string>& batch, const Pass& pass) {
  std::vector<absl::AnyInvocable<void()>> served;
  for (const std::string& kernel_id : batch) {
    auto taken = pass.snapshot_taken.find(kernel_id);
    auto registration = snapshots_.find(kernel_id);
    // Removed and registered again under the same id while the pass wrote the one before: what
    // was written is not the kernel now registered, and answers none of its waiters.
    const bool other_registration = taken != pass.snapshot_taken.end() &&
                                    registration != snapshots_.end() &&
                                    registration->second != taken->second.source;
    if (taken != pass.snapshot_taken.end() && !pass.failed.contains(kernel_id) &&
        registration != snapshots_.end() && !other_registration) {
      uint64_t& through = written_change_[kernel_id];
      through = std::max(through, taken->second.change);
    }
    auto waiting = waiting_.find(kernel_id);
    if (waiting == waiting_.end()) continue;
    std::vector<Waiter> later;
    for (Waiter& waiter : waiting->second) {
      if (!other_registration &&
          (taken == pass.snapshot_taken.end() || waiter.change <= taken->second.change)) {
        served.push_back(std::move(waiter.then));
      } else {
        later.push_back(std::move(waiter));
      }
    }
    if (later.empty()) {
      waiting_.erase(waiting);
      continue;
    }
    // Changes made after the snapshot was taken: the next pass writes them.
    waiting->second = std::move(later);
    changed_.insert(kernel_id);
    urgent_ = true;
  }
  return served;
}

StateStore::Pass StateStore::WriteKernels(const std::set<std::string>& kernel_ids) {
  Pass pass;
  for (const std::string& kernel_id : kernel_ids) {
    std::shared_ptr<Snapshot> snapshot;
    {
      absl::MutexLock lock(&mu_);
      auto it = snapshots_.find(kernel_id);
      if (it == snapshots_.end()) continue;
      snapshot = it->second;
    }
    std::optional<KernelSnapshot> taken = (*snapshot)();
    if (!taken.has_value()) continue;
    internal::KernelState& state = taken->state;
    state.set_format(kFormat);
    state.set_kernel_id(kernel_id);
    *state.mutable_written_at() =
        google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(absl::Now()));

    absl::MutexLock io_lock(&io_mu_);
    {
      absl::MutexLock lock(&mu_);
      if (!snapshots_.contains(kernel_id)) continue;  // removed meanwhile: stays removed
    }
    // Written or failed (logged): either way what waited for this change is answered.
    pass.snapshot_taken[kernel_id] = {taken->change, snapshot};
    if (absl::Status status = WriteKernelLocked(kernel_id, *taken, pass); !status.ok()) {
      obs::Log(obs::LogLevel::kError, "state_write_failed",
               {{"kernel_id", kernel_id}, {"error", std::string(status.message())},
                {"then", "written again after the interval"}});
      pass.failed.insert(kernel_id);
    }
  }
  return pass;
}

absl::Status StateStore::WriteKernelLocked(const std::string& kernel_id, KernelSnapshot& snapshot,
                                           Pass& pass) {
  if (auto journal = journals_.find(kernel_id); journal != journals_.end()) {
    snapshot.state.set_journal_epoch(journal->second.epoch);
    // A fixed64: the size is the same whatever epoch the state gets below.
    const size_t record_bytes = kJournalRecordOverhead + SerializedSize(snapshot);
    if (journal->second.offset + record_bytes <= journal->second.max_bytes) {
      absl::Status appended = AppendToJournalLocked(kernel_id, Serialized(snapshot), pass);
      if (appended.ok()) return appended;
      obs::Log(obs::LogLevel::kWarning, "state_journal_failed",
               {{"kernel_id", kernel_id}, {"error", std::string(appended.message())},
                {"then", "the state file is rewritten"}});
    }
    journals_.erase(kernel_id);
  }
  return RewriteStateFileLocked(kernel_id, snapshot, pass);
}

absl::Status StateStore::AppendToJournalLocked(const std::string& kernel_id,
                                               const std::string& bytes, Pass& pass) {
  JournalEnd& journal = journals_.at(kernel_id);
  const std::string path = JournalPathFor(kernel_id);
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoError("cannot open", path);
  // At the end of the last whole record: over what a failed append may have left.
  if (::lseek(fd.get(), static_cast<off_t>(journal.offset), SEEK_SET) < 0) {
    return ErrnoError("cannot seek in", path);
  }
  const std::string record = EncodeJournalRecord(bytes);
  if (const int error = WriteAll(fd.get(), record); error != 0) {
    errno = error;
    return ErrnoError("cannot write", path);
  }
  if (options_.fsync_before_reply) {
    if (::fdatasync(fd.get()) != 0) return ErrnoError("cannot fdatasync", path);
  } else {
    pass.unsynced.emplace_back(kernel_id, fd.Release());
  }
  journal.offset += record.size();
  return absl::OkStatus();
}

absl::Status StateStore::RewriteStateFileLocked(const std::string& kernel_id,
                                                KernelSnapshot& snapshot, Pass& pass) {
  internal::KernelState& state = snapshot.state;
  state.set_journal_epoch(NewJournalEpoch());
  const std::string bytes = Serialized(snapshot);
  const size_t max_journal_bytes = MaxJournalBytesFor(bytes.size());
  // A journal only for a state whose like could be appended next time: one this big would
  // rewrite the state file again, and the journal's restart would be for nothing.
  const bool journaled =
      kJournalHeaderBytes + kJournalRecordOverhead + bytes.size() <= max_journal_bytes;
  const uint64_t epoch = state.journal_epoch();
  // The state file is on disk before its journal is emptied: the other way round, a crash in
  // between would lose the states in the journal.
  if (options_.fsync_before_reply) {
    if (absl::Status status = WriteAtomically(PathFor(kernel_id), bytes); !status.ok()) {
      return status;
    }
    if (journaled) StartJournalLocked(kernel_id, epoch, max_journal_bytes);
    return absl::OkStatus();
  }
  absl::StatusOr<int> fd = WriteAndRename(PathFor(kernel_id), bytes);
  if (!fd.ok()) return fd.status();
  pass.unsynced.emplace_back(kernel_id, *fd);
  if (journaled) pass.journals_to_start.push_back({kernel_id, epoch, max_journal_bytes});
  return absl::OkStatus();
}

size_t StateStore::MaxJournalBytesFor(size_t state_bytes) const {
  if (options_.max_journal_bytes == 0) return 0;
  return std::max(
      options_.max_journal_bytes,
      kJournalHeaderBytes + options_.journal_states * (kJournalRecordOverhead + state_bytes));
}

void StateStore::StartJournalLocked(const std::string& kernel_id, uint64_t epoch,
                                    size_t max_bytes) {
  const std::string path = JournalPathFor(kernel_id);
  absl::Status status = absl::OkStatus();
  bool created = false;
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
  if (fd.get() < 0 && errno == ENOENT) {
    fd = UniqueFd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    created = true;
  }
  if (fd.get() < 0) {
    status = ErrnoError("cannot create", path);
  } else if (const int error = WriteAll(fd.get(), EncodeJournalHeader(epoch)); error != 0) {
    errno = error;
    status = ErrnoError("cannot write", path);
  } else if (created) {
    // Its name on disk before a record in it is counted on (a record's fdatasync covers the
    // file's data, the header included, not the directory).
    status = FsyncDirectory(kernels_dir_);
  }
  if (!status.ok()) {
    obs::Log(obs::LogLevel::kWarning, "state_journal_failed",
             {{"kernel_id", kernel_id}, {"error", std::string(status.message())},
              {"then", "the state file is rewritten at each write"}});
    return;
  }
  journals_[kernel_id] = {epoch, kJournalHeaderBytes, max_bytes};
}

}  // namespace cellgate::session
