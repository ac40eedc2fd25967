#include "server/notebook/ipynb.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace cellgate::notebook {
namespace {

using Json = nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr int64_t kNoCap = int64_t{1} << 40;
constexpr char kPython[] = "/usr/bin/python3";

std::string Canonical(const Json& json) { return json.dump(1) + "\n"; }

// A 4.5 notebook in the exact form Jupyter writes: every output type, attachments, unknown
// metadata keys at every level, kernelspec and language_info.
Json FullNotebook() {
  return Json::parse(R"({
    "cells": [
      {"attachments": {"image.png": {"image/png": "iVBORw0KGgo="}},
       "cell_type": "markdown", "id": "intro",
       "metadata": {"tags": ["doc"], "x-custom": {"nested": [1, 2.5, null, true]}},
       "source": ["# Title\n", "\n", "![image](attachment:image.png) ünïcödé"]},
      {"cell_type": "code", "execution_count": 7, "id": "compute-1",
       "metadata": {"collapsed": false, "scrolled": true},
       "outputs": [
         {"name": "stdout", "output_type": "stream", "text": ["hi\n", "there\n"]},
         {"name": "stderr", "output_type": "stream", "text": ["warning\n"]},
         {"data": {"image/png": "iVBORw0KGgo=\n", "text/plain": ["<Figure size 640x480>"],
                   "application/vnd.custom+json": {"k": [1, {"a": "b"}]}},
          "metadata": {"image/png": {"height": 480, "width": 640}},
          "output_type": "display_data"},
         {"data": {"text/html": ["<b>3</b>\n", "<i>x</i>"], "text/plain": ["3"]},
          "execution_count": 7, "metadata": {}, "output_type": "execute_result"},
         {"ename": "ZeroDivisionError", "evalue": "division by zero", "output_type": "error",
          "traceback": ["\u001b[0;31mZeroDivisionError\u001b[0m", "line 2"]}
       ],
       "source": ["print('hi')\n", "1 + 2"]},
      {"cell_type": "code", "execution_count": null, "id": "never_run", "metadata": {},
       "outputs": [], "source": []},
      {"attachments": {}, "cell_type": "raw", "id": "r", "metadata": {"format": "text/x-rst"},
       "source": ["raw text\n"]}
    ],
    "metadata": {
      "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
      "language_info": {"codemirror_mode": {"name": "ipython", "version": 3},
                        "name": "python", "version": "3.11.2"},
      "unknown_key": {"kept": [1, 2, 3]}
    },
    "nbformat": 4,
    "nbformat_minor": 5
  })");
}

// A minimal notebook of the given minor version whose cells are `cells`.
std::string NotebookWith(int minor, const Json& cells) {
  Json notebook = {
      {"cells", cells}, {"metadata", Json::object()}, {"nbformat", 4}, {"nbformat_minor", minor}};
  return notebook.dump();
}

Json CodeCell(const std::string& source) {
  return {{"cell_type", "code"},
          {"execution_count", nullptr},
          {"metadata", Json::object()},
          {"outputs", Json::array()},
          {"source", source}};
}

Json WithId(Json cell, const Json& id) {
  cell["id"] = id;
  return cell;
}

