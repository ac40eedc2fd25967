#include "server/notebook/dependency_graph.h"

#include <algorithm>
#include <deque>
#include <utility>

namespace cellgate::notebook {

DependencyGraph::DependencyGraph(std::vector<Cell> cells)
    : cells_(std::move(cells)),
      depends_on_(cells_.size()),
      dependents_(cells_.size()) {
  absl::flat_hash_map<std::string, int> latest_definition;  // name -> cell index so far
  std::vector<int> code_above;                               // every code cell so far
  std::vector<int> everyone_depends_on;                      // opaque and unknown cells so far
  for (int i = 0; i < static_cast<int>(cells_.size()); ++i) {
    const Cell& cell = cells_[i];
    index_.emplace(cell.cell_id, i);
    if (cell.kind == Cell::Kind::kNotCode) continue;
    std::vector<int>& deps = depends_on_[i];
    if (cell.kind == Cell::Kind::kUnknown) {
      deps = code_above;
    } else {
      deps = everyone_depends_on;
      for (const std::string& name : cell.uses) {
        if (auto it = latest_definition.find(name); it != latest_definition.end()) {
          deps.push_back(it->second);
        }
      }
      std::sort(deps.begin(), deps.end());
      deps.erase(std::unique(deps.begin(), deps.end()), deps.end());
    }
    for (int dep : deps) dependents_[dep].push_back(i);  // i grows: each list stays ascending
    code_above.push_back(i);
    if (cell.kind == Cell::Kind::kUnknown || cell.opaque) everyone_depends_on.push_back(i);
    for (const std::string& name : cell.defines) latest_definition[name] = i;
  }
}

std::vector<std::string> DependencyGraph::DependsOn(const std::string& cell_id) const {
  auto it = index_.find(cell_id);
  if (it == index_.end()) return {};
  return Ids(depends_on_[it->second]);
}

std::vector<std::string> DependencyGraph::Dependents(std::span<const std::string> cell_ids) const {
  return Reach(cell_ids, dependents_);
}

std::vector<std::string> DependencyGraph::Upstream(const std::string& cell_id) const {
  return Reach(std::span<const std::string>(&cell_id, 1), depends_on_);
}

std::vector<std::string> DependencyGraph::Reach(std::span<const std::string> from,
                                                const std::vector<std::vector<int>>& edges) const {
  std::vector<bool> reached(cells_.size(), false);
  std::deque<int> queue;
  for (const std::string& id : from) {
    if (auto it = index_.find(id); it != index_.end()) queue.push_back(it->second);
  }
  std::vector<int> found;
  while (!queue.empty()) {
    const int at = queue.front();
    queue.pop_front();
    for (int next : edges[at]) {
      if (reached[next]) continue;
      reached[next] = true;
      found.push_back(next);
      queue.push_back(next);
    }
  }
  std::sort(found.begin(), found.end());
  return Ids(std::move(found));
}

std::vector<std::string> DependencyGraph::Ids(std::vector<int> indexes) const {
  std::vector<std::string> ids;
  ids.reserve(indexes.size());
  for (int i : indexes) ids.push_back(cells_[i].cell_id);
  return ids;
}

}  // namespace cellgate::notebook
