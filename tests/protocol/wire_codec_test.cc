#include "server/protocol/wire_codec.h"

#include <array>
#include <limits>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellgate::protocol {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr std::string_view kKey = "cellgate-test-key";

std::unique_ptr<MessageSigner> Signer(std::string_view key = kKey) {
  absl::StatusOr<std::unique_ptr<MessageSigner>> signer = MakeMessageSigner("hmac-sha256", key);
  EXPECT_TRUE(signer.ok()) << signer.status();
  return signer.ok() ? *std::move(signer) : nullptr;
}

// Frames with the given identities, JSON parts (raw text) and buffers, signed with kKey.
std::vector<std::string> SignedFrames(std::vector<std::string> identities,
                                      std::array<std::string, 4> json_parts,
                                      std::vector<std::string> buffers = {}) {
  std::vector<std::string> frames = std::move(identities);
  frames.emplace_back(kDelimiter);
  const std::array<std::string_view, 4> parts = {json_parts[0], json_parts[1], json_parts[2],
                                                 json_parts[3]};
  frames.push_back(Signer()->Sign(parts));
  for (std::string& part : json_parts) frames.push_back(std::move(part));
  for (std::string& buffer : buffers) frames.push_back(std::move(buffer));
  return frames;
}

constexpr std::string_view kHeader = R"({"msg_id":"m1","msg_type":"execute_request"})";

std::array<std::string, 4> ValidParts() {
  return {std::string(kHeader), "{}", "{}", R"({"code":"1+1"})"};
}

void ExpectRejected(const absl::StatusOr<Message>& decoded, absl::StatusCode code,
                    std::string_view message_part) {
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), code) << decoded.status();
  EXPECT_THAT(decoded.status().message(), HasSubstr(message_part));
}

TEST(WireCodecTest, RoundTripsWithIdentitiesAndBuffers) {
  const WireCodec codec(Signer());
  Message message = MakeMessage("comm_msg", {{"data", {{"x", 1.5}, {"s", "h\u00e9"}}}}, "sess");
  message.identities = {"router-id-1", std::string("\0\x01\xff", 3)};
  message.metadata = {{"tag", "t"}};
  message.parent_header = {{"msg_id", "p1"}, {"msg_type", "execute_request"}};
  message.buffers = {std::string("\0binary\xfe", 8), "", "third"};

  const std::vector<std::string> frames = codec.Encode(message);
  ASSERT_EQ(frames.size(), 2u + 1 + 5 + 3);
  EXPECT_EQ(frames[2], kDelimiter);
  EXPECT_EQ(frames[3].size(), 64u);

  absl::StatusOr<Message> decoded = codec.Decode(frames);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->identities, message.identities);
  EXPECT_EQ(decoded->header, message.header);
  EXPECT_EQ(decoded->parent_header, message.parent_header);
  EXPECT_EQ(decoded->metadata, message.metadata);
  EXPECT_EQ(decoded->content, message.content);
  EXPECT_EQ(decoded->buffers, message.buffers);
  EXPECT_EQ(decoded->parent_msg_id(), "p1");
}

TEST(WireCodecTest, EncodeSignsTheFourJsonParts) {
  const WireCodec codec(Signer());
  const Message message = MakeMessage("kernel_info_request", {}, "sess");
  const std::vector<std::string> frames = codec.Encode(message);
  ASSERT_EQ(frames.size(), 6u);
  EXPECT_EQ(frames[0], kDelimiter);
  EXPECT_EQ(nlohmann::json::parse(frames[2]), message.header);
  EXPECT_EQ(frames[3], "{}");
  EXPECT_EQ(frames[4], "{}");
  EXPECT_EQ(frames[5], "{}");
  const std::array<std::string_view, 4> parts = {frames[2], frames[3], frames[4], frames[5]};
  EXPECT_EQ(frames[1], Signer()->Sign(parts));
}

TEST(WireCodecTest, EncodeReplacesInvalidUtf8InsteadOfThrowing) {
  const WireCodec codec(Signer());
  Message message = MakeMessage("stream", {{"text", std::string("bad \xff\xfe byte")}}, "s");
  std::vector<std::string> frames;
  ASSERT_NO_THROW(frames = codec.Encode(message));
  absl::StatusOr<Message> decoded = codec.Decode(frames);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->content["text"], "bad \ufffd\ufffd byte");
}

