#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace cellgate::kernel {

enum class InterruptMode { kSignal, kMessage };

// A Jupyter kernelspec: how to start one kind of kernel (`kernel.json` in a named directory).
// See https://jupyter-client.readthedocs.io/en/stable/kernels.html#kernel-specs
struct KernelSpec {
  std::string name;          // the directory name, e.g. "python3"
  std::string display_name;
  std::string language;
  std::vector<std::string> argv;  // may contain {connection_file} and {resource_dir}
  std::map<std::string, std::string> env;
  InterruptMode interrupt_mode = InterruptMode::kSignal;
  std::string resource_dir;  // the directory holding kernel.json

  // argv with `{connection_file}` and `{resource_dir}` substituted.
  std::vector<std::string> ExpandArgv(const std::string& connection_file) const;
};

// Parses a kernel.json document. INVALID_ARGUMENT naming the field when it is malformed.
absl::StatusOr<KernelSpec> ParseKernelSpec(const std::string& name, const std::string& json_text,
                                           const std::string& resource_dir);

// Finds kernelspecs in an ordered list of directories (each holding `<name>/kernel.json`);
// the first directory that has a name wins.
class KernelSpecRegistry {
 public:
  explicit KernelSpecRegistry(std::vector<std::string> search_dirs);

  // The usual search path: each `$JUPYTER_PATH` entry + "/kernels", then `project_kernels_dir`
  // (the kernelspecs cellgate ships; may be empty), then /usr/local/share/jupyter/kernels and
  // /usr/share/jupyter/kernels.
  static std::vector<std::string> DefaultSearchDirs(const std::string& project_kernels_dir);

  // NOT_FOUND when no directory has `name`; INVALID_ARGUMENT for a malformed kernel.json.
  absl::StatusOr<KernelSpec> Find(const std::string& name) const;

  // Every valid kernelspec found, by name. Malformed ones are skipped.
  std::vector<KernelSpec> List() const;

  const std::vector<std::string>& search_dirs() const { return search_dirs_; }

 private:
  std::vector<std::string> search_dirs_;
};

}  // namespace cellgate::kernel
