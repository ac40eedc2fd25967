#include "server/notebook/iopub_output.h"

#include <string>
#include <variant>
#include <vector>

#include <simdjson.h>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "server/notebook/json_view.h"
#include "server/notebook/output_reader.h"

namespace cellgate::notebook {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Json = nlohmann::json;

constexpr size_t kMaxDepth = 64;

// `text` as received from a kernel: with spare capacity after it, so it is parsed where it lies.
std::string Padded(const std::string& text) {
  std::string padded;
  padded.reserve(text.size() + simdjson::SIMDJSON_PADDING);
  padded.append(text);
  return padded;
}

// ParseIopubOutputText of `text` in every way it is called: unpadded, padded, and padded and
// given up (decoded in place). Each must give `expected`'s effect or its error.
void ExpectTextReadsAs(const std::string& msg_type, const std::string& text,
                       const absl::StatusOr<IopubEffect>& expected) {
  const std::string padded = Padded(text);
  std::vector<absl::StatusOr<IopubEffect>> results;
  results.push_back(ParseIopubOutputText(msg_type, text, kMaxDepth));
  results.push_back(ParseIopubOutputText(msg_type, padded, kMaxDepth));
  results.push_back(ParseIopubOutputText(msg_type, Padded(text), kMaxDepth));  // an rvalue
  for (size_t way = 0; way < results.size(); ++way) {
    EXPECT_EQ(results[way].status(), expected.status()) << "way " << way << ": " << text;
    if (results[way].ok() && expected.ok()) {
      EXPECT_TRUE(SameIopubEffect(*results[way], *expected))
          << "way " << way << ": " << msg_type << " " << text;
    }
  }
}

// ParseIopubOutput of the DOM, checked against ParseIopubOutputText of the same content as
// text (how the kernel hands output over): same effect or same error.
absl::StatusOr<IopubEffect> ParseBoth(const std::string& msg_type, const Json& content) {
  absl::StatusOr<IopubEffect> from_dom = ParseIopubOutput(msg_type, content);
  ExpectTextReadsAs(msg_type, content.dump(-1, ' ', false, Json::error_handler_t::replace),
                    from_dom);
  return from_dom;
}

v1::Output ParseOutput(const std::string& msg_type, const Json& content) {
  absl::StatusOr<IopubEffect> effect = ParseBoth(msg_type, content);
  EXPECT_TRUE(effect.ok()) << effect.status();
  if (!effect.ok() || !std::holds_alternative<v1::Output>(*effect)) {
    ADD_FAILURE() << msg_type << " did not give an Output";
    return v1::Output();
  }
  return std::get<v1::Output>(*effect);
}

absl::Status ParseError(const std::string& msg_type, const Json& content) {
  return ParseBoth(msg_type, content).status();
}

// OutputFromNbformat over both JSON views: the nlohmann DOM, and simdjson's DOM of the same
// text. They must agree (same output or same error); the nlohmann one is returned.
absl::StatusOr<v1::Output> OutputFromNbformat(const Json& json) {
  absl::StatusOr<v1::Output> from_nlohmann = notebook::OutputFromNbformat(NlohmannJsonView(json));
  simdjson::dom::parser parser;
  simdjson::dom::element element;
  const std::string text = json.dump();
  if (parser.parse(text).get(element) != simdjson::SUCCESS) {
    ADD_FAILURE() << "simdjson does not parse " << text;
    return from_nlohmann;
  }
  absl::StatusOr<v1::Output> from_simdjson = notebook::OutputFromNbformat(SimdjsonView(element));
  EXPECT_EQ(from_simdjson.status(), from_nlohmann.status()) << text;
  if (from_simdjson.ok() && from_nlohmann.ok()) {
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*from_simdjson, *from_nlohmann))
        << text << "\nsimdjson: " << from_simdjson->DebugString()
        << "\nnlohmann: " << from_nlohmann->DebugString();
  }
  return from_nlohmann;
}

