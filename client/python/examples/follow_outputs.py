"""A live follower: prints a kernel's events as they arrive, resuming by seq after a cut.

    follow_outputs.py HOST:PORT KERNEL_ID    follow that kernel until it shuts down (Ctrl-C stops)
    follow_outputs.py HOST:PORT              demo: start a kernel, run a few cells in the
                                             background, follow them, shut the kernel down

The stream from Kernel.stream_outputs() reconnects by itself from the last seq it yielded
when the server cuts it off (RESOURCE_EXHAUSTED for a slow reader) or the connection drops
(UNAVAILABLE), so nothing is missed or printed twice. If events were evicted before it could
resume, it raises StreamGap; this follower then resyncs from a notebook snapshot.
"""
from __future__ import annotations

import sys
import threading
from typing import Optional

from cellgate import Client, CellgateError, Kernel, NotFound, StreamGap, describe_event


def follow(kernel: Kernel, after_seq: int = 0) -> int:
    """Prints events until the kernel shuts down; returns how many were printed."""
    printed = 0
    last = after_seq
    while True:
        stream = kernel.stream_outputs(
            after_seq=last, follow=True,
            on_reconnect=lambda err, n: print(f"[reconnecting after {err.code_name}, try {n}]",
                                              flush=True))
        try:
            for event in stream:
                print(describe_event(event), flush=True)
                printed += 1
            return printed                      # ended OK: the kernel was shut down
        except StreamGap as gap:
            nb = kernel.notebook()              # events lost: resync from a snapshot
            print(f"[gap after seq {gap.last_seq}; resynced at seq {nb.last_seq}]", flush=True)
            last = nb.last_seq
        except NotFound:
            return printed
        finally:
            stream.close()


def demo(client: Client) -> int:
    kernel = client.start_kernel(labels={"example": "follow_outputs"})
    print(f"kernel {kernel.id}", flush=True)
    failure: list = []

    def work() -> None:
        try:
            kernel.execute("import time\nfor i in range(3):\n    print('tick', i, flush=True)\n"
                           "    time.sleep(0.1)")
            kernel.execute("1 / 0")
            kernel.execute("'done'")
        except CellgateError as e:  # pragma: no cover - reported below
            failure.append(e)
        finally:
            kernel.shutdown()       # ends the follower's stream (OK)

    worker = threading.Thread(target=work)
    worker.start()
    printed = follow(kernel)
    worker.join()
    if failure:
        print(f"worker failed: {failure[0]}")
        return 1
    return 0 if printed > 0 else 1


def main(argv: list) -> int:
    target = argv[1] if len(argv) > 1 else "127.0.0.1:50051"
    kernel_id: Optional[str] = argv[2] if len(argv) > 2 else None
    with Client(target) as client:
        if kernel_id is None:
            return demo(client)
        try:
            follow(client.kernel(kernel_id))
        except KeyboardInterrupt:
            pass
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
