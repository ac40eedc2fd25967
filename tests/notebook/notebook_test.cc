#include "server/notebook/notebook.h"

#include <regex>
#include <set>
#include <string>
#include <vector>

#include <google/protobuf/util/message_differencer.h>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellgate::notebook {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr Notebook::Limits kLimits{
    .max_cells = 10, .max_source_bytes = 100, .max_output_bytes = 1000};

v1::Output Stdout(const std::string& text) {
  v1::Output output;
  output.mutable_stream()->set_name(v1::STREAM_NAME_STDOUT);
  output.mutable_stream()->set_text(text);
  return output;
}

v1::Output Display(const std::string& plain, const std::string& display_id) {
  v1::Output output;
  (*output.mutable_display_data()->mutable_data())["text/plain"] = plain;
  output.mutable_display_data()->set_display_id(display_id);
  return output;
}

google::protobuf::Timestamp At(int64_t seconds) {
  google::protobuf::Timestamp timestamp;
  timestamp.set_seconds(seconds);
  return timestamp;
}

class NotebookTest : public ::testing::Test {
 protected:
  // Adds a code cell with the given id at the end.
  void Add(const std::string& id, const std::string& source = "x = 1") {
    absl::StatusOr<v1::Cell> cell =
        notebook_.AddCell(source, v1::CELL_TYPE_CODE, std::nullopt, id, "");
    ASSERT_TRUE(cell.ok()) << cell.status();
  }

  // Runs a cell to the end with `status`.
  void Run(const std::string& id, v1::ExecutionStatus status, int count = 1) {
    ASSERT_TRUE(notebook_.QueueRun(id, "exec-" + id).ok());
    ASSERT_TRUE(notebook_.BeginRun(id, "exec-" + id, At(100)).ok());
    notebook_.outputs(id)->Append(Stdout("out of " + id));
    ASSERT_TRUE(notebook_.FinishRun(id, status, count, 25).ok());
  }

  v1::CellState State(const std::string& id) {
    absl::StatusOr<v1::Cell> cell = notebook_.GetCell(id);
    EXPECT_TRUE(cell.ok()) << cell.status();
    return cell.ok() ? cell->state() : v1::CELL_STATE_UNSPECIFIED;
  }

  Notebook notebook_{kLimits};
};

void ExpectError(const absl::Status& status, absl::StatusCode code,
                 const std::vector<std::string>& mentions) {
  EXPECT_EQ(status.code(), code) << status;
  for (const std::string& mention : mentions) EXPECT_THAT(status.message(), HasSubstr(mention));
}

TEST_F(NotebookTest, AddCellAppendsAndInserts) {
  Add("a");
  Add("c");
  absl::StatusOr<v1::Cell> b = notebook_.AddCell("print(2)", v1::CELL_TYPE_UNSPECIFIED, 1, "b", "");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->index(), 1);
  EXPECT_EQ(b->cell_type(), v1::CELL_TYPE_CODE);
  EXPECT_EQ(b->state(), v1::CELL_STATE_NEW);
  EXPECT_EQ(b->source(), "print(2)");
  EXPECT_FALSE(b->has_last_run());
  absl::StatusOr<v1::Cell> first = notebook_.AddCell("# T", v1::CELL_TYPE_MARKDOWN, 0, "t", "");
  ASSERT_TRUE(first.ok());
  absl::StatusOr<v1::Cell> last = notebook_.AddCell("", v1::CELL_TYPE_RAW, 4, "z", "");
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->index(), 4);
  EXPECT_THAT(notebook_.cell_ids(), ElementsAre("t", "a", "b", "c", "z"));
  EXPECT_EQ(notebook_.size(), 5);
}

TEST_F(NotebookTest, GeneratedIdsAreNbformatStyleAndUnique) {
  std::set<std::string> ids;
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<v1::Cell> cell = notebook_.AddCell("", v1::CELL_TYPE_CODE, std::nullopt, "", "");
    ASSERT_TRUE(cell.ok()) << cell.status();
    EXPECT_TRUE(std::regex_match(cell->cell_id(), std::regex("[0-9a-f]{8}"))) << cell->cell_id();
    ids.insert(cell->cell_id());
  }
  EXPECT_EQ(ids.size(), 10u);
}

TEST_F(NotebookTest, CellIdRules) {
  Add(std::string(64, 'a'));
  Add("Az09-_");
  for (const std::string& bad :
       {std::string(65, 'a'), std::string("has space"), std::string("dot.id"),
        std::string("caf\xC3\xA9"), std::string("semi;colon")}) {
    ExpectError(notebook_.AddCell("", v1::CELL_TYPE_CODE, std::nullopt, bad, "").status(),
                absl::StatusCode::kInvalidArgument, {"cell_id", "[a-zA-Z0-9-_]"});
  }
  ExpectError(notebook_.AddCell("", v1::CELL_TYPE_CODE, std::nullopt, "Az09-_", "").status(),
              absl::StatusCode::kAlreadyExists, {"cell_id", "\"Az09-_\""});
  EXPECT_EQ(notebook_.size(), 2);
}

TEST_F(NotebookTest, AddCellIndexOutOfRange) {
  Add("a");
  for (const int index : {-1, 2, 100}) {
    ExpectError(notebook_.AddCell("", v1::CELL_TYPE_CODE, index, "", "").status(),
                absl::StatusCode::kInvalidArgument, {"index", "0..1"});
  }
}

