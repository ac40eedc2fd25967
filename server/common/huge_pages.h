#pragma once

// Backing big buffers with transparent huge pages.
//
// A buffer filled once with tens of megabytes (a kernel's 50 MB output, received and copied)
// costs more to fault in, one 4 KiB page at a time, than to fill: on a virtual machine, 150 ms
// against 3 ms for 50 MiB. Backed by 2 MiB pages it takes 512 times fewer faults. Where the
// system leaves huge pages to the application (`madvise` in
// /sys/kernel/mm/transparent_hugepage/enabled, Debian's default) a buffer gets them only when
// advised; where it gives them to every mapping (`always`) or to none (`never`) the advice
// changes nothing.

#include <cstddef>
#include <string>

namespace cellgate::common {

// The smallest buffer worth advising. jemalloc, the server's malloc, serves buffers of this
// size and more from an arena of their own (its `oversize_threshold`): the advice, which stays
// on the addresses after the buffer is freed, never lands on memory later cut into small
// blocks, where a huge page would hold a few bytes in use.
inline constexpr size_t kHugePageAdviceMinBytes = size_t{8} << 20;

// Advises the kernel to back the whole 2 MiB pages inside [data, data + bytes) with huge
// pages, before they are first touched. Does nothing for buffers under
// kHugePageAdviceMinBytes. Only advice: a system without transparent huge pages ignores it,
// and so does this function.
void AdviseHugePages(void* data, size_t bytes);

// Reserves `capacity` bytes in a buffer about to be filled and advises its pages as above, in
// that order: the advice must come after the memory is allocated and before it is touched.
void ReserveInHugePages(std::string& buffer, size_t capacity);

}  // namespace cellgate::common
