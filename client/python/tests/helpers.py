"""Test helpers: bounded waits on streams, and a TCP proxy whose connections can be cut."""
from __future__ import annotations

import socket
import struct
import threading
from typing import Any, Callable, List, Optional, Tuple

from cellgate import OutputEvent, event_kind


class Deadline:
    """Closes a stream when the time is up, so a loop over it cannot hang a test."""

    def __init__(self, stream: Any, seconds: float) -> None:
        self.stream = stream
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        self.expired = True
        self.stream.close()

    def __enter__(self) -> "Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._timer.cancel()


def read_until(stream: Any, pred: Callable[[OutputEvent], bool], seconds: float = 60
               ) -> List[OutputEvent]:
    """Events from ``stream`` up to and including the first one matching ``pred``; fails if
    none came within ``seconds``."""
    seen: List[OutputEvent] = []
    with Deadline(stream, seconds) as d:
        for ev in stream:
            seen.append(ev)
            if pred(ev):
                return seen
    raise AssertionError(f"no matching event within {seconds}s (expired={d.expired}); "
                         f"got {[(e.seq, event_kind(e)) for e in seen][-10:]}")


def finished(execution_id: Optional[str] = None) -> Callable[[OutputEvent], bool]:
    return lambda ev: event_kind(ev) == "execution_finished" and (
        execution_id is None or ev.execution_id == execution_id)


def stdout_text(events: List[OutputEvent]) -> str:
    return "".join(e.output.stream.text for e in events
                   if event_kind(e) == "output" and e.output.WhichOneof("output") == "stream")


def assert_consecutive(events: List[OutputEvent]) -> None:
    seqs = [e.seq for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), \
        f"gap or duplicate in seqs: {[s for i, s in enumerate(seqs) if i and s != seqs[i-1] + 1][:5]}"


class TcpProxy:
    """Forwards 127.0.0.1:<port> to the server; ``cut()`` kills every open connection (the
    client sees UNAVAILABLE) while new connections keep working."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream: Tuple[str, int] = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target = f"127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._socks: List[socket.socket] = []
        self._closed = False
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream)
            except OSError:
                down.close()
                continue
            with self._lock:
                if self._closed:
                    down.close(); up.close()
                    return
                self._socks += [down, up]
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
            self.cuts += 1
        for s in socks:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.listener.close()
        self.cut()