TEST_F(NotebookTest, SourceCap) {
  EXPECT_TRUE(
      notebook_.AddCell(std::string(100, 'x'), v1::CELL_TYPE_CODE, std::nullopt, "ok", "").ok());
  ExpectError(
      notebook_.AddCell(std::string(101, 'x'), v1::CELL_TYPE_CODE, std::nullopt, "", "").status(),
      absl::StatusCode::kInvalidArgument, {"source", "101", "100"});
  ExpectError(
      notebook_.EditCell("ok", std::string(101, 'y'), v1::CELL_TYPE_UNSPECIFIED, std::nullopt)
          .status(),
      absl::StatusCode::kInvalidArgument, {"source", "100"});
}

TEST_F(NotebookTest, MaxCells) {
  for (int i = 0; i < 10; ++i) Add("c" + std::to_string(i));
  ExpectError(notebook_.AddCell("", v1::CELL_TYPE_CODE, std::nullopt, "", "").status(),
              absl::StatusCode::kResourceExhausted, {"max_cells", "10"});
}

TEST_F(NotebookTest, Metadata) {
  absl::StatusOr<v1::Cell> cell =
      notebook_.AddCell("", v1::CELL_TYPE_CODE, std::nullopt, "m", R"( { "tags" : ["setup"] } )");
  ASSERT_TRUE(cell.ok()) << cell.status();
  EXPECT_EQ(cell->metadata(), R"({"tags":["setup"]})");
  cell = notebook_.AddCell("", v1::CELL_TYPE_CODE, std::nullopt, "e", "{}");
  ASSERT_TRUE(cell.ok());
  EXPECT_THAT(cell->metadata(), IsEmpty());
  for (const char* bad : {"[1]", "{", "\"text\"", "null"}) {
    ExpectError(notebook_.AddCell("", v1::CELL_TYPE_CODE, std::nullopt, "", bad).status(),
                absl::StatusCode::kInvalidArgument, {"metadata"});
  }
  cell = notebook_.EditCell("m", std::nullopt, v1::CELL_TYPE_UNSPECIFIED, R"({"a":1})");
  ASSERT_TRUE(cell.ok());
  EXPECT_EQ(cell->metadata(), R"({"a":1})");

  EXPECT_TRUE(notebook_.set_metadata_json(R"({"kernelspec":{"name":"python3"}})").ok());
  EXPECT_EQ(notebook_.Snapshot().metadata(), R"({"kernelspec":{"name":"python3"}})");
  ExpectError(notebook_.set_metadata_json("[]"), absl::StatusCode::kInvalidArgument, {"metadata"});
  EXPECT_EQ(notebook_.metadata_json(), R"({"kernelspec":{"name":"python3"}})");
}

TEST_F(NotebookTest, InvalidCellType) {
  ExpectError(notebook_.AddCell("", static_cast<v1::CellType>(42), std::nullopt, "", "").status(),
              absl::StatusCode::kInvalidArgument, {"cell_type"});
}

TEST_F(NotebookTest, UnknownAndMalformedIds) {
  Add("a");
  const std::vector<std::string> mention = {"\"nope\""};
  ExpectError(notebook_.GetCell("nope").status(), absl::StatusCode::kNotFound, mention);
  ExpectError(notebook_.StoredCell("nope").status(), absl::StatusCode::kNotFound, mention);
  ExpectError(notebook_.EditCell("nope", "x", v1::CELL_TYPE_UNSPECIFIED, std::nullopt).status(),
              absl::StatusCode::kNotFound, mention);
  ExpectError(notebook_.DeleteCell("nope"), absl::StatusCode::kNotFound, mention);
  ExpectError(notebook_.MoveCell("nope", 0).status(), absl::StatusCode::kNotFound, mention);
  ExpectError(notebook_.SetState("nope", v1::CELL_STATE_OK), absl::StatusCode::kNotFound, mention);
  ExpectError(notebook_.BeginRun("nope", "e", At(1)), absl::StatusCode::kNotFound, mention);
  ExpectError(notebook_.FinishRun("nope", v1::EXECUTION_STATUS_OK, 1, 1),
              absl::StatusCode::kNotFound, mention);
  EXPECT_EQ(notebook_.outputs("nope"), nullptr);
  EXPECT_FALSE(notebook_.source("nope").has_value());

  for (const std::string& bad : {std::string(""), std::string("a b")}) {
    ExpectError(notebook_.GetCell(bad).status(), absl::StatusCode::kInvalidArgument, {"cell_id"});
    ExpectError(notebook_.StoredCell(bad).status(), absl::StatusCode::kInvalidArgument,
                {"cell_id"});
    ExpectError(notebook_.DeleteCell(bad), absl::StatusCode::kInvalidArgument, {"cell_id"});
    ExpectError(notebook_.MoveCell(bad, 0).status(), absl::StatusCode::kInvalidArgument,
                {"cell_id"});
    ExpectError(notebook_.EditCell(bad, "x", v1::CELL_TYPE_UNSPECIFIED, std::nullopt).status(),
                absl::StatusCode::kInvalidArgument, {"cell_id"});
  }
}

TEST_F(NotebookTest, LongMalformedIdIsShortenedInMessage) {
  const absl::Status status = notebook_.GetCell(std::string(5000, '!')).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LT(status.message().size(), 300u);
  EXPECT_THAT(status.message(), HasSubstr("5000 bytes"));
}

