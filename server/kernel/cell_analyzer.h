#pragma once

// The client of the cell analyzer process (kernels/analyzer/cellgate_analyzer.py): one process
// for all kernels, started on first use and kept warm, launched like a kernel (its own session,
// no_new_privs, dies with the gateway, the rlimits and uid of the policy it is given). Requests
// and replies are JSON lines over its stdin and stdout, served on the kernel I/O loop: no thread
// waits for it.
//
// The analyzer is an aid, never a gate: when it is down, slow or crashing, Analyze answers
// UNAVAILABLE within the timeout and the caller goes on without a graph.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/kernel/child_process.h"
#include "server/kernel/io_loop.h"
#include "server/kernel/sandbox_policy.h"

namespace cellgate::kernel {

struct CellAnalysis {
  std::vector<std::string> defines;  // sorted
  std::vector<std::string> uses;     // sorted; builtins left out
  bool opaque = false;               // its effect on names can't be read from it
  std::vector<std::string> reasons;  // why it is opaque
  std::string error;                 // not valid Python: defines and uses are empty
};

class CellAnalyzer {
 public:
  struct Options {
    std::string python = "/usr/bin/python3";
    std::string script;       // cellgate_analyzer.py
    std::string working_dir;  // created if missing; its log goes here
    SandboxPolicy policy;     // rlimits and uid for the process
    // When the oldest unanswered request waited this long (counted from when the one before it
    // was answered), every pending request fails (UNAVAILABLE) and the process is restarted.
    absl::Duration timeout = absl::Seconds(2);
    // After the process died, requests fail at once for this long before it is started again.
    absl::Duration restart_backoff = absl::Seconds(1);
    // Answers are remembered by source (the same cell in many kernels, a re-import, a restore):
    // up to this many bytes of sources, then forgotten all at once.
    size_t cache_bytes = size_t{16} << 20;
  };
  using Callback = absl::AnyInvocable<void(absl::StatusOr<CellAnalysis>) &&>;

  CellAnalyzer(KernelIoLoop& loop, Options options);
  ~CellAnalyzer();  // stops the process; pending requests fail (CANCELLED)
  CellAnalyzer(const CellAnalyzer&) = delete;
  CellAnalyzer& operator=(const CellAnalyzer&) = delete;

  // Analyzes `source`; `done` runs on the loop thread. Thread-safe.
  void Analyze(std::string source, Callback done);

  // The remembered answer for `source`, if there is one: lets a caller apply it at once, in the
  // change that asked for it, instead of through Analyze's callback. Thread-safe.
  std::optional<CellAnalysis> Cached(const std::string& source) const;

  // How many times the process was started (for tests and logs). Loop thread.
  int starts() const;
  // How many requests the process was sent (the others were answered from the cache). Loop
  // thread.
  int64_t requests_sent() const { return requests_sent_; }

 private:
  class Connection;
  void AnalyzeOnLoop(std::string source, Callback done);
  void OnConnectionLost(const std::string& why);

  KernelIoLoop& loop_;
  const Options options_;
  // Loop-thread state.
  std::shared_ptr<Connection> connection_;
  absl::Time down_until_ = absl::InfinitePast();
  std::string last_failure_;
  int starts_ = 0;
  int64_t requests_sent_ = 0;
  mutable absl::Mutex cache_mutex_;
  // By source.
  absl::flat_hash_map<std::string, CellAnalysis> cache_ ABSL_GUARDED_BY(cache_mutex_);
  size_t cache_bytes_ ABSL_GUARDED_BY(cache_mutex_) = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace cellgate::kernel
