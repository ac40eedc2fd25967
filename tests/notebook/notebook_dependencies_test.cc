// The notebook's side of the dependency graph: analyses kept on cells, STALE marking of exactly
// the dependents of a change (with the reason), and the graph as the API shows it. The analyses
// are given by hand here; tests/analyzer checks what the analyzer says about real Python.
#include <latch>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/util/message_differencer.h>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/notebook/notebook.h"

namespace cellgate::notebook {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

google::protobuf::Timestamp At(int64_t seconds) {
  google::protobuf::Timestamp timestamp;
  timestamp.set_seconds(seconds);
  return timestamp;
}

Notebook::Analysis Analyzed(std::vector<std::string> defines, std::vector<std::string> uses) {
  return Notebook::Analysis{v1::ANALYSIS_STATUS_ANALYZED, std::move(defines), std::move(uses), ""};
}

class NotebookDependenciesTest : public ::testing::Test {
 protected:
  // Adds a code cell at the end (or at `index`) and gives it its analysis.
  void Add(const std::string& id, const std::string& source, Notebook::Analysis analysis,
           std::optional<int> index = std::nullopt) {
    absl::StatusOr<v1::Cell> cell =
        notebook_.AddCell(source, v1::CELL_TYPE_CODE, index, id, "");
    ASSERT_TRUE(cell.ok()) << cell.status();
    ASSERT_EQ(cell->analysis(), v1::ANALYSIS_STATUS_PENDING);
    ASSERT_TRUE(notebook_.SetAnalysis(id, source, std::move(analysis)));
  }

  void Edit(const std::string& id, const std::string& source, Notebook::Analysis analysis) {
    absl::StatusOr<v1::Cell> cell =
        notebook_.EditCell(id, source, v1::CELL_TYPE_UNSPECIFIED, std::nullopt);
    ASSERT_TRUE(cell.ok()) << cell.status();
    ASSERT_TRUE(notebook_.SetAnalysis(id, source, std::move(analysis)));
  }

  void Run(const std::string& id) {
    ASSERT_TRUE(notebook_.QueueRun(id, "exec-" + id).ok());
    ASSERT_TRUE(notebook_.BeginRun(id, "exec-" + id, At(100)).ok());
    ASSERT_TRUE(notebook_.FinishRun(id, v1::EXECUTION_STATUS_OK, 1, 5).ok());
  }

  v1::Cell Get(const std::string& id) {
    absl::StatusOr<v1::Cell> cell = notebook_.GetCell(id);
    EXPECT_TRUE(cell.ok()) << cell.status();
    return cell.value_or(v1::Cell());
  }

  // The ids of the STALE cells, in order.
  std::vector<std::string> Stale() {
    std::vector<std::string> ids;
    const v1::Notebook snapshot = notebook_.Snapshot();
    for (const v1::Cell& cell : snapshot.cells()) {
      if (cell.state() == v1::CELL_STATE_STALE) ids.push_back(cell.cell_id());
    }
    return ids;
  }

  // load -> clean -> plot, and an unrelated cell, all run.
  void AddPipeline() {
    Add("load", "df = read(path)", Analyzed({"df"}, {"path", "read"}));
    Add("clean", "tidy = df.dropna()", Analyzed({"tidy"}, {"df"}));
    Add("other", "n = 3", Analyzed({"n"}, {}));
    Add("plot", "fig = draw(tidy)", Analyzed({"fig"}, {"draw", "tidy"}));
    for (const char* id : {"load", "clean", "other", "plot"}) Run(id);
    ASSERT_THAT(Stale(), IsEmpty());
  }

