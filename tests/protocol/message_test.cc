#include "server/protocol/message.h"

#include <ctime>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellgate::protocol {
namespace {

using ::testing::IsEmpty;

TEST(MessageTest, AccessorsReadHeaderFields) {
  Message message;
  message.header = {{"msg_type", "execute_request"}, {"msg_id", "abc"}};
  message.parent_header = {{"msg_id", "parent-1"}};
  EXPECT_EQ(message.msg_type(), "execute_request");
  EXPECT_EQ(message.msg_id(), "abc");
  EXPECT_EQ(message.parent_msg_id(), "parent-1");
}

TEST(MessageTest, AccessorsAreEmptyForMissingOrMistypedFields) {
  Message message;
  EXPECT_THAT(message.msg_type(), IsEmpty());
  EXPECT_THAT(message.msg_id(), IsEmpty());
  EXPECT_THAT(message.parent_msg_id(), IsEmpty());

  message.header = {{"msg_type", 7}, {"msg_id", nullptr}};
  message.parent_header = {{"msg_id", {1, 2}}};
  EXPECT_THAT(message.msg_type(), IsEmpty());
  EXPECT_THAT(message.msg_id(), IsEmpty());
  EXPECT_THAT(message.parent_msg_id(), IsEmpty());

  message.header = nlohmann::json::array({"msg_type"});
  message.parent_header = "msg_id";
  EXPECT_THAT(message.msg_type(), IsEmpty());
  EXPECT_THAT(message.parent_msg_id(), IsEmpty());
}

TEST(NewMessageIdTest, IsLowercaseUuidVersion4) {
  const std::regex uuid_v4("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  for (int i = 0; i < 100; ++i) {
    const std::string id = NewMessageId();
    EXPECT_TRUE(std::regex_match(id, uuid_v4)) << id;
  }
}

TEST(NewMessageIdTest, IsUniqueAcrossThreads) {
  constexpr int kThreads = 4;
  constexpr int kIdsPerThread = 2000;
  std::vector<std::vector<std::string>> ids(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&ids, t] {
      for (int i = 0; i < kIdsPerThread; ++i) ids[t].push_back(NewMessageId());
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::set<std::string> unique;
  for (const auto& thread_ids : ids) unique.insert(thread_ids.begin(), thread_ids.end());
  EXPECT_EQ(unique.size(), static_cast<size_t>(kThreads * kIdsPerThread));
}

TEST(UtcTimestampTest, IsIso8601WithMicrosecondsAndIsNow) {
  const std::time_t before = std::time(nullptr);
  const std::string timestamp = UtcTimestamp();
  const std::time_t after = std::time(nullptr);

  const std::regex iso8601(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$)");
  ASSERT_TRUE(std::regex_match(timestamp, iso8601)) << timestamp;

  std::tm parsed{};
  ASSERT_NE(strptime(timestamp.c_str(), "%Y-%m-%dT%H:%M:%S", &parsed), nullptr);
  const std::time_t seconds = timegm(&parsed);
  EXPECT_GE(seconds, before);
  EXPECT_LE(seconds, after);
}

TEST(MakeMessageTest, FillsHeader) {
  const Message message = MakeMessage("execute_request", {{"code", "1+1"}}, "session-42");
  EXPECT_EQ(message.msg_type(), "execute_request");
  EXPECT_EQ(message.msg_id().size(), 36u);
  EXPECT_EQ(message.header["session"], "session-42");
  EXPECT_EQ(message.header["username"], "cellgate");
  EXPECT_EQ(message.header["version"], "5.3");
  EXPECT_TRUE(message.header["date"].is_string());
  EXPECT_EQ(message.header.size(), 6u);
  EXPECT_EQ(message.parent_header, nlohmann::json::object());
  EXPECT_EQ(message.metadata, nlohmann::json::object());
  EXPECT_EQ(message.content, (nlohmann::json{{"code", "1+1"}}));
  EXPECT_TRUE(message.identities.empty());
  EXPECT_TRUE(message.buffers.empty());
}

TEST(MakeMessageTest, ParentHeaderIsTheParentsHeader) {
  const Message request = MakeMessage("execute_request", {{"code", "x"}}, "s");
  const Message reply = MakeMessage("execute_reply", {{"status", "ok"}}, "s", &request);
  EXPECT_EQ(reply.parent_header, request.header);
  EXPECT_EQ(reply.parent_msg_id(), request.msg_id());
  EXPECT_NE(reply.msg_id(), request.msg_id());
}

TEST(MakeMessageTest, NullContentBecomesEmptyObject) {
  const Message message = MakeMessage("kernel_info_request", {}, "s");
  EXPECT_TRUE(message.content.is_object());
  EXPECT_TRUE(message.content.empty());
}

}  // namespace
}  // namespace cellgate::protocol
