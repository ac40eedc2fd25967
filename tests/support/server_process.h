#pragma once

// Runs the real cellgate binary for a test: port 0 with --port-file, its own runtime and
// state dirs, stderr captured to a file.

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace cellgate::testing {

// Waits until process `pid` (a child of this process or not) has ended, up to `timeout`; true
// when it has (or there is no such process). Zero timeout: whether it has ended now.
bool WaitForProcessEnd(int pid, absl::Duration timeout);

class ServerProcess {
 public:
  // Starts `cellgate --listen=127.0.0.1:0 --port-file=... <extra_args>` with `extra_env`
  // ("KEY=value") added to the test's environment.
  explicit ServerProcess(std::vector<std::string> extra_args,
                         std::vector<std::string> extra_env = {});
  ~ServerProcess();  // SIGKILL if still running; removes its directories
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // The bound port once the port file appears; 0 if the server exited or `timeout` passed.
  int WaitForPort(absl::Duration timeout);
  // "127.0.0.1:<port>", waiting for the port.
  std::string Target();

  // The wait status once the process has ended (non-blocking / waiting up to `timeout`).
  std::optional<int> ExitedWith();
  std::optional<int> WaitForExit(absl::Duration timeout);

  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }
  std::string log() const;
  // Threads of the server process (from /proc), -1 if unknown.
  int ThreadCount() const;

 private:
  std::string dir_, port_file_, log_file_;
  pid_t pid_ = -1;
  int port_ = 0;
  bool exited_ = false;
  int exit_status_ = 0;
};

}  // namespace cellgate::testing
