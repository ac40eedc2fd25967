#pragma once

// The gateway's Prometheus metrics: counters and histograms the layers bump as things happen,
// in one process-wide registry that main exposes on --metrics-listen. Gauges of what is (kernels
// by state, queued executions, followers) are computed at scrape time by a collector main adds.
// Labels are low-cardinality only: never a kernel id. docs/metrics.md lists them.

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace prometheus {
class Registry;
}

namespace cellgate::obs {

enum class StartSource { kCold, kPooled };

class Metrics {
 public:
  static Metrics& Get();

  std::shared_ptr<prometheus::Registry> registry() const;

  // A StartKernel answered: with a kernel (how long it took) or with an error.
  void KernelStarted(StartSource source, absl::Duration took);
  void KernelStartFailed(StartSource source);
  // An execution (RunCell, RunAll's cells, Execute) ended; `status` is its ExecutionStatus
  // without the prefix, lower case ("ok", "error", "timeout", ...).
  // `ran_for` is unset for one that never reached the kernel (cancelled while queued).
  void ExecutionFinished(absl::string_view status, std::optional<absl::Duration> ran_for);
  // A message from a kernel's IOPub socket, all its frames.
  void IopubReceived(size_t bytes);
  void SubscriberCutOff();
  // `reason`: one of a few classes (see DeathReasonClass).
  void KernelDied(absl::string_view reason);
  // "automatic" (the restart policy) or "requested" (RestartKernel).
  void KernelRestarted(absl::string_view trigger);
  void AuthFailed();
  // `method` the full gRPC method name, `code` a status code name ("OK", "NOT_FOUND", ...).
  void RequestFinished(absl::string_view method, absl::string_view code);

  // The class of a kernel death reason as the kernel layer words it: "oom", "signal", "exit",
  // "unresponsive", "interrupt_ignored" or "other".
  static absl::string_view DeathReasonClass(absl::string_view reason);

  // A label value from a proto enum value's name: `prefix` dropped, lower case
  // ("EXECUTION_STATUS_KERNEL_DIED", "EXECUTION_STATUS_" -> "kernel_died").
  static std::string EnumLabel(absl::string_view name, absl::string_view prefix);

 private:
  Metrics();
  struct Families;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Families> families_;
};

}  // namespace cellgate::obs
