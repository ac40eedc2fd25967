#include "server/api/request_validation.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellgate::api {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Expects INVALID_ARGUMENT whose message starts with `field` and contains `why`.
#define EXPECT_INVALID(expr, field, why)                                       \
  do {                                                                         \
    const absl::Status status_ = (expr);                                       \
    EXPECT_EQ(status_.code(), absl::StatusCode::kInvalidArgument) << status_;  \
    EXPECT_THAT(std::string(status_.message()), StartsWith(field)) << status_; \
    EXPECT_THAT(std::string(status_.message()), HasSubstr(why)) << status_;    \
  } while (0)

class RequestValidationTest : public ::testing::Test {
 protected:
  session::GatewayConfig config_;
};

// ---- ids ----

TEST_F(RequestValidationTest, KernelIdShape) {
  EXPECT_TRUE(ValidateKernelId("abc_DEF-123").ok());
  EXPECT_TRUE(ValidateKernelId(std::string(64, 'a')).ok());
  EXPECT_INVALID(ValidateKernelId(""), "kernel_id: ", "empty");
  EXPECT_INVALID(ValidateKernelId(std::string(70, 'a')),
                 "kernel_id: ", "must be 1-64 characters of [A-Za-z0-9_-], got 70");
  EXPECT_INVALID(ValidateKernelId("ab/cd"), "kernel_id: ", "'/' at index 2");
  EXPECT_INVALID(ValidateKernelId("a b"), "kernel_id: ", "' ' at index 1");
  EXPECT_INVALID(ValidateKernelId(std::string("a\0b", 3)), "kernel_id: ", "\\x00");
  EXPECT_INVALID(ValidateKernelId("caf\xc3\xa9"), "kernel_id: ", "index 3");
}

TEST_F(RequestValidationTest, CellAndExecutionIdShape) {
  EXPECT_TRUE(ValidateCellId("3f2a-b_c").ok());
  EXPECT_INVALID(ValidateCellId(""), "cell_id: ", "1-64");
  EXPECT_INVALID(ValidateCellId("a.b"), "cell_id: ", "'.'");
  EXPECT_TRUE(ValidateExecutionId("e-1").ok());
  EXPECT_INVALID(ValidateExecutionId(std::string(65, 'x')), "execution_id: ", "got 65");
}

// ---- StartKernel ----

v1::StartKernelRequest StartRequest() {
  v1::StartKernelRequest request;
  request.set_kernel_spec("python3");
  return request;
}

TEST_F(RequestValidationTest, StartKernelMinimalAndDefaultsAreValid) {
  EXPECT_TRUE(ValidateStartKernel(v1::StartKernelRequest(), config_, false).ok());
  EXPECT_TRUE(ValidateStartKernel(StartRequest(), config_, false).ok());
}

TEST_F(RequestValidationTest, StartKernelSpecName) {
  auto request = StartRequest();
  request.set_kernel_spec("python3.11_x-y");
  EXPECT_TRUE(ValidateStartKernel(request, config_, false).ok());
  request.set_kernel_spec("../etc");
  EXPECT_INVALID(ValidateStartKernel(request, config_, false), "kernel_spec: ", "'/'");
  request.set_kernel_spec("..");
  EXPECT_INVALID(ValidateStartKernel(request, config_, false), "kernel_spec: ", "\"..\"");
  request.set_kernel_spec(std::string(256, 'k'));
  EXPECT_INVALID(ValidateStartKernel(request, config_, false), "kernel_spec: ", "got 256");
}

TEST_F(RequestValidationTest, StartKernelEnvNames) {
  auto request = StartRequest();
  (*request.mutable_env())["MY_VAR_1"] = "value";
  (*request.mutable_env())["_private"] = "";
  EXPECT_TRUE(ValidateStartKernel(request, config_, false).ok());

  for (const char* bad : {"1ABC", "A-B", "A=B", "", "A B"}) {
    auto r = StartRequest();
    (*r.mutable_env())[bad] = "v";
    EXPECT_INVALID(ValidateStartKernel(r, config_, false), "env[", "[A-Za-z_][A-Za-z0-9_]*");
  }
  auto long_name = StartRequest();
  (*long_name.mutable_env())[std::string(257, 'A')] = "v";
  EXPECT_INVALID(ValidateStartKernel(long_name, config_, false), "env[", "256 characters");
  auto max_name = StartRequest();
  (*max_name.mutable_env())[std::string(256, 'A')] = "v";
  EXPECT_TRUE(ValidateStartKernel(max_name, config_, false).ok());
}

