#pragma once

// Helpers for tests that drive real kernels: a short private runtime dir, kernel start with a
// deadline, and execute-and-collect.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/kernel/io_loop.h"
#include "server/kernel/kernel.h"
#include "server/kernel/kernel_spec.h"

namespace cellgate::kernel::testing {

// A fresh directory under /tmp with a short path (unix socket paths must stay short).
std::string MakeShortTempDir();

// The kernelspecs shipped in the source tree's kernels/ directory.
std::string ProjectKernelsDir();

// What an execution produced.
struct Collected {
  RequestCompletion completion;
  // As the kernel passed them, with output messages' `content_text` also parsed into `content`.
  std::vector<protocol::Message> iopub;

  // Concatenated text of stream outputs named `name`.
  std::string StreamText(const std::string& name = "stdout") const;
  // The first IOPub message of `msg_type`, or nullptr.
  const protocol::Message* First(const std::string& msg_type) const;
};

// Collects one request's IOPub messages and completion; Wait() blocks up to a deadline.
class RequestCollector : public std::enable_shared_from_this<RequestCollector> {
 public:
  // The callbacks keep the collector alive: create it with std::make_shared.
  RequestCallbacks Callbacks();
  // True once the stdout seen so far contains `needle`; false after `timeout`.
  bool WaitForStdout(const std::string& needle, absl::Duration timeout);
  // False when the request did not complete in time.
  bool Wait(absl::Duration timeout);
  Collected Take();

 private:
  absl::Mutex mutex_;
  Collected collected_ ABSL_GUARDED_BY(mutex_);
  absl::Notification done_;
};

// Watches kernel-wide events.
struct EventRecorder {
  absl::Mutex mutex;
  std::string exit_reason ABSL_GUARDED_BY(mutex);
  std::vector<protocol::Message> unrouted ABSL_GUARDED_BY(mutex);
  absl::Notification exited;
  KernelEvents Events();
};

// A kernel started and waited for (up to 60 s).
struct StartedKernel {
  // Declared first so it is destroyed last: the kernel may call it until ~Kernel returns.
  std::unique_ptr<EventRecorder> events;
  std::unique_ptr<Kernel> kernel;
  absl::Status ready_status;
};

StartedKernel StartAndWait(KernelIoLoop& loop, KernelOptions options);

// Executes `code` and waits up to `timeout` for the completion.
Collected RunCode(Kernel& kernel, const std::string& code,
              absl::Duration timeout = absl::Seconds(60));

}  // namespace cellgate::kernel::testing
