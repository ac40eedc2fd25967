#include "server/common/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>

namespace cellgate::common {

void AdviseHugePages(void* data, size_t bytes) {
  constexpr uintptr_t kHugePageBytes = uintptr_t{2} << 20;
  if (data == nullptr || bytes < kHugePageAdviceMinBytes) return;
  const uintptr_t start = reinterpret_cast<uintptr_t>(data);
  const uintptr_t first = (start + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
  const uintptr_t end = (start + bytes) & ~(kHugePageBytes - 1);
  if (end <= first) return;
  // EINVAL where the kernel has no transparent huge pages: the buffer keeps small pages.
  ::madvise(reinterpret_cast<void*>(first), end - first, MADV_HUGEPAGE);
}

void ReserveInHugePages(std::string& buffer, size_t capacity) {
  buffer.reserve(capacity);
  AdviseHugePages(buffer.data(), buffer.capacity());
}

}  // namespace cellgate::common