  Notebook notebook_{Notebook::Limits{}, Notebook::DependencyTracking{.enabled = true}};
};

TEST_F(NotebookDependenciesTest, CellsCarryTheirAnalysisAndWhatTheyDependOn) {
  AddPipeline();
  const v1::Cell plot = Get("plot");
  EXPECT_EQ(plot.analysis(), v1::ANALYSIS_STATUS_ANALYZED);
  EXPECT_THAT(plot.defines(), ElementsAre("fig"));
  EXPECT_THAT(plot.uses(), ElementsAre("draw", "tidy"));
  EXPECT_THAT(plot.depends_on(), ElementsAre("clean"));
  EXPECT_THAT(Get("other").depends_on(), IsEmpty());

  const v1::DependencyGraph graph = notebook_.Snapshot().graph();
  EXPECT_TRUE(graph.available());
  ASSERT_EQ(graph.dependencies_size(), 2);
  EXPECT_EQ(graph.dependencies(0).cell_id(), "clean");
  EXPECT_EQ(graph.dependencies(0).depends_on(), "load");
  EXPECT_THAT(graph.dependencies(0).names(), ElementsAre("df"));
  EXPECT_EQ(graph.dependencies(1).cell_id(), "plot");
  EXPECT_THAT(graph.unanalyzed_cell_ids(), IsEmpty());
  EXPECT_EQ(graph.note(), "");
}

TEST_F(NotebookDependenciesTest, AnAnalysisOfAnOlderSourceIsDropped) {
  ASSERT_TRUE(notebook_.AddCell("a = 1", v1::CELL_TYPE_CODE, std::nullopt, "a", "").ok());
  ASSERT_TRUE(notebook_.EditCell("a", "b = 2", v1::CELL_TYPE_UNSPECIFIED, std::nullopt).ok());
  ASSERT_EQ(notebook_.PendingAnalyses().size(), 1u);
  EXPECT_EQ(notebook_.PendingAnalyses()[0].source, "b = 2");
  EXPECT_FALSE(notebook_.SetAnalysis("a", "a = 1", Analyzed({"a"}, {})));
  EXPECT_EQ(Get("a").analysis(), v1::ANALYSIS_STATUS_PENDING);
  EXPECT_TRUE(notebook_.SetAnalysis("a", "b = 2", Analyzed({"b"}, {})));
  EXPECT_THAT(Get("a").defines(), ElementsAre("b"));
  EXPECT_FALSE(notebook_.SetAnalysis("a", "b = 2", Analyzed({"c"}, {}))) << "answered already";
  EXPECT_FALSE(notebook_.SetAnalysis("gone", "b = 2", Analyzed({}, {})));
}

TEST_F(NotebookDependenciesTest, EditingACellMarksExactlyItsTransitiveDependentsStale) {
  AddPipeline();
  Edit("load", "df = read(other_path)", Analyzed({"df"}, {"other_path", "read"}));
  EXPECT_THAT(Stale(), ElementsAre("load", "clean", "plot")) << "not the unrelated cell";
  EXPECT_EQ(Get("load").stale_reason(), "source edited");
  EXPECT_EQ(Get("clean").stale_reason(), "upstream cell load edited");
  EXPECT_EQ(Get("plot").stale_reason(), "upstream cell load edited");
  EXPECT_EQ(Get("other").state(), v1::CELL_STATE_OK);
}

TEST_F(NotebookDependenciesTest, AnEditThatStartsDefiningANameReachesItsReadersWithTheAnalysis) {
  AddPipeline();
  // `other` now defines `tidy`, which plot reads: plot's value would change on a rerun.
  ASSERT_TRUE(notebook_.EditCell("other", "tidy = []", v1::CELL_TYPE_UNSPECIFIED, std::nullopt)
                  .ok());
  ASSERT_TRUE(notebook_.SetAnalysis("other", "tidy = []", Analyzed({"tidy"}, {})));
  EXPECT_THAT(Stale(), ElementsAre("other", "plot"));
  EXPECT_EQ(Get("plot").stale_reason(), "upstream cell other edited");
  EXPECT_THAT(Get("plot").depends_on(), ElementsAre("other"));
}

TEST_F(NotebookDependenciesTest, AnEditThatStopsDefiningANameReachesItsFormerReaders) {
  AddPipeline();
  Edit("clean", "print(df)", Analyzed({}, {"df", "print"}));
  EXPECT_THAT(Stale(), ElementsAre("clean", "plot"));
  EXPECT_THAT(Get("plot").depends_on(), IsEmpty()) << "nothing above defines tidy now";
}

TEST_F(NotebookDependenciesTest, DeletingADefiningCellMarksItsReadersStale) {
  AddPipeline();
  ASSERT_TRUE(notebook_.DeleteCell("clean").ok());
  EXPECT_THAT(Stale(), ElementsAre("plot"));
  EXPECT_EQ(Get("plot").stale_reason(), "upstream cell clean deleted");
}

TEST_F(NotebookDependenciesTest, MovingADefinitionBelowItsReaderMarksTheReaderAndTheCell) {
  AddPipeline();
  ASSERT_TRUE(notebook_.MoveCell("clean", 3).ok());  // below plot
  EXPECT_THAT(Stale(), ElementsAre("plot"));
  EXPECT_EQ(Get("plot").stale_reason(), "upstream cell clean moved");
  // Moving past an unrelated cell changes nothing.
  Run("plot");
  ASSERT_TRUE(notebook_.MoveCell("other", 0).ok());
  EXPECT_THAT(Stale(), IsEmpty());
  // Moving a reader above what it reads: the cell itself is stale.
  ASSERT_TRUE(notebook_.MoveCell("clean", 1).ok());  // back below load: plot reads it again
  Run("plot");
  ASSERT_TRUE(notebook_.MoveCell("clean", 0).ok());  // above load
  EXPECT_EQ(Get("clean").state(), v1::CELL_STATE_STALE);
  EXPECT_EQ(Get("clean").stale_reason(), "moved: the cells it depends on changed");
}

TEST_F(NotebookDependenciesTest, RunningACellAgainMakesWhatReadItStale) {
  AddPipeline();
  Run("load");
  EXPECT_THAT(Stale(), ElementsAre("clean", "plot"));
  EXPECT_EQ(Get("clean").stale_reason(), "upstream cell load ran");
  Run("clean");
  EXPECT_EQ(Get("clean").state(), v1::CELL_STATE_OK);
  EXPECT_EQ(Get("clean").stale_reason(), "") << "no reason outside STALE";
}

TEST_F(NotebookDependenciesTest, QueuedCellsAreNotMarked) {
  AddPipeline();
  ASSERT_TRUE(notebook_.QueueRun("load", "e1").ok());
  ASSERT_TRUE(notebook_.QueueRun("clean", "e2").ok());
  ASSERT_TRUE(notebook_.BeginRun("load", "e1", At(1)).ok());
  EXPECT_EQ(Get("clean").state(), v1::CELL_STATE_QUEUED);
  EXPECT_THAT(Stale(), ElementsAre("plot"));
}

TEST_F(NotebookDependenciesTest, AnAddedCellThatDefinesWhatCellsBelowReadMarksThem) {
  AddPipeline();
  Add("override", "df = other()", Analyzed({"df"}, {"other"}), /*index=*/1);
  EXPECT_THAT(Stale(), ElementsAre("clean", "plot"));
  EXPECT_EQ(Get("clean").stale_reason(), "upstream cell override added");
}

TEST_F(NotebookDependenciesTest, AnUnavailableAnalysisIsConservativeAndSaysSo) {
  AddPipeline();
  ASSERT_TRUE(notebook_.AddCell("?", v1::CELL_TYPE_CODE, 2, "mystery", "").ok());
  const v1::DependencyGraph pending = notebook_.Snapshot().graph();
  EXPECT_THAT(pending.unanalyzed_cell_ids(), ElementsAre("mystery"));
  EXPECT_THAT(pending.note(), HasSubstr("pending for cells mystery"));
  ASSERT_TRUE(notebook_.SetAnalysis(
      "mystery", "?",
      {v1::ANALYSIS_STATUS_UNAVAILABLE, {}, {}, "the analyzer did not answer within 2s"}));
  EXPECT_THAT(Stale(), ElementsAre("other", "plot")) << "everything below, for all we know";
  const v1::DependencyGraph graph = notebook_.Snapshot().graph();
  EXPECT_THAT(graph.note(), HasSubstr("unavailable for cells mystery (the analyzer did not "
                                      "answer within 2s)"));
  EXPECT_EQ(Get("mystery").analysis_detail(), "the analyzer did not answer within 2s");
  EXPECT_THAT(notebook_.Graph().Upstream("plot"), ElementsAre("load", "clean", "mystery"));
  notebook_.RetryUnavailableAnalyses();
  EXPECT_EQ(Get("mystery").analysis(), v1::ANALYSIS_STATUS_PENDING);
}

TEST_F(NotebookDependenciesTest, AnOpaqueCellIsDependedOnByEverythingBelow) {
  Add("star", "from os import *", {v1::ANALYSIS_STATUS_OPAQUE, {}, {}, "star import from os"});
  Add("below", "print(sep)", Analyzed({}, {"print", "sep"}));
  EXPECT_THAT(Get("below").depends_on(), ElementsAre("star"));
  EXPECT_EQ(Get("star").analysis_detail(), "star import from os");
}

TEST_F(NotebookDependenciesTest, ImportedCellsAreAnalysedWithoutMarkingAnything) {
  std::vector<v1::Cell> cells(2);
  cells[0].set_source("x = 1");
  cells[0].set_execution_count(1);
  cells[1].set_source("print(x)");
  ASSERT_TRUE(notebook_.LoadCells(std::move(cells), /*replace=*/false).ok());
  const std::vector<Notebook::PendingAnalysis> pending = notebook_.PendingAnalyses();
  ASSERT_EQ(pending.size(), 2u);
  EXPECT_EQ(Get(pending[0].cell_id).stale_reason(), "imported with outputs");
  ASSERT_TRUE(notebook_.SetAnalysis(pending[0].cell_id, "x = 1", Analyzed({"x"}, {})));
  ASSERT_TRUE(notebook_.SetAnalysis(pending[1].cell_id, "print(x)", Analyzed({}, {"print", "x"})));
  EXPECT_EQ(Get(pending[1].cell_id).state(), v1::CELL_STATE_NEW);
  EXPECT_THAT(Get(pending[1].cell_id).depends_on(), ElementsAre(pending[0].cell_id));
}

TEST_F(NotebookDependenciesTest, RestoredCellsKeepTheirAnalysesAndStaleReasons) {
  AddPipeline();
  Edit("load", "df = read(p2)", Analyzed({"df"}, {"p2", "read"}));
  const v1::Notebook saved = notebook_.Snapshot();
  Notebook restored(Notebook::Limits{}, Notebook::DependencyTracking{.enabled = true});
  ASSERT_TRUE(restored.RestoreCells({saved.cells().begin(), saved.cells().end()}).ok());
  EXPECT_THAT(restored.PendingAnalyses(), IsEmpty()) << "nothing to ask again";
  EXPECT_THAT(restored.GetCell("plot")->depends_on(), ElementsAre("clean"));
  EXPECT_EQ(restored.GetCell("clean")->stale_reason(), "upstream cell load edited");
}

TEST(NotebookWithoutDependencyTrackingTest, CellsAreInOrderOnlyAndEditsMarkOnlyTheCell) {
  Notebook notebook(Notebook::Limits{},
                    Notebook::DependencyTracking{.enabled = false,
                                                 .why_not = "the kernel's language (R) has no "
                                                            "dependency analysis"});
  for (const char* id : {"a", "b", "c"}) {
    ASSERT_TRUE(notebook.AddCell("x <- 1", v1::CELL_TYPE_CODE, std::nullopt, id, "").ok());
    ASSERT_TRUE(notebook.QueueRun(id, id).ok());
    ASSERT_TRUE(notebook.BeginRun(id, id, At(1)).ok());
    ASSERT_TRUE(notebook.FinishRun(id, v1::EXECUTION_STATUS_OK, 1, 1).ok());
  }
  EXPECT_THAT(notebook.PendingAnalyses(), IsEmpty());
  EXPECT_EQ(notebook.GetCell("a")->analysis(), v1::ANALYSIS_STATUS_NOT_APPLICABLE);
  ASSERT_TRUE(notebook.EditCell("a", "x <- 2", v1::CELL_TYPE_UNSPECIFIED, std::nullopt).ok());
  EXPECT_EQ(notebook.GetCell("a")->state(), v1::CELL_STATE_STALE);
  EXPECT_EQ(notebook.GetCell("b")->state(), v1::CELL_STATE_OK);
  const v1::DependencyGraph graph = notebook.Snapshot().graph();
  EXPECT_FALSE(graph.available());
  EXPECT_THAT(graph.note(), HasSubstr("(R) has no dependency analysis"));
  // A cascade follows the order.
  const std::string a = "a";
  EXPECT_THAT(notebook.Graph().Dependents(std::span<const std::string>(&a, 1)),
              ElementsAre("b", "c"));
  EXPECT_THAT(notebook.Graph().Upstream("c"), ElementsAre("a", "b"));
}

TEST_F(NotebookDependenciesTest, ReadersAtTheSameTimeSeeOneGraph) {
  // The session lets readers share its lock (a reply is copied while the state is saved): the
  // graph the first of them builds must not be built twice or dropped under another.
  constexpr int kCells = 400;
  for (int i = 0; i < kCells; ++i) {
    Add(absl::StrCat("c", i), absl::StrCat("x", i, " = x", i - 1),
        Analyzed({absl::StrCat("x", i)}, {absl::StrCat("x", i - 1)}));
  }
  const v1::Notebook saved = notebook_.Snapshot();
  const v1::DependencyGraph& expected = saved.graph();
  ASSERT_EQ(expected.dependencies_size(), kCells - 1);
  constexpr int kReaders = 4;
  for (int round = 0; round < 100; ++round) {
    // The same cells again: the graph is dropped, and built by the first reader to need it.
    ASSERT_TRUE(notebook_.RestoreCells({saved.cells().begin(), saved.cells().end()}).ok());
    std::latch start(kReaders);
    std::vector<v1::DependencyGraph> seen(kReaders);
    std::vector<std::thread> readers;
    for (int r = 0; r < kReaders; ++r) {
      readers.emplace_back([&, r] {
        start.arrive_and_wait();
        seen[r] = notebook_.Snapshot().graph();
      });
    }
    for (std::thread& reader : readers) reader.join();
    for (int r = 0; r < kReaders; ++r) {
      ASSERT_EQ(seen[r].SerializeAsString(), expected.SerializeAsString())
          << "round " << round << ", reader " << r;
    }
  }
}

TEST_F(NotebookDependenciesTest, TheSerializedSnapshotIsTheSnapshotWithTheGraphAsAsked) {
  // A reply of the whole notebook is written from the cells as they are; it must parse to what
  // the copy would have been, graph and `depends_on` included.
  AddPipeline();
  notebook_.outputs("plot")->Append([] {
    v1::Output output;
    output.mutable_stream()->set_text("drawn\n");
    return output;
  }());
  ASSERT_TRUE(notebook_.AddCell("# notes", v1::CELL_TYPE_MARKDOWN, 1, "md", "").ok());
  Edit("load", "df = read(other_path)", Analyzed({"df"}, {"other_path", "read"}));
  ASSERT_THAT(Stale(), ElementsAre("load", "clean", "plot"));  // with their stale reasons
  for (const bool with_graph : {false, true}) {
    for (const bool with_outputs : {false, true}) {
      const std::string when =
          absl::StrCat("with_graph ", with_graph, ", with_outputs ", with_outputs);
      const v1::Notebook expected = notebook_.Snapshot(with_graph, with_outputs);
      ASSERT_EQ(expected.has_graph(), with_graph) << when;
      ASSERT_EQ(expected.cells(4).depends_on_size(), with_graph ? 1 : 0) << when;  // plot
      ASSERT_EQ(expected.cells(4).outputs_size(), with_outputs ? 1 : 0) << when;
      v1::Notebook parsed;
      ASSERT_TRUE(parsed.ParseFromString(notebook_.SerializedSnapshot(with_graph, with_outputs)))
          << when;
      EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, expected))
          << when << ": " << parsed.DebugString();
    }
  }
}

}  // namespace
}  // namespace cellgate::notebook
