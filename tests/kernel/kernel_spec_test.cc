#include "server/kernel/kernel_spec.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/kernel/kernel_test_support.h"

namespace cellgate::kernel {
namespace {

namespace fs = std::filesystem;

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Message(const absl::Status& status) { return std::string(status.message()); }

constexpr char kMinimalSpec[] = R"({"argv": ["python3", "-f", "{connection_file}"]})";

// --- ParseKernelSpec -------------------------------------------------------------------------

TEST(ParseKernelSpecTest, ParsesAllFields) {
  constexpr char kJson[] = R"json({
    "argv": ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
    "display_name": "Python (test)",
    "language": "python",
    "interrupt_mode": "message",
    "env": {"A": "1", "B": "two"},
    "metadata": {"debugger": true}
  })json";
  absl::StatusOr<KernelSpec> spec = ParseKernelSpec("py", kJson, "/specs/py");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, "py");
  EXPECT_EQ(spec->display_name, "Python (test)");
  EXPECT_EQ(spec->language, "python");
  EXPECT_EQ(spec->resource_dir, "/specs/py");
  EXPECT_THAT(spec->argv, ElementsAre("/usr/bin/python3", "-m", "ipykernel_launcher", "-f",
                                      "{connection_file}"));
  EXPECT_EQ(spec->interrupt_mode, InterruptMode::kMessage);
  EXPECT_EQ(spec->env.size(), 2u);
  EXPECT_EQ(spec->env.at("A"), "1");
  EXPECT_EQ(spec->env.at("B"), "two");
}

TEST(ParseKernelSpecTest, DefaultsForOptionalFields) {
  absl::StatusOr<KernelSpec> spec = ParseKernelSpec("mini", kMinimalSpec, "/specs/mini");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->display_name, "mini");
  EXPECT_EQ(spec->language, "");
  EXPECT_TRUE(spec->env.empty());
  EXPECT_EQ(spec->interrupt_mode, InterruptMode::kSignal);
}

TEST(ParseKernelSpecTest, InterruptModeSignal) {
  absl::StatusOr<KernelSpec> spec =
      ParseKernelSpec("s", R"({"argv": ["x"], "interrupt_mode": "signal"})", "/d");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->interrupt_mode, InterruptMode::kSignal);
}

struct BadSpecCase {
  std::string test_name;
  std::string json;
  std::string expected_fragment;  // the field the error must name
};

void PrintTo(const BadSpecCase& bad, std::ostream* os) { *os << bad.test_name; }

class ParseKernelSpecErrorTest : public ::testing::TestWithParam<BadSpecCase> {};

TEST_P(ParseKernelSpecErrorTest, NamesTheField) {
  const BadSpecCase& bad = GetParam();
  absl::StatusOr<KernelSpec> spec = ParseKernelSpec("broken", bad.json, "/specs/broken");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(spec.status()), HasSubstr(bad.expected_fragment));
  // Every error says which kernelspec it is about.
  EXPECT_THAT(Message(spec.status()), HasSubstr("'broken'"));
  EXPECT_THAT(Message(spec.status()), HasSubstr("/specs/broken/kernel.json"));
}

INSTANTIATE_TEST_SUITE_P(
    AllFields, ParseKernelSpecErrorTest,
    ::testing::Values(
        BadSpecCase{"NotJson", "{ this is not json", "not a JSON object"},
        BadSpecCase{"JsonArray", R"(["a"])", "not a JSON object"},
        BadSpecCase{"ArgvMissing", R"({"display_name": "x"})", "'argv'"},
        BadSpecCase{"ArgvEmpty", R"({"argv": []})", "'argv' must be a non-empty array"},
        BadSpecCase{"ArgvNotArray", R"({"argv": "python3"})", "'argv'"},
        BadSpecCase{"ArgvNonString", R"({"argv": ["python3", 7]})",
                    "'argv' entries must be strings"},
        BadSpecCase{"EnvNotObject", R"({"argv": ["x"], "env": ["A=1"]})",
                    "'env' must be an object"},
        BadSpecCase{"EnvValueNotString", R"({"argv": ["x"], "env": {"COUNT": 3}})",
                    "'env.COUNT' must be a string"},
        BadSpecCase{"BadInterruptMode", R"({"argv": ["x"], "interrupt_mode": "sigint"})",
                    "'interrupt_mode'"},
        BadSpecCase{"InterruptModeNotString", R"({"argv": ["x"], "interrupt_mode": 2})",
                    "'interrupt_mode'"}),
    [](const ::testing::TestParamInfo<BadSpecCase>& info) { return info.param.test_name; });

