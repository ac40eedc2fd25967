#include "server/kernel/uid_pool.h"

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/kernel/child_process.h"
#include "tests/kernel/kernel_test_support.h"

namespace cellgate::kernel {
namespace {

namespace fs = std::filesystem;

using ::testing::HasSubstr;

// No account uses these uids.
constexpr int kFirstUid = 232100;

TEST(UidPoolTest, HandsOutDistinctUidsFromItsRange) {
  UidPool pool(kFirstUid, 5);
  EXPECT_EQ(pool.first_uid(), kFirstUid);
  EXPECT_EQ(pool.count(), 5);
  std::set<int> uids;
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<int> uid = pool.Acquire();
    ASSERT_TRUE(uid.ok()) << uid.status();
    EXPECT_GE(*uid, kFirstUid);
    EXPECT_LT(*uid, kFirstUid + 5);
    EXPECT_TRUE(uids.insert(*uid).second) << "uid " << *uid << " handed out twice";
  }
}

TEST(UidPoolTest, ExhaustionIsResourceExhausted) {
  UidPool pool(kFirstUid, 2);
  ASSERT_TRUE(pool.Acquire().ok());
  ASSERT_TRUE(pool.Acquire().ok());
  absl::StatusOr<int> third = pool.Acquire();
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  const std::string message(third.status().message());
  EXPECT_THAT(message, HasSubstr("2"));
  EXPECT_THAT(message, HasSubstr(std::to_string(kFirstUid)));
}

TEST(UidPoolTest, AReservedUidIsNeverHandedOut) {
  UidPool pool(kFirstUid, 2);
  ASSERT_TRUE(pool.Reserve(kFirstUid).ok());
  EXPECT_EQ(pool.Reserve(kFirstUid).code(), absl::StatusCode::kAlreadyExists);
  const absl::Status outside = pool.Reserve(kFirstUid + 2);
  EXPECT_EQ(outside.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(outside.message()), HasSubstr("outside"));
  absl::StatusOr<int> other = pool.Acquire();
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(*other, kFirstUid + 1);
  EXPECT_FALSE(pool.Acquire().ok());
}

TEST(UidPoolTest, ReleaseMakesAUidAvailableAgain) {
  UidPool pool(kFirstUid, 3);
  std::vector<int> uids;
  for (int i = 0; i < 3; ++i) uids.push_back(*pool.Acquire());
  ASSERT_FALSE(pool.Acquire().ok());
  pool.Release(uids[1]);
  absl::StatusOr<int> again = pool.Acquire();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, uids[1]);
  EXPECT_FALSE(pool.Acquire().ok());
}

TEST(UidPoolTest, ReleasedUidsAreReusedInRotation) {
  // Round-robin: a just-released uid is not handed out while others are free.
  UidPool pool(kFirstUid, 3);
  const int first = *pool.Acquire();
  pool.Release(first);
  const int second = *pool.Acquire();
  EXPECT_NE(second, first);
  pool.Release(second);
  std::set<int> all;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<int> uid = pool.Acquire();
    ASSERT_TRUE(uid.ok()) << uid.status();
    all.insert(*uid);
  }
  EXPECT_EQ(all.size(), 3u);
}

TEST(UidPoolTest, ConcurrentAcquireHandsOutEachUidOnce) {
  constexpr int kCount = 40;
  UidPool pool(kFirstUid, kCount);
  std::vector<std::vector<int>> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&pool, &got, t] {
      for (int i = 0; i < kCount / 4; ++i) {
        absl::StatusOr<int> uid = pool.Acquire();
        if (uid.ok()) got[t].push_back(*uid);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::set<int> all;
  size_t total = 0;
  for (const std::vector<int>& uids : got) {
    total += uids.size();
    all.insert(uids.begin(), uids.end());
  }
  EXPECT_EQ(total, static_cast<size_t>(kCount));
  EXPECT_EQ(all.size(), static_cast<size_t>(kCount));
  EXPECT_FALSE(pool.Acquire().ok());
}

// --- KillAllProcessesOfUid (root only) -------------------------------------------------------

bool WaitReadable(int fd, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    pollfd item{fd, POLLIN, 0};
    const int ms = static_cast<int>(
        std::clamp<int64_t>(absl::ToInt64Milliseconds(deadline - absl::Now()), 0, 1000));
    if (::poll(&item, 1, ms) > 0) return true;
  }
  return false;
}

class KillAllProcessesOfUidTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    dir_ = testing::MakeShortTempDir();
  }
  void TearDown() override {
    std::error_code error;
    if (!dir_.empty()) fs::remove_all(dir_, error);
  }

  // `sleep 1000` running as `uid`.
  absl::StatusOr<ChildProcess> SpawnSleeper(int uid, const std::string& tag) {
    LaunchPlan plan;
    plan.argv = {"/bin/sleep", "1000"};
    plan.env = {"PATH=/usr/bin:/bin"};
    plan.working_dir = dir_;
    plan.log_path = dir_ + "/" + tag + ".log";
    plan.policy.uid = uid;
    plan.policy.gid = uid;
    return SpawnChild(plan);
  }

  std::string dir_;
};

TEST_F(KillAllProcessesOfUidTest, KillsProcessesOfThatUidOnly) {
  const int victim_uid = kFirstUid + 50;
  const int bystander_uid = kFirstUid + 51;
  absl::StatusOr<ChildProcess> victim = SpawnSleeper(victim_uid, "victim");
  ASSERT_TRUE(victim.ok()) << victim.status();
  absl::StatusOr<ChildProcess> bystander = SpawnSleeper(bystander_uid, "bystander");
  ASSERT_TRUE(bystander.ok()) << bystander.status();
  ASSERT_GE(victim->pidfd(), 0);
  ASSERT_GE(bystander->pidfd(), 0);

  KillAllProcessesOfUid(victim_uid);
  ASSERT_TRUE(WaitReadable(victim->pidfd(), absl::Seconds(20))) << "victim still running";
  ASSERT_TRUE(victim->TryReap().has_value());
  EXPECT_EQ(victim->exit_status()->Describe(), "killed by SIGKILL");

  // The other uid's process, and the caller itself, are untouched.
  pollfd item{bystander->pidfd(), POLLIN, 0};
  EXPECT_EQ(::poll(&item, 1, 0), 0) << "bystander was killed too";
  EXPECT_FALSE(bystander->TryReap().has_value());
}

TEST_F(KillAllProcessesOfUidTest, AcquireClearsLeftoversOfAnEarlierKernel) {
  const int uid = kFirstUid + 60;
  absl::StatusOr<ChildProcess> leftover = SpawnSleeper(uid, "leftover");
  ASSERT_TRUE(leftover.ok()) << leftover.status();
  UidPool pool(uid, 1);
  absl::StatusOr<int> acquired = pool.Acquire();
  ASSERT_TRUE(acquired.ok()) << acquired.status();
  EXPECT_EQ(*acquired, uid);
  ASSERT_TRUE(WaitReadable(leftover->pidfd(), absl::Seconds(20))) << "leftover still running";
}

TEST_F(KillAllProcessesOfUidTest, ReleaseKillsTheKernelsProcesses) {
  UidPool pool(kFirstUid + 70, 1);
  absl::StatusOr<int> uid = pool.Acquire();
  ASSERT_TRUE(uid.ok()) << uid.status();
  absl::StatusOr<ChildProcess> kernel = SpawnSleeper(*uid, "kernel");
  ASSERT_TRUE(kernel.ok()) << kernel.status();
  pool.Release(*uid);
  ASSERT_TRUE(WaitReadable(kernel->pidfd(), absl::Seconds(20))) << "kernel still running";
}

}  // namespace
}  // namespace cellgate::kernel
