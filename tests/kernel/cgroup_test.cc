// CgroupManager against a directory laid out like a cgroup mount (the files a real hierarchy
// has are written by the tests), so that detection and the files written are checked on any
// host. The fault suite checks real cgroups where the host has a writable hierarchy.

#include "server/kernel/cgroup.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellgate::kernel {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr int kGatewayPid = 4242;  // written to files only: no process is signalled

class CgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/cgroup-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    root_ = pattern;
  }
  void TearDown() override {
    std::error_code error;
    fs::remove_all(root_, error);
  }

  void Write(const std::string& relative, const std::string& contents) {
    fs::create_directories(fs::path(root_ + "/" + relative).parent_path());
    std::ofstream(root_ + "/" + relative) << contents;
  }
  std::string Read(const std::string& relative) {
    std::ifstream file(root_ + "/" + relative);
    std::stringstream contents;
    contents << file.rdbuf();
    return contents.str();
  }
  bool Exists(const std::string& relative) { return fs::exists(root_ + "/" + relative); }

  CgroupManager::Options Options(const std::string& self_cgroup) {
    Write("self_cgroup", self_cgroup);
    return {.mount_root = root_ + "/mnt",
            .self_cgroup_file = root_ + "/self_cgroup",
            .check_filesystem = false,
            .gateway_pid = kGatewayPid};
  }

  std::string root_;
};

TEST_F(CgroupTest, V2MovesTheGatewayIntoALeafAndEnablesTheControllers) {
  Write("mnt/svc/cgroup.controllers", "cpu io memory pids\n");
  absl::StatusOr<std::unique_ptr<CgroupManager>> manager =
      CgroupManager::Detect(Options("0::/svc\n"));
  ASSERT_TRUE(manager.ok()) << manager.status();
  EXPECT_EQ((*manager)->version(), CgroupVersion::kV2);
  EXPECT_EQ(Read("mnt/svc/gateway/cgroup.procs"), "4242");
  EXPECT_EQ(Read("mnt/svc/cgroup.subtree_control"), "+memory +pids");
  EXPECT_THAT((*manager)->Describe(), HasSubstr("cgroup v2 under " + root_ + "/mnt/svc"));
}

TEST_F(CgroupTest, V2KernelCgroupGetsItsLimitsAndCountsOomKills) {
  Write("mnt/svc/cgroup.controllers", "memory pids\n");
  absl::StatusOr<std::unique_ptr<CgroupManager>> manager =
      CgroupManager::Detect(Options("0::/svc\n"));
  ASSERT_TRUE(manager.ok()) << manager.status();
  Write("mnt/svc/kernel-k1/memory.swap.max", "max\n");  // present with swap accounting
  absl::StatusOr<std::unique_ptr<KernelCgroup>> cgroup =
      (*manager)->Create("k1", {.memory_bytes = 256 << 20, .max_processes = 64});
  ASSERT_TRUE(cgroup.ok()) << cgroup.status();
  EXPECT_EQ(Read("mnt/svc/kernel-k1/memory.max"), "268435456");
  EXPECT_EQ(Read("mnt/svc/kernel-k1/memory.swap.max"), "0");
  EXPECT_EQ(Read("mnt/svc/kernel-k1/pids.max"), "64");
  ASSERT_EQ((*cgroup)->procs_fds().size(), 1u);  // one cgroup.procs to join
  EXPECT_EQ((*cgroup)->OomKills(), 0);
  Write("mnt/svc/kernel-k1/memory.events", "low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\n");
  EXPECT_EQ((*cgroup)->OomKills(), 1);
}

