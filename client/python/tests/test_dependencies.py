"""The dependency graph end to end: a real server, its analyzer process, real ipykernels.

What each cell defines and reads, STALE marking of exactly the dependents of a change, RunCell
cascades, RunStale, the reasons on events, and execution going on when the analyzer is down.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator

import pytest

import cellgate
from cellgate import AnalysisStatus, CellState, Client, ExecutionStatus, event_kind
from cellgate.v1 import execution_pb2
from conftest import Server


@pytest.fixture()
def kernel(client: Client) -> Iterator[cellgate.Kernel]:
    with client.start_kernel(labels={"suite": "dependencies"}) as k:
        yield k


def add_cells(kernel: cellgate.Kernel, cells: Dict[str, str]) -> None:
    for cell_id, source in cells.items():
        kernel.add_cell(source, cell_id=cell_id)


def states(kernel: cellgate.Kernel) -> Dict[str, str]:
    return {c.cell_id: str(c.state) for c in kernel.notebook()}


def last_execution_ids(kernel: cellgate.Kernel) -> Dict[str, str]:
    return {c.cell_id: c.last_run.execution_id if c.last_run else "" for c in kernel.notebook()}


# An agent's analysis notebook: load -> total -> report, and a cell that has nothing to do
# with the data.
PIPELINE = {
    "load": "data = [1, 2, 3]",
    "greet": "greeting = 'hello'",
    "total": "total = sum(data)",
    "report": "print(f'total={total}')",
}


def test_cells_say_what_they_define_read_and_depend_on(kernel: cellgate.Kernel) -> None:
    load = kernel.add_cell("import math\ndata = [1, 2, 3]", cell_id="load")
    assert load.analysis is AnalysisStatus.ANALYZED  # the reply waits for the analysis
    assert load.defines == ["data", "math"]
    total = kernel.add_cell("total = sum(data)\n%time x = math.pi", cell_id="total")
    assert total.uses == ["data", "math"] and total.defines == ["total", "x"]
    assert total.depends_on == ["load"]
    star = kernel.add_cell("from os.path import *", cell_id="star")
    assert star.analysis is AnalysisStatus.OPAQUE and "star import" in star.analysis_detail
    broken = kernel.add_cell("def f(:\n", cell_id="broken")
    assert broken.analysis is AnalysisStatus.SYNTAX_ERROR and broken.analysis_detail
    assert broken.depends_on == ["star"]
    kernel.add_cell("# notes", cell_type="markdown", cell_id="notes")

    nb = kernel.notebook()
    assert nb.cell("notes").analysis is AnalysisStatus.NOT_APPLICABLE
    assert nb.graph.available and nb.graph.note == "" and nb.graph.unanalyzed_cell_ids == []
    edges = {(d.cell_id, d.depends_on): d.names for d in nb.graph.dependencies}
    assert edges == {("total", "load"): ["data", "math"], ("broken", "star"): []}


def test_an_import_of_analysed_sources_replies_with_their_analyses(
        kernel: cellgate.Kernel) -> None:
    add_cells(kernel, PIPELINE)  # each AddCell's reply waited for its analysis
    data = kernel.export_ipynb()
    imported = kernel.import_ipynb(data, replace=True)
    # The analyzer remembers these sources: the import's own reply has the analyses and graph.
    assert [c.analysis for c in imported] == [AnalysisStatus.ANALYZED] * 4
    assert imported.cell("total").uses == ["data"] and imported.cell("total").defines == ["total"]
    assert imported.cell("report").depends_on == ["total"]
    assert imported.graph.available and imported.graph.unanalyzed_cell_ids == []


def test_an_edit_with_cascade_dependents_reruns_only_what_depends_on_it(
        kernel: cellgate.Kernel) -> None:
    add_cells(kernel, PIPELINE)
    assert kernel.run_all().ok
    before = last_execution_ids(kernel)

    kernel.edit_cell("load", "data = [10, 20, 30]")
    nb = kernel.notebook()
    assert states(kernel) == {"load": "STALE", "greet": "OK", "total": "STALE", "report": "STALE"}
    assert nb.cell("load").stale_reason == "source edited"
    assert nb.cell("total").stale_reason == "upstream cell load edited"
    assert nb.cell("report").stale_reason == "upstream cell load edited"
    assert nb.cell("greet").stale_reason == ""

    after_seq = nb.last_seq
    result = kernel.run_cell("load", cascade="dependents")
    assert result.ok and result.cell_id == "load"
    assert result.cascade is not None and result.cascade.note == ""
    assert [r.cell_id for r in result.cascade.results] == ["total", "report"]
    assert result.cascade.results[1].text == "total=60\n"
    assert result.cascade.skipped == []
    assert set(states(kernel).values()) == {"OK"}
    after = last_execution_ids(kernel)
    assert after["greet"] == before["greet"], "the independent cell was not run again"
    assert all(after[c] != before[c] for c in ("load", "total", "report"))

    # Followers see why each cell ran.
    queued = [e for e in kernel.stream_outputs(after_seq=after_seq, follow=False)
              if event_kind(e) == "execution_queued"]
    why = [(e.cell_id, e.execution_queued.trigger, e.execution_queued.cause_cell_id,
            e.execution_queued.reason) for e in queued]
    assert why == [
        ("load", execution_pb2.RUN_TRIGGER_REQUESTED, "", "requested"),
        ("total", execution_pb2.RUN_TRIGGER_CASCADE_DEPENDENT, "load", "cascade from load"),
        ("report", execution_pb2.RUN_TRIGGER_CASCADE_DEPENDENT, "load", "cascade from load"),
    ]
    assert cellgate.describe_event(queued[1]).endswith("(cascade from load)")


def test_running_a_cell_again_makes_its_dependents_stale(kernel: cellgate.Kernel) -> None:
    add_cells(kernel, PIPELINE)
    assert kernel.run_all().ok
    assert kernel.run_cell("load").ok  # cascade NONE: only the cell
    nb = kernel.notebook()
    assert states(kernel) == {"load": "OK", "greet": "OK", "total": "STALE", "report": "STALE"}
    assert nb.cell("total").stale_reason == "upstream cell load ran"


def test_deleting_a_defining_cell_marks_its_readers_stale(kernel: cellgate.Kernel) -> None:
    add_cells(kernel, PIPELINE)
    assert kernel.run_all().ok
    kernel.delete_cell("total")
    nb = kernel.notebook()
    assert states(kernel) == {"load": "OK", "greet": "OK", "report": "STALE"}
    assert nb.cell("report").stale_reason == "upstream cell total deleted"
    # Moving `greet` around changes nothing: no one reads it.
    kernel.move_cell("greet", 0)
    assert states(kernel)["load"] == "OK"


def test_cascade_upstream_on_a_fresh_notebook_runs_exactly_the_needed_prefix(
        kernel: cellgate.Kernel) -> None:
    add_cells(kernel, {
        "x": "x = 2",
        "unrelated": "import time\nstarted = time.time()",
        "y": "y = x * 3",
        "later": "z = 1",
        "show": "print(y)",
        "after": "print(y + 1)",
    })
    result = kernel.run_cell("show", cascade="upstream")
    assert result.ok and result.text == "6\n"
    assert result.cascade is not None
    assert [r.cell_id for r in result.cascade.results] == ["x", "y"]
    assert all(r.ok for r in result.cascade.results)
    assert states(kernel) == {"x": "OK", "unrelated": "NEW", "y": "OK", "later": "NEW",
                              "show": "OK", "after": "NEW"}
    # Everything upstream is OK now: nothing else runs.
    again = kernel.run_cell("show", cascade="upstream")
    assert again.ok and again.cascade is not None and again.cascade.results == []


def test_a_cascade_stops_at_the_first_failure(kernel: cellgate.Kernel) -> None:
    add_cells(kernel, {"a": "a = 1 / 0", "b": "b = a + 1"})
    result = kernel.run_cell("b", cascade="upstream")
    assert result.cascade is not None
    assert [r.status for r in result.cascade.results] == [ExecutionStatus.ERROR]
    assert result.status is ExecutionStatus.CANCELLED
    assert "a previous cell failed (a: error)" in result.status_detail
    assert kernel.cell("b").state is CellState.NEW  # never ran: as it was


def test_run_stale_runs_stale_cells_and_what_depends_on_them(kernel: cellgate.Kernel) -> None:
    add_cells(kernel, PIPELINE)
    assert kernel.run_all().ok
    kernel.edit_cell("load", "data = [5]")
    before = last_execution_ids(kernel)
    run = kernel.run_stale()
    assert run.ok and run.note == ""
    assert [r.cell_id for r in run.results] == ["load", "total", "report"]
    assert run.results[-1].text == "total=5\n"
    assert last_execution_ids(kernel)["greet"] == before["greet"]
    assert kernel.run_stale().results == [], "nothing stale is left"


def test_cascade_requests_are_checked(kernel: cellgate.Kernel) -> None:
    kernel.add_cell("x = 1", cell_id="c")
    with pytest.raises(cellgate.InvalidArgument, match="on_timeout"):
        kernel.run_cell("c", cascade="dependents", on_timeout="keep_running")
    with pytest.raises(cellgate.InvalidArgument, match="cascade"):
        kernel.run_cell("c", cascade="sideways")


@pytest.fixture()
def script_dir() -> Iterator[Path]:
    """A directory an analyzer running with its own uid can read."""
    path = Path(tempfile.mkdtemp(prefix="cg-analyzer-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("body, detail", [
    ("import sys\nsys.exit(3)\n", "the analyzer"),  # crashes at once
    ("import time\ntime.sleep(600)\n", "did not answer within"),  # hangs
])
def test_without_an_analyzer_execution_proceeds_and_says_so(
        script_dir: Path, body: str, detail: str) -> None:
    script = script_dir / "analyzer.py"
    script.write_text(body)
    script.chmod(0o644)
    server = Server(f"--analyzer-script={script}")
    try:
        with server.client() as client, client.start_kernel() as kernel:
            started = time.monotonic()
            first = kernel.add_cell("a = 1", cell_id="a")
            assert time.monotonic() - started < 10, "a hung analyzer is given up on"
            assert first.analysis is AnalysisStatus.UNAVAILABLE
            assert detail in first.analysis_detail
            kernel.add_cell("b = 2", cell_id="b")
            kernel.add_cell("print(a)", cell_id="c")
            assert kernel.run_cell("c").status is ExecutionStatus.ERROR  # NameError: ran anyway
            assert kernel.run_cell("a").ok
            # Without analyses every cell below counts as depending on it.
            result = kernel.run_cell("a", cascade="dependents")
            assert result.ok and result.cascade is not None
            assert [r.cell_id for r in result.cascade.results] == ["b", "c"]
            assert result.cascade.results[1].text == "1\n"
            assert "dependency analysis unavailable for cells" in result.cascade.note
            graph = kernel.notebook().graph
            assert graph.available and graph.unanalyzed_cell_ids == ["a", "b", "c"]
            assert "unavailable" in graph.note
    finally:
        assert server.stop() == 0, server.log_tail()


def test_dependency_analysis_can_be_turned_off() -> None:
    server = Server("--dependency-analysis=false")
    try:
        with server.client() as client, client.start_kernel() as kernel:
            cell = kernel.add_cell("a = 1", cell_id="a")
            assert cell.analysis is AnalysisStatus.NOT_APPLICABLE
            kernel.add_cell("b = 2", cell_id="b")
            assert kernel.run_all().ok
            kernel.edit_cell("a", "a = 3")
            assert states(kernel) == {"a": "STALE", "b": "OK"}  # in order only: no marking
            graph = kernel.notebook().graph
            assert not graph.available and "--dependency-analysis=false" in graph.note
            result = kernel.run_cell("a", cascade="dependents")
            assert [r.cell_id for r in result.cascade.results] == ["b"]
    finally:
        assert server.stop() == 0, server.log_tail()