TEST(ParseIopubOutputTest, StreamStdoutAndStderr) {
  v1::Output out = ParseOutput("stream", {{"name", "stdout"}, {"text", "hello\n"}});
  ASSERT_TRUE(out.has_stream());
  EXPECT_EQ(out.stream().name(), v1::STREAM_NAME_STDOUT);
  EXPECT_EQ(out.stream().text(), "hello\n");

  out = ParseOutput("stream", {{"name", "stderr"}, {"text", Json::array({"a\n", "b"})}});
  EXPECT_EQ(out.stream().name(), v1::STREAM_NAME_STDERR);
  EXPECT_EQ(out.stream().text(), "a\nb");
}

TEST(ParseIopubOutputTest, DisplayDataWithDisplayIdAndMetadata) {
  const Json content = {{"data", {{"text/plain", "<Figure>"}, {"image/png", "iVBORw0KGgo="}}},
                        {"metadata", {{"image/png", {{"width", 640}}}}},
                        {"transient", {{"display_id", "abc123"}}}};
  const v1::Output out = ParseOutput("display_data", content);
  ASSERT_TRUE(out.has_display_data());
  const v1::DisplayData& display = out.display_data();
  EXPECT_EQ(display.data().at("text/plain"), "<Figure>");
  EXPECT_EQ(display.data().at("image/png"), "iVBORw0KGgo=");
  EXPECT_EQ(display.data_size(), 2);
  EXPECT_EQ(Json::parse(display.metadata()), content["metadata"]);
  EXPECT_EQ(display.display_id(), "abc123");
}

TEST(ParseIopubOutputTest, EmptyOrAbsentMetadataIsEmptyString) {
  v1::Output out = ParseOutput("display_data", {{"data", {{"text/plain", "x"}}}, {"metadata", {}}});
  EXPECT_THAT(out.display_data().metadata(), IsEmpty());
  EXPECT_THAT(out.display_data().display_id(), IsEmpty());
  out =
      ParseOutput("display_data", {{"data", {{"text/plain", "x"}}}, {"metadata", Json::object()}});
  EXPECT_THAT(out.display_data().metadata(), IsEmpty());
  out = ParseOutput("display_data", {{"data", {{"text/plain", "x"}}}});
  EXPECT_THAT(out.display_data().metadata(), IsEmpty());
}

TEST(ParseIopubOutputTest, ExecuteResult) {
  const v1::Output out = ParseOutput(
      "execute_result",
      {{"execution_count", 7}, {"data", {{"text/plain", "42"}}}, {"metadata", Json::object()}});
  ASSERT_TRUE(out.has_execute_result());
  EXPECT_EQ(out.execute_result().execution_count(), 7);
  EXPECT_EQ(out.execute_result().data().at("text/plain"), "42");
  EXPECT_THAT(out.execute_result().metadata(), IsEmpty());
}

TEST(ParseIopubOutputTest, Error) {
  const v1::Output out = ParseOutput("error", {{"ename", "ZeroDivisionError"},
                                               {"evalue", "division by zero"},
                                               {"traceback", {"\x1b[0;31mline1\x1b[0m", "line2"}}});
  ASSERT_TRUE(out.has_error());
  EXPECT_EQ(out.error().ename(), "ZeroDivisionError");
  EXPECT_EQ(out.error().evalue(), "division by zero");
  // Kept as sent: ANSI escapes are stripped only in ErrorInfo.
  EXPECT_THAT(out.error().traceback(), ElementsAre("\x1b[0;31mline1\x1b[0m", "line2"));
}

