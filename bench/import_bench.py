#!/usr/bin/python3
"""Benchmark of ImportNotebook (issue #6: "a 1000-cell notebook imports in well under 100 ms").

Builds realistic notebooks with nbformat (1000 cells, plus 100 and 10 for scale), starts its
own cellgate server with one kernel, and times, in interleaved rounds (warm-up rounds first):

- ImportNotebook(replace=True) through the Python client (``Kernel.import_ipynb``) and as a raw
  gRPC call (request bytes in, response bytes out: no protobuf or dataclass work in Python),
  each also with ``omit_outputs`` (a reply without the outputs the request carried);
- GetNotebook (client and raw) and ExportNotebook of the imported notebook;
- with ``--state-dir temp`` (default) the server saves notebooks in its temp dir and replies to
  an import once it is saved (write + fsync + rename); ``--state-dir none`` saves nothing;
- baselines measured in the same run: a trivial RPC (GetKernel), and Python's own
  ``nbformat.reads`` + ``nbformat.validate`` of the same bytes (what a Python gateway would pay).

It reports medians, p90 and min in ms, the gateway's CPU time per call (from
/proc/<pid>/task/*/schedstat, ns resolution), transfer sizes, and ratios. It is a benchmark,
not a timed test: it fails only if something does not work (an RPC error, a wrong cell count,
an export that does not round-trip, a server that does not exit 0 on SIGTERM).

    /usr/bin/python3 bench/import_bench.py
    /usr/bin/python3 bench/import_bench.py --reps 30 --warmup 3 --json /tmp/import_bench.json

Exit codes: 0 ran and every check passed; 1 a check failed; 2 setup failed (server or kernel
did not start); 3 the watchdog fired; 130 interrupted.

Only Debian-packaged modules are used (python3-grpcio, python3-protobuf, python3-nbformat)
plus the repository's own client package in client/python.
"""
from __future__ import annotations

import argparse
import base64
import faulthandler
import hashlib
import json
import math
import os
import platform
import random
import resource
import shutil
import signal
import statistics
import struct
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "client" / "python"))

import grpc  # noqa: E402
import nbformat  # noqa: E402
from nbformat import v4 as nbv4  # noqa: E402

from cellgate import Client  # noqa: E402
from cellgate import _requests as rq  # noqa: E402
from cellgate.errors import CellgateError  # noqa: E402
from cellgate.v1 import kernel_gateway_pb2 as gw  # noqa: E402
from cellgate.v1 import notebook_pb2  # noqa: E402
from gateway_server import GatewayServer  # noqa: E402

EXIT_PASSED, EXIT_FAILED, EXIT_SETUP_FAILED, EXIT_WATCHDOG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

RPC_DEADLINE_S = 60.0
KERNEL_START_DEADLINE_S = 120.0
SERVER_START_DEADLINE_S = 30.0

SERVICE = "/cellgate.v1.KernelGateway/"
DEFAULT_SERVER = Path(os.environ.get("CELLGATE_BINARY") or "/work/build/server/cellgate")

# Share of cell types (the rest raw) and the PNG cadence, per the "realistic" notebook.
CODE_SHARE, MARKDOWN_SHARE = 0.70, 0.25
IMAGE_EVERY_CODE_CELLS = 20
PNG_SIDE = 70  # 70x70 RGB noise: ~14.8 KB of PNG, ~20 KB of base64


def log(message: str = "") -> None:
    print(message, flush=True)


# ---------------------------------------------------------------------------------------------
# Notebooks
# ---------------------------------------------------------------------------------------------

WORDS = ("data frame model value result series index column sample mean error batch loss "
         "train test split feature label score weight metric plot figure axis group count "
         "total ratio window rolling filter merge join pivot cache config path file").split()


def ident(rng: random.Random) -> str:
    return "_".join(rng.sample(WORDS, rng.randint(1, 2)))


def code_source(rng: random.Random) -> str:
    """3-30 lines of plausible Python."""
    templates: List[Callable[[], str]] = [
        lambda: f"import {rng.choice(['numpy as np', 'pandas as pd', 'os', 'json', 're', 'math'])}",
        lambda: f"{ident(rng)} = {rng.choice(['pd.read_csv', 'load', 'np.loadtxt'])}"
                f"('{ident(rng)}.csv')",
        lambda: f"{ident(rng)} = {ident(rng)}[{ident(rng)}['{ident(rng)}'] > "
                f"{rng.randint(0, 999)}]",
        lambda: f"# {' '.join(rng.choices(WORDS, k=rng.randint(3, 10)))}",
        lambda: f"for {rng.choice('ijk')} in range({rng.randint(2, 500)}):\n"
                f"    {ident(rng)}.append({ident(rng)}[{rng.choice('ijk')}] * {rng.random():.3f})",
        lambda: f"def {ident(rng)}(x, y={rng.randint(0, 9)}):\n"
                f"    \"\"\"{' '.join(rng.choices(WORDS, k=rng.randint(3, 8)))}.\"\"\"\n"
                f"    return x ** 2 + y",
        lambda: f"print(f\"{ident(rng)}: {{{ident(rng)}!r}}\")",
        lambda: f"{ident(rng)}.groupby('{ident(rng)}').agg({{'{ident(rng)}': 'mean'}}).head()",
        lambda: f"assert len({ident(rng)}) >= {rng.randint(0, 100)}, \"{ident(rng)}\"",
    ]
    target = rng.randint(3, 30)
    lines: List[str] = []
    while len(lines) < target:
        lines.extend(rng.choice(templates)().split("\n"))
    return "\n".join(lines[:target])


