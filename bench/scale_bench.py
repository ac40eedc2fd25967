#!/usr/bin/python3
"""Scale (issue #7): many kernels executing at once, and many followers of one busy kernel.

One cellgate server (saving to a temp state dir, as by default). The kernels are started in
steps up to each level (default 10, 50, 200); at each level it measures the gateway while idle
(CPU over a few seconds, RSS, threads), then every kernel runs `1+1` several times at once
(throughput, p50/p99 latency, the gateway's CPU per execution and its threads under load).
RSS per kernel is the growth over the gateway's RSS before the first kernel. Last, N followers
(default 1000) open `StreamOutputs` on one kernel that prints a line every 20 ms; each must get
every line, and the delay from the server's event time to each follower is reported, as is
the latency of GetKernel calls to that kernel made one after another meanwhile (a call that
needs the kernel's session while its events are fanned out).

The kernels are driven through the asyncio client (`cellgate.aio`), the followers are threads
of the blocking client, all from this one process, which shares the machine's cores with the
gateway and the kernels: at the highest levels the client and the kernels themselves are part
of what is measured (the followers' delay above all). With `--go-followers` the followers are
goroutines of the Go client instead (bench/go_followers, built offline against Debian's Go
packages as client/go/run-tests.sh does), a client light enough that the delay is the
gateway's fan-out.

    /usr/bin/python3 bench/scale_bench.py [--levels 10,50,200] [--followers 1000]
                                          [--go-followers] [--json FILE]

Exit status 0 when every execution and every follower got what it should, 1 when one did not,
2 when the server did not start.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from roundtrip_bench import REPO, gateway_cpu_ns, remove_unless_failed  # noqa: E402

import cellgate  # noqa: E402
from cellgate import aio  # noqa: E402
from cellgate.errors import CellgateError  # noqa: E402
from gateway_server import GatewayServer  # noqa: E402

START_DEADLINE_S = 300.0
CALL_DEADLINE_S = 120.0
STARTS_AT_ONCE = 4
IDLE_SECONDS = 5.0
FOLLOWERS_PER_CHANNEL = 100


class BenchFailure(Exception):
    pass


def process_status(pid: int) -> Dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            fields[key] = int(value.split()[0])
    return {"rss_kib": fields.get("VmRSS", 0), "threads": fields.get("Threads", 0)}


def percentile(ordered: List[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def latency_stats(values_ms: List[float]) -> Dict[str, float]:
    ordered = sorted(values_ms)
    return {"n": len(ordered), "p50": round(statistics.median(ordered), 2),
            "p99": round(percentile(ordered, 0.99), 2), "max": round(ordered[-1], 2)}


async def start_kernels(client: aio.Client, count: int) -> List[aio.Kernel]:
    gate = asyncio.Semaphore(STARTS_AT_ONCE)

    async def one() -> aio.Kernel:
        async with gate:
            return await client.start_kernel(timeout=START_DEADLINE_S)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def idle_cpu_ms_per_s(pid: int) -> float:
    before = gateway_cpu_ns(pid)
    await asyncio.sleep(IDLE_SECONDS)  # measuring an idle interval, not waiting for an event
    return (gateway_cpu_ns(pid) - before) / 1e6 / IDLE_SECONDS


async def load(server: GatewayServer, kernels: List[aio.Kernel], runs: int) -> Dict[str, Any]:
    latencies: List[float] = []
    peak_threads = 0

    async def drive(kernel: aio.Kernel) -> None:
        for _ in range(runs):
            t0 = time.perf_counter()
            result = await kernel.execute("1+1", timeout=CALL_DEADLINE_S)
            latencies.append((time.perf_counter() - t0) * 1000)
            if result.text != "2\n":
                raise BenchFailure(f"kernel {kernel.id}: 1+1 gave {result.text!r}")

    async def watch_threads() -> None:
        nonlocal peak_threads
        while True:
            peak_threads = max(peak_threads, process_status(server.pid)["threads"])
            await asyncio.sleep(0.1)  # sampling while the load runs

    watcher = asyncio.ensure_future(watch_threads())
    cpu_before = gateway_cpu_ns(server.pid)
    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(drive(k) for k in kernels))
    finally:
        watcher.cancel()
    wall = time.perf_counter() - t0
    executions = len(kernels) * runs
    return {"executions": executions, "wall_s": round(wall, 2),
            "executions_per_s": round(executions / wall, 1),
            "latency_ms": latency_stats(latencies),
            "gateway_cpu_ms_per_execution": round(
                (gateway_cpu_ns(server.pid) - cpu_before) / 1e6 / executions, 3),
            "peak_threads": peak_threads}


def build_go_followers(workdir: Path) -> Path:
    """Builds bench/go_followers offline, in GOPATH mode against Debian's Go packages."""
    gopath = workdir / "gopath"
    (gopath / "src").mkdir(parents=True)
    (gopath / "src" / "cellgate").symlink_to(REPO / "client" / "go")
    (gopath / "src" / "go_followers").symlink_to(REPO / "bench" / "go_followers")
    env = dict(os.environ, GO111MODULE="off", GOPATH=f"{gopath}:/usr/share/gocode", GOFLAGS="")
    if not any(env.get(k) for k in ("GOCACHE", "XDG_CACHE_HOME", "HOME")):
        env["GOCACHE"] = str(gopath / "cache")
    binary = workdir / "go_followers"
    subprocess.run(["go", "build", "-o", str(binary), "go_followers"],
                   cwd=gopath / "src" / "go_followers", env=env, check=True)
    return binary


