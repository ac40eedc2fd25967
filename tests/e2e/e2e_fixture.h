#pragma once

// One real cellgate server per test suite, on port 0, and a client for it.

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/e2e/gateway_client.h"
#include "tests/support/server_process.h"

namespace cellgate::testing {

template <typename Flags>
class ServerSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ServerProcess(Flags::Args(), Flags::Env());
    ASSERT_GT(server_->WaitForPort(absl::Seconds(60)), 0) << server_->log();
    client_ = new GatewayClient(server_->Target(), Flags::Token());
  }
  static void TearDownTestSuite() {
    delete client_;
    delete server_;
    client_ = nullptr;
    server_ = nullptr;
  }
  void TearDown() override {
    if (HasFailure() && server_ != nullptr) {
      std::string log = server_->log();
      if (log.size() > 4000) log = log.substr(log.size() - 4000);
      std::cerr << "server log tail:\n" << log << "\n";
    }
  }

  static GatewayClient& client() { return *client_; }
  static ServerProcess& server() { return *server_; }

  static inline ServerProcess* server_ = nullptr;
  static inline GatewayClient* client_ = nullptr;
};

struct DefaultFlags {
  static std::vector<std::string> Args() { return {}; }
  static std::vector<std::string> Env() { return {}; }
  static std::string Token() { return ""; }
};

}  // namespace cellgate::testing
