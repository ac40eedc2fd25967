"""The cellgate process the benchmarks drive: one server on 127.0.0.1:<free port> in a
directory of the caller's, with a bearer token, its output copied to <dir>/server.log.

Imported by soak.py, import_bench.py and state_dir_cost.py (they run with bench/ on sys.path).
"""
from __future__ import annotations

import ctypes
import re
import secrets
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

PR_SET_PDEATHSIG = 1
STOP_DEADLINE_S = 40.0


def _die_with_parent() -> None:
    """Runs in the server's child process before exec: SIGKILL it when the benchmark's main
    thread (the one that forked it) dies, so a crashed run never leaves a gateway behind. The
    kernels have PR_SET_PDEATHSIG themselves and die with the gateway."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class GatewayServer:
    """Starts `binary` with --listen=127.0.0.1:0, --port-file, --runtime-dir=<dir>/r and
    --auth-token-file (a fresh token, `self.token`), then `flags`. In its own session, so a
    Ctrl-C in the terminal reaches the benchmark only; it stops the server. `log` reports a
    server that had to be killed."""

    def __init__(self, binary: Path, workdir: Path, flags: Sequence[str],
                 log: Callable[[str], None] = print) -> None:
        self.dir = workdir
        self._log = log
        self.token = secrets.token_hex(16)
        token_file = self.dir / "tokens"
        token_file.write_text(f"# {workdir.name}\n{self.token}\n")
        token_file.chmod(0o600)
        self.port_file = self.dir / "port"
        self.log_path = self.dir / "server.log"
        self.command = [str(binary), "--listen=127.0.0.1:0", f"--port-file={self.port_file}",
                        f"--runtime-dir={self.dir / 'r'}", f"--auth-token-file={token_file}",
                        *flags]
        self._serving = threading.Event()
        self._log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        self.pid = self.proc.pid
        self._log_copier = threading.Thread(target=self._copy_log, name="server-log",
                                            daemon=True)
        self._log_copier.start()
        self.port = 0
        self.target = ""

    def _copy_log(self) -> None:
        """Copies the server's output to server.log and notes when it says it is serving
        (it writes --port-file before that line)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log_file.write(line)
            self._log_file.flush()
            if b"event=serving" in line:
                self._serving.set()
        self._log_file.close()
        self._serving.set()  # EOF: the process is gone; wait_until_serving sees it

    def wait_until_serving(self, deadline_s: float) -> None:
        if not self._serving.wait(deadline_s) or self.proc.poll() is not None:
            raise RuntimeError(f"cellgate did not start serving within {deadline_s:.0f} s "
                               f"(exit status {self.proc.poll()}):\n{self.log_tail()}")
        self.port = int(self.port_file.read_text().strip())
        self.target = f"127.0.0.1:{self.port}"

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-limit:].decode(errors="replace")
        except OSError:
            return ""

    def log_problems(self) -> Tuple[int, int, List[str]]:
        """(warnings, errors, a few distinct problem lines) from the server log, not counting
        the startup report of unavailable sandbox layers."""
        warnings = errors = 0
        samples: List[str] = []
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return 0, 0, []
        seen_events = set()
        for line in lines:
            if "event=sandbox_layer" in line:
                continue
            is_error = "level=error" in line
            is_warning = "level=warning" in line
            if not (is_error or is_warning):
                continue
            errors += is_error
            warnings += is_warning
            event = re.search(r"event=(\S+)", line)
            key = event.group(1) if event else line[:60]
            if key not in seen_events and len(samples) < 10:
                seen_events.add(key)
                samples.append(line[:300])
        return warnings, errors, samples

    def stop(self) -> Optional[int]:
        """SIGTERM (the server drains and exits 0), then SIGKILL if it does not exit in time.
        Returns the exit status (negative: killed by that signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self._log(f"cellgate did not exit {STOP_DEADLINE_S:.0f} s after SIGTERM: SIGKILL")
                self.kill()
        self._log_copier.join(timeout=5)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def remove_dir(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
