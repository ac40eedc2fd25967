#include "server/kernel/workspace.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/common/write_all.h"
#include "server/protocol/message.h"

namespace cellgate::kernel {
namespace {

constexpr size_t kMaxPathBytes = 4096;
constexpr absl::string_view kTempPrefix = ".cellgate-upload-";

// The gateway's files in a kernel's directory: the connection file (the kernel's key) and the
// ipc sockets.
bool IsGatewayFile(absl::string_view name) {
  return name == ".connection.json" || absl::StartsWith(name, ".zmq-") ||
         absl::StartsWith(name, ".cellgate-");
}

long OpenAt2(int dir, const char* path, int flags, mode_t mode) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags) | O_CLOEXEC;
  how.mode = (flags & O_CREAT) != 0 ? mode : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  long fd;
  do {
    fd = ::syscall(SYS_openat2, dir, path, &how, sizeof(how));
  } while (fd < 0 && errno == EAGAIN);  // a rename raced the lookup: look again
  return fd;
}

WorkspaceEntry::Kind KindOf(mode_t mode) {
  if (S_ISREG(mode)) return WorkspaceEntry::Kind::kFile;
  if (S_ISDIR(mode)) return WorkspaceEntry::Kind::kDirectory;
  if (S_ISLNK(mode)) return WorkspaceEntry::Kind::kSymlink;
  return WorkspaceEntry::Kind::kOther;
}

