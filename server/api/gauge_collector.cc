#include "server/api/gauge_collector.h"

#include <map>
#include <memory>
#include <string>

#include "cellgate/v1/kernel.pb.h"
#include "server/obs/metrics.h"

namespace cellgate::api {
namespace {

prometheus::MetricFamily Gauge(std::string name, std::string help) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = prometheus::MetricType::Gauge;
  return family;
}

void AddValue(prometheus::MetricFamily& family, double value,
              std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  metric.gauge.value = value;
  family.metric.push_back(std::move(metric));
}

}  // namespace

std::vector<prometheus::MetricFamily> GaugeCollector::Collect() const {
  std::map<v1::KernelState, int> by_state;
  // Every state is reported, zeros included, so a dashboard sees no gaps.
  for (int state = v1::KernelState_MIN; state <= v1::KernelState_MAX; ++state) {
    if (v1::KernelState_IsValid(state) && state != v1::KERNEL_STATE_UNSPECIFIED) {
      by_state[static_cast<v1::KernelState>(state)] = 0;
    }
  }
  double queued = 0;
  double followers = 0;
  for (const std::shared_ptr<session::KernelSession>& session : registry_.List()) {
    ++by_state[session->state()];
    queued += static_cast<double>(session->queued_executions());
    followers += session->event_log()->readers();
  }

  prometheus::MetricFamily kernels =
      Gauge("cellgate_kernels", "Kernels the gateway holds, by state (warm-pool kernels not "
                                "counted until taken)");
  for (const auto& [state, count] : by_state) {
    AddValue(kernels, count, {{"state", obs::Metrics::EnumLabel(v1::KernelState_Name(state), "KERNEL_STATE_")}});
  }
  prometheus::MetricFamily queue =
      Gauge("cellgate_execution_queue_depth",
            "Executions waiting behind a running one, summed over kernels");
  AddValue(queue, queued);
  prometheus::MetricFamily subscribers =
      Gauge("cellgate_stream_subscribers", "StreamOutputs calls open now");
  AddValue(subscribers, followers);
  return {std::move(kernels), std::move(queue), std::move(subscribers)};
}

}  // namespace cellgate::api
