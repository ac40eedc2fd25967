#!/usr/bin/python3
"""Side-by-side ImportNotebook: two builds (or one) alternating call by call (issue #7).

`import_bench.py` runs one server at a time, and on a noisy machine two runs of it differ more
than a change does. This one starts a server per binary (each with one kernel and the same
generated 1000-cell notebook as import_bench.py), then sends raw `replace=True` imports in
rounds: in each round every server gets the full-reply import and the `omit_outputs` one, in an
order that rotates from round to round. Everything compared was measured in the same minutes.

It reports per server and kind the median, p10 and p90 of the wall time and the median of the
gateway's CPU per call, and the ratios: each binary against the first (`--server`), and the
reply without outputs against the full one on each server. A binary that predates
`omit_outputs` ignores it (its "lean" calls get the full reply).

    /usr/bin/python3 bench/import_pair.py --server OLD/cellgate --against NEW/cellgate
    /usr/bin/python3 bench/import_pair.py --server build/server/cellgate --calls 200 --json F

Exit codes: 0 ran; 1 a reply was wrong (cell count); 2 setup failed.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import import_bench as ib

KINDS = ("full", "lean")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", type=Path, default=ib.DEFAULT_SERVER,
                        help="the baseline cellgate binary")
    parser.add_argument("--against", type=Path, action="append", default=[],
                        help="a binary to compare with the baseline (repeatable)")
    parser.add_argument("--cells", type=int, default=1000, help="cells of the notebook")
    parser.add_argument("--calls", type=int, default=150,
                        help="measured calls per server and kind")
    parser.add_argument("--warmup", type=int, default=5, help="calls per server and kind first")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write results here")
    return parser.parse_args()


def percentile(values: List[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def main() -> int:
    args = parse_args()
    binaries = [args.server, *args.against]
    benches: List[ib.Bench] = []
    calls: List[Dict[str, Any]] = []
    try:
        for i, binary in enumerate(binaries):
            # Each server hands out its own uid range: one would end the other's kernels.
            settings = ib.parse_args(["--server", str(binary), "--sizes", str(args.cells),
                                      "--kernel-uid-base", str(810000 + 5000 * i)])
            bench = ib.Bench(settings)
            benches.append(bench)
            bench.build_notebooks()
            bench.start()
            raw = bench.raw("ImportNotebook")
            data = bench.notebooks[args.cells]["data"]
            requests = {kind: ib.gw.ImportNotebookRequest(
                kernel_id=bench.kernel.id, ipynb=data, replace=True,
                omit_outputs=(kind == "lean")).SerializeToString() for kind in KINDS}
            calls.append({"bench": bench, "raw": raw, "requests": requests})
    except Exception as error:  # noqa: BLE001 - any setup failure ends the run
        ib.log(f"setup failed: {error}")
        for bench in benches:
            bench.stop()
            bench.remove_dir()
        return 2

    slots = [(s, kind) for s in range(len(binaries)) for kind in KINDS]
    wall: Dict[tuple, List[float]] = {slot: [] for slot in slots}
    cpu: Dict[tuple, List[float]] = {slot: [] for slot in slots}
    reply_bytes: Dict[tuple, int] = {}
    status = 0
    try:
        for round_number in range(args.warmup + args.calls):
            shift = round_number % len(slots)
            for s, kind in slots[shift:] + slots[:shift]:
                c = calls[s]
                cpu_before = c["bench"].server.cpu_ns()
                started = time.perf_counter()
                reply = c["raw"](c["requests"][kind])
                elapsed = (time.perf_counter() - started) * 1000
                cpu_ms = (c["bench"].server.cpu_ns() - cpu_before) / 1e6
                if round_number == args.warmup + args.calls - 1:  # analyses in by now
                    cells = len(ib.notebook_pb2.Notebook.FromString(reply).cells)
                    if cells != args.cells:
                        ib.log(f"{binaries[s]} {kind}: {cells} cells in the reply")
                        status = 1
                    reply_bytes[(s, kind)] = len(reply)
                if round_number >= args.warmup:
                    wall[(s, kind)].append(elapsed)
                    cpu[(s, kind)].append(cpu_ms)
    finally:
        for bench in benches:
            bench.stop()
            bench.remove_dir()

    results: Dict[str, Any] = {"binaries": [str(b) for b in binaries], "cells": args.cells,
                               "calls": args.calls, "servers": []}
    ib.log(f"\n{args.calls} calls per server and kind, alternating; ms")
    ib.log(f"{'server':<48}{'kind':<6}{'reply KiB':>10}{'median':>8}{'p10':>8}{'p90':>8}"
           f"{'CPU':>8}")
    for s, binary in enumerate(binaries):
        entry: Dict[str, Any] = {"binary": str(binary)}
        for kind in KINDS:
            w = wall[(s, kind)]
            entry[kind] = {"reply_bytes": reply_bytes.get((s, kind), 0),
                           "wall_ms_median": round(statistics.median(w), 2),
                           "wall_ms_p10": round(percentile(w, 0.1), 2),
                           "wall_ms_p90": round(percentile(w, 0.9), 2),
                           "server_cpu_ms_median": round(statistics.median(cpu[(s, kind)]), 2)}
            e = entry[kind]
            ib.log(f"{str(binary)[-47:]:<48}{kind:<6}{e['reply_bytes'] / 1024:>10,.0f}"
                   f"{e['wall_ms_median']:>8.2f}{e['wall_ms_p10']:>8.2f}{e['wall_ms_p90']:>8.2f}"
                   f"{e['server_cpu_ms_median']:>8.2f}")
        entry["lean_over_full"] = {
            "wall": round(entry["lean"]["wall_ms_median"] / entry["full"]["wall_ms_median"], 3),
            "server_cpu": round(entry["lean"]["server_cpu_ms_median"] /
                                entry["full"]["server_cpu_ms_median"], 3)}
        results["servers"].append(entry)
    base = results["servers"][0]
    for entry in results["servers"]:
        ib.log(f"{entry['binary'][-47:]}: lean ÷ full {entry['lean_over_full']['wall']} wall, "
               f"{entry['lean_over_full']['server_cpu']} CPU")
        if entry is base:
            continue
        entry["over_baseline"] = {kind: {
            "wall": round(entry[kind]["wall_ms_median"] / base[kind]["wall_ms_median"], 3),
            "server_cpu": round(entry[kind]["server_cpu_ms_median"] /
                                base[kind]["server_cpu_ms_median"], 3)} for kind in KINDS}
        for kind in KINDS:
            r = entry["over_baseline"][kind]
            ib.log(f"  ÷ baseline, {kind}: {r['wall']} wall, {r['server_cpu']} CPU")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results}, indent=1))
        ib.log(f"wrote {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