TEST_F(CgroupTest, V2WithoutTheControllersFallsBackToV1) {
  Write("mnt/cgroup.controllers", "cpu io\n");
  fs::create_directories(root_ + "/mnt/memory/box");
  fs::create_directories(root_ + "/mnt/pids");
  absl::StatusOr<std::unique_ptr<CgroupManager>> manager =
      CgroupManager::Detect(Options("9:pids:/\n4:memory:/box\n0::/\n"));
  ASSERT_TRUE(manager.ok()) << manager.status();
  EXPECT_EQ((*manager)->version(), CgroupVersion::kV1);
  EXPECT_TRUE(Exists("mnt/memory/box/cellgate-4242"));
  EXPECT_TRUE(Exists("mnt/pids/cellgate-4242"));

  absl::StatusOr<std::unique_ptr<KernelCgroup>> cgroup =
      (*manager)->Create("k7", {.memory_bytes = 512 << 20, .max_processes = 32});
  ASSERT_TRUE(cgroup.ok()) << cgroup.status();
  EXPECT_EQ(Read("mnt/memory/box/cellgate-4242/kernel-k7/memory.limit_in_bytes"), "536870912");
  EXPECT_EQ(Read("mnt/pids/cellgate-4242/kernel-k7/pids.max"), "32");
  EXPECT_EQ((*cgroup)->procs_fds().size(), 2u);  // memory and pids hierarchies
  Write("mnt/memory/box/cellgate-4242/kernel-k7/memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
  EXPECT_EQ((*cgroup)->OomKills(), 3);
}

TEST_F(CgroupTest, V2RemovesKernelCgroupsAnEarlierGatewayLeft) {
  Write("mnt/svc/cgroup.controllers", "memory pids\n");
  fs::create_directories(root_ + "/mnt/svc/kernel-k3-9");
  fs::create_directories(root_ + "/mnt/svc/other");
  ASSERT_TRUE(CgroupManager::Detect(Options("0::/svc\n")).ok());
  EXPECT_FALSE(Exists("mnt/svc/kernel-k3-9"));
  EXPECT_TRUE(Exists("mnt/svc/other"));  // not the gateway's
}

TEST_F(CgroupTest, V1RemovesTheCgroupsOfGatewaysThatNoLongerRun) {
  fs::create_directories(root_ + "/mnt/memory/cellgate-1/kernel-k0-1");
  fs::create_directories(root_ + "/mnt/pids/cellgate-1/kernel-k0-1");
  // pid 1 runs, but it is no gateway: its cgroups are leftovers as well.
  absl::StatusOr<std::unique_ptr<CgroupManager>> manager =
      CgroupManager::Detect(Options("9:pids:/\n4:memory:/\n"));
  ASSERT_TRUE(manager.ok()) << manager.status();
  EXPECT_FALSE(Exists("mnt/memory/cellgate-1"));
  EXPECT_FALSE(Exists("mnt/pids/cellgate-1"));
  EXPECT_TRUE(Exists("mnt/memory/cellgate-4242"));
  manager->reset();  // its own parents go with it
  EXPECT_FALSE(Exists("mnt/memory/cellgate-4242"));
  EXPECT_FALSE(Exists("mnt/pids/cellgate-4242"));
}

TEST_F(CgroupTest, KernelsThatOutliveTheGatewayKeepTheirCgroupsForTheNextOne) {
  // Gateway 1 let its kernels outlive it: one still runs (a cgroup with processes can't be
  // removed; a file stands for them here), one ended.
  Write("mnt/memory/cellgate-keep-1/kernel-k0-1/cgroup.procs", "77\n");
  fs::create_directories(root_ + "/mnt/pids/cellgate-keep-1/kernel-k0-1");
  fs::create_directories(root_ + "/mnt/memory/cellgate-keep-1/kernel-k1-1");
  // Gateway 2 did not: what it left is killed and removed, whatever this gateway's mode.
  fs::create_directories(root_ + "/mnt/memory/cellgate-2/kernel-k0-1");
  CgroupManager::Options options = Options("9:pids:/\n4:memory:/\n");
  options.keep_leftover_kernels = true;
  absl::StatusOr<std::unique_ptr<CgroupManager>> manager = CgroupManager::Detect(options);
  ASSERT_TRUE(manager.ok()) << manager.status();
  EXPECT_TRUE(Exists("mnt/memory/cellgate-keep-4242"));  // where this gateway's kernels go
  EXPECT_TRUE(Exists("mnt/memory/cellgate-keep-1/kernel-k0-1"));
  EXPECT_FALSE(Exists("mnt/memory/cellgate-keep-1/kernel-k1-1"));
  EXPECT_FALSE(Exists("mnt/pids/cellgate-keep-1/kernel-k0-1"));  // empty: nothing ran in it
  EXPECT_FALSE(Exists("mnt/memory/cellgate-2"));

  const std::vector<std::string> dirs = {root_ + "/mnt/memory/cellgate-keep-1/kernel-k0-1",
                                         root_ + "/mnt/memory/cellgate-keep-1/kernel-k0-1"};
  EXPECT_EQ((*manager)->Adopt({dirs[0]}, {}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*manager)->Adopt({dirs[0], dirs[1] + "-gone"}, {}).status().code(),
            absl::StatusCode::kNotFound);
  absl::StatusOr<std::unique_ptr<KernelCgroup>> adopted =
      (*manager)->Adopt(dirs, {.memory_bytes = 1 << 30});
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  EXPECT_EQ((*adopted)->dirs(), dirs);
  EXPECT_EQ((*adopted)->limits().memory_bytes, uint64_t{1} << 30);
  // Released (the gateway stops again, the kernel goes on): nothing is touched.
  (*adopted)->Release();
  adopted->reset();
  EXPECT_EQ(Read("mnt/memory/cellgate-keep-1/kernel-k0-1/cgroup.procs"), "77\n");

  // A gateway that does not keep kernels still leaves a kept parent's kernels alone.
  options.keep_leftover_kernels = false;
  options.gateway_pid = 4343;
  absl::StatusOr<std::unique_ptr<CgroupManager>> other = CgroupManager::Detect(options);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_TRUE(Exists("mnt/memory/cellgate-keep-1/kernel-k0-1"));
  EXPECT_TRUE(Exists("mnt/memory/cellgate-4343"));
}

TEST_F(CgroupTest, NoUsableHierarchySaysWhyForBothVersions) {
  Write("mnt/svc/cgroup.controllers", "cpu\n");
  absl::StatusOr<std::unique_ptr<CgroupManager>> manager =
      CgroupManager::Detect(Options("0::/svc\n"));
  ASSERT_FALSE(manager.ok());
  EXPECT_EQ(manager.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(manager.status().message(), HasSubstr("does not offer memory and pids"));
  EXPECT_THAT(manager.status().message(), HasSubstr("no cgroup v1 memory and pids hierarchies"));
}

TEST_F(CgroupTest, RealMountIsCheckedForItsFilesystemType) {
  Write("mnt/svc/cgroup.controllers", "memory pids\n");
  CgroupManager::Options options = Options("0::/svc\n");
  options.check_filesystem = true;  // a plain directory is no cgroup2 mount
  absl::StatusOr<std::unique_ptr<CgroupManager>> manager = CgroupManager::Detect(options);
  ASSERT_FALSE(manager.ok());
  EXPECT_THAT(manager.status().message(), HasSubstr("is not a cgroup2 mount"));
  EXPECT_FALSE(Exists("mnt/svc/gateway"));
}

TEST(CgroupKeyedValueTest, FindsTheKeyOrGivesZero) {
  EXPECT_EQ(CgroupKeyedValue("oom 4\noom_kill 2\n", "oom_kill"), 2);
  EXPECT_EQ(CgroupKeyedValue("oom 4\n", "oom_kill"), 0);
  EXPECT_EQ(CgroupKeyedValue("", "oom_kill"), 0);
}

}  // namespace
}  // namespace cellgate::kernel