TEST(ParseIopubOutputTest, MimeBundleValues) {
  const Json content = {{"data",
                         {{"text/plain", "plain"},
                          {"text/html", Json::array({"<b>\n", "bold</b>"})},
                          {"application/json", {{"a", 1}, {"b", Json::array({true, nullptr})}}},
                          {"application/vnd.plotly.v1+json", {{"data", Json::array()}}},
                          {"application/json+extra", "not json mime"},
                          {"application/x-weird", 12.5},
                          {"text/x-list", Json::array({1, 2})}}},
                        {"metadata", Json::object()}};
  const v1::Output out = ParseOutput("display_data", content);
  const auto& data = out.display_data().data();
  EXPECT_EQ(data.at("text/plain"), "plain");
  EXPECT_EQ(data.at("text/html"), "<b>\nbold</b>");
  EXPECT_EQ(Json::parse(data.at("application/json")), content["data"]["application/json"]);
  EXPECT_EQ(data.at("application/json"), R"({"a":1,"b":[true,null]})");
  EXPECT_EQ(data.at("application/vnd.plotly.v1+json"), R"({"data":[]})");
  EXPECT_EQ(data.at("application/json+extra"), "not json mime");
  EXPECT_EQ(data.at("application/x-weird"), "12.5");
  EXPECT_EQ(data.at("text/x-list"), "[1,2]");
}

TEST(ParseIopubOutputTest, JsonMimeStringValueIsSerializedAsJson) {
  const v1::Output out =
      ParseOutput("display_data", {{"data", {{"application/json", "just a string"}}}});
  EXPECT_EQ(out.display_data().data().at("application/json"), "\"just a string\"");
}

TEST(ParseIopubOutputTest, UpdateDisplayData) {
  absl::StatusOr<IopubEffect> effect =
      ParseIopubOutput("update_display_data", {{"data", {{"text/plain", "new"}}},
                                               {"metadata", {{"k", "v"}}},
                                               {"transient", {{"display_id", "d1"}}}});
  ASSERT_TRUE(effect.ok()) << effect.status();
  ASSERT_TRUE(std::holds_alternative<v1::DisplayUpdate>(*effect));
  const auto& update = std::get<v1::DisplayUpdate>(*effect);
  EXPECT_EQ(update.display_id(), "d1");
  EXPECT_EQ(update.data().at("text/plain"), "new");
  EXPECT_EQ(update.metadata(), R"({"k":"v"})");
}

TEST(ParseIopubOutputTest, UpdateDisplayDataWithoutDisplayIdIsInvalid) {
  const absl::Status status =
      ParseError("update_display_data", {{"data", {{"text/plain", "new"}}}});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("display_id"));
}

TEST(ParseIopubOutputTest, ClearOutput) {
  for (const bool wait : {true, false}) {
    absl::StatusOr<IopubEffect> effect = ParseIopubOutput("clear_output", {{"wait", wait}});
    ASSERT_TRUE(effect.ok()) << effect.status();
    ASSERT_TRUE(std::holds_alternative<v1::ClearOutput>(*effect));
    EXPECT_EQ(std::get<v1::ClearOutput>(*effect).wait(), wait);
  }
  absl::StatusOr<IopubEffect> effect = ParseIopubOutput("clear_output", Json::object());
  ASSERT_TRUE(effect.ok());
  EXPECT_FALSE(std::get<v1::ClearOutput>(*effect).wait());
}

TEST(ParseIopubOutputTest, NonOutputMessagesGiveMonostate) {
  for (const char* type : {"status", "execute_input", "comm_open", "comm_msg", "comm_close",
                           "shutdown_reply", "debug_event"}) {
    absl::StatusOr<IopubEffect> effect = ParseIopubOutput(type, Json("anything"));
    ASSERT_TRUE(effect.ok()) << type;
    EXPECT_TRUE(std::holds_alternative<std::monostate>(*effect)) << type;
  }
}

