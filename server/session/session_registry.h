#pragma once

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "cellgate/v1/kernel_gateway.pb.h"
#include "server/kernel/cgroup.h"
#include "server/kernel/io_loop.h"
#include "server/kernel/kernel_spec.h"
#include "server/kernel/sandbox_policy.h"
#include "server/kernel/uid_pool.h"
#include "server/obs/metrics.h"
#include "server/session/gateway_config.h"
#include "server/session/kernel_session.h"

namespace cellgate::session {

// Everything the registry needs from the server's wiring.
struct RegistryDeps {
  const GatewayConfig* config = nullptr;
  kernel::KernelIoLoop* loop = nullptr;
  kernel::CellAnalyzer* analyzer = nullptr;  // null: no dependency graphs
  const kernel::KernelSpecRegistry* specs = nullptr;
  kernel::UidPool* uid_pool = nullptr;  // null: kernels share the server's uid
  kernel::SandboxCapabilities capabilities;
  std::string runtime_dir;  // kernel dirs live here; keep it short
  std::string bwrap_path = "/usr/bin/bwrap";
  kernel::CgroupManager* cgroups = nullptr;  // null: no per-kernel cgroups
  StateStore* state_store = nullptr;         // null: nothing saved
  absl::Duration housekeeping_interval = absl::Seconds(1);
};

// All live kernel sessions, by kernel id. Thread-safe.
class SessionRegistry {
 public:
  using StartCallback = absl::AnyInvocable<void(absl::StatusOr<v1::Kernel>)>;

  explicit SessionRegistry(RegistryDeps deps);
  ~SessionRegistry();

  // Starts a kernel for a validated request. Synchronous errors (unknown kernelspec, max
  // kernels, draining) are returned; otherwise `done` gets the Kernel once it answered
  // kernel_info, or UNAVAILABLE with the kernel's output when it failed to start.
  // `limits` are the request's limits already resolved against the server's defaults and caps.
  absl::Status StartKernel(const v1::StartKernelRequest& request,
                           const kernel::ResourceLimits& limits, StartCallback done)
      ABSL_LOCKS_EXCLUDED(mutex_);

  // Brings back a kernel saved by an earlier gateway (StateStore::LoadAll): same kernel id,
  // its notebook as saved (see KernelSession::Restore), event numbering continued well past
  // the saved last seq, and a fresh kernel process started the way the saved request asked.
  // A kernel that fails to start stays DEAD with the reason, its notebook kept. Errors (the
  // kernelspec is gone, max kernels reached, the id is taken) leave its file for a later try.
  // With a saved process (GatewayConfig::kernels_outlive_gateway) that still runs as saved
  // (pid, start time, uid), that process is re-attached instead, memory intact; a saved process
  // that is not re-attached is killed first.
  absl::Status RestoreKernel(const internal::KernelState& state,
                             const kernel::ResourceLimits& limits) ABSL_LOCKS_EXCLUDED(mutex_);

  // RestoreKernel for each saved kernel, those with a process to re-attach first (their uids are
  // taken before any is handed out). `observe` hears how each went.
  using LimitsResolver =
      absl::AnyInvocable<kernel::ResourceLimits(const v1::StartKernelRequest&) const>;
  using RestoreObserver =
      absl::AnyInvocable<void(const internal::KernelState&, const absl::Status&) const>;
  void RestoreKernels(std::vector<internal::KernelState> states, const LimitsResolver& limits_for,
                      const RestoreObserver& observe) ABSL_LOCKS_EXCLUDED(mutex_);

  // The gateway stops and kernels outlive it: every session detaches (KernelSession::Detach),
  // then every state file is written as it stands.
  void DetachAll() ABSL_LOCKS_EXCLUDED(mutex_);

  // NOT_FOUND naming the id when there is no such kernel.
  absl::StatusOr<std::shared_ptr<KernelSession>> Find(const std::string& kernel_id) const
      ABSL_LOCKS_EXCLUDED(mutex_);
  std::vector<std::shared_ptr<KernelSession>> List() const ABSL_LOCKS_EXCLUDED(mutex_);
  size_t size() const ABSL_LOCKS_EXCLUDED(mutex_);

  // Starts kernels for the warm pool until GatewayConfig::pool_size are ready or starting
  // (not past --max-kernels counting the registered ones). Pooled kernels are not listed and
  // not saved until a StartKernel takes one; the pool refills after each. Call after
  // RestoreKernels: re-attached kernels' uids must be taken before the pool's are handed out.
  void FillPool() ABSL_LOCKS_EXCLUDED(mutex_);

