#include "server/notebook/text_render.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellgate::notebook {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using Outputs = google::protobuf::RepeatedPtrField<v1::Output>;

// Made with PIL: Image.new("RGB", (3, 2)).save(..., "PNG") and friends.
constexpr char kPng3x2[] =
    "iVBORw0KGgoAAAANSUhEUgAAAAMAAAACCAIAAAASFvFNAAAAEElEQVR4nGP8zwAFTDAGAwATKQED8NgHhAAAAABJRU5Er"
    "kJggg==";
constexpr char kGif7x3[] = "R0lGODdhBwADAIEAAP8AAAAAAAAAAAAAACwAAAAABwADAAAICQABCBxIsKDBgAA7";
constexpr char kJpeg5x4[] =
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwc"
    "KDcpLDAxNDQ0Hyc5PTgyPC4zNDL/2wBDAQkJCQwLDBgNDRgyIRwhMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIy"
    "MjIyMjIyMjIyMjIyMjIyMjIyMjL/wAARCAAEAAUDASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcI"
    "CQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRol"
    "JicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ip"
    "qrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAA"
    "AAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLR"
    "ChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaX"
    "mJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEA"
    "PwDi6KKK+ZP3E//Z";

// The traceback IPython 8.5's ultratb (color scheme Linux) gives for 1/0 inside f(0).
const std::vector<std::string> kIpythonTraceback = {
    "\x1b[1;31m---------------------------------------------------------------------------"
    "\x1b[0m",
    "\x1b[1;31mZeroDivisionError\x1b[0m                         Traceback (most recent call "
    "last)",
    "Cell \x1b[1;32mIn[1], line 3\x1b[0m\n\x1b[0;32m      1\x1b[0m \x1b[38;5;28;01mdef\x1b[39;00m "
    "\x1b[38;5;21mf\x1b[39m(x): \x1b[38;5;28;01mreturn\x1b[39;00m \x1b[38;5;241m1\x1b[39m"
    "\x1b[38;5;241m/\x1b[39mx\n\x1b[0;32m----> 3\x1b[0m \x1b[43mf\x1b[49m\x1b[43m(\x1b[49m"
    "\x1b[38;5;241;43m0\x1b[39;49m\x1b[43m)\x1b[49m\n",
    "File \x1b[1;32m<stdin>:4\x1b[0m, in \x1b[0;36mf\x1b[1;34m(x)\x1b[0m\n",
    "\x1b[1;31mZeroDivisionError\x1b[0m: division by zero",
};

v1::Output Stream(v1::StreamName name, const std::string& text) {
  v1::Output output;
  output.mutable_stream()->set_name(name);
  output.mutable_stream()->set_text(text);
  return output;
}

v1::Output Bundle(std::vector<std::pair<std::string, std::string>> data, bool result = false) {
  v1::Output output;
  auto* map = result ? output.mutable_execute_result()->mutable_data()
                     : output.mutable_display_data()->mutable_data();
  for (auto& [mime_type, value] : data) (*map)[mime_type] = value;
  return output;
}

v1::Output Error(const std::string& ename, const std::string& evalue,
                 const std::vector<std::string>& traceback) {
  v1::Output output;
  output.mutable_error()->set_ename(ename);
  output.mutable_error()->set_evalue(evalue);
  for (const std::string& line : traceback) output.mutable_error()->add_traceback(line);
  return output;
}

std::string Render(const std::vector<v1::Output>& list, size_t max_bytes = 0,
                   bool* truncated = nullptr) {
  Outputs outputs;
  for (const v1::Output& output : list) *outputs.Add() = output;
  return RenderResultText(outputs, max_bytes, truncated);
}

TEST(StripAnsiTest, Colours) {
  EXPECT_EQ(StripAnsi("\x1b[0;31mred\x1b[0m plain \x1b[38;5;241;43mx\x1b[39;49m"), "red plain x");
  EXPECT_EQ(StripAnsi("\x1b[1m\x1b[Kbold\x1b[2J\x1b[10;20H!"), "bold!");
  EXPECT_EQ(StripAnsi("\x1b[?25lhidden cursor\x1b[?25h"), "hidden cursor");
}

TEST(StripAnsiTest, OscAndOtherEscapes) {
  EXPECT_EQ(StripAnsi("\x1b]8;;https://example.com\x07link\x1b]8;;\x07"), "link");
  EXPECT_EQ(StripAnsi("\x1b]0;title\x1b\\text"), "text");
  EXPECT_EQ(StripAnsi("a\x1b(Bb\x1b"
                      "7c\x1b"
                      "8d\x1bMe"),
            "abcde");
  EXPECT_EQ(StripAnsi("\x1bPdevice control\x1b\\after"), "after");
}

