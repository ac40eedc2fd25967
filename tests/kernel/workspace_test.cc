// A kernel's workspace as clients see it: paths that stay inside, atomic uploads, caps, and
// the ways out (symbolic links, fifos, devices) refused.
#include "server/kernel/workspace.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellgate::kernel {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class WorkspaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/cgws-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    root_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  Workspace Make(int64_t max_file = 0, int64_t max_workspace = 0) {
    return Workspace({.root = root_, .max_file_bytes = max_file,
                      .max_workspace_bytes = max_workspace});
  }
  void Put(const std::string& path, const std::string& text) {
    std::filesystem::create_directories(std::filesystem::path(root_ + "/" + path).parent_path());
    std::ofstream(root_ + "/" + path) << text;
  }
  std::string Read(const std::string& path) {
    std::ifstream in(root_ + "/" + path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  absl::Status Upload(Workspace& workspace, const std::string& path, const std::string& text,
                      bool overwrite = false) {
    auto upload = workspace.BeginUpload(path, overwrite, 0);
    if (!upload.ok()) return upload.status();
    if (absl::Status status = (*upload)->Write(text); !status.ok()) return status;
    return (*upload)->Commit().status();
  }
  std::vector<std::string> Names() {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(root_)) {
      names.push_back(std::filesystem::relative(entry.path(), root_).string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  std::string root_;
};

TEST_F(WorkspaceTest, PathsMustStayInsideAndSpareTheGatewaysFiles) {
  for (const char* bad : {"", "/etc/passwd", "../x", "a/../../b", "a//b", "./a", "a/", "a/."}) {
    EXPECT_EQ(Workspace::CheckPath(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_THAT(Workspace::CheckPath("/etc/passwd").message(), HasSubstr("absolute"));
  for (const char* gateway : {".connection.json", ".zmq-1", "d/.cellgate-upload-0123"}) {
    EXPECT_EQ(Workspace::CheckPath(gateway).code(), absl::StatusCode::kPermissionDenied)
        << gateway;
  }
  for (const char* good : {"a", "data/sales.csv", ".hidden", "a b/c..d"}) {
    EXPECT_TRUE(Workspace::CheckPath(good).ok()) << good;
  }
  EXPECT_TRUE(Workspace::CheckPath("", /*may_be_root=*/true).ok());
}

TEST_F(WorkspaceTest, AnUploadAppearsUnderItsNameOnlyWhenCommitted) {
  Workspace workspace = Make();
  auto upload = workspace.BeginUpload("data/raw/sales.csv", /*overwrite=*/false, 0);
  ASSERT_TRUE(upload.ok()) << upload.status();
  ASSERT_TRUE((*upload)->Write("a,b\n").ok());
  ASSERT_TRUE((*upload)->Write("1,2\n").ok());
  EXPECT_FALSE(std::filesystem::exists(root_ + "/data/raw/sales.csv"));
  bool truncated = true;
  auto listed = workspace.List("", /*recursive=*/true, 100, &truncated);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2u) << "data, data/raw; not the temporary file";
  absl::StatusOr<WorkspaceEntry> entry = (*upload)->Commit();
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->path, "data/raw/sales.csv");
  EXPECT_EQ(entry->size, 8);
  EXPECT_EQ(Read("data/raw/sales.csv"), "a,b\n1,2\n");
  EXPECT_THAT(Names(), ElementsAre("data", "data/raw", "data/raw/sales.csv"));
}

TEST_F(WorkspaceTest, AnAbandonedUploadLeavesNothing) {
  Put("kept.txt", "old");
  Workspace workspace = Make();
  {
    auto upload = workspace.BeginUpload("kept.txt", /*overwrite=*/true, 0);
    ASSERT_TRUE(upload.ok()) << upload.status();
    ASSERT_TRUE((*upload)->Write("half of the new").ok());
  }  // the stream broke: no Commit
  EXPECT_EQ(Read("kept.txt"), "old");
  EXPECT_THAT(Names(), ElementsAre("kept.txt"));
}

TEST_F(WorkspaceTest, AnExistingFileIsReplacedOnlyWhenAsked) {
  Put("f.txt", "old");
  Workspace workspace = Make();
  EXPECT_EQ(Upload(workspace, "f.txt", "new").code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(Upload(workspace, "f.txt", "new", /*overwrite=*/true).ok());
  EXPECT_EQ(Read("f.txt"), "new");
  std::filesystem::create_directories(root_ + "/dir");
  EXPECT_EQ(Upload(workspace, "dir", "x", /*overwrite=*/true).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(WorkspaceTest, SymbolicLinksOutOfTheWorkspaceAreRefused) {
  std::filesystem::create_directory_symlink("/etc", root_ + "/etc-link");
  std::filesystem::create_symlink("/etc/hostname", root_ + "/hostname");
  std::filesystem::create_symlink("../", root_ + "/up");
  Put("inside.txt", "fine");
  std::filesystem::create_symlink("inside.txt", root_ + "/alias");
  Workspace workspace = Make();
  WorkspaceEntry info;
  EXPECT_EQ(workspace.OpenForReading("etc-link/passwd", &info).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(workspace.OpenForReading("hostname", &info).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Upload(workspace, "etc-link/evil", "x").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Upload(workspace, "up/escaped.txt", "x").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(root_).parent_path() /
                                       "escaped.txt"));
  bool truncated = false;
  EXPECT_EQ(workspace.List("etc-link", false, 10, &truncated).status().code(),
            absl::StatusCode::kPermissionDenied);
  // A link inside the workspace is followed; deleting a link removes the link only.
  EXPECT_TRUE(workspace.OpenForReading("alias", &info).ok());
  EXPECT_TRUE(workspace.Delete("hostname", false).ok());
  EXPECT_TRUE(std::filesystem::exists("/etc/hostname"));
  // A replaced file that is a link to outside is refused, not written through.
  EXPECT_EQ(Upload(workspace, "etc-link", "x", /*overwrite=*/true).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(WorkspaceTest, OnlyRegularFilesAreRead) {
  ASSERT_EQ(::mkfifo((root_ + "/pipe").c_str(), 0600), 0);
  std::filesystem::create_directory(root_ + "/dir");
  Workspace workspace = Make();
  WorkspaceEntry info;
  absl::StatusOr<UniqueFd> fifo = workspace.OpenForReading("pipe", &info);  // must not block
  EXPECT_EQ(fifo.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(fifo.status().message(), HasSubstr("a fifo"));
  EXPECT_EQ(workspace.OpenForReading("dir", &info).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(workspace.OpenForReading("missing", &info).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(Upload(workspace, "pipe", "x", /*overwrite=*/true).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(workspace.OpenForReading("/dev/null", &info).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(WorkspaceTest, CapsBoundAFileAndTheWorkspace) {
  Put("existing.bin", std::string(60, 'x'));
  Workspace per_file = Make(/*max_file=*/10);
  EXPECT_EQ(per_file.BeginUpload("big", false, 11).status().code(),
            absl::StatusCode::kResourceExhausted);
  auto upload = per_file.BeginUpload("big", false, 0);
  ASSERT_TRUE(upload.ok());
  EXPECT_TRUE((*upload)->Write(std::string(10, 'a')).ok());
  absl::Status over = (*upload)->Write("b");
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(over.message(), HasSubstr("10 bytes per file"));
  upload->reset();

  Workspace whole = Make(/*max_file=*/0, /*max_workspace=*/100);  // 60 used, 40 left
  EXPECT_EQ(whole.BeginUpload("more", false, 41).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(Upload(whole, "more", std::string(40, 'm')).ok());
  EXPECT_EQ(Upload(whole, "one-more", "z").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(whole.UsedBytes(), 100);
}

TEST_F(WorkspaceTest, TheSizeTheHeaderGaveIsHeldTo) {
  Workspace workspace = Make();
  auto upload = workspace.BeginUpload("f", false, 5);
  ASSERT_TRUE(upload.ok());
  ASSERT_TRUE((*upload)->Write("abc").ok());
  EXPECT_EQ((*upload)->Commit().status().code(), absl::StatusCode::kInvalidArgument);
  auto longer = workspace.BeginUpload("g", false, 2);
  ASSERT_TRUE(longer.ok());
  EXPECT_EQ((*longer)->Write("abc").code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(WorkspaceTest, ListingIsSortedAndLeavesTheGatewaysFilesOut) {
  Put("b.txt", "b");
  Put("a/x.txt", "xx");
  Put(".connection.json", "{\"key\": \"secret\"}");
  Workspace workspace = Make();
  bool truncated = true;
  auto flat = workspace.List("", false, 100, &truncated);
  ASSERT_TRUE(flat.ok());
  EXPECT_FALSE(truncated);
  std::vector<std::string> paths;
  for (const WorkspaceEntry& entry : *flat) paths.push_back(entry.path);
  EXPECT_THAT(paths, ElementsAre("a", "b.txt"));
  auto deep = workspace.List("", true, 100, &truncated);
  ASSERT_TRUE(deep.ok());
  ASSERT_EQ(deep->size(), 3u);
  EXPECT_EQ((*deep)[1].path, "a/x.txt");
  EXPECT_EQ((*deep)[1].size, 2);
  EXPECT_EQ((*deep)[0].kind, WorkspaceEntry::Kind::kDirectory);
  auto cut = workspace.List("", true, 2, &truncated);
  ASSERT_TRUE(cut.ok());
  EXPECT_TRUE(truncated);
  EXPECT_EQ(cut->size(), 2u);
  EXPECT_EQ(workspace.List("b.txt", false, 10, &truncated).status().code(),
            absl::StatusCode::kFailedPrecondition);
  WorkspaceEntry info;
  EXPECT_EQ(workspace.OpenForReading(".connection.json", &info).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(WorkspaceTest, DeletingADirectoryNeedsRecursiveUnlessEmpty) {
  Put("d/e/f.txt", "f");
  std::filesystem::create_directory(root_ + "/empty");
  Workspace workspace = Make();
  EXPECT_TRUE(workspace.Delete("empty", false).ok());
  EXPECT_EQ(workspace.Delete("d", false).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(workspace.Delete("d", true).ok());
  EXPECT_TRUE(Names().empty());
  EXPECT_EQ(workspace.Delete("d", true).code(), absl::StatusCode::kNotFound);
}

TEST_F(WorkspaceTest, WhatIsWrittenBelongsToTheKernelsUid) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give files away";
  constexpr int kUid = 54321;
  Workspace workspace({.root = root_, .uid = kUid, .gid = kUid});
  ASSERT_TRUE(Upload(workspace, "new/dir/file", "x").ok());
  for (const char* path : {"/new", "/new/dir", "/new/dir/file"}) {
    struct stat st;
    ASSERT_EQ(::stat((root_ + path).c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, static_cast<uid_t>(kUid)) << path;
  }
}

}  // namespace
}  // namespace cellgate::kernel
