#include "server/protocol/connection_info.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellgate::protocol {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

ConnectionInfo SampleInfo() {
  ConnectionInfo info;
  info.transport = "ipc";
  info.ip = "/run/cellgate/k1/s";
  info.shell_port = 1;
  info.iopub_port = 2;
  info.stdin_port = 3;
  info.control_port = 4;
  info.hb_port = 5;
  info.key = "0f1e2d3c-key";
  info.kernel_name = "python3";
  return info;
}

void ExpectSameInfo(const ConnectionInfo& actual, const ConnectionInfo& expected) {
  EXPECT_EQ(actual.transport, expected.transport);
  EXPECT_EQ(actual.ip, expected.ip);
  EXPECT_EQ(actual.shell_port, expected.shell_port);
  EXPECT_EQ(actual.iopub_port, expected.iopub_port);
  EXPECT_EQ(actual.stdin_port, expected.stdin_port);
  EXPECT_EQ(actual.control_port, expected.control_port);
  EXPECT_EQ(actual.hb_port, expected.hb_port);
  EXPECT_EQ(actual.key, expected.key);
  EXPECT_EQ(actual.signature_scheme, expected.signature_scheme);
  EXPECT_EQ(actual.kernel_name, expected.kernel_name);
}

TEST(ConnectionInfoTest, PortPerChannel) {
  const ConnectionInfo info = SampleInfo();
  EXPECT_EQ(info.port(Channel::kShell), 1);
  EXPECT_EQ(info.port(Channel::kIoPub), 2);
  EXPECT_EQ(info.port(Channel::kStdin), 3);
  EXPECT_EQ(info.port(Channel::kControl), 4);
  EXPECT_EQ(info.port(Channel::kHeartbeat), 5);
}

TEST(ConnectionInfoTest, IpcEndpointsFollowJupyterClient) {
  const ConnectionInfo info = SampleInfo();
  EXPECT_EQ(info.Endpoint(Channel::kShell), "ipc:///run/cellgate/k1/s-1");
  EXPECT_EQ(info.Endpoint(Channel::kHeartbeat), "ipc:///run/cellgate/k1/s-5");
}

TEST(ConnectionInfoTest, TcpEndpoints) {
  ConnectionInfo info = SampleInfo();
  info.transport = "tcp";
  info.ip = "127.0.0.1";
  info.iopub_port = 50123;
  EXPECT_EQ(info.Endpoint(Channel::kIoPub), "tcp://127.0.0.1:50123");
}

TEST(ConnectionInfoTest, JsonRoundTrip) {
  const ConnectionInfo info = SampleInfo();
  const nlohmann::json json = ConnectionInfoToJson(info);
  EXPECT_EQ(json["shell_port"], 1);
  EXPECT_EQ(json["signature_scheme"], "hmac-sha256");
  absl::StatusOr<ConnectionInfo> parsed = ConnectionInfoFromJson(json);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ExpectSameInfo(*parsed, info);
}

TEST(ConnectionInfoTest, ReadsJupyterClientConnectionJson) {
  // Written by jupyter_client 7.4.9's write_connection_file(ip='/tmp/jcf/k', transport='ipc',
  // key=b'0123abcd-key', kernel_name='python3', shell_port=1, ..., hb_port=5).
  const auto json = nlohmann::json::parse(R"({
    "shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5,
    "ip": "/tmp/jcf/k", "key": "0123abcd-key", "transport": "ipc",
    "signature_scheme": "hmac-sha256", "kernel_name": "python3"})");
  absl::StatusOr<ConnectionInfo> info = ConnectionInfoFromJson(json);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->Endpoint(Channel::kControl), "ipc:///tmp/jcf/k-4");
  EXPECT_EQ(info->key, "0123abcd-key");
}

TEST(ConnectionInfoTest, OptionalFieldsDefault) {
  nlohmann::json json = ConnectionInfoToJson(SampleInfo());
  json.erase("signature_scheme");
  json.erase("kernel_name");
  absl::StatusOr<ConnectionInfo> info = ConnectionInfoFromJson(json);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->signature_scheme, "hmac-sha256");
  EXPECT_EQ(info->kernel_name, "");
}

TEST(ConnectionInfoTest, MissingFieldIsNamed) {
  for (const char* field : {"transport", "ip", "shell_port", "iopub_port", "stdin_port",
                            "control_port", "hb_port", "key"}) {
    nlohmann::json json = ConnectionInfoToJson(SampleInfo());
    json.erase(field);
    absl::StatusOr<ConnectionInfo> info = ConnectionInfoFromJson(json);
    ASSERT_FALSE(info.ok()) << field;
    EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(info.status().message(), HasSubstr(std::string("\"") + field + "\""));
  }
}

