#!/usr/bin/python3
"""Round trip of a small execution (issue #7): cellgate against the kernel floor and a peer.

In one run, against ipykernel processes of the same kernelspec (`python3`, /usr/bin/python3):

- cellgate RunCell through the Python client (`Kernel.run_cell`), as a raw gRPC call from
  Python (request bytes in, response bytes out: no dataclass work), and through the generated
  C++ stub (bench/roundtrip_client.cc, which times each call itself); and Execute (scratch
  code) through the Python client;
- the floor: a minimal direct ZMQ client (pyzmq with jupyter_client's Session for signing):
  execute_request on shell, then read until the execute_reply and the kernel's `idle` status
  for that request, collecting the outputs, as any Jupyter client must;
- the peer: jupyter_server's REST+WebSocket kernel API (what Jupyter Kernel Gateway serves):
  the same execute_request over /api/kernels/<id>/channels, read to the same end.

Each sample runs `1+1` (an execute_result) or `print('x')` (a stream); every sample checks the
output it got. Each round runs every mode with every snippet once, in an order shuffled per
round (warm-up rounds first, `--seed` fixes the orders), so a noisy machine slows them alike and
no call always comes right after the same other one: a kernel may still be busy after its reply
(a peer's leftover work slowed whichever call followed it when the order only rotated). It reports p50/p90/p99 in ms, ratios to the floor and to
jupyter_server, and the gateway's CPU per call.

    /usr/bin/python3 bench/roundtrip_bench.py [--rounds 300] [--warmup 30] [--seed 7] [--json FILE]

Needs Debian's python3-grpcio, python3-zmq, python3-jupyter-client and python3-tornado
(scripts/install-deps.sh installs them), python3-jupyter-server for the peer (`apt-get install
python3-jupyter-server`; the tests don't need it), the repository's client package
(client/python) and the roundtrip_client target of the build. Exit status 0 when every call gave the expected output, 1 when one
did not, 2 when a server or kernel did not start.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "client" / "python"))

import grpc  # noqa: E402
import zmq  # noqa: E402
from jupyter_client import KernelManager  # noqa: E402
from jupyter_client.session import Session  # noqa: E402
from tornado.websocket import websocket_connect  # noqa: E402

import cellgate  # noqa: E402
from cellgate import _requests as rq  # noqa: E402
from cellgate.v1 import kernel_gateway_pb2 as gw  # noqa: E402
from cellgate.v1 import execution_pb2  # noqa: E402
from gateway_server import GatewayServer  # noqa: E402

SERVICE = "/cellgate.v1.KernelGateway/"
START_DEADLINE_S = 60.0
CALL_DEADLINE_S = 30.0
CODES = {"1+1": "2", "print('x')": "x\n"}
NO_OUTPUT_CACHE = "get_ipython().displayhook.cache_size = 0"


class BenchFailure(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jupyter_env(workdir: Path) -> Dict[str, str]:
    """This process's environment with Jupyter's and IPython's dirs in `workdir`, for the
    kernels and servers the benchmark starts itself."""
    env = dict(os.environ)
    for name in ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "IPYTHONDIR"):
        (workdir / name.lower()).mkdir()
        env[name] = str(workdir / name.lower())
    return env


def remove_unless_failed(workdir: Path, exit_code: int) -> None:
    if exit_code == 0:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"kept {workdir} (server logs)", file=sys.stderr)


def gateway_cpu_ns(pid: int) -> int:
    """CPU time of every thread of `pid` so far (schedstat: ns resolution)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended meanwhile
    return total