// Produced by jupyter_client 7.4.9 (Debian 12):
//   /usr/bin/python3 -c "
//   from jupyter_client.session import Session
//   s = Session(key=b'cellgate-test-key', session='sess-1', username='tester')
//   h = {'msg_id': 'b2', 'msg_type': 'stream', 'session': 'sess-1', 'username': 'tester',
//        'date': '2024-01-02T03:04:05.123456Z', 'version': '5.3'}
//   m = {'header': h, 'parent_header': {'msg_id': 'a1'}, 'metadata': {},
//        'content': {'name': 'stdout', 'text': 'h\u00e9llo \u2603\n'}, 'msg_id': 'b2',
//        'msg_type': 'stream'}
//   for f in s.serialize(m, ident=[b'kernel-ident']): print(f)"
TEST(WireCodecTest, DecodesJupyterClientMessage) {
  const std::vector<std::string> frames = {
      "kernel-ident",
      "<IDS|MSG>",
      "971249a2d53bd003547c38f4c86023f43f5601294b1df877b6e438b3041a22a4",
      R"({"msg_id": "b2", "msg_type": "stream", "session": "sess-1", "username": "tester", )"
      R"("date": "2024-01-02T03:04:05.123456Z", "version": "5.3"})",
      R"({"msg_id": "a1"})",
      "{}",
      "{\"name\": \"stdout\", \"text\": \"h\xc3\xa9llo \xe2\x98\x83\\n\"}",
  };
  const WireCodec codec(Signer());
  absl::StatusOr<Message> decoded = codec.Decode(frames);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_THAT(decoded->identities, ElementsAre("kernel-ident"));
  EXPECT_EQ(decoded->msg_type(), "stream");
  EXPECT_EQ(decoded->msg_id(), "b2");
  EXPECT_EQ(decoded->parent_msg_id(), "a1");
  EXPECT_EQ(decoded->content["text"], "h\u00e9llo \u2603\n");

  std::vector<std::string> tampered = frames;
  tampered[6] = R"({"name": "stdout", "text": "evil"})";
  ExpectRejected(codec.Decode(tampered), absl::StatusCode::kUnauthenticated, "signature");
}

TEST(WireCodecTest, RejectsBadSignature) {
  const WireCodec codec(Signer());
  std::vector<std::string> frames = SignedFrames({}, ValidParts());
  frames[1][10] = frames[1][10] == 'a' ? 'b' : 'a';
  ExpectRejected(codec.Decode(frames), absl::StatusCode::kUnauthenticated, "signature");
}

TEST(WireCodecTest, RejectsSignatureFromAnotherKey) {
  const WireCodec codec(Signer("some-other-key"));
  ExpectRejected(codec.Decode(SignedFrames({}, ValidParts())), absl::StatusCode::kUnauthenticated,
                 "signature");
}

TEST(WireCodecTest, RejectsShortLongAndEmptySignatures) {
  const WireCodec codec(Signer());
  const std::vector<std::string> good = SignedFrames({}, ValidParts());
  for (const std::string& signature :
       {good[1].substr(0, 63), good[1] + "0", good[1] + good[1], std::string()}) {
    std::vector<std::string> frames = good;
    frames[1] = signature;
    ExpectRejected(codec.Decode(frames), absl::StatusCode::kUnauthenticated, "signature");
  }
}

TEST(WireCodecTest, VerifiesSignatureBeforeParsingJson) {
  // Unparseable JSON with a wrong signature reports the signature, not the JSON.
  const WireCodec codec(Signer());
  std::vector<std::string> frames = SignedFrames({}, {"not json", "[", "{}", "{}"});
  frames[1] = std::string(64, '0');
  ExpectRejected(codec.Decode(frames), absl::StatusCode::kUnauthenticated, "signature");
}

