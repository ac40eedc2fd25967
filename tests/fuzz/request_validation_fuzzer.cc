// libFuzzer target for the request validators (server/api/request_validation.h). See
// docs/fuzzing.md.

#include "tests/fuzz/request_validation_fuzzer.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "cellgate/v1/kernel_gateway.pb.h"
#include "google/protobuf/stubs/logging.h"
#include "server/api/request_validation.h"
#include "server/session/gateway_config.h"

namespace cellgate::api::fuzz {
namespace {

[[noreturn]] void InvariantBroken(const char* what) {
  std::fprintf(stderr, "request validation invariant broken: %s\n", what);
  std::abort();
}

// Caps small enough for fuzz inputs (a few KiB) to cross every one of them; some limits have
// no default or no cap (0), and no kernel may have the network.
session::GatewayConfig TightConfig() {
  session::GatewayConfig config;
  config.default_limits = {.address_space_bytes = 1 << 20,
                           .cpu_seconds = 0,
                           .max_processes = 8,
                           .max_open_files = 0,
                           .max_file_size_bytes = 1 << 10};
  config.max_limits = {.address_space_bytes = 4 << 20,
                       .cpu_seconds = 60,
                       .max_processes = 0,
                       .max_open_files = 16,
                       .max_file_size_bytes = 1 << 10};
  config.default_allow_network = true;
  config.max_allow_network = false;
  config.max_idle_timeout_seconds = 60;
  config.max_source_bytes = 64;
  config.max_ipynb_bytes = 64;
  config.max_timeout_ms = 1000;
  config.max_labels = 3;
  config.max_env_entries = 3;
  config.max_env_bytes = 64;
  return config;
}

struct Configs {
  session::GatewayConfig defaults;
  session::GatewayConfig tight = TightConfig();
};

const Configs& GetConfigs() {
  static const Configs* const configs = new Configs();
  return *configs;
}

std::unique_ptr<google::protobuf::Message> NewRequest(RequestKind kind) {
  switch (kind) {
    case RequestKind::kStartKernel:
      return std::make_unique<v1::StartKernelRequest>();
    case RequestKind::kListKernels:
      return std::make_unique<v1::ListKernelsRequest>();
    case RequestKind::kGetKernel:
      return std::make_unique<v1::GetKernelRequest>();
    case RequestKind::kAddCell:
      return std::make_unique<v1::AddCellRequest>();
    case RequestKind::kEditCell:
      return std::make_unique<v1::EditCellRequest>();
    case RequestKind::kDeleteCell:
      return std::make_unique<v1::DeleteCellRequest>();
    case RequestKind::kMoveCell:
      return std::make_unique<v1::MoveCellRequest>();
    case RequestKind::kImportNotebook:
      return std::make_unique<v1::ImportNotebookRequest>();
    case RequestKind::kRunCell:
      return std::make_unique<v1::RunCellRequest>();
    case RequestKind::kRunAll:
      return std::make_unique<v1::RunAllRequest>();
    case RequestKind::kExecute:
      return std::make_unique<v1::ExecuteRequest>();
    case RequestKind::kStreamOutputs:
      return std::make_unique<v1::StreamOutputsRequest>();
  }
  InvariantBroken("unknown request kind");
}

// What the service checks for a request of `kind` before looking anything up.
absl::Status Validate(RequestKind kind, const google::protobuf::Message& message,
                      const session::GatewayConfig& config) {
  switch (kind) {
    case RequestKind::kStartKernel:
      // As the service calls it with the default sandbox (no network isolation).
      return ValidateStartKernel(static_cast<const v1::StartKernelRequest&>(message), config,
                                 /*network_isolation_available=*/false);
    case RequestKind::kListKernels:
      return ValidateListKernels(static_cast<const v1::ListKernelsRequest&>(message), config);
    case RequestKind::kGetKernel:
      return ValidateKernelId(static_cast<const v1::GetKernelRequest&>(message).kernel_id());
    case RequestKind::kAddCell:
      return ValidateAddCell(static_cast<const v1::AddCellRequest&>(message), config);
    case RequestKind::kEditCell:
      return ValidateEditCell(static_cast<const v1::EditCellRequest&>(message), config);
    case RequestKind::kDeleteCell: {
      const auto& request = static_cast<const v1::DeleteCellRequest&>(message);
      if (absl::Status s = ValidateKernelId(request.kernel_id()); !s.ok()) return s;
      return ValidateCellId(request.cell_id());
    }
    case RequestKind::kMoveCell:
      return ValidateMoveCell(static_cast<const v1::MoveCellRequest&>(message), config);
    case RequestKind::kImportNotebook:
      return ValidateImportNotebook(static_cast<const v1::ImportNotebookRequest&>(message), config);
    case RequestKind::kRunCell:
      return ValidateRunCell(static_cast<const v1::RunCellRequest&>(message), config);
    case RequestKind::kRunAll:
      return ValidateRunAll(static_cast<const v1::RunAllRequest&>(message), config);
    case RequestKind::kExecute:
      return ValidateExecute(static_cast<const v1::ExecuteRequest&>(message), config);
    case RequestKind::kStreamOutputs:
      return ValidateStreamOutputs(static_cast<const v1::StreamOutputsRequest&>(message), config);
  }
  InvariantBroken("unknown request kind");
}

void CheckStatus(const absl::Status& status, bool may_be_failed_precondition) {
  if (status.ok()) return;
  if (status.message().empty()) InvariantBroken("error without a message");
  if (status.message().size() > kMaxStatusMessageBytes) {
    std::fprintf(stderr, "message of %zu bytes: %.200s...\n", status.message().size(),
                 std::string(status.message()).c_str());
    InvariantBroken("error message longer than kMaxStatusMessageBytes");
  }
  const bool expected_code =
      status.code() == absl::StatusCode::kInvalidArgument ||
      (may_be_failed_precondition && status.code() == absl::StatusCode::kFailedPrecondition);
  if (!expected_code) InvariantBroken("error code is not INVALID_ARGUMENT");
}

// One limit of EffectiveLimits.
void CheckEffectiveLimit(int64_t requested, uint64_t effective, uint64_t default_value,
                         uint64_t cap, bool validated) {
  if (cap != 0 && (effective == 0 || effective > cap)) {
    InvariantBroken("an effective limit is above the server cap");
  }
  if (validated && requested > 0 && effective != static_cast<uint64_t>(requested)) {
    InvariantBroken("a valid requested limit was not taken");
  }
  if (requested <= 0 && default_value != 0 && (cap == 0 || default_value <= cap) &&
      effective != default_value) {
    InvariantBroken("an unset limit did not take the server default");
  }
}

void CheckEffectiveLimits(const v1::ResourceLimits& requested, const session::GatewayConfig& config,
                          bool validated) {
  const kernel::ResourceLimits limits = EffectiveLimits(requested, config);
  const kernel::ResourceLimits& d = config.default_limits;
  const kernel::ResourceLimits& cap = config.max_limits;
  CheckEffectiveLimit(requested.address_space_bytes(), limits.address_space_bytes,
                      d.address_space_bytes, cap.address_space_bytes, validated);
  CheckEffectiveLimit(requested.cpu_seconds(), limits.cpu_seconds, d.cpu_seconds, cap.cpu_seconds,
                      validated);
  CheckEffectiveLimit(requested.max_processes(), limits.max_processes, d.max_processes,
                      cap.max_processes, validated);
  CheckEffectiveLimit(requested.max_open_files(), limits.max_open_files, d.max_open_files,
                      cap.max_open_files, validated);
  CheckEffectiveLimit(requested.max_file_size_bytes(), limits.max_file_size_bytes,
                      d.max_file_size_bytes, cap.max_file_size_bytes, validated);

  const bool allow_network = EffectiveAllowNetwork(requested, config);
  if (allow_network && !config.max_allow_network) {
    InvariantBroken("network allowed although the server cap is false");
  }
  if (validated && requested.has_allow_network() && allow_network != requested.allow_network()) {
    InvariantBroken("a valid allow_network was not taken");
  }

  v1::ResourceLimits reported;
  ToProto(limits, allow_network, &reported);
  if (reported.address_space_bytes() < 0 || reported.cpu_seconds() < 0 ||
      reported.max_processes() < 0 || reported.max_open_files() < 0 ||
      reported.max_file_size_bytes() < 0 || !reported.has_allow_network() ||
      reported.allow_network() != allow_network) {
    InvariantBroken("ToProto reported a negative limit or the wrong allow_network");
  }
}

// StartKernel also goes through the other validation path (with network isolation available)
// and EffectiveLimits, whatever the validators said.
void CheckStartKernel(const v1::StartKernelRequest& request, const session::GatewayConfig& config,
                      const absl::Status& without_isolation) {
  const absl::Status with_isolation =
      ValidateStartKernel(request, config, /*network_isolation_available=*/true);
  CheckStatus(with_isolation, /*may_be_failed_precondition=*/false);
  if (without_isolation.code() == absl::StatusCode::kFailedPrecondition) {
    if (!with_isolation.ok()) InvariantBroken("FAILED_PRECONDITION hid another error");
  } else if (with_isolation != without_isolation) {
    InvariantBroken("network isolation changed an unrelated verdict");
  }
  CheckEffectiveLimits(request.limits(), config, with_isolation.ok());
}

absl::Status ValidateAndCheck(RequestKind kind, const google::protobuf::Message& request,
                              const session::GatewayConfig& config) {
  const absl::Status status = Validate(kind, request, config);
  CheckStatus(status, /*may_be_failed_precondition=*/kind == RequestKind::kStartKernel);
  if (kind == RequestKind::kStartKernel) {
    CheckStartKernel(static_cast<const v1::StartKernelRequest&>(request), config, status);
  }
  return status;
}

}  // namespace

std::string MakeFuzzInput(RequestKind kind, const google::protobuf::Message& request) {
  std::string input(1, static_cast<char>(kind));
  input += request.SerializeAsString();
  return input;
}

RequestValidationOutcome RunRequestValidation(std::string_view input) {
  RequestValidationOutcome outcome;
  if (input.empty()) return outcome;
  outcome.kind = static_cast<RequestKind>(static_cast<uint8_t>(input[0]) % kRequestKinds);
  input.remove_prefix(1);
  std::unique_ptr<google::protobuf::Message> request = NewRequest(outcome.kind);
  {
    // Not logging "String field ... contains invalid UTF-8 data" for every such input.
    google::protobuf::LogSilencer silence;
    if (!request->ParseFromArray(input.data(), static_cast<int>(input.size()))) return outcome;
  }
  outcome.parsed = true;
  const Configs& configs = GetConfigs();
  outcome.status = ValidateAndCheck(outcome.kind, *request, configs.defaults);
  outcome.tight_status = ValidateAndCheck(outcome.kind, *request, configs.tight);
  return outcome;
}

}  // namespace cellgate::api::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cellgate::api::fuzz::RunRequestValidation(
      std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
