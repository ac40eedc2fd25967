#pragma once

// Giving freed heap memory back to the system.
//
// The allocator keeps what the gateway frees: after a burst (a kernel flooding output, a large
// notebook imported and dropped) the process would keep its peak RSS until the allocator
// decides otherwise, and jemalloc, the server's allocator, purges an arena only while something
// allocates from it. Releasing walks the allocator's state, so it is worth doing only once
// enough has piled up.

#include <cstdint>

namespace cellgate::common {

// If the allocator holds more than `threshold_bytes` of freed memory, returns it to the system:
// jemalloc's dirty and muzzy pages are purged in the process linked with jemalloc, glibc's
// arenas trimmed (malloc_trim) in one that is not. Returns how much was held before the
// release, 0 if nothing was done.
int64_t ReleaseFreeHeapAbove(int64_t threshold_bytes);

// Whether the process's malloc is jemalloc (the server is linked with it; its unit tests may not
// be).
bool JemallocInUse();

}  // namespace cellgate::common
