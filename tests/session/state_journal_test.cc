#include "server/session/state_journal.h"

#include <string>

#include "gtest/gtest.h"

namespace cellgate::session {
namespace {

constexpr uint64_t kEpoch = 0x0123456789abcdefULL;

std::string JournalOf(uint64_t epoch, std::initializer_list<std::string> states) {
  std::string journal = EncodeJournalHeader(epoch);
  for (const std::string& state : states) journal += EncodeJournalRecord(state);
  return journal;
}

TEST(StateJournalTest, TheLastWholeRecordIsTheState) {
  EXPECT_EQ(LastJournalRecord(JournalOf(kEpoch, {"first", "second", "third"}), kEpoch),
            "third");
}

TEST(StateJournalTest, AJournalWithOnlyItsHeaderHasNoState) {
  EXPECT_EQ(EncodeJournalHeader(kEpoch).size(), kJournalHeaderBytes);
  EXPECT_EQ(LastJournalRecord(EncodeJournalHeader(kEpoch), kEpoch), std::nullopt);
}

TEST(StateJournalTest, AJournalOfAnotherEpochOrWithoutHeaderCountsForNothing) {
  const std::string journal = JournalOf(kEpoch, {"state"});
  EXPECT_EQ(LastJournalRecord(journal, kEpoch + 1), std::nullopt);
  EXPECT_EQ(LastJournalRecord(journal.substr(0, kJournalHeaderBytes - 1), kEpoch), std::nullopt);
  EXPECT_EQ(LastJournalRecord("", kEpoch), std::nullopt);
  std::string other_magic = journal;
  other_magic[0] ^= 1;
  EXPECT_EQ(LastJournalRecord(other_magic, kEpoch), std::nullopt);
}

TEST(StateJournalTest, ARecordCutShortAtAnyByteLeavesThePreviousOne) {
  const std::string whole = JournalOf(kEpoch, {"first", "second"});
  const size_t second_starts = whole.size() - kJournalRecordOverhead - 6;
  for (size_t cut = second_starts; cut < whole.size(); ++cut) {
    EXPECT_EQ(LastJournalRecord(whole.substr(0, cut), kEpoch), "first") << "cut at " << cut;
  }
}

TEST(StateJournalTest, ARecordWhoseBytesDoNotMatchItsChecksumEndsTheJournal) {
  std::string journal = JournalOf(kEpoch, {"first", "second", "third"});
  // A byte of "second" changed: "third", after it, is not trusted either.
  journal[journal.find("second")] = 'S';
  EXPECT_EQ(LastJournalRecord(journal, kEpoch), "first");
}

TEST(StateJournalTest, ZerosAfterTheLastRecordAreNotARecord) {
  // What a crash during an append can leave: the file longer, the new bytes zeros.
  const std::string journal = JournalOf(kEpoch, {"state"}) + std::string(64, '\0');
  EXPECT_EQ(LastJournalRecord(journal, kEpoch), "state");
}

TEST(StateJournalTest, RecordsHoldAnyBytes) {
  const std::string binary("\0\xff\x01 state\n", 10);
  EXPECT_EQ(LastJournalRecord(JournalOf(kEpoch, {binary}), kEpoch), binary);
}

}  // namespace
}  // namespace cellgate::session