TEST_F(NotebookTest, EditSourceOfNewCellStaysNew) {
  Add("a");
  absl::StatusOr<v1::Cell> cell =
      notebook_.EditCell("a", "y = 2", v1::CELL_TYPE_UNSPECIFIED, std::nullopt);
  ASSERT_TRUE(cell.ok());
  EXPECT_EQ(cell->source(), "y = 2");
  EXPECT_EQ(cell->state(), v1::CELL_STATE_NEW);
  EXPECT_EQ(notebook_.source("a"), "y = 2");
}

TEST_F(NotebookTest, EditSourceOfRunCellMakesItStale) {
  for (const auto status :
       {v1::EXECUTION_STATUS_OK, v1::EXECUTION_STATUS_ERROR, v1::EXECUTION_STATUS_CANCELLED}) {
    Notebook notebook(kLimits);
    ASSERT_TRUE(notebook.AddCell("a", v1::CELL_TYPE_CODE, std::nullopt, "c", "").ok());
    ASSERT_TRUE(notebook.BeginRun("c", "e", At(1)).ok());
    notebook.outputs("c")->Append(Stdout("kept"));
    ASSERT_TRUE(notebook.FinishRun("c", status, 3, 1).ok());
    // Same source, metadata only: no change of state.
    absl::StatusOr<v1::Cell> cell =
        notebook.EditCell("c", "a", v1::CELL_TYPE_UNSPECIFIED, R"({"x":1})");
    ASSERT_TRUE(cell.ok());
    EXPECT_NE(cell->state(), v1::CELL_STATE_STALE);
    cell = notebook.EditCell("c", "b", v1::CELL_TYPE_UNSPECIFIED, std::nullopt);
    ASSERT_TRUE(cell.ok());
    EXPECT_EQ(cell->state(), v1::CELL_STATE_STALE) << status;
    EXPECT_EQ(cell->outputs_size(), 1);  // outputs are kept
    EXPECT_EQ(cell->execution_count(), 3);
  }
}

TEST_F(NotebookTest, EditWhileRunningEndsStale) {
  Add("a");
  ASSERT_TRUE(notebook_.QueueRun("a", "e1").ok());
  ASSERT_TRUE(notebook_.BeginRun("a", "e1", At(1)).ok());
  ASSERT_TRUE(notebook_.EditCell("a", "changed", v1::CELL_TYPE_UNSPECIFIED, std::nullopt).ok());
  EXPECT_EQ(State("a"), v1::CELL_STATE_RUNNING);
  ASSERT_TRUE(notebook_.FinishRun("a", v1::EXECUTION_STATUS_OK, 4, 10).ok());
  absl::StatusOr<v1::Cell> cell = notebook_.GetCell("a");
  EXPECT_EQ(cell->state(), v1::CELL_STATE_STALE);
  EXPECT_EQ(cell->last_run().status(), v1::EXECUTION_STATUS_OK);
  // The next run is not affected.
  Run("a", v1::EXECUTION_STATUS_OK);
  EXPECT_EQ(State("a"), v1::CELL_STATE_OK);
}

TEST_F(NotebookTest, TypeChangeOfQueuedOrRunningCellIsRefused) {
  Add("a");
  ASSERT_TRUE(notebook_.QueueRun("a", "e1").ok());
  ExpectError(notebook_.EditCell("a", "new", v1::CELL_TYPE_MARKDOWN, std::nullopt).status(),
              absl::StatusCode::kFailedPrecondition, {"cell_type", "queued"});
  EXPECT_EQ(notebook_.source("a"), "x = 1");  // nothing changed
  ASSERT_TRUE(notebook_.BeginRun("a", "e1", At(1)).ok());
  ExpectError(notebook_.EditCell("a", std::nullopt, v1::CELL_TYPE_RAW, std::nullopt).status(),
              absl::StatusCode::kFailedPrecondition, {"running"});
  // Same type is no change.
  EXPECT_TRUE(notebook_.EditCell("a", std::nullopt, v1::CELL_TYPE_CODE, std::nullopt).ok());
}

TEST_F(NotebookTest, ChangeToMarkdownClearsRunState) {
  Add("a");
  Run("a", v1::EXECUTION_STATUS_OK, 5);
  absl::StatusOr<v1::Cell> cell =
      notebook_.EditCell("a", std::nullopt, v1::CELL_TYPE_MARKDOWN, std::nullopt);
  ASSERT_TRUE(cell.ok());
  EXPECT_EQ(cell->cell_type(), v1::CELL_TYPE_MARKDOWN);
  EXPECT_EQ(cell->state(), v1::CELL_STATE_NEW);
  EXPECT_EQ(cell->execution_count(), 0);
  EXPECT_THAT(cell->outputs(), IsEmpty());
  EXPECT_FALSE(cell->has_last_run());
  ExpectError(notebook_.BeginRun("a", "e", At(1)), absl::StatusCode::kFailedPrecondition,
              {"not a code cell"});
  cell = notebook_.EditCell("a", std::nullopt, v1::CELL_TYPE_CODE, std::nullopt);
  ASSERT_TRUE(cell.ok());
  EXPECT_EQ(cell->state(), v1::CELL_STATE_NEW);
}

