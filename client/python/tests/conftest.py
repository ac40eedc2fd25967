"""Fixtures: real cellgate servers (the binary from $CELLGATE_BINARY, else
$BUILD_DIR/server/cellgate, else <repo>/build/server/cellgate) on port 0, stopped with SIGTERM
at the end."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

HERE = Path(__file__).resolve().parent
CLIENT_DIR = HERE.parent
REPO = CLIENT_DIR.parent.parent
sys.path.insert(0, str(CLIENT_DIR))

import cellgate  # noqa: E402

BINARY = Path(os.environ.get("CELLGATE_BINARY")
              or Path(os.environ.get("BUILD_DIR") or REPO / "build") / "server" / "cellgate")
# Kernels run as their own uids when the server runs as root: a range no other suite uses.
UID_BASE = 600000 + (os.getpid() % 1000) * 64
START_DEADLINE_S = 30.0


class Server:
    """One cellgate process on 127.0.0.1:<free port>."""

    _next_uid_block = 0

    def __init__(self, *extra_flags: str, token: Optional[str] = None) -> None:
        if not BINARY.exists():
            pytest.fail(f"cellgate binary not found at {BINARY} (build it or set CELLGATE_BINARY)")
        self.dir = Path(tempfile.mkdtemp(prefix="cgpy-"))
        os.chmod(self.dir, 0o711)  # kernels (own uids) must traverse it
        self.token = token
        flags: List[str] = [
            "--listen=127.0.0.1:0",
            f"--port-file={self.dir / 'port'}",
            f"--runtime-dir={self.dir / 'r'}",
            f"--state-dir={self.dir / 'state'}",
            # Each server gets its own block of 16 uids inside this suite's range of 64.
            f"--kernel-uid-base={UID_BASE + 16 * Server._next_uid_block}",
            "--max-kernels=16",
            "--drain-seconds=2",
            # These tests watch a killed kernel stay DEAD; the server's own suite tests restarts.
            "--restart-on-death=false",
        ]
        Server._next_uid_block += 1
        if token is not None:
            (self.dir / "tokens").write_text(f"# test tokens\n{token}\n")
            flags.append(f"--auth-token-file={self.dir / 'tokens'}")
        flags += list(extra_flags)
        self.log_path = self.dir / "server.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(BINARY), *flags], stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_DEADLINE_S
        port_file = self.dir / "port"
        while True:
            if port_file.exists() and port_file.read_text().strip():
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"cellgate did not start:\n{self.log_tail()}")
            time.sleep(0.02)  # polling for the port file: the server gives no other signal
        self.port = int(port_file.read_text().strip())
        self.target = f"127.0.0.1:{self.port}"

    def client(self, **kwargs: object) -> cellgate.Client:
        kwargs.setdefault("token", self.token)
        return cellgate.Client(self.target, **kwargs)  # type: ignore[arg-type]

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode


def binary_supports(flag: str) -> bool:
    out = subprocess.run([str(BINARY), f"--help={flag.lstrip('-').replace('-', '_')}"],
                         capture_output=True, text=True).stdout
    return f"--{flag.lstrip('-').replace('-', '_')} " in out


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    assert s.stop() == 0, s.log_tail()


@pytest.fixture(scope="session")
def target(server: Server) -> str:
    return server.target


@pytest.fixture(scope="session")
def auth_server() -> Iterator[Server]:
    s = Server(token="s3cret-token")
    yield s
    assert s.stop() == 0, s.log_tail()


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[cellgate.Client]:
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def kernel(client: cellgate.Client) -> Iterator[cellgate.Kernel]:
    """A kernel shared by a module's tests (they must not depend on each other's cells)."""
    with client.start_kernel(labels={"suite": "python-client"}) as k:
        yield k
