#pragma once

// A kernel's workspace: its working directory, as clients read and write it (UploadFile,
// DownloadFile, ListFiles, DeleteFile). Every path is resolved with openat2(RESOLVE_BENEATH)
// from the directory, so neither "..", an absolute path nor a symbolic link (planted by the
// kernel's own code, say) reaches anything outside it, whatever happens to the tree meanwhile.
// Files are written with the kernel's uid. The gateway's own files in it (the connection file
// with the kernel's key, its sockets) are neither listed nor touched.
//
// Errors name the path: INVALID_ARGUMENT (malformed), NOT_FOUND, PERMISSION_DENIED (outside
// the directory, a gateway file, a fifo, socket or device), FAILED_PRECONDITION (not the kind
// of entry asked for: a directory for a file, a file for a directory),
// ALREADY_EXISTS, RESOURCE_EXHAUSTED (caps).
//
// Blocking file I/O: callers run it where that is fine (a gRPC callback thread, briefly).

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/common/unique_fd.h"

namespace cellgate::kernel {

struct WorkspaceEntry {
  enum class Kind { kFile, kDirectory, kSymlink, kOther };
  std::string path;  // relative, '/'-separated
  Kind kind = Kind::kFile;
  int64_t size = 0;  // files only
  absl::Time modified;
};

class Workspace {
 public:
  struct Options {
    std::string root;  // the kernel's working directory
    int uid = -1;      // owner of what is written; -1: the gateway's own
    int gid = -1;
    int64_t max_file_bytes = 0;       // 0: no cap
    int64_t max_workspace_bytes = 0;  // 0: no cap
  };

  explicit Workspace(Options options);

  // An upload in progress: bytes go to a temporary file beside the target, renamed into place
  // by Commit. Destroyed without Commit, it removes the temporary file.
  class Upload {
   public:
    ~Upload();
    Upload(const Upload&) = delete;
    Upload& operator=(const Upload&) = delete;

    absl::Status Write(absl::string_view bytes);
    // Renames the file into place and returns what it is now.
    absl::StatusOr<WorkspaceEntry> Commit();
    int64_t written() const { return written_; }

   private:
    friend class Workspace;
    Upload() = default;

    std::string path_;       // as the client gave it
    UniqueFd dir_;   // the target's directory
    std::string name_;       // the target's name in it
    std::string temp_name_;  // the temporary file's
    UniqueFd file_;
    bool overwrite_ = false;
    int64_t expected_size_ = 0;  // 0: unknown
    int64_t written_ = 0;
    int64_t max_bytes_ = -1;     // the file cap, or what the workspace cap leaves; -1: none
    std::string cap_name_;       // which cap max_bytes_ is
    bool committed_ = false;
  };

  // Checks the path and the caps against `size` (0 = unknown), creates missing parent
  // directories and the temporary file.
  absl::StatusOr<std::unique_ptr<Upload>> BeginUpload(const std::string& path, bool overwrite,
                                                      int64_t size) const;

  // Opens a regular file for reading; `info` gets what it is.
  absl::StatusOr<UniqueFd> OpenForReading(const std::string& path,
                                                  WorkspaceEntry* info) const;

  // The entries of a directory ("" = the root), sorted by path; `recursive`: and below.
  // At most `max_entries`; `truncated` says whether there were more.
  absl::StatusOr<std::vector<WorkspaceEntry>> List(const std::string& path, bool recursive,
                                                   size_t max_entries, bool* truncated) const;

  // Deletes a file, symlink or (empty, or with `recursive`) directory.
  absl::Status Delete(const std::string& path, bool recursive) const;

  // Bytes of the regular files in the workspace (what the workspace cap counts).
  int64_t UsedBytes() const;

  // For the gateway's own files (not client paths): moves the regular file `name` of the root
  // of `from` to the root of this workspace under the same name, owned by this workspace's uid,
  // mode 0600. The file is checked through the descriptor that is linked (a regular file with
  // one link, not a symlink), so a kernel cannot swap in something else. Returns its size.
  // FAILED_PRECONDITION when it is not such a file.
  absl::StatusOr<int64_t> TakeGatewayFile(const Workspace& from, const std::string& name) const;
  // Removes the gateway file `name` from the root, if there.
  void RemoveGatewayFile(const std::string& name) const;
  // A gateway file name: hidden from clients, refused to their paths.
  static bool IsGatewayName(absl::string_view name);

  // INVALID_ARGUMENT unless `path` is relative, '/'-separated, without empty, "." or ".."
  // components, at most 4096 bytes; PERMISSION_DENIED for the gateway's own files. `may_be_root`
  // lets "" name the root.
  static absl::Status CheckPath(absl::string_view path, bool may_be_root = false);

 private:
  // Opens `path` beneath the root (openat2 RESOLVE_BENEATH) with `flags`.
  absl::StatusOr<UniqueFd> OpenBeneath(const std::string& path, int flags,
                                               mode_t mode = 0) const;
  absl::Status MapErrno(int error, const std::string& path, absl::string_view doing) const;

  Options options_;
};

}  // namespace cellgate::kernel