TEST_F(RequestValidationTest, StartKernelRefusesServerOwnedEnvNames) {
  for (const char* refused : {"IPYTHONDIR", "JUPYTER_PATH", "JUPYTER_RUNTIME_DIR", "JPY_SESSION",
                              "CELLGATE_TOKEN", "HOME", "TMPDIR", "LD_PRELOAD"}) {
    auto request = StartRequest();
    (*request.mutable_env())[refused] = "x";
    const absl::Status status = ValidateStartKernel(request, config_, false);
    EXPECT_INVALID(status, absl::StrCat("env[\"", refused, "\"]: "), "set by the server");
  }
  auto allowed = StartRequest();
  (*allowed.mutable_env())["JUPYTERX"] = "x";  // not the JUPYTER_ prefix
  (*allowed.mutable_env())["PATH"] = "/opt/bin:/usr/bin";
  EXPECT_TRUE(ValidateStartKernel(allowed, config_, false).ok());
}

TEST_F(RequestValidationTest, StartKernelEnvValuesCountAndBytes) {
  auto nul = StartRequest();
  (*nul.mutable_env())["A"] = std::string("x\0y", 3);
  EXPECT_INVALID(ValidateStartKernel(nul, config_, false), "env[\"A\"]: ", "NUL");

  auto many = StartRequest();
  for (int i = 0; i < 257; ++i) (*many.mutable_env())[absl::StrCat("V", i)] = "1";
  EXPECT_INVALID(ValidateStartKernel(many, config_, false),
                 "env: ", "at most 256 entries, got 257");

  auto big = StartRequest();
  (*big.mutable_env())["A"] = std::string(40 << 10, 'a');
  (*big.mutable_env())["B"] = std::string(30 << 10, 'b');
  EXPECT_INVALID(ValidateStartKernel(big, config_, false), "env: ", "at most 65536 bytes");
}

TEST_F(RequestValidationTest, StartKernelLabels) {
  auto request = StartRequest();
  (*request.mutable_labels())["owner"] = "agent-7";
  (*request.mutable_labels())["example.com/team_a-b"] = "caf\xc3\xa9";
  (*request.mutable_labels())[std::string(63, 'k')] = std::string(256, 'v');
  EXPECT_TRUE(ValidateStartKernel(request, config_, false).ok());

  for (const std::string& bad :
       {std::string(), std::string(64, 'k'), std::string("a b"), std::string("a:b")}) {
    auto r = StartRequest();
    (*r.mutable_labels())[bad] = "v";
    EXPECT_INVALID(ValidateStartKernel(r, config_, false), "labels[", "key must be 1-63");
  }
  auto long_value = StartRequest();
  (*long_value.mutable_labels())["k"] = std::string(257, 'v');
  EXPECT_INVALID(ValidateStartKernel(long_value, config_, false),
                 "labels[\"k\"]: ", "at most 256 bytes, got 257");
  auto bad_utf8 = StartRequest();
  (*bad_utf8.mutable_labels())["k"] = "\xc3(";
  EXPECT_INVALID(ValidateStartKernel(bad_utf8, config_, false), "labels[\"k\"]: ", "UTF-8");
  auto surrogate = StartRequest();
  (*surrogate.mutable_labels())["k"] = "\xed\xa0\x80";
  EXPECT_INVALID(ValidateStartKernel(surrogate, config_, false), "labels[\"k\"]: ", "UTF-8");

  auto many = StartRequest();
  for (int i = 0; i < 33; ++i) (*many.mutable_labels())[absl::StrCat("l", i)] = "v";
  EXPECT_INVALID(ValidateStartKernel(many, config_, false),
                 "labels: ", "at most 32 labels, got 33");
}

