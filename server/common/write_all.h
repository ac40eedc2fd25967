#pragma once

#include <string_view>

namespace cellgate {

// Writes all of `data` to `fd`, retrying on EINTR and short writes. Returns 0 or an errno.
int WriteAll(int fd, std::string_view data);

}  // namespace cellgate
