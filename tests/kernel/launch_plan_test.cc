#include "server/kernel/launch_plan.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/kernel/kernel_test_support.h"

namespace cellgate::kernel {
namespace {

namespace fs = std::filesystem;

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

// "KEY=value" entries as a map; fails the test on a malformed or duplicate entry.
std::map<std::string, std::string> EnvMap(const std::vector<std::string>& entries) {
  std::map<std::string, std::string> env;
  for (const std::string& entry : entries) {
    const size_t eq = entry.find('=');
    EXPECT_NE(eq, std::string::npos) << entry;
    EXPECT_GT(eq, 0u) << entry;
    if (eq == std::string::npos) continue;
    const bool inserted = env.emplace(entry.substr(0, eq), entry.substr(eq + 1)).second;
    EXPECT_TRUE(inserted) << "duplicate key in " << entry;
  }
  return env;
}

LaunchRequest BasicRequest() {
  LaunchRequest request;
  request.spec.name = "test";
  request.spec.argv = {"sh", "-c", "cat {connection_file}"};
  request.spec.resource_dir = "/specs/test";
  request.connection_file = "/k/wd/conn.json";
  request.working_dir = "/k/wd";
  request.log_path = "/k/log";
  return request;
}

// Index of the first occurrence of the sequence `needle` in `args`, or -1.
int FindSequence(const std::vector<std::string>& args, const std::vector<std::string>& needle) {
  auto it = std::search(args.begin(), args.end(), needle.begin(), needle.end());
  return it == args.end() ? -1 : static_cast<int>(it - args.begin());
}

// --- BuildKernelEnvironment ------------------------------------------------------------------

TEST(BuildKernelEnvironmentTest, ServerEnvironmentDoesNotLeak) {
  ::setenv("CELLGATE_TEST_SECRET", "hunter2", 1);
  const std::map<std::string, std::string> env = EnvMap(BuildKernelEnvironment(BasicRequest()));
  ::unsetenv("CELLGATE_TEST_SECRET");
  EXPECT_FALSE(env.contains("CELLGATE_TEST_SECRET"));
  for (const auto& [key, value] : env) EXPECT_THAT(value, Not(HasSubstr("hunter2"))) << key;
  // Only the allow-list is there.
  for (const auto& [key, value] : env) {
    EXPECT_THAT(
        key, ::testing::AnyOf("PATH", "LANG", "LC_ALL", "HOME", "IPYTHONDIR", "JUPYTER_RUNTIME_DIR",
                              "MPLCONFIGDIR", "TMPDIR", "PYTHONDONTWRITEBYTECODE"));
  }
  EXPECT_EQ(env.at("PATH"), "/usr/local/bin:/usr/bin:/bin");
}

TEST(BuildKernelEnvironmentTest, PrivateDirsAreInsideTheWorkingDir) {
  const std::map<std::string, std::string> env = EnvMap(BuildKernelEnvironment(BasicRequest()));
  EXPECT_EQ(env.at("HOME"), "/k/wd");
  EXPECT_EQ(env.at("IPYTHONDIR"), "/k/wd/.ipython");
  EXPECT_EQ(env.at("TMPDIR"), "/k/wd/tmp");
  EXPECT_EQ(env.at("JUPYTER_RUNTIME_DIR"), "/k/wd/.jupyter");
  EXPECT_THAT(env.at("MPLCONFIGDIR"), ::testing::StartsWith("/k/wd/"));
}

TEST(BuildKernelEnvironmentTest, SpecAndRequestEnvAreAdded) {
  LaunchRequest request = BasicRequest();
  request.spec.env = {{"FROM_SPEC", "s"}, {"BOTH", "spec"}};
  request.extra_env = {{"FROM_REQUEST", "r"}, {"BOTH", "request"}, {"WITH_EQ", "a=b"}};
  const std::map<std::string, std::string> env = EnvMap(BuildKernelEnvironment(request));
  EXPECT_EQ(env.at("FROM_SPEC"), "s");
  EXPECT_EQ(env.at("FROM_REQUEST"), "r");
  EXPECT_EQ(env.at("BOTH"), "request");
  EXPECT_EQ(env.at("WITH_EQ"), "a=b");
}

TEST(BuildKernelEnvironmentTest, RequestMayOverridePathAndLocale) {
  LaunchRequest request = BasicRequest();
  request.extra_env = {{"PATH", "/opt/bin:/usr/bin"}, {"LANG", "de_DE.UTF-8"}};
  const std::map<std::string, std::string> env = EnvMap(BuildKernelEnvironment(request));
  EXPECT_EQ(env.at("PATH"), "/opt/bin:/usr/bin");
  EXPECT_EQ(env.at("LANG"), "de_DE.UTF-8");
}

TEST(BuildKernelEnvironmentTest, RequestCannotSetReservedKeys) {
  LaunchRequest request = BasicRequest();
  for (const char* key : {"HOME", "IPYTHONDIR", "TMPDIR", "JUPYTER_RUNTIME_DIR", "LD_PRELOAD",
                          "LD_LIBRARY_PATH", "LD_AUDIT"}) {
    EXPECT_TRUE(IsReservedEnvKey(key)) << key;
    request.extra_env[key] = "/evil";
  }
  const std::map<std::string, std::string> env = EnvMap(BuildKernelEnvironment(request));
  EXPECT_EQ(env.at("HOME"), "/k/wd");
  EXPECT_EQ(env.at("IPYTHONDIR"), "/k/wd/.ipython");
  EXPECT_EQ(env.at("TMPDIR"), "/k/wd/tmp");
  EXPECT_EQ(env.at("JUPYTER_RUNTIME_DIR"), "/k/wd/.jupyter");
  EXPECT_FALSE(env.contains("LD_PRELOAD"));
  EXPECT_FALSE(env.contains("LD_LIBRARY_PATH"));
  EXPECT_FALSE(env.contains("LD_AUDIT"));
  for (const auto& [key, value] : env) EXPECT_NE(value, "/evil") << key;
}

TEST(BuildKernelEnvironmentTest, ReservedKeysAreExactNames) {
  EXPECT_FALSE(IsReservedEnvKey("PATH"));
  EXPECT_FALSE(IsReservedEnvKey("HOMEPAGE"));
  EXPECT_FALSE(IsReservedEnvKey("home"));
  EXPECT_FALSE(IsReservedEnvKey("MY_VAR"));
}

TEST(BuildKernelEnvironmentTest, MalformedRequestKeysCannotSmuggleReservedOnes) {
  // "LD_PRELOAD=/evil.so" as a key would become the entry "LD_PRELOAD=/evil.so=", which the
  // dynamic loader (of bwrap, in bwrap mode) reads as LD_PRELOAD. Same for a second "HOME=".
  LaunchRequest request = BasicRequest();
  request.extra_env = {
      {"HOME=/evil", "1"}, {"LD_PRELOAD=/evil.so", ""}, {"", "empty-key"}, {"OK", "fine"}};
  const std::vector<std::string> entries = BuildKernelEnvironment(request);
  const std::map<std::string, std::string> env = EnvMap(entries);
  EXPECT_EQ(env.at("HOME"), "/k/wd");
  EXPECT_FALSE(env.contains("LD_PRELOAD"));
  EXPECT_EQ(env.at("OK"), "fine");
  for (const std::string& entry : entries) {
    EXPECT_THAT(entry, Not(HasSubstr("evil"))) << entry;
    EXPECT_THAT(entry, Not(HasSubstr("empty-key"))) << entry;
  }
}

TEST(BuildKernelEnvironmentTest, MalformedSpecKeysAreDropped) {
  LaunchRequest request = BasicRequest();
  request.spec.env = {{"TMPDIR=/elsewhere", "x"}, {"", "y"}, {"GOOD", "z"}};
  const std::vector<std::string> entries = BuildKernelEnvironment(request);
  const std::map<std::string, std::string> env = EnvMap(entries);
  EXPECT_EQ(env.at("TMPDIR"), "/k/wd/tmp");
  EXPECT_EQ(env.at("GOOD"), "z");
  for (const std::string& entry : entries) {
    EXPECT_THAT(entry, Not(HasSubstr("elsewhere"))) << entry;
    EXPECT_NE(entry, "=y");
  }
}

// --- BuildBwrapArgs --------------------------------------------------------------------------

TEST(BuildBwrapArgsTest, ShapeOfTheSandbox) {
  const std::vector<std::string> args =
      BuildBwrapArgs("/usr/bin/bwrap", "/tmp/k1", /*allow_network=*/false);
  ASSERT_FALSE(args.empty());
  EXPECT_EQ(args.front(), "/usr/bin/bwrap");
  EXPECT_EQ(args.back(), "--");
  EXPECT_EQ(std::count(args.begin(), args.end(), "--"), 1);
  EXPECT_GE(FindSequence(args, {"--ro-bind", "/usr", "/usr"}), 0);
  EXPECT_GE(FindSequence(args, {"--ro-bind", "/etc", "/etc"}), 0);
  EXPECT_GE(FindSequence(args, {"--bind", "/tmp/k1", "/tmp/k1"}), 0);
  EXPECT_GE(FindSequence(args, {"--chdir", "/tmp/k1"}), 0);
  EXPECT_GE(FindSequence(args, {"--tmpfs", "/tmp"}), 0);
  EXPECT_THAT(args, Contains("--die-with-parent"));
  EXPECT_THAT(args, Contains("--unshare-pid"));
  EXPECT_THAT(args, Contains("--unshare-net"));
  // The working dir is bound after the private /tmp, or the tmpfs would hide it.
  EXPECT_LT(FindSequence(args, {"--tmpfs", "/tmp"}),
            FindSequence(args, {"--bind", "/tmp/k1", "/tmp/k1"}));
  // Nothing else is writable: the only --bind is the working dir.
  EXPECT_EQ(std::count(args.begin(), args.end(), "--bind"), 1);
}

TEST(BuildBwrapArgsTest, AKernelThatOutlivesTheGatewayIsNotTiedToIt) {
  const std::vector<std::string> args = BuildBwrapArgs(
      "/usr/bin/bwrap", "/tmp/k1", /*allow_network=*/false, /*die_with_parent=*/false);
  EXPECT_THAT(args, Not(Contains("--die-with-parent")));
  EXPECT_THAT(args, Contains("--unshare-pid"));
}

TEST(BuildBwrapArgsTest, NetworkAllowedKeepsTheNetworkNamespace) {
  const std::vector<std::string> args =
      BuildBwrapArgs("/usr/bin/bwrap", "/tmp/k1", /*allow_network=*/true);
  EXPECT_THAT(args, Not(Contains("--unshare-net")));
  EXPECT_THAT(args, Contains("--die-with-parent"));
  EXPECT_EQ(args.back(), "--");
}

TEST(BuildBwrapArgsTest, MirrorsMergedUsrSymlinks) {
  const std::vector<std::string> args = BuildBwrapArgs("/usr/bin/bwrap", "/tmp/k1", false);
  std::error_code error;
  if (fs::is_symlink(fs::symlink_status("/bin", error))) {
    EXPECT_GE(FindSequence(args, {"--symlink", fs::read_symlink("/bin").string(), "/bin"}), 0);
  } else {
    EXPECT_GE(FindSequence(args, {"--ro-bind", "/bin", "/bin"}), 0);
  }
}

// --- BuildLaunchPlan -------------------------------------------------------------------------

TEST(BuildLaunchPlanTest, ResolvesRelativeProgramThroughPath) {
  absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(BasicRequest());
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->argv.size(), 3u);
  EXPECT_TRUE(fs::path(plan->argv[0]).is_absolute()) << plan->argv[0];
  EXPECT_EQ(fs::path(plan->argv[0]).filename(), "sh");
  EXPECT_EQ(::access(plan->argv[0].c_str(), X_OK), 0);
  EXPECT_EQ(plan->argv[1], "-c");
  EXPECT_EQ(plan->argv[2], "cat /k/wd/conn.json");
  EXPECT_EQ(plan->working_dir, "/k/wd");
  EXPECT_EQ(plan->log_path, "/k/log");
  EXPECT_EQ(EnvMap(plan->env).at("HOME"), "/k/wd");
}

TEST(BuildLaunchPlanTest, ExpandsResourceDirInProgram) {
  const std::string dir = testing::MakeShortTempDir();
  const std::string script = dir + "/run.sh";
  std::ofstream(script) << "#!/bin/sh\n";
  ::chmod(script.c_str(), 0755);
  LaunchRequest request = BasicRequest();
  request.spec.resource_dir = dir;
  request.spec.argv = {"{resource_dir}/run.sh", "{connection_file}"};
  absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(request);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_THAT(plan->argv, ::testing::ElementsAre(script, "/k/wd/conn.json"));
  fs::remove_all(dir);
}

TEST(BuildLaunchPlanTest, MissingExecutableIsInvalidArgument) {
  LaunchRequest request = BasicRequest();
  request.spec.argv = {"cellgate-no-such-program-xyz", "-f", "{connection_file}"};
  absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(request);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(plan.status().message()), HasSubstr("cellgate-no-such-program-xyz"));