std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/ipynb_test_", ::getpid(), "_", name);
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  ASSERT_TRUE(out.good()) << path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// The exit code of `command` run by the shell, or -1 if it did not exit normally.
int RunShell(const std::string& command) {
  const int status = std::system(command.c_str());
  return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool HaveNbformat() {
  return RunShell(absl::StrCat(kPython, " -c 'import nbformat' >/dev/null 2>&1")) == 0;
}

// Validates `bytes` with nbformat's own reader and JSON schema; "" if valid, else the errors.
std::string NbformatErrors(const std::string& bytes, const std::string& name) {
  const std::string path = TempPath(name + ".ipynb");
  const std::string log = TempPath(name + ".log");
  WriteFile(path, bytes);
  const int code = RunShell(absl::StrCat(
      kPython,
      " -c \"import nbformat,sys; nbformat.validate(nbformat.read(sys.argv[1], as_version=4))\" ",
      path, " >", log, " 2>&1"));
  std::string errors = code == 0 ? "" : absl::StrCat("exit ", code, ": ", ReadFile(log));
  std::remove(path.c_str());
  std::remove(log.c_str());
  return errors;
}

absl::Status ParseError(const std::string& bytes) {
  absl::StatusOr<IpynbNotebook> notebook = ParseIpynb(bytes, kNoCap);
  return notebook.ok() ? absl::OkStatus() : notebook.status();
}

TEST(ParseIpynbTest, ReadsEveryField) {
  absl::StatusOr<IpynbNotebook> notebook = ParseIpynb(Canonical(FullNotebook()), kNoCap);
  ASSERT_TRUE(notebook.ok()) << notebook.status();
  EXPECT_EQ(notebook->nbformat_minor, 5);
  EXPECT_EQ(Json::parse(notebook->metadata_json), FullNotebook()["metadata"]);
  ASSERT_EQ(notebook->cells.size(), 4u);
  ASSERT_EQ(notebook->cell_extras.size(), 4u);

  const v1::Cell& markdown = notebook->cells[0];
  EXPECT_EQ(markdown.cell_id(), "intro");
  EXPECT_EQ(markdown.index(), 0);
  EXPECT_EQ(markdown.cell_type(), v1::CELL_TYPE_MARKDOWN);
  EXPECT_EQ(markdown.state(), v1::CELL_STATE_NEW);
  EXPECT_EQ(markdown.source(), "# Title\n\n![image](attachment:image.png) ünïcödé");
  EXPECT_EQ(Json::parse(markdown.metadata()), FullNotebook()["cells"][0]["metadata"]);
  EXPECT_EQ(Json::parse(notebook->cell_extras[0]),
            Json::parse(R"({"attachments": {"image.png": {"image/png": "iVBORw0KGgo="}}})"));

  const v1::Cell& code = notebook->cells[1];
  EXPECT_EQ(code.cell_id(), "compute-1");
  EXPECT_EQ(code.index(), 1);
  EXPECT_EQ(code.cell_type(), v1::CELL_TYPE_CODE);
  EXPECT_EQ(code.state(), v1::CELL_STATE_STALE);  // imported with outputs
  EXPECT_EQ(code.source(), "print('hi')\n1 + 2");
  EXPECT_EQ(code.execution_count(), 7);
  EXPECT_EQ(notebook->cell_extras[1], "");
  ASSERT_EQ(code.outputs_size(), 5);
  EXPECT_EQ(code.outputs(0).stream().name(), v1::STREAM_NAME_STDOUT);
  EXPECT_EQ(code.outputs(0).stream().text(), "hi\nthere\n");
  EXPECT_EQ(code.outputs(1).stream().name(), v1::STREAM_NAME_STDERR);
  const v1::DisplayData& display = code.outputs(2).display_data();
  EXPECT_EQ(display.data().at("image/png"), "iVBORw0KGgo=\n");
  EXPECT_EQ(display.data().at("text/plain"), "<Figure size 640x480>");
  EXPECT_EQ(Json::parse(display.data().at("application/vnd.custom+json")),
            Json::parse(R"({"k": [1, {"a": "b"}]})"));
  EXPECT_EQ(code.outputs(3).execute_result().execution_count(), 7);
  EXPECT_EQ(code.outputs(3).execute_result().data().at("text/html"), "<b>3</b>\n<i>x</i>");
  EXPECT_EQ(code.outputs(4).error().ename(), "ZeroDivisionError");
  EXPECT_THAT(code.outputs(4).error().traceback(),
              ElementsAre("\x1b[0;31mZeroDivisionError\x1b[0m", "line 2"));

  const v1::Cell& never_run = notebook->cells[2];
  EXPECT_EQ(never_run.execution_count(), 0);
  EXPECT_EQ(never_run.source(), "");
  EXPECT_EQ(never_run.outputs_size(), 0);
  EXPECT_EQ(never_run.state(), v1::CELL_STATE_NEW);

  const v1::Cell& raw = notebook->cells[3];
  EXPECT_EQ(raw.cell_type(), v1::CELL_TYPE_RAW);
  EXPECT_EQ(raw.source(), "raw text\n");
  EXPECT_EQ(notebook->cell_extras[3], R"({"attachments":{}})");
}

TEST(IpynbRoundTripTest, Nbformat45FileComesBackByteForByte) {
  const std::string original = Canonical(FullNotebook());
  absl::StatusOr<IpynbNotebook> notebook = ParseIpynb(original, kNoCap);
  ASSERT_TRUE(notebook.ok()) << notebook.status();
  EXPECT_EQ(ExportIpynb(*notebook), original);
}

TEST(IpynbRoundTripTest, ExportIsValidNbformat) {
  if (!HaveNbformat()) GTEST_SKIP() << "python3 nbformat is not installed";
  absl::StatusOr<IpynbNotebook> notebook = ParseIpynb(Canonical(FullNotebook()), kNoCap);
  ASSERT_TRUE(notebook.ok()) << notebook.status();
  EXPECT_EQ(NbformatErrors(ExportIpynb(*notebook), "full"), "");
}

TEST(ParseIpynbTest, OldMinorVersionsWithoutIdsGetUniqueIds) {
  for (const int minor : {0, 4}) {
    SCOPED_TRACE(minor);
    Json markdown = {{"cell_type", "markdown"}, {"metadata", Json::object()}, {"source", "# x"}};
    std::vector<Json> cells = {CodeCell("a = 1"), markdown, CodeCell("b = 2")};
    absl::StatusOr<IpynbNotebook> notebook = ParseIpynb(NotebookWith(minor, cells), kNoCap);
    ASSERT_TRUE(notebook.ok()) << notebook.status();
    EXPECT_EQ(notebook->nbformat_minor, minor);
    std::set<std::string> ids;
    for (const v1::Cell& cell : notebook->cells) {
      EXPECT_THAT(cell.cell_id(), ::testing::MatchesRegex("[0-9a-f]{8}"));
      ids.insert(cell.cell_id());
    }
    EXPECT_EQ(ids.size(), 3u);

    const std::string exported = ExportIpynb(*notebook);
    const Json json = Json::parse(exported);
    EXPECT_EQ(json["nbformat"], 4);
    EXPECT_EQ(json["nbformat_minor"], 5);
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(json["cells"][i]["id"], notebook->cells[i].cell_id());
    if (HaveNbformat()) {
      EXPECT_EQ(NbformatErrors(exported, absl::StrCat("minor", minor)), "");
    }
  }
}

TEST(ParseIpynbTest, OldMinorVersionKeepsGoodIdsAndReplacesBadOnes) {
  std::vector<Json> cells = {WithId(CodeCell("1"), "same"),
                             WithId(CodeCell("2"), "same"),
                             WithId(CodeCell("3"), "not valid!"),
                             WithId(CodeCell("4"), 42),
                             WithId(CodeCell("5"), std::string(65, 'a')),
                             CodeCell("6")};
  absl::StatusOr<IpynbNotebook> notebook = ParseIpynb(NotebookWith(4, cells), kNoCap);
  ASSERT_TRUE(notebook.ok()) << notebook.status();
  std::set<std::string> ids;
  for (const v1::Cell& cell : notebook->cells) {
    EXPECT_TRUE(IsValidCellId(cell.cell_id())) << cell.cell_id();
    ids.insert(cell.cell_id());
  }
  EXPECT_EQ(ids.size(), cells.size());
  EXPECT_EQ(notebook->cells[0].cell_id(), "same");
  EXPECT_NE(notebook->cells[1].cell_id(), "same");
}

TEST(ParseIpynbTest, GeneratedIdsAvoidIdsLaterInTheFile) {
  // Ids are generated only after every id of the file is known, so a generated id never takes
  // one that a later cell already has. With 8 hex digits a clash is unlikely anyway; this
  // checks the bookkeeping on many cells.
  std::vector<Json> cells;
  for (int i = 0; i < 300; ++i) {
    cells.push_back(i % 2 == 0 ? CodeCell("x") : WithId(CodeCell("y"), absl::StrCat("id", i)));
  }
  absl::StatusOr<IpynbNotebook> notebook = ParseIpynb(NotebookWith(5, cells), kNoCap);
  ASSERT_TRUE(notebook.ok()) << notebook.status();
  std::set<std::string> ids;
  for (const v1::Cell& cell : notebook->cells) ids.insert(cell.cell_id());
  EXPECT_EQ(ids.size(), cells.size());
  EXPECT_EQ(notebook->cells[1].cell_id(), "id1");
}

TEST(ParseIpynbTest, Nbformat45GeneratesMissingIds) {
  absl::StatusOr<IpynbNotebook> notebook =
      ParseIpynb(NotebookWith(5, Json::array({CodeCell("1")})), kNoCap);
  ASSERT_TRUE(notebook.ok()) << notebook.status();
  EXPECT_TRUE(IsValidCellId(notebook->cells[0].cell_id()));
}

TEST(ParseIpynbTest, Nbformat45RejectsBadIdsNamingTheCell) {
  const std::vector<std::pair<Json, std::string>> cases = {
      {Json::array({CodeCell("1"), WithId(CodeCell("2"), "bad id")}),
       "cells[1].id: invalid cell id 'bad id': must be 1-64 characters of [a-zA-Z0-9-_]"},
      {Json::array({WithId(CodeCell("1"), "")}), "cells[0].id: invalid cell id ''"},
      {Json::array({WithId(CodeCell("1"), std::string(65, 'x'))}), "cells[0].id: invalid cell id"},
      {Json::array({WithId(CodeCell("1"), 7)}), "cells[0].id: must be a string"},
      {Json::array({WithId(CodeCell("1"), "a"), CodeCell("2"), WithId(CodeCell("3"), "a")}),
       "cells[2].id: duplicate cell id 'a' (also cells[0].id)"},
  };
  for (const auto& [cells, message] : cases) {
    const absl::Status status = ParseError(NotebookWith(5, cells));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_THAT(std::string(status.message()), StartsWith(message));
  }
}

TEST(ParseIpynbTest, SourceMayBeStringOrListOfStrings) {
  Json list_cell = CodeCell("");
  list_cell["source"] = {"a = 1\n", "b = 2\n", "c"};
  Json empty_list_cell = CodeCell("");
  empty_list_cell["source"] = Json::array();
  absl::StatusOr<IpynbNotebook> notebook = ParseIpynb(
      NotebookWith(4, Json::array({CodeCell("a = 1\nb = 2\nc"), list_cell, empty_list_cell})),
      kNoCap);
  ASSERT_TRUE(notebook.ok()) << notebook.status();
  EXPECT_EQ(notebook->cells[0].source(), "a = 1\nb = 2\nc");
  EXPECT_EQ(notebook->cells[1].source(), "a = 1\nb = 2\nc");
  EXPECT_EQ(notebook->cells[2].source(), "");
}

TEST(ParseIpynbTest, MarkdownAndRawCellsHaveNoOutputsOrExecutionCount) {
  Json markdown = {
      {"cell_type", "markdown"},
      {"metadata", Json::object()},
      {"source", "m"},
      {"execution_count", 3},
      {"outputs", Json::array({{{"output_type", "stream"}, {"name", "stdout"}, {"text", "x"}}})}};
  absl::StatusOr<IpynbNotebook> notebook =
      ParseIpynb(NotebookWith(4, Json::array({markdown})), kNoCap);
  ASSERT_TRUE(notebook.ok()) << notebook.status();
  EXPECT_EQ(notebook->cells[0].outputs_size(), 0);
  EXPECT_EQ(notebook->cells[0].execution_count(), 0);
  EXPECT_EQ(notebook->cells[0].state(), v1::CELL_STATE_NEW);
  EXPECT_EQ(notebook->cell_extras[0], "");
  const Json exported = Json::parse(ExportIpynb(*notebook))["cells"][0];
  EXPECT_FALSE(exported.contains("outputs"));
  EXPECT_FALSE(exported.contains("execution_count"));
}

TEST(ParseIpynbTest, MissingOptionalKeysTakeDefaults) {
  const std::string bytes = R"({"nbformat": 4, "nbformat_minor": 2, "cells": [
      {"cell_type": "code", "source": "x"}, {"cell_type": "markdown", "source": "y"}]})";
  absl::StatusOr<IpynbNotebook> notebook = ParseIpynb(bytes, kNoCap);
  ASSERT_TRUE(notebook.ok()) << notebook.status();
  EXPECT_EQ(notebook->metadata_json, "{}");
  EXPECT_EQ(notebook->cells[0].metadata(), "{}");
  EXPECT_EQ(notebook->cells[0].execution_count(), 0);
  EXPECT_EQ(notebook->cells[0].outputs_size(), 0);
  if (HaveNbformat()) {
    EXPECT_EQ(NbformatErrors(ExportIpynb(*notebook), "defaults"), "");
  }
}