TEST_F(NotebookTest, EditValidatesEverythingFirst) {
  Add("a");
  ExpectError(notebook_.EditCell("a", "new source", v1::CELL_TYPE_MARKDOWN, "[bad]").status(),
              absl::StatusCode::kInvalidArgument, {"metadata"});
  absl::StatusOr<v1::Cell> cell = notebook_.GetCell("a");
  EXPECT_EQ(cell->source(), "x = 1");
  EXPECT_EQ(cell->cell_type(), v1::CELL_TYPE_CODE);
}

TEST_F(NotebookTest, DeleteCell) {
  Add("a");
  Add("b");
  Add("c");
  ASSERT_TRUE(notebook_.DeleteCell("b").ok());
  EXPECT_THAT(notebook_.cell_ids(), ElementsAre("a", "c"));
  EXPECT_EQ(notebook_.GetCell("c")->index(), 1);
  ExpectError(notebook_.DeleteCell("b"), absl::StatusCode::kNotFound, {"\"b\""});

  ASSERT_TRUE(notebook_.QueueRun("a", "e").ok());
  ExpectError(notebook_.DeleteCell("a"), absl::StatusCode::kFailedPrecondition, {"queued"});
  ASSERT_TRUE(notebook_.BeginRun("a", "e", At(1)).ok());
  ExpectError(notebook_.DeleteCell("a"), absl::StatusCode::kFailedPrecondition, {"running"});
  ASSERT_TRUE(notebook_.FinishRun("a", v1::EXECUTION_STATUS_OK, 1, 1).ok());
  EXPECT_TRUE(notebook_.DeleteCell("a").ok());
  EXPECT_THAT(notebook_.cell_ids(), ElementsAre("c"));
  // A deleted id may be reused.
  Add("a");
}

TEST_F(NotebookTest, MoveCell) {
  for (const char* id : {"a", "b", "c", "d"}) Add(id);
  absl::StatusOr<v1::Cell> moved = notebook_.MoveCell("a", 3);
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(moved->index(), 3);
  EXPECT_THAT(notebook_.cell_ids(), ElementsAre("b", "c", "d", "a"));
  moved = notebook_.MoveCell("d", 0);
  ASSERT_TRUE(moved.ok());
  EXPECT_THAT(notebook_.cell_ids(), ElementsAre("d", "b", "c", "a"));
  moved = notebook_.MoveCell("c", 1);
  EXPECT_THAT(notebook_.cell_ids(), ElementsAre("d", "c", "b", "a"));
  moved = notebook_.MoveCell("c", 1);  // to where it is
  EXPECT_THAT(notebook_.cell_ids(), ElementsAre("d", "c", "b", "a"));
  for (const int index : {-1, 4}) {
    ExpectError(notebook_.MoveCell("a", index).status(), absl::StatusCode::kInvalidArgument,
                {"index", "0..3"});
  }
  const v1::Notebook snapshot = notebook_.Snapshot();
  for (int i = 0; i < snapshot.cells_size(); ++i) EXPECT_EQ(snapshot.cells(i).index(), i);
}

TEST_F(NotebookTest, RunLifecycle) {
  Add("a");
  ASSERT_TRUE(notebook_.QueueRun("a", "e1").ok());
  absl::StatusOr<v1::Cell> cell = notebook_.GetCell("a");
  EXPECT_EQ(cell->state(), v1::CELL_STATE_QUEUED);
  EXPECT_EQ(cell->last_run().execution_id(), "e1");
  EXPECT_FALSE(cell->last_run().has_started_at());

  ASSERT_TRUE(notebook_.BeginRun("a", "e1", At(100)).ok());
  notebook_.outputs("a")->Append(Stdout("hi\n"));
  cell = notebook_.GetCell("a");
  EXPECT_EQ(cell->state(), v1::CELL_STATE_RUNNING);
  EXPECT_EQ(cell->last_run().started_at().seconds(), 100);
  EXPECT_EQ(cell->outputs_size(), 1);

  ASSERT_TRUE(notebook_.FinishRun("a", v1::EXECUTION_STATUS_OK, 7, 42).ok());
  cell = notebook_.GetCell("a");
  EXPECT_EQ(cell->state(), v1::CELL_STATE_OK);
  EXPECT_EQ(cell->execution_count(), 7);
  EXPECT_EQ(cell->last_run().execution_id(), "e1");
  EXPECT_EQ(cell->last_run().status(), v1::EXECUTION_STATUS_OK);
  EXPECT_EQ(cell->last_run().duration_ms(), 42);
  EXPECT_EQ(cell->outputs(0).stream().text(), "hi\n");

  // A new run clears the outputs and the execution count.
  ASSERT_TRUE(notebook_.QueueRun("a", "e2").ok());
  EXPECT_EQ(notebook_.GetCell("a")->outputs_size(), 1);
  ASSERT_TRUE(notebook_.BeginRun("a", "e2", At(200)).ok());
  cell = notebook_.GetCell("a");
  EXPECT_THAT(cell->outputs(), IsEmpty());
  EXPECT_EQ(cell->execution_count(), 0);
  EXPECT_EQ(cell->last_run().status(), v1::EXECUTION_STATUS_UNSPECIFIED);
  EXPECT_EQ(cell->last_run().duration_ms(), 0);
}

