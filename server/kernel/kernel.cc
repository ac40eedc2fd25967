#include "server/kernel/kernel.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include <zmq_addon.hpp>

#include "absl/strings/str_cat.h"
#include "server/common/huge_pages.h"
#include "server/kernel/cgroup.h"
#include "server/kernel/launch_plan.h"
#include "server/obs/metrics.h"
#include "server/protocol/connection_info.h"
#include "server/protocol/message_signer.h"
#include "server/protocol/wire_codec.h"

namespace cellgate::kernel {
namespace {

namespace fs = std::filesystem;
using protocol::Channel;
using protocol::Message;

constexpr size_t kMaxUnixSocketPath = 107;
// What one socket may take of a loop round, so that a flooding kernel can't starve the others.
constexpr int kMaxMessagesPerSocketPerRound = 256;
constexpr size_t kMaxBytesPerSocketPerRound = 4u << 20;

std::string RandomHexKey() {
  // A fresh per-kernel HMAC key: a UUID's worth of randomness, twice.
  std::string key = protocol::NewMessageId() + protocol::NewMessageId();
  std::erase(key, '-');
  return key;
}

absl::StatusOr<std::vector<int>> PickFreeTcpPorts(int count) {
  std::vector<int> fds;
  std::vector<int> ports;
  absl::Status status;
  for (int i = 0; i < count && status.ok(); ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      status = absl::UnavailableError(absl::StrCat("no free tcp port: ", std::strerror(errno)));
    } else {
      ports.push_back(ntohs(address.sin_port));
    }
    if (fd >= 0) fds.push_back(fd);
  }
  for (int fd : fds) ::close(fd);
  if (!status.ok()) return status;
  return ports;
}

std::string LimitHint(const ExitStatus& status, const ResourceLimits& limits) {
  if (!status.signaled) return "";
  switch (status.signal) {
    case SIGXCPU:
      return absl::StrCat(" (CPU time limit of ", limits.cpu_seconds, " s reached)");
    case SIGXFSZ:
      return absl::StrCat(" (file size limit of ", limits.max_file_size_bytes >> 20,
                          " MiB reached)");
    case SIGSEGV:
    case SIGABRT:
    case SIGBUS:
      // A crash, or C code that did not check an allocation the limit refused: can't tell.
      if (limits.address_space_bytes > 0) {
        return absl::StrCat(" (a crash; if it was allocating memory, the address-space limit of ",
                            limits.address_space_bytes >> 20, " MiB)");
      }
      return "";
    case SIGKILL:
      // The gateway's own kills carry their reason; this one came from elsewhere.
      return " (not sent by the gateway: the out-of-memory killer, or another process)";
    default:
      return "";
  }
}

struct PendingRequest {
  RequestCallbacks callbacks;
  bool waits_for_idle = false;
  bool replied = false;
  bool idle = false;
  bool iopub_incomplete = false;  // completed without seeing `status: idle`
  Message reply;
  int64_t output_bytes = 0;  // content bytes of its output messages
  bool flooding = false;     // past callbacks.output_budget_bytes
};

bool IsOutputMessage(std::string_view type) {
  return type == "stream" || type == "display_data" || type == "update_display_data" ||
         type == "execute_result";
}

}  // namespace

std::string ReadFileTail(const std::string& path, size_t max_bytes) {
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) return "";
  const std::streamoff size = file.tellg();
  const std::streamoff start = size > static_cast<std::streamoff>(max_bytes)
                                   ? size - static_cast<std::streamoff>(max_bytes)
                                   : 0;
  file.seekg(start);
  std::string tail(static_cast<size_t>(size - start), '\0');
  file.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  return tail;
}

// The loop-thread side of a Kernel. Every method runs on the I/O loop.
class KernelCore : public PollSource, public std::enable_shared_from_this<KernelCore> {
 public:
  KernelCore(KernelIoLoop& loop, KernelOptions options, KernelEvents events,
             Kernel::ReadyCallback on_ready, std::string session_id, std::string log_path)
      : loop_(loop),
        options_(std::move(options)),
        events_(std::move(events)),
        on_ready_(std::move(on_ready)),
        session_id_(std::move(session_id)),
        log_path_(std::move(log_path)) {}

  ~KernelCore() override = default;

  void Launch() {
    absl::Status status = LaunchProcessAndConnect();
    if (!status.ok()) {
      phase_ = KernelPhase::kExited;
      SetSnapshot(phase_);
      FailStart(status);
      CleanUpFiles();
      return;
    }
    BeginStartup();
  }

  void Attach(const KernelProcess& process) {
    absl::Status status = AdoptProcessAndConnect(process);
    if (!status.ok()) {
      phase_ = KernelPhase::kExited;
      SetSnapshot(phase_);
      FailStart(status);
      return;
    }
    BeginStartup();
  }

