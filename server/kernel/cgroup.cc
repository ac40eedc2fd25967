#include "server/kernel/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace cellgate::kernel {
namespace {

constexpr long kCgroup2Magic = 0x63677270;  // CGROUP2_SUPER_MAGIC
constexpr long kCgroup1Magic = 0x27e0eb;    // CGROUP_SUPER_MAGIC

std::optional<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return std::nullopt;
  std::ostringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

absl::Status WriteValue(const std::string& path, const std::string& value) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  const ssize_t written = ::write(fd, value.data(), value.size());
  const int error = errno;
  ::close(fd);
  if (written != static_cast<ssize_t>(value.size())) {
    return absl::FailedPreconditionError(absl::StrCat("cannot write '", value, "' to ", path,
                                                      ": ", std::strerror(error)));
  }
  return absl::OkStatus();
}

absl::Status MakeDirectory(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create cgroup ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

bool IsFilesystem(const std::string& path, long magic) {
  struct statfs info {};
  return ::statfs(path.c_str(), &info) == 0 && static_cast<long>(info.f_type) == magic;
}

// The gateway's cgroup path in the v2 hierarchy ("0::/path"), or in the v1 hierarchy of
// `controller` ("N:a,b:/path"), from /proc/self/cgroup.
std::optional<std::string> OwnCgroupPath(const std::string& self_cgroup,
                                         const std::string& controller) {
  for (absl::string_view line : absl::StrSplit(self_cgroup, '\n', absl::SkipEmpty())) {
    std::vector<std::string> fields = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (fields.size() != 3) continue;
    if (controller.empty() ? fields[0] == "0" && fields[1].empty()
                           : [&] {
                               for (absl::string_view name : absl::StrSplit(fields[1], ',')) {
                                 if (name == controller) return true;
                               }
                               return false;
                             }()) {
      return fields[2];
    }
  }
  return std::nullopt;
}

std::string JoinPath(const std::string& root, const std::string& path) {
  if (path.empty() || path == "/") return root;
  return absl::StrCat(root, path[0] == '/' ? "" : "/", path);
}

std::vector<pid_t> ProcsOf(const std::string& dir) {
  std::vector<pid_t> pids;
  const std::optional<std::string> procs = ReadWholeFile(dir + "/cgroup.procs");
  if (!procs) return pids;
  for (absl::string_view line : absl::StrSplit(*procs, '\n', absl::SkipEmpty())) {
    pid_t pid = 0;
    if (absl::SimpleAtoi(line, &pid) && pid > 0) pids.push_back(pid);
  }
  return pids;
}

// Kills what is left in a cgroup and removes it.
void KillAndRemoveCgroup(const std::string& dir) {
  for (int pass = 0; pass < 16; ++pass) {
    const std::vector<pid_t> pids = ProcsOf(dir);
    if (pids.empty()) break;
    for (pid_t pid : pids) ::kill(pid, SIGKILL);
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(1);
  while (::rmdir(dir.c_str()) != 0 && errno == EBUSY && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));  // bounded retry while the kill lands
  }
}

constexpr char kParentPrefix[] = "cellgate-";
constexpr char kKeptParentPrefix[] = "cellgate-keep-";

void RemoveLeftoverKernelCgroups(const std::string& parent) {
  std::error_code error;
  for (std::filesystem::directory_iterator it(parent, error);
       !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    if (it->is_directory() && absl::StartsWith(it->path().filename().string(), "kernel-")) {
      KillAndRemoveCgroup(it->path().string());
    }
  }
}

// v1 parents are per gateway: cellgate-<pid>, or cellgate-keep-<pid> for one whose kernels
// outlive it. Those of gateways that no longer run (killed without a chance to clean up) go,
// with whatever their kernels left; but a kept parent holds kernels a later gateway re-attaches:
// it goes only once they have ended, and nothing in it is killed.
void RemoveParentsOfGoneGateways(const std::string& dir, int gateway_pid) {
  std::error_code error;
  for (std::filesystem::directory_iterator it(dir, error);
       !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    const std::string name = it->path().filename().string();
    const bool kept = absl::StartsWith(name, kKeptParentPrefix);
    const size_t pid_at = kept ? std::strlen(kKeptParentPrefix) : std::strlen(kParentPrefix);
    int pid = 0;
    if (!absl::StartsWith(name, kParentPrefix) || !absl::SimpleAtoi(name.substr(pid_at), &pid) ||
        pid == gateway_pid) {
      continue;
    }
    const std::optional<std::string> comm = ReadWholeFile(absl::StrCat("/proc/", pid, "/comm"));
    if (comm && absl::StartsWith(*comm, "cellgate")) continue;  // still running
    if (kept) {
      // A kernel cgroup with processes in it can't be removed: it stays, and so does its parent.
      for (std::filesystem::directory_iterator kernel(it->path(), error);
           !error && kernel != std::filesystem::directory_iterator(); kernel.increment(error)) {
        if (kernel->is_directory()) ::rmdir(kernel->path().c_str());
      }
    } else {
      RemoveLeftoverKernelCgroups(it->path().string());
    }
    ::rmdir(it->path().c_str());
  }
}