TEST(StripAnsiTest, LoneAndUnterminatedEscapes) {
  EXPECT_EQ(StripAnsi("end\x1b"), "end");
  EXPECT_EQ(StripAnsi("a\x1b\nb"), "a\nb");
  EXPECT_EQ(StripAnsi("x\x1b[31"), "x");
  EXPECT_EQ(StripAnsi("\x1b]unterminated title\nnext line"), "\nnext line");
  EXPECT_EQ(StripAnsi("caf\xC3\xA9 \x1b[1m\xE2\x9C\x93\x1b[0m"), "caf\xC3\xA9 \xE2\x9C\x93");
}

TEST(StripAnsiTest, RealIpythonTraceback) {
  std::string stripped;
  for (const std::string& line : kIpythonTraceback) stripped += StripAnsi(line) + "\n";
  EXPECT_THAT(stripped, Not(HasSubstr("\x1b")));
  EXPECT_THAT(stripped, HasSubstr("----> 3 f(0)\n"));
  EXPECT_THAT(stripped, HasSubstr("      1 def f(x): return 1/x\n"));
  EXPECT_THAT(stripped, HasSubstr("File <stdin>:4, in f(x)\n"));
  EXPECT_THAT(stripped, HasSubstr("\nZeroDivisionError: division by zero\n"));
}

TEST(ResolveOverwritesTest, ProgressBarCollapsesToLastState) {
  EXPECT_EQ(ResolveOverwrites("\r  0%|          |\r 50%|#####     |\r100%|##########|\n"),
            "100%|##########|\n");
  EXPECT_EQ(ResolveOverwrites("start\n10%\r20%\r30%\ndone\n"), "start\n30%\ndone\n");
}

TEST(ResolveOverwritesTest, TrailingCarriageReturnKeepsLastText) {
  EXPECT_EQ(ResolveOverwrites("loading 99%\r"), "loading 99%");
  EXPECT_EQ(ResolveOverwrites("a\r\r\nb"), "a\nb");
  EXPECT_EQ(ResolveOverwrites("windows\r\nlines\r\n"), "windows\nlines\n");
}

TEST(ResolveOverwritesTest, LinesWithoutControlCharactersAreKeptAsTheyAre) {
  EXPECT_EQ(ResolveOverwrites(""), "");
  EXPECT_EQ(ResolveOverwrites("\n\n"), "\n\n");
  EXPECT_EQ(ResolveOverwrites("plain\nx\r\rdone\nlast"), "plain\ndone\nlast");
  const std::string big = std::string(1 << 20, 'x') + "\n";
  EXPECT_EQ(ResolveOverwrites(big + big), big + big);
  EXPECT_EQ(StripAnsi(big + "\x1b[1m" + big), big + big);
}

TEST(ResolveOverwritesTest, Backspace) {
  EXPECT_EQ(ResolveOverwrites("abc\b\bd"), "ad");
  EXPECT_EQ(ResolveOverwrites("\b\bx"), "x");
  EXPECT_EQ(ResolveOverwrites("caf\xC3\xA9\bx"), "cafx");  // erases the whole character
  EXPECT_EQ(ResolveOverwrites("a\n\bb"), "a\nb");          // not across lines
}

TEST(RenderResultTextTest, StreamsResultsAndDisplays) {
  const std::string text =
      Render({Stream(v1::STREAM_NAME_STDOUT, "hello\nworld"),
              Stream(v1::STREAM_NAME_STDERR, "\x1b[31mwarning\x1b[0m\n"),
              Bundle({{"text/plain", "42"}, {"text/html", "<b>42</b>"}}, /*result=*/true)});
  EXPECT_EQ(text, "hello\nworld\nwarning\n42\n");
}

TEST(RenderResultTextTest, ProgressBarInStreamCollapses) {
  EXPECT_EQ(Render({Stream(v1::STREAM_NAME_STDERR,
                           "\r  0%|          | 0/10\x1b[K\r 50%|#####     | 5/10\x1b[K"
                           "\r100%|##########| 10/10\x1b[K\n")}),
            "100%|##########| 10/10\n");
  // Overwrites without any escape sequence, in a stream and in a result's text/plain.
  EXPECT_EQ(Render({Stream(v1::STREAM_NAME_STDOUT, "1/3\r2/3\r3/3\nab\bc\n"),
                    Bundle({{"text/plain", "x\ry"}}, /*result=*/true)}),
            "3/3\nac\ny\n");
}