TEST(ParseIpynbTest, ErrorsSayWhere) {
  const Json markdown = {{"cell_type", "markdown"}, {"metadata", Json::object()}, {"source", ""}};
  auto code_with = [](const char* key, const Json& value) {
    Json cell = CodeCell("x");
    cell[key] = value;
    return cell;
  };
  Json no_source = CodeCell("x");
  no_source.erase("source");
  const Json stream_without_name = {{"output_type", "stream"}, {"text", "x"}};
  const Json stream = {{"output_type", "stream"}, {"name", "stdout"}, {"text", "x"}};
  const Json unknown_output = {{"output_type", "foo"}};

  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\n \"cells\": [,]\n}", "ipynb is not valid JSON: parse error at line 2, column 12"},
      {"", "ipynb is not valid JSON: "},
      {"{} trailing", "ipynb is not valid JSON: "},
      {"[]", "ipynb: must be a JSON object"},
      {R"({"cells": []})", "nbformat: missing"},
      {R"({"nbformat": "4", "nbformat_minor": 5, "cells": []})", "nbformat: must be an integer"},
      {R"({"nbformat": 3, "nbformat_minor": 0, "worksheets": []})",
       "nbformat: only nbformat 4 notebooks are supported, this one is nbformat 3"},
      {R"({"nbformat": 5, "nbformat_minor": 0, "cells": []})",
       "nbformat: only nbformat 4 notebooks are supported, this one is nbformat 5"},
      {R"({"nbformat": 4, "cells": []})", "nbformat_minor: missing"},
      {R"({"nbformat": 4, "nbformat_minor": -1, "cells": []})", "nbformat_minor: must be"},
      {R"({"nbformat": 4, "nbformat_minor": 5, "metadata": [], "cells": []})",
       "metadata: must be an object"},
      {R"({"nbformat": 4, "nbformat_minor": 5})", "cells: missing"},
      {R"({"nbformat": 4, "nbformat_minor": 5, "cells": {}})", "cells: must be a list"},
      {NotebookWith(4, Json::array({markdown, "cell"})), "cells[1]: must be an object"},
      {NotebookWith(4, Json::array({markdown, {{"source", ""}}})), "cells[1]: missing 'cell_type'"},
      {NotebookWith(4, Json::array({markdown, {{"cell_type", "foo"}, {"source", ""}}})),
       "cells[1].cell_type: unknown cell_type 'foo'"},
      {NotebookWith(4, Json::array({no_source})), "cells[0]: missing 'source'"},
      {NotebookWith(4, Json::array({code_with("source", 5)})),
       "cells[0].source: must be a string or a list of strings"},
      {NotebookWith(4, Json::array({code_with("source", {"a", 1})})),
       "cells[0].source[1]: must be a string"},
      {NotebookWith(4, Json::array({code_with("metadata", "{}")})),
       "cells[0].metadata: must be an object"},
      {NotebookWith(4, Json::array({code_with("execution_count", -1)})),
       "cells[0].execution_count: must be"},
      {NotebookWith(4, Json::array({code_with("execution_count", "1")})),
       "cells[0].execution_count: must be"},
      {NotebookWith(4, Json::array({code_with("execution_count", 1.5)})),
       "cells[0].execution_count: must be"},
      {NotebookWith(4, Json::array({code_with("execution_count", int64_t{1} << 31)})),
       "cells[0].execution_count: must be"},
      {NotebookWith(4, Json::array({code_with("outputs", Json::object())})),
       "cells[0].outputs: must be a list"},
      {NotebookWith(4,
                    {markdown, markdown, markdown, code_with("outputs", {stream, unknown_output})}),
       "cells[3].outputs[1]: malformed output: `output_type`"},
      {NotebookWith(4, Json::array({code_with("outputs", Json::array({stream_without_name}))})),
       "cells[0].outputs[0]: malformed stream output: `name` is missing"},
  };
  for (const auto& [bytes, message] : cases) {
    const absl::Status status = ParseError(bytes);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bytes;
    EXPECT_THAT(std::string(status.message()), StartsWith(message)) << bytes;
  }
}

