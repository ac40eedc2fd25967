#pragma once

#include <deque>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "cellgate/v1/execution.pb.h"
#include "server/session/event_log.h"

namespace cellgate::api {

// Serves one StreamOutputs call: replays the retained events after `after_seq`, then (with
// `follow`) live events until the client cancels, the log closes (kernel shut down) or the
// server drains. One write in flight; no thread waits while there is nothing to send (the
// reactor parks a waiter on the EventLog). A reader that falls too far behind is ended with
// RESOURCE_EXHAUSTED naming the seq to resume from. Events go out as byte buffers that share
// their long strings with the log (raw_message.h): the method is served raw.
class StreamOutputsReactor : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  // `max_lag_bytes` > 0: a live follower (one that has caught up with the log once) whose
  // delivered events trail the newest by more than that is ended with RESOURCE_EXHAUSTED while
  // the events it missed are still retained, so that it can resume from the last seq it got.
  // A reader replaying a backlog is never cut for lag.
  StreamOutputsReactor(std::shared_ptr<session::EventLog> log, int64_t after_seq, bool follow,
                       std::string cell_id, std::string execution_id, int64_t max_lag_bytes);

  // Starts sending. Call once, right after construction.
  void Begin();
  // Ends the call at once with `status` (a request that failed validation).
  void FinishWithError(grpc::Status status) ABSL_LOCKS_EXCLUDED(mutex_);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  static constexpr size_t kReadBatch = 256;

  bool Wanted(const v1::OutputEvent& event) const;
  // Sends the next wanted event, parks a waiter, or finishes. Safe from any thread.
  void Pump() ABSL_LOCKS_EXCLUDED(mutex_);
  void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const std::shared_ptr<session::EventLog> log_;
  const bool follow_;
  const std::string cell_id_;
  const std::string execution_id_;
  const int64_t max_lag_bytes_;

  absl::Mutex mutex_;
  int64_t last_seq_ ABSL_GUARDED_BY(mutex_);  // last event read from the log
  int64_t delivered_seq_ ABSL_GUARDED_BY(mutex_);  // last event whose write completed
  std::deque<session::EventLog::EventPtr> pending_ ABSL_GUARDED_BY(mutex_);
  int64_t in_flight_seq_ ABSL_GUARDED_BY(mutex_) = 0;
  grpc::ByteBuffer in_flight_ ABSL_GUARDED_BY(mutex_);  // alive until written
  bool writing_ ABSL_GUARDED_BY(mutex_) = false;
  bool finished_ ABSL_GUARDED_BY(mutex_) = false;
  session::EventLog::WaitId wait_id_ ABSL_GUARDED_BY(mutex_) = 0;
  bool waiting_ ABSL_GUARDED_BY(mutex_) = false;
  bool caught_up_ ABSL_GUARDED_BY(mutex_) = false;  // has reached the newest event once
  int pumps_in_progress_ ABSL_GUARDED_BY(mutex_) = 0;  // OnDone waits for them
};

}  // namespace cellgate::api
