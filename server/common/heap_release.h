#pragma once

// Giving freed heap memory back to the system.
//
// glibc keeps what the gateway frees in its arenas: after a burst (a kernel flooding output, a
// large notebook imported and dropped) the process would keep its peak RSS for good.
// malloc_trim returns the free pages of every arena; it walks them, so it is worth calling only
// once enough has piled up.

#include <cstdint>

namespace cellgate::common {

// If the allocator holds more than `threshold_bytes` of free memory, returns it to the system
// (malloc_trim). Returns how much was free before the release, 0 if nothing was done.
int64_t ReleaseFreeHeapAbove(int64_t threshold_bytes);

}  // namespace cellgate::common