TEST_F(NotebookTest, FinishStatusMapsToState) {
  const std::pair<v1::ExecutionStatus, v1::CellState> cases[] = {
      {v1::EXECUTION_STATUS_OK, v1::CELL_STATE_OK},
      {v1::EXECUTION_STATUS_ERROR, v1::CELL_STATE_ERROR},
      {v1::EXECUTION_STATUS_TIMEOUT, v1::CELL_STATE_ERROR},
      {v1::EXECUTION_STATUS_INTERRUPTED, v1::CELL_STATE_ERROR},
      {v1::EXECUTION_STATUS_KERNEL_DIED, v1::CELL_STATE_ERROR},
      {v1::EXECUTION_STATUS_CANCELLED, v1::CELL_STATE_CANCELLED},
  };
  for (const auto& [status, state] : cases) {
    Notebook notebook(kLimits);
    ASSERT_TRUE(notebook.AddCell("", v1::CELL_TYPE_CODE, std::nullopt, "c", "").ok());
    ASSERT_TRUE(notebook.BeginRun("c", "e", At(1)).ok());
    ASSERT_TRUE(notebook.FinishRun("c", status, 2, 3).ok());
    EXPECT_EQ(notebook.GetCell("c")->state(), state) << status;
    EXPECT_EQ(notebook.GetCell("c")->last_run().status(), status);
  }
  Add("a");
  ExpectError(notebook_.FinishRun("a", v1::EXECUTION_STATUS_UNSPECIFIED, 1, 1),
              absl::StatusCode::kInvalidArgument, {"status"});
}

TEST_F(NotebookTest, CancelledWhileQueuedKeepsPreviousOutputs) {
  Add("a");
  Run("a", v1::EXECUTION_STATUS_OK, 3);
  ASSERT_TRUE(notebook_.QueueRun("a", "e9").ok());
  ASSERT_TRUE(notebook_.FinishRun("a", v1::EXECUTION_STATUS_CANCELLED, 0, 0).ok());
  absl::StatusOr<v1::Cell> cell = notebook_.GetCell("a");
  EXPECT_EQ(cell->state(), v1::CELL_STATE_CANCELLED);
  EXPECT_EQ(cell->execution_count(), 3);
  EXPECT_EQ(cell->outputs_size(), 1);
  EXPECT_EQ(cell->last_run().execution_id(), "e9");
  EXPECT_EQ(cell->last_run().status(), v1::EXECUTION_STATUS_CANCELLED);
}

TEST_F(NotebookTest, SetState) {
  Add("a");
  EXPECT_TRUE(notebook_.SetState("a", v1::CELL_STATE_QUEUED).ok());
  EXPECT_EQ(State("a"), v1::CELL_STATE_QUEUED);
  ExpectError(notebook_.SetState("a", v1::CELL_STATE_UNSPECIFIED),
              absl::StatusCode::kInvalidArgument, {"state"});
  ASSERT_TRUE(notebook_.AddCell("# md", v1::CELL_TYPE_MARKDOWN, std::nullopt, "m", "").ok());
  ExpectError(notebook_.SetState("m", v1::CELL_STATE_OK), absl::StatusCode::kFailedPrecondition,
              {"\"m\""});
  EXPECT_TRUE(notebook_.SetState("m", v1::CELL_STATE_NEW).ok());
}

TEST_F(NotebookTest, DisplayUpdateAcrossCells) {
  Add("a");
  Add("b");
  Add("c");
  ASSERT_TRUE(notebook_.BeginRun("a", "e1", At(1)).ok());
  notebook_.outputs("a")->Append(Display("progress 0%", "bar"));
  ASSERT_TRUE(notebook_.FinishRun("a", v1::EXECUTION_STATUS_OK, 1, 1).ok());
  ASSERT_TRUE(notebook_.BeginRun("b", "e2", At(2)).ok());
  notebook_.outputs("b")->Append(Display("other", "other"));
  notebook_.outputs("b")->Append(Display("progress copy", "bar"));

  v1::DisplayUpdate update;
  update.set_display_id("bar");
  (*update.mutable_data())["text/plain"] = "progress 100%";
  EXPECT_TRUE(notebook_.ApplyDisplayUpdateEverywhere(update));
  const v1::Notebook snapshot = notebook_.Snapshot();
  EXPECT_EQ(snapshot.cells(0).outputs(0).display_data().data().at("text/plain"), "progress 100%");
  EXPECT_EQ(snapshot.cells(1).outputs(0).display_data().data().at("text/plain"), "other");
  EXPECT_EQ(snapshot.cells(1).outputs(1).display_data().data().at("text/plain"), "progress 100%");
  update.set_display_id("missing");
  EXPECT_FALSE(notebook_.ApplyDisplayUpdateEverywhere(update));
}

TEST_F(NotebookTest, MarkAllStale) {
  for (const char* id : {"ok", "err", "cancelled", "new", "running"}) Add(id);
  ASSERT_TRUE(notebook_.AddCell("md", v1::CELL_TYPE_MARKDOWN, std::nullopt, "md", "").ok());
  Run("ok", v1::EXECUTION_STATUS_OK);
  Run("err", v1::EXECUTION_STATUS_ERROR);
  Run("cancelled", v1::EXECUTION_STATUS_CANCELLED);
  ASSERT_TRUE(notebook_.BeginRun("running", "e", At(1)).ok());
  notebook_.MarkAllStale("kernel restarted");
  EXPECT_EQ(State("ok"), v1::CELL_STATE_STALE);
  EXPECT_EQ(notebook_.GetCell("ok")->stale_reason(), "kernel restarted");
  EXPECT_EQ(notebook_.GetCell("new")->stale_reason(), "");
  EXPECT_EQ(State("err"), v1::CELL_STATE_STALE);
  EXPECT_EQ(State("cancelled"), v1::CELL_STATE_STALE);
  EXPECT_EQ(State("new"), v1::CELL_STATE_NEW);
  EXPECT_EQ(State("running"), v1::CELL_STATE_RUNNING);
  EXPECT_EQ(State("md"), v1::CELL_STATE_NEW);
  EXPECT_EQ(notebook_.GetCell("ok")->outputs_size(), 1);  // outputs kept
}

