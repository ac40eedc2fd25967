"""The resumable output stream: reconnects after a cut with no gap and no duplicate."""
from __future__ import annotations

import threading
from typing import Iterator, List

import grpc
import pytest

import cellgate
from cellgate import Client, event_kind
from conftest import Server, binary_supports
from helpers import TcpProxy, assert_consecutive, finished, read_until, stdout_text

LOG_BYTES = 1 << 20        # --event-log-bytes
LAG_BYTES = 128 << 10      # --stream-max-lag-bytes
LINES = 600                # ~600 KB of output in 600 stream events
PRINT_600K = (f"for i in range({LINES}):\n"
              "    print(f'{i:05d} ' + 'x' * 1000, flush=True)")
EXPECTED_600K = "".join(f"{i:05d} " + "x" * 1000 + "\n" for i in range(LINES))


@pytest.fixture(scope="session")
def small_log_server() -> Iterator[Server]:
    if not binary_supports("stream-max-lag-bytes"):
        pytest.fail("this cellgate binary has no --stream-max-lag-bytes flag (server too old)")
    s = Server(f"--event-log-bytes={LOG_BYTES}", f"--stream-max-lag-bytes={LAG_BYTES}")
    yield s
    assert s.stop() == 0, s.log_tail()


@pytest.fixture(scope="module")
def slow_client(small_log_server: Server) -> Iterator[Client]:
    # No BDP probing: the HTTP/2 window stays small, so an unread stream backs up on the server.
    with small_log_server.client(options=[("grpc.http2.bdp_probe", 0)]) as c:
        yield c


def _full_replay(kernel: cellgate.Kernel, after_seq: int, upto: int) -> List[cellgate.OutputEvent]:
    events = [e for e in kernel.stream_outputs(after_seq=after_seq, follow=False) if e.seq <= upto]
    return events


def test_stalled_follower_is_cut_and_resumes_without_gap(slow_client: Client) -> None:
    with slow_client.start_kernel() as k:
        cell = k.add_cell(PRINT_600K)
        start = k.info().last_seq
        hooks: List[tuple] = []
        stream = k.stream_outputs(after_seq=start - 1, follow=True,
                                  on_reconnect=lambda err, n: hooks.append((err.code, n)))
        first = next(stream)                 # the stream is live...
        assert first.seq == start
        result = k.run_cell(cell.cell_id)    # ...and stalls while the cell prints ~600 KB
        assert result.ok
        rest = read_until(stream, finished(result.execution_id), seconds=120)
        stream.close()
        events = [first] + rest

        assert stream.reconnects >= 1, "the server never cut the stalled follower off"
        assert hooks and all(code is grpc.StatusCode.RESOURCE_EXHAUSTED for code, _ in hooks)
        assert [e.code for e in stream.errors] == [c for c, _ in hooks]
        assert_consecutive(events)
        assert stream.last_seq == events[-1].seq
        mine = [e for e in events if e.execution_id == result.execution_id]
        assert stdout_text(mine) == EXPECTED_600K

        replay = _full_replay(k, start - 1, events[-1].seq)
        assert [e.SerializeToString() for e in replay] == [e.SerializeToString() for e in events]


def test_gap_that_cannot_be_avoided_raises_stream_gap(slow_client: Client) -> None:
    with slow_client.start_kernel() as k:
        # ~1.5 MB of events through a 1 MiB log: the first events are evicted.
        assert k.execute("for i in range(1500):\n    print('z' * 1000, flush=True)").ok
        info = k.info()
        assert info.oldest_retained_seq > 2
        stream = k.stream_outputs(after_seq=1, follow=False)
        with pytest.raises(cellgate.StreamGap) as e:
            next(stream)
        assert e.value.last_seq == 1 and e.value.code is grpc.StatusCode.OUT_OF_RANGE
        assert f"oldest retained seq is {info.oldest_retained_seq}" in e.value.message
        # after_seq=0 means "from the oldest retained", never a gap
        events = list(k.stream_outputs(after_seq=0, follow=False))
        assert events[0].seq == info.oldest_retained_seq
        assert_consecutive(events)


def test_connection_cut_resumes_without_gap(server: Server) -> None:
    proxy = TcpProxy(server.target)
    direct = server.client()   # runs the code; only the follower goes through the proxy
    try:
        with direct.start_kernel() as k, Client(proxy.target) as proxied:
            start = k.info().last_seq
            stream = proxied.kernel(k.id).stream_outputs(after_seq=start, follow=True)
            box: dict = {}
            worker = threading.Thread(target=lambda: box.setdefault("r", k.execute(
                "for i in range(300):\n    print(i, flush=True)")))
            worker.start()
            before = read_until(stream, lambda e: event_kind(e) == "output")
            proxy.cut()                          # the follower's connection dies mid-stream
            after = read_until(stream, finished(), seconds=120)
            stream.close()
            worker.join(120)
            events = before + after
            assert stream.reconnects >= 1 and proxy.cuts == 1
            assert stream.errors[0].code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL)
            assert_consecutive(events)
            assert stdout_text(events) == "".join(f"{i}\n" for i in range(300))
            replay = _full_replay(k, start, events[-1].seq)
            assert [e.SerializeToString() for e in replay] == [e.SerializeToString() for e in events]
            assert box["r"].ok
    finally:
        proxy.close()
        direct.close()


def test_retries_are_bounded(server: Server) -> None:
    proxy = TcpProxy(server.target)
    with server.client() as direct, direct.start_kernel() as k, Client(proxy.target) as proxied:
        stream = proxied.kernel(k.id).stream_outputs(after_seq=0, follow=True, max_retries=2,
                                                     backoff=0.01)
        assert next(stream).seq == 1
        proxy.close()                           # gone for good: every reconnect fails
        with pytest.raises(cellgate.Unavailable):
            for _ in stream:
                pass
        assert stream.reconnects == 2 and len(stream.errors) == 2
        assert stream.last_seq == 1


@pytest.mark.asyncio
async def test_async_stalled_follower_is_cut_and_resumes_without_gap(
        small_log_server: Server) -> None:
    import asyncio
    import cellgate.aio as aio
    async with aio.Client(small_log_server.target,
                          options=[("grpc.http2.bdp_probe", 0)]) as c:
        async with await c.start_kernel() as k:
            cell = await k.add_cell(PRINT_600K)
            start = (await k.info()).last_seq
            stream = k.stream_outputs(after_seq=start - 1)
            first = await stream.__anext__()
            assert first.seq == start
            result = await k.run_cell(cell.cell_id)      # the stream is not read meanwhile
            assert result.ok
            events = [first]

            async def rest() -> None:
                async for ev in stream:
                    events.append(ev)
                    if ev.execution_id == result.execution_id and \
                            event_kind(ev) == "execution_finished":
                        return
            await asyncio.wait_for(rest(), 120)
            stream.cancel()
            assert stream.reconnects >= 1, "the server never cut the stalled follower off"
            assert {e.code for e in stream.errors} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
            assert_consecutive(events)
            assert stdout_text([e for e in events if e.execution_id == result.execution_id]) \
                == EXPECTED_600K
