#include "server/api/stream_outputs_reactor.h"

#include "absl/strings/str_cat.h"
#include "server/api/raw_message.h"
#include "server/api/status_mapping.h"
#include "server/obs/metrics.h"

namespace cellgate::api {

StreamOutputsReactor::StreamOutputsReactor(std::shared_ptr<session::EventLog> log,
                                           int64_t after_seq, bool follow, std::string cell_id,
                                           std::string execution_id, int64_t max_lag_bytes)
    : log_(std::move(log)),
      follow_(follow),
      cell_id_(std::move(cell_id)),
      execution_id_(std::move(execution_id)),
      max_lag_bytes_(max_lag_bytes),
      last_seq_(after_seq),
      delivered_seq_(after_seq) {
  if (log_ != nullptr) log_->AddReader();
}

void StreamOutputsReactor::Begin() {
  // Reject a resume point that is already gone before sending anything.
  {
    absl::MutexLock lock(&mutex_);
    absl::StatusOr<std::vector<session::EventLog::EventPtr>> first =
        log_->ReadAfter(last_seq_, kReadBatch);
    if (!first.ok()) {
      FinishLocked(ToGrpcStatus(first.status()));
      return;
    }
    for (auto& event : *first) {
      last_seq_ = event->seq();
      if (Wanted(*event)) pending_.push_back(std::move(event));
    }
  }
  Pump();
}

void StreamOutputsReactor::FinishWithError(grpc::Status status) {
  absl::MutexLock lock(&mutex_);
  FinishLocked(std::move(status));
}

bool StreamOutputsReactor::Wanted(const v1::OutputEvent& event) const {
  // Kernel-wide events and display updates (which may touch any cell) always go through.
  if (event.has_kernel_status() || event.has_display_update()) return true;
  if (!cell_id_.empty() && event.cell_id() != cell_id_) return false;
  if (!execution_id_.empty() && event.execution_id() != execution_id_) return false;
  return true;
}

void StreamOutputsReactor::Pump() {
  absl::MutexLock lock(&mutex_);
  ++pumps_in_progress_;
  PumpLocked();
  --pumps_in_progress_;
}

void StreamOutputsReactor::PumpLocked() {
  while (!finished_ && !writing_ && !waiting_) {
    if (!pending_.empty()) {
      in_flight_seq_ = pending_.front()->seq();
      in_flight_ = ByteBufferSharingStrings(std::move(pending_.front()));
      pending_.pop_front();
      writing_ = true;
      StartWrite(&in_flight_);
      return;
    }
    absl::StatusOr<std::vector<session::EventLog::EventPtr>> batch =
        log_->ReadAfter(last_seq_, kReadBatch);
    if (!batch.ok()) {
      // The next event was evicted while this reader was behind.
      obs::Metrics::Get().SubscriberCutOff();
      FinishLocked(grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("stream fell behind: events after seq ", last_seq_,
                       " were evicted from the log (oldest retained seq is ",
                       log_->oldest_retained_seq(),
                       "); reconnect with StreamOutputs(after_seq=", last_seq_,
                       ") to get OUT_OF_RANGE, or from after_seq=0 for what is retained")));
      return;
    }
    if (!batch->empty()) {
      for (auto& event : *batch) {
        last_seq_ = event->seq();
        if (Wanted(*event)) pending_.push_back(std::move(event));
      }
      continue;
    }
    if (!follow_ || log_->closed()) {
      FinishLocked(grpc::Status::OK);
      return;
    }
    caught_up_ = true;
    // Nothing to send: park until the log has something after last_seq_ (or closes).
    waiting_ = true;
    const int64_t after = last_seq_;
    mutex_.Unlock();
    const session::EventLog::WaitId id = log_->WaitForEvents(after, [this]() {
      {
        // wait_id_ stays set: OnDone's CancelWait must wait for this callback to return.
        absl::MutexLock relock(&mutex_);
        waiting_ = false;
      }
      Pump();
    });
    mutex_.Lock();
    wait_id_ = id;
    return;
  }
}

void StreamOutputsReactor::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mutex_);
    writing_ = false;
    delivered_seq_ = in_flight_seq_;
    in_flight_.Clear();
    if (!ok) {
      // The client is gone; OnCancel / OnDone follow.
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream write failed"));
      return;
    }
    if (max_lag_bytes_ > 0 && caught_up_) {
      const int64_t lag = log_->BytesAfter(delivered_seq_);
      if (lag > max_lag_bytes_) {
        obs::Metrics::Get().SubscriberCutOff();
        FinishLocked(grpc::Status(
            grpc::StatusCode::RESOURCE_EXHAUSTED,
            absl::StrCat("stream fell behind: ", lag, " bytes of events after seq ",
                         delivered_seq_, " not yet delivered (limit ", max_lag_bytes_,
                         "); resume with StreamOutputs(after_seq=", delivered_seq_, ")")));
        return;
      }
    }
  }
  Pump();
}

void StreamOutputsReactor::OnCancel() {
  absl::MutexLock lock(&mutex_);
  FinishLocked(grpc::Status::CANCELLED);
}

void StreamOutputsReactor::FinishLocked(grpc::Status status) {
  if (finished_) return;
  finished_ = true;
  Finish(std::move(status));
}

void StreamOutputsReactor::OnDone() {
  session::EventLog::WaitId id;
  {
    absl::MutexLock lock(&mutex_);
    // A Pump may be registering a waiter with the lock released; let it finish first.
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) { return pumps_in_progress_ == 0; };
    mutex_.Await(absl::Condition(&idle));
    id = wait_id_;
  }
  // After this, the wake callback is neither running nor will it run (a no-op for a wait
  // that already fired and returned).
  if (id != 0) log_->CancelWait(id);
  if (log_ != nullptr) log_->RemoveReader();
  delete this;
}

}  // namespace cellgate::api