TEST_F(NotebookTest, SnapshotCarriesOutputsAndTruncation) {
  Notebook notebook({.max_cells = 0, .max_source_bytes = 0, .max_output_bytes = 4});
  ASSERT_TRUE(notebook.AddCell("a", v1::CELL_TYPE_CODE, std::nullopt, "a", "").ok());
  ASSERT_TRUE(notebook.AddCell("b", v1::CELL_TYPE_CODE, std::nullopt, "b", "").ok());
  notebook.outputs("a")->Append(Stdout("123456"));
  notebook.outputs("b")->Append(Stdout("12"));
  const v1::Notebook snapshot = notebook.Snapshot();
  ASSERT_EQ(snapshot.cells_size(), 2);
  EXPECT_TRUE(snapshot.cells(0).outputs_truncated());
  EXPECT_EQ(snapshot.cells(0).outputs(0).stream().text(), "1234");
  EXPECT_FALSE(snapshot.cells(1).outputs_truncated());
  EXPECT_EQ(snapshot.cells(1).index(), 1);
  EXPECT_THAT(snapshot.kernel_id(), IsEmpty());

  // Without outputs: the same but for them, the truncation still said.
  v1::Notebook lean = notebook.Snapshot(/*with_graph=*/true, /*with_outputs=*/false);
  for (const v1::Cell& cell : lean.cells()) EXPECT_THAT(cell.outputs(), IsEmpty());
  EXPECT_TRUE(lean.cells(0).outputs_truncated());
  v1::Notebook full = snapshot;
  for (v1::Cell& cell : *full.mutable_cells()) cell.clear_outputs();
  EXPECT_EQ(lean.SerializeAsString(), full.SerializeAsString());
}

v1::Cell ImportCell(const std::string& id, v1::CellType type, const std::string& source,
                    std::vector<v1::Output> outputs = {}, int execution_count = 0) {
  v1::Cell cell;
  cell.set_cell_id(id);
  cell.set_cell_type(type);
  cell.set_source(source);
  cell.set_execution_count(execution_count);
  for (v1::Output& output : outputs) *cell.add_outputs() = std::move(output);
  return cell;
}

// Every cell of the snapshot is found by its id, at its position; `gone` ids are not found.
void ExpectEveryCellFound(const Notebook& notebook, const std::vector<std::string>& gone = {}) {
  const v1::Notebook snapshot = notebook.Snapshot();
  for (int i = 0; i < snapshot.cells_size(); ++i) {
    absl::StatusOr<v1::Cell> cell = notebook.GetCell(snapshot.cells(i).cell_id());
    ASSERT_TRUE(cell.ok()) << snapshot.cells(i).cell_id() << ": " << cell.status();
    EXPECT_EQ(cell->index(), i) << cell->cell_id();
    EXPECT_EQ(cell->source(), snapshot.cells(i).source());
  }
  for (const std::string& id : gone) {
    EXPECT_EQ(notebook.GetCell(id).status().code(), absl::StatusCode::kNotFound) << id;
  }
}

TEST_F(NotebookTest, CellsAreFoundByIdAfterEveryKindOfChange) {
  Add("a", "1");
  Add("b", "2");
  Add("c", "3");
  ASSERT_TRUE(notebook_.DeleteCell("b").ok());
  ExpectEveryCellFound(notebook_, {"b"});
  Add("b", "2 again");  // a deleted id can be used again
  ASSERT_TRUE(notebook_.MoveCell("b", 0).ok());
  ExpectEveryCellFound(notebook_);

  std::vector<v1::Cell> appended;
  appended.push_back(ImportCell("a", v1::CELL_TYPE_CODE, "clashes with a"));
  appended.push_back(ImportCell("d", v1::CELL_TYPE_CODE, "4"));
  ASSERT_TRUE(notebook_.LoadCells(std::move(appended), /*replace=*/false).ok());
  ExpectEveryCellFound(notebook_);
  EXPECT_EQ(notebook_.GetCell("a")->source(), "1");  // the import's "a" got a new id

  std::vector<v1::Cell> replacing;
  replacing.push_back(ImportCell("e", v1::CELL_TYPE_CODE, "5"));
  replacing.push_back(ImportCell("a", v1::CELL_TYPE_MARKDOWN, "# a, replaced"));
  ASSERT_TRUE(notebook_.LoadCells(std::move(replacing), /*replace=*/true).ok());
  ExpectEveryCellFound(notebook_, {"b", "c", "d"});
  EXPECT_EQ(notebook_.GetCell("a")->source(), "# a, replaced");
}

