"""What the dependency graph costs a client (issue #9): EditCell (whose reply waits for the
cell's analysis) and RunCell of a small cell, on a server with --dependency-analysis (the
default) and one without, measured in alternating rounds of the same run; medians and the
ratio on/off.

    CELLGATE_BINARY=build/server/cellgate /usr/bin/python3 bench/dependency_bench.py \\
        [--rounds 300] [--cells 50] [--json /tmp/dependency.json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "client" / "python"))
sys.path.insert(0, str(REPO / "bench"))

import cellgate  # noqa: E402
from gateway_server import GatewayServer  # noqa: E402

BINARY = Path(os.environ.get("CELLGATE_BINARY", REPO / "build" / "server" / "cellgate"))


def p99(values: List[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--cells", type=int, default=50, help="cells in each notebook")
    parser.add_argument("--json")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cgdep-"))
    root.chmod(0o711)
    servers: Dict[str, GatewayServer] = {}
    try:
        for name, flags in (("on", []), ("off", ["--dependency-analysis=false"])):
            workdir = root / name
            workdir.mkdir()
            servers[name] = GatewayServer(BINARY, workdir, [
                "--state-dir=" + str(workdir / "state"), "--max-kernels=2",
                f"--kernel-uid-base={820000 if name == 'on' else 820100}", *flags])
        kernels = {}
        clients = []
        for name, server in servers.items():
            server.wait_until_serving(60)
            client = cellgate.Client(server.target, token=server.token)
            clients.append(client)
            kernel = client.start_kernel()
            # A chain: each cell reads the one before, so the graph has work to do.
            kernel.add_cell("v0 = 0", cell_id="c0")
            for i in range(1, args.cells):
                kernel.add_cell(f"v{i} = v{i - 1} + 1", cell_id=f"c{i}")
            kernel.add_cell("1 + 1", cell_id="small")
            assert kernel.run_all().ok
            kernels[name] = kernel
        edit: Dict[str, List[float]] = {"on": [], "off": []}
        run: Dict[str, List[float]] = {"on": [], "off": []}
        middle = f"c{args.cells // 2}"
        for round_ in range(args.rounds + 20):
            for name in ("on", "off") if round_ % 2 else ("off", "on"):
                kernel = kernels[name]
                # A source never seen before: the analyzer's cache can't answer it.
                source = f"v{args.cells // 2} = v{args.cells // 2 - 1} + {round_}  # {name}"
                started = time.perf_counter()
                cell = kernel.edit_cell(middle, source)
                elapsed_edit = (time.perf_counter() - started) * 1000
                if name == "on":
                    assert cell.analysis is cellgate.AnalysisStatus.ANALYZED, cell
                started = time.perf_counter()
                result = kernel.run_cell("small")
                elapsed_run = (time.perf_counter() - started) * 1000
                assert result.ok
                if round_ >= 20:  # warm-up rounds not recorded
                    edit[name].append(elapsed_edit)
                    run[name].append(elapsed_run)
        report = {}
        print(f"{args.rounds} rounds, notebooks of {args.cells + 1} cells; ms")
        print(f"{'':32} {'p50 on':>8} {'p50 off':>8} {'p99 on':>8} {'p99 off':>8} {'on/off':>7}")
        for label, data in (("EditCell (reply after analysis)", edit), ("RunCell '1 + 1'", run)):
            on, off = statistics.median(data["on"]), statistics.median(data["off"])
            report[label] = {"p50_on": on, "p50_off": off, "p99_on": p99(data["on"]),
                             "p99_off": p99(data["off"]), "ratio": on / off}
            print(f"{label:32} {on:8.2f} {off:8.2f} {report[label]['p99_on']:8.2f} "
                  f"{report[label]['p99_off']:8.2f} {on / off:7.2f}")
        for kernel in kernels.values():
            kernel.shutdown()
        for client in clients:
            client.close()
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
        return 0
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
