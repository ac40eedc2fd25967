"""Every method of the synchronous client against a real server."""
from __future__ import annotations

import base64
import json
import re
import threading
from pathlib import Path

import nbformat
import pytest

import cellgate
from cellgate import (CellState, CellType, Client, ExecutionStatus, KernelState, SkipReason,
                      event_kind)
from helpers import Deadline, read_until


def test_server_info_and_kernel_specs(client: Client) -> None:
    info = client.server_info()
    assert info.version
    assert not info.auth_required
    assert info.caps.max_kernels == 16
    specs = client.kernel_specs()
    python3 = [s for s in specs if s.name == "python3"]
    assert python3 and python3[0].language == "python"
    assert python3[0].interrupt_mode in ("SIGNAL", "MESSAGE")


def test_start_kernel_options_list_and_handles(client: Client) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("a = 1", id="first")])
    with client.start_kernel("python3", env={"CG_TEST_VAR": "from-env"},
                             limits={"max_open_files": 256}, labels={"t": "start-options"},
                             notebook_ipynb=nbformat.writes(nb),
                             idle_timeout_seconds=0) as k:
        assert isinstance(k, cellgate.Kernel) and len(k.id) == 32
        assert k.initial_info is not None and k.initial_info.state is KernelState.IDLE
        info = k.info()
        assert info.kernel_id == k.id == k.kernel_id
        assert info.state == "IDLE" and info.language == "python"
        assert info.labels == {"t": "start-options"}
        assert info.limits.max_open_files == 256
        assert info.cell_count == 1 and k.notebook().cells[0].cell_id == "first"
        assert k.execute("import os; print(os.environ['CG_TEST_VAR'])").text == "from-env\n"

        listed = client.list_kernels(labels={"t": "start-options"})
        assert [i.kernel_id for i in listed] == [k.id]
        assert k.id in {i.kernel_id for i in client.list_kernels()}
        assert client.list_kernels(labels={"t": "no-such-value"}) == []
        assert client.kernel(k.id).id == k.id
        assert client.get_kernel(k.id).kernel_id == k.id
    # the context manager shut it down
    with pytest.raises(cellgate.NotFound):
        client.get_kernel(k.id)


def test_cells_add_edit_move_delete_get(kernel: cellgate.Kernel) -> None:
    kernel.import_ipynb(nbformat.writes(nbformat.v4.new_notebook()), replace=True)
    a = kernel.add_cell("x = 1", cell_id="cell-a")
    assert (a.cell_id, a.index, a.cell_type, a.state) == ("cell-a", 0, CellType.CODE, CellState.NEW)
    b = kernel.add_cell("# Title", cell_type="markdown")
    assert b.cell_type == "markdown" and len(b.cell_id) == 8 and b.index == 1
    c = kernel.add_cell("y = 2", index=0, metadata={"tags": ["t"]})
    assert c.index == 0
    assert json.loads(kernel.cell(c.cell_id).metadata) == {"tags": ["t"]}
    assert [x.cell_id for x in kernel.notebook()] == [c.cell_id, "cell-a", b.cell_id]

    moved = kernel.move_cell(c.cell_id, 2)
    assert moved.index == 2
    nb = kernel.notebook()
    assert [x.cell_id for x in nb] == ["cell-a", b.cell_id, c.cell_id]
    assert [x.index for x in nb.cells] == [0, 1, 2]
    assert nb.cell("cell-a").source == "x = 1" and nb.last_seq >= 1

    assert kernel.run_cell("cell-a").ok
    assert kernel.cell("cell-a").state is CellState.OK
    edited = kernel.edit_cell("cell-a", "x = 10")
    assert edited.source == "x = 10" and edited.state is CellState.STALE
    raw = kernel.edit_cell(b.cell_id, "raw text", cell_type="raw")
    assert raw.cell_type is CellType.RAW

    kernel.delete_cell(b.cell_id)
    assert [x.cell_id for x in kernel.notebook()] == ["cell-a", c.cell_id]
    with pytest.raises(cellgate.NotFound):
        kernel.cell(b.cell_id)


