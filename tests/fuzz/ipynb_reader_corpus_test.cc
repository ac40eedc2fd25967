// Runs the .ipynb reader fuzz target over the seed corpus and a few hand-made inputs, so the
// harness is compiled and exercised by every ordinary test run (no clang or libFuzzer needed).

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fuzz/ipynb_reader_fuzzer.h"

namespace cellgate::notebook::fuzz {
namespace {

using ::testing::HasSubstr;

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

std::string CorpusFile(const char* name) {
  return ReadFile(std::filesystem::path(CELLGATE_IPYNB_READER_CORPUS) / name);
}

TEST(IpynbReaderCorpusTest, EveryOutputTypeRoundTrips) {
  const IpynbReaderOutcome outcome = RunIpynbReader(CorpusFile("nbformat_4_5_all_outputs"));
  ASSERT_TRUE(outcome.parse.ok()) << outcome.parse;
  EXPECT_EQ(outcome.cells, 3u);
  EXPECT_EQ(outcome.outputs, 5u);
}

TEST(IpynbReaderCorpusTest, OlderMinorVersionsRoundTrip) {
  const IpynbReaderOutcome v40 = RunIpynbReader(CorpusFile("nbformat_4_0"));
  ASSERT_TRUE(v40.parse.ok()) << v40.parse;
  EXPECT_EQ(v40.cells, 2u);
  const IpynbReaderOutcome v44 = RunIpynbReader(CorpusFile("nbformat_4_4_no_ids"));
  ASSERT_TRUE(v44.parse.ok()) << v44.parse;
  EXPECT_EQ(v44.cells, 4u);
  EXPECT_EQ(v44.outputs, 2u);
}

TEST(IpynbReaderCorpusTest, HandMadeInputsAreRejectedWithoutCrashing) {
  const std::vector<std::pair<std::string, std::string>> inputs = {
      {"", "not valid JSON"},
      {"[]", "must be a JSON object"},
      {"{}", "nbformat: missing"},
      {R"({"nbformat": 3, "nbformat_minor": 0, "cells": []})", "nbformat 3"},
      {R"({"nbformat": 4, "nbformat_minor": -1, "cells": []})", "nbformat_minor"},
      {R"({"nbformat": 4, "nbformat_minor": 5})", "cells: missing"},
      {R"({"nbformat": 4, "nbformat_minor": 5, "cells": [1]})", "cells[0]: must be an object"},
      {R"({"nbformat": 4, "nbformat_minor": 5, "cells": [{"cell_type": "x", "source": ""}]})",
       "unknown cell_type"},
      {R"({"nbformat": 4, "nbformat_minor": 5, "cells": [{"cell_type": "code", "id": "a",
           "source": "", "outputs": [{"output_type": "stream", "name": "x", "text": ""}]}]})",
       "cells[0].outputs[0]"},
      {R"({"nbformat": 4, "nbformat_minor": 5, "cells": [
           {"cell_type": "raw", "id": "a", "source": ""},
           {"cell_type": "raw", "id": "a", "source": ""}]})",
       "duplicate cell id"},
      {R"({"nbformat": 4, "nbformat_minor": 5, "metadata": {"x": 1e999}, "cells": []})",
       "not valid JSON"},
      {R"({"nbformat": 4, "nbformat_minor": 5, "metadata": {"x": ")" + std::string("\xff") +
           R"("}, "cells": []})",
       "not valid JSON"},
      {std::string(5000, '['), "deeper than 1000"},
  };
  for (const auto& [input, error] : inputs) {
    const IpynbReaderOutcome outcome = RunIpynbReader(input);
    EXPECT_EQ(outcome.parse.code(), absl::StatusCode::kInvalidArgument) << input;
    EXPECT_THAT(outcome.parse.message(), HasSubstr(error)) << input;
  }
}

TEST(IpynbReaderCorpusTest, OddButValidInputsRoundTrip) {
  const std::vector<std::string> inputs = {
      // An older file: invalid and duplicate ids are replaced, markdown outputs dropped.
      R"({"nbformat": 4, "nbformat_minor": 4, "cells": [
           {"cell_type": "markdown", "id": "bad id!", "source": "", "outputs": [],
            "execution_count": 3},
           {"cell_type": "code", "id": "x", "source": ["a\n", "b"], "unknown": {"k": [1]}},
           {"cell_type": "code", "id": "x", "source": "", "execution_count": 2147483647}]})",
      // A newer minor, JSON and non-string mime values, transient display ids, null metadata.
      R"({"nbformat": 4, "nbformat_minor": 99, "metadata": {"n": -0.0, "big": 18446744073709551615},
          "cells": [{"cell_type": "code", "id": "c", "source": "", "outputs": [
            {"output_type": "display_data", "data": {"application/json": "\"s\"",
             "image/png": 5, "text/plain": ["a", "b\n"]}, "metadata": null,
             "transient": {"display_id": "d"}},
            {"output_type": "execute_result", "data": {}, "execution_count": null},
            {"output_type": "error", "ename": "", "evalue": "", "traceback": null}]}]})",
  };
  for (const std::string& input : inputs) {
    const IpynbReaderOutcome outcome = RunIpynbReader(input);
    EXPECT_TRUE(outcome.parse.ok()) << outcome.parse << "\n" << input;
  }
}

TEST(IpynbReaderCorpusTest, SeedCorpusDoesNotCrash) {
  size_t seeds = 0;
  size_t parsed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(CELLGATE_IPYNB_READER_CORPUS)) {
    const IpynbReaderOutcome outcome = RunIpynbReader(ReadFile(entry.path()));
    ++seeds;
    if (outcome.parse.ok()) ++parsed;
  }
  EXPECT_GE(seeds, 5u);
  // The seeds are mostly valid notebooks, so the fuzzer starts past the JSON parser.
  EXPECT_GE(parsed, 5u);
}

}  // namespace
}  // namespace cellgate::notebook::fuzz
