#pragma once

// Which cells of a notebook depend on which: cell B depends on cell A when B reads a name whose
// latest definition above B is in A. What each cell defines and reads comes from the cell
// analyzer. Conservative where the analysis can't be exact: an opaque cell (star import, exec,
// %run, ...) is depended on by every code cell below it, and a code cell with no analysis
// (pending, or the analyzer was down) both depends on every code cell above it and is depended
// on by every one below. Those blanket edges are kept implicit, so a notebook of a thousand
// unanalysed cells costs no more than one of analysed ones. Immutable; built again when the
// notebook or an analysis changes.

#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace cellgate::notebook {

class DependencyGraph {
 public:
  struct Cell {
    enum class Kind {
      kNotCode,   // markdown, raw: not part of the graph
      kAnalyzed,  // a code cell with its analysis below
      kUnknown,   // a code cell without an analysis
    };
    std::string cell_id;
    Kind kind = Kind::kAnalyzed;
    std::vector<std::string> defines;
    std::vector<std::string> uses;
    bool opaque = false;
  };

  // A direct dependency of an analysed cell on a cell above it: through `names` it reads, or
  // (names empty) because that cell is opaque.
  struct Edge {
    std::string depends_on;
    std::vector<std::string> names;  // sorted
  };

  // `cells` in notebook order.
  explicit DependencyGraph(std::vector<Cell> cells);

  // The analysed or opaque cells `cell_id` depends on directly, in notebook order, with the
  // names. Unanalysed cells (either end) are left out: their edges are implicit.
  std::vector<Edge> DirectEdges(const std::string& cell_id) const;
  // The ids of DirectEdges.
  std::vector<std::string> DependsOn(const std::string& cell_id) const;
  // Every cell that depends on one of `cell_ids`, directly or through others (implicit edges
  // included), in notebook order; the given cells themselves only when one depends on another.
  std::vector<std::string> Dependents(std::span<const std::string> cell_ids) const;
  // `cell_ids` (those in the graph) and their Dependents, in notebook order.
  std::vector<std::string> WithDependents(std::span<const std::string> cell_ids) const;
  // Every cell `cell_id` depends on, directly or through others, in notebook order.
  std::vector<std::string> Upstream(const std::string& cell_id) const;
  // Code cells without an analysis, in notebook order.
  std::vector<std::string> Unknown() const;

 private:
  bool IsCode(int index) const { return cells_[index].kind != Cell::Kind::kNotCode; }
  bool IsUnknown(int index) const { return cells_[index].kind == Cell::Kind::kUnknown; }
  bool IsOpaque(int index) const {
    return cells_[index].kind == Cell::Kind::kAnalyzed && cells_[index].opaque;
  }
  std::vector<std::string> Ids(const std::vector<bool>& chosen) const;
  // Dependents, with the given cells marked too when `include_given`.
  std::vector<std::string> Reach(std::span<const std::string> cell_ids, bool include_given) const;

  struct IndexEdge {
    int cell;
    std::vector<std::string> names;
  };
  std::vector<Cell> cells_;
  absl::flat_hash_map<std::string, int> index_;
  std::vector<std::vector<IndexEdge>> depends_on_;  // explicit edges, by index, ascending
  std::vector<std::vector<int>> dependents_;        // their reverse, ascending
  std::vector<int> opaque_;                         // opaque cells, ascending
  std::vector<int> next_unknown_;  // per index: the first unknown cell after it, or size()
  std::vector<int> last_unknown_before_;  // per index: the last unknown cell before it, or -1
};

}  // namespace cellgate::notebook