TEST(ParseIpynbTest, EnforcesTheSizeCap) {
  const std::string bytes = Canonical(FullNotebook());
  const int64_t size = static_cast<int64_t>(bytes.size());
  EXPECT_TRUE(ParseIpynb(bytes, size).ok());
  const absl::StatusOr<IpynbNotebook> too_big = ParseIpynb(bytes, size - 1);
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(too_big.status().message(),
            absl::StrCat("ipynb is ", size, " bytes, more than the limit of ", size - 1));
}

TEST(ParseIpynbTest, RejectsDeepNestingInsteadOfOverflowingTheStack) {
  Json cell = CodeCell("x");
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  std::string bytes = NotebookWith(4, Json::array({cell}));
  bytes.replace(bytes.find("\"metadata\":{}"), 13, "\"metadata\":{\"deep\":" + deep + "}");
  const absl::Status status = ParseError(bytes);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("deeper than"));
  // Brackets inside strings do not count.
  EXPECT_TRUE(
      ParseIpynb(NotebookWith(4, Json::array({CodeCell(std::string(5000, '['))})), kNoCap).ok());
}

TEST(ParseIpynbTest, ReadsEveryJsonValueAsNlohmannDoes) {
  // Whichever parser reads the file, the values are the same: integers past 64 bits, repeated
  // keys (the last wins), escapes, numbers of every kind.
  const std::string metadata =
      R"({"big": 18446744073709551616, "neg": -9223372036854775808, "u": 18446744073709551615,)"
      R"( "f": 2.5e-3, "dup": 1, "dup": 2, "esc": "\u00e9\ud83d\ude00\n", "t": true,)"
      R"( "n": null, "nested": [[{}], []]})";
  for (const bool with_big : {true, false}) {
    std::string text = metadata;
    if (!with_big) text.replace(text.find("\"big\""), std::strlen(R"("big": 18446744073709551616, )"), "");
    std::string bytes = NotebookWith(4, Json::array({CodeCell("x")}));
    bytes.replace(bytes.find("\"metadata\":{}"), 13, "\"metadata\":" + text);
    const absl::StatusOr<IpynbNotebook> notebook = ParseIpynb(bytes, kNoCap);
    ASSERT_TRUE(notebook.ok()) << notebook.status();
    EXPECT_EQ(Json::parse(notebook->cells[0].metadata()), Json::parse(text)) << text;
  }
}

