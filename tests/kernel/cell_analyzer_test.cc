// The analyzer client against the real analyzer script (and against stand-ins that crash or
// hang), on a real I/O loop.

#include "server/kernel/cell_analyzer.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellgate::kernel {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr absl::Duration kDeadline = absl::Seconds(30);

class CellAnalyzerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);  // as the gateway does: a dead analyzer's pipe is an error
    char pattern[] = "/tmp/cga-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  CellAnalyzer::Options OptionsFor(const std::string& script) {
    CellAnalyzer::Options options;
    options.script = script;
    options.working_dir = dir_ + "/work";
    return options;
  }
  std::string Script(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  // Analyzes `source` and waits for the answer.
  static absl::StatusOr<CellAnalysis> AnalyzeAndWait(CellAnalyzer& analyzer, std::string source) {
    absl::Notification done;
    absl::StatusOr<CellAnalysis> result = absl::UnknownError("no answer");
    analyzer.Analyze(std::move(source), [&](absl::StatusOr<CellAnalysis> answer) {
      result = std::move(answer);
      done.Notify();
    });
    if (!done.WaitForNotificationWithTimeout(kDeadline)) return absl::DeadlineExceededError("");
    return result;
  }

  std::string dir_;
};

TEST_F(CellAnalyzerTest, AnswersWhatACellDefinesAndUsesFromOneWarmProcess) {
  KernelIoLoop loop;
  CellAnalyzer analyzer(loop, OptionsFor(CELLGATE_ANALYZER_SCRIPT));
  absl::StatusOr<CellAnalysis> first = AnalyzeAndWait(analyzer, "%time y = f(x)\nz = y + 1");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_THAT(first->defines, ElementsAre("y", "z"));
  EXPECT_THAT(first->uses, ElementsAre("f", "x"));
  EXPECT_FALSE(first->opaque);
  absl::StatusOr<CellAnalysis> opaque = AnalyzeAndWait(analyzer, "from os import *");
  ASSERT_TRUE(opaque.ok()) << opaque.status();
  EXPECT_TRUE(opaque->opaque);
  EXPECT_THAT(opaque->reasons, ElementsAre("star import from os"));
  absl::StatusOr<CellAnalysis> broken = AnalyzeAndWait(analyzer, "x = (");
  ASSERT_TRUE(broken.ok()) << broken.status();
  EXPECT_THAT(broken->error, HasSubstr("syntax error at line 1"));
  loop.RunAndWait([&] { EXPECT_EQ(analyzer.starts(), 1); });
}

TEST_F(CellAnalyzerTest, ManyRequestsAtOnceEachGetTheirOwnAnswer) {
  KernelIoLoop loop;
  CellAnalyzer analyzer(loop, OptionsFor(CELLGATE_ANALYZER_SCRIPT));
  constexpr int kRequests = 200;
  std::vector<std::string> defined(kRequests);
  std::atomic<int> answered{0};
  absl::Notification all;
  for (int i = 0; i < kRequests; ++i) {
    analyzer.Analyze(absl::StrCat("v", i, " = w", i), [&, i](absl::StatusOr<CellAnalysis> a) {
      if (a.ok() && a->defines.size() == 1) defined[i] = a->defines[0];
      if (++answered == kRequests) all.Notify();
    });
  }
  ASSERT_TRUE(all.WaitForNotificationWithTimeout(kDeadline));
  for (int i = 0; i < kRequests; ++i) EXPECT_EQ(defined[i], absl::StrCat("v", i));
}

TEST_F(CellAnalyzerTest, ABurstTakingLongerThanTheTimeoutIsFineWhileTheAnalyzerKeepsAnswering) {
  // 10 ms per answer, 100 requests at once: the last is answered a second after it was sent,
  // but none waited 300 ms behind the one before it.
  const std::string script = Script("slow.py", R"(import json, sys, time
for line in sys.stdin:
    time.sleep(0.01)
    request = json.loads(line)
    print(json.dumps({"id": request["id"], "defines": [request["source"]], "uses": [],
                      "opaque": False, "reasons": [], "error": ""}), flush=True)
)");
  KernelIoLoop loop;
  CellAnalyzer::Options options = OptionsFor(script);
  options.timeout = absl::Milliseconds(300);
  CellAnalyzer analyzer(loop, options);
  constexpr int kRequests = 100;
  std::atomic<int> ok{0};
  std::atomic<int> answered{0};
  absl::Notification all;
  for (int i = 0; i < kRequests; ++i) {
    analyzer.Analyze(absl::StrCat("v", i), [&](absl::StatusOr<CellAnalysis> a) {
      if (a.ok()) ++ok;
      if (++answered == kRequests) all.Notify();
    });
  }
  ASSERT_TRUE(all.WaitForNotificationWithTimeout(kDeadline));
  EXPECT_EQ(ok.load(), kRequests);
  loop.RunAndWait([&] { EXPECT_EQ(analyzer.starts(), 1); });
}

