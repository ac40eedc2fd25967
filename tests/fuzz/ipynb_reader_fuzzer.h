#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/status.h"

// The .ipynb reader fuzz target, callable from ordinary tests (ipynb_reader_corpus_test) as well
// as from libFuzzer (LLVMFuzzerTestOneInput, defined in ipynb_reader_fuzzer.cc).
namespace cellgate::notebook::fuzz {

// The `max_bytes` the fuzz target gives ParseIpynb (fuzz inputs stay far below it).
inline constexpr int64_t kFuzzMaxIpynbBytes = 1 << 20;

// What ParseIpynb said about one input.
struct IpynbReaderOutcome {
  absl::Status parse;  // ParseIpynb(input, kFuzzMaxIpynbBytes)
  size_t cells = 0;    // cells read, when `parse` is OK
  size_t outputs = 0;  // outputs of all cells, when `parse` is OK
};

// Parses `input` as an .ipynb file. Aborts when an invariant breaks: an error must have a
// message; a parsed notebook must have valid, unique cell ids and no outputs or execution count
// on markdown and raw cells; and it must survive ExportIpynb then ParseIpynb unchanged (cell ids,
// types, sources, metadata, execution counts, states, outputs count, extras, notebook metadata).
IpynbReaderOutcome RunIpynbReader(std::string_view input);

}  // namespace cellgate::notebook::fuzz
