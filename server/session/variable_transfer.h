#pragma once

// TransferVariable: a value carried from one Python kernel to another. The source pickles it
// into a gateway file of its workspace (an execution in its queue), the file is moved to the
// target's workspace (a hard link, no copy), and the target unpickles it into its namespace
// (an execution in its queue). Unpickling can run code the pickle names: the target trusts the
// source as it would trust code it runs itself; nothing else from the source runs in it.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cellgate/v1/files.pb.h"
#include "server/session/kernel_session.h"

namespace cellgate::session {

struct VariableTransfer {
  std::string name;     // in the source's namespace
  std::string as_name;  // in the target's
  absl::Duration timeout = absl::Seconds(60);  // per kernel: queued, then running its part
  int64_t max_bytes = 0;                       // 0: no cap
};

using TransferCallback =
    absl::AnyInvocable<void(absl::StatusOr<v1::TransferVariableResponse>)>;

// Starts the transfer; `done` is called exactly once (errors as documented on the RPC).
// Synchronous refusals (a kernel not Python, dead, shutting down) come through `done` too.
void TransferVariable(std::shared_ptr<KernelSession> from, std::shared_ptr<KernelSession> to,
                      VariableTransfer transfer, TransferCallback done);

}  // namespace cellgate::session
