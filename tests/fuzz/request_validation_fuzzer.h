#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "google/protobuf/message.h"

// The request validation fuzz target, callable from ordinary tests
// (request_validation_corpus_test) as well as from libFuzzer (LLVMFuzzerTestOneInput, defined in
// request_validation_fuzzer.cc).
namespace cellgate::api::fuzz {

// The request types the service validates, one per shape: kGetKernel stands for every request
// that holds only a kernel_id (GetKernel, InterruptKernel, RestartKernel, ShutdownKernel,
// GetNotebook, ExportNotebook), kDeleteCell for kernel_id + cell_id (DeleteCell, GetCell).
enum class RequestKind : uint8_t {
  kStartKernel,
  kListKernels,
  kGetKernel,
  kAddCell,
  kEditCell,
  kDeleteCell,
  kMoveCell,
  kImportNotebook,
  kRunCell,
  kRunAll,
  kExecute,
  kStreamOutputs,
};
inline constexpr size_t kRequestKinds = 12;

// Longest Status message the validators may produce: they quote what the client sent escaped
// and cut short, so a message never grows with the request.
inline constexpr size_t kMaxStatusMessageBytes = 4096;

// The fuzz input format: the first byte picks the request type (modulo kRequestKinds), the rest
// is the serialized request.
std::string MakeFuzzInput(RequestKind kind, const google::protobuf::Message& request);

// What the validators said about one input.
struct RequestValidationOutcome {
  bool parsed = false;  // the input is a request (false: empty input or not a serialized proto)
  RequestKind kind = RequestKind::kStartKernel;
  absl::Status status;        // with a default session::GatewayConfig
  absl::Status tight_status;  // with small caps (and no network allowed)
};

// Parses and validates `input` with both configurations, and computes the effective limits of a
// StartKernel request. Aborts when an invariant breaks: an error has a message of at most
// kMaxStatusMessageBytes and the documented code; effective limits stay within the caps.
RequestValidationOutcome RunRequestValidation(std::string_view input);

}  // namespace cellgate::api::fuzz