TEST(ParseIopubOutputTest, MalformedContentIsInvalidArgument) {
  struct Case {
    std::string msg_type;
    Json content;
    std::string field;
  };
  const Case cases[] = {
      {"stream", Json::array(), "content"},
      {"stream", {{"text", "x"}}, "name"},
      {"stream", {{"name", "stdlog"}, {"text", "x"}}, "name"},
      {"stream", {{"name", "stdout"}}, "text"},
      {"stream", {{"name", "stdout"}, {"text", 5}}, "text"},
      {"stream", {{"name", "stdout"}, {"text", Json::array({"a", 1})}}, "text"},
      {"display_data", {{"metadata", Json::object()}}, "data"},
      {"display_data", {{"data", "text"}}, "data"},
      {"display_data", {{"data", Json::object()}, {"metadata", 3}}, "metadata"},
      {"display_data",
       {{"data", Json::object()}, {"transient", {{"display_id", 3}}}},
       "display_id"},
      {"execute_result", {{"data", Json::object()}, {"execution_count", "1"}}, "execution_count"},
      {"execute_result", {{"data", Json::object()}, {"execution_count", -1}}, "execution_count"},
      {"execute_result",
       {{"data", Json::object()}, {"execution_count", 1ll << 40}},
       "execution_count"},
      {"error", {{"evalue", "v"}, {"traceback", Json::array()}}, "ename"},
      {"error", {{"ename", "E"}, {"evalue", "v"}, {"traceback", "tb"}}, "traceback"},
      {"error", {{"ename", "E"}, {"evalue", "v"}, {"traceback", {1}}}, "traceback"},
      {"clear_output", {{"wait", "yes"}}, "wait"},
  };
  for (const Case& c : cases) {
    const absl::Status status = ParseError(c.msg_type, c.content);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << c.msg_type << " " << c.content.dump();
    EXPECT_THAT(status.message(), HasSubstr(c.field)) << c.content.dump();
  }
}

TEST(ParseIopubOutputTextTest, NonOutputMessagesAreNotParsed) {
  for (const char* type : {"status", "execute_input", "comm_msg"}) {
    absl::StatusOr<IopubEffect> effect = ParseIopubOutputText(type, "not json", kMaxDepth);
    ASSERT_TRUE(effect.ok()) << type;
    EXPECT_TRUE(std::holds_alternative<std::monostate>(*effect)) << type;
  }
}

TEST(ParseIopubOutputTextTest, ContentThatIsNotJsonIsInvalidArgument) {
  for (const char* text : {"", "not json", "{\"name\": \"stdout\", \"text\": ", "[1]"}) {
    const absl::Status status = ParseIopubOutputText("stream", text, kMaxDepth).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(status.message(), HasSubstr("stream message")) << text;
    EXPECT_THAT(status.message(), HasSubstr("content")) << text;
  }
}

TEST(ParseIopubOutputTextTest, ContentNestingBeyondTheLimitIsInvalidArgument) {
  const std::string deep = std::string(kMaxDepth + 1, '[') + std::string(kMaxDepth + 1, ']');
  const std::string text = R"({"data": {"application/json": )" + deep + "}}";
  const absl::Status status = ParseIopubOutputText("display_data", text, kMaxDepth).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("deeper than"));
  // Just within the limit (the content and its `data` are two levels) it is an output.
  const std::string within = std::string(kMaxDepth - 2, '[') + std::string(kMaxDepth - 2, ']');
  EXPECT_TRUE(ParseIopubOutputText(
                  "display_data", R"({"data": {"application/json": )" + within + "}}", kMaxDepth)
                  .ok());
}

TEST(ParseIopubOutputTextTest, NumbersOnlyNlohmannReadsStillParse) {
  // An integer beyond 64 bits: simdjson refuses the document, nlohmann reads it as a double.
  absl::StatusOr<IopubEffect> effect = ParseIopubOutputText(
      "display_data",
      R"({"data": {"text/plain": "x"}, "metadata": {"n": 123456789012345678901234567890}})",
      kMaxDepth);
  ASSERT_TRUE(effect.ok()) << effect.status();
  const v1::DisplayData& display = std::get<v1::Output>(*effect).display_data();
  EXPECT_EQ(display.data().at("text/plain"), "x");
  EXPECT_THAT(display.metadata(), HasSubstr("\"n\":1.2345678901234568e+29"));
}

