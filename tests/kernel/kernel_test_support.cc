#include "tests/kernel/kernel_test_support.h"

#include <stdlib.h>

#include <cstdlib>

#include "gtest/gtest.h"

namespace cellgate::kernel::testing {

std::string MakeShortTempDir() {
  char pattern[] = "/tmp/cgt-XXXXXX";
  const char* dir = ::mkdtemp(pattern);
  if (dir == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
    return "/tmp";
  }
  // Kernels with their own uid must be able to reach their dir inside this one.
  ::chmod(dir, 0711);
  return dir;
}

std::string ProjectKernelsDir() { return CELLGATE_SOURCE_DIR "/kernels"; }

std::string Collected::StreamText(const std::string& name) const {
  std::string text;
  for (const protocol::Message& message : iopub) {
    if (message.msg_type() == "stream" && message.content.value("name", "") == name) {
      text += message.content.value("text", "");
    }
  }
  return text;
}

const protocol::Message* Collected::First(const std::string& msg_type) const {
  for (const protocol::Message& message : iopub) {
    if (message.msg_type() == msg_type) return &message;
  }
  return nullptr;
}

RequestCallbacks RequestCollector::Callbacks() {
  RequestCallbacks callbacks;
  callbacks.on_iopub = [self = shared_from_this()](const protocol::Message& message) {
    protocol::Message parsed = message;
    if (parsed.content_text.has_value()) {
      parsed.content = nlohmann::json::parse(*parsed.content_text, nullptr, false);
    }
    absl::MutexLock lock(&self->mutex_);
    self->collected_.iopub.push_back(std::move(parsed));
  };
  callbacks.on_done = [self = shared_from_this()](RequestCompletion completion) {
    {
      absl::MutexLock lock(&self->mutex_);
      self->collected_.completion = std::move(completion);
    }
    self->done_.Notify();
  };
  return callbacks;
}

bool RequestCollector::WaitForStdout(const std::string& needle, absl::Duration timeout) {
  absl::MutexLock lock(&mutex_);
  auto seen = [this, &needle]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    return collected_.StreamText("stdout").find(needle) != std::string::npos;
  };
  return mutex_.AwaitWithTimeout(absl::Condition(&seen), timeout);
}

bool RequestCollector::Wait(absl::Duration timeout) {
  return done_.WaitForNotificationWithTimeout(timeout);
}

Collected RequestCollector::Take() {
  absl::MutexLock lock(&mutex_);
  return std::move(collected_);
}

KernelEvents EventRecorder::Events() {
  KernelEvents events;
  events.on_exit = [this](const ExitStatus&, const std::string& reason) {
    {
      absl::MutexLock lock(&mutex);
      exit_reason = reason;
    }
    exited.Notify();
  };
  events.on_unrouted_iopub = [this](const protocol::Message& message) {
    absl::MutexLock lock(&mutex);
    unrouted.push_back(message);
  };
  return events;
}

StartedKernel StartAndWait(KernelIoLoop& loop, KernelOptions options) {
  StartedKernel started;
  started.events = std::make_unique<EventRecorder>();
  auto ready = std::make_shared<absl::Notification>();
  auto status = std::make_shared<absl::Status>();
  started.kernel = Kernel::Start(loop, std::move(options), started.events->Events(),
                                 [ready, status](absl::Status result) {
                                   *status = result;
                                   ready->Notify();
                                 });
  if (!ready->WaitForNotificationWithTimeout(absl::Seconds(60))) {
    started.ready_status = absl::DeadlineExceededError("kernel did not become ready in 60 s");
  } else {
    started.ready_status = *status;
  }
  return started;
}

Collected RunCode(Kernel& kernel, const std::string& code, absl::Duration timeout) {
  auto collector = std::make_shared<RequestCollector>();
  kernel.Execute(ExecuteRequest{.code = code}, collector->Callbacks());
  if (!collector->Wait(timeout)) {
    ADD_FAILURE() << "execution did not complete within " << timeout << ": " << code;
    return Collected{};
  }
  return collector->Take();
}

}  // namespace cellgate::kernel::testing