TEST(RenderResultTextTest, PngPlaceholderHasDimensions) {
  EXPECT_EQ(BinaryPlaceholder("image/png", kPng3x2), "[image/png 3x2]");
  // Line breaks in base64 are ignored.
  const std::string wrapped =
      absl::StrCat(std::string(kPng3x2).substr(0, 20), "\n", std::string(kPng3x2).substr(20), "\n");
  EXPECT_EQ(BinaryPlaceholder("image/png", wrapped), "[image/png 3x2]");
  EXPECT_EQ(
      Render({Bundle({{"image/png", kPng3x2}, {"text/plain", "<Figure size 3x2 with 0 Axes>"}})}),
      "<Figure size 3x2 with 0 Axes>\n[image/png 3x2]\n");
  EXPECT_EQ(Render({Bundle({{"image/png", kPng3x2}})}), "[image/png 3x2]\n");
}

TEST(RenderResultTextTest, JpegAndGifPlaceholdersHaveDimensions) {
  EXPECT_EQ(BinaryPlaceholder("image/jpeg", kJpeg5x4), "[image/jpeg 5x4]");
  EXPECT_EQ(BinaryPlaceholder("image/gif", kGif7x3), "[image/gif 7x3]");
}

TEST(RenderResultTextTest, UnknownOrBrokenBinaryGivesByteCount) {
  EXPECT_EQ(BinaryPlaceholder("image/webp", "AAAAAAAA"), "[image/webp 6 bytes]");
  EXPECT_EQ(BinaryPlaceholder("image/png", "AAAAAAAAAAA="), "[image/png 8 bytes]");
  EXPECT_EQ(BinaryPlaceholder("image/jpeg", "!!notbase64!!!"), "[image/jpeg 10 bytes]");
  EXPECT_EQ(BinaryPlaceholder("application/pdf", ""), "[application/pdf 0 bytes]");
}

TEST(RenderResultTextTest, RichOnlyBundleGetsPlaceholderOfRichestType) {
  EXPECT_EQ(Render({Bundle({{"text/html", "<table/>"}, {"application/json", "{}"}})}),
            "[text/html]\n");
  EXPECT_EQ(Render({Bundle({{"application/vnd.custom", "x"}, {"application/b", "y"}})}),
            "[application/b]\n");
  EXPECT_EQ(Render({Bundle({})}), "");
}

TEST(RenderResultTextTest, ErrorWithIpythonTraceback) {
  const std::string text =
      Render({Stream(v1::STREAM_NAME_STDOUT, "before\n"),
              Error("ZeroDivisionError", "division by zero", kIpythonTraceback)});
  EXPECT_THAT(text, Not(HasSubstr("\x1b")));
  EXPECT_EQ(text.rfind("before\nZeroDivisionError: division by zero\n----", 0), 0u) << text;
  EXPECT_THAT(text, HasSubstr("----> 3 f(0)\n"));
  // The last traceback line repeats the header and is left out.
  EXPECT_EQ(text.find("ZeroDivisionError: division by zero"),
            text.rfind("ZeroDivisionError: division by zero"));
  EXPECT_TRUE(absl::EndsWith(text, "\nFile <stdin>:4, in f(x)\n")) << text;
}

TEST(RenderResultTextTest, ErrorWithoutTraceback) {
  EXPECT_EQ(Render({Error("KeyboardInterrupt", "", {})}), "KeyboardInterrupt\n");
  EXPECT_EQ(Render({Error("E", "v", {"custom tb"})}), "E: v\ncustom tb\n");
}

TEST(RenderResultTextTest, TruncationKeepsHeadAndTail) {
  std::string long_text;
  for (int i = 0; i < 1000; ++i) absl::StrAppend(&long_text, "line ", i, "\n");
  bool truncated = false;
  const std::string text =
      Render({Stream(v1::STREAM_NAME_STDOUT, long_text)}, /*max_bytes=*/200, &truncated);
  EXPECT_TRUE(truncated);
  EXPECT_LE(text.size(), 200u);
  EXPECT_EQ(text.rfind("line 0\nline 1\n", 0), 0u) << text;
  EXPECT_EQ(text.substr(text.size() - 9), "line 999\n");
  EXPECT_THAT(text, HasSubstr("\n[... "));
  EXPECT_THAT(text, HasSubstr(" bytes truncated ...]\nline "));
  // The marker says exactly how much is missing.
  const size_t marker = text.find("[... ");
  const size_t marker_end = text.find("]\n", marker) + 2;
  const size_t omitted = std::stoul(text.substr(marker + 5));
  EXPECT_EQ(long_text.size(), text.size() - (marker_end - marker) + omitted);
}

