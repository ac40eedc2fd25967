#include "server/kernel/sandbox_probe.h"

#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/kernel/kernel_test_support.h"

namespace cellgate::kernel {
namespace {

namespace fs = std::filesystem;

using ::testing::HasSubstr;

const SandboxLayer* FindLayer(const SandboxCapabilities& caps, const std::string& name) {
  for (const SandboxLayer& layer : caps.layers) {
    if (layer.name == name) return &layer;
  }
  return nullptr;
}

class SandboxProbeTest : public ::testing::Test {
 protected:
  void SetUp() override { scratch_ = testing::MakeShortTempDir(); }
  void TearDown() override {
    std::error_code error;
    fs::remove_all(scratch_, error);
  }

  // Checks what holds for every probe, whatever the host supports.
  void ExpectConsistent(const SandboxCapabilities& caps) {
    std::set<std::string> names;
    for (const SandboxLayer& layer : caps.layers) {
      EXPECT_FALSE(layer.name.empty());
      EXPECT_FALSE(layer.detail.empty()) << "layer " << layer.name << " has no detail";
      EXPECT_TRUE(names.insert(layer.name).second) << "layer " << layer.name << " twice";
    }
    for (const char* name : {"rlimits", "session", "no_new_privs", "parent_death_signal",
                             "per_kernel_uid", "pidfd", "bwrap"}) {
      EXPECT_TRUE(names.contains(name)) << "no layer " << name;
    }
    const SandboxLayer* rlimits = FindLayer(caps, "rlimits");
    ASSERT_NE(rlimits, nullptr);
    EXPECT_TRUE(rlimits->available);
    EXPECT_EQ(caps.per_kernel_uid, ::geteuid() == 0);
    ASSERT_NE(FindLayer(caps, "per_kernel_uid"), nullptr);
    EXPECT_EQ(FindLayer(caps, "per_kernel_uid")->available, caps.per_kernel_uid);
    ASSERT_NE(FindLayer(caps, "pidfd"), nullptr);
    EXPECT_EQ(FindLayer(caps, "pidfd")->available, caps.pidfd);
    ASSERT_NE(FindLayer(caps, "bwrap"), nullptr);
    EXPECT_EQ(FindLayer(caps, "bwrap")->available, caps.bwrap);
    // The trial leaves nothing behind in the scratch dir.
    EXPECT_TRUE(fs::is_empty(scratch_)) << "probe left files in " << scratch_;
  }

  std::string scratch_;
};

TEST_F(SandboxProbeTest, MissingBwrapIsReportedWithItsPath) {
  const std::string bwrap = scratch_ + "/no/such/bwrap";
  const SandboxCapabilities caps = ProbeSandbox(bwrap, scratch_, /*probe_uid=*/-1);
  EXPECT_FALSE(caps.bwrap);
  EXPECT_EQ(caps.bwrap_path, bwrap);
  const SandboxLayer* layer = FindLayer(caps, "bwrap");
  ASSERT_NE(layer, nullptr);
  EXPECT_FALSE(layer->available);
  EXPECT_THAT(layer->detail, HasSubstr(bwrap));
  ExpectConsistent(caps);
}

TEST_F(SandboxProbeTest, PidfdIsAvailableOnThisKernel) {
  const SandboxCapabilities caps = ProbeSandbox("/nonexistent/bwrap", scratch_, -1);
  // Debian 12's kernels (>= 5.3) all have pidfd_open.
  EXPECT_TRUE(caps.pidfd);
  ExpectConsistent(caps);
}

TEST_F(SandboxProbeTest, ProgramThatIsNotBwrapFailsTheTrial) {
  // /bin/false exists and is executable, but running the sandbox through it fails.
  const SandboxCapabilities caps = ProbeSandbox("/bin/false", scratch_, -1);
  EXPECT_FALSE(caps.bwrap);
  const SandboxLayer* layer = FindLayer(caps, "bwrap");
  ASSERT_NE(layer, nullptr);
  EXPECT_THAT(layer->detail, HasSubstr("trial failed"));
  ExpectConsistent(caps);
}

TEST_F(SandboxProbeTest, UnwritableScratchDirDegradesBwrap) {
  const std::string missing = scratch_ + "/missing";
  const SandboxCapabilities caps = ProbeSandbox("/bin/true", missing, -1);
  EXPECT_FALSE(caps.bwrap);
  const SandboxLayer* layer = FindLayer(caps, "bwrap");
  ASSERT_NE(layer, nullptr);
  EXPECT_THAT(layer->detail, HasSubstr(missing));
  ExpectConsistent(caps);
}

TEST_F(SandboxProbeTest, RealBwrapIsProbedWithoutCrashing) {
  if (::access("/usr/bin/bwrap", X_OK) != 0) GTEST_SKIP() << "bubblewrap not installed";
  // Whether namespaces work depends on the host; the answer must be consistent and explained.
  const SandboxCapabilities caps = ProbeSandbox("/usr/bin/bwrap", scratch_, -1);
  ExpectConsistent(caps);
  const SandboxLayer* layer = FindLayer(caps, "bwrap");
  ASSERT_NE(layer, nullptr);
  RecordProperty("bwrap_detail", layer->detail);
}

TEST_F(SandboxProbeTest, RealBwrapWithAKernelUidWhenRoot) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  if (::access("/usr/bin/bwrap", X_OK) != 0) GTEST_SKIP() << "bubblewrap not installed";
  const SandboxCapabilities caps = ProbeSandbox("/usr/bin/bwrap", scratch_, 232300);
  ExpectConsistent(caps);
}

}  // namespace
}  // namespace cellgate::kernel
