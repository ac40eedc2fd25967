#include "server/api/request_validation.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/common/json_nesting.h"

namespace cellgate::api {
namespace {

constexpr size_t kMaxIdLength = 64;
constexpr size_t kMaxKernelSpecNameLength = 255;
constexpr size_t kMaxEnvNameLength = 256;
constexpr size_t kMaxLabelKeyLength = 63;
constexpr size_t kMaxLabelValueBytes = 256;
constexpr size_t kMaxEchoedChars = 64;

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

// A user-supplied string safe to put in a message: escaped and cut short.
std::string Echo(absl::string_view text) {
  if (text.size() <= kMaxEchoedChars) return absl::CHexEscape(text);
  return absl::StrCat(absl::CHexEscape(text.substr(0, kMaxEchoedChars)), "...");
}

// `map["key"]` as a field path.
std::string MapField(absl::string_view map, absl::string_view key) {
  return absl::StrCat(map, "[\"", Echo(key), "\"]");
}

bool IsIdChar(char c) { return absl::ascii_isalnum(c) || c == '_' || c == '-'; }
bool IsKernelSpecChar(char c) { return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-'; }
bool IsLabelKeyChar(char c) {
  return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '/' || c == '-';
}
bool IsEnvNameStart(char c) { return absl::ascii_isalpha(c) || c == '_'; }
bool IsEnvNameChar(char c) { return absl::ascii_isalnum(c) || c == '_'; }

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool IsValidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t extra;
    uint32_t min;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1, min = 0x80, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2, min = 0x800, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3, min = 0x10000, cp = c & 0x07;
    } else {
      return false;
    }
    if (text.size() - i <= extra) return false;
    for (size_t k = 1; k <= extra; ++k) {
      const auto cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += extra + 1;
  }
  return true;
}

// Environment names the server sets itself (or strips for safety); a request may not set them.
bool IsRefusedEnvName(absl::string_view name) {
  static constexpr absl::string_view kNames[] = {
      "IPYTHONDIR", "HOME", "TMPDIR", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT"};
  static constexpr absl::string_view kPrefixes[] = {"JUPYTER_", "JPY_", "CELLGATE_"};
  for (absl::string_view refused : kNames) {
    if (name == refused) return true;
  }
  for (absl::string_view prefix : kPrefixes) {
    if (absl::StartsWith(name, prefix)) return true;
  }
  return false;
}

absl::Status CheckSize(absl::string_view field, size_t size, int64_t cap) {
  if (cap > 0 && static_cast<int64_t>(size) > cap) {
    return Invalid(field, absl::StrCat(size, " bytes exceeds the server cap of ", cap, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status CheckTimeout(int64_t timeout_ms, const session::GatewayConfig& config) {
  if (timeout_ms < 0) return Invalid("timeout_ms", absl::StrCat("must be >= 0, got ", timeout_ms));
  if (config.max_timeout_ms > 0 && timeout_ms > config.max_timeout_ms) {
    return Invalid("timeout_ms",
                   absl::StrCat(timeout_ms, " exceeds the server cap ", config.max_timeout_ms));
  }
  return absl::OkStatus();
}

absl::Status CheckOnTimeout(int on_timeout) {
  if (!v1::OnTimeout_IsValid(on_timeout)) {
    return Invalid("on_timeout", absl::StrCat("unknown value ", on_timeout));
  }
  return absl::OkStatus();
}

absl::Status CheckCellType(int cell_type) {
  if (!v1::CellType_IsValid(cell_type)) {
    return Invalid("cell_type", absl::StrCat("unknown value ", cell_type));
  }
  return absl::OkStatus();
}

constexpr size_t kMaxMetadataNesting = 256;

absl::Status CheckMetadata(absl::string_view metadata) {
  if (metadata.empty()) return absl::OkStatus();
  // The server re-serialises metadata, recursively: bound the depth before anything parses it.
  if (FindExcessiveJsonNesting(metadata, kMaxMetadataNesting) != absl::string_view::npos) {
    return Invalid("metadata", absl::StrCat("must not nest deeper than ", kMaxMetadataNesting,
                                            " levels"));
  }
  try {
    const nlohmann::json parsed = nlohmann::json::parse(metadata.begin(), metadata.end());
    if (!parsed.is_object()) {
      return Invalid("metadata",
                     absl::StrCat("must be a JSON object, got a JSON ", parsed.type_name()));
    }
  } catch (const nlohmann::json::parse_error& e) {
    return Invalid("metadata",
                   absl::StrCat("must be a JSON object, got invalid JSON (at byte ", e.byte, ")"));
  } catch (const nlohmann::json::exception&) {
    // out_of_range for a number a double cannot hold (1e999). Its what() quotes the whole
    // number, so it is not echoed.
    return Invalid("metadata", "must be a JSON object, got invalid JSON (number out of range)");
  }
  return absl::OkStatus();
}

absl::Status CheckOptionalId(absl::string_view id, absl::string_view field) {
  return id.empty() ? absl::OkStatus() : ValidateId(id, field);
}

absl::Status CheckKernelSpecName(absl::string_view name) {
  if (name.empty()) return absl::OkStatus();  // the server's default
  constexpr absl::string_view kRule = "must be 1-255 characters of [A-Za-z0-9._-]";
  if (name.size() > kMaxKernelSpecNameLength) {
    return Invalid("kernel_spec", absl::StrCat(kRule, ", got ", name.size()));
  }
  for (size_t i = 0; i < name.size(); ++i) {
    if (!IsKernelSpecChar(name[i])) {
      return Invalid(
          "kernel_spec",
          absl::StrCat(kRule, ", got '", absl::CHexEscape(name.substr(i, 1)), "' at index ", i));
    }
  }
  if (name == "." || name == "..") return Invalid("kernel_spec", "must not be \".\" or \"..\"");
  return absl::OkStatus();
}

absl::Status CheckEnv(const google::protobuf::Map<std::string, std::string>& env,
                      const session::GatewayConfig& config) {
  if (static_cast<int64_t>(env.size()) > config.max_env_entries) {
    return Invalid("env",
                   absl::StrCat("at most ", config.max_env_entries, " entries, got ", env.size()));
  }
  int64_t total = 0;
  for (const auto& [name, value] : env) {
    bool well_formed =
        !name.empty() && name.size() <= kMaxEnvNameLength && IsEnvNameStart(name.front());
    for (char c : name) well_formed = well_formed && IsEnvNameChar(c);
    if (!well_formed) {
      return Invalid(MapField("env", name),
                     "name must match [A-Za-z_][A-Za-z0-9_]* and be at most 256 characters");
    }
    if (IsRefusedEnvName(name)) {
      return Invalid(MapField("env", name),
                     "set by the server, may not be overridden (refused: IPYTHONDIR, HOME, "
                     "TMPDIR, LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT, JUPYTER_*, JPY_*, "
                     "CELLGATE_*)");
    }
    if (value.find('\0') != std::string::npos) {
      return Invalid(MapField("env", name), "value must not contain NUL");
    }
    total += static_cast<int64_t>(name.size() + value.size());
  }
  if (total > config.max_env_bytes) {
    return Invalid("env", absl::StrCat("at most ", config.max_env_bytes,
                                       " bytes of names and values in total, got ", total));
  }
  return absl::OkStatus();
}

absl::Status CheckLabels(absl::string_view field,
                         const google::protobuf::Map<std::string, std::string>& labels,
                         const session::GatewayConfig& config) {
  if (static_cast<int64_t>(labels.size()) > config.max_labels) {
    return Invalid(field,
                   absl::StrCat("at most ", config.max_labels, " labels, got ", labels.size()));
  }
  for (const auto& [key, value] : labels) {
    bool well_formed = !key.empty() && key.size() <= kMaxLabelKeyLength;
    for (char c : key) well_formed = well_formed && IsLabelKeyChar(c);
    if (!well_formed) {
      return Invalid(MapField(field, key), "key must be 1-63 characters of [A-Za-z0-9._/-]");
    }
    if (value.size() > kMaxLabelValueBytes) {
      return Invalid(MapField(field, key),
                     absl::StrCat("value must be at most 256 bytes, got ", value.size()));
    }
    if (!IsValidUtf8(value)) return Invalid(MapField(field, key), "value must be valid UTF-8");
  }
  return absl::OkStatus();
}

absl::Status CheckLimit(absl::string_view name, int64_t requested, uint64_t cap) {
  const std::string field = absl::StrCat("limits.", name);
  if (requested < 0) return Invalid(field, absl::StrCat("must be >= 0, got ", requested));
  if (cap != 0 && static_cast<uint64_t>(requested) > cap) {
    return Invalid(field, absl::StrCat(requested, " exceeds the server cap ", cap));
  }
  return absl::OkStatus();
}

absl::Status CheckLimits(const v1::ResourceLimits& limits, const session::GatewayConfig& config) {
  const kernel::ResourceLimits& cap = config.max_limits;
  for (const absl::Status& status : {
           CheckLimit("address_space_bytes", limits.address_space_bytes(), cap.address_space_bytes),
           CheckLimit("cpu_seconds", limits.cpu_seconds(), cap.cpu_seconds),
           CheckLimit("max_processes", limits.max_processes(), cap.max_processes),
           CheckLimit("max_open_files", limits.max_open_files(), cap.max_open_files),
           CheckLimit("max_file_size_bytes", limits.max_file_size_bytes(), cap.max_file_size_bytes),
       }) {
    if (!status.ok()) return status;
  }
  if (limits.has_allow_network() && limits.allow_network() && !config.max_allow_network) {
    return Invalid("limits.allow_network",
                   "true exceeds the server cap false (this server gives kernels no network)");
  }
  return absl::OkStatus();
}

uint64_t EffectiveLimit(int64_t requested, uint64_t default_value, uint64_t cap) {
  uint64_t value = requested > 0 ? static_cast<uint64_t>(requested) : default_value;
  if (cap != 0 && (value == 0 || value > cap)) value = cap;
  return value;
}

}  // namespace

absl::Status ValidateId(absl::string_view id, absl::string_view field) {
  constexpr absl::string_view kRule = "must be 1-64 characters of [A-Za-z0-9_-]";
  if (id.empty()) return Invalid(field, absl::StrCat(kRule, ", got an empty string"));
  if (id.size() > kMaxIdLength) return Invalid(field, absl::StrCat(kRule, ", got ", id.size()));
  for (size_t i = 0; i < id.size(); ++i) {
    if (!IsIdChar(id[i])) {
      return Invalid(field, absl::StrCat(kRule, ", got '", absl::CHexEscape(id.substr(i, 1)),
                                         "' at index ", i));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateKernelId(absl::string_view kernel_id) {
  return ValidateId(kernel_id, "kernel_id");
}

absl::Status ValidateCellId(absl::string_view cell_id) { return ValidateId(cell_id, "cell_id"); }

absl::Status ValidateExecutionId(absl::string_view execution_id) {
  return ValidateId(execution_id, "execution_id");
}

absl::Status ValidateStartKernel(const v1::StartKernelRequest& request,
                                 const session::GatewayConfig& config,
                                 bool network_isolation_available) {
  if (absl::Status s = CheckKernelSpecName(request.kernel_spec()); !s.ok()) return s;
  if (absl::Status s = CheckEnv(request.env(), config); !s.ok()) return s;
  if (absl::Status s = CheckLabels("labels", request.labels(), config); !s.ok()) return s;
  if (absl::Status s = CheckLimits(request.limits(), config); !s.ok()) return s;
  const int32_t idle = request.idle_timeout_seconds();
  if (idle < 0) {
    return Invalid("idle_timeout_seconds", absl::StrCat("must be >= 0, got ", idle));
  }
  if (config.max_idle_timeout_seconds > 0 && idle > config.max_idle_timeout_seconds) {
    return Invalid("idle_timeout_seconds",
                   absl::StrCat(idle, " exceeds the server cap ", config.max_idle_timeout_seconds));
  }
  if (absl::Status s =
          CheckSize("notebook_ipynb", request.notebook_ipynb().size(), config.max_ipynb_bytes);
      !s.ok()) {
    return s;
  }
  const v1::ResourceLimits& limits = request.limits();
  if (limits.has_allow_network() && !limits.allow_network() && !network_isolation_available) {
    return absl::FailedPreconditionError(
        "limits.allow_network: false cannot be enforced: this server has no network isolation "
        "(it needs the bwrap sandbox layer in force)");
  }
  return absl::OkStatus();
}

absl::Status ValidateAddCell(const v1::AddCellRequest& request,
                             const session::GatewayConfig& config) {
  if (absl::Status s = ValidateKernelId(request.kernel_id()); !s.ok()) return s;
  if (absl::Status s = CheckOptionalId(request.cell_id(), "cell_id"); !s.ok()) return s;
  if (absl::Status s = CheckSize("source", request.source().size(), config.max_source_bytes);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckCellType(request.cell_type()); !s.ok()) return s;
  if (request.has_index() && request.index() < 0) {
    return Invalid("index", absl::StrCat("must be >= 0, got ", request.index()));
  }
  return CheckMetadata(request.metadata());
}

absl::Status ValidateEditCell(const v1::EditCellRequest& request,
                              const session::GatewayConfig& config) {
  if (absl::Status s = ValidateKernelId(request.kernel_id()); !s.ok()) return s;
  if (absl::Status s = ValidateCellId(request.cell_id()); !s.ok()) return s;
  if (absl::Status s = CheckSize("source", request.source().size(), config.max_source_bytes);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckCellType(request.cell_type()); !s.ok()) return s;
  if (request.has_metadata()) return CheckMetadata(request.metadata());
  return absl::OkStatus();
}

absl::Status ValidateMoveCell(const v1::MoveCellRequest& request,
                              const session::GatewayConfig& /*config*/) {
  if (absl::Status s = ValidateKernelId(request.kernel_id()); !s.ok()) return s;
  if (absl::Status s = ValidateCellId(request.cell_id()); !s.ok()) return s;
  if (request.index() < 0) {
    return Invalid("index", absl::StrCat("must be >= 0, got ", request.index()));
  }
  return absl::OkStatus();
}

absl::Status ValidateImportNotebook(const v1::ImportNotebookRequest& request,
                                    const session::GatewayConfig& config) {
  if (absl::Status s = ValidateKernelId(request.kernel_id()); !s.ok()) return s;
  if (request.ipynb().empty()) return Invalid("ipynb", "must not be empty");
  return CheckSize("ipynb", request.ipynb().size(), config.max_ipynb_bytes);
}

absl::Status ValidateRunCell(const v1::RunCellRequest& request,
                             const session::GatewayConfig& config) {
  if (absl::Status s = ValidateKernelId(request.kernel_id()); !s.ok()) return s;
  if (absl::Status s = ValidateCellId(request.cell_id()); !s.ok()) return s;
  if (absl::Status s = CheckTimeout(request.timeout_ms(), config); !s.ok()) return s;
  if (absl::Status s = CheckOnTimeout(request.on_timeout()); !s.ok()) return s;
  if (!v1::Cascade_IsValid(request.cascade())) {
    return Invalid("cascade", absl::StrCat("unknown value ", request.cascade()));
  }
  const bool cascades = request.cascade() == v1::CASCADE_DEPENDENTS ||
                        request.cascade() == v1::CASCADE_UPSTREAM;
  if (cascades && request.on_timeout() == v1::ON_TIMEOUT_KEEP_RUNNING) {
    return Invalid("on_timeout",
                   "ON_TIMEOUT_KEEP_RUNNING cannot be combined with a cascade: the cascade goes "
                   "on only once each cell has ended");
  }
  return absl::OkStatus();
}

constexpr std::array<absl::string_view, 35> kPythonKeywords = {
    "False", "None",   "True",    "and",      "as",       "assert", "async",
    "await", "break",  "class",   "continue", "def",      "del",    "elif",
    "else",  "except", "finally", "for",      "from",     "global", "if",
    "import", "in",    "is",      "lambda",   "nonlocal", "not",    "or",
    "pass",  "raise",  "return",  "try",      "while",    "with",   "yield"};

absl::Status CheckPythonIdentifier(absl::string_view name, absl::string_view field) {
  const bool shaped =
      !name.empty() && name.size() <= 256 && (absl::ascii_isalpha(name[0]) || name[0] == '_') &&
      std::all_of(name.begin(), name.end(),
                  [](char c) { return absl::ascii_isalnum(c) || c == '_'; });
  if (!shaped) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": \"", absl::CHexEscape(name.substr(0, 80)),
        "\" is not a Python identifier ([A-Za-z_][A-Za-z0-9_]*, at most 256 characters)"));
  }
  if (std::find(kPythonKeywords.begin(), kPythonKeywords.end(), name) != kPythonKeywords.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": \"", name, "\" is a Python keyword"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTransferVariable(const v1::TransferVariableRequest& request,
                                      const session::GatewayConfig& config) {
  if (absl::Status s = ValidateKernelId(request.from_kernel_id()); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("from_kernel_id: ", s.message()));
  }
  if (absl::Status s = ValidateKernelId(request.to_kernel_id()); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("to_kernel_id: ", s.message()));
  }
  if (request.from_kernel_id() == request.to_kernel_id()) {
    return Invalid("to_kernel_id",
                   "is from_kernel_id: a value moves between two kernels (within one, assign it)");
  }
  if (absl::Status s = CheckPythonIdentifier(request.name(), "name"); !s.ok()) return s;
  if (!request.as_name().empty()) {
    if (absl::Status s = CheckPythonIdentifier(request.as_name(), "as_name"); !s.ok()) {
      return s;
    }
  }
  return CheckTimeout(request.timeout_ms(), config);
}

absl::Status ValidateRunStale(const v1::RunStaleRequest& request,
                              const session::GatewayConfig& config) {
  if (absl::Status s = ValidateKernelId(request.kernel_id()); !s.ok()) return s;
  return CheckTimeout(request.timeout_ms(), config);
}

absl::Status ValidateRunAll(const v1::RunAllRequest& request,
                            const session::GatewayConfig& config) {
  if (absl::Status s = ValidateKernelId(request.kernel_id()); !s.ok()) return s;
  return CheckTimeout(request.timeout_ms(), config);
}

absl::Status ValidateExecute(const v1::ExecuteRequest& request,
                             const session::GatewayConfig& config) {
  if (absl::Status s = ValidateKernelId(request.kernel_id()); !s.ok()) return s;
  const std::string& code = request.code();
  if (code.empty()) return Invalid("code", "must not be empty");
  if (std::all_of(code.begin(), code.end(), [](char c) { return absl::ascii_isspace(c); })) {
    return Invalid("code", "must not be only whitespace");
  }
  if (absl::Status s = CheckSize("code", code.size(), config.max_source_bytes); !s.ok()) return s;
  if (absl::Status s = CheckTimeout(request.timeout_ms(), config); !s.ok()) return s;
  return CheckOnTimeout(request.on_timeout());
}

absl::Status ValidateStreamOutputs(const v1::StreamOutputsRequest& request,
                                   const session::GatewayConfig& /*config*/) {
  if (absl::Status s = ValidateKernelId(request.kernel_id()); !s.ok()) return s;
  if (request.after_seq() < 0) {
    return Invalid("after_seq", absl::StrCat("must be >= 0, got ", request.after_seq()));
  }
  if (absl::Status s = CheckOptionalId(request.cell_id(), "cell_id"); !s.ok()) return s;
  return CheckOptionalId(request.execution_id(), "execution_id");
}

absl::Status ValidateListKernels(const v1::ListKernelsRequest& request,
                                 const session::GatewayConfig& config) {
  return CheckLabels("label_selector", request.label_selector(), config);
}

kernel::ResourceLimits EffectiveLimits(const v1::ResourceLimits& requested,
                                       const session::GatewayConfig& config) {
  const kernel::ResourceLimits& d = config.default_limits;
  const kernel::ResourceLimits& cap = config.max_limits;
  return kernel::ResourceLimits{
      .address_space_bytes = EffectiveLimit(requested.address_space_bytes(), d.address_space_bytes,
                                            cap.address_space_bytes),
      .cpu_seconds = EffectiveLimit(requested.cpu_seconds(), d.cpu_seconds, cap.cpu_seconds),
      .max_processes =
          EffectiveLimit(requested.max_processes(), d.max_processes, cap.max_processes),
      .max_open_files =
          EffectiveLimit(requested.max_open_files(), d.max_open_files, cap.max_open_files),
      .max_file_size_bytes = EffectiveLimit(requested.max_file_size_bytes(), d.max_file_size_bytes,
                                            cap.max_file_size_bytes),
  };
}

bool EffectiveAllowNetwork(const v1::ResourceLimits& requested,
                           const session::GatewayConfig& config) {
  const bool wanted =
      requested.has_allow_network() ? requested.allow_network() : config.default_allow_network;
  return wanted && config.max_allow_network;
}

void ToProto(const kernel::ResourceLimits& limits, v1::ResourceLimits* out) {
  constexpr auto kInt64Max = static_cast<uint64_t>(INT64_MAX);
  constexpr auto kInt32Max = static_cast<uint64_t>(INT32_MAX);
  out->set_address_space_bytes(
      static_cast<int64_t>(std::min(limits.address_space_bytes, kInt64Max)));
  out->set_cpu_seconds(static_cast<int64_t>(std::min(limits.cpu_seconds, kInt64Max)));
  out->set_max_processes(static_cast<int32_t>(std::min(limits.max_processes, kInt32Max)));
  out->set_max_open_files(static_cast<int32_t>(std::min(limits.max_open_files, kInt32Max)));
  out->set_max_file_size_bytes(
      static_cast<int64_t>(std::min(limits.max_file_size_bytes, kInt64Max)));
}

void ToProto(const kernel::ResourceLimits& limits, bool allow_network, v1::ResourceLimits* out) {
  ToProto(limits, out);
  out->set_allow_network(allow_network);
}

}  // namespace cellgate::api
