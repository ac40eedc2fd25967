#include "server/obs/metrics.h"

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellgate::obs {
namespace {

using ::testing::HasSubstr;

TEST(MetricsTest, DeathReasonsAsTheKernelLayerWordsThemFallIntoFewClasses) {
  EXPECT_EQ(Metrics::DeathReasonClass("killed by SIGKILL (cgroup OOM: memory limit of 64 MiB)"),
            "oom");
  EXPECT_EQ(Metrics::DeathReasonClass("killed by SIGSEGV (core dumped)"), "signal");
  EXPECT_EQ(Metrics::DeathReasonClass("exited with code 3"), "exit");
  EXPECT_EQ(Metrics::DeathReasonClass("stopped answering heartbeats; killed after 30s of silence"),
            "unresponsive");
  EXPECT_EQ(Metrics::DeathReasonClass("ignored an interrupt for 10s; killed"),
            "interrupt_ignored");
  EXPECT_EQ(Metrics::DeathReasonClass("the process vanished"), "other");
}

TEST(MetricsTest, EnumLabelsDropThePrefixAndAreLowerCase) {
  EXPECT_EQ(Metrics::EnumLabel("EXECUTION_STATUS_KERNEL_DIED", "EXECUTION_STATUS_"), "kernel_died");
  EXPECT_EQ(Metrics::EnumLabel("KERNEL_STATE_SHUTTING_DOWN", "KERNEL_STATE_"), "shutting_down");
}

std::string Exposition() {
  return prometheus::TextSerializer().Serialize(Metrics::Get().registry()->Collect());
}

TEST(MetricsTest, EventsShowInTheExpositionWithTheirLabels) {
  Metrics& metrics = Metrics::Get();
  metrics.ExecutionFinished("timeout", absl::Seconds(2));
  metrics.ExecutionFinished("cancelled", std::nullopt);
  metrics.KernelStarted(StartSource::kPooled, absl::Milliseconds(12));
  metrics.RequestFinished("/cellgate.v1.KernelGateway/RunCell", "DEADLINE_EXCEEDED");
  const std::string text = Exposition();
  EXPECT_THAT(text, HasSubstr("cellgate_executions_total{status=\"timeout\"} 1"));
  EXPECT_THAT(text, HasSubstr("cellgate_executions_total{status=\"cancelled\"} 1"));
  // A cancelled execution never ran: only the timed-out one is in the histogram.
  EXPECT_THAT(text, HasSubstr("cellgate_execution_duration_seconds_count 1"));
  EXPECT_THAT(text, HasSubstr("cellgate_execution_duration_seconds_bucket{le=\"2.5\"} 1"));
  EXPECT_THAT(text, HasSubstr("cellgate_execution_duration_seconds_bucket{le=\"1\"} 0"));
  EXPECT_THAT(text, HasSubstr(
                        "cellgate_kernel_start_duration_seconds_bucket{source=\"pooled\",le=\"0.025\"} 1"));
  EXPECT_THAT(text, HasSubstr("cellgate_grpc_requests_total{code=\"DEADLINE_EXCEEDED\",method=\""
                              "/cellgate.v1.KernelGateway/RunCell\"} 1"));
}

}  // namespace
}  // namespace cellgate::obs