const char* KindWord(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a fifo";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

WorkspaceEntry EntryOf(std::string path, const struct stat& st) {
  WorkspaceEntry entry;
  entry.path = std::move(path);
  entry.kind = KindOf(st.st_mode);
  entry.size = S_ISREG(st.st_mode) ? st.st_size : 0;
  entry.modified = absl::TimeFromTimespec(st.st_mtim);
  return entry;
}

// Splits a checked path into its directory ("" for the root) and last component.
std::pair<std::string, std::string> SplitLast(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {"", path};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

// Fills `names` with the names in directory `dir` (an fd that stays open), without "." and
// "..". Returns 0 or an errno.
int EntryNames(int dir, std::vector<std::string>& names) {
  const int dup = ::fcntl(dir, F_DUPFD_CLOEXEC, 0);
  DIR* stream = dup < 0 ? nullptr : ::fdopendir(dup);
  if (stream == nullptr) {
    const int error = errno;
    if (dup >= 0) ::close(dup);
    return error;
  }
  while (dirent* entry = ::readdir(stream)) {
    const absl::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  ::closedir(stream);
  return 0;
}

// Removes everything in directory `dir` (an fd it owns), not following symlinks.
absl::Status RemoveContents(int dir, const std::string& path) {
  std::vector<std::string> names;
  if (const int error = EntryNames(dir, names); error != 0) {
    return absl::InternalError(absl::StrCat("cannot read ", path, ": ", std::strerror(error)));
  }
  for (const std::string& name : names) {
    struct stat st;
    if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      UniqueFd child(::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (child.get() < 0) {
        return absl::InternalError(
            absl::StrCat("cannot open ", path, "/", name, ": ", std::strerror(errno)));
      }
      if (absl::Status status = RemoveContents(child.get(), path + "/" + name); !status.ok()) {
        return status;
      }
    }
    if (::unlinkat(dir, name.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) != 0 &&
        errno != ENOENT) {
      return absl::InternalError(
          absl::StrCat("cannot delete ", path, "/", name, ": ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

Workspace::Workspace(Options options) : options_(std::move(options)) {}

absl::Status Workspace::CheckPath(absl::string_view path, bool may_be_root) {
  if (path.empty()) {
    if (may_be_root) return absl::OkStatus();
    return absl::InvalidArgumentError("path is empty");
  }
  if (path.size() > kMaxPathBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("path is ", path.size(), " bytes, over ", kMaxPathBytes));
  }
  if (path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError("path contains a NUL byte");
  }
  if (path.front() == '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "path \"", path, "\" is absolute: paths are relative to the kernel's working directory"));
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == "..") {
      return absl::InvalidArgumentError(absl::StrCat(
          "path \"", path, "\" has an empty, \".\" or \"..\" component: paths stay inside the "
          "kernel's working directory"));
    }
  }
  if (IsGatewayFile(path) || IsGatewayFile(SplitLast(std::string(path)).second)) {
    return absl::PermissionDeniedError(
        absl::StrCat("path \"", path, "\" is a file of the gateway's, not of the kernel's"));
  }
  return absl::OkStatus();
}

absl::Status Workspace::MapErrno(int error, const std::string& path,
                                 absl::string_view doing) const {
  const std::string shown = path.empty() ? "the working directory" : absl::StrCat("\"", path, "\"");
  switch (error) {
    case EXDEV:
    case ELOOP:
      return absl::PermissionDeniedError(absl::StrCat(
          "path ", shown, " leads outside the kernel's working directory (a symbolic link)"));
    case ENOENT:
      return absl::NotFoundError(absl::StrCat("no file or directory ", shown));
    case ENOTDIR:
      return absl::FailedPreconditionError(
          absl::StrCat("path ", shown, ": a part of it is not a directory"));
    case EISDIR:
      return absl::FailedPreconditionError(absl::StrCat("path ", shown, " is a directory"));
    case EEXIST:
      return absl::AlreadyExistsError(absl::StrCat("path ", shown, " exists"));
    case ENOTEMPTY:
      return absl::FailedPreconditionError(
          absl::StrCat("directory ", shown, " is not empty (recursive deletes it all)"));
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(absl::StrCat(doing, " ", shown, ": permission denied"));
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return absl::ResourceExhaustedError(
          absl::StrCat(doing, " ", shown, ": ", std::strerror(error)));
    default:
      return absl::InternalError(absl::StrCat(doing, " ", shown, ": ", std::strerror(error)));
  }
}

absl::StatusOr<UniqueFd> Workspace::OpenBeneath(const std::string& path, int flags,
                                                mode_t mode) const {
  UniqueFd root(::open(options_.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (root.get() < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the kernel's working directory is gone: ", std::strerror(errno)));
  }
  if (path.empty()) return root;
  const long fd = OpenAt2(root.get(), path.c_str(), flags, mode);
  if (fd < 0) return MapErrno(errno, path, "cannot open");
  return UniqueFd(static_cast<int>(fd));
}

absl::StatusOr<std::unique_ptr<Workspace::Upload>> Workspace::BeginUpload(
    const std::string& path, bool overwrite, int64_t size) const {
  if (absl::Status status = CheckPath(path); !status.ok()) return status;
  if (size < 0) return absl::InvalidArgumentError(absl::StrCat("size ", size, " is negative"));
  auto upload = std::unique_ptr<Upload>(new Upload());
  upload->path_ = path;
  upload->overwrite_ = overwrite;
  upload->expected_size_ = size;
  // What the caps leave for this file.
  int64_t room = options_.max_file_bytes > 0 ? options_.max_file_bytes : -1;  // -1: no cap
  upload->cap_name_ = absl::StrCat("the cap of ", options_.max_file_bytes, " bytes per file");
  if (options_.max_workspace_bytes > 0) {
    const int64_t left = std::max<int64_t>(0, options_.max_workspace_bytes - UsedBytes());
    if (room < 0 || left < room) {
      room = left;
      upload->cap_name_ = absl::StrCat("the ", left, " bytes left of the workspace cap of ",
                                       options_.max_workspace_bytes, " bytes");
    }
  }
  upload->max_bytes_ = room;
  if (room >= 0 && size > room) {
    return absl::ResourceExhaustedError(
        absl::StrCat("path \"", path, "\": ", size, " bytes exceed ", upload->cap_name_));
  }

  // The parent directories, created as needed, each opened beneath the root.
  auto [parent, name] = SplitLast(path);
  absl::StatusOr<UniqueFd> dir = OpenBeneath("", O_RDONLY | O_DIRECTORY);
  if (!dir.ok()) return dir.status();
  std::string walked;
  if (!parent.empty()) {
    for (absl::string_view part : absl::StrSplit(parent, '/')) {
      walked = walked.empty() ? std::string(part) : absl::StrCat(walked, "/", part);
      const std::string component(part);
      if (::mkdirat(dir->get(), component.c_str(), 0755) == 0) {
        if (options_.uid >= 0 &&
            ::fchownat(dir->get(), component.c_str(), options_.uid, options_.gid,
                       AT_SYMLINK_NOFOLLOW) != 0) {
          return MapErrno(errno, walked, "cannot create");
        }
      } else if (errno != EEXIST) {
        return MapErrno(errno, walked, "cannot create");
      }
      const long next = OpenAt2(dir->get(), component.c_str(), O_RDONLY | O_DIRECTORY, 0);
      if (next < 0) return MapErrno(errno, walked, "cannot open");
      *dir = UniqueFd(static_cast<int>(next));
    }
  }
  struct stat existing;
  if (::fstatat(dir->get(), name.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!overwrite) {
      return absl::AlreadyExistsError(
          absl::StrCat("path \"", path, "\" exists (overwrite replaces it)"));
    }
    if (!S_ISREG(existing.st_mode)) {
      return absl::Status(S_ISDIR(existing.st_mode) ? absl::StatusCode::kFailedPrecondition
                                                    : absl::StatusCode::kPermissionDenied,
                          absl::StrCat("path \"", path, "\" is ", KindWord(existing.st_mode),
                                       ": only a file is replaced"));
    }
  }
  upload->temp_name_ = absl::StrCat(kTempPrefix, protocol::NewMessageId());
  const int file = ::openat(dir->get(), upload->temp_name_.c_str(),
                            O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (file < 0) return MapErrno(errno, path, "cannot create");
  upload->file_ = UniqueFd(file);
  upload->dir_ = *std::move(dir);
  upload->name_ = std::move(name);
  if (options_.uid >= 0 && ::fchown(file, options_.uid, options_.gid) != 0) {
    return MapErrno(errno, path, "cannot create");  // the destructor removes the temp file
  }
  return upload;
}

Workspace::Upload::~Upload() {
  if (!committed_ && dir_.get() >= 0 && !temp_name_.empty()) {
    ::unlinkat(dir_.get(), temp_name_.c_str(), 0);
  }
}

absl::Status Workspace::Upload::Write(absl::string_view bytes) {
  if (committed_ || file_.get() < 0) {
    return absl::FailedPreconditionError("the upload is over");
  }
  const int64_t after = written_ + static_cast<int64_t>(bytes.size());
  if (expected_size_ > 0 && after > expected_size_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "path \"", path_, "\": more bytes than the ", expected_size_, " the header's size said"));
  }
  if (max_bytes_ >= 0 && after > max_bytes_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("path \"", path_, "\": more than ", cap_name_));
  }
  if (const int error = WriteAll(file_.get(), std::string_view(bytes.data(), bytes.size()));
      error != 0) {
    return absl::Status(error == ENOSPC || error == EDQUOT || error == EFBIG
                            ? absl::StatusCode::kResourceExhausted
                            : absl::StatusCode::kInternal,
                        absl::StrCat("writing \"", path_, "\": ", std::strerror(error)));
  }
  written_ = after;
  return absl::OkStatus();
}

absl::StatusOr<WorkspaceEntry> Workspace::Upload::Commit() {
  if (committed_ || file_.get() < 0) return absl::FailedPreconditionError("the upload is over");
  if (expected_size_ > 0 && written_ != expected_size_) {
    return absl::InvalidArgumentError(absl::StrCat("path \"", path_, "\": ", written_,
                                                   " bytes arrived, the header's size said ",
                                                   expected_size_));
  }
  struct stat st;
  if (::fstat(file_.get(), &st) != 0) {
    return absl::InternalError(absl::StrCat("stat \"", path_, "\": ", std::strerror(errno)));
  }
  file_.Reset();
  const unsigned flags = overwrite_ ? 0 : RENAME_NOREPLACE;
  if (::renameat2(dir_.get(), temp_name_.c_str(), dir_.get(), name_.c_str(), flags) != 0) {
    const int error = errno;
    if (error == EEXIST) {
      return absl::AlreadyExistsError(
          absl::StrCat("path \"", path_, "\" exists (overwrite replaces it)"));
    }
    if (error == EISDIR) {
      return absl::FailedPreconditionError(
          absl::StrCat("path \"", path_, "\" is a directory: only a file is replaced"));
    }
    return absl::InternalError(
        absl::StrCat("cannot move \"", path_, "\" into place: ", std::strerror(error)));
  }
  committed_ = true;
  return EntryOf(path_, st);
}

absl::StatusOr<UniqueFd> Workspace::OpenForReading(const std::string& path,
                                                   WorkspaceEntry* info) const {
  if (absl::Status status = CheckPath(path); !status.ok()) return status;
  // O_NONBLOCK: opening a fifo must not wait for a writer.
  absl::StatusOr<UniqueFd> fd = OpenBeneath(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  if (!fd.ok()) return fd.status();
  struct stat st;
  if (::fstat(fd->get(), &st) != 0) return MapErrno(errno, path, "cannot read");
  if (!S_ISREG(st.st_mode)) {
    // A directory is the wrong kind of entry; a fifo, socket or device is never served.
    return absl::Status(S_ISDIR(st.st_mode) ? absl::StatusCode::kFailedPrecondition
                                           : absl::StatusCode::kPermissionDenied,
                        absl::StrCat("path \"", path, "\" is ", KindWord(st.st_mode),
                                     ", not a file: only regular files are read"));
  }
  ::fcntl(fd->get(), F_SETFL, 0);  // blocking reads again
  if (info != nullptr) *info = EntryOf(path, st);
  return fd;
}

absl::StatusOr<std::vector<WorkspaceEntry>> Workspace::List(const std::string& path,
                                                            bool recursive, size_t max_entries,
                                                            bool* truncated) const {
  if (absl::Status status = CheckPath(path, /*may_be_root=*/true); !status.ok()) return status;
  absl::StatusOr<UniqueFd> top = OpenBeneath(path, O_RDONLY | O_DIRECTORY);
  if (!top.ok()) {
    if (top.status().code() == absl::StatusCode::kFailedPrecondition && !path.empty()) {
      return absl::FailedPreconditionError(absl::StrCat("path \"", path, "\" is not a directory"));
    }
    return top.status();
  }
  std::vector<WorkspaceEntry> entries;
  *truncated = false;
  // (directory fd, its path) still to read.
  std::vector<std::pair<UniqueFd, std::string>> pending;
  pending.emplace_back(*std::move(top), path);
  while (!pending.empty() && !*truncated) {
    auto [dir, dir_path] = std::move(pending.back());
    pending.pop_back();
    std::vector<std::string> names;
    if (const int error = EntryNames(dir.get(), names); error != 0) {
      return MapErrno(error, dir_path, "cannot list");
    }
    for (const std::string& name : names) {
      if (dir_path.empty() && IsGatewayFile(name)) continue;
      if (absl::StartsWith(name, kTempPrefix)) continue;
      struct stat st;
      if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      if (entries.size() == max_entries) {
        *truncated = true;
        break;
      }
      const std::string child = dir_path.empty() ? name : absl::StrCat(dir_path, "/", name);
      entries.push_back(EntryOf(child, st));
      if (recursive && S_ISDIR(st.st_mode)) {
        const int sub = ::openat(dir.get(), name.c_str(),
                                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub >= 0) pending.emplace_back(UniqueFd(sub), child);
      }
    }
  }
  std::sort(entries.begin(), entries.end(),
            [](const WorkspaceEntry& a, const WorkspaceEntry& b) { return a.path < b.path; });
  return entries;
}

absl::Status Workspace::Delete(const std::string& path, bool recursive) const {
  if (absl::Status status = CheckPath(path); !status.ok()) return status;
  auto [parent, name] = SplitLast(path);
  absl::StatusOr<UniqueFd> dir = OpenBeneath(parent, O_RDONLY | O_DIRECTORY);
  if (!dir.ok()) return dir.status();
  struct stat st;
  if (::fstatat(dir->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return MapErrno(errno, path, "cannot delete");
  }
  if (S_ISDIR(st.st_mode)) {
    if (recursive) {
      UniqueFd target(
          ::openat(dir->get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (target.get() < 0) return MapErrno(errno, path, "cannot delete");
      if (absl::Status status = RemoveContents(target.get(), path); !status.ok()) return status;
    }
    if (::unlinkat(dir->get(), name.c_str(), AT_REMOVEDIR) != 0) {
      return MapErrno(errno, path, "cannot delete");
    }
    return absl::OkStatus();
  }
  if (::unlinkat(dir->get(), name.c_str(), 0) != 0) return MapErrno(errno, path, "cannot delete");
  return absl::OkStatus();
}

int64_t Workspace::UsedBytes() const {
  bool truncated = false;
  absl::StatusOr<std::vector<WorkspaceEntry>> entries =
      List("", /*recursive=*/true, /*max_entries=*/1'000'000, &truncated);
  if (!entries.ok()) return 0;
  int64_t used = 0;
  for (const WorkspaceEntry& entry : *entries) used += entry.size;
  return used;
}

bool Workspace::IsGatewayName(absl::string_view name) { return IsGatewayFile(name); }

absl::StatusOr<int64_t> Workspace::TakeGatewayFile(const Workspace& from,
                                                   const std::string& name) const {
  absl::StatusOr<UniqueFd> from_root = from.OpenBeneath("", O_RDONLY | O_DIRECTORY);
  if (!from_root.ok()) return from_root.status();
  absl::StatusOr<UniqueFd> to_root = OpenBeneath("", O_RDONLY | O_DIRECTORY);
  if (!to_root.ok()) return to_root.status();
  UniqueFd file(::openat(from_root->get(), name.c_str(),
                         O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (file.get() < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the source kernel's ", name, " is not there: ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(file.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
      (from.options_.uid >= 0 && st.st_uid != static_cast<uid_t>(from.options_.uid))) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the source kernel's ", name, " is not a file of its own with a single link"));
  }
  ::unlinkat(to_root->get(), name.c_str(), 0);
  // Links the very inode checked above (AT_EMPTY_PATH: the descriptor, not a name).
  if (::linkat(file.get(), "", to_root->get(), name.c_str(), AT_EMPTY_PATH) != 0) {
    if (errno != EXDEV && errno != ENOENT && errno != EPERM) {
      return absl::InternalError(absl::StrCat("cannot link ", name, ": ", std::strerror(errno)));
    }
    // Not on the same filesystem (or no CAP_DAC_READ_SEARCH): copy it.
    UniqueFd copy(::openat(to_root->get(), name.c_str(),
                           O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (copy.get() < 0) {
      return absl::InternalError(absl::StrCat("cannot create ", name, ": ", std::strerror(errno)));
    }
    char buffer[1 << 16];
    ssize_t n;
    while ((n = ::read(file.get(), buffer, sizeof(buffer))) > 0) {
      if (const int error = WriteAll(copy.get(), std::string_view(buffer, static_cast<size_t>(n))); error != 0) {
        ::unlinkat(to_root->get(), name.c_str(), 0);
        return absl::ResourceExhaustedError(
            absl::StrCat("cannot copy ", name, ": ", std::strerror(error)));
      }
    }
    file = std::move(copy);
  }
  ::unlinkat(from_root->get(), name.c_str(), 0);
  if (options_.uid >= 0 && ::fchown(file.get(), options_.uid, options_.gid) != 0) {
    ::unlinkat(to_root->get(), name.c_str(), 0);
    return absl::InternalError(absl::StrCat("cannot chown ", name, ": ", std::strerror(errno)));
  }
  ::fchmod(file.get(), 0600);
  return static_cast<int64_t>(st.st_size);
}

void Workspace::RemoveGatewayFile(const std::string& name) const {
  absl::StatusOr<UniqueFd> root = OpenBeneath("", O_RDONLY | O_DIRECTORY);
  if (root.ok()) ::unlinkat(root->get(), name.c_str(), 0);
}

}  // namespace cellgate::kernel