  // Refuses new kernels and executions from now on (UNAVAILABLE).
  void BeginDrain() ABSL_LOCKS_EXCLUDED(mutex_);
  bool draining() const ABSL_LOCKS_EXCLUDED(mutex_);

  // Waits until no session has a running or queued execution, or `deadline`.
  void WaitForIdle(absl::Time deadline) const;

  // Shuts every kernel down and waits until all are reaped (or `deadline`).
  void ShutdownAll(absl::Time deadline);

  // Shuts down the kernels that are idle past their idle timeout or past the max lifetime.
  // Runs by itself every `deps.housekeeping_interval` on the I/O loop.
  void CullIdleKernels() ABSL_LOCKS_EXCLUDED(mutex_);

 private:
  absl::StatusOr<std::string> NewKernelId() const;
  // The replica a kernel id names ("" for an id without a prefix).
  static std::string ReplicaOf(absl::string_view kernel_id);
  // A session for `kernel_id` as `request` asks (not yet started, not yet registered), with a
  // uid from the pool (-1: none), which the caller gives back if it doesn't register the session
  // (a registered one gives it back when closed). `restored`: the state of a kernel saved by
  // an earlier gateway.
  struct NewSessionResult {
    std::shared_ptr<KernelSession> session;
    int uid = -1;
  };
  absl::StatusOr<NewSessionResult> NewSession(
      const std::string& kernel_id, const v1::StartKernelRequest& request,
      const kernel::ResourceLimits& limits, const internal::KernelState* restored)
      ABSL_LOCKS_EXCLUDED(mutex_);
  // Registers a session (max kernels and draining checked again) and has its state saved.
  absl::Status AddSession(const std::shared_ptr<KernelSession>& session)
      ABSL_LOCKS_EXCLUDED(mutex_);
  void ScheduleHousekeeping();
  // Whether StartKernel may hand out a pooled kernel for `request`: the default kernelspec, and
  // no env or limits of its own (labels, idle timeout and a notebook are the session's).
  bool Poolable(const v1::StartKernelRequest& request) const;
  static StartCallback ObserveStart(obs::StartSource source, StartCallback done);
  absl::Status StartCold(const v1::StartKernelRequest& request,
                         const kernel::ResourceLimits& limits, StartCallback done)
      ABSL_LOCKS_EXCLUDED(mutex_);
  // A ready pooled kernel claimed for `request`, or null.
  std::shared_ptr<KernelSession> TakePooled(const v1::StartKernelRequest& request)
      ABSL_LOCKS_EXCLUDED(mutex_);
  // StartKernel with a pooled kernel: registered and described at once.
  absl::Status StartPooled(std::shared_ptr<KernelSession> session,
                           const v1::StartKernelRequest& request, StartCallback& done)
      ABSL_LOCKS_EXCLUDED(mutex_);
  // FillPool after GatewayConfig::pool_refill_delay (at once when it is zero), on the I/O loop.
  void RefillPoolLater() ABSL_LOCKS_EXCLUDED(mutex_);
  // For Shutdown of a pooled kernel: counts it closed.
  absl::AnyInvocable<void()> PoolKernelClosed();
  // Shuts the pooled kernels down and waits (up to `deadline`) until they are reaped.
  void ShutdownPool(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mutex_);
  int IdleTimeoutFor(const v1::StartKernelRequest& request) const;
  // Every few housekeeping passes, returns the allocator's free memory to the system.
  void ReleaseFreeHeap();

  RegistryDeps deps_;
  mutable absl::Mutex mutex_;
  std::map<std::string, std::shared_ptr<KernelSession>> sessions_ ABSL_GUARDED_BY(mutex_);
  int starting_ ABSL_GUARDED_BY(mutex_) = 0;  // sessions not yet in `sessions_`
  uint64_t next_dir_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t housekeeping_passes_ = 0;  // only on the I/O loop
  bool draining_ ABSL_GUARDED_BY(mutex_) = false;
  std::deque<std::shared_ptr<KernelSession>> pool_ ABSL_GUARDED_BY(mutex_);  // ready, oldest first
  std::set<std::shared_ptr<KernelSession>> pool_starting_ ABSL_GUARDED_BY(mutex_);
  int pool_creating_ ABSL_GUARDED_BY(mutex_) = 0;  // slots taken, sessions not made yet
  int pool_closing_ ABSL_GUARDED_BY(mutex_) = 0;
  bool pool_retry_scheduled_ ABSL_GUARDED_BY(mutex_) = false;
  // Housekeeping tasks hold a weak reference; gone once the registry is.
  std::shared_ptr<SessionRegistry*> alive_ = std::make_shared<SessionRegistry*>(this);
};

}  // namespace cellgate::session
