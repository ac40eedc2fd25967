#pragma once

// The metrics that say how things are now, computed when Prometheus scrapes: kernels by state,
// executions queued, StreamOutputs followers. They come from the session registry, so they
// cannot drift from it the way gauges bumped up and down could.

#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "server/session/session_registry.h"

namespace cellgate::api {

class GaugeCollector : public prometheus::Collectable {
 public:
  explicit GaugeCollector(const session::SessionRegistry& registry) : registry_(registry) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const session::SessionRegistry& registry_;
};

}  // namespace cellgate::api
