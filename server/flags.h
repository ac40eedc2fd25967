#pragma once

// Every setting of the cellgate server, as Abseil flags. A config file (--config, a
// cellgate.v1.ServerConfig in JSON) sets the same flags by name; see server/config_file.h.

#include <cstdint>
#include <string>

#include "absl/flags/declare.h"

ABSL_DECLARE_FLAG(std::string, config);
ABSL_DECLARE_FLAG(std::string, tls_cert);
ABSL_DECLARE_FLAG(std::string, tls_key);
ABSL_DECLARE_FLAG(std::string, tls_client_ca);
ABSL_DECLARE_FLAG(bool, insecure_allow_unauthenticated);
ABSL_DECLARE_FLAG(std::string, unix_socket_mode);
ABSL_DECLARE_FLAG(std::string, metrics_listen);
ABSL_DECLARE_FLAG(std::string, metrics_port_file);
ABSL_DECLARE_FLAG(std::string, listen);
ABSL_DECLARE_FLAG(std::string, port_file);
ABSL_DECLARE_FLAG(std::string, state_dir);
ABSL_DECLARE_FLAG(int, state_write_interval_ms);
ABSL_DECLARE_FLAG(bool, state_fsync_before_reply);
ABSL_DECLARE_FLAG(std::string, runtime_dir);
ABSL_DECLARE_FLAG(std::string, sandbox);
ABSL_DECLARE_FLAG(std::string, bwrap_path);
ABSL_DECLARE_FLAG(std::string, kernels_dir);
ABSL_DECLARE_FLAG(bool, dependency_analysis);
ABSL_DECLARE_FLAG(std::string, analyzer_script);
ABSL_DECLARE_FLAG(std::string, auth_token_file);
ABSL_DECLARE_FLAG(std::string, log_format);
ABSL_DECLARE_FLAG(int, max_kernels);
ABSL_DECLARE_FLAG(std::string, kernel_id_prefix);
ABSL_DECLARE_FLAG(std::string, default_kernel_spec);
ABSL_DECLARE_FLAG(int, startup_timeout_seconds);
ABSL_DECLARE_FLAG(int64_t, default_timeout_ms);
ABSL_DECLARE_FLAG(int64_t, max_timeout_ms);
ABSL_DECLARE_FLAG(int, max_cells);
ABSL_DECLARE_FLAG(int64_t, max_source_bytes);
ABSL_DECLARE_FLAG(int64_t, max_output_bytes);
ABSL_DECLARE_FLAG(int64_t, max_ipynb_bytes);
ABSL_DECLARE_FLAG(int64_t, event_log_bytes);
ABSL_DECLARE_FLAG(int64_t, stream_max_lag_bytes);
ABSL_DECLARE_FLAG(int64_t, memory_limit_bytes);
ABSL_DECLARE_FLAG(int64_t, max_memory_limit_bytes);
ABSL_DECLARE_FLAG(int64_t, cpu_limit_seconds);
ABSL_DECLARE_FLAG(int, max_processes);
ABSL_DECLARE_FLAG(int, max_open_files);
ABSL_DECLARE_FLAG(int64_t, max_file_size_bytes);
ABSL_DECLARE_FLAG(bool, allow_network);
ABSL_DECLARE_FLAG(bool, restart_on_death);
ABSL_DECLARE_FLAG(int, max_restarts);
ABSL_DECLARE_FLAG(int, restart_window_seconds);
ABSL_DECLARE_FLAG(std::string, cgroup);
ABSL_DECLARE_FLAG(int64_t, cgroup_memory_bytes);
ABSL_DECLARE_FLAG(int, restart_backoff_ms);
ABSL_DECLARE_FLAG(int, interrupt_escalation_seconds);
ABSL_DECLARE_FLAG(int, unresponsive_kill_seconds);
ABSL_DECLARE_FLAG(int, idle_timeout_seconds);
ABSL_DECLARE_FLAG(int, max_idle_timeout_seconds);
ABSL_DECLARE_FLAG(int, max_kernel_lifetime_seconds);
ABSL_DECLARE_FLAG(int64_t, output_hard_cap_bytes);
ABSL_DECLARE_FLAG(int, kernel_uid_base);
ABSL_DECLARE_FLAG(int, drain_seconds);
ABSL_DECLARE_FLAG(int, pool_size);
ABSL_DECLARE_FLAG(bool, kernels_outlive_gateway);
