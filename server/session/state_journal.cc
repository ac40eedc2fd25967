#include "server/session/state_journal.h"

#include <zlib.h>

#include <algorithm>

namespace cellgate::session {
namespace {

constexpr absl::string_view kMagic = "cgjrnl01";
static_assert(kMagic.size() + sizeof(uint64_t) == kJournalHeaderBytes);

uint32_t Crc32(absl::string_view bytes) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  // zlib takes a uInt length: feed a big record in pieces.
  while (!bytes.empty()) {
    const size_t piece = std::min<size_t>(bytes.size(), 1u << 30);
    crc = ::crc32(crc, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(piece));
    bytes.remove_prefix(piece);
  }
  return static_cast<uint32_t>(crc);
}

// Integers are little-endian in the file, whatever the machine.
void AppendLittleEndian(uint64_t value, size_t bytes, std::string& out) {
  for (size_t i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint64_t LoadLittleEndian(const char* data, size_t bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < bytes; ++i) {
    value |= static_cast<uint64_t>(static_cast<unsigned char>(data[i])) << (8 * i);
  }
  return value;
}

}  // namespace

std::string EncodeJournalHeader(uint64_t epoch) {
  std::string header(kMagic);
  AppendLittleEndian(epoch, sizeof(epoch), header);
  return header;
}

std::string EncodeJournalRecord(absl::string_view state_bytes) {
  std::string record;
  record.reserve(kJournalRecordOverhead + state_bytes.size());
  AppendLittleEndian(state_bytes.size(), 4, record);
  AppendLittleEndian(Crc32(state_bytes), 4, record);
  record.append(state_bytes.data(), state_bytes.size());
  return record;
}

std::optional<absl::string_view> LastJournalRecord(absl::string_view journal, uint64_t epoch) {
  if (journal.size() < kJournalHeaderBytes || journal.substr(0, kMagic.size()) != kMagic ||
      LoadLittleEndian(journal.data() + kMagic.size(), 8) != epoch) {
    return std::nullopt;
  }
  journal.remove_prefix(kJournalHeaderBytes);
  std::optional<absl::string_view> last;
  while (journal.size() >= kJournalRecordOverhead) {
    const uint64_t length = LoadLittleEndian(journal.data(), 4);
    const uint64_t crc = LoadLittleEndian(journal.data() + 4, 4);
    if (length == 0 || journal.size() - kJournalRecordOverhead < length) break;
    const absl::string_view record = journal.substr(kJournalRecordOverhead, length);
    if (Crc32(record) != crc) break;
    last = record;
    journal.remove_prefix(kJournalRecordOverhead + length);
  }
  return last;
}

}  // namespace cellgate::session
