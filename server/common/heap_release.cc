#include "server/common/heap_release.h"

#include <malloc.h>

#include <cstddef>
#include <cstdint>

// jemalloc's control interface, present when the process is linked with jemalloc.
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen)
    __attribute__((weak));

namespace cellgate::common {
namespace {

template <typename T>
bool ReadJemalloc(const char* name, T& value) {
  size_t size = sizeof(value);
  return mallctl(name, &value, &size, nullptr, 0) == 0 && size == sizeof(value);
}

// The bytes jemalloc holds in freed pages it has not yet returned, over all arenas (4096 is
// jemalloc's MALLCTL_ARENAS_ALL); -1 when it can't tell.
int64_t JemallocFreedBytes() {
  uint64_t epoch = 1;  // statistics are a snapshot, refreshed by writing the epoch
  size_t epoch_size = sizeof(epoch);
  if (mallctl("epoch", &epoch, &epoch_size, &epoch, sizeof(epoch)) != 0) return -1;
  size_t page = 0, dirty_pages = 0, muzzy_pages = 0;
  if (!ReadJemalloc("arenas.page", page) ||
      !ReadJemalloc("stats.arenas.4096.pdirty", dirty_pages) ||
      !ReadJemalloc("stats.arenas.4096.pmuzzy", muzzy_pages)) {
    return -1;
  }
  return static_cast<int64_t>((dirty_pages + muzzy_pages) * page);
}

}  // namespace

bool JemallocInUse() { return mallctl != nullptr; }

int64_t ReleaseFreeHeapAbove(int64_t threshold_bytes) {
  if (JemallocInUse()) {
    const int64_t freed = JemallocFreedBytes();
    if (freed <= threshold_bytes) return 0;
    mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);
    return freed;
  }
  const struct mallinfo2 info = mallinfo2();
  const int64_t free_bytes = static_cast<int64_t>(info.fordblks);
  if (free_bytes <= threshold_bytes) return 0;
  malloc_trim(0);
  return free_bytes;
}

}  // namespace cellgate::common