TEST(WireCodecTest, ContentFilterSeesTheEnvelopeAndCanSkipTheContent) {
  const WireCodec codec(Signer());
  const std::string content = R"({"name":"stdout","text":"flood"})";
  std::string seen_type, seen_parent;
  size_t seen_bytes = 0;
  absl::StatusOr<Message> decoded = codec.Decode(
      SignedFrames({}, {R"({"msg_id":"m2","msg_type":"stream"})", R"({"msg_id":"p1"})", "{}",
                        content}),
      [&](const Message& envelope, size_t content_bytes) {
        seen_type = envelope.msg_type();
        seen_parent = envelope.parent_msg_id();
        seen_bytes = content_bytes;
        return WireCodec::ContentHandling::kSkip;
      });
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(seen_type, "stream");
  EXPECT_EQ(seen_parent, "p1");
  EXPECT_EQ(seen_bytes, content.size());
  EXPECT_EQ(decoded->unparsed_content_bytes, content.size());
  EXPECT_EQ(decoded->content, nlohmann::json::object());
  EXPECT_FALSE(decoded->content_text.has_value());
  EXPECT_EQ(decoded->msg_id(), "m2");
}

TEST(WireCodecTest, ContentFilterCanKeepTheContentAsText) {
  // The receiver parses the text itself: it arrives byte for byte, even when it is not JSON.
  const WireCodec codec(Signer());
  for (const std::string& content : {std::string(R"({"name": "stdout", "text": "x"})"),
                                    std::string("not json")}) {
    absl::StatusOr<Message> decoded =
        codec.Decode(SignedFrames({}, {std::string(kHeader), "{}", "{}", content}),
                     [](const Message&, size_t) { return WireCodec::ContentHandling::kKeepText; });
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    ASSERT_TRUE(decoded->content_text.has_value());
    EXPECT_EQ(*decoded->content_text, content);
    EXPECT_EQ(decoded->content, nlohmann::json::object());
    EXPECT_EQ(decoded->unparsed_content_bytes, 0u);
  }
}

TEST(WireCodecTest, ContentFilterDoesNotSkipTheSignatureCheck) {
  const WireCodec codec(Signer());
  std::vector<std::string> frames = SignedFrames({}, ValidParts());
  frames.back() = R"({"code":"forged"})";
  bool asked = false;
  ExpectRejected(codec.Decode(std::move(frames),
                              [&](const Message&, size_t) {
                                asked = true;
                                return WireCodec::ContentHandling::kKeepText;
                              }),
                 absl::StatusCode::kUnauthenticated, "signature");
  EXPECT_FALSE(asked);
}

TEST(WireCodecTest, ParsedContentIsStillChecked) {
  const WireCodec codec(Signer());
  ExpectRejected(codec.Decode(SignedFrames({}, {std::string(kHeader), "{}", "{}", "[1]"}),
                              [](const Message&, size_t) {
                                return WireCodec::ContentHandling::kParse;
                              }),
                 absl::StatusCode::kInvalidArgument, "content");
}

TEST(WireCodecTest, RejectsMissingDelimiter) {
  const WireCodec codec(Signer());
  std::vector<std::string> frames = SignedFrames({"id"}, ValidParts());
  frames.erase(frames.begin() + 1);
  ExpectRejected(codec.Decode(frames), absl::StatusCode::kInvalidArgument, "<IDS|MSG>");
  ExpectRejected(codec.Decode({}), absl::StatusCode::kInvalidArgument, "<IDS|MSG>");
}

TEST(WireCodecTest, RejectsFewerThanFiveFramesAfterDelimiter) {
  const WireCodec codec(Signer());
  const std::vector<std::string> good = SignedFrames({"id"}, ValidParts());
  for (size_t kept = 2; kept < good.size(); ++kept) {  // 0 to 4 frames after the delimiter
    const std::vector<std::string> truncated(good.begin(), good.begin() + kept);
    ExpectRejected(codec.Decode(truncated), absl::StatusCode::kInvalidArgument, "needs at least 5");
  }
}

TEST(WireCodecTest, RejectsNonJsonParts) {
  const WireCodec codec(Signer());
  const std::array<std::string_view, 4> names = {"header", "parent_header", "metadata", "content"};
  for (size_t part = 0; part < 4; ++part) {
    std::array<std::string, 4> parts = ValidParts();
    parts[part] = R"({"unterminated": )";
    ExpectRejected(codec.Decode(SignedFrames({}, parts)), absl::StatusCode::kInvalidArgument,
                   std::string(names[part]) + " is not valid JSON");
  }
}