  // Until ready: kernel_info nudges, the startup deadline, and the exit watched.
  void BeginStartup() {
    loop_.AddPollSource(shared_from_this());
    SetSnapshot(KernelPhase::kStarting);
    std::weak_ptr<KernelCore> weak = weak_from_this();
    startup_timer_ = loop_.RunAfter(options_.startup_timeout, [weak]() {
      if (auto self = weak.lock()) self->OnStartupTimeout();
    });
    if (child_->pidfd() < 0) ScheduleReapPoll();
    Nudge();
  }

  void Send(Message message, RequestCallbacks callbacks, bool on_control, bool waits_for_idle) {
    if (phase_ == KernelPhase::kExited || closed_) {
      if (callbacks.on_done) {
        callbacks.on_done({RequestCompletion::Kind::kClosed, {}, "kernel is not running"});
      }
      return;
    }
    const std::string msg_id = message.msg_id();
    PendingRequest& pending = pending_[msg_id];
    pending.callbacks = std::move(callbacks);
    pending.waits_for_idle = waits_for_idle;
    if (phase_ == KernelPhase::kStarting) {
      queued_.push_back({std::move(message), on_control});
      return;
    }
    SendNow(message, on_control ? *control_ : *shell_);
  }

  void Interrupt() {
    if (!child_ || phase_ == KernelPhase::kExited) return;
    if (options_.spec.interrupt_mode == InterruptMode::kSignal) {
      child_->SignalGroup(SIGINT);
    } else {
      SendNow(protocol::MakeMessage("interrupt_request", nlohmann::json::object(), session_id_),
              *control_);
    }
  }

  void Kill(std::string reason) {
    if (!child_ || phase_ == KernelPhase::kExited || closed_) return;
    kill_reason_ = std::move(reason);
    child_->SignalGroup(SIGKILL);
  }

  void Shutdown(absl::AnyInvocable<void(const ExitStatus&)> on_exited) {
    if (phase_ == KernelPhase::kExited || closed_) {
      if (on_exited) on_exited(exit_status_.value_or(ExitStatus{}));
      return;
    }
    if (on_exited) on_exited_.push_back(std::move(on_exited));
    if (phase_ == KernelPhase::kShuttingDown) return;
    phase_ = KernelPhase::kShuttingDown;
    SetSnapshot(phase_);
    SendNow(protocol::MakeMessage("shutdown_request", {{"restart", false}}, session_id_),
            *control_);
    std::weak_ptr<KernelCore> weak = weak_from_this();
    loop_.RunAfter(options_.shutdown_grace, [weak]() {
      auto self = weak.lock();
      if (!self || self->phase_ == KernelPhase::kExited) return;
      self->child_->SignalGroup(SIGTERM);
      self->loop_.RunAfter(self->options_.terminate_grace, [weak]() {
        auto self = weak.lock();
        if (self && self->phase_ != KernelPhase::kExited) self->child_->SignalGroup(SIGKILL);
      });
    });
  }

  void Detach() {
    if (closed_) return;
    closed_ = true;
    events_ = KernelEvents{};
    on_ready_ = nullptr;
    FailAllPending(RequestCompletion::Kind::kClosed,
                   "the gateway is stopping; the kernel goes on running");
    on_exited_.clear();
    Disconnect();
    if (child_) child_->Release();
    if (cgroup_ != nullptr) cgroup_->Release();
  }

  // The handle is gone: kill now, reap, and never call back again.
  void Close() {
    if (closed_) return;
    closed_ = true;
    events_ = KernelEvents{};
    on_ready_ = nullptr;
    if (child_ && !child_->exited()) {
      child_->SignalGroup(SIGKILL);
      while (!child_->TryReap().has_value()) {
        // SIGKILL was sent: the exit is imminent. Wait on the pidfd if we have one.
        if (child_->pidfd() >= 0) {
          zmq_pollitem_t item{nullptr, child_->pidfd(), ZMQ_POLLIN, 0};
          zmq_poll(&item, 1, 100);
        } else {
          ::usleep(1000);
        }
      }
      child_->SignalGroup(SIGKILL);  // anything the leader left in its group
    }
    cgroup_.reset();  // and anything that left the group
    FailAllPending(RequestCompletion::Kind::kClosed, "kernel was closed");
    on_exited_.clear();
    Disconnect();
    CleanUpFiles();
  }

  void AppendPollItems(std::vector<zmq_pollitem_t>& items) override {
    if (shell_) {
      for (zmq::socket_t* socket : {&*shell_, &*control_, &*stdin_, &*iopub_, &*heartbeat_}) {
        items.push_back(zmq_pollitem_t{socket->handle(), 0, ZMQ_POLLIN, 0});
      }
    }
    if (child_ && child_->pidfd() >= 0 && !child_->exited()) {
      items.push_back(zmq_pollitem_t{nullptr, child_->pidfd(), ZMQ_POLLIN, 0});
    }
  }