TEST(ConnectionInfoTest, WrongTypesAndValuesAreNamed) {
  const std::vector<std::pair<std::string, nlohmann::json>> cases = {
      {"shell_port", "5555"},
      {"hb_port", 1.5},
      {"iopub_port", -1},
      {"stdin_port", 70000},
      {"key", 12},
      {"transport", "udp"},
      {"ip", ""},
      {"signature_scheme", 1},
      {"kernel_name", nullptr},
  };
  for (const auto& [field, value] : cases) {
    nlohmann::json json = ConnectionInfoToJson(SampleInfo());
    json[field] = value;
    absl::StatusOr<ConnectionInfo> info = ConnectionInfoFromJson(json);
    ASSERT_FALSE(info.ok()) << field << " = " << value;
    EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(info.status().message(), HasSubstr(field));
  }
  EXPECT_FALSE(ConnectionInfoFromJson(nlohmann::json::array()).ok());
}

class ConnectionFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/connection_file_test.XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::vector<std::string> DirEntries() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
      names.push_back(entry.path().filename());
    }
    return names;
  }

  void WriteText(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

  std::string dir_;
};

TEST_F(ConnectionFileTest, WriteThenReadRoundTrips) {
  const std::string path = dir_ + "/kernel.json";
  ASSERT_TRUE(WriteConnectionFile(SampleInfo(), path).ok());

  absl::StatusOr<ConnectionInfo> read = ReadConnectionFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  ExpectSameInfo(*read, SampleInfo());
  EXPECT_THAT(DirEntries(), ElementsAre("kernel.json"));  // no temporary file left behind
}

TEST_F(ConnectionFileTest, FileIsOnlyReadableByOwner) {
  const std::string path = dir_ + "/kernel.json";
  const mode_t old_umask = ::umask(0);  // the mode must not depend on the umask
  const absl::Status written = WriteConnectionFile(SampleInfo(), path);
  ::umask(old_umask);
  ASSERT_TRUE(written.ok()) << written;
  struct stat file_stat;
  ASSERT_EQ(::stat(path.c_str(), &file_stat), 0);
  EXPECT_EQ(file_stat.st_mode & 07777, 0600u);
}

TEST_F(ConnectionFileTest, OverwritesExistingFile) {
  const std::string path = dir_ + "/kernel.json";
  WriteText(path, "old contents");
  ::chmod(path.c_str(), 0644);
  ConnectionInfo info = SampleInfo();
  info.key = "new-key";
  ASSERT_TRUE(WriteConnectionFile(info, path).ok());
  absl::StatusOr<ConnectionInfo> read = ReadConnectionFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->key, "new-key");
  struct stat file_stat;
  ASSERT_EQ(::stat(path.c_str(), &file_stat), 0);
  EXPECT_EQ(file_stat.st_mode & 07777, 0600u);
}

TEST_F(ConnectionFileTest, WriteIntoMissingDirectoryFails) {
  const std::string path = dir_ + "/no/such/dir/kernel.json";
  const absl::Status status = WriteConnectionFile(SampleInfo(), path);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_THAT(status.message(), HasSubstr(path));
}

TEST_F(ConnectionFileTest, ReadMissingFileIsNotFound) {
  const std::string path = dir_ + "/absent.json";
  absl::StatusOr<ConnectionInfo> read = ReadConnectionFile(path);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(read.status().message(), HasSubstr(path));
}

TEST_F(ConnectionFileTest, ReadDirectoryIsInternal) {
  absl::StatusOr<ConnectionInfo> read = ReadConnectionFile(dir_);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInternal) << read.status();
  EXPECT_THAT(read.status().message(), HasSubstr(dir_));
}

TEST_F(ConnectionFileTest, ReadBadJsonIsInvalidArgument) {
  const std::string path = dir_ + "/bad.json";
  WriteText(path, "{\"transport\": ");
  absl::StatusOr<ConnectionInfo> read = ReadConnectionFile(path);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(read.status().message(), HasSubstr("not valid JSON"));
}

TEST_F(ConnectionFileTest, ReadMissingFieldNamesFieldAndPath) {
  const std::string path = dir_ + "/partial.json";
  nlohmann::json json = ConnectionInfoToJson(SampleInfo());
  json.erase("control_port");
  WriteText(path, json.dump());
  absl::StatusOr<ConnectionInfo> read = ReadConnectionFile(path);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(read.status().message(), HasSubstr("control_port"));
  EXPECT_THAT(read.status().message(), HasSubstr(path));
}

}  // namespace
}  // namespace cellgate::protocol
