#include "server/session/session_registry.h"

#include <google/protobuf/util/time_util.h>
#include <openssl/rand.h>

#include <filesystem>

#include "absl/strings/escaping.h"
#include "server/common/heap_release.h"
#include "absl/strings/str_cat.h"

namespace cellgate::session {

SessionRegistry::SessionRegistry(RegistryDeps deps) : deps_(std::move(deps)) {
  ScheduleHousekeeping();
}

SessionRegistry::~SessionRegistry() {
  alive_.reset();
  // A housekeeping pass may be running on the loop right now: let it finish.
  if (!deps_.loop->IsLoopThread()) deps_.loop->RunAndWait([] {});
}

void SessionRegistry::ScheduleHousekeeping() {
  std::weak_ptr<SessionRegistry*> alive = alive_;
  deps_.loop->PostAfter(deps_.housekeeping_interval, [alive]() {
    std::shared_ptr<SessionRegistry*> registry = alive.lock();
    if (registry == nullptr) return;
    (*registry)->CullIdleKernels();
    (*registry)->ReleaseFreeHeap();
    (*registry)->ScheduleHousekeeping();
  });
}

void SessionRegistry::CullIdleKernels() {
  const absl::Time now = absl::Now();
  for (const auto& session : List()) {
    if (std::optional<std::string> reason =
            session->CullReason(now, deps_.config->max_kernel_lifetime)) {
      session->Shutdown(nullptr, *reason);
    }
  }
}

void SessionRegistry::ReleaseFreeHeap() {
  // A flood or a dropped kernel leaves freed memory in the allocator; give it back once it is
  // more than noise. Checking costs a walk of the allocator's free lists: not every pass.
  if (++housekeeping_passes_ % 5 != 0) return;
  common::ReleaseFreeHeapAbove(16 << 20);
}

absl::StatusOr<std::string> SessionRegistry::NewKernelId() const {
  unsigned char bytes[16];  // 128 random bits: unguessable
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return absl::InternalError("no randomness for a kernel id");
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

// A restored kernel's events continue this far past the saved last seq: further than a kernel
// can get between two saves, so no seq given out before the restart is given out again.
constexpr int64_t kSeqGapAfterRestore = int64_t{1} << 32;

absl::StatusOr<SessionRegistry::NewSessionResult> SessionRegistry::NewSession(
    const std::string& kernel_id, const v1::StartKernelRequest& request,
    const kernel::ResourceLimits& limits, const internal::KernelState* restored) {
  const GatewayConfig& config = *deps_.config;
  const std::string spec_name =
      request.kernel_spec().empty() ? config.default_kernel_spec : request.kernel_spec();
  absl::StatusOr<kernel::KernelSpec> spec = deps_.specs->Find(spec_name);
  if (!spec.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kernel_spec: ", spec.status().message(), " (ListKernelSpecs lists what is available)"));
  }

  KernelSession::Params params;
  params.kernel_id = kernel_id;
  params.labels = {request.labels().begin(), request.labels().end()};
  params.idle_timeout_seconds = request.idle_timeout_seconds() > 0
                                    ? request.idle_timeout_seconds()
                                    : config.default_idle_timeout_seconds;
  params.config = deps_.config;
  params.loop = deps_.loop;
  params.start_request = request;
  params.start_request.clear_notebook_ipynb();
  params.state_store = deps_.state_store;
  if (restored != nullptr) {
    params.created_at = absl::FromUnixNanos(
        google::protobuf::util::TimeUtil::TimestampToNanoseconds(restored->created_at()));
    params.first_seq = std::max<int64_t>(restored->notebook().last_seq(), 0) + kSeqGapAfterRestore;
  }
  KernelLaunch& launch = params.launch;
  launch.spec = *spec;
  launch.env = {request.env().begin(), request.env().end()};
  launch.bwrap_path = deps_.bwrap_path;
  launch.startup_timeout = config.startup_timeout;
  launch.policy.mode = config.sandbox_mode;
  launch.policy.limits = limits;
  launch.policy.allow_network = request.limits().has_allow_network()
                                    ? request.limits().allow_network()
                                    : config.default_allow_network;
  launch.cgroups = deps_.cgroups;
  // The cgroup bounds real memory; without a server value it takes the address-space limit.
  launch.cgroup_memory_bytes =
      config.cgroup_memory_bytes > 0 ? config.cgroup_memory_bytes : limits.address_space_bytes;

  {
    absl::MutexLock lock(&mutex_);
    if (draining_) return absl::UnavailableError("server is draining: no new kernels");
    if (static_cast<int>(sessions_.size()) >= config.max_kernels) {
      return absl::ResourceExhaustedError(
          absl::StrCat("max kernels reached (", config.max_kernels,
                       "); shut one down or raise --max-kernels"));
    }
    if (sessions_.contains(kernel_id)) {
      return absl::AlreadyExistsError(absl::StrCat("kernel '", kernel_id, "' exists already"));
    }
    launch.kernel_dir = absl::StrCat(deps_.runtime_dir, "/k", next_dir_++);
  }
  int uid = -1;
  if (deps_.uid_pool != nullptr) {
    absl::StatusOr<int> acquired = deps_.uid_pool->Acquire();
    if (!acquired.ok()) return acquired.status();
    uid = *acquired;
    launch.policy.uid = launch.policy.gid = uid;
  }
  const std::string kernel_dir = launch.kernel_dir;
  params.on_closed = [this, id = kernel_id, uid, kernel_dir]() {
    if (uid >= 0) deps_.uid_pool->Release(uid);
    std::error_code error;
    std::filesystem::remove_all(kernel_dir, error);
    std::filesystem::remove(kernel_dir + ".log", error);
    bool stopping = false;
    {
      absl::MutexLock lock(&mutex_);
      sessions_.erase(id);
      stopping = draining_;
    }
    // A kernel shut down, culled or never started is gone for good; one closed because the
    // gateway stops is restored by the next gateway.
    if (deps_.state_store != nullptr && !stopping) deps_.state_store->Remove(id);
  };
  std::shared_ptr<KernelSession> session = KernelSession::Create(std::move(params));
  if (restored != nullptr) {
    if (absl::Status status = session->Restore(*restored); !status.ok()) {
      if (uid >= 0) deps_.uid_pool->Release(uid);
      return status;
    }
  }
  if (!request.notebook_ipynb().empty()) {
    absl::StatusOr<v1::Notebook> imported = session->ImportNotebook(request.notebook_ipynb(),
                                                                    /*replace=*/true);
    if (!imported.ok()) {
      if (uid >= 0) deps_.uid_pool->Release(uid);
      return absl::InvalidArgumentError(
          absl::StrCat("notebook_ipynb: ", imported.status().message()));
    }
  }
  return NewSessionResult{std::move(session), uid};
}

absl::Status SessionRegistry::AddSession(const std::shared_ptr<KernelSession>& session) {
  const GatewayConfig& config = *deps_.config;
  {
    absl::MutexLock lock(&mutex_);
    // Checked again: another start may have taken the last slot meanwhile.
    if (draining_) return absl::UnavailableError("server is draining: no new kernels");
    if (sessions_.contains(session->kernel_id())) {
      return absl::AlreadyExistsError(
          absl::StrCat("kernel '", session->kernel_id(), "' exists already"));
    }
    if (static_cast<int>(sessions_.size()) >= config.max_kernels) {
      return absl::ResourceExhaustedError(
          absl::StrCat("max kernels reached (", config.max_kernels, ")"));
    }
    sessions_[session->kernel_id()] = session;
  }
  if (deps_.state_store != nullptr) {
    std::weak_ptr<KernelSession> weak = session;
    deps_.state_store->Register(session->kernel_id(),
                                [weak]() -> std::optional<internal::KernelState> {
                                  std::shared_ptr<KernelSession> session = weak.lock();
                                  if (session == nullptr) return std::nullopt;
                                  return session->SaveState();
                                });
  }
  return absl::OkStatus();
}

absl::Status SessionRegistry::StartKernel(const v1::StartKernelRequest& request,
                                          const kernel::ResourceLimits& limits,
                                          StartCallback done) {
  absl::StatusOr<std::string> kernel_id = NewKernelId();
  if (!kernel_id.ok()) return kernel_id.status();
  absl::StatusOr<NewSessionResult> created =
      NewSession(*kernel_id, request, limits, /*restored=*/nullptr);
  if (!created.ok()) return created.status();
  std::shared_ptr<KernelSession> session = std::move(created->session);
  if (absl::Status status = AddSession(session); !status.ok()) {
    if (created->uid >= 0) deps_.uid_pool->Release(created->uid);
    return status;
  }
  std::weak_ptr<KernelSession> weak = session;
  session->Start([this, weak, id = *kernel_id, done = std::move(done)](absl::Status status) mutable {
    std::shared_ptr<KernelSession> session = weak.lock();
    if (session == nullptr) {
      done(absl::UnavailableError("kernel was shut down while starting"));
      return;
    }
    if (!status.ok()) {
      // A kernel that never started is not kept: the client got no id to use. It leaves the
      // registry before the client hears of the failure.
      {
        absl::MutexLock lock(&mutex_);
        sessions_.erase(id);
      }
      session->Shutdown(nullptr);
      done(status);
      return;
    }
    done(session->Describe());
  });
  return absl::OkStatus();
}

absl::Status SessionRegistry::RestoreKernel(const internal::KernelState& state,
                                            const kernel::ResourceLimits& limits) {
  absl::StatusOr<NewSessionResult> created =
      NewSession(state.kernel_id(), state.start_request(), limits, &state);
  if (!created.ok()) return created.status();
  std::shared_ptr<KernelSession> session = std::move(created->session);
  if (absl::Status status = AddSession(session); !status.ok()) {
    if (created->uid >= 0) deps_.uid_pool->Release(created->uid);
    return status;
  }
  // A restored kernel that fails to start stays, DEAD with the reason: its notebook is kept.
  session->Start([](absl::Status) {});
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<KernelSession>> SessionRegistry::Find(
    const std::string& kernel_id) const {
  absl::MutexLock lock(&mutex_);
  auto it = sessions_.find(kernel_id);
  if (it == sessions_.end()) {
    return absl::NotFoundError(absl::StrCat("kernel_id: no kernel '", kernel_id, "'"));
  }
  return it->second;
}

std::vector<std::shared_ptr<KernelSession>> SessionRegistry::List() const {
  absl::MutexLock lock(&mutex_);
  std::vector<std::shared_ptr<KernelSession>> sessions;
  sessions.reserve(sessions_.size());
  for (const auto& [id, session] : sessions_) sessions.push_back(session);
  return sessions;
}

size_t SessionRegistry::size() const {
  absl::MutexLock lock(&mutex_);
  return sessions_.size();
}

void SessionRegistry::BeginDrain() {
  absl::MutexLock lock(&mutex_);
  draining_ = true;
}

bool SessionRegistry::draining() const {
  absl::MutexLock lock(&mutex_);
  return draining_;
}

void SessionRegistry::WaitForIdle(absl::Time deadline) const {
  while (absl::Now() < deadline) {
    bool busy = false;
    for (const auto& session : List()) busy |= session->has_running_execution();
    if (!busy) return;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

void SessionRegistry::ShutdownAll(absl::Time deadline) {
  for (const auto& session : List()) session->Shutdown(nullptr);
  absl::MutexLock lock(&mutex_);
  auto all_gone = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) { return sessions_.empty(); };
  mutex_.AwaitWithDeadline(absl::Condition(&all_gone), deadline);
}

}  // namespace cellgate::session
