#pragma once

// Decoding the body of a JSON string where it lies.

#include <cstddef>
#include <optional>

namespace cellgate::notebook {

// Decodes the body of a JSON string, the `size` bytes between its quotes starting at `body`:
// each escape becomes the character it stands for (`\uXXXX` as UTF-8, a surrogate pair as
// one character), everything else is copied as it is. The result is written from `out`, which
// may be `body` itself or any place before it in the same buffer (the writing never overtakes
// the reading), and is never longer than the body. Returns its length, or nullopt when an
// escape is malformed: an unknown letter, fewer than four hex digits, a surrogate that is not
// half of a pair, a backslash at the end. Then what was written is unspecified. Checks
// nothing else (UTF-8, control characters, quotes): the caller's parser already has.
std::optional<size_t> UnescapeJsonString(const char* body, size_t size, char* out);

}  // namespace cellgate::notebook
