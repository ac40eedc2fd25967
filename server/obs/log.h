#pragma once

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"

namespace cellgate::obs {

enum class LogLevel { kDebug, kInfo, kWarning, kError };
enum class LogFormat { kLogfmt, kJson };

// Process-wide log settings; set once at startup before other threads log.
void SetLogFormat(LogFormat format);
void SetMinLogLevel(LogLevel level);

using LogField = std::pair<absl::string_view, std::string>;

// Writes one line to stderr: time, level, event, then the fields, as logfmt or JSON.
// Thread-safe; a line is written with one write(2).
void Log(LogLevel level, absl::string_view event, std::initializer_list<LogField> fields = {});

}  // namespace cellgate::obs
