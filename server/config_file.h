#pragma once

// The server's settings from a file: a cellgate.v1.ServerConfig in JSON, each field setting the
// flag of the same name (server/flags.h). Applied before the command line is parsed, so a flag
// given there wins.

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace cellgate {

// The value of --config in `args` (after the program name; "--config=PATH" or "--config PATH",
// dashes already turned into underscores), or "" when it is not given.
std::string ConfigPathFromArgs(const std::vector<std::string>& args);

// Reads `path` and sets a flag for every field it gives. Errors name the file and the field:
// unreadable file, not JSON, an unknown field, a value of the wrong type, a value the flag
// refuses.
absl::Status ApplyConfigFile(const std::string& path);

// Every ServerConfig field names a flag of the same type, and every flag of server/flags.h
// (but --config) has its field. Checked by the tests so the two cannot drift apart.
absl::Status CheckServerConfigCoversFlags();

}  // namespace cellgate