// A notebook's bytes with `"big": 2^64` added to its metadata, which only the slower parser
// reads: ParseIpynb then reads the file through the other JSON view.
std::string ForcingTheSlowParser(std::string bytes) {
  const size_t metadata = bytes.rfind("\"metadata\": {");
  EXPECT_NE(metadata, std::string::npos);
  const size_t inside = metadata + std::strlen("\"metadata\": {");
  bytes.insert(inside, bytes[inside] == '}' ? "\"big\": 18446744073709551616"
                                            : "\"big\": 18446744073709551616, ");
  return bytes;
}

TEST(ParseIpynbTest, BothParsersReadTheSameCells) {
  // Repeated keys in the structure too (the last one wins, as nlohmann and Python read them).
  std::string bytes = Canonical(FullNotebook());
  bytes.replace(bytes.find("\"source\": [\n    \"print('hi')"), std::strlen("\"source\": "),
                "\"source\": \"overwritten\", \"source\": ");
  bytes.replace(bytes.find("\"text/plain\": [\n       \"3\""), std::strlen("\"text/plain\": "),
                "\"text/plain\": \"overwritten\", \"text/plain\": ");
  const absl::StatusOr<IpynbNotebook> fast = ParseIpynb(bytes, kNoCap);
  const absl::StatusOr<IpynbNotebook> slow = ParseIpynb(ForcingTheSlowParser(bytes), kNoCap);
  ASSERT_TRUE(fast.ok()) << fast.status();
  ASSERT_TRUE(slow.ok()) << slow.status();
  EXPECT_EQ(fast->cells[1].source(), "print('hi')\n1 + 2");
  EXPECT_EQ(fast->cells[1].outputs(3).execute_result().data().at("text/plain"), "3");
  ASSERT_EQ(fast->cells.size(), slow->cells.size());
  for (size_t i = 0; i < fast->cells.size(); ++i) {
    EXPECT_EQ(fast->cells[i].DebugString(), slow->cells[i].DebugString()) << "cells[" << i << "]";
  }
  EXPECT_EQ(fast->cell_extras, slow->cell_extras);
  EXPECT_EQ(Json::parse(slow->metadata_json).value("big", 0.0), 18446744073709551616.0);
  EXPECT_EQ(Json::parse(fast->metadata_json), [&] {
    Json metadata = Json::parse(slow->metadata_json);
    metadata.erase("big");
    return metadata;
  }());
}

