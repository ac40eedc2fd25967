#pragma once

// Which cells of a notebook depend on which: cell B depends on cell A when B reads a name whose
// latest definition above B is in A. What each cell defines and reads comes from the cell
// analyzer. Conservative where the analysis can't be exact: an opaque cell (star import, exec,
// %run, ...) is depended on by every code cell below it, and a code cell with no analysis
// (the analyzer was down) both depends on every code cell above it and is depended on by every
// one below. Immutable; built again when the notebook or an analysis changes.

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

  // `cells` in notebook order.
  explicit DependencyGraph(std::vector<Cell> cells);

  // The cells `cell_id` depends on directly, in notebook order (empty for unknown ids).
  std::vector<std::string> DependsOn(const std::string& cell_id) const;
  // Every cell that depends on one of `cell_ids`, directly or through others, in notebook
  // order; the given cells themselves only when one depends on another.
  std::vector<std::string> Dependents(std::span<const std::string> cell_ids) const;
  // Every cell `cell_id` depends on, directly or through others, in notebook order.
  std::vector<std::string> Upstream(const std::string& cell_id) const;

 private:
  std::vector<std::string> Reach(std::span<const std::string> from,
                                 const std::vector<std::vector<int>>& edges) const;
  std::vector<std::string> Ids(std::vector<int> indexes) const;

  std::vector<Cell> cells_;
  absl::flat_hash_map<std::string, int> index_;
  std::vector<std::vector<int>> depends_on_;  // by index, ascending
  std::vector<std::vector<int>> dependents_;  // by index, ascending
};

}  // namespace cellgate::notebook