def test_run_cell_results(kernel: cellgate.Kernel) -> None:
    cell = kernel.add_cell("print('hi'); 6 * 7")
    r = kernel.run_cell(cell.cell_id, timeout=60)
    assert r.ok and r.status is ExecutionStatus.OK and r.status == "OK"
    assert r.text == "hi\n42\n"
    assert r.cell_id == cell.cell_id and r.execution_count > 0 and len(r.execution_id) == 16
    assert r.error is None and r.started_at is not None and not r.truncated
    kinds = [o.WhichOneof("output") for o in r.outputs]
    assert kinds == ["stream", "execute_result"]
    stored = kernel.cell(cell.cell_id)
    assert stored.state is CellState.OK and stored.execution_count == r.execution_count
    assert stored.last_run is not None and stored.last_run.execution_id == r.execution_id

    bad = kernel.add_cell("1 / 0")
    r = kernel.run_cell(bad.cell_id)
    assert not r.ok and r.status is ExecutionStatus.ERROR
    assert r.error is not None and r.error.ename == "ZeroDivisionError"
    assert str(r.error) == "ZeroDivisionError: division by zero"
    assert r.text.startswith("ZeroDivisionError: division by zero\n")
    assert "\x1b[" not in r.text and all("\x1b[" not in line for line in r.error.traceback)
    assert kernel.cell(bad.cell_id).state is CellState.ERROR


def test_timeouts(kernel: cellgate.Kernel) -> None:
    cell = kernel.add_cell("import time\ntime.sleep(30)")
    r = kernel.run_cell(cell.cell_id, timeout=0.5)
    assert r.status is ExecutionStatus.TIMEOUT and not r.ok
    # the detail gives the time at the interrupt (>= the timeout; later on a loaded machine)
    m = re.fullmatch(r"interrupted after (\d+) ms", r.status_detail)
    assert m and int(m.group(1)) >= 500, r.status_detail
    assert r.text.endswith(f"[timed out: {r.status_detail}]")
    r = kernel.execute("import time; time.sleep(30)", timeout=0.3)
    assert r.status == "TIMEOUT"
    r = kernel.execute("import time; time.sleep(1.5); print('late')", timeout=0.3,
                       on_timeout="keep_running")
    assert r.status == "TIMEOUT" and "still running" in r.status_detail
    # The queue waits for it: the next execution sees its effect.
    assert kernel.execute("print('after')").text == "after\n"
    with pytest.raises(cellgate.InvalidArgument, match="on_timeout"):
        kernel.execute("1", on_timeout="explode")


def test_execute(kernel: cellgate.Kernel) -> None:
    r = kernel.execute("z = 5\nprint('z is', z)\nz * 2")
    assert r.ok and r.text == "z is 5\n10\n" and r.cell_id == ""
    assert kernel.execute("z").text == "5\n"
    with pytest.raises(cellgate.InvalidArgument, match="code"):
        kernel.execute("   ")


def test_run_all(client: Client) -> None:
    cells = ["a = 1", "", "b = a + 1\nprint(b)", "raise ValueError('boom')", "c = 3"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in cells])
    with client.start_kernel(notebook_ipynb=nbformat.writes(nb)) as k:
        ids = [c.cell_id for c in k.notebook()]
        run = k.run_all(timeout=60)
        assert not run.ok
        assert [r.cell_id for r in run.results] == [ids[0], ids[2], ids[3]]
        assert run.failed is not None and run.failed.cell_id == ids[3]
        assert run.failed.error is not None and run.failed.error.evalue == "boom"
        assert {(s.cell_id, s.reason) for s in run.skipped} == {
            (ids[1], SkipReason.EMPTY_SOURCE), (ids[4], SkipReason.PREVIOUS_FAILED)}
        assert run.text.startswith("2\nValueError: boom")

        run = k.run_all(stop_on_error=False)
        assert [r.cell_id for r in run.results] == [ids[0], ids[2], ids[3], ids[4]]
        assert [r.status for r in run.results] == ["OK", "OK", "ERROR", "OK"]
        assert k.execute("print(c)").text == "3\n"

        k.edit_cell(ids[3], "pass")
        run = k.run_all()
        assert run.ok and run.failed is None and len(run.results) == 4