TEST(WireCodecTest, RejectsInvalidUtf8InJson) {
  const WireCodec codec(Signer());
  std::array<std::string, 4> parts = ValidParts();
  parts[3] = "{\"text\": \"\xff\xfe\"}";
  ExpectRejected(codec.Decode(SignedFrames({}, parts)), absl::StatusCode::kInvalidArgument,
                 "content is not valid JSON");
}

TEST(WireCodecTest, RejectsJsonPartsThatAreNotObjects) {
  const WireCodec codec(Signer());
  for (const auto& [part, text, expected] :
       std::vector<std::tuple<size_t, std::string, std::string>>{
           {0, "[1,2]", "header must be a JSON object, got array"},
           {1, "null", "parent_header must be a JSON object, got null"},
           {2, "\"text\"", "metadata must be a JSON object, got string"},
           {3, "[]", "content must be a JSON object, got array"},
           {3, "42", "content must be a JSON object, got number"},
       }) {
    std::array<std::string, 4> parts = ValidParts();
    parts[part] = text;
    ExpectRejected(codec.Decode(SignedFrames({}, parts)), absl::StatusCode::kInvalidArgument,
                   expected);
  }
}

TEST(WireCodecTest, RejectsHeaderWithoutStringMsgTypeOrMsgId) {
  const WireCodec codec(Signer());
  for (const auto& [header, expected] : std::vector<std::pair<std::string, std::string>>{
           {R"({"msg_id":"m1"})", "header has no msg_type"},
           {R"({"msg_type":"x"})", "header has no msg_id"},
           {R"({"msg_id":"m1","msg_type":5})", "header msg_type must be a string"},
           {R"({"msg_id":null,"msg_type":"x"})", "header msg_id must be a string"},
       }) {
    std::array<std::string, 4> parts = ValidParts();
    parts[0] = header;
    ExpectRejected(codec.Decode(SignedFrames({}, parts)), absl::StatusCode::kInvalidArgument,
                   expected);
  }
}

TEST(WireCodecTest, RejectsJsonPartOverTheLimit) {
  WireLimits limits;
  limits.max_json_part_bytes = 1024;
  const WireCodec codec(Signer(), limits);
  std::array<std::string, 4> parts = ValidParts();
  parts[3] = R"({"code":")" + std::string(2000, 'x') + R"("})";
  ExpectRejected(codec.Decode(SignedFrames({}, parts)), absl::StatusCode::kInvalidArgument,
                 "content is 2011 bytes, over the limit of 1024");
}

TEST(WireCodecTest, RejectsHugePartWithDefaultLimits) {
  // Over the default 64 MiB per JSON part. The signature is not even computed: it is all zeros.
  const WireCodec codec(Signer());
  std::vector<std::string> frames = {
      std::string(kDelimiter), std::string(64, '0'), std::string(kHeader), "{}", "{}", ""};
  frames[5].assign((64u << 20) + 1, ' ');
  ExpectRejected(codec.Decode(std::move(frames)), absl::StatusCode::kInvalidArgument,
                 "content is 67108865 bytes, over the limit");
}

TEST(WireCodecTest, RejectsMessagesOverTheTotalSize) {
  WireLimits limits;
  limits.max_total_bytes = 4096;
  const WireCodec codec(Signer(), limits);
  ExpectRejected(codec.Decode(SignedFrames({}, ValidParts(), {std::string(5000, 'b')})),
                 absl::StatusCode::kInvalidArgument, "over the limit of 4096");
}

TEST(WireCodecTest, RejectsTooManyFrames) {
  WireLimits limits;
  limits.max_identities = 2;
  limits.max_buffers = 3;
  const WireCodec codec(Signer(), limits);

  EXPECT_TRUE(codec.Decode(SignedFrames({"a", "b"}, ValidParts(), {"1", "2", "3"})).ok());
  // Too many frames overall.
  ExpectRejected(codec.Decode(std::vector<std::string>(100, "x")),
                 absl::StatusCode::kInvalidArgument, "100 frames, over the limit of 11");
  // Too many identities: the delimiter is not within the first max_identities + 1 frames.
  ExpectRejected(codec.Decode(SignedFrames({"a", "b", "c"}, ValidParts())),
                 absl::StatusCode::kInvalidArgument, "no <IDS|MSG> delimiter within the first 3");
  // Too many buffers.
  ExpectRejected(codec.Decode(SignedFrames({}, ValidParts(), {"1", "2", "3", "4"})),
                 absl::StatusCode::kInvalidArgument, "4 buffers, over the limit of 3");
}