TEST(ParseIopubOutputTextTest, RepeatedKeysKeepTheLastValueAsTheDomDoes) {
  const std::string text = R"({"name": "stderr", "text": "a", "name": "stdout", "text": "b"})";
  absl::StatusOr<IopubEffect> effect = ParseIopubOutputText("stream", text, kMaxDepth);
  ASSERT_TRUE(effect.ok()) << effect.status();
  const v1::StreamOutput& stream = std::get<v1::Output>(*effect).stream();
  EXPECT_EQ(stream.name(), v1::STREAM_NAME_STDOUT);
  EXPECT_EQ(stream.text(), "b");
}

// Stream content as kernels send it is read by a path of its own (the text unescaped straight
// into the output); whatever the text holds, it must read as the DOM reads it.
TEST(ParseIopubOutputTextTest, StreamTextReadsAsTheDomReadsIt) {
  const std::string big_line = std::string(1 << 20, 'x');
  const std::vector<std::string> contents = {
      R"({"name": "stdout", "text": "plain\n"})",
      R"({"text": "text first", "name": "stderr"})",
      R"( { "name" : "stdout" , "text" : "" } )",
      R"({"name": "stdout", "text": "q\" b\\ s\/ \b\f\n\r\t end"})",
      R"({"name": "stdout", "text": "\u00e9 \u4e2d \ud83d\ude00 \u0000 nul"})",
      "{\"name\": \"stdout\", \"text\": \"raw \xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80\"}",
      R"({"name": "stdout", "text": ")" + big_line + R"(\n\t)" + big_line + R"("})",
      // Not the plain shape: read by the general reader, with its errors.
      R"({"name": "stdout", "text": ["a\n", "b"]})",
      R"({"name": "stdout", "text": "a", "extra": 1})",
      R"({"name": "stdin", "text": "a"})",
      R"({"name": 1, "text": "a"})",
      R"({"name": "stdout"})",
      R"({"text": "a"})",
      R"({"name": "stdout", "text": "a"} trailing)",
      R"({"name": "stdout", "text": "bad \x escape"})",
      R"({"name": "stdout", "text": "lone \ud800 surrogate"})",
      R"({"name": "stdout", "text": "unterminated})",
      "{\"name\": \"stdout\", \"text\": \"bad utf-8 \xff\"}",
      "{\"name\": \"stdout\", \"text\": \"raw control \x01 character\"}",
      R"({"name": "stdout", "text": "ends in a backslash \"})",
      R"({"name": "stdout", "text": "short \u12"})",
      R"({"name": "stdout", "text": "low first \udc00\ud800"})",
      R"({"name": "stdout", "text": "high then not low \ud800\u0041"})",
  };
  for (const std::string& text : contents) {
    const Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    ExpectTextReadsAs("stream", text,
                      json.is_discarded()
                          ? absl::StatusOr<IopubEffect>(absl::InvalidArgumentError(
                                "malformed stream message: content is not valid JSON"))
                          : ParseIopubOutput("stream", json));
  }
}

TEST(ParseIopubOutputTextTest, AStreamDecodedInPlaceKeepsNoBufferMuchBiggerThanItsText) {
  // 600 000 bytes of escapes for 100 000 characters: the output must not keep the 600 000.
  std::string escaped;
  for (int i = 0; i < 100000; ++i) escaped += "\\u0000";
  absl::StatusOr<IopubEffect> effect = ParseIopubOutputText(
      "stream", Padded(R"({"name": "stdout", "text": ")" + escaped + R"("})"), kMaxDepth);
  ASSERT_TRUE(effect.ok()) << effect.status();
  const std::string& text = std::get<v1::Output>(*effect).stream().text();
  EXPECT_EQ(text, std::string(100000, '\0'));
  EXPECT_LE(text.capacity(), 2 * text.size() + simdjson::SIMDJSON_PADDING);
}

