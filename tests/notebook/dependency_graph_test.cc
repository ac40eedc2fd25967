#include "server/notebook/dependency_graph.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellgate::notebook {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using Cell = DependencyGraph::Cell;
using Kind = DependencyGraph::Cell::Kind;

Cell Code(std::string id, std::vector<std::string> defines, std::vector<std::string> uses,
          bool opaque = false) {
  return Cell{std::move(id), Kind::kAnalyzed, std::move(defines), std::move(uses), opaque};
}
Cell Markdown(std::string id) { return Cell{std::move(id), Kind::kNotCode, {}, {}, false}; }
Cell Unknown(std::string id) { return Cell{std::move(id), Kind::kUnknown, {}, {}, false}; }

std::vector<std::string> Ids(std::initializer_list<const char*> ids) {
  return std::vector<std::string>(ids.begin(), ids.end());
}

TEST(DependencyGraphTest, ACellDependsOnTheCellsDefiningWhatItReads) {
  // load -> clean -> plot; a plot of something else entirely; a summary of two of them.
  DependencyGraph graph({Code("load", {"df"}, {"path"}), Code("clean", {"tidy"}, {"df"}),
                         Code("plot", {"fig"}, {"tidy"}), Code("other", {"n"}, {"m"}),
                         Code("summary", {}, {"df", "fig"})});
  EXPECT_THAT(graph.DependsOn("load"), IsEmpty());
  EXPECT_THAT(graph.DependsOn("clean"), ElementsAre("load"));
  EXPECT_THAT(graph.DependsOn("summary"), ElementsAre("load", "plot"));
  EXPECT_THAT(graph.DependsOn("other"), IsEmpty());
  // Editing load makes stale exactly what depends on it, not every cell below.
  EXPECT_THAT(graph.Dependents(Ids({"load"})), ElementsAre("clean", "plot", "summary"));
  EXPECT_THAT(graph.Dependents(Ids({"other"})), IsEmpty());
  // What plot needs run first.
  EXPECT_THAT(graph.Upstream("summary"), ElementsAre("load", "clean", "plot"));
  EXPECT_THAT(graph.Upstream("load"), IsEmpty());
}

TEST(DependencyGraphTest, TheLatestDefinitionAboveWins) {
  DependencyGraph graph({Code("a", {"x"}, {}), Code("b", {"x"}, {}), Code("c", {}, {"x"}),
                         Code("d", {"x"}, {}), Code("e", {}, {"x"})});
  EXPECT_THAT(graph.DependsOn("c"), ElementsAre("b"));
  EXPECT_THAT(graph.DependsOn("e"), ElementsAre("d"));
  EXPECT_THAT(graph.Dependents(Ids({"a"})), IsEmpty()) << "shadowed before anyone read it";
}

TEST(DependencyGraphTest, ACellReadingAndRedefiningANameChainsToThePreviousDefinition) {
  DependencyGraph graph({Code("a", {"x"}, {}), Code("b", {"x"}, {"x"}), Code("c", {"x"}, {"x"}),
                         Code("d", {}, {"x"})});
  EXPECT_THAT(graph.DependsOn("b"), ElementsAre("a"));
  EXPECT_THAT(graph.DependsOn("d"), ElementsAre("c"));
  EXPECT_THAT(graph.Dependents(Ids({"a"})), ElementsAre("b", "c", "d"));
  EXPECT_THAT(graph.Upstream("d"), ElementsAre("a", "b", "c"));
}

TEST(DependencyGraphTest, AReadOfANameDefinedOnlyBelowHasNoDependency) {
  DependencyGraph graph({Code("reader", {}, {"late"}), Code("writer", {"late"}, {})});
  EXPECT_THAT(graph.DependsOn("reader"), IsEmpty());
  EXPECT_THAT(graph.Dependents(Ids({"writer"})), IsEmpty());
}

TEST(DependencyGraphTest, EveryCodeCellBelowAnOpaqueCellDependsOnIt) {
  DependencyGraph graph({Code("before", {"a"}, {}), Code("star", {}, {}, /*opaque=*/true),
                         Markdown("notes"), Code("after", {"b"}, {"a"}), Code("last", {}, {})});
  EXPECT_THAT(graph.DependsOn("after"), ElementsAre("before", "star"));
  EXPECT_THAT(graph.DependsOn("last"), ElementsAre("star"));
  EXPECT_THAT(graph.Dependents(Ids({"star"})), ElementsAre("after", "last"));
  EXPECT_THAT(graph.DependsOn("star"), IsEmpty()) << "it reads nothing it names";
}