TEST(KernelSpecTest, ExpandArgvSubstitutesTemplates) {
  KernelSpec spec;
  spec.resource_dir = "/res/dir";
  spec.argv = {"{resource_dir}/run", "-f", "{connection_file}",
               "--both={resource_dir}:{connection_file}", "plain"};
  EXPECT_THAT(
      spec.ExpandArgv("/k/conn.json"),
      ElementsAre("/res/dir/run", "-f", "/k/conn.json", "--both=/res/dir:/k/conn.json", "plain"));
  // The spec itself keeps its templates.
  EXPECT_EQ(spec.argv[2], "{connection_file}");
}

// --- KernelSpecRegistry ----------------------------------------------------------------------

class KernelSpecRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override { root_ = testing::MakeShortTempDir(); }
  void TearDown() override {
    std::error_code error;
    fs::remove_all(root_, error);
  }

  // Writes `<root>/<dir>/<name>/kernel.json` and returns `<root>/<dir>`.
  std::string WriteSpec(const std::string& dir, const std::string& name, const std::string& json) {
    const fs::path spec_dir = fs::path(root_) / dir / name;
    fs::create_directories(spec_dir);
    std::ofstream(spec_dir / "kernel.json") << json;
    return (fs::path(root_) / dir).string();
  }

  std::string Dir(const std::string& dir) { return (fs::path(root_) / dir).string(); }

  std::string root_;
};

TEST_F(KernelSpecRegistryTest, FindsSpecAndSetsResourceDir) {
  const std::string dir = WriteSpec("a", "echo", R"({"argv": ["echo"], "language": "text"})");
  KernelSpecRegistry registry({dir});
  absl::StatusOr<KernelSpec> spec = registry.Find("echo");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, "echo");
  EXPECT_EQ(spec->language, "text");
  EXPECT_EQ(spec->resource_dir, dir + "/echo");
}

TEST_F(KernelSpecRegistryTest, FirstDirectoryWins) {
  const std::string first = WriteSpec("first", "dup", R"({"argv": ["one"], "display_name": "1"})");
  const std::string second =
      WriteSpec("second", "dup", R"({"argv": ["two"], "display_name": "2"})");
  {
    absl::StatusOr<KernelSpec> spec = KernelSpecRegistry({first, second}).Find("dup");
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_EQ(spec->display_name, "1");
    EXPECT_EQ(spec->resource_dir, first + "/dup");
  }
  {
    absl::StatusOr<KernelSpec> spec = KernelSpecRegistry({second, first}).Find("dup");
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_EQ(spec->display_name, "2");
  }
}

TEST_F(KernelSpecRegistryTest, SkipsDirectoriesWithoutTheSpec) {
  const std::string empty = Dir("empty");
  fs::create_directories(empty);
  const std::string second = WriteSpec("second", "only", kMinimalSpec);
  absl::StatusOr<KernelSpec> spec =
      KernelSpecRegistry({Dir("does-not-exist"), empty, second}).Find("only");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->resource_dir, second + "/only");
}

TEST_F(KernelSpecRegistryTest, UnknownNameIsNotFound) {
  const std::string dir = WriteSpec("a", "known", kMinimalSpec);
  absl::StatusOr<KernelSpec> spec = KernelSpecRegistry({dir}).Find("unknown");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(spec.status()), HasSubstr("'unknown'"));
}

TEST_F(KernelSpecRegistryTest, MalformedSpecIsInvalidArgument) {
  const std::string dir = WriteSpec("a", "bad", R"({"argv": []})");
  absl::StatusOr<KernelSpec> spec = KernelSpecRegistry({dir}).Find("bad");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(spec.status()), HasSubstr("'argv'"));
}

TEST_F(KernelSpecRegistryTest, RejectsNamesThatAreNotPlainDirectoryNames) {
  // A spec reachable by "../x" exists: the name must be refused, not resolved.
  const std::string dir = WriteSpec("a", "inner", kMinimalSpec);
  WriteSpec("", "x", kMinimalSpec);
  KernelSpecRegistry registry({dir});
  const std::vector<std::string> bad_names = {"../x", "",     ".",      "..",
                                              "a/b",  "/etc", "sp ace", std::string(129, 'n')};
  for (const std::string& name : bad_names) {
    absl::StatusOr<KernelSpec> spec = registry.Find(name);
    ASSERT_FALSE(spec.ok()) << "name: " << name;
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << "name: " << name;
  }
  EXPECT_TRUE(registry.Find("inner").ok());
}