TEST_F(NotebookTest, LoadCellsAppends) {
  Add("a");
  std::vector<v1::Cell> cells;
  cells.push_back(ImportCell("m1", v1::CELL_TYPE_MARKDOWN, "# title", {Stdout("dropped")}, 4));
  cells.push_back(ImportCell("", v1::CELL_TYPE_UNSPECIFIED, "print(1)", {Stdout("1\n")}, 1));
  cells.push_back(ImportCell("a", v1::CELL_TYPE_CODE, "clash"));
  cells.push_back(ImportCell("bad id!", v1::CELL_TYPE_CODE, "malformed"));
  cells.push_back(ImportCell("dup", v1::CELL_TYPE_CODE, "first", {}, 2));
  cells.push_back(ImportCell("dup", v1::CELL_TYPE_RAW, "second"));
  cells[1].mutable_last_run()->set_execution_id("ignored");
  cells[1].set_state(v1::CELL_STATE_RUNNING);
  cells[1].set_metadata(R"({"collapsed": true})");
  ASSERT_TRUE(notebook_.LoadCells(std::move(cells), /*replace=*/false).ok());

  const v1::Notebook snapshot = notebook_.Snapshot();
  ASSERT_EQ(snapshot.cells_size(), 7);
  std::set<std::string> ids;
  for (const v1::Cell& cell : snapshot.cells()) {
    EXPECT_TRUE(Notebook::ValidateCellId(cell.cell_id()).ok());
    ids.insert(cell.cell_id());
  }
  EXPECT_EQ(ids.size(), 7u);
  EXPECT_EQ(snapshot.cells(0).cell_id(), "a");
  EXPECT_EQ(snapshot.cells(1).cell_id(), "m1");
  EXPECT_THAT(snapshot.cells(1).outputs(), IsEmpty());
  EXPECT_EQ(snapshot.cells(1).execution_count(), 0);
  EXPECT_EQ(snapshot.cells(1).state(), v1::CELL_STATE_NEW);

  const v1::Cell& imported = snapshot.cells(2);
  EXPECT_EQ(imported.cell_type(), v1::CELL_TYPE_CODE);
  EXPECT_EQ(imported.state(), v1::CELL_STATE_STALE);
  EXPECT_EQ(imported.execution_count(), 1);
  EXPECT_EQ(imported.outputs_size(), 1);
  EXPECT_FALSE(imported.has_last_run());
  EXPECT_EQ(imported.metadata(), R"({"collapsed":true})");

  EXPECT_NE(snapshot.cells(3).cell_id(), "a");
  EXPECT_EQ(snapshot.cells(3).state(), v1::CELL_STATE_NEW);
  EXPECT_EQ(snapshot.cells(4).source(), "malformed");
  EXPECT_EQ(snapshot.cells(5).cell_id(), "dup");
  EXPECT_EQ(snapshot.cells(5).state(), v1::CELL_STATE_STALE);  // execution_count 2
  EXPECT_NE(snapshot.cells(6).cell_id(), "dup");
}

TEST_F(NotebookTest, LoadCellsReplaces) {
  Add("a");
  Add("b");
  std::vector<v1::Cell> cells;
  cells.push_back(ImportCell("b", v1::CELL_TYPE_CODE, "kept id"));
  ASSERT_TRUE(notebook_.LoadCells(std::move(cells), /*replace=*/true).ok());
  EXPECT_THAT(notebook_.cell_ids(), ElementsAre("b"));
  EXPECT_EQ(notebook_.source("b"), "kept id");
}

TEST_F(NotebookTest, TheStoredCellIsTheCellWithoutItsOutputs) {
  Add("a", "print(1)");
  Run("a", v1::EXECUTION_STATUS_OK, 7);
  absl::StatusOr<const v1::Cell*> stored = notebook_.StoredCell("a");
  ASSERT_TRUE(stored.ok()) << stored.status();
  const absl::StatusOr<v1::Cell> full = notebook_.GetCell("a");
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_EQ(full->outputs_size(), 1);
  EXPECT_EQ((*stored)->outputs_size(), 0) << "no copy of the outputs";
  EXPECT_EQ((*stored)->source(), "print(1)");
  EXPECT_EQ((*stored)->state(), v1::CELL_STATE_OK);
  EXPECT_EQ((*stored)->execution_count(), 7);
  EXPECT_EQ((*stored)->last_run().execution_id(), full->last_run().execution_id());
}

TEST_F(NotebookTest, ReplacedCellsCanBeLeftForTheCallerToFree) {
  std::vector<v1::Cell> first;
  first.push_back(ImportCell("a", v1::CELL_TYPE_CODE, "old", {Stdout("old output\n")}, 1));
  ASSERT_TRUE(notebook_.LoadCells(std::move(first), /*replace=*/true).ok());
  const OutputList* old_outputs = notebook_.outputs("a");
  ASSERT_NE(old_outputs, nullptr);
  {
    Notebook::RemovedCells removed;
    std::vector<v1::Cell> cells;
    cells.push_back(ImportCell("a", v1::CELL_TYPE_CODE, "new"));
    ASSERT_TRUE(notebook_.LoadCells(std::move(cells), /*replace=*/true, &removed).ok());
    EXPECT_THAT(notebook_.cell_ids(), ElementsAre("a"));
    EXPECT_EQ(notebook_.source("a"), "new");
    EXPECT_THAT(notebook_.GetCell("a")->outputs(), IsEmpty());
    // Until `removed` goes, what the notebook gave out of the old cells stays readable.
    ASSERT_EQ(old_outputs->outputs().size(), 1);
    EXPECT_EQ(old_outputs->outputs()[0].stream().text(), "old output\n");
  }
  EXPECT_EQ(notebook_.source("a"), "new");
}

