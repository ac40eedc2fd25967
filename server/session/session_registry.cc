#include "server/session/session_registry.h"

#include <google/protobuf/util/time_util.h>
#include <openssl/rand.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/common/heap_release.h"
#include "server/kernel/child_process.h"
#include "server/obs/log.h"
#include "server/obs/metrics.h"

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
  std::string id = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
  const std::string& prefix = deps_.config->kernel_id_prefix;
  return prefix.empty() ? id : absl::StrCat(prefix, "-", id);
}

std::string SessionRegistry::ReplicaOf(absl::string_view kernel_id) {
  constexpr size_t kRandomPart = 32;
  if (kernel_id.size() < kRandomPart + 2 || kernel_id[kernel_id.size() - kRandomPart - 1] != '-') {
    return "";
  }
  return std::string(kernel_id.substr(0, kernel_id.size() - kRandomPart - 1));
}

// A restored kernel's events continue this far past the saved last seq: further than a kernel
// can get between two saves, so no seq given out before the restart is given out again.
constexpr int64_t kSeqGapAfterRestore = int64_t{1} << 32;

namespace {

kernel::KernelProcess KernelProcessFromState(const internal::KernelProcessState& state) {
  kernel::KernelProcess process;
  process.pid = state.pid();
  process.start_time = state.start_time();
  protocol::ConnectionInfo& connection = process.connection;
  connection.transport = state.transport();
  connection.ip = state.ip();
  connection.shell_port = state.shell_port();
  connection.iopub_port = state.iopub_port();
  connection.stdin_port = state.stdin_port();
  connection.control_port = state.control_port();
  connection.hb_port = state.hb_port();
  connection.key = state.key();
  connection.signature_scheme = state.signature_scheme();
  process.cgroup_dirs = {state.cgroup_dirs().begin(), state.cgroup_dirs().end()};
  return process;
}

// Whether the saved process still runs: the same pid, started at the same time (not a later
// process given the pid), under the same uid.
bool SavedProcessRuns(const internal::KernelProcessState& process) {
  if (process.pid() <= 0 || process.start_time() == 0) return false;
  if (kernel::ProcessStartTime(process.pid()) != process.start_time()) return false;
  return process.uid() < 0 || kernel::ProcessUid(process.pid()) == process.uid();
}

// Loads a StartKernel's `notebook_ipynb` into the new kernel; what is wrong with it is named
// under that field.
absl::Status ImportRequestedNotebook(KernelSession& session, const std::string& ipynb) {
  const absl::Status imported = session.ImportNotebook(ipynb, /*replace=*/true);
  if (imported.ok()) return imported;
  return absl::InvalidArgumentError(absl::StrCat("notebook_ipynb: ", imported.message()));
}

}  // namespace

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
  params.idle_timeout_seconds = IdleTimeoutFor(request);
  params.config = deps_.config;
  params.loop = deps_.loop;
  params.analyzer = deps_.analyzer;
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
    // Not the dir of a kernel that outlived an earlier gateway on this runtime dir.
    std::error_code error;
    do {
      launch.kernel_dir = absl::StrCat(deps_.runtime_dir, "/k", next_dir_++);
    } while (std::filesystem::exists(launch.kernel_dir, error) ||
             std::filesystem::exists(launch.kernel_dir + ".log", error));
  }
  int uid = -1;
  if (restored != nullptr && restored->has_process()) {
    // Re-attach the process when it still runs and this gateway lets kernels outlive it; else
    // make sure it is gone before a fresh kernel takes its place.
    const internal::KernelProcessState& saved = restored->process();
    std::error_code error;
    const bool runs = SavedProcessRuns(saved);
    bool attach = config.kernels_outlive_gateway && runs &&
                  (saved.uid() < 0) == (deps_.uid_pool == nullptr) &&
                  std::filesystem::exists(saved.kernel_dir(), error);  // its sockets are there
    if (attach && saved.uid() >= 0) attach = deps_.uid_pool->Reserve(saved.uid()).ok();
    if (attach) {
      uid = saved.uid();
      launch.policy.uid = launch.policy.gid = uid;
      launch.kernel_dir = saved.kernel_dir();
      params.attach = KernelProcessFromState(saved);
    } else if (runs) {
      ::kill(-saved.pid(), SIGKILL);
    }
  }
  if (deps_.uid_pool != nullptr && uid < 0) {
    absl::StatusOr<int> acquired = deps_.uid_pool->Acquire();
    if (!acquired.ok()) return acquired.status();
    uid = *acquired;
    launch.policy.uid = launch.policy.gid = uid;
  }
  const std::string kernel_dir = launch.kernel_dir;
  params.on_closed = [this, id = kernel_id, uid, kernel_dir](bool kernel_left_running) {
    if (!kernel_left_running) {
      if (uid >= 0) deps_.uid_pool->Release(uid);
      std::error_code error;
      std::filesystem::remove_all(kernel_dir, error);
      std::filesystem::remove(kernel_dir + ".log", error);
      // The runtime dir of the gateway that started a re-attached kernel goes once empty.
      const std::filesystem::path parent = std::filesystem::path(kernel_dir).parent_path();
      if (parent != std::filesystem::path(deps_.runtime_dir)) ::rmdir(parent.c_str());
    }
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
    if (absl::Status imported = ImportRequestedNotebook(*session, request.notebook_ipynb());
        !imported.ok()) {
      if (uid >= 0) deps_.uid_pool->Release(uid);
      return imported;
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
                                [weak]() -> std::optional<StateStore::KernelSnapshot> {
                                  std::shared_ptr<KernelSession> session = weak.lock();
                                  if (session == nullptr) return std::nullopt;
                                  return session->SaveState();
                                });
  }
  return absl::OkStatus();
}

