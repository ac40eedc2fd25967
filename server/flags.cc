#include "server/flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, config, "",
          "A JSON file of settings (a cellgate.v1.ServerConfig: the flags' names with "
          "underscores, e.g. {\"max_kernels\": 32}); flags on the command line win over it");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain to serve TLS with (with --tls-key); then plaintext is refused");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA certificates: with TLS on, clients must present a certificate one of them "
          "signed (mutual TLS)");
ABSL_FLAG(bool, insecure_allow_unauthenticated, false,
          "Serve on an address other hosts can reach with neither --auth-token-file nor "
          "--tls-client-ca (otherwise start is refused)");
ABSL_FLAG(std::string, unix_socket_mode, "0600",
          "With --listen=unix:PATH: the socket's permission bits, octal (who may connect)");
ABSL_FLAG(std::string, metrics_listen, "",
          "HOST:PORT to serve Prometheus metrics on, over HTTP at /metrics (port 0 picks a free "
          "port); empty: no metrics endpoint");
ABSL_FLAG(std::string, metrics_port_file, "",
          "Once serving metrics, write their bound port here");
ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "Address to serve gRPC on: HOST:PORT (port 0 picks a free port) or unix:/path");
ABSL_FLAG(std::string, port_file, "",
          "Once listening, write the bound port here (how tests and scripts find it)");
ABSL_FLAG(std::string, state_dir, "/var/lib/cellgate",
          "Directory where every kernel's notebook is saved as it changes; a gateway started on "
          "the same directory restores them. Empty: nothing is saved");
ABSL_FLAG(int, state_write_interval_ms, 500,
          "How often a kernel's saved state is rewritten while outputs stream in; cell edits, "
          "finished executions and kernel state changes are written at once");
ABSL_FLAG(bool, state_fsync_before_reply, true,
          "Replies that report saved state (AddCell, RunCell, ...) wait until it is fsynced (the "
          "kernel's journal, or its state file and directory), so what a client was told "
          "survives a host crash. false: they wait only until it is written (safe from a crash "
          "of the gateway), and the fsyncs follow at once, off the reply's path");
ABSL_FLAG(std::string, runtime_dir, "",
          "Directory for kernel working dirs and sockets; keep it short (unix socket paths are "
          "limited to 107 bytes). Default: /tmp/cellgate-<pid>");
ABSL_FLAG(std::string, sandbox, "rlimits",
          "Kernel sandbox: 'rlimits' (rlimits, own session, no_new_privs, per-kernel uid when "
          "root) or 'bwrap' (all that inside bubblewrap namespaces: no network by default, "
          "read-only system, private /tmp)");
ABSL_FLAG(std::string, bwrap_path, "/usr/bin/bwrap", "The bubblewrap binary");
ABSL_FLAG(std::string, kernels_dir, "",
          "Directory of the kernelspecs cellgate ships (searched after $JUPYTER_PATH, before "
          "/usr/local/share/jupyter/kernels and /usr/share/jupyter/kernels). Default: the "
          "installed share/cellgate/kernels, else the source tree's kernels/");
ABSL_FLAG(bool, dependency_analysis, true,
          "Analyze the code cells of Python kernels for the names they define and read, in one "
          "sandboxed analyzer process shared by all kernels: the dependency graph, STALE "
          "marking of exactly the dependents of a change, RunCell cascades and RunStale. false: "
          "cells are in order only");
ABSL_FLAG(std::string, analyzer_script, "",
          "The cell analyzer run by /usr/bin/python3. Default: analyzer/cellgate_analyzer.py "
          "in the kernels directory");
ABSL_FLAG(std::string, auth_token_file, "",
          "File of bearer tokens, one a line; clients send 'authorization: Bearer <token>'. "
          "Empty: no tokens (then an address other hosts can reach needs --tls-client-ca or "
          "--insecure-allow-unauthenticated)");
ABSL_FLAG(std::string, log_format, "logfmt", "Log line format: 'logfmt' or 'json'");
ABSL_FLAG(int, max_kernels, 64, "Most kernels alive at once");
ABSL_FLAG(std::string, kernel_id_prefix, "",
          "Kernel ids become '<prefix>-<32 hex digits>': with several replicas, the replica's "
          "name (e.g. the pod name), so clients can route a kernel's calls to the replica that "
          "holds it; 1-31 characters of [A-Za-z0-9_-]");
ABSL_FLAG(std::string, default_kernel_spec, "python3", "Kernelspec when a request names none");
ABSL_FLAG(int, startup_timeout_seconds, 60, "How long a kernel may take to answer kernel_info");
ABSL_FLAG(int64_t, default_timeout_ms, 0,
          "Execution timeout when a request gives none (0 = none; a gRPC deadline still applies)");
ABSL_FLAG(int64_t, max_timeout_ms, 24ll * 3600 * 1000, "Largest timeout_ms a request may ask for");
ABSL_FLAG(int, max_cells, 10000, "Most cells in one kernel's notebook");
ABSL_FLAG(int64_t, max_source_bytes, 1 << 20, "Largest cell source or Execute code, in bytes");
ABSL_FLAG(int64_t, max_output_bytes, 8 << 20,
          "Stored outputs of one cell or execution, in bytes; beyond it outputs are truncated "
          "with a visible marker");