TEST_F(NotebookTest, TheSerializedSnapshotIsTheSnapshotWithoutTheGraph) {
  auto expect_same = [&](const std::string& when) {
    v1::Notebook parsed;
    ASSERT_TRUE(parsed.ParseFromString(notebook_.SerializedSnapshot())) << when;
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
        parsed, notebook_.Snapshot(/*with_graph=*/false)))
        << when << ": " << parsed.DebugString();
  };
  expect_same("empty");
  Add("a");
  Add("b", "y = 2");
  Add("c");
  ASSERT_TRUE(
      notebook_.AddCell("*notes*", v1::CELL_TYPE_MARKDOWN, 1, "md", R"({"tags": ["x"]})").ok());
  Run("a", v1::EXECUTION_STATUS_OK);
  notebook_.outputs("a")->Append(Display("plain", "d1"));
  notebook_.outputs("a")->Append(Stdout(std::string(2000, 'x')));  // over the cap: truncated
  Run("b", v1::EXECUTION_STATUS_ERROR);
  ASSERT_TRUE(notebook_.EditCell("b", "y = 3", v1::CELL_TYPE_UNSPECIFIED, std::nullopt).ok());
  Run("c", v1::EXECUTION_STATUS_OK);
  ASSERT_TRUE(notebook_.EditCell("c", "z = 1", v1::CELL_TYPE_UNSPECIFIED, std::nullopt).ok());
  Run("c", v1::EXECUTION_STATUS_OK, 2);  // OK again: its stale reason is not shown
  ASSERT_TRUE(notebook_.set_metadata_json(R"({"kernelspec": {"name": "python3"}})").ok());
  const v1::Notebook snapshot = notebook_.Snapshot(/*with_graph=*/false);
  ASSERT_TRUE(snapshot.cells(0).outputs_truncated());
  ASSERT_EQ(snapshot.cells(2).state(), v1::CELL_STATE_STALE);
  ASSERT_EQ(snapshot.cells(3).state(), v1::CELL_STATE_OK);
  expect_same("cells in every state");
}

TEST_F(NotebookTest, LoadCellsIsAllOrNothing) {
  Add("a");
  std::vector<v1::Cell> cells;
  cells.push_back(ImportCell("x", v1::CELL_TYPE_CODE, "fine"));
  cells.push_back(ImportCell("y", v1::CELL_TYPE_CODE, std::string(101, 'x')));
  ExpectError(notebook_.LoadCells(cells, true), absl::StatusCode::kInvalidArgument,
              {"cells[1].source", "100"});
  cells[1] = ImportCell("y", static_cast<v1::CellType>(9), "");
  ExpectError(notebook_.LoadCells(cells, false), absl::StatusCode::kInvalidArgument,
              {"cells[1].cell_type"});
  cells[1] = ImportCell("y", v1::CELL_TYPE_CODE, "");
  cells[1].set_metadata("[]");
  ExpectError(notebook_.LoadCells(cells, false), absl::StatusCode::kInvalidArgument,
              {"cells[1].metadata"});
  EXPECT_THAT(notebook_.cell_ids(), ElementsAre("a"));

  std::vector<v1::Cell> many(10, ImportCell("", v1::CELL_TYPE_CODE, ""));
  ExpectError(notebook_.LoadCells(many, false), absl::StatusCode::kResourceExhausted,
              {"max_cells"});
  EXPECT_TRUE(notebook_.LoadCells(many, true).ok());
  EXPECT_EQ(notebook_.size(), 10);
}

TEST_F(NotebookTest, LoadCellsReplaceRefusedWhileRunning) {
  Add("a");
  ASSERT_TRUE(notebook_.QueueRun("a", "e").ok());
  ExpectError(notebook_.LoadCells({}, /*replace=*/true), absl::StatusCode::kFailedPrecondition,
              {"\"a\""});
  EXPECT_TRUE(notebook_.LoadCells({ImportCell("b", v1::CELL_TYPE_CODE, "")}, false).ok());
  EXPECT_THAT(notebook_.cell_ids(), ElementsAre("a", "b"));
}

TEST_F(NotebookTest, LoadCellsAppliesOutputCap) {
  Notebook notebook({.max_cells = 0, .max_source_bytes = 0, .max_output_bytes = 3});
  std::vector<v1::Cell> cells;
  cells.push_back(ImportCell("a", v1::CELL_TYPE_CODE, "", {Stdout("ab"), Stdout("cd")}));
  ASSERT_TRUE(notebook.LoadCells(std::move(cells), false).ok());
  const v1::Cell cell = *notebook.GetCell("a");
  EXPECT_TRUE(cell.outputs_truncated());
  EXPECT_EQ(cell.outputs(0).stream().text(), "abc");
}

}  // namespace
}  // namespace cellgate::notebook

namespace cellgate::notebook {
namespace {

TEST(NotebookMetadataTest, DeeplyNestedMetadataIsRefusedNotRecursedOver) {
  Notebook notebook({.max_cells = 0, .max_source_bytes = 0, .max_output_bytes = 0});
  const std::string deep = "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  const absl::StatusOr<v1::Cell> cell = notebook.AddCell("x", v1::CELL_TYPE_CODE, std::nullopt,
                                                         "", deep);
  EXPECT_EQ(cell.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(notebook.size(), 0);
}

}  // namespace
}  // namespace cellgate::notebook