TEST(DependencyGraphTest, ACellWithoutAnalysisIsConservativeBothWays) {
  DependencyGraph graph({Code("a", {"x"}, {}), Markdown("m"), Code("b", {"y"}, {}),
                         Unknown("u"), Code("c", {}, {})});
  EXPECT_THAT(graph.Upstream("u"), ElementsAre("a", "b"));
  EXPECT_THAT(graph.Upstream("c"), ElementsAre("a", "b", "u"));
  EXPECT_THAT(graph.Dependents(Ids({"a"})), ElementsAre("u", "c"));
  EXPECT_THAT(graph.Dependents(Ids({"u"})), ElementsAre("c"));
  EXPECT_THAT(graph.Unknown(), ElementsAre("u"));
  // The blanket edges are implicit: not listed as direct dependencies.
  EXPECT_THAT(graph.DependsOn("u"), IsEmpty());
  EXPECT_THAT(graph.DependsOn("c"), IsEmpty());
}

TEST(DependencyGraphTest, ACellBelowAnUnknownOneStillListsWhatItReadsAboveIt) {
  DependencyGraph graph({Code("a", {"x"}, {}), Unknown("u"), Code("b", {}, {"x"}),
                         Code("c", {"y"}, {})});
  EXPECT_THAT(graph.DependsOn("b"), ElementsAre("a"));
  EXPECT_THAT(graph.Upstream("b"), ElementsAre("a", "u"));
  EXPECT_THAT(graph.Dependents(Ids({"c"})), IsEmpty()) << "nothing below it";
  EXPECT_THAT(graph.Upstream("a"), IsEmpty());
}

TEST(DependencyGraphTest, EdgesNameWhatIsRead) {
  DependencyGraph graph({Code("a", {"x", "y", "z"}, {}), Code("star", {}, {}, /*opaque=*/true),
                         Code("b", {}, {"z", "x", "print"})});
  const std::vector<DependencyGraph::Edge> edges = graph.DirectEdges("b");
  ASSERT_EQ(edges.size(), 2u);
  EXPECT_EQ(edges[0].depends_on, "a");
  EXPECT_THAT(edges[0].names, ElementsAre("x", "z"));
  EXPECT_EQ(edges[1].depends_on, "star");
  EXPECT_THAT(edges[1].names, IsEmpty()) << "there because star is opaque";
}

TEST(DependencyGraphTest, AThousandUnknownCellsAreConservativeWithoutListingEveryPair) {
  std::vector<Cell> cells;
  for (int i = 0; i < 1000; ++i) cells.push_back(Unknown("u" + std::to_string(i)));
  DependencyGraph graph(std::move(cells));
  EXPECT_EQ(graph.Dependents(Ids({"u0"})).size(), 999u);
  EXPECT_EQ(graph.Upstream("u999").size(), 999u);
  EXPECT_EQ(graph.Upstream("u500").size(), 500u);
  EXPECT_THAT(graph.DependsOn("u999"), IsEmpty());
}

TEST(DependencyGraphTest, MarkdownIsOutsideTheGraph) {
  DependencyGraph graph({Code("a", {"x"}, {}), Markdown("m"), Code("b", {}, {"x"})});
  EXPECT_THAT(graph.DependsOn("m"), IsEmpty());
  EXPECT_THAT(graph.Dependents(Ids({"a"})), ElementsAre("b"));
  EXPECT_THAT(graph.Dependents(Ids({"m"})), IsEmpty());
}

TEST(DependencyGraphTest, DependentsOfSeveralCellsIncludeAGivenOneOnlyWhenItDependsOnAnother) {
  DependencyGraph graph({Code("a", {"x"}, {}), Code("b", {"y"}, {"x"}), Code("c", {}, {"y"}),
                         Code("d", {}, {"z"})});
  EXPECT_THAT(graph.Dependents(Ids({"a", "b"})), ElementsAre("b", "c"));
  EXPECT_THAT(graph.Dependents(Ids({"a", "d"})), ElementsAre("b", "c"));
  EXPECT_THAT(graph.WithDependents(Ids({"b", "d"})), ElementsAre("b", "c", "d"));
  EXPECT_THAT(graph.WithDependents(Ids({"nope"})), IsEmpty());
  EXPECT_THAT(graph.Dependents(Ids({"nope"})), IsEmpty());
  EXPECT_THAT(graph.DependsOn("nope"), IsEmpty());
}

TEST(DependencyGraphTest, AThousandCellChainIsFollowedToTheEnd) {
  std::vector<Cell> cells;
  for (int i = 0; i < 1000; ++i) {
    cells.push_back(Code("c" + std::to_string(i), {"v" + std::to_string(i)},
                         i == 0 ? std::vector<std::string>{}
                                : std::vector<std::string>{"v" + std::to_string(i - 1)}));
  }
  DependencyGraph graph(std::move(cells));
  EXPECT_EQ(graph.Dependents(Ids({"c0"})).size(), 999u);
  EXPECT_EQ(graph.Upstream("c999").size(), 999u);
  EXPECT_THAT(graph.DependsOn("c500"), ElementsAre("c499"));
}

}  // namespace
}  // namespace cellgate::notebook
