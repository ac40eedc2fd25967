#!/usr/bin/python3
"""Soak test for the cellgate gateway.

Starts its own cellgate server, drives N kernels with a mix of work for M minutes while a
follower per kernel streams its EventLog, samples the gateway process (RSS, fds, threads,
zombie children, kernel processes) every few seconds, and fails when results are wrong or
resources leak. See bench/README.md.

    /usr/bin/python3 bench/soak.py --kernels 4 --minutes 10
    /usr/bin/python3 bench/soak.py --kernels 2 --minutes 0.5 --json /tmp/soak.json

Exit codes: 0 passed; 1 a check failed; 2 setup failed (server or kernels did not start);
3 the watchdog fired (cleanup hung); 130 interrupted (Ctrl-C; cleanup still ran).

Only Debian-packaged modules are used (python3-grpcio, python3-protobuf) plus the repository's
own client package in client/python.
"""
from __future__ import annotations

import argparse
import collections
import faulthandler
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "client" / "python"))

import grpc  # noqa: E402

from cellgate.errors import CellgateError, from_rpc_error  # noqa: E402
from cellgate.types import (Cell, CellState, ExecutionResult, ExecutionStatus,  # noqa: E402
                            KernelInfo, KernelState, Notebook, event_kind)
from cellgate.v1 import execution_pb2, kernel_pb2, output_pb2  # noqa: E402
from cellgate.v1 import kernel_gateway_pb2 as gw  # noqa: E402
from cellgate.v1 import kernel_gateway_pb2_grpc as gw_grpc  # noqa: E402
from gateway_server import GatewayServer  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------

EXIT_PASSED, EXIT_FAILED, EXIT_SETUP_FAILED, EXIT_WATCHDOG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

# Deadlines of the RPCs (seconds). Every call the script makes has one.
UNARY_DEADLINE_S = 30.0            # cell and kernel queries, edits, interrupts
KERNEL_START_DEADLINE_S = 120.0    # StartKernel / RestartKernel (the server waits for kernel_info)
SHUTDOWN_DEADLINE_S = 60.0         # ShutdownKernel (graceful 2 s + SIGTERM 2 s + SIGKILL)
EXECUTION_TIMEOUT_MS = 60_000      # server-side timeout of every execution expected to finish
EXECUTION_DEADLINE_S = EXECUTION_TIMEOUT_MS / 1000 + 30
RUN_ALL_CELL_TIMEOUT_MS = 30_000
SERVER_START_DEADLINE_S = 30.0
EVENT_WAIT_DEADLINE_S = 30.0       # waiting on the event stream for something that must happen

# Setup gets this long (plus per kernel) before the watchdog fires.
SETUP_BUDGET_S = 120.0
SETUP_BUDGET_PER_KERNEL_S = 30.0

# Each kernel's notebook is a fixed-size pool of cells that are edited, replaced, moved and
# re-run, so the gateway's retained state stays bounded and RSS growth means a leak.
CELL_POOL_SIZE = 6

# ExecutionResult.text is cut in the middle beyond 256 KiB (docs/api.md §5).
RESULT_TEXT_CAP_BYTES = 256 * 1024

# A valid 1x1 PNG: the gateway's text rendering reads its size ("[image/png 1x1]").
PNG_1X1_BASE64 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9"
                  "awAAAABJRU5ErkJggg==")

# Relative weights of the work items a kernel driver picks from (restarts and deaths are
# scheduled separately, by time).
WORK_MIX: Sequence[Tuple[str, int]] = (
    ("counter", 20),            # Execute: a counter kept in the kernel, checked exactly
    ("compute", 10),            # Execute: an expression whose value is known
    ("small_print", 10),        # Execute: stdout / stderr / stdout, checked exactly
    ("large_print", 5),         # Execute: 100-400 KB of stdout, checked exactly
    ("error", 6),               # Execute: raise, checked ename/evalue/no ANSI
    ("rich", 6),                # Execute: HTML, display_id + update, PNG
    ("timeout", 3),             # Execute: infinite loop with a short timeout (interrupt)
    ("interrupt", 2),           # Execute + InterruptKernel once it is seen running
    ("run_pool_cell", 15),      # RunCell on a pool cell
    ("replace_pool_cell", 5),   # EditCell, or DeleteCell + AddCell
    ("move_pool_cell", 3),      # MoveCell
    ("run_all", 2),             # RunAll over the pool
    ("notebook_check", 3),      # GetNotebook + ExportNotebook against the local model
)

ANSI_ESCAPE = "\x1b"


def status_name(proto_status: int) -> str:
    """'OK' for EXECUTION_STATUS_OK, etc."""
    return execution_pb2.ExecutionStatus.Name(proto_status).replace("EXECUTION_STATUS_", "")


def kernel_state_name(proto_state: int) -> str:
    return kernel_pb2.KernelState.Name(proto_state).replace("KERNEL_STATE_", "")


def clip(text: str, limit: int = 160) -> str:
    """A short repr of possibly long text for failure messages."""
    return repr(text if len(text) <= limit else text[:limit] + f"...(+{len(text) - limit})")


def first_difference(expected: str, actual: str) -> str:
    """Where two strings first differ, for failure messages."""
    at = next((i for i, (a, b) in enumerate(zip(expected, actual)) if a != b),
              min(len(expected), len(actual)))
    return (f"lengths {len(expected)} vs {len(actual)}, first difference at {at}: "
            f"expected {clip(expected[at:at + 40])}, got {clip(actual[at:at + 40])}")


# ---------------------------------------------------------------------------------------------
# Bookkeeping shared by the threads
# ---------------------------------------------------------------------------------------------

@dataclass
class Failure:
    elapsed_s: float
    where: str      # "kernel 2", "follower 1", "server", ...
    kind: str       # the work item or check that failed
    message: str


class FailureLog:
    """Every correctness failure, printed as it happens (the first few of each kind)."""

    PRINT_PER_KIND = 10

    def __init__(self, clock_start: float) -> None:
        self._start = clock_start
        self._lock = threading.Lock()
        self.entries: List[Failure] = []
        self.by_kind: collections.Counter = collections.Counter()

    def record(self, where: str, kind: str, message: str) -> None:
        failure = Failure(round(time.monotonic() - self._start, 1), where, kind, message)
        with self._lock:
            self.entries.append(failure)
            self.by_kind[kind] += 1
            shown = self.by_kind[kind] <= self.PRINT_PER_KIND
        if shown:
            log(f"FAIL [{where}] {kind}: {message}")

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.entries)


class Counters:
    """Thread-safe named counters (executions, restarts, reconnects, ...)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: collections.Counter = collections.Counter()
        self.trivial_execute_ms: List[Tuple[float, float]] = []  # (elapsed s, round trip ms)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def get(self, name: str) -> int:
        with self._lock:
            return self._values[name]

    def snapshot(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._values)

    def add_latency(self, elapsed_s: float, round_trip_ms: float) -> None:
        with self._lock:
            self.trivial_execute_ms.append((elapsed_s, round_trip_ms))


_print_lock = threading.Lock()


def log(message: str) -> None:
    with _print_lock:
        print(message, flush=True)


class SoakFailure(Exception):
    """A check inside a work item failed in a way that ends the item."""


# ---------------------------------------------------------------------------------------------
# The server process
# ---------------------------------------------------------------------------------------------

class SoakServer(GatewayServer):
    """The soak's server, in its own temporary directory: uids for the kernels and a few spare,
    the restart policy and the event log size from the settings."""

    def __init__(self, binary: Path, kernels: int, settings: argparse.Namespace) -> None:
        workdir = Path(tempfile.mkdtemp(prefix="cgsoak-"))  # short: ipc socket paths
        os.chmod(workdir, 0o711)  # kernels run as their own uids (as root) and must traverse it
        self.max_kernels = kernels + 4  # a few spare uids for restarts in flight
        self.uid_range = range(settings.kernel_uid_base, settings.kernel_uid_base + self.max_kernels)
        super().__init__(binary, workdir, [
            f"--state-dir={workdir / 'state'}",
            f"--kernel-uid-base={settings.kernel_uid_base}",
            f"--max-kernels={self.max_kernels}",
            f"--event-log-bytes={settings.event_log_mib << 20}",
            "--drain-seconds=5",
            f"--restart-on-death={'true' if settings.restart_policy == 'on' else 'false'}",
            f"--max-restarts={settings.max_restarts}",
            f"--restart-window-seconds={settings.restart_window_seconds}",
            f"--restart-backoff-ms={settings.restart_backoff_ms}",
            *([f"--interrupt-escalation-seconds={settings.escalation_seconds}"]
              if settings.escalation_seconds else []),
            *settings.server_arg,
        ], log=log)


# ---------------------------------------------------------------------------------------------
# RPCs
# ---------------------------------------------------------------------------------------------

CHANNEL_OPTIONS = [
    # Results and notebooks can exceed gRPC's default 4 MiB (docs/api.md §1).
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]


class Gateway:
    """One channel to the server; every call carries the token and a deadline, and failures
    become the client package's typed CellgateError."""

    def __init__(self, target: str, token: str) -> None:
        self.target = target
        self.token = token
        self.channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.stub = gw_grpc.KernelGatewayStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),)

    def call(self, method: str, request: Any, deadline_s: float, **kwargs: Any) -> Any:
        try:
            return getattr(self.stub, method)(request, metadata=self.metadata,
                                              timeout=deadline_s, **kwargs)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from e

    def call_future(self, method: str, request: Any, deadline_s: float) -> grpc.Future:
        return getattr(self.stub, method).future(request, metadata=self.metadata,
                                                 timeout=deadline_s)

    def stream(self, request: gw.StreamOutputsRequest, deadline_s: float) -> Any:
        """A StreamOutputs call: iterate it for events; ``cancel()`` ends it."""
        return self.stub.StreamOutputs(request, metadata=self.metadata, timeout=deadline_s)

    def get_kernel(self, kernel_id: str) -> KernelInfo:
        return KernelInfo.from_proto(self.call("GetKernel", gw.GetKernelRequest(
            kernel_id=kernel_id), UNARY_DEADLINE_S))

    def close(self) -> None:
        self.channel.close()


# ---------------------------------------------------------------------------------------------
# Jobs: code to run and what its result must be
# ---------------------------------------------------------------------------------------------

@dataclass
class Job:
    """One piece of code and its expected result. ``None`` fields are not checked."""

    kind: str
    source: str
    status: ExecutionStatus = ExecutionStatus.OK
    timeout_ms: int = EXECUTION_TIMEOUT_MS
    stdout: Optional[str] = None            # concatenated stdout of the result's outputs
    stderr: Optional[str] = None
    text: Optional[str] = None              # ExecutionResult.text exactly
    text_prefix: Optional[str] = None
    text_suffix: Optional[str] = None
    output_kinds: Optional[List[str]] = None  # e.g. ["stream", "display_data"]
    plain_results: Optional[List[str]] = None  # text/plain of execute_result/display_data
    mime_types: Optional[List[List[str]]] = None  # sorted mime keys of those outputs
    error_name: Optional[str] = None
    error_value: Optional[str] = None
    status_detail_prefix: Optional[str] = None