def markdown_source(rng: random.Random) -> str:
    level = rng.randint(1, 3)
    title = " ".join(rng.choices(WORDS, k=rng.randint(2, 5))).title()
    lines = [f"{'#' * level} {title}", ""]
    target = rng.randint(3, 30)
    while len(lines) < target:
        kind = rng.random()
        if kind < 0.5:
            lines.append(" ".join(rng.choices(WORDS, k=rng.randint(8, 18))).capitalize() +
                         f" `{ident(rng)}` and $x_{rng.randint(1, 9)}^2$.")
        elif kind < 0.8:
            lines.append(f"- **{ident(rng)}**: {' '.join(rng.choices(WORDS, k=rng.randint(3, 9)))}")
        else:
            lines.append(f"See [{ident(rng)}](https://example.org/{ident(rng)}).")
    return "\n".join(lines[:target])


def raw_source(rng: random.Random) -> str:
    lines = [".. note::", ""]
    while len(lines) < rng.randint(3, 30):
        lines.append("   " + " ".join(rng.choices(WORDS, k=rng.randint(4, 12))))
    return "\n".join(lines)


def png_base64(rng: random.Random, side: int = PNG_SIDE) -> str:
    """A valid side x side RGB PNG of noise (incompressible, like a photo-ish plot)."""
    raw = b"".join(b"\x00" + rng.randbytes(side * 3) for _ in range(side))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data +
                struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    png = (b"\x89PNG\r\n\x1a\n" +
           chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)) +
           chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    return base64.b64encode(png).decode("ascii")


def html_table(rng: random.Random) -> Tuple[str, str]:
    """(text/plain, text/html) of a small pandas-like frame."""
    columns = rng.sample(WORDS, rng.randint(3, 4))
    rows = [[f"{rng.uniform(-1000, 1000):.4f}" for _ in columns] for _ in range(rng.randint(3, 6))]
    plain = "\n".join(["     " + "  ".join(f"{c:>10}" for c in columns)] +
                      [f"{i:<5}" + "  ".join(f"{v:>10}" for v in row)
                       for i, row in enumerate(rows)])
    html = ["<div>", "<style scoped>", "    .dataframe tbody tr th:only-of-type {",
            "        vertical-align: middle;", "    }", "</style>",
            '<table border="1" class="dataframe">', "  <thead>",
            '    <tr style="text-align: right;">', "      <th></th>"]
    html += [f"      <th>{c}</th>" for c in columns] + ["    </tr>", "  </thead>", "  <tbody>"]
    for i, row in enumerate(rows):
        html += ["    <tr>", f"      <th>{i}</th>"]
        html += [f"      <td>{v}</td>" for v in row] + ["    </tr>"]
    html += ["  </tbody>", "</table>", "</div>"]
    return plain, "\n".join(html)