TEST_F(CellAnalyzerTest, AnAnswerIsRememberedBySource) {
  KernelIoLoop loop;
  CellAnalyzer::Options options = OptionsFor(CELLGATE_ANALYZER_SCRIPT);
  options.cache_bytes = 12;  // two 5-byte sources fit, a third clears the cache
  CellAnalyzer analyzer(loop, options);
  auto sent = [&] {
    int64_t count = 0;
    loop.RunAndWait([&] { count = analyzer.requests_sent(); });
    return count;
  };
  EXPECT_FALSE(analyzer.Cached("a = b").has_value()) << "never asked";
  absl::StatusOr<CellAnalysis> first = AnalyzeAndWait(analyzer, "a = b");
  ASSERT_TRUE(first.ok()) << first.status();
  std::optional<CellAnalysis> cached = analyzer.Cached("a = b");  // from this thread
  ASSERT_TRUE(cached.has_value());
  EXPECT_THAT(cached->defines, ElementsAre("a"));
  EXPECT_THAT(cached->uses, ElementsAre("b"));
  absl::StatusOr<CellAnalysis> again = AnalyzeAndWait(analyzer, "a = b");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_THAT(again->defines, ElementsAre("a"));
  EXPECT_THAT(again->uses, ElementsAre("b"));
  EXPECT_EQ(sent(), 1) << "the second answer came from the cache";
  ASSERT_TRUE(AnalyzeAndWait(analyzer, "c = d").ok());
  ASSERT_TRUE(AnalyzeAndWait(analyzer, "e = f").ok());  // over the cap: forgets the others
  EXPECT_FALSE(analyzer.Cached("a = b").has_value());
  ASSERT_TRUE(AnalyzeAndWait(analyzer, "a = b").ok());
  EXPECT_EQ(sent(), 4);
}

TEST_F(CellAnalyzerTest, ACellLargerThanThePipeGoesThrough) {
  KernelIoLoop loop;
  CellAnalyzer::Options options = OptionsFor(CELLGATE_ANALYZER_SCRIPT);
  options.timeout = absl::Seconds(20);  // 5000 lines take a while to analyze
  CellAnalyzer analyzer(loop, options);
  std::string source;
  for (int i = 0; i < 5000; ++i) absl::StrAppend(&source, "name_", i, " = other_", i, "\n");
  ASSERT_GT(source.size(), 65536u) << "more than a pipe holds";
  absl::StatusOr<CellAnalysis> result = AnalyzeAndWait(analyzer, source);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->defines.size(), 5000u);
  EXPECT_EQ(result->uses.size(), 5000u);
}

TEST_F(CellAnalyzerTest, ACrashedAnalyzerFailsItsRequestsAndIsStartedAgainAfterTheBackoff) {
  KernelIoLoop loop;
  CellAnalyzer::Options options = OptionsFor(Script("crash.py", "import sys\nsys.exit(3)\n"));
  options.restart_backoff = absl::Milliseconds(300);
  CellAnalyzer analyzer(loop, options);
  absl::StatusOr<CellAnalysis> first = AnalyzeAndWait(analyzer, "x = 1");
  EXPECT_EQ(first.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(first.status().message(), HasSubstr("analyzer"));
  // Within the backoff: at once, without a new process.
  absl::StatusOr<CellAnalysis> soon = AnalyzeAndWait(analyzer, "x = 1");
  EXPECT_EQ(soon.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(soon.status().message(), HasSubstr("restarting after"));
  loop.RunAndWait([&] { EXPECT_EQ(analyzer.starts(), 1); });
  // After it: a new process (which crashes again).
  const absl::Time deadline = absl::Now() + kDeadline;
  int starts = 1;
  while (starts < 2 && absl::Now() < deadline) {
    AnalyzeAndWait(analyzer, "x = 1").IgnoreError();
    loop.RunAndWait([&] { starts = analyzer.starts(); });
  }
  EXPECT_EQ(starts, 2);
}

TEST_F(CellAnalyzerTest, AHungAnalyzerAnswersUnavailableWithinTheTimeout) {
  KernelIoLoop loop;
  CellAnalyzer::Options options = OptionsFor(
      Script("hang.py", "import sys, time\nsys.stdin.readline()\ntime.sleep(600)\n"));
  options.timeout = absl::Milliseconds(300);
  CellAnalyzer analyzer(loop, options);
  const absl::Time started = absl::Now();
  absl::StatusOr<CellAnalysis> result = AnalyzeAndWait(analyzer, "x = 1");
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(result.status().message(), HasSubstr("did not answer within"));
  EXPECT_LT(absl::Now() - started, absl::Seconds(10));
}

TEST_F(CellAnalyzerTest, AnAnalyzerThatCannotStartSaysWhy) {
  KernelIoLoop loop;
  CellAnalyzer::Options options = OptionsFor(dir_ + "/missing.py");
  options.python = dir_ + "/no-python";
  CellAnalyzer analyzer(loop, options);
  absl::StatusOr<CellAnalysis> result = AnalyzeAndWait(analyzer, "x = 1");
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(result.status().message(), HasSubstr("could not start"));
}

}  // namespace
}  // namespace cellgate::kernel
