#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace cellgate::session {

// The journal beside a kernel's state file (`<kernel_id>.journal` next to `<kernel_id>.state`):
// the kernel's states written since that file, appended, so that saving a small change costs an
// append and one fdatasync instead of a new file, its rename and two fsyncs.
//
// It begins with a header naming an epoch, a number the state file carries too
// (KernelState.journal_epoch): records count only when the two match, so a journal left from
// before the state file was last rewritten is ignored. Each record is a whole serialized
// KernelState with its length and CRC-32; the last whole one is the kernel's state. A record cut
// short (a crash during the append) fails its check and ends the journal.
inline constexpr size_t kJournalHeaderBytes = 16;  // magic, epoch
inline constexpr size_t kJournalRecordOverhead = 8;  // length, CRC-32

std::string EncodeJournalHeader(uint64_t epoch);
std::string EncodeJournalRecord(absl::string_view state_bytes);

// The last whole record of `journal` when it begins with the header of `epoch`; nullopt when
// it has another epoch, no header or no whole record.
std::optional<absl::string_view> LastJournalRecord(absl::string_view journal, uint64_t epoch);

}  // namespace cellgate::session