  void OnPolled(std::span<const zmq_pollitem_t> items) override {
    size_t index = 0;
    if (shell_) {
      if (items[0].revents & ZMQ_POLLIN) Drain(*shell_, [this](Message m) { OnReply(m); });
      if (items[1].revents & ZMQ_POLLIN) Drain(*control_, [this](Message m) { OnReply(m); });
      if (items[2].revents & ZMQ_POLLIN) Drain(*stdin_, [](Message) {});
      if (items[3].revents & ZMQ_POLLIN) {
        Drain(
            *iopub_, [this](Message m) { OnIopub(std::move(m)); },
            [this](const Message& envelope, size_t content_bytes) {
              return HandleIopubContent(envelope, content_bytes);
            });
      }
      if (items[4].revents & ZMQ_POLLIN) DrainHeartbeat();
      index = 5;
    }
    if (index < items.size() && (items[index].revents & ZMQ_POLLIN)) CheckExited();
  }

  // Snapshot for the handle's accessors.
  mutable absl::Mutex snapshot_mutex;
  KernelPhase snapshot_phase ABSL_GUARDED_BY(snapshot_mutex) = KernelPhase::kStarting;
  int snapshot_pid ABSL_GUARDED_BY(snapshot_mutex) = 0;
  std::optional<KernelProcess> snapshot_process ABSL_GUARDED_BY(snapshot_mutex);
  KernelInfo snapshot_info ABSL_GUARDED_BY(snapshot_mutex);
  IopubTraffic snapshot_traffic ABSL_GUARDED_BY(snapshot_mutex);