int SessionRegistry::IdleTimeoutFor(const v1::StartKernelRequest& request) const {
  return request.idle_timeout_seconds() > 0 ? request.idle_timeout_seconds()
                                            : deps_.config->default_idle_timeout_seconds;
}

bool SessionRegistry::Poolable(const v1::StartKernelRequest& request) const {
  return (request.kernel_spec().empty() ||
          request.kernel_spec() == deps_.config->default_kernel_spec) &&
         request.env().empty() && !request.has_limits();
}

std::shared_ptr<KernelSession> SessionRegistry::TakePooled(const v1::StartKernelRequest& request) {
  if (deps_.config->pool_size <= 0 || !Poolable(request)) return nullptr;
  std::shared_ptr<KernelSession> taken;
  std::vector<std::shared_ptr<KernelSession>> unusable;
  {
    absl::MutexLock lock(&mutex_);
    while (!pool_.empty() && taken == nullptr) {
      std::shared_ptr<KernelSession> session = std::move(pool_.front());
      pool_.pop_front();
      if (session->Claim(request, IdleTimeoutFor(request))) {
        taken = std::move(session);
      } else {
        unusable.push_back(std::move(session));
        ++pool_closing_;
      }
    }
  }
  // Dead or restarting in the pool: not handed out; they go (outside the lock: a session may
  // close at once, and its on_closed takes the lock), and the pool refills.
  for (const auto& session : unusable) session->Shutdown(PoolKernelClosed());
  if (!unusable.empty() && taken == nullptr) FillPool();
  return taken;
}

absl::AnyInvocable<void()> SessionRegistry::PoolKernelClosed() {
  return [this, alive = std::weak_ptr<SessionRegistry*>(alive_)]() {
    if (alive.lock() == nullptr) return;
    absl::MutexLock lock(&mutex_);
    --pool_closing_;
  };
}

absl::Status SessionRegistry::StartPooled(std::shared_ptr<KernelSession> session,
                                          const v1::StartKernelRequest& request,
                                          StartCallback& done) {
  absl::Status status;
  bool has_cells = false;
  if (!request.notebook_ipynb().empty()) {
    status = ImportRequestedNotebook(*session, request.notebook_ipynb());
    has_cells = status.ok();
  }
  if (status.ok()) status = AddSession(session);
  if (!status.ok()) {
    // Unchanged but for what a later Claim sets again: back to the front of the pool (unless
    // it holds the request's cells now).
    bool returned = false;
    {
      absl::MutexLock lock(&mutex_);
      if (!draining_ && !has_cells) {
        pool_.push_front(session);
        returned = true;
      }
    }
    if (!returned) session->Shutdown(nullptr);
    return status;
  }
  obs::Log(obs::LogLevel::kInfo, "kernel_started",
           {{"kernel_id", session->kernel_id()}, {"from_pool", "true"},
            {"pid", absl::StrCat(session->Describe().pid())}});
  RefillPoolLater();
  // Its file is written now (a pooled kernel has changed nothing since it was ready): once on
  // disk, the client hears of it.
  session->AfterSaved([session, done = std::move(done)]() mutable { done(session->Describe()); });
  return absl::OkStatus();
}

