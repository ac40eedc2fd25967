#include "server/notebook/output_list.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellgate::notebook {
namespace {

using ::testing::HasSubstr;

v1::Output Stream(v1::StreamName name, const std::string& text) {
  v1::Output output;
  output.mutable_stream()->set_name(name);
  output.mutable_stream()->set_text(text);
  return output;
}

v1::Output Stdout(const std::string& text) { return Stream(v1::STREAM_NAME_STDOUT, text); }
v1::Output Stderr(const std::string& text) { return Stream(v1::STREAM_NAME_STDERR, text); }

v1::Output Display(const std::string& plain, const std::string& display_id = "") {
  v1::Output output;
  (*output.mutable_display_data()->mutable_data())["text/plain"] = plain;
  output.mutable_display_data()->set_display_id(display_id);
  return output;
}

v1::Output Result(const std::string& plain) {
  v1::Output output;
  (*output.mutable_execute_result()->mutable_data())["text/plain"] = plain;
  output.mutable_execute_result()->set_execution_count(1);
  return output;
}

v1::DisplayUpdate Update(const std::string& display_id, const std::string& plain) {
  v1::DisplayUpdate update;
  update.set_display_id(display_id);
  (*update.mutable_data())["text/plain"] = plain;
  update.set_metadata(R"({"updated":true})");
  return update;
}

// A compact description of the outputs, e.g. "out:ab|err:c|display:x".
std::string Describe(const OutputList& list) {
  std::string description;
  for (const v1::Output& output : list.outputs()) {
    if (!description.empty()) description += "|";
    if (output.has_stream()) {
      description += output.stream().name() == v1::STREAM_NAME_STDOUT ? "out:" : "err:";
      description += output.stream().text();
    } else if (output.has_display_data()) {
      description += "display:" + output.display_data().data().at("text/plain");
    } else if (output.has_execute_result()) {
      description += "result:" + output.execute_result().data().at("text/plain");
    } else if (output.has_error()) {
      description += "error:" + output.error().ename();
    }
  }
  return description;
}

TEST(OutputListTest, SameNameStreamsMerge) {
  OutputList list(0);
  EXPECT_TRUE(list.Append(Stdout("a")));
  EXPECT_TRUE(list.Append(Stdout("b\n")));
  EXPECT_TRUE(list.Append(Stdout("c")));
  EXPECT_EQ(Describe(list), "out:ab\nc");
  EXPECT_EQ(list.size_bytes(), 4);
}

TEST(OutputListTest, DifferentNamesDoNotMerge) {
  OutputList list(0);
  list.Append(Stdout("a"));
  list.Append(Stderr("b"));
  EXPECT_EQ(Describe(list), "out:a|err:b");
}

TEST(OutputListTest, InterleavedStreamsMergeOnlyWhenConsecutive) {
  OutputList list(0);
  list.Append(Stdout("1"));
  list.Append(Stdout("2"));
  list.Append(Stderr("3"));
  list.Append(Stderr("4"));
  list.Append(Stdout("5"));
  list.Append(Display("d"));
  list.Append(Stdout("6"));
  list.Append(Stdout("7"));
  EXPECT_EQ(Describe(list), "out:12|err:34|out:5|display:d|out:67");
}

TEST(OutputListTest, ClearNow) {
  OutputList list(0);
  list.Append(Stdout("a"));
  list.Append(Display("d"));
  list.Clear(/*wait=*/false);
  EXPECT_TRUE(list.outputs().empty());
  EXPECT_EQ(list.size_bytes(), 0);
  list.Append(Stdout("b"));
  EXPECT_EQ(Describe(list), "out:b");
}

TEST(OutputListTest, ClearWaitClearsAtNextOutput) {
  OutputList list(0);
  list.Append(Stdout("frame 1"));
  list.Clear(/*wait=*/true);
  EXPECT_TRUE(list.clear_pending());
  EXPECT_EQ(Describe(list), "out:frame 1");  // still there until the next output
  list.Append(Stdout("frame 2"));
  EXPECT_FALSE(list.clear_pending());
  EXPECT_EQ(Describe(list), "out:frame 2");  // cleared, not merged with frame 1
  EXPECT_EQ(list.size_bytes(), 7);
}

TEST(OutputListTest, ClearWaitIsNotTriggeredByDisplayUpdate) {
  OutputList list(0);
  list.Append(Display("old", "d"));
  list.Clear(/*wait=*/true);
  EXPECT_TRUE(list.UpdateDisplay(Update("d", "new")));
  EXPECT_EQ(Describe(list), "display:new");
  EXPECT_TRUE(list.clear_pending());
  list.Append(Result("r"));
  EXPECT_EQ(Describe(list), "result:r");
}

TEST(OutputListTest, UpdateDisplayReplacesEveryMatch) {
  OutputList list(0);
  list.Append(Display("a", "d1"));
  list.Append(Display("b", "d2"));
  list.Append(Display("c", "d1"));
  list.Append(Result("d1"));
  EXPECT_TRUE(list.UpdateDisplay(Update("d1", "X")));
  EXPECT_EQ(Describe(list), "display:X|display:b|display:X|result:d1");
  EXPECT_EQ(list.outputs()[0].display_data().metadata(), R"({"updated":true})");
  EXPECT_EQ(list.outputs()[1].display_data().metadata(), "");
  EXPECT_FALSE(list.UpdateDisplay(Update("nope", "Y")));
  EXPECT_FALSE(list.UpdateDisplay(Update("", "Y")));
  EXPECT_EQ(list.size_bytes(), 4 * 10 + 1 + 1 + 1 + 2 + 2 * 16);  // keys, values, metadata
}

TEST(OutputListTest, UpdateDisplayReplacesTheWholeBundle) {
  OutputList list(0);
  v1::Output display = Display("old", "d");
  (*display.mutable_display_data()->mutable_data())["text/html"] = "<b>old</b>";
  list.Append(display);
  list.UpdateDisplay(Update("d", "new"));
  EXPECT_EQ(list.outputs()[0].display_data().data_size(), 1);
}

TEST(OutputListTest, CapDropsOutputsAndAddsMarkerOnce) {
  OutputList list(20);
  EXPECT_TRUE(list.Append(Result("0123456789")));  // 10 + 10 ("text/plain") = 20 bytes
  EXPECT_FALSE(list.truncated());
  EXPECT_FALSE(list.Append(Display("x")));
  EXPECT_TRUE(list.truncated());
  EXPECT_FALSE(list.Append(Display("y")));
  EXPECT_FALSE(list.Append(Stdout("z")));
  ASSERT_EQ(list.outputs().size(), 2);
  EXPECT_EQ(list.outputs()[1].stream().name(), v1::STREAM_NAME_STDERR);
  EXPECT_EQ(list.outputs()[1].stream().text(),
            "[... output truncated: cap of 20 bytes reached ...]\n");
  EXPECT_EQ(list.size_bytes(), 20);
}

TEST(OutputListTest, StreamCrossingTheCapIsCutToFit) {
  OutputList list(10);
  list.Append(Stdout("12345"));
  EXPECT_TRUE(list.Append(Stdout("6789abcdef")));
  EXPECT_TRUE(list.truncated());
  EXPECT_EQ(list.size_bytes(), 10);
  EXPECT_EQ(Describe(list),
            "out:123456789a|err:[... output truncated: cap of 10 bytes reached ...]\n");
}

TEST(OutputListTest, StreamCutNeverSplitsUtf8) {
  OutputList list(4);
  list.Append(Stdout("ab\xC3\xA9\xC3\xA9"));  // "abéé": é is 2 bytes
  EXPECT_TRUE(list.truncated());
  EXPECT_EQ(list.outputs()[0].stream().text(), "ab\xC3\xA9");
  OutputList tight(3);
  tight.Append(Stdout("ab\xC3\xA9"));
  EXPECT_EQ(tight.outputs()[0].stream().text(), "ab");
  EXPECT_EQ(tight.size_bytes(), 2);
}

TEST(OutputListTest, MarkerMergesIntoTrailingStderr) {
  OutputList list(6);
  list.Append(Stderr("warn"));
  list.Append(Stderr("ing!!!"));
  ASSERT_EQ(list.outputs().size(), 1);
  EXPECT_EQ(list.outputs()[0].stream().text(),
            "warnin\n[... output truncated: cap of 6 bytes reached ...]\n");
}

TEST(OutputListTest, MarkerIsAddedEvenWhenNothingOfTheStreamFits) {
  OutputList list(3);
  list.Append(Stdout("abc"));
  EXPECT_FALSE(list.truncated());
  EXPECT_FALSE(list.Append(Stdout("d")));
  EXPECT_TRUE(list.truncated());
  EXPECT_EQ(Describe(list), "out:abc|err:[... output truncated: cap of 3 bytes reached ...]\n");
}

TEST(OutputListTest, AppendingAKeptOutputStoresWhatAppendingItsValueDoes) {
  // Append(const Output&) copies only what fits; the list must end the same as with a moved
  // output, and the caller's output is left whole.
  const std::vector<v1::Output> sequence = {
      Stdout("12345"), Stdout("ab\xC3\xA9\xC3\xA9xyz"), Stderr("late"), Display("dropped"),
      Result("r")};
  for (int64_t cap : {0, 3, 6, 8, 12, 100}) {
    OutputList moved(cap);
    OutputList copied(cap);
    for (const v1::Output& output : sequence) {
      const v1::Output before = output;
      EXPECT_EQ(copied.Append(output), moved.Append(v1::Output(output))) << cap;
      EXPECT_EQ(output.SerializeAsString(), before.SerializeAsString());
      EXPECT_EQ(Describe(copied), Describe(moved)) << cap;
      EXPECT_EQ(copied.size_bytes(), moved.size_bytes()) << cap;
      EXPECT_EQ(copied.truncated(), moved.truncated()) << cap;
    }
    copied.Clear(/*wait=*/true);
    moved.Clear(/*wait=*/true);
    EXPECT_EQ(copied.Append(sequence[0]), moved.Append(v1::Output(sequence[0])));
    EXPECT_EQ(Describe(copied), Describe(moved)) << cap;
  }
}

TEST(OutputListTest, ClearEndsTruncation) {
  OutputList list(5);
  list.Append(Stdout("123456"));
  EXPECT_TRUE(list.truncated());
  list.Clear(/*wait=*/true);
  EXPECT_TRUE(list.truncated());
  EXPECT_TRUE(list.Append(Stdout("abc")));
  EXPECT_FALSE(list.truncated());
  EXPECT_EQ(Describe(list), "out:abc");
}

TEST(OutputListTest, UpdateOverTheCapIsNotApplied) {
  OutputList list(30);
  list.Append(Display("small", "d"));  // 15 bytes
  EXPECT_TRUE(list.UpdateDisplay(Update("d", std::string(40, 'x'))));
  EXPECT_TRUE(list.truncated());
  EXPECT_EQ(list.outputs()[0].display_data().data().at("text/plain"), "small");
  EXPECT_EQ(list.size_bytes(), 15);
  EXPECT_THAT(list.outputs()[1].stream().text(), HasSubstr("output truncated"));
}

TEST(OutputListTest, ResetForgetsEverything) {
  OutputList list(5);
  list.Append(Stdout("123456"));
  list.Clear(true);
  list.Reset();
  EXPECT_TRUE(list.outputs().empty());
  EXPECT_FALSE(list.truncated());
  EXPECT_FALSE(list.clear_pending());
  EXPECT_EQ(list.size_bytes(), 0);
}

TEST(OutputListTest, TakeOutputsGivesThemAwayAndResets) {
  OutputList list(5);
  list.Append(Stdout("12"));
  list.Append(Stderr("345678"));  // cut to fit: truncated
  ASSERT_TRUE(list.truncated());
  const google::protobuf::RepeatedPtrField<v1::Output> before = list.outputs();
  google::protobuf::RepeatedPtrField<v1::Output> taken = list.TakeOutputs();
  ASSERT_EQ(taken.size(), before.size());
  for (int i = 0; i < taken.size(); ++i) EXPECT_EQ(taken[i].DebugString(), before[i].DebugString());
  EXPECT_TRUE(list.outputs().empty());
  EXPECT_FALSE(list.truncated());
  EXPECT_EQ(list.size_bytes(), 0);
  EXPECT_TRUE(list.Append(Stdout("abcde"))) << "the whole budget is available again";
}

TEST(OutputListTest, OutputBytes) {
  v1::Output error;
  error.mutable_error()->set_ename("E");
  error.mutable_error()->set_evalue("vv");
  error.mutable_error()->add_traceback("ttt");
  EXPECT_EQ(OutputList::OutputBytes(error), 6);
  EXPECT_EQ(OutputList::OutputBytes(Stdout("abcd")), 4);
  EXPECT_EQ(OutputList::OutputBytes(Display("ab")), 12);
  EXPECT_EQ(OutputList::OutputBytes(v1::Output()), 0);
}

}  // namespace
}  // namespace cellgate::notebook