 private:
  absl::Status PrepareKernelDir() {
    const std::string& dir = options_.kernel_dir;
    // It may exist already: a restarted kernel keeps its workspace.
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::InternalError(
          absl::StrCat("cannot create kernel dir ", dir, ": ", std::strerror(errno)));
    }
    for (const char* stale : {"/.zmq-1", "/.zmq-2", "/.zmq-3", "/.zmq-4", "/.zmq-5",
                              "/.connection.json"}) {
      ::unlink(absl::StrCat(dir, stale).c_str());
    }
    const std::string tmp = absl::StrCat(dir, "/tmp");
    ::mkdir(tmp.c_str(), 0700);
    if (options_.policy.uid >= 0) {
      for (const std::string& path : {dir, tmp}) {
        if (::chown(path.c_str(), options_.policy.uid, options_.policy.gid) != 0) {
          return absl::InternalError(
              absl::StrCat("cannot chown ", path, ": ", std::strerror(errno)));
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status LaunchProcessAndConnect() {
    if (options_.transport != "ipc" && options_.transport != "tcp") {
      return absl::InvalidArgumentError(
          absl::StrCat("transport must be ipc or tcp, not '", options_.transport, "'"));
    }
    protocol::ConnectionInfo connection;
    connection.transport = options_.transport;
    connection.key = RandomHexKey();
    connection.kernel_name = options_.spec.name;
    if (options_.transport == "ipc") {
      connection.ip = absl::StrCat(options_.kernel_dir, "/.zmq");
      connection.shell_port = 1;
      connection.iopub_port = 2;
      connection.stdin_port = 3;
      connection.control_port = 4;
      connection.hb_port = 5;
      if (connection.ip.size() + 2 > kMaxUnixSocketPath) {
        return absl::InvalidArgumentError(
            absl::StrCat("kernel dir path too long for unix sockets (", connection.ip.size(),
                         " bytes; at most ", kMaxUnixSocketPath - 2, "): ", options_.kernel_dir));
      }
    } else {
      absl::StatusOr<std::vector<int>> ports = PickFreeTcpPorts(5);
      if (!ports.ok()) return ports.status();
      connection.ip = "127.0.0.1";
      connection.shell_port = (*ports)[0];
      connection.iopub_port = (*ports)[1];
      connection.stdin_port = (*ports)[2];
      connection.control_port = (*ports)[3];
      connection.hb_port = (*ports)[4];
    }
    absl::StatusOr<std::unique_ptr<protocol::MessageSigner>> signer =
        protocol::MakeMessageSigner(connection.signature_scheme, connection.key);
    if (!signer.ok()) return signer.status();
    codec_ = std::make_unique<protocol::WireCodec>(*std::move(signer));

    if (absl::Status status = PrepareKernelDir(); !status.ok()) return status;
    dir_created_ = true;
    const std::string connection_file = absl::StrCat(options_.kernel_dir, "/.connection.json");
    if (absl::Status status = protocol::WriteConnectionFile(connection, connection_file);
        !status.ok()) {
      return status;
    }
    if (options_.policy.uid >= 0 &&
        ::chown(connection_file.c_str(), options_.policy.uid, options_.policy.gid) != 0) {
      return absl::InternalError(absl::StrCat("cannot chown connection file: ",
                                              std::strerror(errno)));
    }

    LaunchRequest request;
    request.spec = options_.spec;
    request.connection_file = connection_file;
    request.working_dir = options_.kernel_dir;
    request.log_path = log_path_;
    request.extra_env = options_.env;
    request.policy = options_.policy;
    request.bwrap_path = options_.bwrap_path;
    request.die_with_parent = options_.die_with_parent;
    absl::StatusOr<LaunchPlan> plan = BuildLaunchPlan(request);
    if (!plan.ok()) return plan.status();
    if (options_.cgroups != nullptr) {
      static std::atomic<uint64_t> launches{0};
      const std::string name = absl::StrCat(
          std::filesystem::path(options_.kernel_dir).filename().string(), "-", ++launches);
      absl::StatusOr<std::unique_ptr<KernelCgroup>> cgroup = options_.cgroups->Create(
          name, CgroupLimits{.memory_bytes = options_.cgroup_memory_bytes,
                             .max_processes = options_.policy.limits.max_processes});
      if (!cgroup.ok()) return cgroup.status();
      cgroup_ = *std::move(cgroup);
      plan->cgroup_procs_fds = cgroup_->procs_fds();
    }
    absl::StatusOr<ChildProcess> child = SpawnChild(*plan);
    if (cgroup_ != nullptr) cgroup_->CloseProcsFds();
    if (!child.ok()) return child.status();
    child_.emplace(*std::move(child));
    KernelProcess process;
    process.pid = child_->pid();
    process.start_time = ProcessStartTime(child_->pid()).value_or(0);
    process.connection = connection;
    if (cgroup_ != nullptr) process.cgroup_dirs = cgroup_->dirs();
    SetProcessSnapshot(std::move(process));
    return Connect(connection);
  }

  absl::Status AdoptProcessAndConnect(const KernelProcess& process) {
    child_.emplace(ChildProcess::Adopt(process.pid, OpenPidfd(process.pid)));
    dir_created_ = true;  // its files are this kernel's from now on
    if (options_.cgroups != nullptr && !process.cgroup_dirs.empty()) {
      absl::StatusOr<std::unique_ptr<KernelCgroup>> cgroup = options_.cgroups->Adopt(
          process.cgroup_dirs,
          CgroupLimits{.memory_bytes = options_.cgroup_memory_bytes,
                       .max_processes = options_.policy.limits.max_processes});
      // Without it the kernel keeps its rlimits and uid; only the cgroup's kill-all is lost.
      if (cgroup.ok()) cgroup_ = *std::move(cgroup);
    }
    absl::StatusOr<std::unique_ptr<protocol::MessageSigner>> signer =
        protocol::MakeMessageSigner(process.connection.signature_scheme, process.connection.key);
    if (!signer.ok()) return signer.status();
    codec_ = std::make_unique<protocol::WireCodec>(*std::move(signer));
    attached_ = true;
    SetProcessSnapshot(process);
    return Connect(process.connection);
  }

  void SetProcessSnapshot(KernelProcess process) {
    absl::MutexLock lock(&snapshot_mutex);
    snapshot_pid = process.pid;
    snapshot_process = std::move(process);
  }

  absl::Status Connect(const protocol::ConnectionInfo& connection) {
    try {
      zmq::context_t& context = loop_.zmq_context();
      auto make = [&](zmq::socket_type type, Channel channel) {
        zmq::socket_t socket(context, type);
        socket.set(zmq::sockopt::linger, 0);
        socket.connect(connection.Endpoint(channel));
        return socket;
      };
      shell_.emplace(make(zmq::socket_type::dealer, Channel::kShell));
      control_.emplace(make(zmq::socket_type::dealer, Channel::kControl));
      stdin_.emplace(make(zmq::socket_type::dealer, Channel::kStdin));
      heartbeat_.emplace(make(zmq::socket_type::dealer, Channel::kHeartbeat));
      zmq::socket_t iopub(context, zmq::socket_type::sub);
      iopub.set(zmq::sockopt::linger, 0);
      iopub.set(zmq::sockopt::rcvhwm, 0);  // never drop output on our side
      iopub.set(zmq::sockopt::subscribe, "");
      iopub.connect(connection.Endpoint(Channel::kIoPub));
      iopub_.emplace(std::move(iopub));
    } catch (const zmq::error_t& error) {
      return absl::InternalError(absl::StrCat("zmq connect failed: ", error.what()));
    }
    return absl::OkStatus();
  }

  void Disconnect() {
    loop_.RemovePollSource(this);
    shell_.reset();
    control_.reset();
    stdin_.reset();
    iopub_.reset();
    heartbeat_.reset();
  }

  void CleanUpFiles() {
    if (dir_created_ && options_.remove_kernel_dir_on_close) {
      std::error_code error;
      fs::remove_all(options_.kernel_dir, error);
    }
  }

  void SendNow(const Message& message, zmq::socket_t& socket) {
    std::vector<std::string> frames = codec_->Encode(message);
    bool sent = true;
    try {
      for (size_t i = 0; i < frames.size() && sent; ++i) {
        const auto flags = i + 1 < frames.size() ? zmq::send_flags::sndmore | zmq::send_flags::dontwait
                                                 : zmq::send_flags::dontwait;
        sent = socket.send(zmq::buffer(frames[i]), flags).has_value();
      }
    } catch (const zmq::error_t&) {
      sent = false;
    }
    loop_.CheckSoon(this);  // the send may have taken the socket's readiness signal
    if (!sent) {
      Complete(message.msg_id(), RequestCompletion{RequestCompletion::Kind::kSendFailed, {},
                                                   "could not send the request to the kernel"});
    }
  }

  template <typename Handler>
  void Drain(zmq::socket_t& socket, Handler handler) {
    Drain(socket, std::move(handler),
          [](const Message&, size_t) { return protocol::WireCodec::ContentHandling::kParse; });
  }

  template <typename Handler>
  void Drain(zmq::socket_t& socket, Handler handler, protocol::WireCodec::ContentFilter filter) {
    size_t bytes = 0;
    for (int i = 0; i < kMaxMessagesPerSocketPerRound && bytes < kMaxBytesPerSocketPerRound &&
                    !closed_;
         ++i) {
      std::vector<zmq::message_t> parts;
      std::optional<size_t> received;
      try {
        received = zmq::recv_multipart(socket, std::back_inserter(parts), zmq::recv_flags::dontwait);
      } catch (const zmq::error_t&) {
        return;
      }
      if (!received) return;
      std::vector<std::string> frames;
      frames.reserve(parts.size());
      size_t message_bytes = 0;
      for (zmq::message_t& part : parts) {
        message_bytes += part.size();
        std::string& frame = frames.emplace_back();
        // A big part's pages cost more to fault in than to fill. The copy's are advised before
        // it is made; libzmq's buffer is filled before the gateway sees it, but the next big
        // part is likely received at the same addresses, which keep the advice.
        common::AdviseHugePages(part.data(), part.size());
        common::ReserveInHugePages(frame, part.size() + protocol::kFrameTailroom);
        frame.append(part.data<char>(), part.size());
      }
      bytes += message_bytes;
      absl::StatusOr<Message> message = codec_->Decode(std::move(frames), filter);
      if (&socket == &*iopub_) CountIopub(message.ok(), message_bytes);
      if (!message.ok()) continue;
      handler(*std::move(message));
      if (!shell_) return;  // the handler closed the connection
    }
  }

  // IOPub content is parsed, except output: its text goes to the output reader, which parses
  // it faster than the codec's parser does, unless it is output of a request past its output
  // budget, which is only counted.
  protocol::WireCodec::ContentHandling HandleIopubContent(const Message& envelope,
                                                          size_t content_bytes) {
    using Handling = protocol::WireCodec::ContentHandling;
    if (!IsOutputMessage(envelope.msg_type())) return Handling::kParse;
    auto it = pending_.find(envelope.parent_msg_id());
    if (it == pending_.end()) return Handling::kKeepText;
    PendingRequest& request = it->second;
    const bool over_budget = request.callbacks.output_budget_bytes > 0 &&
                             request.output_bytes > request.callbacks.output_budget_bytes;
    request.output_bytes += static_cast<int64_t>(content_bytes);
    return over_budget ? Handling::kSkip : Handling::kKeepText;
  }

  void DrainHeartbeat() {
    for (int i = 0; i < kMaxMessagesPerSocketPerRound; ++i) {
      zmq::message_t pong;
      std::optional<size_t> got;
      try {
        got = heartbeat_->recv(pong, zmq::recv_flags::dontwait);
      } catch (const zmq::error_t&) {
        return;
      }
      if (!got) return;
      awaiting_pong_ = false;
      if (!responsive_) {
        responsive_ = true;
        if (events_.on_heartbeat) events_.on_heartbeat(true);
      }
    }
  }

  void OnReply(const Message& message) {
    if (phase_ == KernelPhase::kStarting && message.msg_type() == "kernel_info_reply") {
      RecordKernelInfo(message);
      kernel_info_replied_ = true;
      MaybeReady();
      return;
    }
    auto it = pending_.find(message.parent_msg_id());
    if (it == pending_.end()) return;
    it->second.replied = true;
    it->second.reply = message;
    if (it->second.waits_for_idle && !it->second.idle) {
      // The kernel's IOPub PUB socket drops messages when its queue is full (ZMQ's default
      // high-water mark), and `status: idle` may be one of them: don't wait for it forever.
      std::weak_ptr<KernelCore> weak = weak_from_this();
      loop_.RunAfter(options_.iopub_grace, [weak, msg_id = it->first]() {
        auto self = weak.lock();
        if (!self) return;
        auto pending = self->pending_.find(msg_id);
        if (pending == self->pending_.end()) return;
        pending->second.idle = true;
        pending->second.iopub_incomplete = true;
        self->MaybeComplete(pending);
      });
    }
    MaybeComplete(it);
  }

  void OnIopub(Message message) {
    iopub_seen_ = true;
    if (phase_ == KernelPhase::kStarting) MaybeReady();
    const std::string type = message.msg_type();
    auto it = pending_.find(message.parent_msg_id());
    if (type == "status") {
      const std::string state = message.content.value("execution_state", "");
      if (events_.on_status) events_.on_status(state);
      if (state == "idle" && it != pending_.end()) {
        it->second.idle = true;
        MaybeComplete(it);
      }
      return;
    }
    if (message.unparsed_content_bytes > 0) {
      absl::MutexLock lock(&snapshot_mutex);
      snapshot_traffic.unparsed_output_bytes += message.unparsed_content_bytes;
    }
    if (it != pending_.end() && message.unparsed_content_bytes > 0) {
      PendingRequest& request = it->second;
      if (!request.flooding) {
        request.flooding = true;
        if (request.callbacks.on_output_flood) {
          request.callbacks.on_output_flood(request.output_bytes);
        }
      }
    } else if (it != pending_.end()) {
      if (it->second.callbacks.on_iopub) it->second.callbacks.on_iopub(std::move(message));
    } else if (events_.on_unrouted_iopub) {
      events_.on_unrouted_iopub(std::move(message));
    }
  }

  void MaybeComplete(std::map<std::string, PendingRequest>::iterator it) {
    PendingRequest& request = it->second;
    if (!request.replied || (request.waits_for_idle && !request.idle)) return;
    RequestCallbacks callbacks = std::move(request.callbacks);
    RequestCompletion completion{RequestCompletion::Kind::kReplied, std::move(request.reply), ""};
    completion.iopub_incomplete = request.iopub_incomplete;
    pending_.erase(it);
    if (callbacks.on_done) callbacks.on_done(std::move(completion));
  }

  void Complete(const std::string& msg_id, RequestCompletion completion) {
    auto it = pending_.find(msg_id);
    if (it == pending_.end()) return;
    RequestCallbacks callbacks = std::move(it->second.callbacks);
    pending_.erase(it);
    if (callbacks.on_done) callbacks.on_done(std::move(completion));
  }

  void FailAllPending(RequestCompletion::Kind kind, const std::string& reason) {
    std::map<std::string, PendingRequest> pending;
    pending.swap(pending_);
    queued_.clear();
    for (auto& [id, request] : pending) {
      if (request.callbacks.on_done) request.callbacks.on_done({kind, {}, reason});
    }
  }

  void RecordKernelInfo(const Message& reply) {
    KernelInfo info;
    const nlohmann::json& content = reply.content;
    info.raw = content;
    info.protocol_version = content.value("protocol_version", "");
    info.implementation = content.value("implementation", "");
    info.banner = content.value("banner", "");
    if (auto it = content.find("language_info"); it != content.end() && it->is_object()) {
      info.language = it->value("name", "");
      info.language_version = it->value("version", "");
    }
    absl::MutexLock lock(&snapshot_mutex);
    snapshot_info = std::move(info);
  }

  void Nudge() {
    if (phase_ != KernelPhase::kStarting) return;
    if (!iopub_seen_ || !kernel_info_replied_) {
      // Until IOPub delivers something, every kernel_info_request also makes the kernel publish
      // a status message; the first one that arrives proves the subscription is live.
      // An adopted kernel may still be executing what it was given before: shell would make
      // kernel_info wait for that, control answers at once.
      SendNow(protocol::MakeMessage("kernel_info_request", nlohmann::json::object(), session_id_),
              attached_ ? *control_ : *shell_);
    }
    std::weak_ptr<KernelCore> weak = weak_from_this();
    nudge_timer_ = loop_.RunAfter(options_.nudge_interval, [weak]() {
      if (auto self = weak.lock()) self->Nudge();
    });
  }

  void MaybeReady() {
    if (phase_ != KernelPhase::kStarting || !iopub_seen_ || !kernel_info_replied_) return;
    phase_ = KernelPhase::kReady;
    SetSnapshot(phase_);
    loop_.CancelTimer(startup_timer_);
    loop_.CancelTimer(nudge_timer_);
    std::vector<std::pair<Message, bool>> queued;
    queued.swap(queued_);
    for (auto& [message, on_control] : queued) SendNow(message, on_control ? *control_ : *shell_);
    if (on_ready_) std::exchange(on_ready_, nullptr)(absl::OkStatus());
    Heartbeat();
  }

  void Heartbeat() {
    if (phase_ == KernelPhase::kExited || closed_ || !heartbeat_) return;
    const absl::Time now = absl::Now();
    if (awaiting_pong_ && responsive_ && now - ping_sent_at_ > 3 * options_.heartbeat_interval) {
      responsive_ = false;
      if (events_.on_heartbeat) events_.on_heartbeat(false);
    }
    if (!awaiting_pong_) {
      try {
        if (heartbeat_->send(zmq::str_buffer("ping"), zmq::send_flags::dontwait)) {
          awaiting_pong_ = true;
          ping_sent_at_ = now;
        }
      } catch (const zmq::error_t&) {
      }
      loop_.CheckSoon(this);
    }
    std::weak_ptr<KernelCore> weak = weak_from_this();
    loop_.RunAfter(options_.heartbeat_interval, [weak]() {
      if (auto self = weak.lock()) self->Heartbeat();
    });
  }

  void OnStartupTimeout() {
    if (phase_ != KernelPhase::kStarting) return;
    FailStart(absl::UnavailableError(absl::StrCat(
        "kernel '", options_.spec.name, "' did not answer kernel_info within ",
        absl::FormatDuration(options_.startup_timeout), KernelLogSuffix())));
    child_->SignalGroup(SIGKILL);  // the exit is handled by CheckExited
  }

  void FailStart(const absl::Status& status) {
    if (on_ready_) std::exchange(on_ready_, nullptr)(status);
  }

  std::string KernelLogSuffix() const {
    std::string tail = ReadFileTail(log_path_, 2048);
    if (tail.empty()) return "";
    return absl::StrCat("; kernel output:\n", tail);
  }

  void ScheduleReapPoll() {
    std::weak_ptr<KernelCore> weak = weak_from_this();
    loop_.RunAfter(absl::Milliseconds(100), [weak]() {
      auto self = weak.lock();
      if (!self || self->closed_) return;
      self->CheckExited();
      if (self->phase_ != KernelPhase::kExited) self->ScheduleReapPoll();
    });
  }

  void CheckExited() {
    if (!child_ || !child_->TryReap().has_value() || phase_ == KernelPhase::kExited) return;
    const ExitStatus status = *child_->exit_status();
    child_->SignalGroup(SIGKILL);  // processes the kernel left behind in its group
    const bool was_starting = phase_ == KernelPhase::kStarting;
    const bool expected = phase_ == KernelPhase::kShuttingDown;
    phase_ = KernelPhase::kExited;
    exit_status_ = status;
    SetSnapshot(phase_);
    std::string reason = kill_reason_.empty()
                             ? status.Describe() + LimitHint(status, options_.policy.limits)
                             : kill_reason_;
    if (cgroup_ != nullptr) {
      if (kill_reason_.empty() && status.signaled && status.signal == SIGKILL &&
          cgroup_->OomKills() > 0) {
        reason = absl::StrCat("killed by SIGKILL (cgroup OOM: memory limit of ",
                              cgroup_->limits().memory_bytes >> 20, " MiB)");
      }
      cgroup_.reset();  // whatever the kernel left in its cgroup dies with it
    }
    if (was_starting) {
      FailStart(absl::UnavailableError(absl::StrCat("kernel '", options_.spec.name,
                                                    "' exited during startup: ", reason,
                                                    KernelLogSuffix())));
    }
    FailAllPending(expected ? RequestCompletion::Kind::kClosed
                            : RequestCompletion::Kind::kKernelDied,
                   expected ? "kernel was shut down" : reason);
    Disconnect();
    if (events_.on_exit) events_.on_exit(status, reason);
    for (auto& callback : on_exited_) callback(status);
    on_exited_.clear();
  }

  void CountIopub(bool verified, size_t bytes) {
    if (verified) obs::Metrics::Get().IopubReceived(bytes);
    absl::MutexLock lock(&snapshot_mutex);
    if (verified) {
      ++snapshot_traffic.messages;
      snapshot_traffic.bytes += bytes;
    } else {
      ++snapshot_traffic.rejected_messages;
    }
  }

  void SetSnapshot(KernelPhase phase) {
    absl::MutexLock lock(&snapshot_mutex);
    snapshot_phase = phase;
  }

  KernelIoLoop& loop_;
  const KernelOptions options_;
  KernelEvents events_;
  Kernel::ReadyCallback on_ready_;
  const std::string session_id_;
  const std::string log_path_;

  std::unique_ptr<protocol::WireCodec> codec_;
  std::optional<zmq::socket_t> shell_, control_, stdin_, iopub_, heartbeat_;
  std::optional<ChildProcess> child_;
  std::optional<ExitStatus> exit_status_;
  bool dir_created_ = false;
  bool closed_ = false;
  bool attached_ = false;  // the process was started by an earlier gateway

  KernelPhase phase_ = KernelPhase::kStarting;
  bool iopub_seen_ = false;
  bool kernel_info_replied_ = false;
  KernelIoLoop::TimerId startup_timer_ = 0;
  KernelIoLoop::TimerId nudge_timer_ = 0;
  std::map<std::string, PendingRequest> pending_;
  std::vector<std::pair<Message, bool>> queued_;  // sent before ready; bool: on control
  std::vector<absl::AnyInvocable<void(const ExitStatus&)>> on_exited_;

  bool awaiting_pong_ = false;
  bool responsive_ = true;
  std::string kill_reason_;  // why Kill() was called, if it was
  std::unique_ptr<KernelCgroup> cgroup_;
  absl::Time ping_sent_at_;
};

Kernel::Kernel(KernelIoLoop& loop, std::string kernel_dir, std::string log_path)
    : loop_(loop), kernel_dir_(std::move(kernel_dir)), log_path_(std::move(log_path)) {}

std::unique_ptr<Kernel> Kernel::NewHandle(KernelIoLoop& loop, KernelOptions options,
                                          KernelEvents events, ReadyCallback on_ready) {
  const std::string kernel_dir = options.kernel_dir;
  // The log sits beside the kernel dir, not in it: the kernel can't rewrite what it said.
  std::unique_ptr<Kernel> kernel(new Kernel(loop, kernel_dir, kernel_dir + ".log"));
  kernel->session_id_ = protocol::NewMessageId();
  kernel->core_ = std::make_shared<KernelCore>(loop, std::move(options), std::move(events),
                                               std::move(on_ready), kernel->session_id_,
                                               kernel->log_path_);
  return kernel;
}

std::unique_ptr<Kernel> Kernel::Start(KernelIoLoop& loop, KernelOptions options,
                                      KernelEvents events, ReadyCallback on_ready) {
  std::unique_ptr<Kernel> kernel =
      NewHandle(loop, std::move(options), std::move(events), std::move(on_ready));
  // Fork on the loop thread: PR_SET_PDEATHSIG follows the thread that forked.
  loop.Post([core = kernel->core_]() { core->Launch(); });
  return kernel;
}

std::unique_ptr<Kernel> Kernel::Attach(KernelIoLoop& loop, KernelOptions options,
                                       KernelProcess process, KernelEvents events,
                                       ReadyCallback on_ready) {
  std::unique_ptr<Kernel> kernel =
      NewHandle(loop, std::move(options), std::move(events), std::move(on_ready));
  loop.Post([core = kernel->core_, process = std::move(process)]() { core->Attach(process); });
  return kernel;
}

Kernel::~Kernel() {
  auto close = [core = core_]() { core->Close(); };
  if (loop_.IsLoopThread()) {
    close();
  } else {
    loop_.RunAndWait(close);
  }
  if (!detached_) ::unlink(log_path_.c_str());
}

void Kernel::Detach() {
  detached_ = true;
  auto detach = [core = core_]() { core->Detach(); };
  if (loop_.IsLoopThread()) {
    detach();
  } else {
    loop_.RunAndWait(detach);
  }
}

std::string Kernel::SendRequest(const std::string& msg_type, nlohmann::json content,
                                RequestCallbacks callbacks, bool on_control) {
  Message message = protocol::MakeMessage(msg_type, std::move(content), session_id_);
  std::string msg_id = message.msg_id();
  loop_.Post([core = core_, message = std::move(message), callbacks = std::move(callbacks),
              on_control]() mutable {
    core->Send(std::move(message), std::move(callbacks), on_control, /*waits_for_idle=*/true);
  });
  return msg_id;
}

std::string Kernel::Execute(const ExecuteRequest& request, RequestCallbacks callbacks) {
  nlohmann::json content = {
      {"code", request.code},
      {"silent", request.silent},
      {"store_history", request.store_history},
      {"user_expressions", nlohmann::json::object()},
      {"allow_stdin", false},
      {"stop_on_error", request.stop_on_error},
  };
  return SendRequest("execute_request", std::move(content), std::move(callbacks));
}

void Kernel::Interrupt() {
  loop_.Post([core = core_]() { core->Interrupt(); });
}

void Kernel::Kill(std::string reason) {
  loop_.Post([core = core_, reason = std::move(reason)]() mutable { core->Kill(std::move(reason)); });
}

void Kernel::Shutdown(absl::AnyInvocable<void(const ExitStatus&)> on_exited) {
  loop_.Post([core = core_, on_exited = std::move(on_exited)]() mutable {
    core->Shutdown(std::move(on_exited));
  });
}

KernelPhase Kernel::phase() const {
  absl::MutexLock lock(&core_->snapshot_mutex);
  return core_->snapshot_phase;
}

int Kernel::pid() const {
  absl::MutexLock lock(&core_->snapshot_mutex);
  return core_->snapshot_pid;
}

std::optional<KernelProcess> Kernel::process() const {
  absl::MutexLock lock(&core_->snapshot_mutex);
  return core_->snapshot_process;
}

KernelInfo Kernel::info() const {
  absl::MutexLock lock(&core_->snapshot_mutex);
  return core_->snapshot_info;
}

IopubTraffic Kernel::iopub_traffic() const {
  absl::MutexLock lock(&core_->snapshot_mutex);
  return core_->snapshot_traffic;
}

std::string Kernel::log_tail(size_t max_bytes) const { return ReadFileTail(log_path_, max_bytes); }

}  // namespace cellgate::kernel
