#include "server/kernel/kernel_spec.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace cellgate::kernel {
namespace {

namespace fs = std::filesystem;

bool IsValidSpecName(const std::string& name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return name != "." && name != "..";
}

}  // namespace

std::vector<std::string> KernelSpec::ExpandArgv(const std::string& connection_file) const {
  std::vector<std::string> expanded;
  expanded.reserve(argv.size());
  for (const std::string& arg : argv) {
    expanded.push_back(absl::StrReplaceAll(
        arg, {{"{connection_file}", connection_file}, {"{resource_dir}", resource_dir}}));
  }
  return expanded;
}

absl::StatusOr<KernelSpec> ParseKernelSpec(const std::string& name, const std::string& json_text,
                                           const std::string& resource_dir) {
  const std::string where = absl::StrCat("kernelspec '", name, "' (", resource_dir, "/kernel.json)");
  nlohmann::json doc = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": not a JSON object"));
  }
  KernelSpec spec;
  spec.name = name;
  spec.resource_dir = resource_dir;

  const auto argv = doc.find("argv");
  if (argv == doc.end() || !argv->is_array() || argv->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": 'argv' must be a non-empty array"));
  }
  for (const auto& arg : *argv) {
    if (!arg.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": 'argv' entries must be strings"));
    }
    spec.argv.push_back(arg.get<std::string>());
  }
  if (auto it = doc.find("display_name"); it != doc.end() && it->is_string()) {
    spec.display_name = it->get<std::string>();
  } else {
    spec.display_name = name;
  }
  if (auto it = doc.find("language"); it != doc.end() && it->is_string()) {
    spec.language = it->get<std::string>();
  }
  if (auto it = doc.find("interrupt_mode"); it != doc.end()) {
    if (*it == "signal") {
      spec.interrupt_mode = InterruptMode::kSignal;
    } else if (*it == "message") {
      spec.interrupt_mode = InterruptMode::kMessage;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": 'interrupt_mode' must be \"signal\" or \"message\""));
    }
  }
  if (auto it = doc.find("env"); it != doc.end()) {
    if (!it->is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": 'env' must be an object"));
    }
    for (const auto& [key, value] : it->items()) {
      if (!value.is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": 'env.", key, "' must be a string"));
      }
      spec.env[key] = value.get<std::string>();
    }
  }
  return spec;
}

KernelSpecRegistry::KernelSpecRegistry(std::vector<std::string> search_dirs)
    : search_dirs_(std::move(search_dirs)) {}

std::vector<std::string> KernelSpecRegistry::DefaultSearchDirs(
    const std::string& project_kernels_dir) {
  std::vector<std::string> dirs;
  if (const char* jupyter_path = std::getenv("JUPYTER_PATH"); jupyter_path != nullptr) {
    for (absl::string_view entry : absl::StrSplit(jupyter_path, ':', absl::SkipEmpty())) {
      dirs.push_back(absl::StrCat(entry, "/kernels"));
    }
  }
  if (!project_kernels_dir.empty()) dirs.push_back(project_kernels_dir);
  dirs.push_back("/usr/local/share/jupyter/kernels");
  dirs.push_back("/usr/share/jupyter/kernels");
  return dirs;
}

absl::StatusOr<KernelSpec> KernelSpecRegistry::Find(const std::string& name) const {
  if (!IsValidSpecName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("kernel_spec: '", name, "' is not a valid kernelspec name"));
  }
  for (const std::string& dir : search_dirs_) {
    const fs::path resource_dir = fs::path(dir) / name;
    std::ifstream file(resource_dir / "kernel.json");
    if (!file) continue;
    std::stringstream text;
    text << file.rdbuf();
    return ParseKernelSpec(name, text.str(), resource_dir.string());
  }
  return absl::NotFoundError(absl::StrCat("no kernelspec named '", name, "'"));
}

std::vector<KernelSpec> KernelSpecRegistry::List() const {
  std::set<std::string> names;
  for (const std::string& dir : search_dirs_) {
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(dir, error)) {
      if (entry.is_directory(error) && fs::exists(entry.path() / "kernel.json", error)) {
        names.insert(entry.path().filename().string());
      }
    }
  }
  std::vector<KernelSpec> specs;
  for (const std::string& name : names) {
    if (absl::StatusOr<KernelSpec> spec = Find(name); spec.ok()) {
      specs.push_back(*std::move(spec));
    }
  }
  return specs;
}

}  // namespace cellgate::kernel
