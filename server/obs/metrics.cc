#include "server/obs/metrics.h"

#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"

namespace cellgate::obs {
namespace {

// Seconds: from a pooled start (~10 ms) to a slow cold one; executions up to an hour.
const prometheus::Histogram::BucketBoundaries kStartBuckets = {0.005, 0.01, 0.025, 0.05, 0.1,
                                                               0.25,  0.5,  1,     2.5,  5,
                                                               10,    30,   60};
const prometheus::Histogram::BucketBoundaries kExecutionBuckets = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600};

const char* SourceName(StartSource source) {
  return source == StartSource::kPooled ? "pooled" : "cold";
}

}  // namespace

struct Metrics::Families {
  explicit Families(prometheus::Registry& registry)
      : starts(prometheus::BuildCounter()
                   .Name("cellgate_kernel_starts_total")
                   .Help("StartKernel calls answered, by source (cold, pooled) and result")
                   .Register(registry)),
        start_seconds(prometheus::BuildHistogram()
                          .Name("cellgate_kernel_start_duration_seconds")
                          .Help("Time from StartKernel to a kernel ready for code, by source")
                          .Register(registry)),
        executions(prometheus::BuildCounter()
                       .Name("cellgate_executions_total")
                       .Help("Executions ended, by status (ok, error, timeout, cancelled, ...)")
                       .Register(registry)),
        execution_seconds(prometheus::BuildHistogram()
                              .Name("cellgate_execution_duration_seconds")
                              .Help("Execution time in the kernel, from execute_request to reply")
                              .Register(registry)),
        iopub_messages(prometheus::BuildCounter()
                           .Name("cellgate_iopub_messages_total")
                           .Help("Messages received from kernels' IOPub sockets")
                           .Register(registry)
                           .Add({})),
        iopub_bytes(prometheus::BuildCounter()
                        .Name("cellgate_iopub_bytes_total")
                        .Help("Bytes of those messages, all frames")
                        .Register(registry)
                        .Add({})),
        cut_off(prometheus::BuildCounter()
                    .Name("cellgate_stream_subscribers_cut_off_total")
                    .Help("StreamOutputs followers ended with RESOURCE_EXHAUSTED for falling "
                          "behind (they may resume by seq)")
                    .Register(registry)
                    .Add({})),
        deaths(prometheus::BuildCounter()
                   .Name("cellgate_kernel_deaths_total")
                   .Help("Kernel processes that died unexpectedly, by reason (oom, signal, exit, "
                         "unresponsive, interrupt_ignored, other)")
                   .Register(registry)),
        restarts(prometheus::BuildCounter()
                     .Name("cellgate_kernel_restarts_total")
                     .Help("Kernel restarts, by trigger (automatic, requested)")
                     .Register(registry)),
        auth_failures(prometheus::BuildCounter()
                          .Name("cellgate_auth_failures_total")
                          .Help("Requests refused for a missing or wrong bearer token")
                          .Register(registry)
                          .Add({})),
        requests(prometheus::BuildCounter()
                     .Name("cellgate_grpc_requests_total")
                     .Help("gRPC calls finished, by full method name and status code")
                     .Register(registry)) {}

  prometheus::Family<prometheus::Counter>& starts;
  prometheus::Family<prometheus::Histogram>& start_seconds;
  prometheus::Family<prometheus::Counter>& executions;
  prometheus::Family<prometheus::Histogram>& execution_seconds;
  prometheus::Counter& iopub_messages;
  prometheus::Counter& iopub_bytes;
  prometheus::Counter& cut_off;
  prometheus::Family<prometheus::Counter>& deaths;
  prometheus::Family<prometheus::Counter>& restarts;
  prometheus::Counter& auth_failures;
  prometheus::Family<prometheus::Counter>& requests;
};

Metrics& Metrics::Get() {
  static Metrics* metrics = new Metrics();
  return *metrics;
}

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      families_(std::make_unique<Families>(*registry_)) {
  // Every histogram series exists from the start, so a dashboard sees zeros, not gaps.
  for (StartSource source : {StartSource::kCold, StartSource::kPooled}) {
    families_->start_seconds.Add({{"source", SourceName(source)}}, kStartBuckets);
  }
  families_->execution_seconds.Add({}, kExecutionBuckets);
}

std::shared_ptr<prometheus::Registry> Metrics::registry() const { return registry_; }

void Metrics::KernelStarted(StartSource source, absl::Duration took) {
  families_->starts.Add({{"source", SourceName(source)}, {"result", "ok"}}).Increment();
  families_->start_seconds.Add({{"source", SourceName(source)}}, kStartBuckets)
      .Observe(absl::ToDoubleSeconds(took));
}

void Metrics::KernelStartFailed(StartSource source) {
  families_->starts.Add({{"source", SourceName(source)}, {"result", "error"}}).Increment();
}

void Metrics::ExecutionFinished(absl::string_view status, std::optional<absl::Duration> ran_for) {
  families_->executions.Add({{"status", std::string(status)}}).Increment();
  if (ran_for.has_value()) {
    families_->execution_seconds.Add({}, kExecutionBuckets)
        .Observe(absl::ToDoubleSeconds(*ran_for));
  }
}

void Metrics::IopubReceived(size_t bytes) {
  families_->iopub_messages.Increment();
  families_->iopub_bytes.Increment(static_cast<double>(bytes));
}

void Metrics::SubscriberCutOff() { families_->cut_off.Increment(); }

void Metrics::KernelDied(absl::string_view reason) {
  families_->deaths.Add({{"reason", std::string(reason)}}).Increment();
}

void Metrics::KernelRestarted(absl::string_view trigger) {
  families_->restarts.Add({{"trigger", std::string(trigger)}}).Increment();
}

void Metrics::AuthFailed() { families_->auth_failures.Increment(); }

void Metrics::RequestFinished(absl::string_view method, absl::string_view code) {
  families_->requests.Add({{"method", std::string(method)}, {"code", std::string(code)}})
      .Increment();
}

std::string Metrics::EnumLabel(absl::string_view name, absl::string_view prefix) {
  absl::ConsumePrefix(&name, prefix);
  return absl::AsciiStrToLower(name);
}

absl::string_view Metrics::DeathReasonClass(absl::string_view reason) {
  if (absl::StrContains(reason, "OOM") || absl::StrContains(reason, "out of memory")) {
    return "oom";
  }
  if (absl::StrContains(reason, "answering heartbeats")) {
    return "unresponsive";
  }
  if (absl::StrContains(reason, "interrupt")) return "interrupt_ignored";
  if (absl::StrContains(reason, "killed by") || absl::StrContains(reason, "signal")) {
    return "signal";
  }
  if (absl::StrContains(reason, "exited")) return "exit";
  return "other";
}

}  // namespace cellgate::obs