def make_notebook(n_cells: int, seed: int) -> nbformat.NotebookNode:
    """~70% code cells (1-3 outputs: stream, execute_result with text/plain + text/html, a
    ~20 KB base64 PNG display_data on every 20th code cell), ~25% markdown, the rest raw."""
    rng = random.Random(seed)
    n_code = round(n_cells * CODE_SHARE)
    n_markdown = round(n_cells * MARKDOWN_SHARE)
    n_raw = n_cells - n_code - n_markdown
    kinds = ["code"] * n_code + ["markdown"] * n_markdown + ["raw"] * n_raw
    rng.shuffle(kinds)
    nb = nbv4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                       "language": "python"},
        "language_info": {"name": "python", "version": "3.11.2", "mimetype": "text/x-python",
                          "file_extension": ".py", "codemirror_mode": {"name": "ipython",
                                                                       "version": 3},
                          "pygments_lexer": "ipython3", "nbconvert_exporter": "python"},
    }
    code_index = 0
    for kind in kinds:
        cell_id = rng.randbytes(8).hex()
        if kind == "markdown":
            nb.cells.append(nbv4.new_markdown_cell(markdown_source(rng), id=cell_id))
            continue
        if kind == "raw":
            nb.cells.append(nbv4.new_raw_cell(raw_source(rng), id=cell_id,
                                              metadata={"format": "text/restructuredtext"}))
            continue
        code_index += 1
        outputs = []
        n_outputs = rng.randint(1, 3)
        with_image = code_index % IMAGE_EVERY_CODE_CELLS == 0
        stream_lines = [f"{ident(rng)}: {rng.uniform(0, 1e4):.3f}"
                        for _ in range(rng.randint(2, 8))]
        if n_outputs >= 2 or rng.random() < 0.5:
            outputs.append(nbv4.new_output("stream", name="stdout",
                                           text="\n".join(stream_lines) + "\n"))
        if n_outputs == 3 and not with_image:
            warning = (f"/usr/lib/python3/dist-packages/x.py:{rng.randint(1, 999)}: "
                       f"UserWarning: {' '.join(rng.choices(WORDS, k=6))}\n")
            outputs.append(nbv4.new_output("stream", name="stderr", text=warning))
        if with_image:
            outputs.append(nbv4.new_output(
                "display_data",
                data={"image/png": png_base64(rng),
                      "text/plain": "<Figure size 640x480 with 1 Axes>"},
                metadata={"image/png": {"width": PNG_SIDE, "height": PNG_SIDE}}))
        if len(outputs) < n_outputs or not outputs:
            plain, html = html_table(rng)
            outputs.append(nbv4.new_output("execute_result", execution_count=code_index,
                                           data={"text/plain": plain, "text/html": html}))
        metadata: Dict[str, Any] = {}
        if rng.random() < 0.2:
            metadata["tags"] = rng.sample(["slow", "plot", "setup", "skip"], rng.randint(1, 2))
        if rng.random() < 0.1:
            metadata["scrolled"] = True
        nb.cells.append(nbv4.new_code_cell(code_source(rng), id=cell_id, metadata=metadata,
                                           execution_count=code_index, outputs=outputs))
    return nb


def describe(nb: nbformat.NotebookNode) -> Dict[str, int]:
    counts: Dict[str, int] = {"cells": len(nb.cells), "code": 0, "markdown": 0, "raw": 0,
                              "outputs": 0, "images": 0}
    for cell in nb.cells:
        counts[cell.cell_type] += 1
        for out in cell.get("outputs", []):
            counts["outputs"] += 1
            counts["images"] += "image/png" in out.get("data", {})
    return counts


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------

