#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "cellgate/v1/execution.pb.h"
#include "cellgate/v1/kernel.pb.h"
#include "cellgate/v1/kernel_gateway.pb.h"
#include "server/kernel/sandbox_policy.h"
#include "server/session/gateway_config.h"

namespace cellgate::api {

// Shape checks of requests, before anything is looked up: pure functions of the request and
// the server's configuration. Errors are INVALID_ARGUMENT whose message starts with the
// field's path and says why, e.g. "kernel_id: must be 1-64 characters of [A-Za-z0-9_-], got
// 70" (except where noted). What needs the kernel's state (does the cell exist, is the index
// within the notebook, is the kernelspec installed) is checked by the session layer.

// An id of 1-64 characters of [A-Za-z0-9_-] (kernel ids, nbformat 4.5 cell ids, execution
// ids). `field` names it in the message. Empty is an error here: optional ids are checked
// only when set.
absl::Status ValidateId(absl::string_view id, absl::string_view field);
absl::Status ValidateKernelId(absl::string_view kernel_id);
absl::Status ValidateCellId(absl::string_view cell_id);
absl::Status ValidateExecutionId(absl::string_view execution_id);

// kernel_spec (when set: 1-255 characters of [A-Za-z0-9._-], not "." or ".."), env, labels,
// limits, notebook_ipynb size and idle_timeout_seconds. Limits above `config.max_limits`
// (0 there = no cap) are INVALID_ARGUMENT naming the limit and the cap; asking for
// `allow_network: false` when `network_isolation_available` is false is FAILED_PRECONDITION
// (reported only once every other field is valid).
absl::Status ValidateStartKernel(const v1::StartKernelRequest& request,
                                 const session::GatewayConfig& config,
                                 bool network_isolation_available);

// The cells RPCs. AddCell's `cell_id` is optional (empty = server-generated); `index`, when
// present, must be >= 0 (its upper bound is the notebook's size). Sources are at most
// `max_source_bytes`; metadata must be empty or a JSON object.
absl::Status ValidateAddCell(const v1::AddCellRequest& request,
                             const session::GatewayConfig& config);
absl::Status ValidateEditCell(const v1::EditCellRequest& request,
                              const session::GatewayConfig& config);
absl::Status ValidateMoveCell(const v1::MoveCellRequest& request,
                              const session::GatewayConfig& config);
absl::Status ValidateImportNotebook(const v1::ImportNotebookRequest& request,
                                    const session::GatewayConfig& config);

// Execution: timeout_ms in 0..max_timeout_ms (0 there = no cap), on_timeout a known value.
// Execute's code must be non-empty, not whitespace-only, and at most max_source_bytes.
absl::Status ValidateRunCell(const v1::RunCellRequest& request,
                             const session::GatewayConfig& config);
absl::Status ValidateRunAll(const v1::RunAllRequest& request, const session::GatewayConfig& config);
// OK if `name` can name a Python variable (ASCII identifier, not a keyword), else
// INVALID_ARGUMENT naming `field`.
absl::Status CheckPythonIdentifier(absl::string_view name, absl::string_view field);
absl::Status ValidateTransferVariable(const v1::TransferVariableRequest& request,
                                      const session::GatewayConfig& config);
absl::Status ValidateRunStale(const v1::RunStaleRequest& request,
                              const session::GatewayConfig& config);
absl::Status ValidateExecute(const v1::ExecuteRequest& request,
                             const session::GatewayConfig& config);

// after_seq >= 0; cell_id and execution_id well-formed when set.
absl::Status ValidateStreamOutputs(const v1::StreamOutputsRequest& request,
                                   const session::GatewayConfig& config);

// label_selector keys and values follow the label rules (a selector that could never match
// is most likely a client bug).
absl::Status ValidateListKernels(const v1::ListKernelsRequest& request,
                                 const session::GatewayConfig& config);

// The limits a kernel gets: each requested limit that is 0 takes the server's default; the
// result never exceeds `config.max_limits` (a 0 = "no limit" default is clamped to a nonzero
// cap), so it is safe even on an unvalidated request. 0 in the result means "no limit".
kernel::ResourceLimits EffectiveLimits(const v1::ResourceLimits& requested,
                                       const session::GatewayConfig& config);
// Whether the kernel may use the network: the request's `allow_network` if present, else the
// server's default; never true when the server's cap (`config.max_allow_network`) is false.
bool EffectiveAllowNetwork(const v1::ResourceLimits& requested,
                           const session::GatewayConfig& config);

// Limits as reported in Kernel.limits / ServerInfo (0 = no limit). The first form leaves
// `allow_network` unset; the second sets it (it is always present in those messages).
void ToProto(const kernel::ResourceLimits& limits, v1::ResourceLimits* out);
void ToProto(const kernel::ResourceLimits& limits, bool allow_network, v1::ResourceLimits* out);

}  // namespace cellgate::api
