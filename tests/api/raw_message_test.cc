#include "server/api/raw_message.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/support/slice.h>
#include <gtest/gtest.h>

#include "cellgate/v1/execution.pb.h"
#include "cellgate/v1/kernel_gateway.pb.h"

namespace cellgate::api {
namespace {

std::string Bytes(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return bytes;
}

// Where each slice of the buffer starts.
std::vector<const char*> SliceStarts(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::vector<const char*> starts;
  for (const grpc::Slice& slice : slices) {
    starts.push_back(reinterpret_cast<const char*>(slice.begin()));
  }
  return starts;
}

std::shared_ptr<v1::OutputEvent> StreamEvent(std::string text) {
  auto event = std::make_shared<v1::OutputEvent>();
  event->set_seq(42);
  event->set_kernel_id("k-0123456789abcdef");
  event->set_cell_id("cell-1");
  event->set_execution_id("exec-1");
  event->mutable_time()->set_seconds(1700000000);
  v1::StreamOutput* stream = event->mutable_output()->mutable_stream();
  stream->set_name(v1::STREAM_NAME_STDOUT);
  stream->set_text(std::move(text));
  return event;
}

TEST(ByteBufferSharingStringsTest, HoldsTheSameBytesAsTheMessageSerialized) {
  auto big = StreamEvent(std::string(1 << 20, 'x') + "\nlast line ✓\n");
  auto small = StreamEvent("1\n");
  auto medium = StreamEvent(std::string(5000, 'm'));
  auto display = std::make_shared<v1::OutputEvent>();
  display->set_seq(7);
  v1::DisplayData* data = display->mutable_output()->mutable_display_data();
  (*data->mutable_data())["text/plain"] = "<Figure>";
  (*data->mutable_data())["image/png"] = std::string(300000, 'A');
  data->set_metadata(std::string(200000, ' ') + "{}");
  auto error = std::make_shared<v1::OutputEvent>();
  v1::ErrorOutput* raised = error->mutable_output()->mutable_error();
  raised->set_ename("ValueError");
  raised->set_evalue(std::string(100000, 'v'));
  for (int i = 0; i < 50; ++i) raised->add_traceback(std::string(5000, 't'));

  for (const auto& event : {big, small, medium, display, error}) {
    const std::string expected = event->SerializeAsString();
    const grpc::ByteBuffer buffer = ByteBufferSharingStrings(event);
    EXPECT_EQ(buffer.Length(), expected.size());
    EXPECT_EQ(Bytes(buffer), expected);
    v1::OutputEvent parsed;
    ASSERT_TRUE(ParseByteBuffer(buffer, parsed));
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, *event));
  }
}

TEST(ByteBufferSharingStringsTest, ALongTextIsSentFromWhereTheEventHoldsIt) {
  auto event = StreamEvent(std::string(8 << 20, 'y'));
  const char* text = event->output().stream().text().data();
  const grpc::ByteBuffer buffer = ByteBufferSharingStrings(event);
  const std::vector<const char*> starts = SliceStarts(buffer);
  EXPECT_NE(std::find(starts.begin(), starts.end(), text), starts.end())
      << "no slice of the buffer starts at the event's text: it was copied";
  // What is copied is only the rest of the event, not the text.
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(buffer.Dump(&slices).ok());
  size_t copied = 0;
  for (const grpc::Slice& slice : slices) {
    if (reinterpret_cast<const char*>(slice.begin()) != text) copied += slice.size();
  }
  EXPECT_LT(copied, 1024u);
}

TEST(ByteBufferSharingStringsTest, TheBufferKeepsTheEventItSharesAlive) {
  auto event = StreamEvent(std::string(1 << 20, 'z'));
  const std::string expected = event->SerializeAsString();
  std::weak_ptr<const v1::OutputEvent> watch = event;
  grpc::ByteBuffer buffer = ByteBufferSharingStrings(std::move(event));
  ASSERT_EQ(event, nullptr);
  EXPECT_FALSE(watch.expired()) << "the buffer points into the event";
  EXPECT_EQ(Bytes(buffer), expected);
  grpc::ByteBuffer copy(buffer);  // a second write of the same buffer shares it too
  buffer.Clear();
  EXPECT_FALSE(watch.expired());
  EXPECT_EQ(Bytes(copy), expected);
  copy.Clear();
  EXPECT_TRUE(watch.expired()) << "the last slice's release frees the event";
}

TEST(ByteBufferSharingStringsTest, ASmallEventIsCopiedWhole) {
  auto event = StreamEvent("hello\n");
  std::weak_ptr<const v1::OutputEvent> watch = event;
  const grpc::ByteBuffer buffer = ByteBufferSharingStrings(std::move(event));
  EXPECT_TRUE(watch.expired()) << "nothing of the event is shared, so nothing keeps it";
  EXPECT_EQ(SliceStarts(buffer).size(), 1u);
}

TEST(ParseByteBufferTest, ReadsARequestAndRefusesWhatIsNotOne) {
  v1::StreamOutputsRequest request;
  request.set_kernel_id("k-1");
  request.set_after_seq(99);
  request.set_follow(true);
  const std::string bytes = request.SerializeAsString();
  grpc::Slice slice(bytes);
  const grpc::ByteBuffer buffer(&slice, 1);
  v1::StreamOutputsRequest parsed;
  ASSERT_TRUE(ParseByteBuffer(buffer, parsed));
  EXPECT_EQ(parsed.kernel_id(), "k-1");
  EXPECT_EQ(parsed.after_seq(), 99);
  EXPECT_TRUE(parsed.follow());
  EXPECT_EQ(Bytes(buffer), bytes) << "parsing does not consume the caller's buffer";

  grpc::Slice garbage(std::string("\xff\xff\xff\xff", 4));
  v1::StreamOutputsRequest not_parsed;
  EXPECT_FALSE(ParseByteBuffer(grpc::ByteBuffer(&garbage, 1), not_parsed));
}

}  // namespace
}  // namespace cellgate::api