def test_export_and_import(kernel: cellgate.Kernel, tmp_path: Path) -> None:
    kernel.import_ipynb({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []},
                        replace=True)
    kernel.add_cell("print('exported')", cell_id="exp")
    kernel.add_cell("*text*", cell_type="markdown", cell_id="md")
    kernel.run_cell("exp")
    data = kernel.export_ipynb()
    assert isinstance(data, bytes)
    nb = nbformat.reads(data.decode(), as_version=4)
    nbformat.validate(nb)
    assert [c.id for c in nb.cells] == ["exp", "md"]
    assert nb.cells[0].outputs[0].text == "exported\n"

    path = tmp_path / "nb.ipynb"
    path.write_bytes(data)
    appended = kernel.import_ipynb(path)          # same ids: appended ones get fresh ids
    assert len(appended) == 4
    assert appended.cells[2].cell_id not in ("exp", "md") and appended.cells[2].source == "print('exported')"
    assert appended.cells[2].state is CellState.STALE
    replaced = kernel.import_ipynb(data, replace=True)
    assert [c.cell_id for c in replaced] == ["exp", "md"]
    with pytest.raises(cellgate.InvalidArgument, match="ipynb"):
        kernel.import_ipynb(b"not json")


def test_a_notebook_without_outputs(kernel: cellgate.Kernel) -> None:
    # The import's reply and GetNotebook can leave the outputs out; the outputs are imported,
    # stored and exported all the same.
    png = base64.b64encode(b"\x89PNG not really").decode()
    outputs = [nbformat.v4.new_output("stream", name="stdout", text="one\n"),
               nbformat.v4.new_output("display_data", data={"image/png": png})]
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("print('one')", id="with-outputs", execution_count=1,
                                  outputs=outputs),
        nbformat.v4.new_markdown_cell("# title", id="md")])
    reply = kernel.import_ipynb(nbformat.writes(nb), replace=True, outputs=False)
    assert [(c.cell_id, c.state, c.execution_count) for c in reply] == [
        ("with-outputs", CellState.STALE, 1), ("md", CellState.NEW, 0)]
    assert [list(c.outputs) for c in reply] == [[], []]

    full = kernel.notebook()
    assert [o.WhichOneof("output") for o in full.cells[0].outputs] == ["stream", "display_data"]
    assert full.cells[0].outputs[0].stream.text == "one\n"
    assert full.cells[0].outputs[1].display_data.data["image/png"] == png
    lean = kernel.notebook(outputs=False)
    assert [c.cell_id for c in lean] == ["with-outputs", "md"] and lean.last_seq == full.last_seq
    assert all(not c.outputs for c in lean)
    assert kernel.cell("with-outputs").outputs == full.cells[0].outputs
    exported = nbformat.reads(kernel.export_ipynb().decode(), as_version=4)
    assert exported.cells[0].outputs[1].data["image/png"] == png

    # The default reply carries them.
    assert len(kernel.import_ipynb(nbformat.writes(nb), replace=True).cells[0].outputs) == 2


def test_large_result_over_4_mib(kernel: cellgate.Kernel) -> None:
    # A 5 MiB stdout is stored whole (cap 8 MiB): the reply is over gRPC's default 4 MiB.
    r = kernel.execute("import sys\nsys.stdout.write('y' * (5 << 20))\nNone")
    assert r.ok
    assert sum(len(o.stream.text) for o in r.outputs) == 5 << 20
    assert r.truncated or len(r.text) <= 256 * 1024 + 1024


def test_interrupt(kernel: cellgate.Kernel) -> None:
    start = kernel.info().last_seq
    box: dict = {}
    worker = threading.Thread(target=lambda: box.setdefault("r", kernel.execute(
        "import time\nprint('sleeping', flush=True)\ntime.sleep(60)")))
    worker.start()
    stream = kernel.stream_outputs(after_seq=start)
    try:
        read_until(stream, lambda e: event_kind(e) == "output" and "sleeping" in e.output.stream.text)
    finally:
        stream.close()
    info = kernel.interrupt()
    assert info.kernel_id == kernel.id
    worker.join(60)
    assert not worker.is_alive()
    r = box["r"]
    assert r.status is ExecutionStatus.INTERRUPTED
    assert r.text.splitlines()[-1] == f"[interrupted: {r.status_detail}]"
    assert kernel.execute("print('alive')").text == "alive\n"