class ExecutionReplies:
    """What a Jupyter client reads after an execute_request: the outputs, until both the
    execute_reply and the kernel's `idle` status for that request have come."""

    def __init__(self, msg_id: str) -> None:
        self.msg_id = msg_id
        self.chunks: List[str] = []
        self.output_chars = 0
        self.first_output_at: Optional[float] = None  # time.perf_counter() at the first output
        self.replied = False
        self.idle = False

    @property
    def done(self) -> bool:
        return self.replied and self.idle

    @property
    def output(self) -> str:
        return "".join(self.chunks)

    def _add_output(self, text: str) -> None:
        if self.first_output_at is None:
            self.first_output_at = time.perf_counter()
        self.chunks.append(text)
        self.output_chars += len(text)

    def add(self, message: dict) -> None:
        if (message.get("parent_header") or {}).get("msg_id") != self.msg_id:
            return  # another request's, or the kernel's own
        kind = message["msg_type"]
        if kind == "execute_reply":
            self.replied = True
        elif kind == "stream":
            self._add_output(message["content"]["text"])
        elif kind == "execute_result":
            self._add_output(message["content"]["data"].get("text/plain", ""))
        elif kind == "status" and message["content"]["execution_state"] == "idle":
            self.idle = True


# ---- the floor: straight to the kernel over ZMQ ---------------------------------------------