void SessionRegistry::RefillPoolLater() {
  const absl::Duration delay = deps_.config->pool_refill_delay;
  if (delay <= absl::ZeroDuration()) {
    FillPool();
    return;
  }
  deps_.loop->PostAfter(delay, [alive = std::weak_ptr<SessionRegistry*>(alive_)]() {
    if (std::shared_ptr<SessionRegistry*> registry = alive.lock()) (*registry)->FillPool();
  });
}

void SessionRegistry::FillPool() {
  const GatewayConfig& config = *deps_.config;
  while (true) {
    {
      absl::MutexLock lock(&mutex_);
      const size_t pooled = pool_.size() + pool_starting_.size() + pool_creating_;
      if (draining_ || pooled >= static_cast<size_t>(config.pool_size)) return;
      ++pool_creating_;  // its slot, while NewSession runs without the lock
    }
    absl::StatusOr<std::string> kernel_id = NewKernelId();
    absl::StatusOr<NewSessionResult> created =
        kernel_id.ok() ? NewSession(*kernel_id, v1::StartKernelRequest(), config.default_limits,
                                    /*restored=*/nullptr)
                       : absl::StatusOr<NewSessionResult>(kernel_id.status());
    std::weak_ptr<SessionRegistry*> alive = alive_;
    // Try again later: when a slot frees up (max kernels), or the kernel starts again.
    auto retry_later = [this, alive]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
      if (pool_retry_scheduled_ || draining_) return;
      pool_retry_scheduled_ = true;
      deps_.loop->PostAfter(absl::Seconds(5), [alive]() {
        std::shared_ptr<SessionRegistry*> registry = alive.lock();
        if (registry == nullptr) return;
        {
          absl::MutexLock lock(&(*registry)->mutex_);
          (*registry)->pool_retry_scheduled_ = false;
        }
        (*registry)->FillPool();
      });
    };
    if (!created.ok()) {
      absl::MutexLock lock(&mutex_);
      --pool_creating_;
      retry_later();
      return;
    }
    std::shared_ptr<KernelSession> session = std::move(created->session);
    bool stopping = false;
    {
      absl::MutexLock lock(&mutex_);
      --pool_creating_;
      stopping = draining_;
      if (!stopping) pool_starting_.insert(session);
    }
    if (stopping) {  // ShutdownPool has run: this one is not started at all
      session->Shutdown(nullptr);
      return;
    }
    std::weak_ptr<KernelSession> weak = session;
    session->Start([this, alive, weak, retry_later](absl::Status status) mutable {
      std::shared_ptr<SessionRegistry*> registry = alive.lock();
      std::shared_ptr<KernelSession> session = weak.lock();
      if (registry == nullptr || session == nullptr) return;
      bool keep = false;
      size_t ready = 0;
      {
        absl::MutexLock lock(&mutex_);
        if (pool_starting_.erase(session) == 0) return;  // ShutdownPool took it meanwhile
        keep = status.ok() && !draining_;
        if (keep) {
          pool_.push_back(session);
          ready = pool_.size();
        } else {
          ++pool_closing_;  // ShutdownPool waits for it too
          if (!status.ok()) retry_later();
        }
      }
      if (!keep) {
        session->Shutdown(PoolKernelClosed());
        if (!status.ok()) {
          obs::Log(obs::LogLevel::kWarning, "pool_kernel_failed",
                   {{"error", std::string(status.message())}});
        }
        return;
      }
      obs::Log(obs::LogLevel::kInfo, "kernel_pooled",
               {{"pid", absl::StrCat(session->Describe().pid())},
                {"pool_ready", absl::StrCat(ready)}});
    });
  }
}

void SessionRegistry::ShutdownPool(absl::Time deadline) {
  // Ready and starting alike: a starting one left alone would hold its sockets open for ever.
  std::vector<std::shared_ptr<KernelSession>> pooled;
  {
    absl::MutexLock lock(&mutex_);
    pooled.assign(pool_.begin(), pool_.end());
    pooled.insert(pooled.end(), pool_starting_.begin(), pool_starting_.end());
    pool_.clear();
    pool_starting_.clear();
    pool_closing_ += static_cast<int>(pooled.size());
  }
  for (const auto& session : pooled) session->Shutdown(PoolKernelClosed());
  absl::MutexLock lock(&mutex_);
  auto all_gone = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) { return pool_closing_ == 0; };
  mutex_.AwaitWithDeadline(absl::Condition(&all_gone), deadline);
}

