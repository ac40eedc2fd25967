#include "server/kernel/cell_analyzer.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <span>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/common/unique_fd.h"
#include "server/kernel/launch_plan.h"

namespace cellgate::kernel {
namespace {

absl::StatusOr<CellAnalysis> ParseReply(const nlohmann::json& reply) {
  CellAnalysis analysis;
  try {
    analysis.defines = reply.at("defines").get<std::vector<std::string>>();
    analysis.uses = reply.at("uses").get<std::vector<std::string>>();
    analysis.opaque = reply.at("opaque").get<bool>();
    analysis.reasons = reply.at("reasons").get<std::vector<std::string>>();
    analysis.error = reply.at("error").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    return absl::InternalError(absl::StrCat("the analyzer's reply is malformed: ", e.what()));
  }
  return analysis;
}

}  // namespace

// One running analyzer process: its pipes on the loop, the requests it owes an answer.
class CellAnalyzer::Connection : public PollSource,
                                 public std::enable_shared_from_this<Connection> {
 public:
  Connection(KernelIoLoop& loop, ChildProcess process, UniqueFd to_child, UniqueFd from_child,
             absl::Duration timeout, absl::AnyInvocable<void(const std::string&)> on_lost)
      : loop_(loop),
        process_(std::move(process)),
        to_child_(std::move(to_child)),
        from_child_(std::move(from_child)),
        timeout_(timeout),
        on_lost_(std::move(on_lost)) {}

  ~Connection() override {
    if (writer_ != nullptr) loop_.RemovePollSource(writer_.get());
    FailAll(absl::CancelledError("the analyzer was stopped"));
  }

  void AppendPollItems(std::vector<zmq_pollitem_t>& items) override {
    items.push_back({nullptr, from_child_.get(), ZMQ_POLLIN, 0});
    if (process_.pidfd() >= 0) items.push_back({nullptr, process_.pidfd(), ZMQ_POLLIN, 0});
  }

  void OnPolled(std::span<const zmq_pollitem_t> items) override {
    if (items[0].revents != 0) ReadReplies();
    if (lost_) return;
    if (items.size() > 1 && items[1].revents != 0) {
      process_.TryReap();
      // Replies it wrote before it died are still in the pipe.
      ReadReplies();
      if (!lost_) Lose(absl::StrCat("the analyzer process ended (", Describe(), ")"));
    }
  }

  void Send(std::string source, Callback done) {
    const uint64_t id = next_id_++;
    std::string line = nlohmann::json{{"id", id}, {"source", std::move(source)}}.dump(
        -1, ' ', false, nlohmann::json::error_handler_t::replace);
    line.push_back('\n');
    pending_.emplace(id, Pending{std::move(done), std::nullopt});
    if (pending_.size() == 1) ArmTimerOfOldest();
    outbox_.append(line);
    Flush();
  }

  bool lost() const { return lost_; }

 private:
  struct Pending {
    Callback done;
    std::optional<KernelIoLoop::TimerId> timer;  // the oldest request's only
  };

  // Replies come in order, so the timeout runs for the oldest request only, from when the one
  // before it was answered: a burst of requests is fine as long as the analyzer keeps going.
  void ArmTimerOfOldest() {
    if (pending_.empty()) return;
    const uint64_t id = pending_.begin()->first;
    std::weak_ptr<Connection> weak = weak_from_this();
    pending_.begin()->second.timer = loop_.RunAfter(timeout_, [weak, id]() {
      if (auto self = weak.lock()) self->OnTimeout(id);
    });
  }

  // Writes what the pipe takes now; the rest when it is writable again.
  class Writer : public PollSource {
   public:
    explicit Writer(std::weak_ptr<Connection> connection, int fd)
        : connection_(std::move(connection)), fd_(fd) {}
    void AppendPollItems(std::vector<zmq_pollitem_t>& items) override {
      items.push_back({nullptr, fd_, ZMQ_POLLOUT, 0});
    }
    void OnPolled(std::span<const zmq_pollitem_t>) override {
      if (auto connection = connection_.lock()) connection->Flush();
    }

   private:
    std::weak_ptr<Connection> connection_;
    int fd_;
  };

  void Flush() {
    while (!outbox_.empty() && !lost_) {
      const ssize_t n = ::write(to_child_.get(), outbox_.data(), outbox_.size());
      if (n > 0) {
        outbox_.erase(0, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      Lose(absl::StrCat("cannot write to the analyzer: ", std::strerror(errno)));
      return;
    }
    const bool waiting = !outbox_.empty() && !lost_;
    if (waiting && writer_ == nullptr) {
      writer_ = std::make_shared<Writer>(weak_from_this(), to_child_.get());
      loop_.AddPollSource(writer_);
    } else if (!waiting && writer_ != nullptr) {
      loop_.RemovePollSource(writer_.get());
      writer_.reset();
    }
  }

  void ReadReplies() {
    char buffer[16384];
    while (!lost_) {
      const ssize_t n = ::read(from_child_.get(), buffer, sizeof buffer);
      if (n > 0) {
        inbox_.append(buffer, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      ServeLines();
      Lose(n == 0 ? std::string("the analyzer closed its output")
                  : absl::StrCat("cannot read from the analyzer: ", std::strerror(errno)));
      return;
    }
    ServeLines();
  }

  void ServeLines() {
    size_t start = 0;
    for (size_t end; !lost_ && (end = inbox_.find('\n', start)) != std::string::npos;
         start = end + 1) {
      nlohmann::json reply = nlohmann::json::parse(
          inbox_.begin() + static_cast<std::ptrdiff_t>(start),
          inbox_.begin() + static_cast<std::ptrdiff_t>(end), nullptr, /*allow_exceptions=*/false);
      if (reply.is_discarded() || !reply.contains("id") || !reply["id"].is_number_unsigned()) {
        continue;  // not a reply of ours (a stray print): ignored
      }
      auto it = pending_.find(reply["id"].get<uint64_t>());
      if (it == pending_.end()) continue;  // timed out already
      Pending pending = std::move(it->second);
      pending_.erase(it);
      if (pending.timer.has_value()) loop_.CancelTimer(*pending.timer);
      if (!pending_.empty() && !pending_.begin()->second.timer.has_value()) ArmTimerOfOldest();
      std::move(pending.done)(ParseReply(reply));
    }
    inbox_.erase(0, start);
  }

  void OnTimeout(uint64_t id) {
    if (!pending_.contains(id) || lost_) return;
    // Replies come in order: everything behind this one is stuck too.
    Lose(absl::StrCat("the analyzer did not answer within ",
                      absl::FormatDuration(timeout_), "; it is restarted"));
  }

  void Lose(const std::string& why) {
    lost_ = true;
    if (writer_ != nullptr) {
      loop_.RemovePollSource(writer_.get());
      writer_.reset();
    }
    FailAll(absl::UnavailableError(why));
    // Last: the owner may drop this connection.
    auto on_lost = std::move(on_lost_);
    if (on_lost) on_lost(why);
  }

  void FailAll(const absl::Status& status) {
    std::map<uint64_t, Pending> pending = std::exchange(pending_, {});
    for (auto& [id, request] : pending) {
      if (request.timer.has_value()) loop_.CancelTimer(*request.timer);
      std::move(request.done)(status);
    }
  }

  std::string Describe() {
    const std::optional<ExitStatus>& status = process_.exit_status();
    return status.has_value() ? status->Describe() : "still running";
  }

  KernelIoLoop& loop_;
  ChildProcess process_;
  UniqueFd to_child_;
  UniqueFd from_child_;
  const absl::Duration timeout_;
  absl::AnyInvocable<void(const std::string&)> on_lost_;
  std::map<uint64_t, Pending> pending_;
  uint64_t next_id_ = 1;
  std::string outbox_;
  std::string inbox_;
  std::shared_ptr<Writer> writer_;
  bool lost_ = false;
};

CellAnalyzer::CellAnalyzer(KernelIoLoop& loop, Options options)
    : loop_(loop), options_(std::move(options)) {}

CellAnalyzer::~CellAnalyzer() {
  *alive_ = false;
  if (loop_.IsLoopThread()) {
    if (connection_ != nullptr) loop_.RemovePollSource(connection_.get());
    connection_.reset();
    return;
  }
  loop_.RunAndWait([this]() {
    if (connection_ != nullptr) loop_.RemovePollSource(connection_.get());
    connection_.reset();
  });
}

void CellAnalyzer::Analyze(std::string source, Callback done) {
  loop_.Post([this, alive = alive_, source = std::move(source), done = std::move(done)]() mutable {
    if (!*alive) {
      std::move(done)(absl::CancelledError("the analyzer was stopped"));
      return;
    }
    AnalyzeOnLoop(std::move(source), std::move(done));
  });
}

int CellAnalyzer::starts() const { return starts_; }

std::optional<CellAnalysis> CellAnalyzer::Cached(const std::string& source) const {
  absl::MutexLock lock(&cache_mutex_);
  const auto it = cache_.find(source);
  if (it == cache_.end()) return std::nullopt;
  return it->second;
}

void CellAnalyzer::AnalyzeOnLoop(std::string source, Callback done) {
  if (std::optional<CellAnalysis> cached = Cached(source)) {
    std::move(done)(*std::move(cached));
    return;
  }
  if (connection_ == nullptr) {
    if (absl::Now() < down_until_) {
      std::move(done)(absl::UnavailableError(
          absl::StrCat("the analyzer is restarting after: ", last_failure_)));
      return;
    }
    std::error_code error;
    std::filesystem::create_directories(options_.working_dir, error);
    int to_child[2], from_child[2];
    if (::pipe2(to_child, O_CLOEXEC) != 0) {
      std::move(done)(absl::UnavailableError("pipe2 failed"));
      return;
    }
    if (::pipe2(from_child, O_CLOEXEC) != 0) {
      ::close(to_child[0]);
      ::close(to_child[1]);
      std::move(done)(absl::UnavailableError("pipe2 failed"));
      return;
    }
    UniqueFd child_stdin(to_child[0]), our_end(to_child[1]), child_stdout(from_child[1]),
        their_end(from_child[0]);
    ::fcntl(our_end.get(), F_SETFL, O_NONBLOCK);
    ::fcntl(their_end.get(), F_SETFL, O_NONBLOCK);
    LaunchPlan plan;
    plan.argv = {options_.python, "-I", options_.script};  // -I: no user site, no PYTHON* env
    plan.env = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "HOME=" + options_.working_dir,
                "IPYTHONDIR=" + options_.working_dir + "/.ipython"};
    plan.working_dir = options_.working_dir;
    plan.log_path = options_.working_dir + "/analyzer.log";
    plan.policy = options_.policy;
    plan.stdin_fd = child_stdin.get();
    plan.stdout_fd = child_stdout.get();
    absl::StatusOr<ChildProcess> process = SpawnChild(plan);
    if (!process.ok()) {
      down_until_ = absl::Now() + options_.restart_backoff;
      last_failure_ = std::string(process.status().message());
      std::move(done)(absl::UnavailableError(
          absl::StrCat("the analyzer could not start: ", last_failure_)));
      return;
    }
    ++starts_;
    connection_ = std::make_shared<Connection>(
        loop_, *std::move(process), std::move(our_end), std::move(their_end), options_.timeout,
        [this, alive = alive_](const std::string& why) {
          if (*alive) OnConnectionLost(why);
        });
    loop_.AddPollSource(connection_);
  }
  ++requests_sent_;
  std::string text = source;
  connection_->Send(std::move(text), [this, alive = alive_, source = std::move(source),
                                      done = std::move(done)](
                                         absl::StatusOr<CellAnalysis> analysis) mutable {
    if (analysis.ok() && *alive) {
      absl::MutexLock lock(&cache_mutex_);
      if (cache_bytes_ + source.size() > options_.cache_bytes) {
        cache_.clear();
        cache_bytes_ = 0;
      }
      cache_bytes_ += source.size();
      cache_.insert_or_assign(std::move(source), *analysis);
    }
    std::move(done)(std::move(analysis));
  });
}

void CellAnalyzer::OnConnectionLost(const std::string& why) {
  // Dropped after this round: the connection's own handler is still on the stack.
  std::shared_ptr<Connection> lost = std::move(connection_);
  loop_.RemovePollSource(lost.get());
  loop_.Post([lost]() {});  // the process is killed and reaped when `lost` goes
  last_failure_ = why;
  down_until_ = absl::Now() + options_.restart_backoff;
}

}  // namespace cellgate::kernel
