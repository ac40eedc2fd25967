#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace cellgate {

// The whole of the file at `path`, read with open/read (retrying on EINTR). Errors name the path
// and the reason: NOT_FOUND when it does not exist, PERMISSION_DENIED when it can't be opened
// otherwise, FAILED_PRECONDITION when reading fails (e.g. it is a directory).
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

}  // namespace cellgate
