#include "server/protocol/connection_info.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string_view>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/write_all.h"

namespace cellgate::protocol {
namespace {

// A connection file is a few hundred bytes; anything far larger is not one.
constexpr off_t kMaxConnectionFileBytes = 1 << 20;

absl::Status FileError(const char* action, const std::string& path, int error_number) {
  const std::string message = absl::StrCat("cannot ", action, " connection file ", path, ": ",
                                           std::generic_category().message(error_number));
  if (error_number == ENOENT) return absl::NotFoundError(message);
  return absl::InternalError(message);
}

absl::StatusOr<std::string> GetString(const nlohmann::json& json, const char* field) {
  const auto it = json.find(field);
  if (it == json.end()) {
    return absl::InvalidArgumentError(absl::StrCat("connection info has no \"", field, "\""));
  }
  if (!it->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("connection info \"", field, "\" must be a string"));
  }
  return it->get<std::string>();
}

absl::StatusOr<int> GetPort(const nlohmann::json& json, const char* field) {
  const auto it = json.find(field);
  if (it == json.end()) {
    return absl::InvalidArgumentError(absl::StrCat("connection info has no \"", field, "\""));
  }
  if (!it->is_number_integer()) {  // true for signed and unsigned integers, not floats
    return absl::InvalidArgumentError(
        absl::StrCat("connection info \"", field, "\" must be an integer"));
  }
  const bool in_range = it->is_number_unsigned()
                            ? it->get<uint64_t>() <= 65535
                            : it->get<int64_t>() >= 0 && it->get<int64_t>() <= 65535;
  if (!in_range) {
    return absl::InvalidArgumentError(
        absl::StrCat("connection info \"", field, "\" must be in 0..65535"));
  }
  return static_cast<int>(it->get<int64_t>());
}

}  // namespace

int ConnectionInfo::port(Channel channel) const {
  switch (channel) {
    case Channel::kShell:
      return shell_port;
    case Channel::kIoPub:
      return iopub_port;
    case Channel::kStdin:
      return stdin_port;
    case Channel::kControl:
      return control_port;
    case Channel::kHeartbeat:
      return hb_port;
  }
  return 0;
}

std::string ConnectionInfo::Endpoint(Channel channel) const {
  // jupyter_client's convention: ipc sockets are files named "<ip>-<port>".
  if (transport == "ipc") return absl::StrCat("ipc://", ip, "-", port(channel));
  return absl::StrCat(transport, "://", ip, ":", port(channel));
}

nlohmann::json ConnectionInfoToJson(const ConnectionInfo& info) {
  return {
      {"transport", info.transport},
      {"ip", info.ip},
      {"shell_port", info.shell_port},
      {"iopub_port", info.iopub_port},
      {"stdin_port", info.stdin_port},
      {"control_port", info.control_port},
      {"hb_port", info.hb_port},
      {"key", info.key},
      {"signature_scheme", info.signature_scheme},
      {"kernel_name", info.kernel_name},
  };
}

absl::StatusOr<ConnectionInfo> ConnectionInfoFromJson(const nlohmann::json& json) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError("connection info must be a JSON object");
  }
  ConnectionInfo info;

  absl::StatusOr<std::string> transport = GetString(json, "transport");
  if (!transport.ok()) return transport.status();
  if (*transport != "ipc" && *transport != "tcp") {
    return absl::InvalidArgumentError(absl::StrCat(
        "connection info \"transport\" must be \"ipc\" or \"tcp\", got \"", *transport, "\""));
  }
  info.transport = *std::move(transport);

  absl::StatusOr<std::string> ip = GetString(json, "ip");
  if (!ip.ok()) return ip.status();
  if (ip->empty()) return absl::InvalidArgumentError("connection info \"ip\" is empty");
  info.ip = *std::move(ip);

  const std::pair<const char*, int ConnectionInfo::*> ports[] = {
      {"shell_port", &ConnectionInfo::shell_port}, {"iopub_port", &ConnectionInfo::iopub_port},
      {"stdin_port", &ConnectionInfo::stdin_port}, {"control_port", &ConnectionInfo::control_port},
      {"hb_port", &ConnectionInfo::hb_port},
  };
  for (const auto& [field, member] : ports) {
    absl::StatusOr<int> port = GetPort(json, field);
    if (!port.ok()) return port.status();
    info.*member = *port;
  }

  absl::StatusOr<std::string> key = GetString(json, "key");
  if (!key.ok()) return key.status();
  info.key = *std::move(key);

  // Optional, as in jupyter_client: the scheme defaults to hmac-sha256, the kernel name to "".
  if (json.contains("signature_scheme")) {
    absl::StatusOr<std::string> scheme = GetString(json, "signature_scheme");
    if (!scheme.ok()) return scheme.status();
    info.signature_scheme = *std::move(scheme);
  }
  if (json.contains("kernel_name")) {
    absl::StatusOr<std::string> kernel_name = GetString(json, "kernel_name");
    if (!kernel_name.ok()) return kernel_name.status();
    info.kernel_name = *std::move(kernel_name);
  }
  return info;
}

