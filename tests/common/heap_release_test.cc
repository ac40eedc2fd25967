#include "server/common/heap_release.h"

#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <vector>

#include "gtest/gtest.h"

namespace cellgate::common {
namespace {

int64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size_pages = 0, resident_pages = 0;
  statm >> size_pages >> resident_pages;
  return resident_pages * ::sysconf(_SC_PAGESIZE);
}

// Built twice: with glibc's malloc and linked with jemalloc, as the server is.
TEST(HeapReleaseTest, TheAllocatorIsTheOneThisTestWasBuiltFor) {
#ifdef HEAP_RELEASE_TEST_WITH_JEMALLOC
  EXPECT_TRUE(JemallocInUse()) << "linked with jemalloc, but glibc's malloc is in use";
#else
  EXPECT_FALSE(JemallocInUse()) << "jemalloc is in use";
#endif
}

TEST(HeapReleaseTest, FreedSmallBlocksGoBackToTheSystem) {
  // 64 MiB in 4 KiB blocks (below glibc's mmap threshold: they live in the arena; small for
  // jemalloc), touched, then all freed but the last, which pins glibc's arena top so its own
  // trimming can't help.
  constexpr int kBlocks = 16384;
  std::vector<std::unique_ptr<char[]>> blocks;
  for (int i = 0; i < kBlocks; ++i) {
    blocks.push_back(std::make_unique<char[]>(4096));
    for (int offset = 0; offset < 4096; offset += 512) blocks.back()[offset] = 1;
  }
  for (int i = 0; i + 1 < kBlocks; ++i) blocks[i].reset();
  const int64_t before = ResidentBytes();

  const int64_t released = ReleaseFreeHeapAbove(16 << 20);

  EXPECT_GE(released, 48 << 20) << "free bytes seen before the release";
  EXPECT_LE(ResidentBytes(), before - (32 << 20))
      << "resident set " << before << " -> " << ResidentBytes();
}

TEST(HeapReleaseTest, LittleFreeMemoryIsLeftAlone) {
  EXPECT_EQ(ReleaseFreeHeapAbove(int64_t{1} << 40), 0);
}

}  // namespace
}  // namespace cellgate::common