TEST(ParseIopubOutputTest, InvalidUtf8IsReplacedWhenSerializingJson) {
  Json content = {{"data", {{"application/json", {{"k", std::string("a\xff")}}}}}};
  const v1::Output out = ParseOutput("display_data", content);
  EXPECT_EQ(out.display_data().data().at("application/json"), "{\"k\":\"a\xEF\xBF\xBD\"}");
}

TEST(ImpliedDisplayUpdateTest, OnlyDisplayDataWithId) {
  v1::Output output;
  output.mutable_display_data()->set_display_id("d");
  (*output.mutable_display_data()->mutable_data())["text/plain"] = "v";
  output.mutable_display_data()->set_metadata(R"({"a":1})");
  const std::optional<v1::DisplayUpdate> update = ImpliedDisplayUpdate(output);
  ASSERT_TRUE(update.has_value());
  EXPECT_EQ(update->display_id(), "d");
  EXPECT_EQ(update->data().at("text/plain"), "v");
  EXPECT_EQ(update->metadata(), R"({"a":1})");

  output.mutable_display_data()->clear_display_id();
  EXPECT_FALSE(ImpliedDisplayUpdate(output).has_value());
  output.mutable_stream()->set_text("x");
  EXPECT_FALSE(ImpliedDisplayUpdate(output).has_value());
}

TEST(IsJsonMimeTypeTest, Rules) {
  EXPECT_TRUE(IsJsonMimeType("application/json"));
  EXPECT_TRUE(IsJsonMimeType("application/vnd.jupyter.widget-view+json"));
  EXPECT_FALSE(IsJsonMimeType("text/plain"));
  EXPECT_FALSE(IsJsonMimeType("application/jsonp"));
}

TEST(NbformatTest, StreamToNbformatSplitsLines) {
  v1::Output output;
  output.mutable_stream()->set_name(v1::STREAM_NAME_STDERR);
  output.mutable_stream()->set_text("a\nb\n\nc");
  EXPECT_EQ(OutputToNbformat(output), Json::parse(R"({"output_type": "stream",
      "name": "stderr", "text": ["a\n", "b\n", "\n", "c"]})"));
}

TEST(NbformatTest, DisplayDataToNbformat) {
  v1::Output output;
  v1::DisplayData* display = output.mutable_display_data();
  (*display->mutable_data())["text/plain"] = "line1\nline2";
  (*display->mutable_data())["image/png"] = "iVBORw0KGgo=\n";
  (*display->mutable_data())["application/json"] = R"({"a":[1,2]})";
  (*display->mutable_data())["application/vnd.x+json"] = "not json{";
  display->set_metadata(R"({"image/png":{"width":3}})");
  display->set_display_id("transient-id");
  EXPECT_EQ(OutputToNbformat(output), Json::parse(R"({
      "output_type": "display_data",
      "data": {"text/plain": ["line1\n", "line2"], "image/png": "iVBORw0KGgo=\n",
               "application/json": {"a": [1, 2]}, "application/vnd.x+json": "not json{"},
      "metadata": {"image/png": {"width": 3}}})"));
}

TEST(NbformatTest, ExecuteResultAndErrorToNbformat) {
  v1::Output result;
  (*result.mutable_execute_result()->mutable_data())["text/plain"] = "2";
  result.mutable_execute_result()->set_execution_count(3);
  EXPECT_EQ(OutputToNbformat(result), Json::parse(R"({"output_type": "execute_result",
      "execution_count": 3, "data": {"text/plain": ["2"]}, "metadata": {}})"));
  result.mutable_execute_result()->set_execution_count(0);
  EXPECT_TRUE(OutputToNbformat(result)["execution_count"].is_null());

  v1::Output error;
  error.mutable_error()->set_ename("E");
  error.mutable_error()->set_evalue("v");
  error.mutable_error()->add_traceback("\x1b[31mtb\x1b[0m");
  EXPECT_EQ(OutputToNbformat(error), Json::parse(R"({"output_type": "error", "ename": "E",
      "evalue": "v", "traceback": ["\u001b[31mtb\u001b[0m"]})"));
}