def go_followers(binary: Path, server: GatewayServer, kernel_id: str, after: int, count: int,
                 expected: str, start_output: Any) -> Dict[str, Any]:
    """Runs `count` followers in the Go process; `start_output()` makes the kernel print once
    they are open. Returns the process's summary."""
    text_file = server.dir / "expected_text"
    text_file.write_text(expected)
    proc = subprocess.Popen(
        [str(binary), f"-target={server.target}", f"-token={server.token}",
         f"-kernel={kernel_id}", f"-after={after}", f"-followers={count}",
         f"-per-connection={FOLLOWERS_PER_CHANNEL}", f"-text-file={text_file}",
         f"-deadline={int(CALL_DEADLINE_S)}s"],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "open":
        proc.kill()
        raise BenchFailure("go_followers did not open its streams")
    start_output()
    out, _ = proc.communicate(timeout=CALL_DEADLINE_S + 30)
    summary = json.loads(out)
    if proc.returncode != 0 or summary["got_every_line"] != count:
        raise BenchFailure(f"{summary['got_every_line']} of {count} Go followers got every "
                           f"line; {summary['failures'][:3]}")
    return summary


class SessionProbe:
    """GetKernel of one kernel, one call after another on a client of its own, in a thread,
    from `start()` to `stop()`: the latency of a call that needs the kernel's session."""

    def __init__(self, server: GatewayServer, kernel_id: str) -> None:
        self.client = cellgate.Client(server.target, server.token)
        self.kernel = self.client.kernel(kernel_id, check=False)
        self.latencies_ms: List[float] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="session-probe", daemon=True)

    def _run(self) -> None:
        while not self.done.is_set():
            t0 = time.perf_counter()
            self.kernel.info()
            self.latencies_ms.append((time.perf_counter() - t0) * 1000)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> Dict[str, float]:
        self.done.set()
        self.thread.join(CALL_DEADLINE_S)
        self.client.close()
        return latency_stats(self.latencies_ms)


