#include "server/common/command_line.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellgate {
namespace {

TEST(CommandLineTest, FlagNamesTakeUnderscoresAndValuesAreLeftAlone) {
  std::vector<std::string> given = {"cellgate", "--port-file=/tmp/a-b", "--max-kernels", "3",
                                    "-v", "--tls-client-ca=x-y.pem", "--", "--not-a-flag"};
  std::vector<char*> argv;
  for (std::string& arg : given) argv.push_back(arg.data());
  EXPECT_THAT(DashesToUnderscores(static_cast<int>(argv.size()), argv.data()),
              ::testing::ElementsAre("cellgate", "--port_file=/tmp/a-b", "--max_kernels", "3",
                                     "-v", "--tls_client_ca=x-y.pem", "--", "--not-a-flag"));
}

}  // namespace
}  // namespace cellgate