TEST_F(KernelSpecRegistryTest, ListSkipsMalformedAndReturnsSortedUniqueNames) {
  const std::string first = WriteSpec("first", "zeta", kMinimalSpec);
  WriteSpec("first", "alpha", kMinimalSpec);
  WriteSpec("first", "broken", "{not json");
  fs::create_directories(Dir("first") + "/no-kernel-json");
  std::ofstream(Dir("first") + "/stray-file") << "x";
  const std::string second = WriteSpec("second", "alpha", kMinimalSpec);
  WriteSpec("second", "mid", kMinimalSpec);
  WriteSpec("second", "bad name", kMinimalSpec);

  std::vector<KernelSpec> specs = KernelSpecRegistry({first, Dir("missing"), second}).List();
  std::vector<std::string> names;
  for (const KernelSpec& spec : specs) names.push_back(spec.name);
  EXPECT_THAT(names, ElementsAre("alpha", "mid", "zeta"));
  // "alpha" is in both: the first directory's copy is listed.
  EXPECT_EQ(specs[0].resource_dir, first + "/alpha");
}

TEST_F(KernelSpecRegistryTest, ListOfNothingIsEmpty) {
  EXPECT_TRUE(KernelSpecRegistry({Dir("missing")}).List().empty());
  EXPECT_TRUE(KernelSpecRegistry({}).List().empty());
}

// Sets or unsets an environment variable for one scope, restoring the old value after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name); old != nullptr) old_ = old;
    if (value == nullptr) {
      ::unsetenv(name);
    } else {
      ::setenv(name, value, /*overwrite=*/1);
    }
  }
  ~ScopedEnv() {
    if (old_.has_value()) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

TEST(KernelSpecSearchDirsTest, WithoutJupyterPath) {
  ScopedEnv env("JUPYTER_PATH", nullptr);
  EXPECT_THAT(KernelSpecRegistry::DefaultSearchDirs("/proj/kernels"),
              ElementsAre("/proj/kernels", "/usr/local/share/jupyter/kernels",
                          "/usr/share/jupyter/kernels"));
  EXPECT_THAT(KernelSpecRegistry::DefaultSearchDirs(""),
              ElementsAre("/usr/local/share/jupyter/kernels", "/usr/share/jupyter/kernels"));
}

TEST(KernelSpecSearchDirsTest, JupyterPathEntriesComeFirst) {
  ScopedEnv env("JUPYTER_PATH", "/a/share:/b/share::");
  EXPECT_THAT(KernelSpecRegistry::DefaultSearchDirs("/proj/kernels"),
              ElementsAre("/a/share/kernels", "/b/share/kernels", "/proj/kernels",
                          "/usr/local/share/jupyter/kernels", "/usr/share/jupyter/kernels"));
}

TEST_F(KernelSpecRegistryTest, JupyterPathSpecOverridesProjectSpec) {
  WriteSpec("share/kernels", "python3", R"({"argv": ["/bin/true"], "display_name": "override"})");
  const std::string jupyter_path = Dir("share");
  ScopedEnv env("JUPYTER_PATH", jupyter_path.c_str());
  KernelSpecRegistry registry(KernelSpecRegistry::DefaultSearchDirs(testing::ProjectKernelsDir()));
  absl::StatusOr<KernelSpec> spec = registry.Find("python3");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->display_name, "override");
}

TEST(ShippedKernelSpecTest, Python3RunsIpykernelLauncher) {
  KernelSpecRegistry registry({CELLGATE_SOURCE_DIR "/kernels"});
  absl::StatusOr<KernelSpec> spec = registry.Find("python3");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_GE(spec->argv.size(), 3u);
  EXPECT_EQ(spec->argv[0], "/usr/bin/python3");
  EXPECT_EQ(spec->argv[1], "-m");
  EXPECT_EQ(spec->argv[2], "ipykernel_launcher");
  EXPECT_EQ(spec->language, "python");
  EXPECT_EQ(spec->interrupt_mode, InterruptMode::kSignal);
  // The connection file is passed through.
  const std::vector<std::string> expanded = spec->ExpandArgv("/run/k/conn.json");
  EXPECT_THAT(expanded, ::testing::Contains("/run/k/conn.json"));
  std::vector<std::string> names;
  for (const KernelSpec& listed : registry.List()) names.push_back(listed.name);
  EXPECT_THAT(names, ::testing::Contains("python3"));
}

}  // namespace
}  // namespace cellgate::kernel
