#!/usr/bin/python3
"""StartKernel from the warm pool against a cold start (issue #7).

Starts two cellgate servers side by side, one with --pool-size=1 and one without, and times in
alternating rounds: StartKernel (default settings) until the kernel is IDLE, then the first
Execute of `1` in it. Before each pooled sample it waits until the pool holds a ready kernel
again (the server logs `event=kernel_pooled`), so every pooled sample is a take from a full
pool; a burst of starts faster than the pool refills gets cold starts after the first. Each
kernel is shut down after its sample (not timed).

    /usr/bin/python3 bench/start_bench.py [--samples 20] [--server PATH] [--json FILE]

Exit status 0 when every call worked (and every pooled sample came from the pool), 1
otherwise. Debian's python3-grpcio and the repository's client package (client/python) are all
it needs.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "client" / "python"))

import cellgate  # noqa: E402
from gateway_server import GatewayServer  # noqa: E402

START_DEADLINE_S = 60.0
POOL_REFILL_DEADLINE_S = 60.0


def start_server(binary: str, pool_size: int, uid_base: int) -> Tuple[GatewayServer, cellgate.Client]:
    workdir = Path(tempfile.mkdtemp(prefix="cgstart-"))
    os.chmod(workdir, 0o711)  # kernels with their own uid must reach the runtime dir
    server = GatewayServer(Path(binary), workdir, [
        f"--state-dir={workdir / 'state'}", f"--kernel-uid-base={uid_base}", "--max-kernels=4",
        f"--pool-size={pool_size}"])
    server.wait_until_serving(START_DEADLINE_S)
    return server, cellgate.Client(server.target, server.token)


def pooled_pids(server: GatewayServer) -> List[int]:
    text = server.log_path.read_text(errors="replace")
    return [int(pid) for pid in re.findall(r"event=kernel_pooled pid=(\d+)", text)]


def wait_for_pooled(server: GatewayServer, count: int) -> List[int]:
    deadline = time.monotonic() + POOL_REFILL_DEADLINE_S
    while True:
        pids = pooled_pids(server)
        if len(pids) >= count:
            return pids
        if time.monotonic() > deadline:
            raise RuntimeError(f"the pool did not refill within {POOL_REFILL_DEADLINE_S:.0f} s")
        time.sleep(0.02)  # polling the server log, with a deadline


def stats(values_ms: List[float]) -> Dict[str, float]:
    ordered = sorted(values_ms)
    return {"n": len(ordered), "median": round(statistics.median(ordered), 2),
            "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 2),
            "min": round(ordered[0], 2), "max": round(ordered[-1], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.environ.get("CELLGATE_BINARY")
                        or str(REPO / "build" / "server" / "cellgate"))
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    servers = {"cold": start_server(args.server, 0, 920000),
               "pooled": start_server(args.server, 1, 920100)}
    samples: Dict[Tuple[str, str], List[float]] = {}
    not_from_pool = 0
    try:
        for round_index in range(args.samples):
            for mode, (server, client) in servers.items():
                pids = wait_for_pooled(server, round_index + 1) if mode == "pooled" else []
                start = time.perf_counter()
                kernel = client.start_kernel()
                started = time.perf_counter()
                result = kernel.execute("1")
                executed = time.perf_counter()
                if not result.ok:
                    print(f"Execute failed on {mode}: {result}", file=sys.stderr)
                    return 1
                if mode == "pooled" and kernel.info().pid != pids[round_index]:
                    not_from_pool += 1
                samples.setdefault((mode, "StartKernel"), []).append((started - start) * 1000)
                samples.setdefault((mode, "first Execute"), []).append((executed - started) * 1000)
                kernel.shutdown()
    finally:
        for server, client in servers.values():
            client.close()
            server.stop()
            server.remove_dir()

    results = {f"{mode} {call}": stats(values) for (mode, call), values in samples.items()}
    print(f"{'':28}{'median':>10}{'p90':>10}{'min':>10}{'max':>10}   (ms, {args.samples} samples)")
    for name, row in results.items():
        print(f"{name:28}{row['median']:10.2f}{row['p90']:10.2f}{row['min']:10.2f}{row['max']:10.2f}")
    ratio = results["pooled StartKernel"]["median"] / results["cold StartKernel"]["median"]
    print(f"pooled / cold StartKernel median: {ratio:.3f}; pooled samples not from the pool: "
          f"{not_from_pool}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"command": sys.argv, "samples": args.samples, "results": results,
             "pooled_over_cold": round(ratio, 4), "not_from_pool": not_from_pool}, indent=1))
    return 0 if not_from_pool == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