class BenchServer(GatewayServer):
    """The benchmark's server in `workdir`; `save`: with a state dir (else --state-dir=)."""

    def __init__(self, binary: Path, workdir: Path, kernel_uid_base: int, save: bool,
                 extra_args: Sequence[str]) -> None:
        flags = [
            f"--state-dir={workdir / 'state' if save else ''}",  # empty: nothing saved
            f"--kernel-uid-base={kernel_uid_base}",
            "--max-kernels=2",
            "--drain-seconds=5",
        ]
        if (REPO_ROOT / "kernels").is_dir():
            flags.append(f"--kernels-dir={REPO_ROOT / 'kernels'}")
        super().__init__(binary, workdir, [*flags, *extra_args], log=log)

    def cpu_ns(self) -> int:
        """CPU time of all the server's threads so far, in ns (schedstat: exact, unlike the
        10 ms ticks of /proc/<pid>/stat). Threads that exited are not counted, so only
        differences over a short call are meaningful."""
        total = 0
        try:
            tasks = os.listdir(f"/proc/{self.pid}/task")
        except OSError:
            return 0
        for tid in tasks:
            try:
                with open(f"/proc/{self.pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        return total

    def minor_faults(self) -> int:
        """Minor page faults of the server process so far (/proc/<pid>/stat field 10)."""
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return int(f.read().rsplit(")", 1)[1].split()[7])
        except (OSError, ValueError, IndexError):
            return 0

    def rss_kib(self) -> int:
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------

def system_cpu() -> Tuple[float, float, float]:
    """(busy, steal, total) CPU seconds of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq
    return busy / tick, steal / tick, (busy + idle + iowait + steal) / tick


class BenchFailure(Exception):
    """A check failed (wrong cell count, export not round-tripping, ...)."""


def stats(values_ms: List[float]) -> Dict[str, float]:
    ordered = sorted(values_ms)
    n = len(ordered)
    return {
        "n": n,
        "median": round(statistics.median(ordered), 3),
        "p90": round(ordered[max(0, math.ceil(0.9 * n) - 1)], 3),  # nearest rank
        "min": round(ordered[0], 3),
        "max": round(ordered[-1], 3),
        "mean": round(statistics.fmean(ordered), 3),
    }


class Recorder:
    """Samples per operation: wall ms, CPU ms and minor page faults of the gateway and of this
    process (client)."""

    def __init__(self, server: GatewayServer) -> None:
        self.server = server
        self.wall: Dict[str, List[float]] = {}
        self.server_cpu: Dict[str, List[float]] = {}
        self.client_cpu: Dict[str, List[float]] = {}
        self.server_faults: Dict[str, List[int]] = {}
        self.client_faults: Dict[str, List[int]] = {}

    def time(self, name: str, fn: Callable[[], Any], record: bool, server_side: bool = True) -> Any:
        if server_side:
            cpu0, faults0 = self.server.cpu_ns(), self.server.minor_faults()
        own_faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        proc0 = time.process_time_ns()
        t0 = time.perf_counter_ns()
        result = fn()
        t1 = time.perf_counter_ns()
        proc1 = time.process_time_ns()
        own_faults1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        if server_side:
            cpu1, faults1 = self.server.cpu_ns(), self.server.minor_faults()
        if record:
            self.wall.setdefault(name, []).append((t1 - t0) / 1e6)
            self.client_cpu.setdefault(name, []).append((proc1 - proc0) / 1e6)
            self.client_faults.setdefault(name, []).append(own_faults1 - own_faults0)
            if server_side:
                self.server_cpu.setdefault(name, []).append((cpu1 - cpu0) / 1e6)
                self.server_faults.setdefault(name, []).append(faults1 - faults0)
        return result


class Bench:
    def __init__(self, settings: argparse.Namespace) -> None:
        self.s = settings
        self.workdir = Path(tempfile.mkdtemp(prefix="cgimp-"))  # short: ipc socket paths
        os.chmod(self.workdir, 0o711)  # kernels run as their own uids (as root)
        self.server: Optional[GatewayServer] = None
        self.client: Optional[Client] = None
        self.raw_channel: Optional[grpc.Channel] = None
        self.failures: List[str] = []
        self.notebooks: Dict[int, Dict[str, Any]] = {}
        self.server_exit: Optional[int] = None

    # -- setup --------------------------------------------------------------------------------

    def build_notebooks(self) -> None:
        for n in self.s.sizes:
            nb = make_notebook(n, self.s.seed + n)
            text = nbformat.writes(nb)
            data = text.encode("utf-8")
            nbformat.validate(nbformat.reads(text, as_version=4))
            path = self.workdir / f"nb-{n}.ipynb"
            path.write_bytes(data)
            counts = describe(nb)
            self.notebooks[n] = {"data": data, "path": path, "counts": counts,
                                 "sources": [c.source for c in nb.cells],
                                 "output_counts": [len(c.get("outputs", [])) for c in nb.cells]}
            log(f"notebook {n:>5} cells: {len(data):>9,} bytes ({len(data) / 1024:.0f} KiB); "
                f"code {counts['code']}, markdown {counts['markdown']}, raw {counts['raw']}, "
                f"outputs {counts['outputs']} ({counts['images']} PNGs)  {path}")

    def start(self) -> None:
        self.server = BenchServer(self.s.server, self.workdir, self.s.kernel_uid_base,
                                    self.s.state_dir == "temp", self.s.server_arg)
        self.server.wait_until_serving(SERVER_START_DEADLINE_S)
        self.client = Client(self.server.target, self.server.token, rpc_timeout=RPC_DEADLINE_S)
        self.raw_channel = grpc.insecure_channel(self.server.target,
                                                 options=rq.channel_options(None))
        info = self.client.server_info()
        self.server_version = getattr(info, "version", "")
        self.kernel = self.client.start_kernel(labels={"bench": "import"},
                                               timeout=KERNEL_START_DEADLINE_S)
        log(f"server pid {self.server.pid} at {self.server.target} (version "
            f"{self.server_version or '?'}), kernel {self.kernel.id}")

    def raw(self, method: str) -> Callable[[bytes], bytes]:
        """A call that sends pre-serialized request bytes and returns the response bytes."""
        assert self.raw_channel is not None and self.server is not None
        call = self.raw_channel.unary_unary(SERVICE + method)
        metadata = (("authorization", f"Bearer {self.server.token}"),)
        return lambda request: call(request, metadata=metadata, timeout=RPC_DEADLINE_S)

    # -- the measurement ----------------------------------------------------------------------

    def run(self) -> Dict[str, Any]:
        assert self.client is not None and self.server is not None
        rec = Recorder(self.server)
        kernel = self.kernel
        raw_import, raw_get_notebook, raw_get_kernel = (
            self.raw("ImportNotebook"), self.raw("GetNotebook"), self.raw("GetKernel"))
        get_kernel_req = gw.GetKernelRequest(kernel_id=kernel.id).SerializeToString()
        get_notebook_req = gw.GetNotebookRequest(kernel_id=kernel.id).SerializeToString()
        import_reqs = {n: gw.ImportNotebookRequest(kernel_id=kernel.id, ipynb=nb["data"],
                                                   replace=True).SerializeToString()
                       for n, nb in self.notebooks.items()}
        # The reply without the outputs the request just sent (`omit_outputs`).
        lean_import_reqs = {n: gw.ImportNotebookRequest(
            kernel_id=kernel.id, ipynb=nb["data"], replace=True,
            omit_outputs=True).SerializeToString() for n, nb in self.notebooks.items()}
        sizes: Dict[int, Dict[str, int]] = {}

        def check_cells(n: int, count: int, what: str) -> None:
            if count != n:
                raise BenchFailure(f"{what} of the {n}-cell notebook: {count} cells")

        rounds = self.s.warmup + self.s.reps
        log(f"{self.s.warmup} warm-up + {self.s.reps} measured rounds; each round: GetKernel, "
            "then per notebook import (client, raw), GetNotebook (client, raw), ExportNotebook, "
            "nbformat")
        started = time.monotonic()
        cpu_start = (system_cpu(), self.server.cpu_ns(), time.process_time())
        for r in range(rounds):
            record = r >= self.s.warmup
            for n in self.s.sizes:
                nb = self.notebooks[n]
                data = nb["data"]
                rec.time("get_kernel", lambda: self.client.get_kernel(kernel.id), record)
                rec.time("get_kernel_raw", lambda: raw_get_kernel(get_kernel_req), record)
                result = rec.time(f"import[{n}]", lambda: kernel.import_ipynb(data, replace=True),
                                  record)
                check_cells(n, len(result.cells), "client import")
                response = rec.time(f"import_raw[{n}]", lambda: raw_import(import_reqs[n]), record)
                if r == 0 or r == rounds - 1:
                    parsed = notebook_pb2.Notebook.FromString(response)
                    check_cells(n, len(parsed.cells), "raw import")
                result = rec.time(f"import_no_outputs[{n}]",
                                  lambda: kernel.import_ipynb(data, replace=True, outputs=False),
                                  record)
                check_cells(n, len(result.cells), "client import without outputs")
                lean_response = rec.time(f"import_raw_no_outputs[{n}]",
                                         lambda: raw_import(lean_import_reqs[n]), record)
                if r == 0 or r == rounds - 1:
                    parsed = notebook_pb2.Notebook.FromString(lean_response)
                    check_cells(n, len(parsed.cells), "raw import without outputs")
                notebook = rec.time(f"get_notebook[{n}]", lambda: kernel.notebook(), record)
                check_cells(n, len(notebook.cells), "GetNotebook")
                nb_bytes = rec.time(f"get_notebook_raw[{n}]",
                                    lambda: raw_get_notebook(get_notebook_req), record)
                exported = rec.time(f"export[{n}]", lambda: kernel.export_ipynb(), record)
                rec.time(f"nbformat_reads_validate[{n}]",
                         lambda: nbformat.validate(nbformat.reads(data, as_version=4)),
                         record, server_side=False)
                rec.time(f"nbformat_reads[{n}]", lambda: nbformat.reads(data, as_version=4),
                         record, server_side=False)
                rec.time(f"json_loads[{n}]", lambda: json.loads(data), record, server_side=False)
                if r == 0:
                    self.check_export(n, exported)
                    sizes[n] = {"ipynb_bytes": len(data),
                                "import_request_bytes": len(import_reqs[n]),
                                "import_response_bytes": len(response),
                                "import_no_outputs_response_bytes": len(lean_response),
                                "get_notebook_response_bytes": len(nb_bytes),
                                "export_bytes": len(exported)}
            if r == self.s.warmup - 1 or r == rounds - 1 or (r + 1) % 10 == 0:
                log(f"  round {r + 1}/{rounds} ({time.monotonic() - started:.1f} s)")
        (busy0, steal0, total0), server0, own0 = cpu_start
        busy1, steal1, total1 = system_cpu()
        ours = (self.server.cpu_ns() - server0) / 1e9 + (time.process_time() - own0)
        span = max(total1 - total0, 1e-9)
        machine = {"cpus": os.cpu_count(), "busy_share": round((busy1 - busy0) / span, 3),
                   "this_bench_share": round(ours / span, 3),
                   "other_processes_share": round(max(0.0, (busy1 - busy0) - ours) / span, 3),
                   "steal_share": round((steal1 - steal0) / span, 3)}
        results = self.summarize(rec, sizes, time.monotonic() - started)
        results["machine_during_measurement"] = machine
        return results

    def check_export(self, n: int, exported: bytes) -> None:
        """The export of what was imported: valid nbformat, same sources and output counts."""
        nb = nbformat.reads(exported, as_version=4)
        nbformat.validate(nb)
        original = self.notebooks[n]
        sources = [c.source for c in nb.cells]
        if sources != original["sources"]:
            raise BenchFailure(f"export of the {n}-cell notebook: sources differ from the import")
        outputs = [len(c.get("outputs", [])) for c in nb.cells]
        if outputs != original["output_counts"]:
            raise BenchFailure(f"export of the {n}-cell notebook: output counts differ")

    # -- results ------------------------------------------------------------------------------

    def summarize(self, rec: Recorder, sizes: Dict[int, Dict[str, int]],
                  seconds: float) -> Dict[str, Any]:
        ops: Dict[str, Dict[str, Any]] = {}
        for name, values in rec.wall.items():
            ops[name] = {"wall_ms": stats(values),
                         "client_cpu_ms_median": round(statistics.median(rec.client_cpu[name]), 3),
                         "client_minor_faults_median": statistics.median(rec.client_faults[name])}
            if name in rec.server_cpu:
                ops[name]["server_cpu_ms_median"] = round(
                    statistics.median(rec.server_cpu[name]), 3)
                ops[name]["server_minor_faults_median"] = statistics.median(rec.server_faults[name])
                ops[name]["server_cpu_ms"] = [round(v, 3) for v in rec.server_cpu[name]]
            ops[name]["client_cpu_ms"] = [round(v, 3) for v in rec.client_cpu[name]]
            ops[name]["samples_ms"] = [round(v, 3) for v in values]
        trivial = ops["get_kernel"]["wall_ms"]["median"]
        trivial_raw = ops["get_kernel_raw"]["wall_ms"]["median"]
        derived: Dict[str, Dict[str, float]] = {}
        for n in self.s.sizes:
            med = {key: ops[f"{key}[{n}]"]["wall_ms"]["median"] for key in (
                "import", "import_raw", "get_notebook", "get_notebook_raw", "export",
                "nbformat_reads_validate", "nbformat_reads", "json_loads")}
            derived[str(n)] = {
                "import_over_trivial_rpc": round(med["import"] / trivial, 1),
                "import_minus_trivial_rpc_ms": round(med["import"] - trivial, 2),
                "import_raw_minus_trivial_raw_ms": round(med["import_raw"] - trivial_raw, 2),
                "client_side_conversion_ms": round(med["import"] - med["import_raw"], 2),
                "import_raw_minus_get_notebook_raw_ms": round(
                    med["import_raw"] - med["get_notebook_raw"], 2),
                "server_cpu_import_ms": ops[f"import_raw[{n}]"]["server_cpu_ms_median"],
                "server_cpu_get_notebook_ms": ops[f"get_notebook_raw[{n}]"]["server_cpu_ms_median"],
                "nbformat_over_import": round(med["nbformat_reads_validate"] / med["import"], 2),
                # Median over calls of wall - gateway CPU - client CPU. Positive: time neither
                # was on a CPU (the save's fsyncs, wake-ups, other load); negative: the two
                # processes (or the gateway's threads) ran at once.
                "import_raw_wall_minus_cpu_ms": round(statistics.median(
                    w - sc - cc for w, sc, cc in zip(rec.wall[f"import_raw[{n}]"],
                                                     rec.server_cpu[f"import_raw[{n}]"],
                                                     rec.client_cpu[f"import_raw[{n}]"])), 2),
            }
        return {"ops": ops, "sizes": {str(k): v for k, v in sizes.items()}, "derived": derived,
                "measure_seconds": round(seconds, 1)}

    def print_report(self, results: Dict[str, Any]) -> None:
        ops, derived, sizes = results["ops"], results["derived"], results["sizes"]

        def row(label: str, name: str, transfer: str = "") -> str:
            w = ops[name]["wall_ms"]
            scpu = ops[name].get("server_cpu_ms_median")
            sflt = ops[name].get("server_minor_faults_median")
            return (f"{label:<32}{w['median']:>8.2f}{w['p90']:>8.2f}{w['min']:>8.2f}"
                    f"{(f'{scpu:.2f}' if scpu is not None else '-'):>9}"
                    f"{ops[name]['client_cpu_ms_median']:>9.2f}"
                    f"{(f'{sflt:.0f}' if sflt is not None else '-'):>8}"
                    f"{ops[name]['client_minor_faults_median']:>8.0f}  {transfer}")

        def kib(b: int) -> str:
            return f"{b / 1024:,.0f} KiB"

        header = (f"{'operation':<32}{'median':>8}{'p90':>8}{'min':>8}{'srv CPU':>9}"
                  f"{'cli CPU':>9}{'srv flt':>8}{'cli flt':>8}  transfer")
        lines = ["", f"==== cellgate import benchmark ({self.s.reps} rounds after "
                     f"{self.s.warmup} warm-up) ====",
                 "wall ms: median, p90, min; medians of CPU ms (gateway, this process) and of "
                 "minor page faults (gateway, this process) per call", header,
                 row("GetKernel (client)", "get_kernel", "tiny"),
                 row("GetKernel (raw bytes)", "get_kernel_raw", "tiny")]
        for n in self.s.sizes:
            sz = sizes[str(n)]
            lines += [
                f"-- {n} cells, {sz['ipynb_bytes']:,} bytes of .ipynb",
                row("ImportNotebook (client)", f"import[{n}]",
                    f"up {kib(sz['import_request_bytes'])}, "
                    f"down {kib(sz['import_response_bytes'])}"),
                row("ImportNotebook (raw bytes)", f"import_raw[{n}]", "same"),
                row("  reply without outputs (client)", f"import_no_outputs[{n}]",
                    f"down {kib(sz['import_no_outputs_response_bytes'])}"),
                row("  reply without outputs (raw)", f"import_raw_no_outputs[{n}]", "same"),
                row("GetNotebook (client)", f"get_notebook[{n}]",
                    f"down {kib(sz['get_notebook_response_bytes'])}"),
                row("GetNotebook (raw bytes)", f"get_notebook_raw[{n}]", "same"),
                row("ExportNotebook (client)", f"export[{n}]", f"down {kib(sz['export_bytes'])}"),
                row("nbformat.reads + validate", f"nbformat_reads_validate[{n}]", "(local)"),
                row("nbformat.reads (validates too)", f"nbformat_reads[{n}]", "(local)"),
                row("json.loads", f"json_loads[{n}]", "(local)"),
            ]
            d = derived[str(n)]
            lines.append(
                f"   import/GetKernel {d['import_over_trivial_rpc']}x; import - GetKernel "
                f"{d['import_minus_trivial_rpc_ms']} ms; client-side conversion "
                f"(client - raw) {d['client_side_conversion_ms']} ms; raw import - raw GetNotebook "
                f"{d['import_raw_minus_get_notebook_raw_ms']} ms; gateway CPU per import "
                f"{d['server_cpu_import_ms']} ms; raw import wall - both CPUs "
                f"{d['import_raw_wall_minus_cpu_ms']} ms (< 0: overlap); nbformat/import "
                f"{d['nbformat_over_import']}x")
        m = results["machine_during_measurement"]
        lines.append(f"machine during the measurement ({m['cpus']} CPUs = 100%): busy "
                     f"{m['busy_share']:.0%}, of which this benchmark (client + gateway) "
                     f"{m['this_bench_share']:.0%}, other processes "
                     f"{m['other_processes_share']:.0%}; "
                     f"steal {m['steal_share']:.0%}")
        log("\n".join(lines))

    # -- teardown -----------------------------------------------------------------------------

    def stop(self) -> None:
        if self.client is not None:
            try:
                if getattr(self, "kernel", None) is not None:
                    self.kernel.shutdown()
            except CellgateError as e:
                self.failures.append(f"ShutdownKernel: {e}")
            self.client.close()
        if self.raw_channel is not None:
            self.raw_channel.close()
        if self.server is not None:
            self.server_exit = self.server.stop()
            if self.server_exit != 0:
                self.failures.append(f"server exit status {self.server_exit} after SIGTERM")

    def remove_dir(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def binary_info(path: Path) -> Dict[str, Any]:
    """Which build was measured: the binary's mtime and a hash (it may be rebuilt meanwhile)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    st = path.stat()
    return {"path": str(path), "bytes": st.st_size, "sha256_prefix": digest.hexdigest()[:16],
            "mtime": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(st.st_mtime))}