TEST(NbformatTest, FromNbformatReadsEveryOutputType) {
  const Json outputs = Json::parse(R"([
    {"output_type": "stream", "name": "stdout", "text": ["a\n", "b"]},
    {"output_type": "display_data", "data": {"text/plain": ["x\n", "y"],
      "application/json": {"k": [1]}}, "metadata": {"isolated": true}},
    {"output_type": "execute_result", "execution_count": null, "data": {"text/plain": "1"},
      "metadata": {}},
    {"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["t1", "t2"]}
  ])");
  absl::StatusOr<v1::Output> stream = OutputFromNbformat(outputs[0]);
  ASSERT_TRUE(stream.ok()) << stream.status();
  EXPECT_EQ(stream->stream().name(), v1::STREAM_NAME_STDOUT);
  EXPECT_EQ(stream->stream().text(), "a\nb");

  absl::StatusOr<v1::Output> display = OutputFromNbformat(outputs[1]);
  ASSERT_TRUE(display.ok()) << display.status();
  EXPECT_EQ(display->display_data().data().at("text/plain"), "x\ny");
  EXPECT_EQ(display->display_data().data().at("application/json"), R"({"k":[1]})");
  EXPECT_EQ(display->display_data().metadata(), R"({"isolated":true})");

  absl::StatusOr<v1::Output> result = OutputFromNbformat(outputs[2]);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->execute_result().execution_count(), 0);
  EXPECT_THAT(result->execute_result().metadata(), IsEmpty());

  absl::StatusOr<v1::Output> error = OutputFromNbformat(outputs[3]);
  ASSERT_TRUE(error.ok()) << error.status();
  EXPECT_THAT(error->error().traceback(), ElementsAre("t1", "t2"));
}

TEST(NbformatTest, RoundTrip) {
  const Json outputs = Json::parse(R"([
    {"output_type": "stream", "name": "stderr", "text": ["warn\n"]},
    {"output_type": "display_data", "data": {"text/html": ["<p>\n", "</p>"],
      "image/png": "iVBORw0KGgo=", "application/vnd.plotly.v1+json": {"data": [{"x": [1]}]}},
      "metadata": {"needs_background": "light"}},
    {"output_type": "execute_result", "execution_count": 12, "data": {"text/plain": ["12"]},
      "metadata": {}},
    {"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["t"]}
  ])");
  for (const Json& nbformat : outputs) {
    absl::StatusOr<v1::Output> output = OutputFromNbformat(nbformat);
    ASSERT_TRUE(output.ok()) << output.status();
    EXPECT_EQ(OutputToNbformat(*output), nbformat);
  }
}

TEST(NbformatTest, FromNbformatRejectsMalformedOutputs) {
  const Json bad[] = {
      Json::parse(R"("stream")"),
      Json::parse(R"({"name": "stdout", "text": ""})"),
      Json::parse(R"({"output_type": "pyout", "text": ""})"),
      Json::parse(R"({"output_type": "stream", "name": "stdout", "text": 1})"),
      Json::parse(R"({"output_type": "display_data", "metadata": {}})"),
      Json::parse(R"({"output_type": "execute_result", "data": {}, "execution_count": 1.5})"),
      Json::parse(R"({"output_type": "error", "ename": "E", "evalue": 1, "traceback": []})"),
  };
  for (const Json& output : bad) {
    EXPECT_EQ(OutputFromNbformat(output).status().code(), absl::StatusCode::kInvalidArgument)
        << output.dump();
  }
  EXPECT_THAT(OutputFromNbformat(bad[2]).status().message(), HasSubstr("output_type"));
}

}  // namespace
}  // namespace cellgate::notebook
