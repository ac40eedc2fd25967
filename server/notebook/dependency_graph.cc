#include "server/notebook/dependency_graph.h"

#include <algorithm>
#include <deque>
#include <utility>

namespace cellgate::notebook {

DependencyGraph::DependencyGraph(std::vector<Cell> cells)
    : cells_(std::move(cells)),
      depends_on_(cells_.size()),
      dependents_(cells_.size()),
      next_unknown_(cells_.size()),
      last_unknown_before_(cells_.size()) {
  const int size = static_cast<int>(cells_.size());
  absl::flat_hash_map<std::string, int> latest_definition;  // name -> cell index so far
  int last_unknown = -1;
  for (int i = 0; i < size; ++i) {
    const Cell& cell = cells_[i];
    index_.emplace(cell.cell_id, i);
    last_unknown_before_[i] = last_unknown;
    if (cell.kind == Cell::Kind::kNotCode) continue;
    if (cell.kind == Cell::Kind::kUnknown) {
      last_unknown = i;
      continue;
    }
    // (defining cell, name) for each name read; an opaque cell above with no name.
    std::vector<std::pair<int, const std::string*>> reads;
    for (int opaque : opaque_) reads.emplace_back(opaque, nullptr);
    for (const std::string& name : cell.uses) {
      if (auto it = latest_definition.find(name); it != latest_definition.end()) {
        reads.emplace_back(it->second, &name);
      }
    }
    std::sort(reads.begin(), reads.end(), [](const auto& a, const auto& b) {
      if (a.first != b.first) return a.first < b.first;
      if (a.second == nullptr || b.second == nullptr) return a.second == nullptr && b.second;
      return *a.second < *b.second;
    });
    for (const auto& [dep, name] : reads) {
      if (depends_on_[i].empty() || depends_on_[i].back().cell != dep) {
        dependents_[dep].push_back(i);  // i grows: each list stays ascending
        depends_on_[i].push_back(IndexEdge{dep, {}});
      }
      if (name != nullptr) depends_on_[i].back().names.push_back(*name);
    }
    if (cell.opaque) opaque_.push_back(i);
    for (const std::string& name : cell.defines) latest_definition[name] = i;
  }
  int next = size;
  for (int i = size - 1; i >= 0; --i) {
    next_unknown_[i] = next;
    if (IsUnknown(i)) next = i;
  }
}

std::vector<DependencyGraph::Edge> DependencyGraph::DirectEdges(const std::string& cell_id) const {
  auto it = index_.find(cell_id);
  if (it == index_.end()) return {};
  std::vector<Edge> edges;
  for (const IndexEdge& edge : depends_on_[it->second]) {
    edges.push_back(Edge{cells_[edge.cell].cell_id, edge.names});
  }
  return edges;
}

std::vector<std::string> DependencyGraph::DependsOn(const std::string& cell_id) const {
  auto it = index_.find(cell_id);
  if (it == index_.end()) return {};
  std::vector<std::string> ids;
  ids.reserve(depends_on_[it->second].size());
  for (const IndexEdge& edge : depends_on_[it->second]) ids.push_back(cells_[edge.cell].cell_id);
  return ids;
}

std::vector<std::string> DependencyGraph::Dependents(std::span<const std::string> cell_ids) const {
  return Reach(cell_ids, /*include_given=*/false);
}

std::vector<std::string> DependencyGraph::WithDependents(
    std::span<const std::string> cell_ids) const {
  return Reach(cell_ids, /*include_given=*/true);
}

std::vector<std::string> DependencyGraph::Reach(std::span<const std::string> cell_ids,
                                                bool include_given) const {
  const int size = static_cast<int>(cells_.size());
  std::vector<bool> reached(cells_.size(), false);
  std::deque<int> queue;
  for (const std::string& id : cell_ids) {
    if (auto it = index_.find(id); it != index_.end() && IsCode(it->second)) {
      queue.push_back(it->second);
      if (include_given) reached[it->second] = true;
    }
  }
  // Every code cell from `everything_from` down is a dependent: the first unknown cell below a
  // reached one depends on it, and every cell below an unknown or opaque one depends on that.
  int everything_from = size;
  while (!queue.empty()) {
    const int at = queue.front();
    queue.pop_front();
    everything_from = std::min(
        everything_from, IsUnknown(at) || IsOpaque(at) ? at + 1 : next_unknown_[at]);
    for (int next : dependents_[at]) {
      if (reached[next]) continue;
      reached[next] = true;
      queue.push_back(next);
    }
  }
  for (int i = everything_from; i < size; ++i) reached[i] = IsCode(i);
  return Ids(reached);
}

std::vector<std::string> DependencyGraph::Upstream(const std::string& cell_id) const {
  auto it = index_.find(cell_id);
  if (it == index_.end() || !IsCode(it->second)) return {};
  std::vector<bool> reached(cells_.size(), false);
  std::deque<int> queue{it->second};
  // Every code cell above `everything_below` is upstream: an unknown cell depends on all of
  // them, and every cell depends on the unknown cells above it.
  int everything_below = -1;
  while (!queue.empty()) {
    const int at = queue.front();
    queue.pop_front();
    everything_below =
        std::max(everything_below, IsUnknown(at) ? at : last_unknown_before_[at] + 1);
    for (const IndexEdge& edge : depends_on_[at]) {
      if (reached[edge.cell]) continue;
      reached[edge.cell] = true;
      queue.push_back(edge.cell);
    }
  }
  for (int i = 0; i < everything_below; ++i) reached[i] = IsCode(i);
  return Ids(reached);
}

std::vector<std::string> DependencyGraph::Unknown() const {
  std::vector<bool> unknown(cells_.size());
  for (size_t i = 0; i < cells_.size(); ++i) unknown[i] = IsUnknown(static_cast<int>(i));
  return Ids(unknown);
}

std::vector<std::string> DependencyGraph::Ids(const std::vector<bool>& chosen) const {
  std::vector<std::string> ids;
  for (size_t i = 0; i < chosen.size(); ++i) {
    if (chosen[i]) ids.push_back(cells_[i].cell_id);
  }
  return ids;
}

}  // namespace cellgate::notebook
