#include "server/common/heap_release.h"

#include <malloc.h>

namespace cellgate::common {

int64_t ReleaseFreeHeapAbove(int64_t threshold_bytes) {
  const struct mallinfo2 info = mallinfo2();
  const int64_t free_bytes = static_cast<int64_t>(info.fordblks);
  if (free_bytes <= threshold_bytes) return 0;
  malloc_trim(0);
  return free_bytes;
}

}  // namespace cellgate::common
