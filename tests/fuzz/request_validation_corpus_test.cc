// Runs the request validation fuzz target over the seed corpus and a few hand-made inputs, so
// the harness is compiled and exercised by every ordinary test run (no clang or libFuzzer
// needed).

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cellgate/v1/kernel_gateway.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fuzz/request_validation_fuzzer.h"

namespace cellgate::api::fuzz {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

TEST(RequestValidationCorpusTest, FirstByteSelectsTheRequestType) {
  v1::GetKernelRequest request;
  request.set_kernel_id("k1");
  const std::string input = MakeFuzzInput(RequestKind::kGetKernel, request);
  EXPECT_EQ(input[0], static_cast<char>(RequestKind::kGetKernel));
  const RequestValidationOutcome outcome = RunRequestValidation(input);
  EXPECT_TRUE(outcome.parsed);
  EXPECT_EQ(outcome.kind, RequestKind::kGetKernel);
  EXPECT_TRUE(outcome.status.ok()) << outcome.status;

  // The kind is taken modulo the number of kinds.
  std::string wrapped = input;
  wrapped[0] = static_cast<char>(static_cast<size_t>(RequestKind::kGetKernel) + kRequestKinds);
  EXPECT_EQ(RunRequestValidation(wrapped).kind, RequestKind::kGetKernel);

  EXPECT_FALSE(RunRequestValidation("").parsed);
  EXPECT_FALSE(RunRequestValidation(std::string("\x02\x0a\x05k1", 4)).parsed);  // truncated
}

TEST(RequestValidationCorpusTest, TightConfigRejectsWhatTheDefaultAccepts) {
  v1::StartKernelRequest request;
  request.mutable_limits()->set_max_open_files(64);
  request.mutable_limits()->set_allow_network(true);
  const RequestValidationOutcome outcome =
      RunRequestValidation(MakeFuzzInput(RequestKind::kStartKernel, request));
  EXPECT_TRUE(outcome.status.ok()) << outcome.status;
  EXPECT_EQ(outcome.tight_status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(outcome.tight_status.message()), StartsWith("limits.max_open_files: "));

  v1::ExecuteRequest execute;
  execute.set_kernel_id("k1");
  execute.set_code(std::string(100, 'x'));
  const RequestValidationOutcome executed =
      RunRequestValidation(MakeFuzzInput(RequestKind::kExecute, execute));
  EXPECT_TRUE(executed.status.ok()) << executed.status;
  EXPECT_THAT(executed.tight_status.message(), HasSubstr("exceeds the server cap of 64 bytes"));
}

TEST(RequestValidationCorpusTest, NetworkIsolationIsAFailedPrecondition) {
  v1::StartKernelRequest request;
  request.mutable_limits()->set_allow_network(false);
  const RequestValidationOutcome outcome =
      RunRequestValidation(MakeFuzzInput(RequestKind::kStartKernel, request));
  EXPECT_EQ(outcome.status.code(), absl::StatusCode::kFailedPrecondition);
}

// Found by the fuzzer: a number a double cannot hold made nlohmann::json throw out_of_range,
// which CheckMetadata did not catch (std::terminate, the whole server down).
TEST(RequestValidationCorpusTest, MetadataNumberOverflowIsInvalid) {
  v1::AddCellRequest add;
  add.set_kernel_id("k1");
  add.set_metadata(R"({"a": 1e999})");
  const RequestValidationOutcome added =
      RunRequestValidation(MakeFuzzInput(RequestKind::kAddCell, add));
  EXPECT_EQ(added.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(added.status.message()), StartsWith("metadata: "));

  v1::EditCellRequest edit;
  edit.set_kernel_id("k1");
  edit.set_cell_id("c1");
  edit.set_metadata("1" + std::string(100000, '0'));  // not quoted back
  const RequestValidationOutcome edited =
      RunRequestValidation(MakeFuzzInput(RequestKind::kEditCell, edit));
  EXPECT_EQ(edited.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(edited.status.message(), HasSubstr("number out of range"));
}

TEST(RequestValidationCorpusTest, MessagesStayShort) {
  // Valid UTF-8 (string fields must be), but every byte is escaped in a message.
  const std::string long_text(100000, '\x01');
  v1::StartKernelRequest start;
  start.set_kernel_spec(long_text);
  (*start.mutable_env())[std::string(100000, 'A')] = "v";
  (*start.mutable_labels())[long_text] = long_text;
  v1::AddCellRequest add;
  add.set_kernel_id("k1");
  add.set_metadata("[" + long_text);
  v1::StreamOutputsRequest stream;
  stream.set_kernel_id("k1");
  stream.set_execution_id(long_text);
  v1::ListKernelsRequest list;
  (*list.mutable_label_selector())["k"] = long_text;

  const std::vector<std::string> inputs = {
      MakeFuzzInput(RequestKind::kStartKernel, start),
      MakeFuzzInput(RequestKind::kAddCell, add),
      MakeFuzzInput(RequestKind::kStreamOutputs, stream),
      MakeFuzzInput(RequestKind::kListKernels, list),
  };
  for (const std::string& input : inputs) {
    const RequestValidationOutcome outcome = RunRequestValidation(input);
    ASSERT_TRUE(outcome.parsed);
    EXPECT_FALSE(outcome.status.ok());
    EXPECT_LE(outcome.status.message().size(), kMaxStatusMessageBytes);
    EXPECT_LE(outcome.tight_status.message().size(), kMaxStatusMessageBytes);
  }
}

TEST(RequestValidationCorpusTest, SeedCorpusDoesNotCrash) {
  size_t seeds = 0;
  size_t parsed = 0;
  size_t valid = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(CELLGATE_REQUEST_VALIDATION_CORPUS)) {
    const RequestValidationOutcome outcome = RunRequestValidation(ReadFile(entry.path()));
    ++seeds;
    if (outcome.parsed) ++parsed;
    if (outcome.status.ok()) ++valid;
  }
  EXPECT_GE(seeds, 12u);
  EXPECT_EQ(parsed, seeds);
  // Valid requests as well as invalid ones, so the fuzzer starts past the first checks.
  EXPECT_GE(valid, 6u);
  EXPECT_LT(valid, seeds);
}

}  // namespace
}  // namespace cellgate::api::fuzz