// A notebook of `cells` code cells with `source_bytes` of source each, numbered.
std::string NotebookOfSize(int cells, size_t source_bytes) {
  Json list = Json::array();
  for (int i = 0; i < cells; ++i) {
    list.push_back(CodeCell(absl::StrCat("# ", i, "\n", std::string(source_bytes, 'x'))));
  }
  return NotebookWith(4, list);
}

TEST(ParseIpynbTest, ReadsEachFileTheSameWhateverWasReadBefore) {
  // The parser's buffers are reused between files: files of sizes across its growth steps and
  // over the size it keeps (4 MiB), with malformed ones between them, from two threads at
  // once, all read as the first read of each file did.
  const std::vector<std::string> files = {NotebookOfSize(3, 10),      NotebookOfSize(40, 40000),
                                          NotebookOfSize(5, 100),     NotebookOfSize(60, 100000),
                                          NotebookOfSize(2, 3 << 20), NotebookOfSize(1, 1)};
  ASSERT_GT(files[3].size(), size_t{5} << 20);
  std::vector<std::string> expected;
  for (const std::string& file : files) {
    const absl::StatusOr<IpynbNotebook> notebook = ParseIpynb(file, kNoCap);
    ASSERT_TRUE(notebook.ok()) << notebook.status();
    std::string text;
    for (const v1::Cell& cell : notebook->cells) text += cell.source() + "|";
    expected.push_back(std::move(text));
  }
  const std::string broken = files[1].substr(0, files[1].size() / 2);
  auto read_all = [&](int rounds, std::vector<std::string>* problems) {
    for (int round = 0; round < rounds; ++round) {
      for (size_t i = 0; i < files.size(); ++i) {
        const size_t which = (i * 5 + static_cast<size_t>(round)) % files.size();
        const absl::StatusOr<IpynbNotebook> notebook = ParseIpynb(files[which], kNoCap);
        std::string text;
        if (notebook.ok()) {
          for (const v1::Cell& cell : notebook->cells) text += cell.source() + "|";
        }
        if (text != expected[which]) problems->push_back(absl::StrCat("file ", which));
        if (ParseIpynb(broken, kNoCap).ok()) problems->push_back("a cut file was read");
      }
    }
  };
  std::vector<std::string> here, there;
  std::thread other(read_all, 4, &there);
  read_all(4, &here);
  other.join();
  EXPECT_THAT(here, ::testing::IsEmpty());
  EXPECT_THAT(there, ::testing::IsEmpty());
}

