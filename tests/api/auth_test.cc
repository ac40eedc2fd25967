#include "server/api/auth.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellgate::api {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Metadata = std::multimap<grpc::string_ref, grpc::string_ref>;

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "auth_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string WriteFile(const std::string& name, const std::string& content) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << content;
    return path;
  }

  std::filesystem::path dir_;
};

TokenAuthenticator MustLoad(const std::string& path) {
  auto auth = TokenAuthenticator::FromFile(path);
  EXPECT_TRUE(auth.ok()) << auth.status();
  return auth.ok() ? *std::move(auth) : TokenAuthenticator();
}

TEST_F(AuthTest, DefaultIsDisabledAndLetsEverythingThrough) {
  TokenAuthenticator auth;
  EXPECT_FALSE(auth.enabled());
  EXPECT_TRUE(auth.Check({}).ok());
}

TEST_F(AuthTest, ParsesTokensSkippingCommentsAndBlankLines) {
  const std::string path =
      WriteFile("tokens", "# team tokens\n\n  alpha-123  \n\t\r\nbeta_456\r\n#x\n");
  TokenAuthenticator auth = MustLoad(path);
  EXPECT_TRUE(auth.enabled());
  EXPECT_EQ(auth.token_count(), 2u);
  EXPECT_TRUE(auth.Check({{"authorization", "Bearer alpha-123"}}).ok());
  EXPECT_TRUE(auth.Check({{"authorization", "Bearer beta_456"}}).ok());
  EXPECT_FALSE(auth.Check({{"authorization", "Bearer #x"}}).ok());
}

TEST_F(AuthTest, FileWithoutTokensIsInvalid) {
  const std::string path = WriteFile("empty", "# only a comment\n\n   \n");
  auto auth = TokenAuthenticator::FromFile(path);
  EXPECT_EQ(auth.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(auth.status().message(), HasSubstr("no tokens"));
  EXPECT_THAT(auth.status().message(), HasSubstr(path));

  auto truly_empty = TokenAuthenticator::FromFile(WriteFile("zero", ""));
  EXPECT_EQ(truly_empty.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(AuthTest, UnreadableFileNamesThePath) {
  const std::string missing = (dir_ / "nope").string();
  auto auth = TokenAuthenticator::FromFile(missing);
  EXPECT_FALSE(auth.ok());
  EXPECT_THAT(auth.status().message(), HasSubstr(missing));

  auto directory = TokenAuthenticator::FromFile(dir_.string());
  EXPECT_FALSE(directory.ok());
  EXPECT_THAT(directory.status().message(), HasSubstr(dir_.string()));
}

TEST_F(AuthTest, TokenWithInnerSpaceIsRejectedWithoutEchoingIt) {
  const std::string path = WriteFile("bad", "good\nsecret part\n");
  auto auth = TokenAuthenticator::FromFile(path);
  EXPECT_EQ(auth.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(auth.status().message(), HasSubstr(":2"));
  EXPECT_THAT(auth.status().message(), Not(HasSubstr("secret")));
}

TEST_F(AuthTest, MissingMetadata) {
  TokenAuthenticator auth = MustLoad(WriteFile("t", "tok\n"));
  absl::Status status = auth.Check({{"user-agent", "x"}});
  EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(status.message(), "missing authorization metadata");
}

TEST_F(AuthTest, WrongTokenIsInvalidAndNotEchoed) {
  TokenAuthenticator auth = MustLoad(WriteFile("t", "right-token\n"));
  for (const char* value :
       {"Bearer wrong-token", "Bearer right-toke", "Bearer right-token2", "Bearer RIGHT-TOKEN"}) {
    absl::Status status = auth.Check({{"authorization", value}});
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << value;
    EXPECT_EQ(status.message(), "invalid token");
  }
}

TEST_F(AuthTest, SchemeIsCaseInsensitiveAndWhitespaceTolerated) {
  TokenAuthenticator auth = MustLoad(WriteFile("t", "tok\n"));
  EXPECT_TRUE(auth.Check({{"authorization", "bearer tok"}}).ok());
  EXPECT_TRUE(auth.Check({{"authorization", "BEARER tok"}}).ok());
  EXPECT_TRUE(auth.Check({{"authorization", "Bearer   tok "}}).ok());
}

TEST_F(AuthTest, OtherSchemesAreRefused) {
  TokenAuthenticator auth = MustLoad(WriteFile("t", "tok\n"));
  for (const char* value : {"Basic tok", "tok", "Bearer", "Bearer ", ""}) {
    absl::Status status = auth.Check({{"authorization", value}});
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << value;
    EXPECT_THAT(status.message(), Not(HasSubstr("tok "))) << value;
  }
}

TEST_F(AuthTest, AnyOfSeveralTokensAndAnyOfSeveralHeaders) {
  TokenAuthenticator auth = MustLoad(WriteFile("t", "one\ntwo\nthree\n"));
  EXPECT_TRUE(auth.Check({{"authorization", "Bearer three"}}).ok());
  EXPECT_TRUE(auth.Check({{"authorization", "Bearer nope"}, {"authorization", "Bearer two"}}).ok());
}

TEST_F(AuthTest, FromTokensBuildsTheSameAuthenticator) {
  auto auth = TokenAuthenticator::FromTokens({"a1", "b2"});
  ASSERT_TRUE(auth.ok());
  EXPECT_TRUE(auth->Check({{"authorization", "Bearer b2"}}).ok());
  EXPECT_EQ(TokenAuthenticator::FromTokens({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TokenAuthenticator::FromTokens({""}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace cellgate::api