def stream_texts(outputs: Iterable[output_pb2.Output]) -> Tuple[str, str]:
    """(stdout, stderr) concatenated from stored outputs."""
    stdout, stderr = [], []
    for out in outputs:
        if out.WhichOneof("output") == "stream":
            (stderr if out.stream.name == output_pb2.STREAM_NAME_STDERR else stdout).append(
                out.stream.text)
    return "".join(stdout), "".join(stderr)


def rich_outputs(outputs: Iterable[output_pb2.Output]) -> List[Any]:
    """The execute_result / display_data messages, in order."""
    found = []
    for out in outputs:
        kind = out.WhichOneof("output")
        if kind in ("execute_result", "display_data"):
            found.append(getattr(out, kind))
    return found


def check_result(job: Job, result: ExecutionResult) -> List[str]:
    """What is wrong with ``result`` for ``job`` (empty list: nothing)."""
    if result.status != job.status:
        return [f"status {result.status} ({result.status_detail!r}), expected {job.status}; "
                f"text {clip(result.text)}"]
    problems: List[str] = []
    stdout, stderr = stream_texts(result.outputs)
    if job.stdout is not None and stdout != job.stdout:
        problems.append(f"stdout: {first_difference(job.stdout, stdout)}")
    if job.stderr is not None and stderr != job.stderr:
        problems.append(f"stderr: {first_difference(job.stderr, stderr)}")
    if job.output_kinds is not None:
        kinds = [out.WhichOneof("output") for out in result.outputs]
        if kinds != job.output_kinds:
            problems.append(f"outputs {kinds}, expected {job.output_kinds}")
    rich = rich_outputs(result.outputs)
    if job.plain_results is not None:
        plain = [r.data.get("text/plain", "") for r in rich]
        if plain != job.plain_results:
            problems.append(f"text/plain of results {plain}, expected {job.plain_results}")
    if job.mime_types is not None:
        mimes = [sorted(r.data.keys()) for r in rich]
        if mimes != job.mime_types:
            problems.append(f"mime types {mimes}, expected {job.mime_types}")
    if job.text is not None and result.text != job.text:
        problems.append(f"text: {first_difference(job.text, result.text)}")
    if job.text_prefix is not None and not result.text.startswith(job.text_prefix):
        problems.append(f"text {clip(result.text)} does not start with {clip(job.text_prefix)}")
    if job.text_suffix is not None and not result.text.endswith(job.text_suffix):
        problems.append(f"text ...{clip(result.text[-80:])} does not end with "
                        f"{clip(job.text_suffix[-80:])}")
    if job.error_name is not None:
        if result.error is None:
            problems.append(f"no error, expected {job.error_name}")
        else:
            if result.error.ename != job.error_name:
                problems.append(f"error {result.error.ename}, expected {job.error_name}")
            if job.error_value is not None and result.error.evalue != job.error_value:
                problems.append(f"evalue {result.error.evalue!r}, expected {job.error_value!r}")
            if any(ANSI_ESCAPE in line for line in result.error.traceback):
                problems.append("ANSI escapes in ExecutionResult.error.traceback")
    if job.status_detail_prefix is not None and \
            not result.status_detail.startswith(job.status_detail_prefix):
        problems.append(f"status_detail {result.status_detail!r}, expected it to start with "
                        f"{job.status_detail_prefix!r}")
    if ANSI_ESCAPE in result.text:
        problems.append("ANSI escapes in ExecutionResult.text")
    return problems


def counter_job(expected: Optional[int]) -> Job:
    """Increments a counter that lives in the kernel: checks state is kept between executions
    and lost on restart (the driver resets ``expected`` then)."""
    return Job("counter",
               "_soak_counter = globals().get('_soak_counter', 0) + 1\nprint(_soak_counter)\n",
               stdout=None if expected is None else f"{expected}\n",
               text=None if expected is None else f"{expected}\n",
               output_kinds=["stream"])


def compute_job(rng: random.Random) -> Job:
    n = rng.randint(10_000, 400_000)
    value = (n - 1) * n * (2 * n - 1) // 6  # sum of i*i for i in range(n)
    return Job("compute", f"sum(i * i for i in range({n}))", text=f"{value}\n",
               output_kinds=["execute_result"], plain_results=[str(value)],
               mime_types=[["text/plain"]])


def small_print_job(rng: random.Random, tag: str) -> Job:
    """stdout, then stderr, then stdout again: three stream outputs in that order."""
    lines = rng.randint(1, 30)
    head = "".join(f"{tag} line {i}\n" for i in range(lines))
    source = ("import sys\n"
              f"for i in range({lines}):\n"
              f"    print(f'{tag} line {{i}}')\n"
              "sys.stdout.flush()\n"
              f"print('{tag} warning', file=sys.stderr, flush=True)\n"
              f"print('{tag} done', flush=True)\n")
    return Job("small_print", source, stdout=f"{head}{tag} done\n", stderr=f"{tag} warning\n",
               output_kinds=["stream", "stream", "stream"],
               text=f"{head}{tag} warning\n{tag} done\n")