TEST_F(RequestValidationTest, StartKernelLimitsNegativeAndAboveCap) {
  config_.max_limits.address_space_bytes = 4294967296;
  auto ok = StartRequest();
  ok.mutable_limits()->set_address_space_bytes(4294967296);
  ok.mutable_limits()->set_max_open_files(10);
  EXPECT_TRUE(ValidateStartKernel(ok, config_, false).ok());

  auto above = StartRequest();
  above.mutable_limits()->set_address_space_bytes(8589934592);
  EXPECT_INVALID(ValidateStartKernel(above, config_, false),
                 "limits.address_space_bytes: ", "8589934592 exceeds the server cap 4294967296");

  auto negative = StartRequest();
  negative.mutable_limits()->set_max_processes(-1);
  EXPECT_INVALID(ValidateStartKernel(negative, config_, false),
                 "limits.max_processes: ", "must be >= 0, got -1");

  auto files = StartRequest();
  files.mutable_limits()->set_max_open_files(1025);
  EXPECT_INVALID(ValidateStartKernel(files, config_, false),
                 "limits.max_open_files: ", "exceeds the server cap 1024");

  auto fsize = StartRequest();
  fsize.mutable_limits()->set_max_file_size_bytes((1ll << 30) + 1);
  EXPECT_INVALID(ValidateStartKernel(fsize, config_, false),
                 "limits.max_file_size_bytes: ", "exceeds the server cap");

  // cpu_seconds has no cap by default (0): anything non-negative goes.
  auto cpu = StartRequest();
  cpu.mutable_limits()->set_cpu_seconds(1'000'000);
  EXPECT_TRUE(ValidateStartKernel(cpu, config_, false).ok());
  config_.max_limits.cpu_seconds = 60;
  EXPECT_INVALID(ValidateStartKernel(cpu, config_, false),
                 "limits.cpu_seconds: ", "exceeds the server cap 60");
}

TEST_F(RequestValidationTest, StartKernelNetwork) {
  auto no_network = StartRequest();
  no_network.mutable_limits()->set_allow_network(false);
  EXPECT_TRUE(ValidateStartKernel(no_network, config_, true).ok());
  const absl::Status status = ValidateStartKernel(no_network, config_, false);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()), StartsWith("limits.allow_network: "));

  auto network = StartRequest();
  network.mutable_limits()->set_allow_network(true);
  EXPECT_TRUE(ValidateStartKernel(network, config_, false).ok());
  config_.max_allow_network = false;
  EXPECT_INVALID(ValidateStartKernel(network, config_, true),
                 "limits.allow_network: ", "exceeds the server cap");
}

TEST_F(RequestValidationTest, StartKernelInvalidArgumentBeatsFailedPrecondition) {
  auto request = StartRequest();
  request.mutable_limits()->set_allow_network(false);
  request.set_idle_timeout_seconds(-1);
  EXPECT_INVALID(ValidateStartKernel(request, config_, false), "idle_timeout_seconds: ", ">= 0");
}

TEST_F(RequestValidationTest, StartKernelIdleTimeout) {
  auto request = StartRequest();
  request.set_idle_timeout_seconds(1'000'000);
  EXPECT_TRUE(ValidateStartKernel(request, config_, false).ok());  // no cap by default
  config_.max_idle_timeout_seconds = 3600;
  EXPECT_INVALID(ValidateStartKernel(request, config_, false),
                 "idle_timeout_seconds: ", "1000000 exceeds the server cap 3600");
  request.set_idle_timeout_seconds(3600);
  EXPECT_TRUE(ValidateStartKernel(request, config_, false).ok());
  request.set_idle_timeout_seconds(-5);
  EXPECT_INVALID(ValidateStartKernel(request, config_, false), "idle_timeout_seconds: ", "got -5");
}

TEST_F(RequestValidationTest, StartKernelNotebookSize) {
  config_.max_ipynb_bytes = 100;
  auto request = StartRequest();
  request.set_notebook_ipynb(std::string(100, '{'));
  EXPECT_TRUE(ValidateStartKernel(request, config_, false).ok());
  request.set_notebook_ipynb(std::string(101, '{'));
  EXPECT_INVALID(ValidateStartKernel(request, config_, false),
                 "notebook_ipynb: ", "101 bytes exceeds the server cap of 100 bytes");
}

// ---- Limits helpers ----

TEST_F(RequestValidationTest, EffectiveLimitsTakeDefaultsForZero) {
  v1::ResourceLimits requested;
  requested.set_max_open_files(64);
  const kernel::ResourceLimits limits = EffectiveLimits(requested, config_);
  EXPECT_EQ(limits.max_open_files, 64u);
  EXPECT_EQ(limits.address_space_bytes, config_.default_limits.address_space_bytes);
  EXPECT_EQ(limits.max_processes, config_.default_limits.max_processes);
  EXPECT_EQ(limits.max_file_size_bytes, config_.default_limits.max_file_size_bytes);
  EXPECT_EQ(limits.cpu_seconds, 0u);
}

