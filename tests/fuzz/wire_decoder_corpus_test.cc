// Runs the wire decoder fuzz target over the seed corpus and a few hand-made inputs, so the
// harness is compiled and exercised by every ordinary test run (no clang or libFuzzer needed).

#include <array>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/protocol/message_signer.h"
#include "server/protocol/wire_codec.h"
#include "tests/fuzz/wire_decoder_fuzzer.h"

namespace cellgate::protocol::fuzz {
namespace {

using ::testing::HasSubstr;

constexpr std::string_view kHeader = R"({"msg_id":"m1","msg_type":"execute_request"})";

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

// A well-formed input signed with kFuzzKey.
std::string SignedInput(std::vector<std::string> identities, std::array<std::string, 4> parts,
                        std::vector<std::string> buffers = {}) {
  absl::StatusOr<std::unique_ptr<MessageSigner>> signer =
      MakeMessageSigner("hmac-sha256", kFuzzKey);
  EXPECT_TRUE(signer.ok());
  std::vector<std::string> frames = std::move(identities);
  frames.emplace_back(kDelimiter);
  const std::array<std::string_view, 4> views = {parts[0], parts[1], parts[2], parts[3]};
  frames.push_back((*signer)->Sign(views));
  frames.insert(frames.end(), parts.begin(), parts.end());
  frames.insert(frames.end(), buffers.begin(), buffers.end());
  return JoinFrames(frames);
}

TEST(WireDecoderCorpusTest, FramingSplitsOnNewlines) {
  EXPECT_EQ(SplitIntoFrames(""), std::vector<std::string>{""});
  EXPECT_EQ(SplitIntoFrames("a\n\nb\n"), (std::vector<std::string>{"a", "", "b", ""}));
  const std::vector<std::string> frames = {"x", "", "<IDS|MSG>", "{}"};
  EXPECT_EQ(SplitIntoFrames(JoinFrames(frames)), frames);
}

TEST(WireDecoderCorpusTest, SignedMessageDecodesEverywhere) {
  const WireDecoderOutcome outcome =
      RunWireDecoder(SignedInput({"id"}, {std::string(kHeader), "{}", "{}", "{}"}, {"buf"}));
  EXPECT_TRUE(outcome.keyed.ok()) << outcome.keyed;
  EXPECT_TRUE(outcome.keyed_resigned.ok()) << outcome.keyed_resigned;
  EXPECT_TRUE(outcome.unsigned_tight.ok()) << outcome.unsigned_tight;
}

TEST(WireDecoderCorpusTest, ResigningReachesTheJsonParser) {
  std::string input = SignedInput({}, {std::string(kHeader), "{}", "{}", "[1]"});
  const WireDecoderOutcome outcome = RunWireDecoder(input);
  EXPECT_EQ(outcome.keyed.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(outcome.keyed.message(), HasSubstr("content must be a JSON object"));

  input[20] = input[20] == 'a' ? 'b' : 'a';  // inside the signature frame
  const WireDecoderOutcome tampered = RunWireDecoder(input);
  EXPECT_EQ(tampered.keyed.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(tampered.keyed_resigned.code(), absl::StatusCode::kInvalidArgument);
}

TEST(WireDecoderCorpusTest, TightLimitsReject) {
  const std::string deep = "{\"a\":" + std::string(20, '[') + std::string(20, ']') + "}";
  const WireDecoderOutcome outcome =
      RunWireDecoder(SignedInput({}, {std::string(kHeader), "{}", "{}", deep}));
  EXPECT_TRUE(outcome.keyed.ok()) << outcome.keyed;
  EXPECT_THAT(outcome.unsigned_tight.message(), HasSubstr("nests deeper"));
}

TEST(WireDecoderCorpusTest, HandMadeInputsDoNotCrash) {
  const std::vector<std::string> inputs = {
      "",
      "\n\n\n\n\n\n",
      std::string(kDelimiter),
      "<IDS|MSG>\n\n\n\n\n",
      "<IDS|MSG>\nsig\n{}\n{}\n{}\n{}",
      "<IDS|MSG>\nsig\n{\"msg_id\":1,\"msg_type\":\"x\"}\n{}\n{}\n{}",
      "<IDS|MSG>\nsig\n{\"msg_id\":\"\xff\",\"msg_type\":\"x\"}\n{}\n{}\n{}",
      "<IDS|MSG>\nsig\n{\"msg_id\":\"m\",\"msg_type\":\"x\"}\n{}\n{}\n{\"n\":1e999}",
      "<IDS|MSG>\nsig\n{\"msg_id\":\"m\",\"msg_type\":\"x\"}\n{}\n{}\n{\"s\":\"\\ud800\"}",
      "<IDS|MSG>\nsig\n{\"msg_id\":\"m\",\"msg_type\":\"x\"}\n{}\n{}\n" + std::string(5000, '['),
      std::string(std::string_view("a\0b\n<IDS|MSG>", 13)),
      std::string(200, '\n'),
  };
  for (const std::string& input : inputs) {
    const WireDecoderOutcome outcome = RunWireDecoder(input);
    EXPECT_FALSE(outcome.keyed.ok()) << input;  // nothing here is signed with the key
  }
}

TEST(WireDecoderCorpusTest, SeedCorpusDoesNotCrash) {
  size_t seeds = 0;
  size_t decoded_after_resigning = 0;
  for (const auto& entry : std::filesystem::directory_iterator(CELLGATE_WIRE_DECODER_CORPUS)) {
    const WireDecoderOutcome outcome = RunWireDecoder(ReadFile(entry.path()));
    ++seeds;
    if (outcome.keyed_resigned.ok()) ++decoded_after_resigning;
  }
  EXPECT_GE(seeds, 5u);
  // The seeds include well-formed messages, so the fuzzer starts past the parser.
  EXPECT_GE(decoded_after_resigning, 3u);
}

}  // namespace
}  // namespace cellgate::protocol::fuzz