def print_volume_job(kind: str, rng: random.Random, tag: str, min_bytes: int,
                     max_bytes: int) -> Job:
    """Prints about ``min_bytes``..``max_bytes`` of numbered lines in one write."""
    width = rng.randint(20, 120)
    line_bytes = 8 + width + 1  # "%07d " + payload + "\n"
    lines = max(1, rng.randint(min_bytes, max_bytes) // line_bytes)
    expected = f"{tag}\n" + "".join("%07d %s\n" % (i, "y" * width) for i in range(lines))
    source = ("import sys\n"
              f"_ = sys.stdout.write({tag + chr(10)!r} + "
              f"''.join('%07d %s\\n' % (i, 'y' * {width}) for i in range({lines})))\n")
    job = Job(kind, source, stdout=expected, stderr="", output_kinds=["stream"])
    if len(expected.encode()) < RESULT_TEXT_CAP_BYTES - 4096:
        job.text = expected
    else:  # the middle of the text is cut out; head and tail are kept
        job.text_prefix, job.text_suffix = expected[:2000], expected[-2000:]
    return job


def error_job(tag: str) -> Job:
    return Job("error", f"raise ValueError('soak {tag}')", status=ExecutionStatus.ERROR,
               error_name="ValueError", error_value=f"soak {tag}", output_kinds=["error"],
               text_prefix=f"ValueError: soak {tag}\n")


def rich_job(tag: str) -> Job:
    """HTML, a display updated in place through its display_id, and a PNG."""
    source = ("from IPython.display import display, HTML, Image\n"
              "import base64\n"
              f"display(HTML('<b>soak {tag}</b>'))\n"
              f"handle = display({{'text/plain': 'v0 {tag}'}}, raw=True, display_id=True)\n"
              f"handle.update({{'text/plain': 'v1 {tag}'}}, raw=True)\n"
              f"display(Image(data=base64.b64decode('{PNG_1X1_BASE64}')))\n")
    html, image = "<IPython.core.display.HTML object>", "<IPython.core.display.Image object>"
    return Job("rich", source, output_kinds=["display_data"] * 3,
               plain_results=[html, f"v1 {tag}", image],
               mime_types=[["text/html", "text/plain"], ["text/plain"],
                           ["image/png", "text/plain"]],
               text=f"{html}\nv1 {tag}\n{image}\n[image/png 1x1]\n")


def timeout_job(rng: random.Random) -> Job:
    """Never ends by itself: the server interrupts it at its timeout."""
    source = rng.choice(["while True:\n    pass\n", "import time\ntime.sleep(3600)\n"])
    return Job("timeout", source, status=ExecutionStatus.TIMEOUT,
               timeout_ms=rng.randint(300, 900), error_name="KeyboardInterrupt",
               output_kinds=["error"], status_detail_prefix="interrupted after")


def interrupt_job(marker: str) -> Job:
    """Prints a marker (so the driver sees it running), then sleeps until interrupted.

    Short sleeps in a loop, not one long sleep: CPython runs a signal's handler between
    bytecodes, so a SIGINT that lands after print() returns but before a single long sleep
    enters clock_nanosleep is only acted on when the sleep ends. Interrupting right after the
    marker appears hits that window about once in a thousand runs under load."""
    return Job("interrupt",
               f"import time\nprint({marker!r}, flush=True)\nwhile True:\n    time.sleep(0.05)\n",
               status=ExecutionStatus.INTERRUPTED, stdout=f"{marker}\n",
               error_name="KeyboardInterrupt", output_kinds=["stream", "error"])


def death_job() -> Job:
    return Job("death", "import os\nos._exit(1)\n", status=ExecutionStatus.KERNEL_DIED,
               output_kinds=[], status_detail_prefix="exited with code 1",
               text="[kernel died: exited with code 1]")


def stubborn_job(escalation_seconds: int) -> Job:
    """Ignores SIGINT: at its timeout the gateway interrupts it, and kills the kernel when the
    interrupt is still ignored after --interrupt-escalation-seconds."""
    return Job("stubborn",
               "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
               "while True:\n    time.sleep(0.05)\n",
               status=ExecutionStatus.TIMEOUT, timeout_ms=500, output_kinds=[],
               status_detail_prefix=f"timed out; ignored an interrupt for {escalation_seconds}s")


def pool_cell_job(rng: random.Random, tag: str) -> Job:
    """A stateless job for a notebook pool cell (its outcome does not depend on order)."""
    kind = rng.choice(["small_print", "compute", "error", "rich", "medium_print"])
    if kind == "small_print":
        return small_print_job(rng, tag)
    if kind == "compute":
        return compute_job(rng)
    if kind == "error":
        return error_job(tag)
    if kind == "rich":
        return rich_job(tag)
    return print_volume_job("medium_print", rng, tag, 10_000, 60_000)


# ---------------------------------------------------------------------------------------------
# Cross-checking the RPC results against what the event stream showed
# ---------------------------------------------------------------------------------------------

@dataclass
class ExecutionDigest:
    """What one execution produced, as seen by the RPC result or by the event stream."""

    status: str
    stdout: str
    stderr: str
    display_data: int
    execute_results: int
    errors: int

    @staticmethod
    def of_result(result: ExecutionResult) -> "ExecutionDigest":
        stdout, stderr = stream_texts(result.outputs)
        kinds = collections.Counter(out.WhichOneof("output") for out in result.outputs)
        return ExecutionDigest(str(result.status), stdout, stderr, kinds["display_data"],
                               kinds["execute_result"], kinds["error"])


class ExecutionLedger:
    """Per kernel: matches each execution the driver got a result for with the same execution
    as the follower saw it in the event stream, and compares the two."""

    def __init__(self, where: str, failures: FailureLog, counters: Counters) -> None:
        self._where = where
        self._failures = failures
        self._counters = counters
        self._lock = threading.Lock()
        self._from_driver: Dict[str, ExecutionDigest] = {}
        self._from_stream: Dict[str, ExecutionDigest] = {}

    def add_from_driver(self, execution_id: str, digest: ExecutionDigest) -> None:
        self._add(execution_id, digest, self._from_driver, self._from_stream, driver_first=True)

    def add_from_stream(self, execution_id: str, digest: ExecutionDigest) -> None:
        self._add(execution_id, digest, self._from_stream, self._from_driver, driver_first=False)

    def _add(self, execution_id: str, digest: ExecutionDigest, mine: Dict[str, ExecutionDigest],
             theirs: Dict[str, ExecutionDigest], driver_first: bool) -> None:
        with self._lock:
            other = theirs.pop(execution_id, None)
            if other is None:
                if execution_id in mine:
                    self._failures.record(self._where, "stream_vs_result",
                                          f"execution {execution_id} reported twice")
                mine[execution_id] = digest
                return
        from_driver, from_stream = (digest, other) if driver_first else (other, digest)
        self._compare(execution_id, from_driver, from_stream)

    def _compare(self, execution_id: str, from_driver: ExecutionDigest,
                 from_stream: ExecutionDigest) -> None:
        self._counters.add("executions_cross_checked")
        if from_driver == from_stream:
            return
        differences = []
        for name in ("status", "display_data", "execute_results", "errors"):
            if getattr(from_driver, name) != getattr(from_stream, name):
                differences.append(f"{name}: result {getattr(from_driver, name)}, "
                                   f"stream {getattr(from_stream, name)}")
        for name in ("stdout", "stderr"):
            if getattr(from_driver, name) != getattr(from_stream, name):
                differences.append(f"{name}: " + first_difference(
                    getattr(from_driver, name), getattr(from_stream, name)))
        self._failures.record(self._where, "stream_vs_result",
                              f"execution {execution_id}: " + "; ".join(differences))

    def unmatched(self) -> Tuple[List[str], List[str]]:
        """(executions only the driver saw, executions only the stream saw)."""
        with self._lock:
            return sorted(self._from_driver), sorted(self._from_stream)


# ---------------------------------------------------------------------------------------------
# The follower: one resumable StreamOutputs reader per kernel
# ---------------------------------------------------------------------------------------------

@dataclass
class StreamTrace:
    """One execution as the event stream showed it so far."""

    started: bool = False
    stdout: List[str] = field(default_factory=list)
    stderr: List[str] = field(default_factory=list)
    kinds: collections.Counter = field(default_factory=collections.Counter)


class StreamFollower(threading.Thread):
    """Follows one kernel's EventLog from seq 1, cutting its own stream often (a random
    deadline, a cancel after a random number of events, sometimes a brand-new connection)
    and resuming with ``after_seq`` = the last seq received. Checks that seqs come without
    gap or duplicate, that each execution's events come in order, and hands every finished
    execution to the ledger to compare with the RPC result."""

    def __init__(self, index: int, kernel_id: str, target: str, token: str,
                 ledger: ExecutionLedger, counters: Counters, failures: FailureLog,
                 rng: random.Random) -> None:
        super().__init__(name=f"follower-{index}", daemon=True)
        self.where = f"follower {index}"
        self.kernel_id = kernel_id
        self._target, self._token = target, token
        self._ledger = ledger
        self._counters = counters
        self._failures = failures
        self._rng = rng
        self._gateway = Gateway(target, token)
        self._call_lock = threading.Lock()
        self._call: Any = None
        self._progress = threading.Condition()
        self.last_seq = 0
        self.events = 0
        self._traces: Dict[str, StreamTrace] = {}
        self._finished_ids: set = set()
        self.kernel_states: collections.Counter = collections.Counter()  # DEAD, RESTARTING...
        self.automatic_restarts = 0
        self.stopping = threading.Event()            # stop now (abort)
        self.shutdown_expected = threading.Event()   # the kernel is being shut down
        self.end_reason = ""

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._follow()
        except Exception:  # a bug in this script: report it, do not hang the run
            self._failures.record(self.where, "follower_crashed", traceback.format_exc())
            self.end_reason = "crashed"
        finally:
            self._gateway.close()
            with self._progress:
                self._progress.notify_all()

    def _follow(self) -> None:
        while not self.stopping.is_set():
            # How this connection will end: its deadline, or a cancel after some events.
            deadline_s = self._rng.uniform(1.0, 8.0)
            cancel_after = self._rng.choice([None, None, 0, self._rng.randint(1, 400)])
            request = gw.StreamOutputsRequest(kernel_id=self.kernel_id, after_seq=self.last_seq,
                                              follow=True)
            with self._call_lock:
                if self.stopping.is_set():
                    return
                self._call = self._gateway.stream(request, deadline_s)
                call = self._call
            received = 0
            try:
                if cancel_after == 0:  # cancelled before anything arrives
                    call.cancel()
                for event in call:
                    self._handle(event)
                    received += 1
                    if cancel_after is not None and received >= cancel_after:
                        call.cancel()
                        break
                else:
                    # The stream ended OK: only expected when the kernel is shut down.
                    if self.shutdown_expected.is_set():
                        self.end_reason = "stream ended at shutdown"
                        return
                    self._failures.record(self.where, "stream_ended",
                                          f"stream ended OK at seq {self.last_seq} while the "
                                          "kernel is alive")
                self._counters.add("stream_reconnects_planned")
            except grpc.RpcError as e:
                if not self._on_stream_error(e, planned_cancel=cancel_after is not None):
                    return
            self._counters.add("stream_reconnects")
            if self._rng.random() < 0.2:  # sometimes also a new TCP connection
                self._gateway.close()
                self._gateway = Gateway(self._target, self._token)
                self._counters.add("stream_new_connections")

    def _on_stream_error(self, error: grpc.RpcError, planned_cancel: bool) -> bool:
        """Handles how a stream ended; returns False when the follower should stop."""
        code = error.code()
        if self.stopping.is_set():
            return False
        if code == grpc.StatusCode.DEADLINE_EXCEEDED or \
                (code == grpc.StatusCode.CANCELLED and planned_cancel):
            self._counters.add("stream_reconnects_planned")
            return True
        if code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE):
            # Cut off by the server (fell behind, or transport): resumable by seq.
            self._counters.add("stream_cut_by_server")
            log(f"[{self.where}] stream cut by the server ({code.name}): {error.details()}")
            return True
        if code == grpc.StatusCode.NOT_FOUND and self.shutdown_expected.is_set():
            self.end_reason = "kernel gone at reconnect"
            return False
        if code == grpc.StatusCode.OUT_OF_RANGE:
            # Events we had not read were evicted: they cannot be checked any more.
            self._failures.record(self.where, "stream_events_lost",
                                  f"resume after seq {self.last_seq}: {error.details()}")
            info = self._gateway.get_kernel(self.kernel_id)
            self.last_seq = max(self.last_seq, info.oldest_retained_seq - 1)
            self._traces.clear()  # their beginnings are gone; the ledger reports them unmatched
            return True
        self._failures.record(self.where, "stream_error",
                              f"{code.name}: {error.details()} (after seq {self.last_seq})")
        if code == grpc.StatusCode.NOT_FOUND:
            self.end_reason = "kernel vanished"
            return False
        return True

    def stop(self) -> None:
        self.stopping.set()
        with self._call_lock:
            if self._call is not None:
                self._call.cancel()

    def wait_caught_up(self, seq: int, timeout_s: float) -> bool:
        """Waits until the follower has received every event up to ``seq``."""
        deadline = time.monotonic() + timeout_s
        with self._progress:
            while self.last_seq < seq and self.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._progress.wait(remaining)
            return self.last_seq >= seq

    # -- checking events -----------------------------------------------------------------------

    def _handle(self, event: execution_pb2.OutputEvent) -> None:
        if event.seq != self.last_seq + 1:
            kind = "stream_duplicate" if event.seq <= self.last_seq else "stream_gap"
            self._failures.record(self.where, kind,
                                  f"got seq {event.seq} after {self.last_seq}")
            if event.seq <= self.last_seq:
                return
        if event.kernel_id != self.kernel_id:
            self._failures.record(self.where, "stream_kernel_id",
                                  f"seq {event.seq} has kernel_id {event.kernel_id!r}")
        kind = event_kind(event)
        if kind == "kernel_status":
            self._on_kernel_status(event)
        else:
            self._on_execution_event(event, kind)
        self.events += 1
        self._counters.add("stream_events")
        with self._progress:
            self.last_seq = event.seq
            self._progress.notify_all()

    def _on_kernel_status(self, event: execution_pb2.OutputEvent) -> None:
        state = kernel_state_name(event.kernel_status.state)
        self.kernel_states[state] += 1
        if state == "RESTARTING" and event.kernel_status.reason.startswith("automatic restart"):
            self.automatic_restarts += 1

    def _on_execution_event(self, event: execution_pb2.OutputEvent, kind: str) -> None:
        execution_id = event.execution_id
        problem = None
        if not execution_id:
            problem = "has no execution_id"
        elif kind == "execution_queued":
            if execution_id in self._traces or execution_id in self._finished_ids:
                problem = "queued twice"
            else:
                self._traces[execution_id] = StreamTrace()
        else:
            trace = self._traces.get(execution_id)
            if trace is None:
                problem = ("came after its execution_finished" if execution_id in
                           self._finished_ids else "came before its execution_queued")
            elif kind == "execution_started":
                if trace.started:
                    problem = "started twice"
                trace.started = True
            elif kind == "execution_finished":
                self._finish(execution_id, trace, event)
            else:  # output, display_update, clear_output
                if not trace.started:
                    problem = "output before execution_started"
                self._record_output(trace, event, kind)
        if problem:
            self._failures.record(self.where, "stream_order",
                                  f"seq {event.seq} {kind} of execution {execution_id!r} "
                                  f"{problem}")

    @staticmethod
    def _record_output(trace: StreamTrace, event: execution_pb2.OutputEvent, kind: str) -> None:
        if kind != "output":
            return  # display updates and clears change outputs, they add none
        which = event.output.WhichOneof("output")
        if which == "stream":
            is_stderr = event.output.stream.name == output_pb2.STREAM_NAME_STDERR
            (trace.stderr if is_stderr else trace.stdout).append(event.output.stream.text)
        else:
            trace.kinds[which] += 1

    def _finish(self, execution_id: str, trace: StreamTrace,
                event: execution_pb2.OutputEvent) -> None:
        del self._traces[execution_id]
        self._finished_ids.add(execution_id)
        status = status_name(event.execution_finished.status)
        if not trace.started and status not in ("CANCELLED", "KERNEL_DIED"):
            self._failures.record(self.where, "stream_order",
                                  f"execution {execution_id} finished {status} without "
                                  "execution_started")
        self._ledger.add_from_stream(execution_id, ExecutionDigest(
            status, "".join(trace.stdout), "".join(trace.stderr), trace.kinds["display_data"],
            trace.kinds["execute_result"], trace.kinds["error"]))

    def open_executions(self) -> List[str]:
        """Executions queued or running when the follower stopped."""
        return sorted(self._traces)