TEST(WireCodecTest, RejectsOversizedIdentity) {
  WireLimits limits;
  limits.max_identity_bytes = 8;
  const WireCodec codec(Signer(), limits);
  ExpectRejected(codec.Decode(SignedFrames({"ok", "way-too-long-identity"}, ValidParts())),
                 absl::StatusCode::kInvalidArgument, "identity 1 is 21 bytes");
}

TEST(WireCodecTest, RejectsJsonNestedTooDeeply) {
  WireLimits limits;
  limits.max_json_depth = 10;
  const WireCodec codec(Signer(), limits);
  std::array<std::string, 4> parts = ValidParts();
  // Depth 10 (the content object plus nine arrays) passes; brackets inside strings don't count.
  parts[3] = R"({"a":)" + std::string(9, '[') + R"("[[[[[[{{{{{")" + std::string(9, ']') + "}";
  EXPECT_TRUE(codec.Decode(SignedFrames({}, parts)).ok());
  parts[3] = R"({"a":)" + std::string(10, '[') + std::string(10, ']') + "}";
  ExpectRejected(codec.Decode(SignedFrames({}, parts)), absl::StatusCode::kInvalidArgument,
                 "content nests deeper than the limit of 10");
}

TEST(WireCodecTest, DefaultDepthLimitStopsStackExhaustion) {
  const WireCodec codec(Signer());
  std::array<std::string, 4> parts = ValidParts();
  parts[3] = R"({"a":)" + std::string(1'000'000, '[') + std::string(1'000'000, ']') + "}";
  ExpectRejected(codec.Decode(SignedFrames({}, parts)), absl::StatusCode::kInvalidArgument,
                 "nests deeper");
}

TEST(WireCodecTest, LimitsOfSizeMaxMeanUnlimited) {
  constexpr size_t kUnlimited = std::numeric_limits<size_t>::max();
  const WireLimits unlimited{.max_identities = kUnlimited,
                             .max_identity_bytes = kUnlimited,
                             .max_json_part_bytes = kUnlimited,
                             .max_buffers = kUnlimited,
                             .max_total_bytes = kUnlimited,
                             .max_json_depth = kUnlimited};
  const WireCodec codec(Signer(), unlimited);
  EXPECT_TRUE(codec.Decode(SignedFrames({"a", "b"}, ValidParts(), {"1", "2"})).ok());
  ExpectRejected(codec.Decode({"x", "y"}), absl::StatusCode::kInvalidArgument, "<IDS|MSG>");
}

TEST(WireCodecTest, EmptyKeyAcceptsAnySignature) {
  const WireCodec codec(Signer(""));
  std::vector<std::string> frames = SignedFrames({}, ValidParts());
  frames[1] = "";
  EXPECT_TRUE(codec.Decode(frames).ok());
  frames[1] = "whatever";
  EXPECT_TRUE(codec.Decode(frames).ok());
  EXPECT_EQ(codec.Encode(MakeMessage("kernel_info_request", {}, "s"))[1], "");
}

TEST(WireCodecTest, NullSignerRefusesEverything) {
  const WireCodec codec(nullptr);
  ExpectRejected(codec.Decode(SignedFrames({}, ValidParts())),
                 absl::StatusCode::kFailedPrecondition, "no signer");
}

TEST(WireCodecTest, FirstDelimiterSeparatesIdentities) {
  const WireCodec codec(Signer());
  absl::StatusOr<Message> decoded =
      codec.Decode(SignedFrames({"id"}, ValidParts(), {std::string(kDelimiter)}));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_THAT(decoded->identities, ElementsAre("id"));
  EXPECT_THAT(decoded->buffers, ElementsAre(kDelimiter));
}

}  // namespace
}  // namespace cellgate::protocol