absl::StatusOr<std::unique_ptr<CgroupManager>> Unusable(const std::string& why) {
  return absl::FailedPreconditionError(why);
}

}  // namespace

int64_t CgroupKeyedValue(const std::string& contents, const std::string& key) {
  for (absl::string_view line : absl::StrSplit(contents, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> field = absl::StrSplit(line, ' ');
    int64_t value = 0;
    if (field.first == key && absl::SimpleAtoi(field.second, &value)) return value;
  }
  return 0;
}

CgroupManager::CgroupManager(CgroupVersion version, std::vector<std::string> parents,
                             std::vector<std::string> created)
    : version_(version), parents_(std::move(parents)), created_(std::move(created)) {}

absl::StatusOr<std::unique_ptr<CgroupManager>> CgroupManager::Detect(const Options& options) {
  const std::optional<std::string> self_cgroup = ReadWholeFile(options.self_cgroup_file);
  if (!self_cgroup) return Unusable("cannot read " + options.self_cgroup_file);
  const int gateway_pid = options.gateway_pid > 0 ? options.gateway_pid : ::getpid();
  std::vector<std::string> v2_problems;

  // cgroup v2: the unified hierarchy at the mount root.
  const std::optional<std::string> own = OwnCgroupPath(*self_cgroup, "");
  if (options.check_filesystem && !IsFilesystem(options.mount_root, kCgroup2Magic)) {
    v2_problems.push_back(options.mount_root + " is not a cgroup2 mount");
  } else if (!own) {
    v2_problems.push_back("no cgroup v2 entry in " + options.self_cgroup_file);
  } else {
    const std::string base = JoinPath(options.mount_root, *own);
    const std::string controllers =
        ReadWholeFile(base + "/cgroup.controllers").value_or("");
    const std::vector<std::string> offered = absl::StrSplit(controllers, absl::ByAnyChar(" \n"),
                                                            absl::SkipEmpty());
    auto offers = [&](const char* name) {
      return std::find(offered.begin(), offered.end(), name) != offered.end();
    };
    if (!offers("memory") || !offers("pids")) {
      v2_problems.push_back(absl::StrCat("the gateway's cgroup ", base,
                                         " does not offer memory and pids (cgroup.controllers: '",
                                         absl::StrJoin(offered, " "), "')"));
    } else {
      // Processes may live only in leaves once controllers are enabled below: the gateway
      // moves into <own>/gateway, then enables memory and pids for its children.
      const std::string leaf = base + "/gateway";
      absl::Status status = MakeDirectory(leaf);
      if (status.ok()) status = WriteValue(leaf + "/cgroup.procs", absl::StrCat(gateway_pid));
      if (status.ok()) status = WriteValue(base + "/cgroup.subtree_control", "+memory +pids");
      if (status.ok()) {
        // Of an earlier gateway in this cgroup.
        if (!options.keep_leftover_kernels) RemoveLeftoverKernelCgroups(base);
        return std::unique_ptr<CgroupManager>(
            new CgroupManager(CgroupVersion::kV2, {base}, {}));
      }
      v2_problems.push_back(absl::StrCat(
          status.message(),
          " (the gateway's cgroup must be delegated to it and hold no other process)"));
    }
  }

  // cgroup v1: writable memory and pids hierarchies.
  const std::optional<std::string> memory_path = OwnCgroupPath(*self_cgroup, "memory");
  const std::optional<std::string> pids_path = OwnCgroupPath(*self_cgroup, "pids");
  const std::string v2_why = absl::StrJoin(v2_problems, "; ");
  if (!memory_path || !pids_path) {
    return Unusable(absl::StrCat(v2_why, "; no cgroup v1 memory and pids hierarchies either"));
  }
  const std::string memory_root = options.mount_root + "/memory";
  const std::string pids_root = options.mount_root + "/pids";
  if (options.check_filesystem &&
      (!IsFilesystem(memory_root, kCgroup1Magic) || !IsFilesystem(pids_root, kCgroup1Magic))) {
    return Unusable(absl::StrCat(v2_why, "; ", memory_root, " and ", pids_root,
                                 " are not both cgroup v1 mounts"));
  }
  const std::string name = absl::StrCat(
      "/", options.keep_leftover_kernels ? kKeptParentPrefix : kParentPrefix, gateway_pid);
  const std::string memory_parent = JoinPath(memory_root, *memory_path) + name;
  const std::string pids_parent = JoinPath(pids_root, *pids_path) + name;
  RemoveParentsOfGoneGateways(JoinPath(memory_root, *memory_path), gateway_pid);
  RemoveParentsOfGoneGateways(JoinPath(pids_root, *pids_path), gateway_pid);
  for (const std::string& dir : {memory_parent, pids_parent}) {
    if (absl::Status status = MakeDirectory(dir); !status.ok()) {
      return Unusable(absl::StrCat(v2_why, "; cgroup v1: ", status.message()));
    }
  }
  return std::unique_ptr<CgroupManager>(new CgroupManager(
      CgroupVersion::kV1, {memory_parent, pids_parent}, {pids_parent, memory_parent}));
}

CgroupManager::~CgroupManager() {
  for (const std::string& dir : created_) ::rmdir(dir.c_str());
}

std::string CgroupManager::Describe() const {
  return version_ == CgroupVersion::kV2
             ? absl::StrCat("cgroup v2 under ", parents_[0],
                            ": per-kernel memory.max, memory.swap.max=0, pids.max")
             : absl::StrCat("cgroup v1 under ", absl::StrJoin(parents_, " and "),
                            ": per-kernel memory limit (no swap) and pids.max");
}

absl::StatusOr<std::unique_ptr<KernelCgroup>> CgroupManager::Create(const std::string& name,
                                                                    const CgroupLimits& limits) {
  std::vector<std::string> dirs;
  for (const std::string& parent : parents_) dirs.push_back(absl::StrCat(parent, "/kernel-", name));
  std::unique_ptr<KernelCgroup> cgroup(new KernelCgroup(version_, dirs, limits));
  for (const std::string& dir : dirs) {
    if (absl::Status status = MakeDirectory(dir); !status.ok()) return status;
  }
  cgroup->KillAll();  // a leftover of an earlier gateway with the same name
  const std::string memory = absl::StrCat(limits.memory_bytes);
  const std::string pids = absl::StrCat(limits.max_processes);
  absl::Status status;
  if (version_ == CgroupVersion::kV2) {
    if (limits.memory_bytes > 0) status.Update(WriteValue(dirs[0] + "/memory.max", memory));
    // Without swap accounting the file is missing, and there is no swap to bound.
    if (::access((dirs[0] + "/memory.swap.max").c_str(), F_OK) == 0) {
      status.Update(WriteValue(dirs[0] + "/memory.swap.max", "0"));
    }
    if (limits.max_processes > 0) status.Update(WriteValue(dirs[0] + "/pids.max", pids));
  } else {
    if (limits.memory_bytes > 0) {
      status.Update(WriteValue(dirs[0] + "/memory.limit_in_bytes", memory));
      // memory+swap no higher than memory: no swap. Missing without swap accounting.
      if (::access((dirs[0] + "/memory.memsw.limit_in_bytes").c_str(), F_OK) == 0) {
        status.Update(WriteValue(dirs[0] + "/memory.memsw.limit_in_bytes", memory));
      }
    }
    if (limits.max_processes > 0) status.Update(WriteValue(dirs[1] + "/pids.max", pids));
  }
  if (!status.ok()) return status;
  for (const std::string& dir : dirs) {
    const std::string path = dir + "/cgroup.procs";
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
    }
    cgroup->procs_fds_.push_back(fd);
  }
  return cgroup;
}