# ---------------------------------------------------------------------------------------------
# The driver: one thread per kernel doing the work
# ---------------------------------------------------------------------------------------------

@dataclass
class PoolCell:
    """The local model of one notebook cell."""

    cell_id: str
    job: Job
    state: CellState = CellState.NEW
    outputs: List[output_pb2.Output] = field(default_factory=list)  # of its last run


class KernelDriver(threading.Thread):
    """Drives one kernel: a random mix of work items (WORK_MIX), a RestartKernel now and then
    and a kernel death now and then, checking every result. Keeps a model of the kernel (the
    in-kernel counter, execution count, restart count, the notebook) to check against."""

    def __init__(self, index: int, kernel_id: str, gateway: Gateway, settings: argparse.Namespace,
                 ledger: ExecutionLedger, counters: Counters, failures: FailureLog,
                 stop: threading.Event, rng: random.Random, clock_start: float) -> None:
        super().__init__(name=f"driver-{index}", daemon=True)
        self.index = index
        self.where = f"kernel {index}"
        self.kernel_id = kernel_id
        self.gateway = gateway
        self.settings = settings
        self.ledger = ledger
        self.counters = counters
        self.failures = failures
        self.stop_event = stop
        self.rng = rng
        self.clock_start = clock_start
        self.jobs_made = 0
        # The model of the kernel. None = unknown (after a failure): resynchronised next time.
        self.counter: Optional[int] = 0
        self.execution_count: Optional[int] = 0
        self.restart_count = 0
        self.deaths = 0
        self.automatic_restarts = 0
        self.death_times: List[float] = []   # monotonic; for predicting the restart policy
        self.pool: Dict[str, PoolCell] = {}
        self.cell_order: List[str] = []
        self.cells_made = 0
        now = time.monotonic()
        self.next_restart_at = self._schedule(now, settings.restart_every, first=True)
        self.next_death_at = self._schedule(now, settings.death_every, first=True)
        kinds, weights = zip(*WORK_MIX)
        self._work_kinds, self._work_weights = list(kinds), list(weights)
        self.model_uncertain = False

    def _schedule(self, now: float, every: float, first: bool = False) -> float:
        if every <= 0:
            return float("inf")
        return now + every * (self.rng.uniform(0.3, 1.0) if first else self.rng.uniform(0.7, 1.3))

    def tag(self) -> str:
        self.jobs_made += 1
        return f"k{self.index}-{self.jobs_made}"

    def fail(self, kind: str, message: str) -> None:
        self.failures.record(self.where, kind, message)

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run_item("setup_pool", self.setup_pool)
            while not self.stop_event.is_set():
                now = time.monotonic()
                if len(self.cell_order) < CELL_POOL_SIZE:  # a failed item left it short
                    self._run_item("setup_pool", lambda: self.add_pool_cell(index=None))
                elif now >= self.next_death_at:
                    self.next_death_at = self._schedule(now, self.settings.death_every)
                    self._run_item("death", self.item_death)
                elif now >= self.next_restart_at:
                    self.next_restart_at = self._schedule(now, self.settings.restart_every)
                    self._run_item("restart", self.item_restart)
                else:
                    kind = self.rng.choices(self._work_kinds, self._work_weights)[0]
                    self._run_item(kind, getattr(self, f"item_{kind}"))
                self.stop_event.wait(self.settings.pace_ms / 1000)  # pacing, not synchronising
        except Exception:
            self.fail("driver_crashed", traceback.format_exc())

    def _run_item(self, kind: str, item: Callable[[], None]) -> None:
        self.counters.add(f"item_{kind}")
        try:
            item()
        except CellgateError as e:
            self.fail(kind, f"RPC failed: {e}")
            self.recover()
        except SoakFailure as e:
            self.fail(kind, str(e))
            self.recover()

    def recover(self) -> None:
        """After a failed item: get the kernel running again and take the model from the
        server (the failure is already recorded; the next checks start from there)."""
        self.counter = None
        self.execution_count = None
        self.model_uncertain = True  # end-of-run count comparisons are skipped for it
        try:
            info = self.gateway.get_kernel(self.kernel_id)
            if info.state in (KernelState.RESTARTING, KernelState.STARTING):
                self.wait_for_kernel_state(info.last_seq, ("IDLE", "DEAD"))
                info = self.gateway.get_kernel(self.kernel_id)
            if info.state == KernelState.DEAD and self.settings.restart_policy == "on" and \
                    "not restarted" not in info.last_death_reason:
                try:  # an automatic restart may be on its way (after its backoff)
                    self.wait_for_kernel_state(info.last_seq, ("IDLE",))
                except SoakFailure:
                    pass
                info = self.gateway.get_kernel(self.kernel_id)
            self.restart_count = info.restart_count
            if info.state == KernelState.DEAD:
                self.restart("recovery")
            self.resync_notebook_model()
        except (CellgateError, SoakFailure) as e:
            self.fail("recover", f"{type(e).__name__}: {e}")

    def wait_for_kernel_state(self, after_seq: int, states: Tuple[str, ...]) -> None:
        self.wait_for_event(
            after_seq, lambda ev: event_kind(ev) == "kernel_status" and
            kernel_state_name(ev.kernel_status.state) in states,
            f"kernel state {'/'.join(states)}", deadline_s=KERNEL_START_DEADLINE_S)

    def resync_notebook_model(self) -> None:
        """Takes cell order, states and outputs from GetNotebook (sources are ours)."""
        notebook = Notebook.from_proto(self.gateway.call("GetNotebook", gw.GetNotebookRequest(
            kernel_id=self.kernel_id), UNARY_DEADLINE_S))
        self.cell_order = [c.cell_id for c in notebook.cells if c.cell_id in self.pool]
        for stored in notebook.cells:
            if stored.cell_id in self.pool:
                cell = self.pool[stored.cell_id]
                cell.state, cell.outputs = stored.state, list(stored.outputs)
        for cell_id in set(self.pool) - set(self.cell_order):
            del self.pool[cell_id]

    # -- executing and accounting --------------------------------------------------------------

    def execute(self, job: Job, deadline_s: Optional[float] = None) -> ExecutionResult:
        request = gw.ExecuteRequest(kernel_id=self.kernel_id, code=job.source,
                                    timeout_ms=job.timeout_ms)
        started = time.monotonic()
        result = ExecutionResult.from_proto(self.gateway.call(
            "Execute", request, deadline_s or job.timeout_ms / 1000 + 30))
        if job.kind == "counter":
            self.counters.add_latency(started - self.clock_start,
                                      (time.monotonic() - started) * 1000)
        self.account(job, result)
        return result

    def account(self, job: Job, result: ExecutionResult) -> None:
        """Counts, cross-checks and checks one result."""
        self.counters.add("executions")
        self.counters.add(f"executions_{str(result.status).lower()}")
        self.ledger.add_from_driver(result.execution_id, ExecutionDigest.of_result(result))
        self.check_execution_count(result)
        for problem in check_result(job, result):
            self.fail(job.kind, problem)

    def check_execution_count(self, result: ExecutionResult) -> None:
        """Every execution the kernel started takes the next count; a restart resets it."""
        if result.status == ExecutionStatus.CANCELLED or result.execution_count == 0:
            return
        if self.execution_count is not None and result.execution_count != self.execution_count + 1:
            self.fail("execution_count", f"{result.status} execution got count "
                      f"{result.execution_count}, expected {self.execution_count + 1}")
        self.execution_count = result.execution_count

    def after_restart(self) -> None:
        """The model after any restart: fresh interpreter, cells STALE."""
        self.restart_count += 1
        self.counter = 0
        self.execution_count = 0
        for cell in self.pool.values():
            if cell.state in (CellState.OK, CellState.ERROR, CellState.CANCELLED):
                cell.state = CellState.STALE

    # -- scratch executions ----------------------------------------------------------------------

    def item_counter(self) -> None:
        expected = None if self.counter is None else self.counter + 1
        result = self.execute(counter_job(expected))
        try:
            self.counter = int(result.text.strip()) if result.ok else None
        except ValueError:
            self.counter = None

    def item_compute(self) -> None:
        self.execute(compute_job(self.rng))

    def item_small_print(self) -> None:
        self.execute(small_print_job(self.rng, self.tag()))

    def item_large_print(self) -> None:
        self.execute(print_volume_job("large_print", self.rng, self.tag(), 100_000, 400_000))

    def item_error(self) -> None:
        self.execute(error_job(self.tag()))

    def item_rich(self) -> None:
        self.execute(rich_job(self.tag()))

    def item_timeout(self) -> None:
        before = self.gateway.get_kernel(self.kernel_id)
        result = self.execute(timeout_job(self.rng))
        if "ignored an interrupt" in result.status_detail:  # a failure (recorded): follow it
            self.follow_restart_policy(before, "ignored an interrupt")

    def item_interrupt(self) -> None:
        """Runs code that prints a marker and sleeps; once the marker shows up in the event
        stream, InterruptKernel; the execution must end INTERRUPTED."""
        marker = f"soak-sleeping-{self.tag()}"
        job = interrupt_job(marker)
        before = self.gateway.get_kernel(self.kernel_id)
        seq_before = before.last_seq
        future = self.gateway.call_future("Execute", gw.ExecuteRequest(
            kernel_id=self.kernel_id, code=job.source, timeout_ms=EXECUTION_TIMEOUT_MS),
            EXECUTION_DEADLINE_S)
        printed: List[str] = []

        def marker_line_printed(event: execution_pb2.OutputEvent) -> bool:
            # The whole line: interrupting inside print() could cut it (a test race).
            if event_kind(event) == "output" and event.output.WhichOneof("output") == "stream":
                printed.append(event.output.stream.text)
            return f"{marker}\n" in "".join(printed)

        try:
            self.wait_for_event(seq_before, marker_line_printed, "the marker printed")
        finally:
            # Interrupt even if the marker never showed, so the execution cannot hang on.
            self.gateway.call("InterruptKernel", gw.InterruptKernelRequest(
                kernel_id=self.kernel_id), UNARY_DEADLINE_S)
        try:
            result = ExecutionResult.from_proto(future.result(timeout=EXECUTION_DEADLINE_S))
        except grpc.RpcError as e:
            raise from_rpc_error(e) from e
        self.account(job, result)
        if "ignored an interrupt" in result.status_detail:
            # The gateway killed the kernel for not answering the interrupt in time: that is a
            # death, and the restart policy applies.
            self.counters.add("interrupts_escalated_to_kill")
            self.follow_restart_policy(before, "ignored an interrupt")

    # -- restarts and deaths ---------------------------------------------------------------------

    def restart(self, why: str) -> KernelInfo:
        """RestartKernel, checked: IDLE, a new process, counts reset; cells STALE."""
        before = self.gateway.get_kernel(self.kernel_id)
        info = KernelInfo.from_proto(self.gateway.call("RestartKernel", gw.RestartKernelRequest(
            kernel_id=self.kernel_id), KERNEL_START_DEADLINE_S))
        self.after_restart()
        self.counters.add("restarts_explicit")
        problems = []
        if info.state != KernelState.IDLE:
            problems.append(f"state {info.state} after RestartKernel")
        if info.restart_count != self.restart_count:
            problems.append(f"restart_count {info.restart_count}, expected {self.restart_count}")
            self.restart_count = info.restart_count
        if info.pid == before.pid:
            problems.append(f"pid {info.pid} unchanged by RestartKernel")
        if info.execution_count != 0:
            problems.append(f"execution_count {info.execution_count} after restart")
        for problem in problems:
            self.fail(f"restart ({why})", problem)
        self.check_notebook()
        return info

    def item_restart(self) -> None:
        self.restart("periodic")

    def item_death(self) -> None:
        """The kernel exits (os._exit) or, a third of the time when the server escalates
        ignored interrupts, ignores SIGINT past its timeout and is killed by the gateway; the
        gateway must then follow its restart policy."""
        before = self.gateway.get_kernel(self.kernel_id)
        escalation_s = self.settings.escalation_seconds
        if escalation_s and self.rng.random() < 1 / 3:
            self.counters.add("deaths_by_escalation")
            self.execute(stubborn_job(escalation_s), deadline_s=escalation_s + 60)
            self.follow_restart_policy(before, "ignored an interrupt")
        else:
            self.execute(death_job())
            self.follow_restart_policy(before, "exited with code 1")

    def follow_restart_policy(self, before: KernelInfo, death_reason: str) -> None:
        """After a death of the kernel described by ``before``: with the restart policy on,
        the gateway must restart it by itself unless it died more than --max-restarts times
        within the window; then (or with the policy off) it stays DEAD and is restarted here.
        ``death_reason``: what the death's reason must contain."""
        died_at = time.monotonic()
        self.deaths += 1
        self.counters.add("deaths")
        settings = self.settings
        window = settings.restart_window_seconds
        self.death_times = [t for t in self.death_times if died_at - t < window]
        # Deaths near the window's edge may fall either side of it on the server's clock.
        ambiguous = any(abs((died_at - t) - window) < 5 for t in self.death_times)
        self.death_times.append(died_at)
        policy_on = settings.restart_policy == "on"
        expect_automatic = policy_on and len(self.death_times) <= settings.max_restarts

        restarting_reasons: List[str] = []

        def restarted_or_given_up(event: execution_pb2.OutputEvent) -> bool:
            if event_kind(event) != "kernel_status":
                return False
            state = kernel_state_name(event.kernel_status.state)
            reason = event.kernel_status.reason
            if state == "RESTARTING":
                restarting_reasons.append(reason)
            if state == "IDLE" and restarting_reasons:
                return True   # restarted automatically
            return state == "DEAD" and (not policy_on or "not restarted" in reason)

        backoff_s = settings.restart_backoff_ms / 1000 * 2 ** min(len(self.death_times) - 1, 10)
        events = self.wait_for_event(before.last_seq, restarted_or_given_up,
                                     "an automatic restart or DEAD for good",
                                     deadline_s=backoff_s + KERNEL_START_DEADLINE_S)
        automatic = bool(restarting_reasons)
        if automatic != expect_automatic and not ambiguous:
            statuses = [describe_status(ev) for ev in events if event_kind(ev) == "kernel_status"]
            self.fail("restart_policy", f"{'restarted' if automatic else 'not restarted'} by "
                      f"the gateway after death {len(self.death_times)} within {window} s "
                      f"(policy {settings.restart_policy}, max {settings.max_restarts}); "
                      f"kernel states {statuses}")
        info = self.gateway.get_kernel(self.kernel_id)
        if death_reason not in info.last_death_reason:
            self.fail("restart_policy", f"last_death_reason {info.last_death_reason!r}, "
                      f"expected it to contain {death_reason!r}")
        if not automatic:
            self.counters.add("deaths_left_dead")
            if info.state != KernelState.DEAD:
                self.fail("restart_policy", f"state {info.state} after the gateway gave up, "
                          "expected DEAD")
            self.restart("after death")
            return
        self.after_restart()
        self.automatic_restarts += 1
        self.counters.add("restarts_automatic")
        if not restarting_reasons[0].startswith("automatic restart after: ") or \
                death_reason not in restarting_reasons[0]:
            self.fail("restart_policy", f"RESTARTING reason {restarting_reasons[0]!r}")
        if info.restart_count != self.restart_count:
            self.fail("restart_policy", f"restart_count {info.restart_count}, expected "
                      f"{self.restart_count}")
            self.restart_count = info.restart_count
        if info.pid == before.pid:
            self.fail("restart_policy", f"pid {info.pid} unchanged by the automatic restart")
        self.check_notebook()

    def wait_for_event(self, after_seq: int, matches: Callable[[execution_pb2.OutputEvent], bool],
                       what: str, deadline_s: float = EVENT_WAIT_DEADLINE_S
                       ) -> List[execution_pb2.OutputEvent]:
        """Follows the kernel's events after ``after_seq`` until one ``matches``; returns the
        events read. Raises SoakFailure when none does within ``deadline_s``."""
        call = self.gateway.stream(gw.StreamOutputsRequest(
            kernel_id=self.kernel_id, after_seq=after_seq, follow=True), deadline_s)
        seen: List[execution_pb2.OutputEvent] = []
        try:
            for event in call:
                seen.append(event)
                if matches(event):
                    return seen
            raise SoakFailure(f"stream ended before {what}")
        except grpc.RpcError as e:
            statuses = [describe_status(ev) for ev in seen if event_kind(ev) == "kernel_status"]
            raise SoakFailure(f"waiting for {what}: {e.code().name} after {deadline_s:.0f} s "
                              f"({len(seen)} events, kernel states {statuses})") from None
        finally:
            call.cancel()

    # -- the notebook pool -----------------------------------------------------------------------

    def new_cell_id(self) -> str:
        self.cells_made += 1
        return f"k{self.index}-c{self.cells_made}"

    def setup_pool(self) -> None:
        for _ in range(CELL_POOL_SIZE):
            self.add_pool_cell(index=None)

    def add_pool_cell(self, index: Optional[int]) -> None:
        cell = PoolCell(self.new_cell_id(), pool_cell_job(self.rng, self.tag()))
        request = gw.AddCellRequest(kernel_id=self.kernel_id, source=cell.job.source,
                                    cell_id=cell.cell_id)
        if index is not None:
            request.index = index
        added = Cell.from_proto(self.gateway.call("AddCell", request, UNARY_DEADLINE_S))
        expected_index = len(self.cell_order) if index is None else index
        self.cell_order.insert(expected_index, cell.cell_id)
        self.pool[cell.cell_id] = cell
        if (added.cell_id, added.index, added.state) != (cell.cell_id, expected_index,
                                                         CellState.NEW):
            self.fail("add_cell", f"AddCell returned id {added.cell_id} index {added.index} "
                      f"state {added.state}, expected {cell.cell_id} {expected_index} NEW")

    def record_cell_run(self, cell: PoolCell, result: ExecutionResult) -> None:
        self.account(cell.job, result)
        if result.cell_id != cell.cell_id:
            self.fail("run_cell", f"result cell_id {result.cell_id!r}, expected {cell.cell_id}")
        cell.state = CellState.OK if result.ok else CellState.ERROR
        cell.outputs = list(result.outputs)

    def item_run_pool_cell(self) -> None:
        cell = self.pool[self.rng.choice(self.cell_order)]
        result = ExecutionResult.from_proto(self.gateway.call("RunCell", gw.RunCellRequest(
            kernel_id=self.kernel_id, cell_id=cell.cell_id, timeout_ms=EXECUTION_TIMEOUT_MS),
            EXECUTION_DEADLINE_S))
        self.record_cell_run(cell, result)
        if self.rng.random() < 0.3:  # the stored cell must match the result
            stored = Cell.from_proto(self.gateway.call("GetCell", gw.GetCellRequest(
                kernel_id=self.kernel_id, cell_id=cell.cell_id), UNARY_DEADLINE_S))
            self.compare_cell(stored, "GetCell after RunCell")

    def item_run_all(self) -> None:
        result = self.gateway.call("RunAll", gw.RunAllRequest(
            kernel_id=self.kernel_id, stop_on_error=False, timeout_ms=RUN_ALL_CELL_TIMEOUT_MS),
            RUN_ALL_CELL_TIMEOUT_MS / 1000 * CELL_POOL_SIZE + 30)
        ran = [r.cell_id for r in result.results]
        if ran != self.cell_order or list(result.skipped):
            self.fail("run_all", f"ran {ran}, skipped {[s.cell_id for s in result.skipped]}; "
                      f"expected to run {self.cell_order}")
        for proto in result.results:
            if proto.cell_id in self.pool:
                self.record_cell_run(self.pool[proto.cell_id], ExecutionResult.from_proto(proto))

    def item_replace_pool_cell(self) -> None:
        """EditCell with a new job, or DeleteCell and AddCell somewhere else."""
        cell = self.pool[self.rng.choice(self.cell_order)]
        if self.rng.random() < 0.5:
            cell.job = pool_cell_job(self.rng, self.tag())
            edited = Cell.from_proto(self.gateway.call("EditCell", gw.EditCellRequest(
                kernel_id=self.kernel_id, cell_id=cell.cell_id, source=cell.job.source),
                UNARY_DEADLINE_S))
            if cell.state in (CellState.OK, CellState.ERROR, CellState.CANCELLED):
                cell.state = CellState.STALE
            if edited.source != cell.job.source or edited.state != cell.state:
                self.fail("edit_cell", f"EditCell returned state {edited.state}, expected "
                          f"{cell.state} (source equal: {edited.source == cell.job.source})")
        else:
            self.gateway.call("DeleteCell", gw.DeleteCellRequest(
                kernel_id=self.kernel_id, cell_id=cell.cell_id), UNARY_DEADLINE_S)
            self.cell_order.remove(cell.cell_id)
            del self.pool[cell.cell_id]
            self.add_pool_cell(index=self.rng.randint(0, len(self.cell_order)))

    def item_move_pool_cell(self) -> None:
        cell_id = self.rng.choice(self.cell_order)
        index = self.rng.randrange(len(self.cell_order))
        moved = Cell.from_proto(self.gateway.call("MoveCell", gw.MoveCellRequest(
            kernel_id=self.kernel_id, cell_id=cell_id, index=index), UNARY_DEADLINE_S))
        self.cell_order.remove(cell_id)
        self.cell_order.insert(index, cell_id)
        if moved.index != index:
            self.fail("move_cell", f"MoveCell to {index} returned index {moved.index}")

    def item_notebook_check(self) -> None:
        self.check_notebook()
        exported = self.gateway.call("ExportNotebook", gw.ExportNotebookRequest(
            kernel_id=self.kernel_id), UNARY_DEADLINE_S).ipynb
        try:
            ipynb = json.loads(exported)
            ids = [c.get("id") for c in ipynb["cells"]]
            if ipynb.get("nbformat") != 4 or ids != self.cell_order:
                self.fail("export", f"nbformat {ipynb.get('nbformat')}, cell ids {ids}, "
                          f"expected {self.cell_order}")
        except (ValueError, KeyError, TypeError) as e:
            self.fail("export", f"ExportNotebook is not a notebook: {e}")

    def check_notebook(self) -> None:
        """GetNotebook must match the local model: order, sources, states, outputs."""
        notebook = Notebook.from_proto(self.gateway.call("GetNotebook", gw.GetNotebookRequest(
            kernel_id=self.kernel_id), UNARY_DEADLINE_S))
        ids = [c.cell_id for c in notebook.cells]
        if ids != self.cell_order:
            self.fail("notebook", f"cells {ids}, expected {self.cell_order}")
            return
        for position, stored in enumerate(notebook.cells):
            if stored.index != position:
                self.fail("notebook", f"cell {stored.cell_id} at {position} has index "
                          f"{stored.index}")
            self.compare_cell(stored, "GetNotebook")

    def compare_cell(self, stored: Cell, context: str) -> None:
        cell = self.pool[stored.cell_id]
        if stored.source != cell.job.source:
            self.fail("notebook", f"{context}: cell {cell.cell_id} source differs")
        if stored.state != cell.state:
            self.fail("notebook", f"{context}: cell {cell.cell_id} state {stored.state}, "
                      f"expected {cell.state}")
        if cell.state in (CellState.OK, CellState.ERROR, CellState.STALE) and \
                list(stored.outputs) != cell.outputs:
            self.fail("notebook", f"{context}: cell {cell.cell_id} stored outputs differ from "
                      f"its last result ({len(stored.outputs)} vs {len(cell.outputs)} outputs)")


