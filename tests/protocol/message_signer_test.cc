#include "server/protocol/message_signer.h"

#include <array>
#include <cctype>
#include <string>
#include <string_view>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellgate::protocol {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Test vector from jupyter_client 7.4.9 (Debian 12), produced with:
//   /usr/bin/python3 -c "
//   from jupyter_client.session import Session
//   s = Session(key=b'cellgate-test-key', signature_scheme='hmac-sha256')
//   print(s.sign([b'{\"msg_id\":\"a1\",\"msg_type\":\"execute_request\"}', b'{}', b'{}',
//                 b'{\"code\":\"1+1\",\"silent\":false}']))"
constexpr std::string_view kJupyterKey = "cellgate-test-key";
constexpr std::array<std::string_view, 4> kJupyterParts = {
    R"({"msg_id":"a1","msg_type":"execute_request"})", "{}", "{}",
    R"({"code":"1+1","silent":false})"};
constexpr std::string_view kJupyterSignature =
    "38afd6289e598425324c06e4b8269527a6feaf9d4cab5f49efef7a97f74b4cb8";

std::unique_ptr<MessageSigner> MakeSignerOrDie(std::string_view key) {
  absl::StatusOr<std::unique_ptr<MessageSigner>> signer = MakeMessageSigner("hmac-sha256", key);
  EXPECT_TRUE(signer.ok()) << signer.status();
  return signer.ok() ? *std::move(signer) : nullptr;
}

TEST(MessageSignerTest, SignatureMatchesJupyterClient) {
  const auto signer = MakeSignerOrDie(kJupyterKey);
  ASSERT_NE(signer, nullptr);
  EXPECT_EQ(signer->Sign(kJupyterParts), kJupyterSignature);
}

TEST(MessageSignerTest, VerifiesJupyterClientSignature) {
  const auto signer = MakeSignerOrDie(kJupyterKey);
  ASSERT_NE(signer, nullptr);
  EXPECT_TRUE(signer->Verify(kJupyterParts, kJupyterSignature));
}

TEST(MessageSignerTest, RejectsTamperedPart) {
  const auto signer = MakeSignerOrDie(kJupyterKey);
  ASSERT_NE(signer, nullptr);
  std::array<std::string_view, 4> parts = kJupyterParts;
  parts[3] = R"({"code":"1+2","silent":false})";
  EXPECT_FALSE(signer->Verify(parts, kJupyterSignature));
}

TEST(MessageSignerTest, RejectsOtherKey) {
  const auto signer = MakeSignerOrDie("another-key");
  ASSERT_NE(signer, nullptr);
  EXPECT_FALSE(signer->Verify(kJupyterParts, kJupyterSignature));
}

TEST(MessageSignerTest, RejectsWrongLengthSignatures) {
  const auto signer = MakeSignerOrDie(kJupyterKey);
  ASSERT_NE(signer, nullptr);
  const std::string good(kJupyterSignature);
  EXPECT_FALSE(signer->Verify(kJupyterParts, ""));
  EXPECT_FALSE(signer->Verify(kJupyterParts, good.substr(0, 63)));
  EXPECT_FALSE(signer->Verify(kJupyterParts, good.substr(0, 32)));
  EXPECT_FALSE(signer->Verify(kJupyterParts, good + "0"));
  EXPECT_FALSE(signer->Verify(kJupyterParts, good + good));
}

TEST(MessageSignerTest, RejectsFlippedDigitAndUppercase) {
  const auto signer = MakeSignerOrDie(kJupyterKey);
  ASSERT_NE(signer, nullptr);
  std::string flipped(kJupyterSignature);
  flipped[63] = flipped[63] == '8' ? '9' : '8';
  EXPECT_FALSE(signer->Verify(kJupyterParts, flipped));

  // jupyter_client compares hexdigest() strings, which are lowercase.
  std::string uppercase(kJupyterSignature);
  for (char& c : uppercase) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_FALSE(signer->Verify(kJupyterParts, uppercase));
}

TEST(MessageSignerTest, SignsTheConcatenationOfParts) {
  // As in jupyter_client: the HMAC is updated with each part in turn, without separators.
  const auto signer = MakeSignerOrDie("k");
  ASSERT_NE(signer, nullptr);
  const std::array<std::string_view, 2> split_one = {"ab", "c"};
  const std::array<std::string_view, 2> split_two = {"a", "bc"};
  EXPECT_EQ(signer->Sign(split_one), signer->Sign(split_two));
  EXPECT_EQ(signer->Sign(split_one).size(), 64u);
}

TEST(MessageSignerTest, EmptyKeyGivesNoOpSigner) {
  absl::StatusOr<std::unique_ptr<MessageSigner>> signer = MakeMessageSigner("hmac-sha256", "");
  ASSERT_TRUE(signer.ok()) << signer.status();
  EXPECT_THAT((*signer)->Sign(kJupyterParts), IsEmpty());
  EXPECT_TRUE((*signer)->Verify(kJupyterParts, ""));
  EXPECT_TRUE((*signer)->Verify(kJupyterParts, "not a signature"));
}

TEST(MessageSignerTest, RejectsUnknownScheme) {
  for (std::string_view key : {"secret", ""}) {
    absl::StatusOr<std::unique_ptr<MessageSigner>> signer = MakeMessageSigner("hmac-md5", key);
    ASSERT_FALSE(signer.ok());
    EXPECT_EQ(signer.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(signer.status().message(), HasSubstr("hmac-md5"));
  }
  EXPECT_FALSE(MakeMessageSigner("", "secret").ok());
  EXPECT_FALSE(MakeMessageSigner("HMAC-SHA256", "secret").ok());
}

}  // namespace
}  // namespace cellgate::protocol