TEST_F(RequestValidationTest, EffectiveLimitsNeverExceedTheCap) {
  config_.max_limits.cpu_seconds = 100;  // default 0 (no limit) is looser than the cap
  v1::ResourceLimits requested;
  requested.set_max_processes(100000);  // unvalidated, above the cap
  const kernel::ResourceLimits limits = EffectiveLimits(requested, config_);
  EXPECT_EQ(limits.cpu_seconds, 100u);
  EXPECT_EQ(limits.max_processes, config_.max_limits.max_processes);
}

TEST_F(RequestValidationTest, EffectiveAllowNetwork) {
  v1::ResourceLimits requested;
  EXPECT_TRUE(EffectiveAllowNetwork(requested, config_));
  config_.default_allow_network = false;
  EXPECT_FALSE(EffectiveAllowNetwork(requested, config_));
  requested.set_allow_network(true);
  EXPECT_TRUE(EffectiveAllowNetwork(requested, config_));
  config_.max_allow_network = false;
  EXPECT_FALSE(EffectiveAllowNetwork(requested, config_));
}

TEST_F(RequestValidationTest, ToProtoCopiesEveryLimit) {
  const kernel::ResourceLimits limits{.address_space_bytes = 1,
                                      .cpu_seconds = 2,
                                      .max_processes = 3,
                                      .max_open_files = 4,
                                      .max_file_size_bytes = 5};
  v1::ResourceLimits out;
  ToProto(limits, &out);
  EXPECT_EQ(out.address_space_bytes(), 1);
  EXPECT_EQ(out.cpu_seconds(), 2);
  EXPECT_EQ(out.max_processes(), 3);
  EXPECT_EQ(out.max_open_files(), 4);
  EXPECT_EQ(out.max_file_size_bytes(), 5);
  EXPECT_FALSE(out.has_allow_network());
  ToProto(limits, false, &out);
  ASSERT_TRUE(out.has_allow_network());
  EXPECT_FALSE(out.allow_network());

  v1::ResourceLimits huge;
  ToProto(kernel::ResourceLimits{.max_processes = 1ull << 40}, &huge);
  EXPECT_EQ(huge.max_processes(), INT32_MAX);
}

// ---- Cells ----

v1::AddCellRequest AddRequest() {
  v1::AddCellRequest request;
  request.set_kernel_id("k1");
  request.set_source("print(1)");
  return request;
}

TEST_F(RequestValidationTest, AddCell) {
  EXPECT_TRUE(ValidateAddCell(AddRequest(), config_).ok());

  auto empty_source = AddRequest();
  empty_source.set_source("");
  EXPECT_TRUE(ValidateAddCell(empty_source, config_).ok());

  auto bad_kernel = AddRequest();
  bad_kernel.set_kernel_id("");
  EXPECT_INVALID(ValidateAddCell(bad_kernel, config_), "kernel_id: ", "1-64");

  auto with_id = AddRequest();
  with_id.set_cell_id("my-cell");
  EXPECT_TRUE(ValidateAddCell(with_id, config_).ok());
  with_id.set_cell_id("my cell");
  EXPECT_INVALID(ValidateAddCell(with_id, config_), "cell_id: ", "' ' at index 2");

  config_.max_source_bytes = 10;
  auto big = AddRequest();
  big.set_source(std::string(11, 'x'));
  EXPECT_INVALID(ValidateAddCell(big, config_),
                 "source: ", "11 bytes exceeds the server cap of 10 bytes");

  auto index = AddRequest();
  index.set_index(0);
  EXPECT_TRUE(ValidateAddCell(index, config_).ok());
  index.set_index(-1);
  EXPECT_INVALID(ValidateAddCell(index, config_), "index: ", "got -1");

  auto type = AddRequest();
  type.set_cell_type(static_cast<v1::CellType>(9));
  EXPECT_INVALID(ValidateAddCell(type, config_), "cell_type: ", "unknown value 9");
}