class DirectKernel:
    """An ipykernel started by jupyter_client, spoken to with plain zmq sockets."""

    def __init__(self, env: Dict[str, str]) -> None:
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(env=env)
        self.session = Session(key=self.manager.session.key)
        self.shell = self.manager.connect_shell()
        self.iopub = self.manager.connect_iopub()
        self.poller = zmq.Poller()
        self.poller.register(self.shell, zmq.POLLIN)
        self.poller.register(self.iopub, zmq.POLLIN)
        # IOPub is a SUB socket: wait until it receives (the kernel answers kernel_info on
        # iopub with status messages), so no sample loses its first messages.
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            self.session.send(self.shell, "kernel_info_request", {})
            if self.poller.poll(500):
                ready = dict(self.poller.poll(0))
                if self.iopub in ready:
                    break
                self.session.recv(self.shell)
            if time.monotonic() > deadline:
                raise RuntimeError("the direct kernel did not answer kernel_info")
        self.drain()

    def drain(self) -> None:
        while self.poller.poll(200):
            for sock in (self.shell, self.iopub):
                while sock.poll(0):
                    sock.recv_multipart()

    def execute(self, code: str) -> str:
        return self.execute_replies(code).output

    def execute_replies(self, code: str) -> ExecutionReplies:
        msg = self.session.send(self.shell, "execute_request", {
            "code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True})
        replies = ExecutionReplies(msg["header"]["msg_id"])
        deadline = time.monotonic() + CALL_DEADLINE_S
        while not replies.done:
            if time.monotonic() > deadline:
                raise BenchFailure(f"direct ZMQ: no reply to {code!r}")
            for sock, _ in self.poller.poll(1000):
                _, reply = self.session.feed_identities(sock.recv_multipart())
                replies.add(self.session.deserialize(reply))
        return replies

    def close(self) -> None:
        self.shell.close(linger=0)
        self.iopub.close(linger=0)
        self.manager.shutdown_kernel(now=True)


# ---- the peer: jupyter_server's REST + WebSocket API ----------------------------------------

class JupyterServerKernel:
    """jupyter_server in a subprocess, one kernel, one WebSocket to its channels."""

    def __init__(self, workdir: Path, env: Dict[str, str], loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "jupyter_server.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", "-m", "jupyter_server", "--no-browser",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.token={self.token}",
             f"--ServerApp.root_dir={workdir}", "--ServerApp.allow_root=True"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            try:
                self.request("GET", "/api/status")
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("jupyter_server did not start; see " + str(self.log_path))
                time.sleep(0.1)  # polling its HTTP port, with a deadline
        self.kernel_id = self.request("POST", "/api/kernels", {"name": "python3"})["id"]
        self.session = uuid.uuid4().hex
        url = (f"ws://127.0.0.1:{self.port}/api/kernels/{self.kernel_id}/channels"
               f"?session_id={self.session}&token={self.token}")
        async def connect():  # made inside the loop, so that its future belongs to it
            return await websocket_connect(url, max_message_size=64 << 20)

        self.ws = loop.run_until_complete(connect())
        # The first execution also waits for the kernel to be ready.
        loop.run_until_complete(asyncio.wait_for(self._execute("None"), START_DEADLINE_S))

    def request(self, method: str, path: str, body: Optional[dict] = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"token {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=CALL_DEADLINE_S) as response:
            text = response.read()
        return json.loads(text) if text else {}

    async def _execute(self, code: str) -> str:
        msg_id = uuid.uuid4().hex
        await self.ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "bench",
                       "session": self.session, "date": "", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
        replies = ExecutionReplies(msg_id)
        while not replies.done:
            text = await self.ws.read_message()
            if text is None:
                raise BenchFailure("jupyter_server closed the WebSocket")
            replies.add(json.loads(text))
        return replies.output

    def execute(self, code: str) -> str:
        return self.loop.run_until_complete(
            asyncio.wait_for(self._execute(code), CALL_DEADLINE_S))

    def close(self) -> None:
        try:
            self.ws.close()
            self.request("DELETE", f"/api/kernels/{self.kernel_id}")
        except OSError:
            pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


# ---- cellgate -------------------------------------------------------------------------------

class CellgateKernel:
    """One cellgate server with a kernel per way of calling it: every kernel of the benchmark,
    the floor's and jupyter_server's included, then gets the same share of the calls (a kernel
    that has just run something answers sooner than one that has waited)."""

    def __init__(self, binary: str, cpp_client: str, workdir: Path, save: bool,
                 flags: List[str]) -> None:
        gateway_dir = workdir / "cellgate"
        gateway_dir.mkdir()
        os.chmod(gateway_dir, 0o711)  # kernels with their own uid must reach the runtime dir
        # Saved as by default (every change of the notebook, fsynced), but in the temp dir.
        state = [] if not save else [f"--state-dir={gateway_dir / 'state'}"]
        self.server = GatewayServer(Path(binary), gateway_dir,
                                    ["--kernel-uid-base=930000", "--max-kernels=4",
                                     *(state or ["--state-dir="]), *flags])
        self.server.wait_until_serving(START_DEADLINE_S)
        self.client = cellgate.Client(self.server.target, self.server.token)
        self.kernels = {way: self.client.start_kernel(timeout=START_DEADLINE_S)
                        for way in ("python", "raw", "cpp", "execute")}
        for kernel in self.kernels.values():
            kernel.execute(NO_OUTPUT_CACHE)  # see main()
        self.cells = {way: {code: self.kernels[way].add_cell(code).cell_id for code in CODES}
                      for way in ("python", "raw", "cpp")}
        self.channel = grpc.insecure_channel(self.server.target, options=rq.channel_options(None))
        call = self.channel.unary_unary(SERVICE + "RunCell")
        metadata = (("authorization", f"Bearer {self.server.token}"),)
        self.raw_requests = {code: gw.RunCellRequest(kernel_id=self.kernels["raw"].id,
                                                     cell_id=cell_id).SerializeToString()
                             for code, cell_id in self.cells["raw"].items()}
        self.raw_call = lambda request: call(request, metadata=metadata, timeout=CALL_DEADLINE_S)
        self.cpp = subprocess.Popen(
            [cpp_client, self.server.target, str(gateway_dir / "tokens"), self.kernels["cpp"].id],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.cpp_elapsed_ms = 0.0

    def run_cell(self, code: str) -> str:
        return self.kernels["python"].run_cell(self.cells["python"][code]).text

    def run_cell_raw(self, code: str) -> str:
        result = execution_pb2.ExecutionResult.FromString(self.raw_call(self.raw_requests[code]))
        return result.text  # parsed only to check it; the timing includes this small parse

    def run_cell_cpp(self, code: str) -> str:
        """RunCell by the C++ client; the time is the one it measured (cpp_elapsed_ms)."""
        assert self.cpp.stdin is not None and self.cpp.stdout is not None
        self.cpp.stdin.write(self.cells["cpp"][code] + "\n")
        self.cpp.stdin.flush()
        kind, value, text = (self.cpp.stdout.readline().rstrip("\n").split(" ", 2) + ["", ""])[:3]
        if kind != "ok":
            raise BenchFailure(f"C++ client: {kind} {value} {text}")
        self.cpp_elapsed_ms = int(value) / 1e6
        return text.encode("latin-1").decode("unicode_escape").encode("latin-1").decode()

    def execute(self, code: str) -> str:
        return self.kernels["execute"].execute(code).text

    def close(self) -> Optional[int]:
        if self.cpp.stdin is not None:
            self.cpp.stdin.close()
        self.cpp.wait(timeout=10)
        self.channel.close()
        self.client.close()
        status = self.server.stop()
        return status


def stats(values_ms: List[float]) -> Dict[str, float]:
    ordered = sorted(values_ms)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3)

    return {"n": len(ordered), "p50": round(statistics.median(ordered), 3), "p90": pct(0.9),
            "p99": pct(0.99), "min": round(ordered[0], 3)}


def expected_text(mode: str, code: str) -> str:
    # ExecutionResult.text renders an execute_result's text/plain with a newline after it.
    if mode.startswith("cellgate") and code == "1+1":
        return CODES[code] + "\n"
    return CODES[code]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.environ.get("CELLGATE_BINARY")
                        or str(REPO / "build" / "server" / "cellgate"))
    parser.add_argument("--cpp-client", default=None,
                        help="the C++ client (default: bench/roundtrip_client next to --server's "
                        "build dir)")
    parser.add_argument("--rounds", type=int, default=300, help="measured rounds")
    parser.add_argument("--warmup", type=int, default=30, help="rounds not recorded")
    parser.add_argument("--state-dir", choices=["temp", "none"], default="temp",
                        help="temp (default): notebooks saved as they change, in the run's temp "
                        "dir, as cellgate does by default; none: nothing saved")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="an extra cellgate flag (repeatable), e.g. --server-arg=--sandbox=none")
    parser.add_argument("--seed", type=int, default=7, help="seeds the per-round orders")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.cpp_client is None:
        args.cpp_client = str(Path(args.server).resolve().parent.parent / "bench" / "roundtrip_client")
    if importlib.util.find_spec("jupyter_server") is None:
        parser.error("jupyter_server is missing: apt-get install python3-jupyter-server")
    if not os.access(args.cpp_client, os.X_OK):
        parser.error(f"no C++ client at {args.cpp_client} (build the roundtrip_client target)")

    workdir = Path(tempfile.mkdtemp(prefix="cgrt-"))
    os.chmod(workdir, 0o711)  # kernels with their own uid must reach the runtime dir
    env = jupyter_env(workdir)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    parts: Dict[str, object] = {}
    samples: Dict[Tuple[str, str], List[float]] = {}
    code = 0
    gateway_ns = 0
    gateway_calls = 0
    try:
        try:
            parts["cellgate"] = gate = CellgateKernel(args.server, args.cpp_client, workdir,
                                                      args.state_dir == "temp", args.server_arg)
            parts["direct"] = direct = DirectKernel(env)
            parts["jupyter_server"] = peer = JupyterServerKernel(workdir, env, loop)
        except (RuntimeError, OSError, cellgate.CellgateError) as e:
            print(f"SETUP FAILED: {e}", file=sys.stderr)
            return 2
        modes: Dict[str, Callable[[str], str]] = {
            "direct ZMQ (floor)": direct.execute,
            "cellgate RunCell, Python client": gate.run_cell,
            "cellgate RunCell, raw gRPC": gate.run_cell_raw,
            "cellgate RunCell, C++ client": gate.run_cell_cpp,
            "cellgate Execute, Python client": gate.execute,
            "jupyter_server REST+WebSocket": peer.execute,
        }
        names = list(modes)
        # Thousands of `1+1` results would fill IPython's output cache (1000 entries), whose
        # flush warns on stderr: the same setting in every kernel.
        for execute in (direct.execute, peer.execute):  # cellgate's kernels: when started
            execute(NO_OUTPUT_CACHE)
        print(f"{args.warmup} warm-up + {args.rounds} measured rounds of {len(names)} modes x "
              f"{len(CODES)} codes", flush=True)
        started = time.monotonic()
        order = random.Random(args.seed)
        calls = [(name, snippet) for name in names for snippet in CODES]
        for round_index in range(args.warmup + args.rounds):
            record = round_index >= args.warmup
            order.shuffle(calls)
            for name, snippet in calls:
                cpu_before = gateway_cpu_ns(gate.server.pid) if name.startswith("cellgate") else 0
                t0 = time.perf_counter()
                text = modes[name](snippet)
                elapsed_ms = (time.perf_counter() - t0) * 1000
                if name == "cellgate RunCell, C++ client":
                    elapsed_ms = gate.cpp_elapsed_ms  # without the pipe to this process
                if name.startswith("cellgate") and record:
                    gateway_ns += gateway_cpu_ns(gate.server.pid) - cpu_before
                    gateway_calls += 1
                if text != expected_text(name, snippet):
                    raise BenchFailure(f"{name}: {snippet!r} gave {text!r}")
                if record:
                    samples.setdefault((name, snippet), []).append(elapsed_ms)
            if (round_index + 1) % 50 == 0:
                print(f"  round {round_index + 1}/{args.warmup + args.rounds} "
                      f"({time.monotonic() - started:.0f} s)", flush=True)
    except (BenchFailure, cellgate.CellgateError, grpc.RpcError) as e:
        print(f"FAILED: {e}", file=sys.stderr)
        code = 1
    finally:
        for part in parts.values():
            try:
                part.close()  # type: ignore[attr-defined]
            except Exception as e:  # noqa: BLE001 - report and go on closing the others
                print(f"closing {type(part).__name__}: {e}", file=sys.stderr)
        loop.close()
        remove_unless_failed(workdir, code)
    if code != 0:
        return code

    results = {f"{name} | {snippet}": stats(values) for (name, snippet), values in samples.items()}
    print(f"\n{'':58}{'p50':>8}{'p90':>8}{'p99':>8}{'min':>8}  ms; "
          f"÷floor ÷jupyter_server (p50)")
    ratios: Dict[str, Dict[str, float]] = {}
    for snippet in CODES:
        floor = results[f"direct ZMQ (floor) | {snippet}"]["p50"]
        peer_p50 = results[f"jupyter_server REST+WebSocket | {snippet}"]["p50"]
        for name in names:
            row = results[f"{name} | {snippet}"]
            ratio = {"over_floor": round(row["p50"] / floor, 3),
                     "over_jupyter_server": round(row["p50"] / peer_p50, 3)}
            ratios[f"{name} | {snippet}"] = ratio
            print(f"{name + '  ' + snippet:58}{row['p50']:8.2f}{row['p90']:8.2f}"
                  f"{row['p99']:8.2f}{row['min']:8.2f}  {ratio['over_floor']:6.2f} "
                  f"{ratio['over_jupyter_server']:6.2f}")
    cpu_per_call_ms = gateway_ns / max(gateway_calls, 1) / 1e6
    print(f"gateway CPU per cellgate call (all threads): {cpu_per_call_ms:.3f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"command": sys.argv, "rounds": args.rounds, "warmup": args.warmup, "seed": args.seed,
             "state_dir": args.state_dir, "results": results, "ratios": ratios,
             "gateway_cpu_ms_per_call": round(cpu_per_call_ms, 4),
             "load_average": os.getloadavg()}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
