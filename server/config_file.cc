#include "server/config_file.h"

#include <fstream>
#include <sstream>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cellgate/v1/server_config.pb.h"
#include "nlohmann/json.hpp"
#include "server/flags.h"

namespace cellgate {
namespace {

using google::protobuf::FieldDescriptor;

bool FlagHasFieldType(const absl::CommandLineFlag& flag, const FieldDescriptor& field) {
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING: return flag.IsOfType<std::string>();
    case FieldDescriptor::CPPTYPE_INT32: return flag.IsOfType<int>();
    case FieldDescriptor::CPPTYPE_INT64: return flag.IsOfType<int64_t>();
    case FieldDescriptor::CPPTYPE_BOOL: return flag.IsOfType<bool>();
    default: return false;
  }
}

std::string FieldValueAsFlagText(const v1::ServerConfig& config, const FieldDescriptor& field) {
  const google::protobuf::Reflection& reflection = *config.GetReflection();
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING: return reflection.GetString(config, &field);
    case FieldDescriptor::CPPTYPE_INT32: return absl::StrCat(reflection.GetInt32(config, &field));
    case FieldDescriptor::CPPTYPE_INT64: return absl::StrCat(reflection.GetInt64(config, &field));
    case FieldDescriptor::CPPTYPE_BOOL: return reflection.GetBool(config, &field) ? "true" : "false";
    default: return "";
  }
}

// JSON names the file may use for a field: its own and proto3 JSON's lowerCamelCase.
const FieldDescriptor* FindField(const std::string& key) {
  const google::protobuf::Descriptor& descriptor = *v1::ServerConfig::descriptor();
  if (const FieldDescriptor* field = descriptor.FindFieldByName(key)) return field;
  return descriptor.FindFieldByCamelcaseName(key);
}

// Booleans and strings exactly as JSON has them (no "yes" for true); integers as JSON numbers,
// or as strings the way proto3 JSON writes 64-bit ones. Ranges are checked by the parser.
bool JsonTypeFits(const FieldDescriptor& field, const nlohmann::json& value) {
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_BOOL: return value.is_boolean();
    case FieldDescriptor::CPPTYPE_STRING: return value.is_string();
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64: return value.is_number() || value.is_string();
    default: return false;
  }
}

}  // namespace

std::string ConfigPathFromArgs(const std::vector<std::string>& args) {
  std::string path;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--") break;
    if (absl::StartsWith(args[i], "--config=")) {
      path = args[i].substr(9);
    } else if (args[i] == "--config" && i + 1 < args.size()) {
      path = args[++i];
    }
  }
  return path;
}

absl::Status ApplyConfigFile(const std::string& path) {
  const std::string where = absl::StrCat("--config ", path);
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::InvalidArgumentError(absl::StrCat(where, ": cannot read the file"));
  std::ostringstream buffer;
  buffer << file.rdbuf();
  const std::string text = buffer.str();

  // First the shape, field by field, so an unknown or mistyped name is named with the known
  // ones; then proto3 JSON for the types.
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(where, ": not JSON"));
  if (!json.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": must be a JSON object of settings, e.g. {\"max_kernels\": 32}"));
  }
  for (const auto& [key, value] : json.items()) {
    const FieldDescriptor* field = FindField(key);
    if (field == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": field '", key,
          "' is not a setting (settings are the flags' names with underscores, e.g. "
          "max_kernels; see docs/configuration.md)"));
    }
    if (!JsonTypeFits(*field, value)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": field '", key, "': ", value.dump(),
                                                     " is not of type ", field->type_name()));
    }
  }
  v1::ServerConfig config;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  if (const auto parsed = google::protobuf::util::JsonStringToMessage(text, &config, options);
      !parsed.ok()) {
    // The library's message names the field ("max_kernels: invalid value ..."); check each
    // field alone so the message always does.
    for (const auto& [key, value] : json.items()) {
      v1::ServerConfig single;
      const std::string one = nlohmann::json{{key, value}}.dump();
      if (!google::protobuf::util::JsonStringToMessage(one, &single, options).ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": field '", key, "': ", value.dump(), " is not of type ",
            FindField(key)->type_name()));
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", parsed.ToString()));
  }

  std::vector<const FieldDescriptor*> fields;
  config.GetReflection()->ListFields(config, &fields);
  for (const FieldDescriptor* field : fields) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(field->name());
    if (flag == nullptr || !FlagHasFieldType(*flag, *field)) {
      return absl::InternalError(
          absl::StrCat(where, ": field '", field->name(), "' has no flag of its type"));
    }
    std::string error;
    if (!flag->ParseFrom(FieldValueAsFlagText(config, *field), &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": field '", field->name(), "': ", error));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckServerConfigCoversFlags() {
  std::vector<std::string> problems;
  const google::protobuf::Descriptor& descriptor = *v1::ServerConfig::descriptor();
  for (int i = 0; i < descriptor.field_count(); ++i) {
    const FieldDescriptor& field = *descriptor.field(i);
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(field.name());
    if (flag == nullptr) {
      problems.push_back(absl::StrCat("field ", field.name(), " has no flag"));
    } else if (!FlagHasFieldType(*flag, field)) {
      problems.push_back(absl::StrCat("field ", field.name(), " is a ", field.type_name(),
                                      ", its flag is not"));
    }
  }
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (!absl::EndsWith(flag->Filename(), "server/flags.cc") || name == "config") continue;
    if (descriptor.FindFieldByName(std::string(name)) == nullptr) {
      problems.push_back(absl::StrCat("flag --", name, " has no ServerConfig field"));
    }
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::InternalError(absl::StrJoin(problems, "; "));
}

}  // namespace cellgate
