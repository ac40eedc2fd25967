#include "server/config_file.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "absl/flags/flag.h"
#include "cellgate/v1/server_config.pb.h"
#include "absl/flags/reflection.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/flags.h"

namespace cellgate {
namespace {

using ::testing::HasSubstr;

class ConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "config_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& text) {
    const std::string path = dir_ + "/config.json";
    std::ofstream(path, std::ios::trunc) << text;
    return path;
  }
  std::string ErrorOf(const std::string& text) {
    const absl::Status status = ApplyConfigFile(Write(text));
    return status.ok() ? "" : std::string(status.message());
  }

  absl::FlagSaver restore_flags_;
  std::string dir_;
};

TEST_F(ConfigFileTest, EveryFlagHasItsFieldAndEveryFieldItsFlag) {
  EXPECT_TRUE(CheckServerConfigCoversFlags().ok()) << CheckServerConfigCoversFlags();
}

TEST_F(ConfigFileTest, FieldsSetTheFlagsOfTheirNames) {
  ASSERT_EQ(ErrorOf(R"({"max_kernels": 7, "event_log_bytes": "123456789012",
                        "allow_network": true, "listen": "unix:/tmp/x.sock",
                        "poolSize": 2, "max_output_bytes": 4096})"),
            "");
  EXPECT_EQ(absl::GetFlag(FLAGS_max_kernels), 7);
  EXPECT_EQ(absl::GetFlag(FLAGS_event_log_bytes), 123456789012);
  EXPECT_TRUE(absl::GetFlag(FLAGS_allow_network));
  EXPECT_EQ(absl::GetFlag(FLAGS_listen), "unix:/tmp/x.sock");
  EXPECT_EQ(absl::GetFlag(FLAGS_pool_size), 2);  // proto3 JSON's lowerCamelCase name
  EXPECT_EQ(absl::GetFlag(FLAGS_max_output_bytes), 4096);
}

TEST_F(ConfigFileTest, FieldsLeftOutKeepTheirDefaults) {
  const int max_cells = absl::GetFlag(FLAGS_max_cells);
  ASSERT_EQ(ErrorOf(R"({"max_kernels": 3})"), "");
  EXPECT_EQ(absl::GetFlag(FLAGS_max_cells), max_cells);
}

TEST_F(ConfigFileTest, AFalseOrZeroGivenIsApplied) {
  absl::SetFlag(&FLAGS_restart_on_death, true);
  absl::SetFlag(&FLAGS_drain_seconds, 10);
  ASSERT_EQ(ErrorOf(R"({"restart_on_death": false, "drain_seconds": 0})"), "");
  EXPECT_FALSE(absl::GetFlag(FLAGS_restart_on_death));
  EXPECT_EQ(absl::GetFlag(FLAGS_drain_seconds), 0);
}

TEST_F(ConfigFileTest, MistakesNameTheFileAndTheField) {
  EXPECT_THAT(ErrorOf(R"({"max_kernelz": 3})"),
              HasSubstr("field 'max_kernelz' is not a setting"));
  EXPECT_THAT(ErrorOf(R"({"max_kernels": "many"})"),
              HasSubstr("field 'max_kernels': \"many\" is not of type int32"));
  EXPECT_THAT(ErrorOf(R"({"max_kernels": 3000000000})"),
              HasSubstr("field 'max_kernels': 3000000000 is not of type int32"));
  EXPECT_THAT(ErrorOf(R"({"allow_network": "yes"})"), HasSubstr("field 'allow_network'"));
  EXPECT_THAT(ErrorOf(R"({"listen": 50051})"), HasSubstr("field 'listen'"));
  EXPECT_THAT(ErrorOf(R"({"max_kernels": 3,})"), HasSubstr("not JSON"));
  EXPECT_THAT(ErrorOf(R"(["max_kernels"])"), HasSubstr("must be a JSON object"));
  EXPECT_THAT(ErrorOf(R"({"max_kernels": 3})"), "");
  EXPECT_THAT(std::string(ApplyConfigFile(dir_ + "/absent.json").message()),
              HasSubstr("--config " + dir_ + "/absent.json: cannot read the file"));
}

TEST_F(ConfigFileTest, AFileWithAnErrorSetsNothing) {
  absl::SetFlag(&FLAGS_max_kernels, 64);
  EXPECT_NE(ErrorOf(R"({"max_kernels": 5, "max_cells": "x"})"), "");
  EXPECT_EQ(absl::GetFlag(FLAGS_max_kernels), 64);
}

TEST(ConfigurationDocTest, DocumentsEverySetting) {
  std::ifstream file(std::string(CELLGATE_SOURCE_DIR) + "/docs/configuration.md");
  ASSERT_TRUE(file) << "docs/configuration.md";
  const std::string doc(std::istreambuf_iterator<char>(file), {});
  const google::protobuf::Descriptor& descriptor = *v1::ServerConfig::descriptor();
  for (int i = 0; i < descriptor.field_count(); ++i) {
    std::string flag = "`--" + descriptor.field(i)->name() + "`";
    std::replace(flag.begin(), flag.end(), '_', '-');
    EXPECT_NE(doc.find(flag), std::string::npos) << flag << " is not in docs/configuration.md";
  }
}

TEST(ConfigPathTest, FoundInEitherFormAndTheLastOneWins) {
  EXPECT_EQ(ConfigPathFromArgs({"cellgate", "--listen=x"}), "");
  EXPECT_EQ(ConfigPathFromArgs({"cellgate", "--config=/a.json"}), "/a.json");
  EXPECT_EQ(ConfigPathFromArgs({"cellgate", "--config", "/b.json", "--max_kernels=2"}), "/b.json");
  EXPECT_EQ(ConfigPathFromArgs({"cellgate", "--config=/a.json", "--config=/c.json"}), "/c.json");
  EXPECT_EQ(ConfigPathFromArgs({"cellgate", "--", "--config=/a.json"}), "");
}

}  // namespace
}  // namespace cellgate