def fs_type(path: Path) -> str:
    """The filesystem type of the mount holding `path` (where the state dir's fsyncs go)."""
    best, kind = "", "?"
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 2 and str(path).startswith(fields[1]) and len(fields[1]) > len(best):
                best, kind = fields[1], f"{fields[2]} on {fields[0]}"
    except OSError:
        pass
    return kind


def machine_info() -> Dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_model": model, "cpus": os.cpu_count(), "python": platform.python_version(),
            "grpcio": grpc.__version__, "nbformat": nbformat.__version__,
            "kernel": platform.release()}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark ImportNotebook / ExportNotebook / GetNotebook against a trivial "
                    "RPC and nbformat, on generated 1000/100/10-cell notebooks.")
    parser.add_argument("--server", type=Path, default=DEFAULT_SERVER,
                        help="cellgate binary (default: $CELLGATE_BINARY or "
                             "/work/build/server/cellgate)")
    parser.add_argument("--sizes", default="1000,100,10",
                        help="cell counts of the generated notebooks (comma-separated)")
    parser.add_argument("--reps", type=int, default=30, help="measured rounds")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up rounds (not recorded)")
    parser.add_argument("--seed", type=int, default=6, help="seed of the notebook generator")
    parser.add_argument("--kernel-uid-base", type=int, default=810000,
                        help="server --kernel-uid-base (as root; apart from soak.py's 800000)")
    parser.add_argument("--state-dir", choices=["temp", "none"], default="temp",
                        help="temp (default): the server saves notebooks in a state dir inside "
                             "the temp dir, and replies to a change once it is saved (write + "
                             "fsync); none: --state-dir= (nothing saved)")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra server flag (repeatable)")
    parser.add_argument("--max-seconds", type=float, default=900.0,
                        help="watchdog: kill the server and exit 3 after this long")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="write settings, machine, sizes, every sample and the summary here")
    parser.add_argument("--keep-dir", action="store_true",
                        help="keep the temp dir (notebooks, server.log) at the end")
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    except ValueError:
        parser.error("--sizes must be comma-separated integers")
    if not args.sizes or min(args.sizes) < 1 or args.reps < 1 or args.warmup < 0:
        parser.error("--sizes, --reps must be positive and --warmup not negative")
    args.server = args.server.resolve()
    if not os.access(args.server, os.X_OK):
        parser.error(f"--server {args.server} is not an executable file")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    settings = parse_args(argv)
    binary = binary_info(settings.server)
    bench = Bench(settings)
    load_before = os.getloadavg()

    watchdog_fired = threading.Event()

    def watchdog() -> None:
        """Kills the server and exits 3, keeping the temp dir (server.log). The main thread,
        whose RPCs now fail, also ends with 3 if it gets there first."""
        watchdog_fired.set()
        log(f"WATCHDOG: still running after {settings.max_seconds:.0f} s; stacks follow")
        faulthandler.dump_traceback(all_threads=True)
        if bench.server is not None:
            bench.server.kill()
        log(f"kept {bench.workdir} (server.log, notebooks)")
        os._exit(EXIT_WATCHDOG)

    timer = threading.Timer(settings.max_seconds, watchdog)
    timer.daemon = True
    timer.start()
    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)

    code = EXIT_PASSED
    results: Optional[Dict[str, Any]] = None
    try:
        log(f"machine: {machine_info()['cpu_model']}, {os.cpu_count()} CPUs; load average "
            f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
        state_dir = (f"in the temp dir ({fs_type(bench.workdir)})"
                     if settings.state_dir == "temp" else "none (nothing saved)")
        log(f"server binary {binary['path']} ({binary['mtime']}, sha256 "
            f"{binary['sha256_prefix']}...); state dir: {state_dir}")
        bench.build_notebooks()
        try:
            bench.start()
        except (RuntimeError, CellgateError, OSError) as e:
            log(f"SETUP FAILED: {e}")
            code = EXIT_SETUP_FAILED
        if code == EXIT_PASSED:
            results = bench.run()
    except BenchFailure as e:
        bench.failures.append(str(e))
    except CellgateError as e:
        bench.failures.append(f"RPC failed: {type(e).__name__}: {e}")
    except grpc.RpcError as e:
        bench.failures.append(f"raw RPC failed: {e.code()}: {e.details()}")  # type: ignore
    except KeyboardInterrupt:
        log("interrupted")
        code = EXIT_INTERRUPTED
    finally:
        rss = bench.server.rss_kib() if bench.server is not None else 0
        try:
            bench.stop()
        except KeyboardInterrupt:
            if bench.server is not None:
                bench.server.kill()
            code = EXIT_INTERRUPTED
    load_after = os.getloadavg()
    warnings, errors, _ = bench.server.log_problems() if bench.server else (0, 0, [])
    if results is not None:
        bench.print_report(results)
    log(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; gateway RSS at "
        f"the end {rss / 1024:.1f} MiB; server exit {bench.server_exit}; server log warnings "
        f"{warnings}, errors {errors}")
    for failure in bench.failures:
        log(f"FAIL: {failure}")
    if code == EXIT_PASSED and bench.failures:
        code = EXIT_FAILED
    if watchdog_fired.is_set():
        code = EXIT_WATCHDOG
    if settings.json:
        Path(settings.json).write_text(json.dumps({
            "command": " ".join([sys.executable, *sys.argv]) if argv is None else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "settings": {k: (str(v) if isinstance(v, Path) else v)
                         for k, v in vars(settings).items()},
            "machine": machine_info(),
            "state_dir_filesystem": (fs_type(bench.workdir) if settings.state_dir == "temp"
                                     else None),
            "server_version": getattr(bench, "server_version", ""),
            "server_binary": binary,
            "load_average_before": load_before, "load_average_after": load_after,
            "notebooks": {str(n): nb["counts"] | {"bytes": len(nb["data"])}
                          for n, nb in bench.notebooks.items()},
            "results": results,
            "gateway_rss_kib_end": rss,
            "server_exit": bench.server_exit,
            "server_log": {"warnings": warnings, "errors": errors},
            "failures": bench.failures,
            "exit_code": code,
        }, indent=1))
        log(f"wrote {settings.json}")
    if code != EXIT_PASSED or settings.keep_dir:
        log(f"kept {bench.workdir} (server.log, notebooks)")
    else:
        bench.remove_dir()
    timer.cancel()
    names = {EXIT_PASSED: "OK", EXIT_FAILED: "FAIL", EXIT_SETUP_FAILED: "SETUP FAILED",
             EXIT_WATCHDOG: "WATCHDOG", EXIT_INTERRUPTED: "INTERRUPTED"}
    log("RESULT: " + names.get(code, str(code)))
    return code


if __name__ == "__main__":
    sys.exit(main())
