#include "server/obs/log.h"

#include <unistd.h>

#include <atomic>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace cellgate::obs {
namespace {

std::atomic<LogFormat> g_format{LogFormat::kLogfmt};
std::atomic<LogLevel> g_min_level{LogLevel::kInfo};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "info";
}

std::string LogfmtValue(absl::string_view value) {
  const bool needs_quotes =
      value.empty() || value.find_first_of(" =\"\n\t") != absl::string_view::npos;
  if (!needs_quotes) return std::string(value);
  return absl::StrCat(
      "\"", absl::StrReplaceAll(value, {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}}), "\"");
}

}  // namespace

void SetLogFormat(LogFormat format) { g_format = format; }
void SetMinLogLevel(LogLevel level) { g_min_level = level; }

void Log(LogLevel level, absl::string_view event, std::initializer_list<LogField> fields) {
  if (level < g_min_level.load()) return;
  const std::string time = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  std::string line;
  if (g_format.load() == LogFormat::kJson) {
    nlohmann::json object = {{"time", time}, {"level", LevelName(level)},
                             {"event", std::string(event)}};
    for (const auto& [key, value] : fields) object[std::string(key)] = value;
    line = object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line = absl::StrCat("time=", time, " level=", LevelName(level), " event=", LogfmtValue(event));
    for (const auto& [key, value] : fields) absl::StrAppend(&line, " ", key, "=", LogfmtValue(value));
  }
  line.push_back('\n');
  [[maybe_unused]] ssize_t written = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace cellgate::obs