TEST(ParseIpynbTest, BothParsersGiveTheSameErrors) {
  const std::string cells[] = {
      R"({"cell_type": "code", "id": "a", "metadata": {}, "source": [1], "outputs": []})",
      R"({"cell_type": "code", "id": "a", "metadata": {}, "source": "", "outputs": [{}]})",
      R"({"cell_type": "code", "id": "a", "metadata": [], "source": ""})",
      R"({"cell_type": "code", "id": "a", "metadata": {}, "source": "", "execution_count": -1})",
      R"({"cell_type": "heading", "id": "a", "metadata": {}, "source": ""})",
      R"({"cell_type": "code", "id": "a b", "metadata": {}, "source": ""})",
  };
  for (const std::string& cell : cells) {
    const std::string bytes = absl::StrCat(R"({"cells": [)", cell,
                                           R"(], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})");
    const absl::StatusOr<IpynbNotebook> fast = ParseIpynb(bytes, kNoCap);
    const absl::StatusOr<IpynbNotebook> slow = ParseIpynb(ForcingTheSlowParser(bytes), kNoCap);
    EXPECT_EQ(fast.status().code(), absl::StatusCode::kInvalidArgument) << cell;
    EXPECT_EQ(fast.status(), slow.status()) << cell;
  }
}

TEST(ParseIpynbTest, NeverThrowsOnTruncatedOrCorruptedInput) {
  const std::string bytes = Canonical(FullNotebook());
  for (size_t length = 0; length + 1 < bytes.size(); ++length) {  // all but the last "\n"
    EXPECT_FALSE(ParseIpynb(absl::string_view(bytes.data(), length), kNoCap).ok());
  }
  for (size_t i = 0; i < bytes.size(); i += 7) {
    std::string corrupted = bytes;
    corrupted[i] = static_cast<char>(corrupted[i] ^ 0x5a);
    (void)ParseIpynb(corrupted, kNoCap);  // must return, whatever it says
  }
}

TEST(ExportIpynbTest, WritesLikeJupyter) {
  IpynbNotebook notebook;
  notebook.metadata_json = R"({"b": 1, "a": "ü"})";
  v1::Cell& code = notebook.cells.emplace_back();
  code.set_cell_id("c1");
  code.set_cell_type(v1::CELL_TYPE_CODE);
  code.set_source("a\nb\n\nc");
  v1::Cell& markdown = notebook.cells.emplace_back();
  markdown.set_cell_id("m1");
  markdown.set_cell_type(v1::CELL_TYPE_MARKDOWN);
  markdown.set_source("line\n");
  // No cell_extras at all: treated as none.

  const std::string bytes = ExportIpynb(notebook);
  EXPECT_EQ(bytes, R"({
 "cells": [
  {
   "cell_type": "code",
   "execution_count": null,
   "id": "c1",
   "metadata": {},
   "outputs": [],
   "source": [
    "a\n",
    "b\n",
    "\n",
    "c"
   ]
  },
  {
   "cell_type": "markdown",
   "id": "m1",
   "metadata": {},
   "source": [
    "line\n"
   ]
  }
 ],
 "metadata": {
  "a": "ü",
  "b": 1
 },
 "nbformat": 4,
 "nbformat_minor": 5
}
)");
}

TEST(ExportIpynbTest, AlwaysWritesValidUniqueIds) {
  IpynbNotebook notebook;
  for (const char* id : {"", "dup", "dup", "not valid"}) {
    v1::Cell& cell = notebook.cells.emplace_back();
    cell.set_cell_id(id);
    cell.set_cell_type(v1::CELL_TYPE_CODE);
    cell.set_metadata("not json");
  }
  const Json json = Json::parse(ExportIpynb(notebook));
  std::set<std::string> ids;
  for (const Json& cell : json["cells"]) {
    EXPECT_TRUE(IsValidCellId(cell["id"].get<std::string>())) << cell["id"];
    EXPECT_EQ(cell["metadata"], Json::object());
    ids.insert(cell["id"].get<std::string>());
  }
  EXPECT_EQ(ids.size(), 4u);
  EXPECT_EQ(json["cells"][1]["id"], "dup");
}

