#!/usr/bin/python3
"""What saving notebooks costs (issue #6): RPC latency with --state-dir against --state-dir=.

Starts two cellgate servers side by side, one saving to a state dir and one saving nothing,
with one kernel each, and times in interleaved rounds: RunCell of a trivial cell (its reply
waits for the write), Execute of the same code (nothing saved, no wait), and EditCell (a
notebook change: its reply waits for the write). Reports medians and p90 per server and the
difference, which is the cost of the save (one write + fsync + rename + directory fsync).

    /usr/bin/python3 bench/state_dir_cost.py [--rounds 5] [--per-round 40] [--server PATH]

Exit status 0 when every call worked, 1 otherwise. Debian's python3-grpcio and the repository's
client package (client/python) are all it needs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "client" / "python"))

import cellgate  # noqa: E402
from gateway_server import GatewayServer  # noqa: E402

START_DEADLINE_S = 60.0


def start_server(binary: str, saving: bool, uid_base: int) -> Tuple[GatewayServer, cellgate.Client]:
    workdir = Path(tempfile.mkdtemp(prefix="cgcost-"))
    os.chmod(workdir, 0o711)  # kernels with their own uid must reach the runtime dir
    server = GatewayServer(Path(binary), workdir, [
        f"--state-dir={workdir / 'state' if saving else ''}",  # empty: nothing saved
        f"--kernel-uid-base={uid_base}", "--max-kernels=2"])
    server.wait_until_serving(START_DEADLINE_S)
    return server, cellgate.Client(server.target, server.token)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.environ.get("CELLGATE_BINARY")
                        or str(REPO / "build" / "server" / "cellgate"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=40)
    args = parser.parse_args()

    servers = {"state-dir": start_server(args.server, True, 910000),
               "none": start_server(args.server, False, 910100)}
    samples: dict[tuple[str, str], list[float]] = {}
    try:
        kernels = {name: client.start_kernel() for name, (_, client) in servers.items()}
        cells = {name: k.add_cell("1") for name, k in kernels.items()}
        calls = {
            "RunCell": lambda k, c: k.run_cell(c.cell_id),
            "Execute": lambda k, c: k.execute("1"),
            "EditCell": lambda k, c: k.edit_cell(c.cell_id, "1"),
        }
        for _ in range(args.rounds):
            for name, kernel in kernels.items():
                for call, run in calls.items():
                    for _ in range(args.per_round):
                        start = time.perf_counter()
                        result = run(kernel, cells[name])
                        elapsed = time.perf_counter() - start
                        if getattr(result, "ok", True) is False:
                            print(f"{call} failed on {name}: {result}", file=sys.stderr)
                            return 1
                        samples.setdefault((name, call), []).append(elapsed * 1000)
    finally:
        for server, client in servers.values():
            client.close()
            server.stop()
            server.remove_dir()

    def p90(values: list[float]) -> float:
        return sorted(values)[int(len(values) * 0.9)]

    print(f"{args.rounds} rounds x {args.per_round} calls each, interleaved\n")
    print("| call | with --state-dir: p50 / p90 | without: p50 / p90 | p50 difference |")
    print("|---|---|---|---|")
    for call in ("RunCell", "Execute", "EditCell"):
        saving, plain = samples[("state-dir", call)], samples[("none", call)]
        print(f"| {call} | {statistics.median(saving):.2f} / {p90(saving):.2f} ms "
              f"| {statistics.median(plain):.2f} / {p90(plain):.2f} ms "
              f"| {statistics.median(saving) - statistics.median(plain):+.2f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
