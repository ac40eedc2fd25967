"""The asyncio client (cellgate.aio) against a real server."""
from __future__ import annotations

import asyncio
from typing import List

import grpc
import nbformat
import pytest

import cellgate
import cellgate.aio as aio
from cellgate import CellState, ExecutionStatus, KernelState, event_kind
from conftest import Server
from helpers import TcpProxy, assert_consecutive, stdout_text

pytestmark = pytest.mark.asyncio


async def _until(stream: aio.OutputStream, pred, seconds: float = 60) -> List[cellgate.OutputEvent]:
    seen: List[cellgate.OutputEvent] = []

    async def read() -> None:
        async for ev in stream:
            seen.append(ev)
            if pred(ev):
                return
        raise AssertionError(f"stream ended early: {[(e.seq, event_kind(e)) for e in seen][-5:]}")

    await asyncio.wait_for(read(), seconds)
    return seen


async def test_async_kernel_workflow(server: Server) -> None:
    async with aio.Client(server.target) as client:
        info = await client.server_info()
        assert info.version and not info.auth_required
        assert "python3" in [s.name for s in await client.kernel_specs()]
        async with await client.start_kernel(labels={"t": "aio"}) as k:
            assert (await k.info()).state is KernelState.IDLE
            assert [i.kernel_id for i in await client.list_kernels({"t": "aio"})] == [k.id]
            assert (await client.kernel(k.id)).id == k.id

            await k.add_cell("x = 20", cell_id="a")
            b = await k.add_cell("print(x + 1)", index=0)
            assert b.index == 0
            assert (await k.move_cell("a", 0)).index == 0
            assert (await k.run_cell("a")).ok
            r = await k.run_cell(b.cell_id, timeout=30)
            assert r.ok and r.text == "21\n"
            assert (await k.edit_cell(b.cell_id, "print(x + 2)")).state is CellState.STALE
            run = await k.run_all()
            assert run.ok and run.results[-1].text == "22\n"
            r = await k.execute("1/0")
            assert r.status is ExecutionStatus.ERROR and r.error and r.error.ename == "ZeroDivisionError"
            assert (await k.cell("a")).source == "x = 20"
            nb = await k.notebook()
            assert [c.cell_id for c in nb] == ["a", b.cell_id]

            data = await k.export_ipynb()
            assert [c.id for c in nbformat.reads(data.decode(), as_version=4).cells] == ["a", b.cell_id]
            await k.delete_cell(b.cell_id)
            assert len(await k.notebook()) == 1
            assert len(await k.import_ipynb(data, replace=True)) == 2

            events = [e async for e in k.stream_outputs(follow=False)]
            assert events[0].seq == 1
            assert_consecutive(events)
            only = [e async for e in k.stream_outputs(follow=False, execution_id=r.execution_id)]
            assert {e.execution_id for e in only if event_kind(e) != "kernel_status"} == {r.execution_id}

            # interrupt a sleeping execution once it has printed
            start = (await k.info()).last_seq
            task = asyncio.ensure_future(k.execute("import time\nprint('zz', flush=True)\ntime.sleep(60)"))
            stream = k.stream_outputs(after_seq=start)
            await _until(stream, lambda e: event_kind(e) == "output")
            stream.cancel()
            assert (await k.interrupt()).kernel_id == k.id
            r = await asyncio.wait_for(task, 60)
            assert r.status is ExecutionStatus.INTERRUPTED

            restarted = await k.restart()
            assert restarted.restart_count == 1 and restarted.state is KernelState.IDLE
            assert (await k.cell("a")).state is CellState.STALE

            with pytest.raises(cellgate.NotFound):
                await k.cell("nope")
            with pytest.raises(cellgate.AlreadyExists):
                await k.add_cell("y", cell_id="a")
            with pytest.raises(cellgate.InvalidArgument) as e:
                await k.add_cell("y", cell_id="no spaces allowed")
            assert e.value.message.startswith("cell_id")
            with pytest.raises(cellgate.StreamGap):
                await k.stream_outputs(after_seq=10 ** 9).__anext__()

            died = await k.execute("import os; os._exit(1)")
            assert died.status is ExecutionStatus.KERNEL_DIED
            with pytest.raises(cellgate.FailedPrecondition):
                await k.execute("1")
        with pytest.raises(cellgate.NotFound):
            await client.get_kernel(k.id)
        with pytest.raises(cellgate.NotFound):
            await client.kernel("0" * 32)


async def test_async_cascade_and_run_stale(server: Server) -> None:
    async with aio.Client(server.target) as client:
        async with await client.start_kernel(labels={"t": "aio-deps"}) as k:
            await k.add_cell("a = 2", cell_id="a")
            await k.add_cell("b = a * 5", cell_id="b")
            await k.add_cell("print(b)", cell_id="c")
            result = await k.run_cell("c", cascade="upstream")
            assert result.text == "10\n" and result.cascade is not None
            assert [r.cell_id for r in result.cascade.results] == ["a", "b"]
            await k.edit_cell("a", "a = 3")
            stale = await k.run_stale()
            assert [r.cell_id for r in stale.results] == ["a", "b", "c"]
            assert stale.results[-1].text == "15\n"


async def test_async_files_and_transfer(server: Server) -> None:
    async with aio.Client(server.target) as client:
        async with await client.start_kernel() as a, await client.start_kernel() as b:
            info = await a.upload_file("in/x.txt", b"hello")
            assert info.size == 5
            assert [f.path for f in await a.list_files("in")] == ["in/x.txt"]
            assert await a.download_file("in/x.txt") == b"hello"
            await a.execute("text = open('in/x.txt').read() * 2")
            moved = await client.transfer_variable(a, "text", b, as_name="copy")
            assert moved.type == "str"
            assert (await b.execute("print(copy)")).text == "hellohello\n"
            await a.delete_file("in", recursive=True)
            assert "in" not in [f.path for f in await a.list_files()]


async def test_async_unauthenticated(auth_server: Server) -> None:
    async with aio.Client(auth_server.target, "nope") as c:
        with pytest.raises(cellgate.Unauthenticated):
            await c.server_info()
    async with aio.Client(auth_server.target, auth_server.token) as c:
        assert (await c.server_info()).auth_required


async def test_async_stream_resumes_after_connection_cut(server: Server) -> None:
    proxy = TcpProxy(server.target)
    try:
        async with aio.Client(server.target) as direct, aio.Client(proxy.target) as proxied:
            async with await direct.start_kernel() as k:
                start = (await k.info()).last_seq
                follower = await proxied.kernel(k.id, check=False)
                stream = follower.stream_outputs(after_seq=start)
                task = asyncio.ensure_future(k.execute("for i in range(200):\n    print(i, flush=True)"))
                before = await _until(stream, lambda e: event_kind(e) == "output")
                proxy.cut()
                after = await _until(stream, lambda e: event_kind(e) == "execution_finished", 120)
                stream.cancel()
                assert (await task).ok
                events = before + after
                assert stream.reconnects >= 1
                assert stream.errors[0].code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL)
                assert_consecutive(events)
                assert stdout_text(events) == "".join(f"{i}\n" for i in range(200))
                replay = [e async for e in k.stream_outputs(after_seq=start, follow=False)
                          if e.seq <= events[-1].seq]
                assert [e.SerializeToString() for e in replay] == [e.SerializeToString() for e in events]
    finally:
        proxy.close()