def describe_status(event: execution_pb2.OutputEvent) -> str:
    state = kernel_state_name(event.kernel_status.state)
    reason = event.kernel_status.reason
    return f"{state} ({reason})" if reason else state


# ---------------------------------------------------------------------------------------------
# Sampling the gateway process
# ---------------------------------------------------------------------------------------------

@dataclass
class Sample:
    elapsed_s: float
    label: str                 # "" for periodic samples, else the phase ("idle-start", ...)
    rss_kib: int
    fds: int
    threads: int
    zombies: int               # zombie children of the gateway (not reaped)
    kernel_processes: int      # live descendants of the gateway
    kernel_uid_processes: int  # live processes in the kernels' uid range (root only; -1 else)
    full_event_logs: int       # worker kernels whose EventLog has started evicting (-1: unknown)
    executions: int
    restarts: int
    deaths: int
    stream_reconnects: int
    failures: int


def read_proc_status(pid: int) -> Dict[str, str]:
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def scan_processes(gateway_pid: int, uid_range: Optional[range]) -> Tuple[int, int, int]:
    """(zombie children, live descendants, live processes in uid_range) of the gateway, from
    one pass over /proc/*/stat."""
    parent_of: Dict[int, int] = {}
    state_of: Dict[int, str] = {}
    in_uid_range = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as stat_file:
                stat = stat_file.read()
            owner = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue  # exited meanwhile
        # "pid (comm) state ppid ...": comm may contain spaces and parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        state_of[pid], parent_of[pid] = fields[0], int(fields[1])
        if uid_range is not None and owner in uid_range and fields[0] != "Z":
            in_uid_range += 1
    children: Dict[int, List[int]] = collections.defaultdict(list)
    for pid, parent in parent_of.items():
        children[parent].append(pid)
    zombies = sum(1 for pid in children[gateway_pid] if state_of[pid] == "Z")
    live_descendants, stack = 0, list(children[gateway_pid])
    while stack:
        pid = stack.pop()
        live_descendants += state_of[pid] != "Z"
        stack.extend(children[pid])
    return zombies, live_descendants, in_uid_range if uid_range is not None else -1