def test_restart_and_dead_kernel(client: Client) -> None:
    with client.start_kernel() as k:
        cell = k.add_cell("v = 41")
        assert k.run_cell(cell.cell_id).ok
        traffic = k.info().iopub_traffic
        assert traffic.messages > 0 and traffic.bytes > 0 and traffic.rejected_messages == 0
        info = k.restart()
        assert info.state is KernelState.IDLE and info.restart_count == 1
        # The counters are the new process's.
        assert info.iopub_traffic.messages < traffic.messages + 100
        assert k.cell(cell.cell_id).state is CellState.STALE
        r = k.execute("v")
        assert r.status is ExecutionStatus.ERROR and r.error is not None and r.error.ename == "NameError"

        died = k.execute("import os; os._exit(3)")
        assert died.status is ExecutionStatus.KERNEL_DIED and "exited with code 3" in died.status_detail
        info = k.info()
        assert info.state is KernelState.DEAD and "exited with code 3" in info.last_death_reason
        with pytest.raises(cellgate.FailedPrecondition, match="dead"):
            k.execute("1")
        with pytest.raises(cellgate.FailedPrecondition):
            k.run_cell(cell.cell_id)
        with pytest.raises(cellgate.FailedPrecondition):
            k.interrupt()
        assert k.restart().state is KernelState.IDLE
        assert k.execute("print('back')").text == "back\n"


def test_shutdown(client: Client) -> None:
    k = client.start_kernel()
    k.shutdown()
    with pytest.raises(cellgate.NotFound):
        k.info()
    with pytest.raises(cellgate.NotFound):
        k.shutdown()
    with k:  # exiting a context on a kernel already gone is fine
        pass


def test_stream_replay_and_filters(kernel: cellgate.Kernel) -> None:
    start = kernel.info().last_seq
    c1 = kernel.add_cell("print('one')")
    r1 = kernel.run_cell(c1.cell_id)
    r2 = kernel.execute("print('two')")
    events = list(kernel.stream_outputs(after_seq=start, follow=False))
    assert [e.seq for e in events] == list(range(start + 1, start + 1 + len(events)))
    assert events[-1].seq == kernel.info().last_seq
    by_cell = list(kernel.stream_outputs(after_seq=start, follow=False, cell_id=c1.cell_id))
    assert {e.cell_id for e in by_cell if event_kind(e) != "kernel_status"} == {c1.cell_id}
    by_exec = list(kernel.stream_outputs(after_seq=start, follow=False,
                                         execution_id=r2.execution_id))
    outs = [e.output.stream.text for e in by_exec if event_kind(e) == "output"]
    assert outs == ["two\n"]
    assert {e.execution_id for e in by_exec if event_kind(e) != "kernel_status"} == {r2.execution_id}
    assert r1.execution_id != r2.execution_id
    s = kernel.stream_outputs(after_seq=start, follow=False)
    assert next(s).seq == start + 1 and s.last_seq == start + 1 and s.reconnects == 0


def test_stream_close_from_another_thread(kernel: cellgate.Kernel) -> None:
    stream = kernel.stream_outputs(after_seq=kernel.info().last_seq, follow=True)
    got: list = []
    t = threading.Thread(target=lambda: got.extend(stream))
    t.start()
    stream.close()
    t.join(30)
    assert not t.is_alive() and got == []


def test_stream_ends_when_kernel_shuts_down(client: Client) -> None:
    k = client.start_kernel()
    stream = k.stream_outputs(follow=True)
    first = next(stream)
    assert first.seq == 1 and event_kind(first) == "kernel_status"
    k.shutdown()
    with Deadline(stream, 60) as d:
        rest = list(stream)
    assert not d.expired
    assert rest and rest[-1].kernel_status.state == cellgate.types.kernel_pb2.KERNEL_STATE_SHUTTING_DOWN