// Counts and times a start, and logs a cold one (a pooled one is logged where it is taken).
SessionRegistry::StartCallback SessionRegistry::ObserveStart(obs::StartSource source,
                                                            StartCallback done) {
  return [source, began = absl::Now(), done = std::move(done)](
             absl::StatusOr<v1::Kernel> kernel) mutable {
    const absl::Duration took = absl::Now() - began;
    if (kernel.ok()) {
      obs::Metrics::Get().KernelStarted(source, took);
      if (source == obs::StartSource::kCold) {
        obs::Log(obs::LogLevel::kInfo, "kernel_started",
                 {{"kernel_id", kernel->kernel_id()}, {"from_pool", "false"},
                  {"pid", absl::StrCat(kernel->pid())},
                  {"took_ms", absl::StrCat(absl::ToInt64Milliseconds(took))}});
      }
    } else {
      obs::Metrics::Get().KernelStartFailed(source);
      obs::Log(obs::LogLevel::kWarning, "kernel_start_failed",
               {{"error", std::string(kernel.status().message())}});
    }
    done(std::move(kernel));
  };
}

absl::Status SessionRegistry::StartKernel(const v1::StartKernelRequest& request,
                                          const kernel::ResourceLimits& limits,
                                          StartCallback done) {
  if (std::shared_ptr<KernelSession> pooled = TakePooled(request)) {
    StartCallback observed = ObserveStart(obs::StartSource::kPooled, std::move(done));
    absl::Status status = StartPooled(std::move(pooled), request, observed);
    if (!status.ok()) obs::Metrics::Get().KernelStartFailed(obs::StartSource::kPooled);
    return status;
  }
  absl::Status status =
      StartCold(request, limits, ObserveStart(obs::StartSource::kCold, std::move(done)));
  if (!status.ok()) obs::Metrics::Get().KernelStartFailed(obs::StartSource::kCold);
  return status;
}

absl::Status SessionRegistry::StartCold(const v1::StartKernelRequest& request,
                                        const kernel::ResourceLimits& limits, StartCallback done) {
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

void SessionRegistry::RestoreKernels(std::vector<internal::KernelState> states,
                                     const LimitsResolver& limits_for,
                                     const RestoreObserver& observe) {
  // Kernels to re-attach first: their uids are taken before a fresh kernel's uid is handed out
  // (which kills whatever runs as it).
  std::stable_partition(states.begin(), states.end(),
                        [](const internal::KernelState& state) { return state.has_process(); });
  for (const internal::KernelState& state : states) {
    observe(state, RestoreKernel(state, limits_for(state.start_request())));
  }
}

void SessionRegistry::DetachAll() {
  ShutdownPool(absl::Now() + absl::Seconds(10));  // nobody's kernels yet: nothing to keep
  const std::vector<std::shared_ptr<KernelSession>> sessions = List();
  for (const auto& session : sessions) session->Detach();
  // While the sessions are still here to say what they are.
  if (deps_.state_store != nullptr) deps_.state_store->Flush();
}

absl::StatusOr<std::shared_ptr<KernelSession>> SessionRegistry::Find(
    const std::string& kernel_id) const {
  absl::MutexLock lock(&mutex_);
  auto it = sessions_.find(kernel_id);
  if (it == sessions_.end()) {
    const std::string& here = deps_.config->kernel_id_prefix;
    if (const std::string there = ReplicaOf(kernel_id);
        !here.empty() && !there.empty() && there != here) {
      return absl::NotFoundError(absl::StrCat(
          "kernel_id: no kernel '", kernel_id, "' here: its id names replica '", there,
          "' and this is '", here, "'; send calls for it to that replica"));
    }
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
  ShutdownPool(deadline);
  absl::MutexLock lock(&mutex_);
  auto all_gone = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) { return sessions_.empty(); };
  mutex_.AwaitWithDeadline(absl::Condition(&all_gone), deadline);
}

}  // namespace cellgate::session