TEST_F(RequestValidationTest, CellMetadataMustBeAJsonObject) {
  auto request = AddRequest();
  for (const char* good : {"", "{}", "{\"tags\": [\"setup\"]}"}) {
    request.set_metadata(good);
    EXPECT_TRUE(ValidateAddCell(request, config_).ok()) << good;
  }
  request.set_metadata("[1, 2]");
  EXPECT_INVALID(ValidateAddCell(request, config_), "metadata: ", "got a JSON array");
  request.set_metadata("{\"a\": ");
  EXPECT_INVALID(ValidateAddCell(request, config_), "metadata: ", "invalid JSON");
  request.set_metadata("\"text\"");
  EXPECT_INVALID(ValidateAddCell(request, config_), "metadata: ", "got a JSON string");
}

TEST_F(RequestValidationTest, EditCell) {
  v1::EditCellRequest request;
  request.set_kernel_id("k1");
  request.set_cell_id("c1");
  request.set_source("x = 1");
  EXPECT_TRUE(ValidateEditCell(request, config_).ok());

  request.set_metadata("");  // present and empty = {}
  EXPECT_TRUE(ValidateEditCell(request, config_).ok());
  request.set_metadata("null");
  EXPECT_INVALID(ValidateEditCell(request, config_), "metadata: ", "JSON object");
  request.clear_metadata();

  request.set_cell_id("");
  EXPECT_INVALID(ValidateEditCell(request, config_), "cell_id: ", "empty");
  request.set_cell_id("c1");

  config_.max_source_bytes = 3;
  EXPECT_INVALID(ValidateEditCell(request, config_), "source: ", "exceeds the server cap");
  config_.max_source_bytes = 100;

  request.set_cell_type(static_cast<v1::CellType>(-1));
  EXPECT_INVALID(ValidateEditCell(request, config_), "cell_type: ", "unknown value -1");
}

TEST_F(RequestValidationTest, MoveCell) {
  v1::MoveCellRequest request;
  request.set_kernel_id("k1");
  request.set_cell_id("c1");
  request.set_index(0);
  EXPECT_TRUE(ValidateMoveCell(request, config_).ok());
  request.set_index(-3);
  EXPECT_INVALID(ValidateMoveCell(request, config_), "index: ", "must be >= 0, got -3");
  request.set_index(1);
  request.set_cell_id("bad!");
  EXPECT_INVALID(ValidateMoveCell(request, config_), "cell_id: ", "'!'");
}

TEST_F(RequestValidationTest, ImportNotebook) {
  v1::ImportNotebookRequest request;
  request.set_kernel_id("k1");
  request.set_ipynb("{}");
  EXPECT_TRUE(ValidateImportNotebook(request, config_).ok());
  request.set_ipynb("");
  EXPECT_INVALID(ValidateImportNotebook(request, config_), "ipynb: ", "empty");
  config_.max_ipynb_bytes = 5;
  request.set_ipynb("{\"cells\": []}");
  EXPECT_INVALID(ValidateImportNotebook(request, config_),
                 "ipynb: ", "exceeds the server cap of 5");
  request.set_kernel_id("a/b");
  EXPECT_INVALID(ValidateImportNotebook(request, config_), "kernel_id: ", "'/'");
}

// ---- Execution ----

TEST_F(RequestValidationTest, RunCellTimeoutAndOnTimeout) {
  v1::RunCellRequest request;
  request.set_kernel_id("k1");
  request.set_cell_id("c1");
  EXPECT_TRUE(ValidateRunCell(request, config_).ok());
  request.set_timeout_ms(config_.max_timeout_ms);
  request.set_on_timeout(v1::ON_TIMEOUT_KEEP_RUNNING);
  EXPECT_TRUE(ValidateRunCell(request, config_).ok());
  request.set_timeout_ms(config_.max_timeout_ms + 1);
  EXPECT_INVALID(ValidateRunCell(request, config_),
                 "timeout_ms: ", absl::StrCat("exceeds the server cap ", config_.max_timeout_ms));
  request.set_timeout_ms(-1);
  EXPECT_INVALID(ValidateRunCell(request, config_), "timeout_ms: ", "got -1");
  request.set_timeout_ms(10);
  request.set_on_timeout(static_cast<v1::OnTimeout>(7));
  EXPECT_INVALID(ValidateRunCell(request, config_), "on_timeout: ", "unknown value 7");
  request.set_on_timeout(v1::ON_TIMEOUT_INTERRUPT);
  request.set_cell_id("");
  EXPECT_INVALID(ValidateRunCell(request, config_), "cell_id: ", "empty");

  config_.max_timeout_ms = 0;  // no cap
  request.set_cell_id("c1");
  request.set_timeout_ms(int64_t{1} << 50);
  EXPECT_TRUE(ValidateRunCell(request, config_).ok());
}

