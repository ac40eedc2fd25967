#include "server/notebook/json_unescape.h"

#include <optional>
#include <string>

#include "gtest/gtest.h"

namespace cellgate::notebook {
namespace {

// The body decoded where it lies (to its own first byte), or nullopt.
std::optional<std::string> DecodeInPlace(std::string body) {
  const std::optional<size_t> size = UnescapeJsonString(body.data(), body.size(), body.data());
  if (!size.has_value()) return std::nullopt;
  body.resize(*size);
  return body;
}

TEST(UnescapeJsonStringTest, TextWithoutEscapesIsUnchanged) {
  EXPECT_EQ(DecodeInPlace(""), "");
  EXPECT_EQ(DecodeInPlace("plain text, \xc3\xa9 and \xf0\x9f\x98\x80"),
            "plain text, \xc3\xa9 and \xf0\x9f\x98\x80");
}

TEST(UnescapeJsonStringTest, EveryEscape) {
  EXPECT_EQ(DecodeInPlace(R"(\" \\ \/ \b \f \n \r \t)"), "\" \\ / \b \f \n \r \t");
  EXPECT_EQ(DecodeInPlace(R"(\u0041\u00e9\u4E2D)"), "A\xc3\xa9\xe4\xb8\xad");
  EXPECT_EQ(DecodeInPlace(R"(\u0000)"), std::string(1, '\0'));
  EXPECT_EQ(DecodeInPlace(R"(\u007f\u0080\u07ff\u0800\uffff)"),
            "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf");
  // A surrogate pair is one character of four UTF-8 bytes.
  EXPECT_EQ(DecodeInPlace(R"(\ud83d\ude00)"), "\xf0\x9f\x98\x80");
  EXPECT_EQ(DecodeInPlace(R"(\uDBFF\uDFFF)"), "\xf4\x8f\xbf\xbf");
  EXPECT_EQ(DecodeInPlace(R"(a\nb\\nc)"), "a\nb\\nc");
}

TEST(UnescapeJsonStringTest, MalformedEscapesAreRefused) {
  for (const char* body : {R"(\)", R"(ends in \)", R"(\x)", R"(\u)", R"(\u12)", R"(\u12g4)",
                           R"(\U0041)", R"(\udc00)", R"(\ud800)", R"(\ud800x)", R"(\ud800\n)",
                           R"(\ud800\u0041)", R"(\ud800\ud800)", R"(\ud800\udc0)"}) {
    EXPECT_EQ(DecodeInPlace(body), std::nullopt) << body;
  }
}

TEST(UnescapeJsonStringTest, WritesFromAPlaceBeforeTheBodyInTheSameBuffer) {
  // As a stream's text is decoded: from inside the content to the front of the buffer.
  std::string buffer = R"({"text":"a\tb\u00e9\ud83d\ude00 end"})";
  const size_t body = buffer.find("a\\t");
  const size_t body_size = buffer.rfind('"') - body;
  const std::optional<size_t> size =
      UnescapeJsonString(buffer.data() + body, body_size, buffer.data());
  ASSERT_TRUE(size.has_value());
  EXPECT_EQ(buffer.substr(0, *size), "a\tb\xc3\xa9\xf0\x9f\x98\x80 end");
}

TEST(UnescapeJsonStringTest, LongRunsBetweenEscapesMoveWhole) {
  const std::string run(1 << 20, 'x');
  EXPECT_EQ(DecodeInPlace(run + "\\n" + run + "\\u0041" + run), run + "\n" + run + "A" + run);
}

}  // namespace
}  // namespace cellgate::notebook
