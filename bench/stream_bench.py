#!/usr/bin/python3
"""Streaming output (issue #7): how fast a kernel's output reaches a follower, against the floor.

In one run, in alternating order, against ipykernel processes of the same kernelspec:

- **cellgate**: a `StreamOutputs` follower (the Python client's `Kernel.stream_outputs`, in its
  own thread) is open before the code is sent with Execute; the time counts from the Execute
  call until the follower has received the last byte of the output;
- **the floor**: a minimal direct ZMQ client (the one of roundtrip_bench.py) sends the same
  execute_request and reads IOPub until the kernel is idle.

Workloads: `for i in range(100000): print(i)` (100 000 lines, 588 890 bytes); 50 writes of a
1 MiB line (52 428 800 bytes); and `print('x')`, whose time to the first output is the
first-output latency. Every sample checks that all the bytes arrived. Reports medians, MB/s,
ratios to the floor, the time the gateway adds to the first output (the difference of the
medians, and the median of each round's difference), the gateway's CPU per MB and its RSS at
the end.

    /usr/bin/python3 bench/stream_bench.py [--samples 5] [--latency-samples 50] [--json FILE]

Exit status 0 when every sample got all its output, 1 when one did not, 2 when a server or
kernel did not start. Same packages as roundtrip_bench.py, without jupyter_server.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from roundtrip_bench import (NO_OUTPUT_CACHE, REPO, START_DEADLINE_S, BenchFailure,  # noqa: E402
                             DirectKernel, gateway_cpu_ns, jupyter_env, remove_unless_failed)

import cellgate  # noqa: E402
from gateway_server import GatewayServer  # noqa: E402

FOLLOW_DEADLINE_S = 300.0
WORKLOADS: Dict[str, Tuple[str, int]] = {
    "100k lines": ("for i in range(100000): print(i)",
                   sum(len(str(i)) + 1 for i in range(100000))),
    "50 MiB": ("import sys\nfor _ in range(50): sys.stdout.write('x' * 1048575 + '\\n')",
               50 * 1048576),
    "first output": ("print('x')", 2),
}


class Follower:
    """A StreamOutputs follower in its own thread, counting the stream bytes of executions."""

    def __init__(self, kernel: cellgate.Kernel) -> None:
        self.stream = kernel.stream_outputs(after_seq=kernel.notebook().last_seq, follow=True)
        self.lock = threading.Lock()
        self.chars = 0
        self.expected = -1
        self.first_at: Optional[float] = None
        self.last_at: Optional[float] = None
        self.reached = threading.Event()
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, name="follower", daemon=True)
        self.thread.start()

    def expect(self, chars: int) -> None:
        with self.lock:
            self.chars, self.expected = 0, chars
            self.first_at = self.last_at = None
            self.reached.clear()

    def _run(self) -> None:
        try:
            for event in self.stream:
                if not (event.HasField("output") and event.output.HasField("stream")):
                    continue
                now = time.perf_counter()
                with self.lock:
                    if self.first_at is None:
                        self.first_at = now
                    self.chars += len(event.output.stream.text)
                    if self.chars >= self.expected >= 0:
                        self.last_at = now
                        self.reached.set()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self.error = e
            self.reached.set()

    def close(self) -> None:
        self.stream.cancel()
        self.thread.join(timeout=10)


def stats(values: List[float]) -> Dict[str, float]:
    ordered = sorted(values)
    return {"n": len(ordered), "median": round(statistics.median(ordered), 3),
            "min": round(ordered[0], 3), "max": round(ordered[-1], 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.environ.get("CELLGATE_BINARY")
                        or str(REPO / "build" / "server" / "cellgate"))
    parser.add_argument("--samples", type=int, default=5, help="samples of each big workload")
    parser.add_argument("--latency-samples", type=int, default=50,
                        help="samples of the first-output latency")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="cgstream-"))
    os.chmod(workdir, 0o711)  # kernels with their own uid must reach the runtime dir
    env = jupyter_env(workdir)
    server: Optional[GatewayServer] = None
    client: Optional[cellgate.Client] = None
    direct: Optional[DirectKernel] = None
    follower: Optional[Follower] = None
    samples: Dict[Tuple[str, str, str], List[float]] = {}
    gateway_ns = {name: 0 for name in WORKLOADS}
    code = 0
    try:
        try:
            server = GatewayServer(Path(args.server), workdir, [
                f"--state-dir={workdir / 'state'}", "--kernel-uid-base=940000", "--max-kernels=2"])
            server.wait_until_serving(START_DEADLINE_S)
            client = cellgate.Client(server.target, server.token)
            kernel = client.start_kernel(timeout=START_DEADLINE_S)
            direct = DirectKernel(env)
        except (RuntimeError, OSError, cellgate.CellgateError) as e:
            print(f"SETUP FAILED: {e}", file=sys.stderr)
            return 2
        kernel.execute(NO_OUTPUT_CACHE)
        direct.execute(NO_OUTPUT_CACHE)
        follower = Follower(kernel)
        plan = [(name, args.samples + 1) for name in ("100k lines", "50 MiB")]
        plan.append(("first output", args.latency_samples + 5))
        for name, count in plan:
            source, expected = WORKLOADS[name]
            print(f"{name}: {count} rounds (the first warms up)", flush=True)
            for round_index in range(count):
                record = round_index >= count - (args.samples if name != "first output"
                                                 else args.latency_samples)
                for mode in (("cellgate", "direct") if round_index % 2 else ("direct", "cellgate")):
                    if mode == "direct":
                        t0 = time.perf_counter()
                        replies = direct.execute_replies(source)
                        done = time.perf_counter()
                        if replies.output_chars != expected:
                            raise BenchFailure(f"direct ZMQ {name}: {replies.output_chars} of "
                                               f"{expected} characters")
                        first = replies.first_output_at or done
                        last = done
                    else:
                        follower.expect(expected)
                        cpu_before = gateway_cpu_ns(server.pid)
                        t0 = time.perf_counter()
                        result = kernel.execute(source, timeout=FOLLOW_DEADLINE_S)
                        if not result.ok:
                            raise BenchFailure(f"cellgate {name}: {result.status} {result.text[:200]}")
                        if not follower.reached.wait(FOLLOW_DEADLINE_S) or follower.error:
                            raise BenchFailure(f"cellgate {name}: the follower got "
                                               f"{follower.chars} of {expected} characters "
                                               f"({follower.error or 'deadline'})")
                        if record:
                            gateway_ns[name] += gateway_cpu_ns(server.pid) - cpu_before
                        first, last = follower.first_at or t0, follower.last_at or t0
                    if record:
                        samples.setdefault((name, mode, "first"), []).append((first - t0) * 1000)
                        samples.setdefault((name, mode, "last"), []).append((last - t0) * 1000)
    except (BenchFailure, cellgate.CellgateError) as e:
        print(f"FAILED: {e}", file=sys.stderr)
        code = 1
    finally:
        rss_kib = 0
        if server is not None:
            try:
                status = Path(f"/proc/{server.pid}/status").read_text()
                rss_kib = int(status.split("VmRSS:")[1].split()[0])
            except (OSError, IndexError, ValueError):
                pass
        if follower is not None:
            follower.close()
        if direct is not None:
            direct.close()
        if client is not None:
            client.close()
        if server is not None:
            server.stop()
        remove_unless_failed(workdir, code)
    if code != 0:
        return code

    results: Dict[str, Dict[str, object]] = {}
    print(f"\n{'':34}{'first output':>14}{'last byte':>12}{'MB/s':>9}  ms, medians; "
          "cellgate ÷ direct")
    for name, (_, expected) in WORKLOADS.items():
        row: Dict[str, object] = {}
        for mode in ("direct", "cellgate"):
            first = stats(samples[(name, mode, "first")])
            last = stats(samples[(name, mode, "last")])
            mb_s = expected / 1e6 / max(last["median"] / 1000, 1e-9)
            row[mode] = {"first_output_ms": first, "last_byte_ms": last, "mb_per_s": round(mb_s, 2)}
            print(f"{name + ', ' + mode:34}{first['median']:14.2f}{last['median']:12.2f}"
                  f"{mb_s:9.1f}")
        d, c = row["direct"], row["cellgate"]  # type: ignore[assignment]
        row["throughput_ratio"] = round(  # last-byte times: for 2 bytes it is a latency ratio
            d["last_byte_ms"]["median"] / c["last_byte_ms"]["median"], 3)  # type: ignore[index]
        row["first_output_added_ms"] = round(c["first_output_ms"]["median"]  # type: ignore[index]
                                             - d["first_output_ms"]["median"], 3)  # type: ignore[index]
        # Each round ran both clients back to back: the median of the rounds' differences
        # cancels what drifts between rounds (the host's speed) better than that of the medians.
        paired = [cg - dz for cg, dz in zip(samples[(name, "cellgate", "first")],
                                            samples[(name, "direct", "first")])]
        row["first_output_added_paired_ms"] = round(statistics.median(paired), 3)
        samples_n = args.latency_samples if name == "first output" else args.samples
        row["gateway_cpu_ms_per_call"] = round(gateway_ns[name] / 1e6 / samples_n, 3)
        row["gateway_cpu_ms_per_mb"] = round(row["gateway_cpu_ms_per_call"] / (expected / 1e6), 2)
        print(f"  throughput cellgate/direct {row['throughput_ratio']}, first output "
              f"{row['first_output_added_ms']:+.2f} ms (paired by round "
              f"{row['first_output_added_paired_ms']:+.2f} ms), gateway CPU "
              f"{row['gateway_cpu_ms_per_call']} ms per call, "
              f"{row['gateway_cpu_ms_per_mb']} ms per MB")
        results[name] = row
    print(f"gateway RSS at the end: {rss_kib / 1024:.1f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"command": sys.argv, "samples": args.samples,
             "latency_samples": args.latency_samples, "results": results,
             "gateway_rss_kib_end": rss_kib, "load_average": os.getloadavg()}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