ABSL_FLAG(int64_t, max_ipynb_bytes, 64 << 20, "Largest .ipynb import, in bytes");
ABSL_FLAG(int64_t, max_upload_bytes, int64_t{1} << 30,
          "Largest file UploadFile writes into a kernel's workspace, in bytes; 0 = no cap");
ABSL_FLAG(int64_t, max_workspace_bytes, int64_t{4} << 30,
          "Most bytes of files a kernel's workspace may hold after an upload; 0 = no cap");
ABSL_FLAG(int64_t, max_transfer_bytes, int64_t{1} << 30,
          "Largest pickle TransferVariable carries from one kernel to another, in bytes; 0 = no "
          "cap");
ABSL_FLAG(int64_t, event_log_bytes, 64 << 20,
          "Per kernel: bytes of output events kept for StreamOutputs replay");
ABSL_FLAG(int64_t, stream_max_lag_bytes, 0,
          "A StreamOutputs follower this many bytes of events behind is cut off with "
          "RESOURCE_EXHAUSTED while it can still resume by seq; 0 = half of --event-log-bytes");
ABSL_FLAG(int64_t, memory_limit_bytes, 8ll << 30,
          "Default per-kernel address-space limit (RLIMIT_AS), bytes; 0 = none");
ABSL_FLAG(int64_t, max_memory_limit_bytes, 8ll << 30,
          "Largest address-space limit a request may ask for; 0 = no cap");
ABSL_FLAG(int64_t, cpu_limit_seconds, 0, "Default per-kernel CPU time limit (RLIMIT_CPU); 0 = none");
ABSL_FLAG(int, max_processes, 512,
          "Per-kernel process/thread limit (RLIMIT_NPROC; in force with per-kernel uids)");
ABSL_FLAG(int, max_open_files, 1024, "Per-kernel open file limit (RLIMIT_NOFILE)");
ABSL_FLAG(int64_t, max_file_size_bytes, 1ll << 30, "Per-kernel file size limit (RLIMIT_FSIZE)");
ABSL_FLAG(bool, allow_network, false,
          "With --sandbox=bwrap: whether kernels get the network by default (requests may ask "
          "for no network either way)");
ABSL_FLAG(bool, restart_on_death, true,
          "Restart a kernel that died unexpectedly (notebook kept, cells STALE)");
ABSL_FLAG(int, max_restarts, 3,
          "Most automatic restarts within --restart-window-seconds; then the kernel stays DEAD");
ABSL_FLAG(int, restart_window_seconds, 300, "The window --max-restarts counts deaths in");
ABSL_FLAG(std::string, cgroup, "auto",
          "Per-kernel cgroups (memory without swap, pids, kill of everything a kernel started): "
          "'auto' uses them where a writable cgroup v2 (or v1) hierarchy is found, 'off' never");
ABSL_FLAG(int64_t, cgroup_memory_bytes, 0,
          "Per-kernel cgroup memory limit where cgroups are in force; 0 = the kernel's "
          "address-space limit");
ABSL_FLAG(int, restart_backoff_ms, 500,
          "Wait before an automatic restart; doubles with each death in the window");
ABSL_FLAG(int, interrupt_escalation_seconds, 10,
          "Kill (and so restart, per the restart policy) a kernel whose execution is still "
          "running this long after the gateway interrupted it; 0 = never");
ABSL_FLAG(int, unresponsive_kill_seconds, 30,
          "Kill (and so restart) a kernel that stays silent this long after it was reported "
          "not answering heartbeats; 0 = report only");
ABSL_FLAG(int, idle_timeout_seconds, 0,
          "Shut down a kernel idle this long (nothing running, no StreamOutputs reader, no call "
          "naming it) when its request gave no idle_timeout_seconds; 0 = never");
ABSL_FLAG(int, max_idle_timeout_seconds, 0,
          "Largest idle_timeout_seconds a request may ask for; 0 = no cap");
ABSL_FLAG(int, max_kernel_lifetime_seconds, 0,
          "Shut down any kernel this old, busy or not; 0 = no limit");
ABSL_FLAG(int64_t, output_hard_cap_bytes, 0,
          "Interrupt an execution once it has printed this many bytes (its stored outputs stop "
          "at --max-output-bytes long before); 0 = 8 x --max-output-bytes");
ABSL_FLAG(int, kernel_uid_base, 200000,
          "When root: kernels run as uids [base, base + --max-kernels + --pool-size) (gid = "
          "uid). Leftover processes of those uids are killed, so two servers on one host need "
          "disjoint ranges");
ABSL_FLAG(int, drain_seconds, 10, "On SIGTERM: how long running work may take to finish");
ABSL_FLAG(int, pool_size, 0,
          "Kernels of the default kernelspec kept started ahead (the warm pool): a StartKernel "
          "with default settings takes one at once and the pool refills in the background; "
          "requests with their own env, limits or kernelspec start a kernel as usual");
ABSL_FLAG(int, pool_refill_delay_ms, 500,
          "How long after a StartKernel takes a pooled kernel the pool starts its replacement, "
          "in ms (0: at once): a kernel's start takes a core for about half a second, which the "
          "taken kernel's first executions would otherwise share");
ABSL_FLAG(bool, kernels_outlive_gateway, false,
          "Kernel processes go on running when the gateway stops or dies (no parent-death "
          "signal; on SIGTERM they are left running), and the next gateway on the same "
          "--state-dir re-attaches them with their memory intact. Needs --state-dir");