absl::StatusOr<std::unique_ptr<KernelCgroup>> CgroupManager::Adopt(
    const std::vector<std::string>& dirs, const CgroupLimits& limits) {
  if (dirs.size() != parents_.size()) {
    return absl::NotFoundError(absl::StrCat("cgroup of ", dirs.size(), " directories, not ",
                                            parents_.size(), " as in this hierarchy"));
  }
  for (const std::string& dir : dirs) {
    struct stat info;
    if (::stat(dir.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
      return absl::NotFoundError(absl::StrCat("cgroup ", dir, " is gone"));
    }
  }
  return std::unique_ptr<KernelCgroup>(new KernelCgroup(version_, dirs, limits));
}

KernelCgroup::KernelCgroup(CgroupVersion version, std::vector<std::string> dirs,
                           CgroupLimits limits)
    : version_(version), dirs_(std::move(dirs)), limits_(limits) {}

KernelCgroup::~KernelCgroup() {
  CloseProcsFds();
  KillAll();
  for (const std::string& dir : dirs_) KillAndRemoveCgroup(dir);
}

void KernelCgroup::Release() {
  CloseProcsFds();
  dirs_.clear();
}

void KernelCgroup::CloseProcsFds() {
  for (int fd : procs_fds_) ::close(fd);
  procs_fds_.clear();
}

int64_t KernelCgroup::OomKills() const {
  if (dirs_.empty()) return 0;
  const std::string file =
      dirs_[0] + (version_ == CgroupVersion::kV2 ? "/memory.events" : "/memory.oom_control");
  return CgroupKeyedValue(ReadWholeFile(file).value_or(""), "oom_kill");
}

void KernelCgroup::KillAll() const {
  if (dirs_.empty()) return;
  if (version_ == CgroupVersion::kV2 && ::access((dirs_[0] + "/cgroup.kill").c_str(), F_OK) == 0 &&
      WriteValue(dirs_[0] + "/cgroup.kill", "1").ok()) {
    return;
  }
  for (int pass = 0; pass < 16; ++pass) {
    bool found = false;
    for (const std::string& dir : dirs_) {
      for (pid_t pid : ProcsOf(dir)) {
        found = true;
        ::kill(pid, SIGKILL);
      }
    }
    if (!found) return;
  }
}

}  // namespace cellgate::kernel
