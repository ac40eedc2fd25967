#pragma once

#include <cstddef>

#include "absl/strings/string_view.h"

namespace cellgate {

// The byte offset at which arrays and objects in `text` nest deeper than `max_depth`, or npos.
// Brackets inside strings don't count. Exact for valid JSON; malformed JSON is left to the
// parser. Linear and without recursion, so it is safe to run on untrusted input before parsing
// (nlohmann's parser and dump() recurse once per level).
size_t FindExcessiveJsonNesting(absl::string_view text, size_t max_depth);

}  // namespace cellgate