absl::Status WriteConnectionFile(const ConnectionInfo& info, const std::string& path) {
  const std::string text =
      ConnectionInfoToJson(info).dump(/*indent=*/2, /*indent_char=*/' ', /*ensure_ascii=*/false,
                                      nlohmann::json::error_handler_t::replace) +
      "\n";

  // The temporary file sits next to `path` so that rename() is atomic. mkostemp creates it
  // with mode 0600, so the key is never readable by others, even for a moment.
  std::string temp_path = path + ".tmp.XXXXXX";
  const int fd = ::mkostemp(temp_path.data(), O_CLOEXEC);
  if (fd < 0) return FileError("create a temporary file for", path, errno);

  int error_number = 0;
  const char* failed_action = "";
  if (::fchmod(fd, S_IRUSR | S_IWUSR) != 0) {
    error_number = errno;
    failed_action = "set the mode of";
  } else if ((error_number = WriteAll(fd, text)) != 0) {
    failed_action = "write";
  } else if (::fsync(fd) != 0) {
    error_number = errno;
    failed_action = "sync";
  }
  if (::close(fd) != 0 && error_number == 0) {
    error_number = errno;
    failed_action = "close";
  }
  if (error_number == 0 && ::rename(temp_path.c_str(), path.c_str()) != 0) {
    error_number = errno;
    failed_action = "rename into place";
  }
  if (error_number != 0) {
    ::unlink(temp_path.c_str());
    return FileError(failed_action, path, error_number);
  }
  return absl::OkStatus();
}

absl::StatusOr<ConnectionInfo> ReadConnectionFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return FileError("open", path, errno);

  std::string text;
  int error_number = 0;
  struct stat file_stat;
  if (::fstat(fd, &file_stat) != 0) {
    error_number = errno;
  } else if (file_stat.st_size > kMaxConnectionFileBytes) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("connection file ", path, " is ", file_stat.st_size, " bytes, too large"));
  } else {
    char chunk[4096];
    while (text.size() <= static_cast<size_t>(kMaxConnectionFileBytes)) {
      const ssize_t bytes_read = ::read(fd, chunk, sizeof(chunk));
      if (bytes_read < 0) {
        if (errno == EINTR) continue;
        error_number = errno;
        break;
      }
      if (bytes_read == 0) break;
      text.append(chunk, static_cast<size_t>(bytes_read));
    }
  }
  ::close(fd);
  if (error_number != 0) return FileError("read", path, error_number);
  if (text.size() > static_cast<size_t>(kMaxConnectionFileBytes)) {
    return absl::InvalidArgumentError(absl::StrCat("connection file ", path, " is too large"));
  }

  const nlohmann::json json =
      nlohmann::json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat("connection file ", path, " is not valid JSON"));
  }
  absl::StatusOr<ConnectionInfo> info = ConnectionInfoFromJson(json);
  if (!info.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("connection file ", path, ": ", info.status().message()));
  }
  return info;
}

}  // namespace cellgate::protocol