class GatewaySampler(threading.Thread):
    """Samples the gateway every ``interval_s`` and prints a table row per sample."""

    HEADER = (f"{'time_s':>7} {'rss_MiB':>8} {'fds':>5} {'thr':>4} {'zomb':>4} {'kprocs':>6} "
              f"{'logfull':>7} {'execs':>7} {'restarts':>8} {'deaths':>6} {'reconn':>6} "
              f"{'fail':>4}  note")

    def __init__(self, server: GatewayServer, gateway: Gateway, counters: Counters,
                 failures: FailureLog, interval_s: float, clock_start: float) -> None:
        super().__init__(name="sampler", daemon=True)
        self.server = server
        self.gateway = gateway
        self.counters = counters
        self.failures = failures
        self.interval_s = interval_s
        self.clock_start = clock_start
        self.uid_range = server.uid_range if os.geteuid() == 0 else None
        self.samples: List[Sample] = []
        self._lock = threading.Lock()
        self._stop_requested = threading.Event()
        self._rows = 0

    def run(self) -> None:
        while not self._stop_requested.wait(self.interval_s):
            try:
                self.take("")
            except OSError as e:  # the gateway is gone: the main thread reports it
                log(f"sampler: cannot read /proc/{self.server.pid}: {e}")
                return

    def stop(self) -> None:
        self._stop_requested.set()
        if self.is_alive():
            self.join(timeout=10)

    def take(self, label: str) -> Sample:
        pid = self.server.pid
        status = read_proc_status(pid)
        zombies, kernel_processes, uid_processes = scan_processes(pid, self.uid_range)
        counts = self.counters.snapshot()
        full_event_logs = self.count_full_event_logs()
        sample = Sample(
            elapsed_s=round(time.monotonic() - self.clock_start, 1), label=label,
            rss_kib=int(status["VmRSS"].split()[0]), fds=len(os.listdir(f"/proc/{pid}/fd")),
            threads=int(status["Threads"]), zombies=zombies, kernel_processes=kernel_processes,
            kernel_uid_processes=uid_processes, full_event_logs=full_event_logs,
            executions=counts.get("executions", 0),
            restarts=counts.get("restarts_explicit", 0) + counts.get("restarts_automatic", 0),
            deaths=counts.get("deaths", 0), stream_reconnects=counts.get("stream_reconnects", 0),
            failures=self.failures.count)
        with self._lock:
            self.samples.append(sample)
            if self._rows % 20 == 0:
                log(self.HEADER)
            self._rows += 1
            log(f"{sample.elapsed_s:7.1f} {sample.rss_kib / 1024:8.1f} {sample.fds:5d} "
                f"{sample.threads:4d} {sample.zombies:4d} {sample.kernel_processes:6d} "
                f"{sample.full_event_logs:7d} {sample.executions:7d} {sample.restarts:8d} {sample.deaths:6d} "
                f"{sample.stream_reconnects:6d} {sample.failures:4d}  {label}")
        return sample

    def count_full_event_logs(self) -> int:
        """How many worker kernels' EventLogs are full (evicting): until they are, RSS grows
        legitimately as they fill."""
        try:
            kernels = self.gateway.call("ListKernels", gw.ListKernelsRequest(
                label_selector={"soak": "worker"}), 10.0).kernels
        except CellgateError:
            return -1
        return sum(1 for kernel in kernels if kernel.oldest_retained_seq > 1)

    def all_samples(self) -> List[Sample]:
        with self._lock:
            return list(self.samples)


# ---------------------------------------------------------------------------------------------
# The watchdog
# ---------------------------------------------------------------------------------------------

class Watchdog(threading.Thread):
    """Kills the server and exits with EXIT_WATCHDOG if the run is not over by its deadline
    (e.g. a cleanup step hangs). ``arm`` moves the deadline; ``disarm`` ends the watch."""

    def __init__(self, on_fire: Callable[[], None]) -> None:
        super().__init__(name="watchdog", daemon=True)
        self._on_fire = on_fire
        self._condition = threading.Condition()
        self._deadline = float("inf")
        self._phase = ""
        self._disarmed = False

    def arm(self, seconds: float, phase: str) -> None:
        with self._condition:
            self._deadline = time.monotonic() + seconds
            self._phase = phase
            self._condition.notify_all()

    def disarm(self) -> None:
        with self._condition:
            self._disarmed = True
            self._condition.notify_all()

    def run(self) -> None:
        with self._condition:
            while not self._disarmed:
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(min(remaining, 3600))
            if self._disarmed:
                return
            phase = self._phase
        log(f"WATCHDOG: the {phase} phase overran its deadline; thread stacks follow")
        faulthandler.dump_traceback(all_threads=True)
        self._on_fire()
        os._exit(EXIT_WATCHDOG)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