  request.spec.argv = {"/nonexistent/bin/python3"};
  plan = BuildLaunchPlan(request);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(plan.status().message()), HasSubstr("/nonexistent/bin/python3"));
}

TEST(BuildLaunchPlanTest, NonExecutableFileIsInvalidArgument) {
  const std::string dir = testing::MakeShortTempDir();
  const std::string file = dir + "/data.txt";
  std::ofstream(file) << "not a program\n";
  ::chmod(file.c_str(), 0644);
  LaunchRequest request = BasicRequest();
  request.spec.argv = {file};
  absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(request);
  // Root may "access(X_OK)" any file with an x bit; 0644 has none.
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(plan.status().message()), HasSubstr(file));
  fs::remove_all(dir);
}

TEST(BuildLaunchPlanTest, EmptyArgvIsInvalidArgument) {
  LaunchRequest request = BasicRequest();
  request.spec.argv.clear();
  absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(request);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(BuildLaunchPlanTest, RlimitsModeHasNoBwrapPrefix) {
  LaunchRequest request = BasicRequest();
  request.policy.mode = SandboxMode::kRlimits;
  request.policy.allow_network = false;
  absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(request);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_THAT(plan->argv, Not(Contains("--")));
  EXPECT_EQ(fs::path(plan->argv[0]).filename(), "sh");
}

TEST(BuildLaunchPlanTest, BwrapModePrefixesBwrapArgs) {
  LaunchRequest request = BasicRequest();
  request.policy.mode = SandboxMode::kBwrap;
  request.policy.allow_network = false;
  request.policy.uid = 232001;
  request.bwrap_path = "/opt/bwrap";
  absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(request);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const std::vector<std::string> prefix = BuildBwrapArgs("/opt/bwrap", "/k/wd", false);
  ASSERT_EQ(plan->argv.size(), prefix.size() + 3);
  EXPECT_TRUE(std::equal(prefix.begin(), prefix.end(), plan->argv.begin()));
  EXPECT_THAT(plan->argv, Contains("--unshare-net"));
  const std::string& program = plan->argv[prefix.size()];
  EXPECT_TRUE(fs::path(program).is_absolute()) << program;
  EXPECT_EQ(fs::path(program).filename(), "sh");
  EXPECT_EQ(plan->argv.back(), "cat /k/wd/conn.json");
  EXPECT_EQ(plan->policy.uid, 232001);
  EXPECT_EQ(plan->policy.mode, SandboxMode::kBwrap);
}

TEST(BuildLaunchPlanTest, BwrapModeWithNetworkHasNoUnshareNet) {
  LaunchRequest request = BasicRequest();
  request.policy.mode = SandboxMode::kBwrap;
  request.policy.allow_network = true;
  absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(request);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->argv.front(), "/usr/bin/bwrap");
  EXPECT_THAT(plan->argv, Not(Contains("--unshare-net")));
}

}  // namespace
}  // namespace cellgate::kernel