def followers(server: GatewayServer, kernel_id: str, count: int, lines: int,
              go_binary: Optional[Path] = None) -> Dict[str, Any]:
    """`count` followers, each a thread with a blocking StreamOutputs, a channel (HTTP/2
    connection) per FOLLOWERS_PER_CHANNEL of them, as many clients would have. (Threads, not
    asyncio: grpc.aio hangs closing a channel after a thousand cancelled streams.) With
    `go_binary`, goroutines of the Go client in that process instead."""
    # The Go process dials its own connections: then one client here runs the kernel's code.
    channels = 1 if go_binary else (count + FOLLOWERS_PER_CHANNEL - 1) // FOLLOWERS_PER_CHANNEL
    clients = [cellgate.Client(server.target, server.token) for _ in range(channels)]
    kernel = clients[0].kernel(kernel_id)
    after = kernel.notebook().last_seq
    expected = "".join(f"{i}\n" for i in range(lines))
    delays: List[float] = []
    finished: List[float] = []
    failures: List[str] = []
    lock = threading.Lock()

    def follow(stream: Any) -> None:
        text: List[str] = []
        try:
            for event in stream:
                if event.HasField("output") and event.output.HasField("stream"):
                    delay = time.time() * 1000 - event.time.ToMilliseconds()
                    text.append(event.output.stream.text)
                    with lock:
                        delays.append(delay)
                    if sum(map(len, text)) >= len(expected):
                        break
        except CellgateError as e:
            text.append(f" [{e}]")
        with lock:
            if "".join(text) == expected:
                finished.append(time.time())
            else:
                failures.append(f"got {len(''.join(text))} of {len(expected)} characters")

    code = f"import time\nfor i in range({lines}):\n    print(i, flush=True)\n    time.sleep(0.02)"
    measured: Dict[str, Any] = {}

    def start_output() -> None:
        measured["cpu_before"] = gateway_cpu_ns(server.pid)
        measured["threads"] = process_status(server.pid)["threads"]
        probe = SessionProbe(server, kernel_id)
        probe.start()
        measured["t0"] = time.time()
        result = kernel.execute(code, timeout=CALL_DEADLINE_S)
        measured["get_kernel_ms"] = probe.stop()
        if not result.ok:
            raise BenchFailure(f"the followed kernel's execution ended {result.status}")

    if go_binary is not None:
        try:
            summary = go_followers(go_binary, server, kernel_id, after, count, expected,
                                   start_output)
        finally:
            clients[0].close()
        delay = {k: round(v, 2) for k, v in summary["delay_ms"].items() if k != "n"}
        return {"followers": count, "lines": lines, "client": "go", "all_got_every_line": True,
                "last_follower_done_after_s":
                    round(summary["last_done_unix_ms"] / 1000 - measured["t0"], 2),
                "event_to_follower_delay_ms": {"n": int(summary["delay_ms"]["n"]), **delay},
                "get_kernel_meanwhile_ms": measured["get_kernel_ms"],
                "gateway_cpu_ms": round((gateway_cpu_ns(server.pid) - measured["cpu_before"])
                                        / 1e6, 1),
                "threads_with_followers": measured["threads"],
                "threads_after": process_status(server.pid)["threads"]}

    streams = [clients[i // FOLLOWERS_PER_CHANNEL].kernel(kernel_id, check=False)
               .stream_outputs(after_seq=after, follow=True) for i in range(count)]
    threads = [threading.Thread(target=follow, args=(s,), daemon=True) for s in streams]
    for thread in threads:
        thread.start()
    start_output()
    cpu_before, gateway_threads = measured["cpu_before"], measured["threads"]
    deadline = time.monotonic() + CALL_DEADLINE_S
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for stream in streams:
        stream.cancel()
    for client in clients:
        client.close()
    if failures or len(finished) != count:
        raise BenchFailure(f"{len(finished)} of {count} followers got every line; "
                           f"{failures[:3]}")
    return {"followers": count, "lines": lines, "client": "python threads",
            "all_got_every_line": True,
            "last_follower_done_after_s": round(max(finished) - measured["t0"], 2),
            "event_to_follower_delay_ms": latency_stats(delays),
            "get_kernel_meanwhile_ms": measured["get_kernel_ms"],
            "gateway_cpu_ms": round((gateway_cpu_ns(server.pid) - cpu_before) / 1e6, 1),
            "threads_with_followers": gateway_threads,
            "threads_after": process_status(server.pid)["threads"]}


async def run(args: argparse.Namespace, server: GatewayServer) -> Dict[str, Any]:
    client = aio.Client(server.target, server.token)
    results: Dict[str, Any] = {"gateway_before_kernels": process_status(server.pid)}
    base_rss = results["gateway_before_kernels"]["rss_kib"]
    kernels: List[aio.Kernel] = []
    try:
        for level in args.levels:
            t0 = time.perf_counter()
            kernels += await start_kernels(client, level - len(kernels))
            started_s = time.perf_counter() - t0
            status = process_status(server.pid)
            row = {"kernels": level, "start_s": round(started_s, 1),
                   "idle_cpu_ms_per_s": round(await idle_cpu_ms_per_s(server.pid), 2),
                   "rss_mib": round(status["rss_kib"] / 1024, 1),
                   "rss_kib_per_kernel": round((status["rss_kib"] - base_rss) / level, 1),
                   "threads_idle": status["threads"],
                   "load": await load(server, kernels, args.runs)}
            results[f"level_{level}"] = row
            lat = row["load"]["latency_ms"]
            print(f"{level:4} kernels: RSS {row['rss_mib']} MiB ({row['rss_kib_per_kernel']} KiB "
                  f"per kernel), threads {row['threads_idle']} idle / "
                  f"{row['load']['peak_threads']} under load, idle CPU "
                  f"{row['idle_cpu_ms_per_s']} ms/s; {row['load']['executions_per_s']} "
                  f"executions/s, p50 {lat['p50']} ms, p99 {lat['p99']} ms, gateway CPU "
                  f"{row['load']['gateway_cpu_ms_per_execution']} ms per execution", flush=True)
        results["followed_kernel"] = kernels[0].id
    finally:
        await client.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.environ.get("CELLGATE_BINARY")
                        or str(REPO / "build" / "server" / "cellgate"))
    parser.add_argument("--levels", default="10,50,200", help="kernel counts, ascending")
    parser.add_argument("--runs", type=int, default=10, help="executions per kernel per level")
    parser.add_argument("--followers", type=int, default=1000)
    parser.add_argument("--follower-lines", type=int, default=50)
    parser.add_argument("--go-followers", action="store_true",
                        help="followers as goroutines of the Go client (needs `go`)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    args.levels = [int(x) for x in args.levels.split(",")]
    if args.levels != sorted(args.levels) or args.levels[0] < 1:
        parser.error("--levels must be positive and ascending")

    workdir = Path(tempfile.mkdtemp(prefix="cgscale-"))
    os.chmod(workdir, 0o711)  # kernels with their own uid must reach the runtime dir
    server = GatewayServer(Path(args.server), workdir, [
        f"--state-dir={workdir / 'state'}", "--kernel-uid-base=950000",
        f"--max-kernels={args.levels[-1]}", "--startup-timeout-seconds=240"])
    code = 0
    results: Dict[str, Any] = {}
    try:
        try:
            server.wait_until_serving(60)
        except RuntimeError as e:
            print(f"SETUP FAILED: {e}", file=sys.stderr)
            return 2
        go_binary = build_go_followers(workdir) if args.go_followers else None
        results = asyncio.run(run(args, server))
        if args.followers > 0:
            row = followers(server, results["followed_kernel"], args.followers,
                            args.follower_lines, go_binary)
            results["followers"] = row
            delay = row["event_to_follower_delay_ms"]
            print(f"{row['followers']} followers ({row['client']}) of one kernel printing "
                  f"{row['lines']} lines: "
                  f"every follower got every line; event to follower p50 {delay['p50']} ms, "
                  f"p99 {delay['p99']} ms; GetKernel of that kernel meanwhile p50 "
                  f"{row['get_kernel_meanwhile_ms']['p50']} ms, p99 "
                  f"{row['get_kernel_meanwhile_ms']['p99']} ms, max "
                  f"{row['get_kernel_meanwhile_ms']['max']} ms; gateway threads "
                  f"{row['threads_with_followers']}; "
                  f"gateway CPU {row['gateway_cpu_ms']} ms", flush=True)
    except (BenchFailure, CellgateError, asyncio.TimeoutError) as e:
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        code = 1
    finally:
        status = server.stop()
        if status != 0:
            print(f"the server exited {status}", file=sys.stderr)
            code = code or 1
        remove_unless_failed(workdir, code)
    if code == 0 and args.json:
        Path(args.json).write_text(json.dumps(
            {"command": sys.argv, "results": results, "load_average": os.getloadavg()}, indent=1))
        print(f"wrote {args.json}")
    return code


if __name__ == "__main__":
    sys.exit(main())
