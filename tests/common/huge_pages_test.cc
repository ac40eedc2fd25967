#include "server/common/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#ifdef HUGE_PAGES_TEST_WITH_JEMALLOC
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen)
    __attribute__((weak));
#endif

namespace cellgate::common {
namespace {

constexpr uintptr_t kHugePage = uintptr_t{2} << 20;

// One mapping of /proc/self/smaps: its range and whether it is advised for huge pages (the
// `hg` flag).
struct Mapping {
  uintptr_t start = 0;
  uintptr_t end = 0;
  bool huge_page_advised = false;
};

std::vector<Mapping> MappingsWithin(uintptr_t from, uintptr_t to) {
  std::vector<Mapping> mappings;
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool in_range = false;  // whether the mapping whose lines these are lies within [from, to)
  while (std::getline(smaps, line)) {
    uintptr_t start = 0, end = 0;
    char dash = 0;
    std::istringstream fields(line);
    if (fields >> std::hex >> start >> dash >> end && dash == '-') {  // a mapping's first line
      in_range = start >= from && end <= to;
      if (in_range) mappings.push_back({start, end, false});
    } else if (in_range && line.rfind("VmFlags:", 0) == 0) {
      mappings.back().huge_page_advised = line.find(" hg") != std::string::npos;
    }
  }
  return mappings;
}

class HugePagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists("/sys/kernel/mm/transparent_hugepage/enabled")) {
      GTEST_SKIP() << "this kernel has no transparent huge pages";
    }
    // 32 MiB of fresh addresses, 2 MiB-aligned inside, nothing else in them.
    mapping_bytes_ = 32u << 20;
    mapping_ = ::mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ASSERT_NE(mapping_, MAP_FAILED);
    ASSERT_EQ(::madvise(mapping_, mapping_bytes_, MADV_NOHUGEPAGE), 0);
    aligned_ = (reinterpret_cast<uintptr_t>(mapping_) + kHugePage - 1) & ~(kHugePage - 1);
  }
  void TearDown() override {
    if (mapping_ != nullptr) ::munmap(mapping_, mapping_bytes_);
  }

  std::vector<Mapping> Mappings() const {
    const uintptr_t start = reinterpret_cast<uintptr_t>(mapping_);
    return MappingsWithin(start, start + mapping_bytes_);
  }

  void* mapping_ = nullptr;
  size_t mapping_bytes_ = 0;
  uintptr_t aligned_ = 0;
};

TEST_F(HugePagesTest, ABigBufferIsAdvisedOverTheWholeHugePagesInsideIt) {
  // 12 MiB starting 4 KiB past a huge page's start: the whole huge pages inside it run from
  // the next huge page to the last one it ends after.
  char* data = reinterpret_cast<char*>(aligned_ + 4096);
  AdviseHugePages(data, size_t{12} << 20);

  std::vector<Mapping> advised;
  for (const Mapping& mapping : Mappings()) {
    if (mapping.huge_page_advised) advised.push_back(mapping);
  }
  ASSERT_EQ(advised.size(), 1u);
  EXPECT_EQ(advised[0].start, aligned_ + kHugePage);
  EXPECT_EQ(advised[0].end, aligned_ + (uintptr_t{12} << 20));
}

TEST_F(HugePagesTest, ABufferUnderTheThresholdIsNotAdvised) {
  AdviseHugePages(reinterpret_cast<char*>(aligned_), kHugePageAdviceMinBytes - 1);
  for (const Mapping& mapping : Mappings()) {
    EXPECT_FALSE(mapping.huge_page_advised)
        << std::hex << mapping.start << "-" << mapping.end << " was advised";
  }
  // The same buffer at the threshold is.
  AdviseHugePages(reinterpret_cast<char*>(aligned_), kHugePageAdviceMinBytes);
  bool any_advised = false;
  for (const Mapping& mapping : Mappings()) any_advised |= mapping.huge_page_advised;
  EXPECT_TRUE(any_advised);
}

TEST_F(HugePagesTest, TheAdvisedBufferKeepsItsBytes) {
  char* data = reinterpret_cast<char*>(aligned_ + 100);
  const size_t bytes = size_t{10} << 20;
  for (size_t i = 0; i < bytes; i += 4096) data[i] = static_cast<char>(i / 4096);
  AdviseHugePages(data, bytes);
  for (size_t i = 0; i < bytes; i += 4096) {
    ASSERT_EQ(data[i], static_cast<char>(i / 4096)) << "at " << i;
  }
}

TEST_F(HugePagesTest, AReservedBufferIsAdvisedBeforeItIsFilled) {
  std::string buffer;
  ReserveInHugePages(buffer, size_t{12} << 20);
  ASSERT_GE(buffer.capacity(), size_t{12} << 20);
  EXPECT_TRUE(buffer.empty());
  const uintptr_t start = reinterpret_cast<uintptr_t>(buffer.data());
  const uintptr_t first = (start + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (start + buffer.capacity()) & ~(kHugePage - 1);
  const std::vector<Mapping> advised = MappingsWithin(first, end);
  ASSERT_EQ(advised.size(), 1u);
  EXPECT_TRUE(advised[0].huge_page_advised);
  EXPECT_EQ(advised[0].start, first);
  EXPECT_EQ(advised[0].end, end);

  std::string small;
  ReserveInHugePages(small, 4096);
  EXPECT_GE(small.capacity(), 4096u);
}

#ifdef HUGE_PAGES_TEST_WITH_JEMALLOC
// The threshold's reason: jemalloc serves buffers that big from an arena of their own, so the
// advice never lands on memory later cut into small blocks. A jemalloc whose threshold is
// higher, or whose oversize arena is off (0), would make that untrue.
TEST(HugePagesWithJemallocTest, AdvisedBuffersComeFromJemallocsOversizeArena) {
  ASSERT_NE(mallctl, nullptr) << "not linked with jemalloc";
  size_t threshold = 0;
  size_t size = sizeof(threshold);
  ASSERT_EQ(mallctl("opt.oversize_threshold", &threshold, &size, nullptr, 0), 0);
  EXPECT_GT(threshold, 0u);
  EXPECT_LE(threshold, kHugePageAdviceMinBytes);
}
#endif

}  // namespace
}  // namespace cellgate::common