TEST_F(RequestValidationTest, RunAll) {
  v1::RunAllRequest request;
  request.set_kernel_id("k1");
  EXPECT_TRUE(ValidateRunAll(request, config_).ok());
  request.set_timeout_ms(-10);
  EXPECT_INVALID(ValidateRunAll(request, config_), "timeout_ms: ", ">= 0");
  request.set_timeout_ms(0);
  request.set_kernel_id(std::string(65, 'k'));
  EXPECT_INVALID(ValidateRunAll(request, config_), "kernel_id: ", "got 65");
}

TEST_F(RequestValidationTest, ExecuteCode) {
  v1::ExecuteRequest request;
  request.set_kernel_id("k1");
  request.set_code("1 + 1");
  EXPECT_TRUE(ValidateExecute(request, config_).ok());
  request.set_code("");
  EXPECT_INVALID(ValidateExecute(request, config_), "code: ", "must not be empty");
  request.set_code(" \n\t\r\n ");
  EXPECT_INVALID(ValidateExecute(request, config_), "code: ", "whitespace");
  config_.max_source_bytes = 4;
  request.set_code("12345");
  EXPECT_INVALID(ValidateExecute(request, config_),
                 "code: ", "5 bytes exceeds the server cap of 4 bytes");
  request.set_code("1");
  request.set_timeout_ms(-1);
  EXPECT_INVALID(ValidateExecute(request, config_), "timeout_ms: ", "got -1");
  request.set_timeout_ms(0);
  request.set_on_timeout(static_cast<v1::OnTimeout>(3));
  EXPECT_INVALID(ValidateExecute(request, config_), "on_timeout: ", "unknown value 3");
}

// ---- StreamOutputs and ListKernels ----

TEST_F(RequestValidationTest, StreamOutputs) {
  v1::StreamOutputsRequest request;
  request.set_kernel_id("k1");
  EXPECT_TRUE(ValidateStreamOutputs(request, config_).ok());
  request.set_after_seq(123);
  request.set_cell_id("c1");
  request.set_execution_id("e1");
  EXPECT_TRUE(ValidateStreamOutputs(request, config_).ok());
  request.set_after_seq(-1);
  EXPECT_INVALID(ValidateStreamOutputs(request, config_), "after_seq: ", "got -1");
  request.set_after_seq(0);
  request.set_cell_id("c 1");
  EXPECT_INVALID(ValidateStreamOutputs(request, config_), "cell_id: ", "' '");
  request.set_cell_id("");
  request.set_execution_id(std::string(65, 'e'));
  EXPECT_INVALID(ValidateStreamOutputs(request, config_), "execution_id: ", "got 65");
}

TEST_F(RequestValidationTest, ListKernelsSelector) {
  v1::ListKernelsRequest request;
  EXPECT_TRUE(ValidateListKernels(request, config_).ok());
  (*request.mutable_label_selector())["owner"] = "me";
  EXPECT_TRUE(ValidateListKernels(request, config_).ok());
  (*request.mutable_label_selector())["bad key"] = "me";
  EXPECT_INVALID(ValidateListKernels(request, config_), "label_selector[", "key must be");
}

TEST_F(RequestValidationTest, MessagesEscapeWhatTheClientSent) {
  auto request = StartRequest();
  (*request.mutable_labels())[std::string("a\nb") + std::string(100, 'x')] = "v";
  const absl::Status status = ValidateStartKernel(request, config_, false);
  EXPECT_EQ(std::string(status.message()).find('\n'), std::string::npos);
  EXPECT_LT(status.message().size(), 200u);
}

}  // namespace
}  // namespace cellgate::api

namespace cellgate::api {
namespace {

TEST(MetadataNestingTest, DeeplyNestedMetadataIsInvalidBeforeAnythingRecursesOverIt) {
  session::GatewayConfig config;
  v1::AddCellRequest request;
  request.set_kernel_id("k1");
  request.set_metadata("{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}");
  const absl::Status status = ValidateAddCell(request, config);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("metadata"));
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("nest"));
  // A reasonable depth is fine.
  request.set_metadata("{\"a\":" + std::string(20, '[') + std::string(20, ']') + "}");
  EXPECT_TRUE(ValidateAddCell(request, config).ok());
}

}  // namespace
}  // namespace cellgate::api
