#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cellgate::protocol {

enum class Channel { kShell, kIoPub, kStdin, kControl, kHeartbeat };

// The contents of a Jupyter connection file.
struct ConnectionInfo {
  std::string transport = "ipc";  // "ipc" or "tcp"
  // For tcp, the address ("127.0.0.1"); for ipc, the socket path prefix: channel sockets are
  // "<ip>-<port>" as in jupyter_client.
  std::string ip;
  int shell_port = 0;
  int iopub_port = 0;
  int stdin_port = 0;
  int control_port = 0;
  int hb_port = 0;
  std::string key;
  std::string signature_scheme = "hmac-sha256";
  std::string kernel_name;

  int port(Channel channel) const;
  // The ZMQ endpoint of `channel`: "tcp://127.0.0.1:5555" or "ipc:///run/k/ab-1".
  std::string Endpoint(Channel channel) const;
};

nlohmann::json ConnectionInfoToJson(const ConnectionInfo& info);
// INVALID_ARGUMENT naming the field when a field is missing or has the wrong type.
absl::StatusOr<ConnectionInfo> ConnectionInfoFromJson(const nlohmann::json& json);

// Writes the connection file with mode 0600 (atomically: temp file then rename).
absl::Status WriteConnectionFile(const ConnectionInfo& info, const std::string& path);
absl::StatusOr<ConnectionInfo> ReadConnectionFile(const std::string& path);

}  // namespace cellgate::protocol