TEST(RenderResultTextTest, TruncationNeverSplitsUtf8) {
  std::string long_text;
  for (int i = 0; i < 300; ++i) long_text += "\xE2\x9C\x93";  // no newlines at all
  bool truncated = false;
  const std::string text =
      Render({Stream(v1::STREAM_NAME_STDOUT, long_text)}, /*max_bytes=*/101, &truncated);
  EXPECT_TRUE(truncated);
  EXPECT_LE(text.size(), 101u);
  const size_t marker = text.find("\n[... ");
  ASSERT_NE(marker, std::string::npos);
  EXPECT_EQ(marker % 3, 0u);
  const size_t tail = text.find("]\n") + 2;
  EXPECT_EQ((text.size() - 1 - tail) % 3, 0u);  // the rendering ends with a newline
  EXPECT_EQ(text.substr(tail, 3), "\xE2\x9C\x93");
}

// A result cut to fit is the whole rendering's head, a marker counting exactly the bytes left
// out, and its tail: whatever the outputs (only the head and tail of a long rendering are
// kept while rendering, so the cut is checked against the rendering without a limit).
TEST(RenderResultTextTest, ACutResultIsTheWholeRenderingsHeadAndTail) {
  std::string progress;
  for (int i = 0; i <= 100; ++i) absl::StrAppend(&progress, "\r\x1b[32m", i, "%\x1b[0m");
  std::string lines;
  for (int i = 0; i < 3000; ++i) absl::StrAppend(&lines, "line \xE2\x9C\x93 ", i, "\n");
  const std::vector<std::vector<v1::Output>> cases = {
      {Stream(v1::STREAM_NAME_STDOUT, lines)},
      {Stream(v1::STREAM_NAME_STDOUT, std::string(100000, 'x'))},
      {Stream(v1::STREAM_NAME_STDOUT, "head\n"), Stream(v1::STREAM_NAME_STDERR, progress + "\n"),
       Stream(v1::STREAM_NAME_STDOUT, lines), Bundle({{"text/plain", "42"}}, /*result=*/true),
       Error("E", "v", {"\x1b[31mtraceback\x1b[0m"})},
      {Stream(v1::STREAM_NAME_STDOUT, lines), Stream(v1::STREAM_NAME_STDOUT, "no newline"),
       Stream(v1::STREAM_NAME_STDOUT, std::string(300, 'y'))},
  };
  for (size_t c = 0; c < cases.size(); ++c) {
    const std::string whole = Render(cases[c]);
    for (const size_t max_bytes : {60u, 101u, 200u, 1000u, 65536u}) {
      SCOPED_TRACE(absl::StrCat("case ", c, ", max_bytes ", max_bytes));
      bool truncated = false;
      const std::string text = Render(cases[c], max_bytes, &truncated);
      EXPECT_EQ(truncated, whole.size() > max_bytes);
      if (!truncated) {
        EXPECT_EQ(text, whole);
        continue;
      }
      EXPECT_LE(text.size(), max_bytes);
      const size_t marker = text.find("[... ");
      if (marker == std::string::npos) {  // too small for a marker: a prefix only
        EXPECT_TRUE(absl::StartsWith(whole, text));
        continue;
      }
      const size_t marker_end = text.find(" bytes truncated ...]\n", marker) + 22;
      const size_t omitted = std::stoul(text.substr(marker + 5));
      std::string head = text.substr(0, marker);
      if (!absl::StartsWith(whole, head)) head.pop_back();  // the newline added before the marker
      const std::string tail = text.substr(marker_end);
      EXPECT_TRUE(absl::StartsWith(whole, head));
      EXPECT_TRUE(absl::EndsWith(whole, tail));
      EXPECT_EQ(head.size() + omitted + tail.size(), whole.size());
    }
  }
}

TEST(RenderResultTextTest, NoTruncationWithinLimit) {
  bool truncated = true;
  EXPECT_EQ(Render({Stream(v1::STREAM_NAME_STDOUT, "short\n")}, 6, &truncated), "short\n");
  EXPECT_FALSE(truncated);
  truncated = true;
  EXPECT_EQ(Render({Stream(v1::STREAM_NAME_STDOUT, std::string(5000, 'x'))}, 0, &truncated).size(),
            5001u);
  EXPECT_FALSE(truncated);
}

TEST(ErrorInfoFromOutputTest, StripsAnsiLineByLine) {
  v1::ErrorOutput error;
  error.set_ename("ZeroDivisionError");
  error.set_evalue("division by zero");
  for (const std::string& line : kIpythonTraceback) error.add_traceback(line);
  const v1::ErrorInfo info = ErrorInfoFromOutput(error);
  EXPECT_EQ(info.ename(), "ZeroDivisionError");
  EXPECT_EQ(info.evalue(), "division by zero");
  ASSERT_EQ(info.traceback_size(), error.traceback_size());
  for (const std::string& line : info.traceback()) EXPECT_THAT(line, Not(HasSubstr("\x1b")));
  EXPECT_EQ(info.traceback(4), "ZeroDivisionError: division by zero");
  EXPECT_EQ(info.traceback(0), std::string(75, '-'));
}

}  // namespace
}  // namespace cellgate::notebook