class SoakRun:
    """The phases: start the server, prime it, start kernels, run, clean up, judge."""

    def __init__(self, settings: argparse.Namespace) -> None:
        self.settings = settings
        self.clock_start = time.monotonic()
        self.failures = FailureLog(self.clock_start)
        self.counters = Counters()
        self.run_over = threading.Event()   # set at the end of the run time or on Ctrl-C
        self.interrupted = False
        self.server: Optional[GatewayServer] = None
        self.gateway: Optional[Gateway] = None
        self.sampler: Optional[GatewaySampler] = None
        self.kernel_ids: List[str] = []
        self.drivers: List[KernelDriver] = []
        self.followers: List[StreamFollower] = []
        self.ledgers: List[ExecutionLedger] = []
        self.phase_samples: Dict[str, Sample] = {}
        self.server_exit: Optional[int] = None
        self.run_seconds_actual = 0.0
        self.run_started_elapsed = 0.0
        self.watchdog = Watchdog(self._watchdog_fired)

    def _watchdog_fired(self) -> None:
        if self.server is not None:
            self.server.kill()
            log(f"server log kept in {self.server.dir}")

    def on_signal(self, signum: int, _frame: Any) -> None:
        if self.run_over.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C: abort the cleanup (server is killed)
        log(f"\n{signal.Signals(signum).name}: stopping the run and cleaning up "
            "(again to abort)")
        self.interrupted = True
        self.run_over.set()

    # -- setup -----------------------------------------------------------------------------------

    def start_server(self) -> None:
        s = self.settings
        self.server = SoakServer(s.server, s.kernels, s)
        log(f"server: {' '.join(self.server.command)}")
        self.server.wait_until_serving(SERVER_START_DEADLINE_S)
        self.gateway = Gateway(self.server.target, self.server.token)
        info = self.gateway.call("GetServerInfo", gw.GetServerInfoRequest(), UNARY_DEADLINE_S,
                                 wait_for_ready=True)
        layers = ", ".join(layer.name for layer in info.sandbox_layers if layer.in_force)
        log(f"cellgate {info.version} pid {self.server.pid} on {self.server.target}, "
            f"auth {'on' if info.auth_required else 'OFF'}, sandbox {info.sandbox_mode} "
            f"({layers}); dir {self.server.dir}")

    def prime_server(self) -> None:
        """Starts and shuts down one kernel before the idle-start sample, so state created once
        on first use (ZMQ context, thread pools) is not counted as a leak at the end."""
        kernel = self.start_kernel({"soak": "priming"})
        self.gateway.call("Execute", gw.ExecuteRequest(kernel_id=kernel, code="1 + 1",
                                                       timeout_ms=EXECUTION_TIMEOUT_MS),
                          EXECUTION_DEADLINE_S)
        self.gateway.call("ShutdownKernel", gw.ShutdownKernelRequest(kernel_id=kernel),
                          SHUTDOWN_DEADLINE_S)

    def start_kernel(self, labels: Dict[str, str]) -> str:
        kernel = KernelInfo.from_proto(self.gateway.call(
            "StartKernel", gw.StartKernelRequest(labels=labels), KERNEL_START_DEADLINE_S))
        return kernel.kernel_id

    def start_kernels(self) -> None:
        s = self.settings
        for index in range(s.kernels):
            kernel_id = self.start_kernel({"soak": "worker", "index": str(index)})
            self.kernel_ids.append(kernel_id)
            ledger = ExecutionLedger(f"kernel {index}", self.failures, self.counters)
            self.ledgers.append(ledger)
            self.followers.append(StreamFollower(
                index, kernel_id, self.server.target, self.server.token, ledger,
                self.counters, self.failures, random.Random(f"{s.seed}-follower-{index}")))
            self.drivers.append(KernelDriver(
                index, kernel_id, self.gateway, s, ledger, self.counters, self.failures,
                self.run_over, random.Random(f"{s.seed}-driver-{index}"), self.clock_start))
        log(f"{s.kernels} kernels started: {' '.join(self.kernel_ids)}")

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> int:
        s = self.settings
        self.watchdog.start()
        self.watchdog.arm(SETUP_BUDGET_S + SETUP_BUDGET_PER_KERNEL_S * s.kernels, "setup")
        try:
            try:
                self.start_server()
                self.prime_server()
                self.sampler = GatewaySampler(self.server, self.gateway, self.counters,
                                              self.failures, s.sample_seconds, self.clock_start)
                self.phase_samples["idle-start"] = self.sampler.take("idle-start")
                self.start_kernels()
            except (CellgateError, RuntimeError, OSError) as e:
                log(f"SETUP FAILED: {e}")
                if self.server is not None:
                    log(self.server.log_tail())
                return EXIT_SETUP_FAILED
            previous_int = signal.signal(signal.SIGINT, self.on_signal)
            previous_term = signal.signal(signal.SIGTERM, self.on_signal)
            try:
                self.watchdog.arm(s.run_seconds + s.cleanup_seconds, "run + cleanup")
                self.soak()
                self.clean_up()
            finally:
                signal.signal(signal.SIGINT, previous_int)
                signal.signal(signal.SIGTERM, previous_term)
            return self.judge()
        except KeyboardInterrupt:
            log("aborted: killing the server")
            self.interrupted = True
            if self.server is not None:
                self.server.kill()
            return EXIT_INTERRUPTED
        finally:
            if self.sampler is not None:
                self.sampler.stop()
            for follower in self.followers:
                follower.stop()
            if self.server is not None:
                if self.server_exit is None:
                    self.server_exit = self.server.stop()
                if self.settings.keep_dir or self.failures.count or self.server_exit != 0:
                    log(f"server directory kept: {self.server.dir}")
                else:
                    self.server.remove_dir()
            self.watchdog.disarm()

    def soak(self) -> None:
        s = self.settings
        log(f"soaking {s.kernels} kernels for {s.run_seconds:.0f} s (restart every "
            f"~{s.restart_every:.0f} s, death every ~{s.death_every:.0f} s, restart policy "
            f"{s.restart_policy}, interrupt escalation "
            f"{f'{s.escalation_seconds} s' if s.escalation_seconds else 'not exercised'}, "
            f"seed {s.seed})")
        started = time.monotonic()
        self.run_started_elapsed = started - self.clock_start
        for follower in self.followers:
            follower.start()
        for driver in self.drivers:
            driver.start()
        self.sampler.start()
        self.run_over.wait(s.run_seconds)
        self.run_over.set()
        self.run_seconds_actual = time.monotonic() - started

    def clean_up(self) -> None:
        """Stops the drivers, lets the followers catch up and cross-checks, shuts the kernels
        down, samples the idle gateway and stops it. A step that fails is recorded and the
        next one still runs."""
        log("run over: stopping the drivers")
        self.cleanup_step("stop drivers", self.stop_drivers)
        self.cleanup_step("sample", lambda: self.take_phase_sample("loaded-end"))
        self.cleanup_step("catch up", self.catch_up_and_compare)
        self.cleanup_step("ledgers", self.check_ledgers)
        log("shutting the kernels down")
        self.cleanup_step("shutdown", self.shut_kernels_down)
        self.sampler.stop()
        self.cleanup_step("sample", self.sample_idle_end)
        self.server_exit = self.server.stop()

    def cleanup_step(self, name: str, step: Callable[[], None]) -> None:
        try:
            step()
        except (CellgateError, SoakFailure, OSError) as e:
            self.failures.record("cleanup", name, f"{type(e).__name__}: {e}")

    def take_phase_sample(self, label: str) -> None:
        self.phase_samples[label] = self.sampler.take(label)

    def stop_drivers(self) -> None:
        deadline = time.monotonic() + self.settings.cleanup_seconds * 0.5
        for driver in self.drivers:
            driver.join(timeout=max(0.0, deadline - time.monotonic()))
            if driver.is_alive():
                self.failures.record(driver.where, "driver_stuck",
                                     "still in a work item at the end of its cleanup budget")

    def catch_up_and_compare(self) -> None:
        """Every event up to each kernel's last seq must reach its follower; the kernel's
        counts must match what its driver and its follower saw."""
        for kernel_id, driver, follower in zip(self.kernel_ids, self.drivers, self.followers):
            info = self.gateway.get_kernel(kernel_id)
            if not follower.wait_caught_up(info.last_seq, EVENT_WAIT_DEADLINE_S):
                self.failures.record(follower.where, "stream_behind",
                                     f"at seq {follower.last_seq}, kernel at {info.last_seq}")
            if driver.is_alive() or driver.model_uncertain:
                continue  # stuck, or recovered from a failure: its counts are not exact
            if info.restart_count != driver.restart_count:
                self.failures.record(driver.where, "restart_count",
                                     f"GetKernel says {info.restart_count}, driver counted "
                                     f"{driver.restart_count}")
            # Each death is one DEAD event; each automatic restart one RESTARTING event.
            if (follower.kernel_states["DEAD"], follower.automatic_restarts) != \
                    (driver.deaths, driver.automatic_restarts):
                self.failures.record(follower.where, "kernel_status",
                                     f"stream: {follower.kernel_states['DEAD']} DEAD events, "
                                     f"{follower.automatic_restarts} automatic restarts; driver: "
                                     f"{driver.deaths} deaths, {driver.automatic_restarts} "
                                     "automatic restarts")

    def shut_kernels_down(self) -> None:
        """ShutdownKernel each kernel; each follower's stream must then end by itself."""
        for follower in self.followers:
            follower.shutdown_expected.set()
        for kernel_id in self.kernel_ids:
            try:
                self.gateway.call("ShutdownKernel", gw.ShutdownKernelRequest(kernel_id=kernel_id),
                                  SHUTDOWN_DEADLINE_S)
            except CellgateError as e:
                self.failures.record("server", "shutdown", f"ShutdownKernel {kernel_id}: {e}")
        for follower in self.followers:
            follower.join(timeout=EVENT_WAIT_DEADLINE_S)
            if follower.is_alive():
                self.failures.record(follower.where, "stream_not_ended",
                                     "stream did not end after ShutdownKernel")
                follower.stop()

    def check_ledgers(self) -> None:
        for index, (ledger, follower) in enumerate(zip(self.ledgers, self.followers)):
            only_driver, only_stream = ledger.unmatched()
            if only_driver:
                self.failures.record(follower.where, "stream_missing_execution",
                                     f"{len(only_driver)} executions with a result never "
                                     f"finished in the stream, e.g. {only_driver[:3]}")
            if only_stream:
                self.failures.record(follower.where, "stream_only_execution",
                                     f"{len(only_stream)} executions finished in the stream "
                                     f"without a result here, e.g. {only_stream[:3]}")
            if follower.open_executions():
                self.failures.record(follower.where, "stream_unfinished_execution",
                                     f"executions never finished: {follower.open_executions()[:3]}")

    def sample_idle_end(self) -> None:
        """The idle gateway after every kernel is shut down. Closing the followers' channels
        ends their TCP connections asynchronously on the server side, so the fd count is
        given a bounded time to settle (polling /proc: there is no event to wait on)."""
        limit = self.phase_samples["idle-start"].fds + self.settings.fd_slack
        settle_deadline = time.monotonic() + 10
        while True:
            sample = self.sampler.take("idle-end")
            if sample.fds <= limit or time.monotonic() > settle_deadline:
                break
            time.sleep(0.5)
        self.phase_samples["idle-end"] = sample

    # -- the verdict -----------------------------------------------------------------------------

    def judge(self) -> int:
        s = self.settings
        samples = self.sampler.all_samples()
        periodic = [x for x in samples if not x.label]
        for label in ("loaded-end", "idle-end"):  # missing if a cleanup step failed
            self.phase_samples.setdefault(label, samples[-1])
        idle_start, loaded_end = self.phase_samples["idle-start"], self.phase_samples["loaded-end"]
        idle_end = self.phase_samples["idle-end"]
        warm = self.rss_baseline(periodic, loaded_end)
        rss_growth_mib = (loaded_end.rss_kib - warm.rss_kib) / 1024
        verdicts: List[str] = []
        if self.failures.count:
            verdicts.append(f"{self.failures.count} correctness failures")
        if idle_end.fds > idle_start.fds + s.fd_slack:
            verdicts.append(f"fds leaked: {idle_end.fds} at the end vs {idle_start.fds} at the "
                            f"start (slack {s.fd_slack})")
        if idle_end.zombies:
            verdicts.append(f"{idle_end.zombies} zombie children of the gateway at the end")
        if idle_end.kernel_processes or idle_end.kernel_uid_processes > 0:
            verdicts.append(f"kernel processes left after shutdown: {idle_end.kernel_processes} "
                            f"descendants, {max(idle_end.kernel_uid_processes, 0)} in the "
                            "kernel uid range")
        if rss_growth_mib > s.max_rss_growth_mib:
            verdicts.append(f"RSS grew {rss_growth_mib:.1f} MiB after warm-up (bound "
                            f"{s.max_rss_growth_mib} MiB)")
        if self.server_exit != 0:
            verdicts.append(f"server exit status {self.server_exit} after SIGTERM")
        summary = self.summary(samples, warm, rss_growth_mib, verdicts)
        self.print_summary(summary)
        if s.json:
            Path(s.json).write_text(json.dumps({
                "settings": {k: (str(v) if isinstance(v, Path) else v)
                             for k, v in vars(s).items()},
                "samples": [asdict(x) for x in samples],
                "summary": summary,
                "failures": [asdict(f) for f in self.failures.entries],
            }, indent=1))
            log(f"wrote {s.json}")
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if verdicts else EXIT_PASSED

    def rss_baseline(self, periodic: List[Sample], loaded_end: Sample) -> Sample:
        """The sample RSS growth is measured from: the first one after warm-up at which every
        kernel's EventLog is full (the gateway's retained state has reached its steady size),
        else the first one after warm-up, else the end of the run."""
        after_warmup = [x for x in periodic
                        if x.elapsed_s >= self.run_started_elapsed + self.settings.warmup_seconds]
        full = [x for x in after_warmup if x.full_event_logs == self.settings.kernels]
        return (full or after_warmup or [loaded_end])[0]

    def summary(self, samples: List[Sample], warm: Sample, rss_growth_mib: float,
                verdicts: List[str]) -> Dict[str, Any]:
        counts = self.counters.snapshot()
        latencies = [ms for _, ms in self.counters.trivial_execute_ms]
        thirds = len(latencies) // 3

        def percentile(values: List[float], q: float) -> Optional[float]:
            if not values:
                return None
            ordered = sorted(values)
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

        warnings, errors, problem_lines = self.server.log_problems()
        return {
            "passed": not verdicts and not self.interrupted,
            "verdicts": verdicts,
            "interrupted": self.interrupted,
            "kernels": self.settings.kernels,
            "run_seconds": round(self.run_seconds_actual, 1),
            "counts": counts,
            "failures": self.failures.count,
            "failures_by_kind": dict(self.failures.by_kind),
            "trivial_execute_ms": {
                "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
                "p50_first_third": percentile(latencies[:thirds], 0.5),
                "p50_last_third": percentile(latencies[-thirds:], 0.5) if thirds else None,
            },
            "rss_mib": {
                "idle_start": mib(self.phase_samples["idle-start"].rss_kib),
                "after_warmup": mib(warm.rss_kib), "warmup_at_s": warm.elapsed_s,
                "event_logs_full_at_baseline": f"{warm.full_event_logs}/{self.settings.kernels}",
                "loaded_end": mib(self.phase_samples["loaded-end"].rss_kib),
                "max": mib(max(x.rss_kib for x in samples)),
                "idle_end": mib(self.phase_samples["idle-end"].rss_kib),
                "growth_after_warmup": round(rss_growth_mib, 1),
            },
            "fds": phase_values(self.phase_samples, samples, "fds"),
            "threads": phase_values(self.phase_samples, samples, "threads"),
            "zombies": {"max": max(x.zombies for x in samples),
                        "end": self.phase_samples["idle-end"].zombies},
            "kernel_processes": {"max": max(x.kernel_processes for x in samples),
                                 "end": self.phase_samples["idle-end"].kernel_processes,
                                 "end_in_uid_range":
                                     self.phase_samples["idle-end"].kernel_uid_processes},
            "server_exit": self.server_exit,
            "server_log": {"warnings": warnings, "errors": errors, "examples": problem_lines},
        }

    def print_summary(self, summary: Dict[str, Any]) -> None:
        c = summary["counts"]
        rss, fds, threads = summary["rss_mib"], summary["fds"], summary["threads"]
        lat = summary["trivial_execute_ms"]
        statuses = ", ".join(f"{k[len('executions_'):]} {v}" for k, v in sorted(c.items())
                             if k.startswith("executions_") and k != "executions_cross_checked")
        lines = [
            "",
            "==== cellgate soak summary ====",
            f"run                {summary['run_seconds']} s, {summary['kernels']} kernels"
            + (" (INTERRUPTED)" if summary["interrupted"] else ""),
            f"executions         {c.get('executions', 0)} ({statuses}); cross-checked with "
            f"the stream: {c.get('executions_cross_checked', 0)}",
            f"restarts           explicit {c.get('restarts_explicit', 0)}, automatic "
            f"{c.get('restarts_automatic', 0)}; deaths {c.get('deaths', 0)} (killed for "
            f"ignoring an interrupt: {c.get('deaths_by_escalation', 0)}; left DEAD by the "
            f"policy: {c.get('deaths_left_dead', 0)})",
            f"stream             events {c.get('stream_events', 0)}, reconnects "
            f"{c.get('stream_reconnects', 0)} (planned {c.get('stream_reconnects_planned', 0)}, "
            f"cut by server {c.get('stream_cut_by_server', 0)}, new connections "
            f"{c.get('stream_new_connections', 0)})",
            f"trivial execute    p50 {lat['p50']} ms, p99 {lat['p99']} ms (p50 first third "
            f"{lat['p50_first_third']}, last third {lat['p50_last_third']})",
            f"gateway RSS MiB    idle-start {rss['idle_start']}, after warm-up "
            f"{rss['after_warmup']} (t={rss['warmup_at_s']} s, event logs full "
            f"{rss['event_logs_full_at_baseline']}), loaded-end {rss['loaded_end']} "
            f"(growth {rss['growth_after_warmup']:+}, bound {self.settings.max_rss_growth_mib}), "
            f"max {rss['max']}, idle-end {rss['idle_end']}",
            f"gateway fds        idle-start {fds['idle_start']}, max {fds['max']}, loaded-end "
            f"{fds['loaded_end']}, idle-end {fds['idle_end']} (slack {self.settings.fd_slack})",
            f"gateway threads    idle-start {threads['idle_start']}, max {threads['max']}, "
            f"idle-end {threads['idle_end']}",
            f"zombies            max {summary['zombies']['max']}, end {summary['zombies']['end']}",
            f"kernel processes   max {summary['kernel_processes']['max']}, end "
            f"{summary['kernel_processes']['end']} (in kernel uid range: "
            f"{summary['kernel_processes']['end_in_uid_range']})",
            f"server             exit {summary['server_exit']}; log warnings "
            f"{summary['server_log']['warnings']}, errors {summary['server_log']['errors']}",
        ]
        lines += [f"  log: {line}" for line in summary["server_log"]["examples"]]
        lines.append(f"failures           {summary['failures']} "
                     f"{summary['failures_by_kind'] or ''}")
        lines += [f"  - {v}" for v in summary["verdicts"]]
        lines.append("RESULT: " + ("INTERRUPTED" if summary["interrupted"] else
                                   "PASS" if summary["passed"] else "FAIL"))
        log("\n".join(lines))


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


