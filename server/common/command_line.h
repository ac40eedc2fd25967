#pragma once

// Flags are documented with dashes (--port-file); Abseil names them with underscores.

#include <string>
#include <vector>

namespace cellgate {

// argv with every "--flag-name[=value]" turned into "--flag_name[=value]" (up to a lone "--";
// values are left alone).
std::vector<std::string> DashesToUnderscores(int argc, char** argv);

// Parses `args` as Abseil flags, keeping `args` alive for the flags' values.
void ParseFlags(std::vector<std::string>& args);

}  // namespace cellgate