TEST(IsValidCellIdTest, FollowsNbformat45) {
  EXPECT_TRUE(IsValidCellId("a"));
  EXPECT_TRUE(IsValidCellId("A-z_09"));
  EXPECT_TRUE(IsValidCellId(std::string(64, 'x')));
  EXPECT_FALSE(IsValidCellId(""));
  EXPECT_FALSE(IsValidCellId(std::string(65, 'x')));
  EXPECT_FALSE(IsValidCellId("a b"));
  EXPECT_FALSE(IsValidCellId("a.b"));
  EXPECT_FALSE(IsValidCellId("é"));
}

// A notebook written by nbformat itself reads correctly and exports to the same bytes.
TEST(IpynbInteropTest, ReadsAndRewritesANotebookWrittenByNbformat) {
  if (!HaveNbformat()) GTEST_SKIP() << "python3 nbformat is not installed";
  const std::string script = TempPath("write.py");
  const std::string path = TempPath("written.ipynb");
  WriteFile(script, R"PY(
import sys
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

nb = new_notebook(metadata={
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python", "version": "3.11.2"},
})
nb.cells = [
    new_markdown_cell("# Title\n\nSome *text* \u00fcn\u00efc\u00f6d\u00e9"),
    new_code_cell("import sys\nprint('hi')\n1 + 2", execution_count=3, outputs=[
        new_output("stream", name="stdout", text="hi\nthere\n"),
        new_output("stream", name="stderr", text="warning\n"),
        new_output("display_data",
                   data={"image/png": "iVBORw0KGgo=\n", "text/plain": "<Figure 640x480>"},
                   metadata={"image/png": {"width": 640, "height": 480}}),
        new_output("execute_result", execution_count=3,
                   data={"text/plain": "3", "text/html": "<b>3</b>\n<i>x</i>",
                         "application/json": {"a": [1, 2]}}),
        new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                   traceback=["\x1b[0;31mZeroDivisionError\x1b[0m", "line 2"]),
    ]),
    new_code_cell("x = 1"),
    new_raw_cell("raw text", metadata={"format": "text/x-rst"}),
]
nbformat.write(nb, sys.argv[1])
)PY");
  ASSERT_EQ(RunShell(absl::StrCat(kPython, " ", script, " ", path)), 0);
  const std::string written = ReadFile(path);
  std::remove(script.c_str());
  std::remove(path.c_str());
  const Json json = Json::parse(written);

  absl::StatusOr<IpynbNotebook> notebook = ParseIpynb(written, kNoCap);
  ASSERT_TRUE(notebook.ok()) << notebook.status();
  EXPECT_EQ(notebook->nbformat_minor, json["nbformat_minor"].get<int>());
  EXPECT_EQ(Json::parse(notebook->metadata_json), json["metadata"]);
  ASSERT_EQ(notebook->cells.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(notebook->cells[i].cell_id(), json["cells"][i]["id"].get<std::string>());
  }
  EXPECT_EQ(notebook->cells[0].source(), "# Title\n\nSome *text* ünïcödé");
  const v1::Cell& code = notebook->cells[1];
  EXPECT_EQ(code.source(), "import sys\nprint('hi')\n1 + 2");
  EXPECT_EQ(code.execution_count(), 3);
  ASSERT_EQ(code.outputs_size(), 5);
  EXPECT_EQ(code.outputs(0).stream().text(), "hi\nthere\n");
  EXPECT_EQ(code.outputs(1).stream().name(), v1::STREAM_NAME_STDERR);
  EXPECT_EQ(code.outputs(2).display_data().data().at("image/png"), "iVBORw0KGgo=\n");
  EXPECT_EQ(Json::parse(code.outputs(2).display_data().metadata()),
            Json::parse(R"({"image/png": {"width": 640, "height": 480}})"));
  EXPECT_EQ(code.outputs(3).execute_result().data().at("text/html"), "<b>3</b>\n<i>x</i>");
  EXPECT_EQ(Json::parse(code.outputs(3).execute_result().data().at("application/json")),
            Json::parse(R"({"a": [1, 2]})"));
  EXPECT_THAT(code.outputs(4).error().traceback(),
              ElementsAre("\x1b[0;31mZeroDivisionError\x1b[0m", "line 2"));
  EXPECT_EQ(notebook->cells[2].execution_count(), 0);
  EXPECT_EQ(notebook->cells[3].cell_type(), v1::CELL_TYPE_RAW);
  EXPECT_EQ(Json::parse(notebook->cells[3].metadata()), json["cells"][3]["metadata"]);

  EXPECT_EQ(ExportIpynb(*notebook), written);
}

}  // namespace
}  // namespace cellgate::notebook