def phase_values(phase_samples: Dict[str, Sample], samples: List[Sample],
                 name: str) -> Dict[str, int]:
    values = {phase.replace("-", "_"): getattr(sample, name)
              for phase, sample in phase_samples.items()}
    values["max"] = max(getattr(x, name) for x in samples)
    return values


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Soak-test a cellgate server: N kernels x M minutes of mixed work, with "
                    "resource sampling and correctness checks.")
    parser.add_argument("--server", type=Path, default=REPO_ROOT / "build" / "server" / "cellgate",
                        help="cellgate binary (default: build/server/cellgate in the repo)")
    parser.add_argument("--kernels", type=int, default=4, help="kernels driven at once")
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="length of the run (fractions allowed, e.g. 0.5)")
    parser.add_argument("--sample-seconds", type=float, default=5.0,
                        help="interval between samples of the gateway process")
    parser.add_argument("--seed", default=None, help="random seed (default: random, printed)")
    parser.add_argument("--pace-ms", type=float, default=20.0,
                        help="pause between a driver's work items")
    parser.add_argument("--restart-every", type=float, default=None, metavar="SECONDS",
                        help="mean interval between RestartKernel per kernel (0 = never; "
                             "default: a quarter of the run, 10..60 s)")
    parser.add_argument("--death-every", type=float, default=None, metavar="SECONDS",
                        help="mean interval between kernel deaths per kernel (0 = never; "
                             "default: a third of the run, 10..90 s)")
    parser.add_argument("--restart-policy", choices=["on", "off"], default="on",
                        help="the server's --restart-on-death")
    parser.add_argument("--max-restarts", type=int, default=3, help="server --max-restarts")
    parser.add_argument("--restart-window-seconds", type=int, default=300,
                        help="server --restart-window-seconds")
    parser.add_argument("--restart-backoff-ms", type=int, default=500,
                        help="server --restart-backoff-ms")
    parser.add_argument("--escalation-seconds", type=int, default=2,
                        help="server --interrupt-escalation-seconds (kill a kernel that ignores "
                             "an interrupt this long); 0 = leave the server default and make no "
                             "kernel ignore interrupts. Only used if the server has the flag")
    parser.add_argument("--event-log-mib", type=int, default=4,
                        help="server --event-log-bytes, in MiB (small, so it fills in warm-up)")
    parser.add_argument("--warmup-seconds", type=float, default=None,
                        help="RSS growth is measured from the first sample after this at "
                             "which every kernel's event log is full (default: a fifth of the "
                             "run, at most 60 s)")
    parser.add_argument("--max-rss-growth-mib", type=float, default=64.0,
                        help="fail if RSS grows more than this after warm-up")
    parser.add_argument("--fd-slack", type=int, default=8,
                        help="fail if the idle gateway has more fds than at the start + this")
    parser.add_argument("--kernel-uid-base", type=int, default=800000,
                        help="server --kernel-uid-base (as root; keep it apart from other "
                             "servers on this host)")
    parser.add_argument("--cleanup-seconds", type=float, default=180.0,
                        help="time allowed after the run for cleanup before the watchdog fires")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra server flag (repeatable), e.g. --server-arg=--sandbox=bwrap")
    parser.add_argument("--json", default=None, metavar="FILE",
                        help="write settings, samples, summary and failures here")
    parser.add_argument("--keep-dir", action="store_true",
                        help="keep the server's temporary directory (log, state) at the end")
    args = parser.parse_args(argv)
    if args.kernels < 1 or args.minutes <= 0 or args.sample_seconds <= 0:
        parser.error("--kernels, --minutes and --sample-seconds must be positive")
    if not args.server.is_absolute():
        args.server = (REPO_ROOT / args.server) if not args.server.exists() else args.server
    args.server = args.server.resolve()
    if not os.access(args.server, os.X_OK):
        parser.error(f"--server {args.server} is not an executable file")
    args.run_seconds = args.minutes * 60
    if args.restart_every is None:
        args.restart_every = min(60.0, max(10.0, args.run_seconds / 4))
    if args.death_every is None:
        args.death_every = min(90.0, max(10.0, args.run_seconds / 3))
    if args.warmup_seconds is None:
        args.warmup_seconds = min(60.0, args.run_seconds / 5)
    if args.seed is None:
        args.seed = str(secrets.randbelow(10 ** 6))
    if args.escalation_seconds and not server_has_flag(args.server, "interrupt_escalation_seconds"):
        args.escalation_seconds = 0  # an older server: no escalation to exercise
    return args


def server_has_flag(binary: Path, flag: str) -> bool:
    help_text = subprocess.run([str(binary), f"--help={flag}"], capture_output=True, text=True,
                               timeout=30).stdout
    return f"--{flag} " in help_text


def main(argv: Optional[Sequence[str]] = None) -> int:
    settings = parse_args(argv)
    return SoakRun(settings).run()


if __name__ == "__main__":
    sys.exit(main())
