"""Notebook fidelity (issue #6): real-world-shaped .ipynb files round-trip through the server
unchanged, bad files are refused without side effects, and RunAll produces the outputs
Debian's nbclient produces for the same file.

Every notebook is built here (no downloads). Needs Debian's python3-nbformat and
python3-nbclient (the nbclient comparison is skipped without it); matplotlib is used when
installed (a real plot, Agg backend), otherwise a PNG is made by hand.
"""
from __future__ import annotations

import base64
import copy
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import nbformat
import pytest

import cellgate
from cellgate import CellState, Client, ExecutionStatus, SkipReason
from conftest import REPO

HAVE_NBCLIENT = importlib.util.find_spec("nbclient") is not None
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
# nbformat 4.5 cell id rule.
CELL_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
RUN_TIMEOUT_S = 120  # per cell, for both runners: generous on a loaded 2-core machine


# ---- building blocks of the corpus -------------------------------------------------------

def make_png(width: int, height: int, rgb: Tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid RGB PNG of one colour, made without any imaging library."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height))
            + chunk(b"IEND", b""))


def png_b64(width: int, height: int) -> str:
    # Jupyter writes image/png as one base64 string ending with a newline.
    return base64.b64encode(make_png(width, height)).decode() + "\n"


def png_size(b64: Any) -> Tuple[int, int]:
    raw = base64.b64decode(join(b64))
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", raw[16:24])


SVG_LINES = [
    '<?xml version="1.0" encoding="UTF-8"?>\n',
    '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="80" viewBox="0 0 120 80">\n',
    '  <rect x="10" y="10" width="100" height="60" fill="#4a90d9"/>\n',
    '  <text x="20" y="45" font-family="sans-serif">cellgate &amp; svg</text>\n',
    "</svg>",
]

TRACEBACK = [
    "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
    "\x1b[0;31mZeroDivisionError\x1b[0m                         Traceback (most recent call last)",
    "Cell \x1b[0;32mIn[4], line 2\x1b[0m\n\x1b[1;32m      1\x1b[0m total \x1b[38;5;241m=\x1b[39m "
    "\x1b[38;5;241m0\x1b[39m\n\x1b[0;32m----> 2\x1b[0m \x1b[38;5;241m1\x1b[39m "
    "\x1b[38;5;241m/\x1b[39m total\n",
    "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero",
]

WIDGET_STATE = {
    "application/vnd.jupyter.widget-state+json": {
        "state": {
            "5f1c0a0d3c1e4a7b9d2e8f6a4b3c2d1e": {
                "model_module": "@jupyter-widgets/controls",
                "model_module_version": "2.0.0",
                "model_name": "IntSliderModel",
                "state": {"description": "n", "layout": "IPY_MODEL_0a1b2c3d4e5f60718293a4b5c6d7e8f9",
                          "max": 10, "min": 0, "step": 1, "value": 3,
                          "style": "IPY_MODEL_99aa88bb77cc66dd55ee44ff33001122"},
            },
            "0a1b2c3d4e5f60718293a4b5c6d7e8f9": {
                "model_module": "@jupyter-widgets/base",
                "model_module_version": "2.0.0",
                "model_name": "LayoutModel",
                "state": {"width": "50%"},
            },
            "99aa88bb77cc66dd55ee44ff33001122": {
                "model_module": "@jupyter-widgets/controls",
                "model_module_version": "2.0.0",
                "model_name": "SliderStyleModel",
                "state": {"description_width": ""},
            },
        },
        "version_major": 2,
        "version_minor": 0,
    }
}

# Metadata no schema knows about, nested, with the JSON values that trip serializers up.
TOOL_METADATA = {
    "version": [1, 2, 3],
    "config": {
        "threshold": 0.125,
        "sum": 0.30000000000000004,
        "tiny": 1.5e-07,
        "huge": 1e300,
        "one_float": 1.0,
        "big_int": 9007199254740993,
        "negative": -42,
        "none": None,
        "flags": [True, False],
        "empty_object": {},
        "empty_list": [],
        "unicode": "naïve — ✓ 🚀 日本語",
        "escapes": "tab\tnewline\nquote\" backslash\\ line-sep\u2028 ctrl\u0001",
        "deep": {"a": {"b": {"c": {"d": [[[{"e": "end"}]]]}}}},
    },
}

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {
    "codemirror_mode": {"name": "ipython", "version": 3},
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "name": "python",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
    "version": "3.11.2",
}


def rich_cells(with_ids: bool, attachments: bool = True) -> List[Dict[str, Any]]:
    """Cells of every kind and every output type, in the shapes Jupyter writes."""
    cells: List[Dict[str, Any]] = []

    def add(cell_id: str, cell: Dict[str, Any]) -> None:
        if with_ids:
            cell = {"id": cell_id, **cell}
        cells.append(cell)

    intro: Dict[str, Any] = {
        "cell_type": "markdown",
        "metadata": {"tags": ["intro"]},
        "source": ["# Fidelity corpus\n", "\n", "Intro with an embedded picture:\n", "\n",
                   "![chart](attachment:chart.png)"],
    }
    if attachments:
        intro["attachments"] = {"chart.png": {"image/png": png_b64(4, 3)}}
    add("md-intro", intro)
    add("streams", {
        "cell_type": "code",
        "execution_count": 1,
        "metadata": {"collapsed": False, "scrolled": "auto", "tags": ["io"],
                     "jupyter": {"outputs_hidden": False, "source_hidden": False},
                     "execution": {"iopub.execute_input": "2024-05-01T10:00:00.000001Z",
                                   "iopub.status.busy": "2024-05-01T10:00:00.000000Z",
                                   "iopub.status.idle": "2024-05-01T10:00:00.100000Z",
                                   "shell.execute_reply": "2024-05-01T10:00:00.100000Z"}},
        "outputs": [
            {"name": "stdout", "output_type": "stream", "text": ["line one\n", "line two\n"]},
            {"name": "stderr", "output_type": "stream", "text": "a warning on stderr\n"},
            {"name": "stdout", "output_type": "stream", "text": "no trailing newline"},
        ],
        "source": ["import sys\n", "print('line one')\n", "print('line two')\n",
                   "print('a warning on stderr', file=sys.stderr)\n",
                   "sys.stdout.write('no trailing newline')"],
    })
    add("rich-result", {
        "cell_type": "code",
        "execution_count": 2,
        "metadata": {},
        "outputs": [{
            "data": {
                "application/json": {"rows": [1, {"a": None}, "x"], "ok": True},
                "text/html": ["<table>\n", "  <tr><td>1</td></tr>\n", "</table>"],
                "text/plain": ["{'rows': [1, {'a': None}, 'x'],\n", " 'ok': True}"],
            },
            "execution_count": 2,
            "metadata": {"application/json": {"expanded": False, "root": "root"}},
            "output_type": "execute_result",
        }],
        "source": "from IPython.display import JSON\nJSON({'rows': [1, {'a': None}, 'x'], 'ok': True})",
    })
    add("images", {
        "cell_type": "code",
        "execution_count": 3,
        "metadata": {"tags": ["figure"]},
        "outputs": [
            {"data": {"image/png": png_b64(8, 6),
                      "text/plain": ["<Figure size 640x480 with 1 Axes>"]},
             "metadata": {"image/png": {"width": 640, "height": 480}, "needs_background": "light"},
             "output_type": "display_data"},
            {"data": {"image/svg+xml": SVG_LINES,
                      "text/plain": ["<IPython.core.display.SVG object>"]},
             "metadata": {"image/svg+xml": {"isolated": True}},
             "output_type": "display_data"},
            {"data": {"application/vnd.jupyter.widget-view+json": {
                          "model_id": "5f1c0a0d3c1e4a7b9d2e8f6a4b3c2d1e",
                          "version_major": 2, "version_minor": 0},
                      "text/plain": ["IntSlider(value=3, description='n', max=10)"]},
             "metadata": {},
             "output_type": "display_data"},
        ],
        "source": ["import matplotlib.pyplot as plt\n", "plt.plot([1, 2, 3])\n", "plt.show()"],
    })
    add("error", {
        "cell_type": "code",
        "execution_count": 4,
        "metadata": {},
        "outputs": [
            {"name": "stdout", "output_type": "stream", "text": ["about to divide\n"]},
            {"ename": "ZeroDivisionError", "evalue": "division by zero",
             "output_type": "error", "traceback": TRACEBACK},
        ],
        "source": ["total = 0\n", "1 / total"],
    })
    add("raw-rst", {
        "cell_type": "raw",
        "metadata": {"format": "text/restructuredtext", "raw_mimetype": "text/restructuredtext"},
        "source": ["Section\n", "=======\n", "\n", ".. note:: raw reST for nbconvert"],
    })
    add("tool_meta", {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {"my_tool": TOOL_METADATA, "vscode": {"languageId": "python"},
                     "editable": True, "deletable": False, "name": "setup"},
        "outputs": [],
        "source": "def greet(name: str) -> str:\n    '''Multi-line, as a plain string.'''\n"
                  "    return f'hello {name}'\n\n\ngreet('world')\n",
    })
    add("updated-display", {
        # A display that an update_display rewrote: in a file it has no `transient`.
        "cell_type": "code",
        "execution_count": 6,
        "metadata": {},
        "outputs": [
            {"data": {"text/html": ["<progress value='100' max='100'></progress>"],
                      "text/plain": ["<IPython.core.display.HTML object>"]},
             "metadata": {},
             "output_type": "display_data"},
            {"data": {"text/markdown": "**done** in 3 steps",
                      "text/plain": "<IPython.core.display.Markdown object>"},
             "metadata": {},
             "output_type": "display_data"},
            {"data": {"text/plain": ["42"]},
             "execution_count": 6,
             "metadata": {},
             "output_type": "execute_result"},
        ],
        "source": ["h = display(HTML(\"<progress value='0' max='100'></progress>\"), display_id=True)\n",
                   "h.update(HTML(\"<progress value='100' max='100'></progress>\"))\n",
                   "display(Markdown('**done** in 3 steps'))\n",
                   "6 * 7"],
    })
    add("md-plain", {
        "cell_type": "markdown",
        "metadata": {"slideshow": {"slide_type": "slide"}, "unknown": {"nested": [1, {"k": "v"}]}},
        "source": "## Closing words\n\nA string source with *markdown*, `code` and a table:\n\n"
                  "| a | b |\n|---|---|\n| 1 | 2 |\n",
    })
    add("empty", {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {},
        "outputs": [],
        "source": [],
    })
    return cells


def notebook_metadata(**extra: Any) -> Dict[str, Any]:
    md: Dict[str, Any] = {
        "kernelspec": dict(KERNELSPEC),
        "language_info": copy.deepcopy(LANGUAGE_INFO),
        "my_extension": {"schema": 3, "settings": copy.deepcopy(TOOL_METADATA)},
        "toc": {"base_numbering": 1, "nav_menu": {}, "number_sections": True,
                "toc_position": {"height": "calc(100% - 180px)", "left": "10px"}},
    }
    md.update(extra)
    return md


def corpus() -> Dict[str, Dict[str, Any]]:
    v45 = {"cells": rich_cells(with_ids=True),
           "metadata": notebook_metadata(widgets=copy.deepcopy(WIDGET_STATE),
                                         title="Fidelity corpus",
                                         authors=[{"name": "Ada"}, {"name": "Grace"}]),
           "nbformat": 4, "nbformat_minor": 5}
    v44 = {"cells": rich_cells(with_ids=False),
           "metadata": notebook_metadata(widgets=copy.deepcopy(WIDGET_STATE)),
           "nbformat": 4, "nbformat_minor": 4}
    # 4.0 predates attachments (4.1).
    v40 = {"cells": rich_cells(with_ids=False, attachments=False),
           "metadata": notebook_metadata(),
           "nbformat": 4, "nbformat_minor": 0}
    ids = {"cells": [
        {"id": "a", "cell_type": "markdown", "metadata": {}, "source": "shortest id"},
        {"id": "x" * 64, "cell_type": "code", "execution_count": None, "metadata": {},
         "outputs": [], "source": "longest_id = True"},
        {"id": "Mixed-Case_and-dashes_09", "cell_type": "raw", "metadata": {"format": "text/html"},
         "source": ["<b>raw html</b>"]},
    ], "metadata": notebook_metadata(), "nbformat": 4, "nbformat_minor": 5}
    return {"v4.5-rich": v45, "v4.4-no-ids": v44, "v4.0": v40, "v4.5-odd-ids": ids}


CORPUS = corpus()


def dumps(nb: Dict[str, Any]) -> bytes:
    """As Jupyter writes a notebook: indent 1, sorted keys, non-ASCII kept, final newline."""
    return (json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


# ---- normalisation -----------------------------------------------------------------------

def join(value: Any) -> Any:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    return value


def is_json_mime(mime: str) -> bool:
    return mime == "application/json" or mime.endswith("+json")


def join_bundle(bundle: Dict[str, Any]) -> Dict[str, Any]:
    return {mime: (value if is_json_mime(mime) else join(value)) for mime, value in bundle.items()}


def normalise(nb: Dict[str, Any], *, drop_ids: bool = False, minor: Optional[int] = None
              ) -> str:
    """Multiline strings joined, optionally without cell ids, as sorted-key JSON text (so a
    failing comparison shows a readable diff)."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        cell["source"] = join(cell["source"])
        if drop_ids:
            cell.pop("id", None)
        for name, bundle in cell.get("attachments", {}).items():
            cell["attachments"][name] = join_bundle(bundle)
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = join(out["text"])
            if "data" in out:
                out["data"] = join_bundle(out["data"])
    if minor is not None:
        nb["nbformat_minor"] = minor
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False)


def validate_export(data: bytes) -> Dict[str, Any]:
    """The export parsed; it must be nbformat 4.5 valid, with valid unique ids."""
    nbformat.validate(nbformat.reads(data.decode(), as_version=4))
    nb = json.loads(data)
    assert (nb["nbformat"], nb["nbformat_minor"]) == (4, 5)
    ids = [c["id"] for c in nb["cells"]]
    assert all(CELL_ID.match(i) for i in ids), ids
    assert len(set(ids)) == len(ids), ids
    return nb


def assert_round_trip(original: Dict[str, Any], data: bytes) -> None:
    exported = validate_export(data)
    if original["nbformat_minor"] >= 5:
        assert [c["id"] for c in exported["cells"]] == [c["id"] for c in original["cells"]]
        assert normalise(exported) == normalise(original)
    else:
        # Older files get nbformat-style generated ids (8+ characters).
        assert all(len(c["id"]) >= 8 for c in exported["cells"]), exported["cells"]
        assert (normalise(exported, drop_ids=True, minor=original["nbformat_minor"])
                == normalise(original, drop_ids=True))


def expected_states(nb: Dict[str, Any]) -> List[CellState]:
    return [CellState.STALE if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))
            else CellState.NEW for c in nb["cells"]]


# ---- 1. round trips ----------------------------------------------------------------------

def test_corpus_is_valid_nbformat() -> None:
    """The inputs themselves are valid against their own nbformat minor version's schema, so
    any difference below is the server's."""
    for name, nb in CORPUS.items():
        node = nbformat.reads(dumps(nb).decode(), as_version=4)
        assert node.nbformat_minor == nb["nbformat_minor"], name
        nbformat.validate(node)


@pytest.mark.parametrize("name", list(CORPUS))
def test_import_replace_then_export_round_trips(kernel: cellgate.Kernel, name: str) -> None:
    original = CORPUS[name]
    data = dumps(original)
    imported = kernel.import_ipynb(data, replace=True)
    assert [c.source for c in imported] == [join(c["source"]) for c in original["cells"]]
    assert [c.cell_type for c in imported] == [c["cell_type"] for c in original["cells"]]
    assert [c.state for c in imported] == expected_states(original)
    assert json.loads(imported.metadata) == original["metadata"]
    exported = kernel.export_ipynb()
    assert_round_trip(original, exported)
    # Stable: the export imports and exports to the same bytes.
    kernel.import_ipynb(exported, replace=True)
    assert kernel.export_ipynb() == exported


@pytest.mark.parametrize("name", list(CORPUS))
def test_start_kernel_with_notebook_round_trips(client: Client, name: str) -> None:
    original = CORPUS[name]
    with client.start_kernel(notebook_ipynb=dumps(original), labels={"t": "fidelity-start"}) as k:
        nb = k.notebook()
        assert [c.source for c in nb] == [join(c["source"]) for c in original["cells"]]
        assert [c.state for c in nb] == expected_states(original)
        assert_round_trip(original, k.export_ipynb())


@pytest.mark.parametrize("name", ["v4.5-rich", "v4.4-no-ids"])
def test_import_append_round_trips(client: Client, name: str) -> None:
    """Appending into an empty notebook (metadata {}) gives the same file; appending a second
    time keeps the first copy and renames the clashing ids."""
    original = CORPUS[name]
    with client.start_kernel(labels={"t": "fidelity-append"}) as k:
        k.import_ipynb(dumps(original))
        first = k.export_ipynb()
        assert_round_trip(original, first)
        k.import_ipynb(dumps(original))
        both = validate_export(k.export_ipynb())
        n = len(original["cells"])
        assert len(both["cells"]) == 2 * n
        first_cells = json.loads(first)["cells"]
        assert both["cells"][:n] == first_cells
        twice = dict(original, cells=original["cells"] + original["cells"])
        assert (normalise(both, drop_ids=True, minor=original["nbformat_minor"])
                == normalise(twice, drop_ids=True))


def _edge(cells: List[Dict[str, Any]], minor: int = 5) -> Dict[str, Any]:
    return {"cells": cells, "metadata": notebook_metadata(), "nbformat": 4, "nbformat_minor": minor}


def _edge_code(**fields: Any) -> Dict[str, Any]:
    cell = {"id": "edge", "cell_type": "code", "execution_count": None, "metadata": {},
            "outputs": [], "source": "x = 1"}
    cell.update(fields)
    return cell


# Smaller nbformat-valid shapes seen in the wild: each must round-trip like the corpus.
EDGE_CASES = {
    "png-as-list-of-lines": _edge([_edge_code(execution_count=1, outputs=[
        {"output_type": "display_data", "metadata": {},
         "data": {"image/png": [png_b64(3, 2)[:20] + "\n", png_b64(3, 2)[20:]],
                  "text/plain": "<Figure>"}}])]),
    "json-mime-non-object-values": _edge([_edge_code(execution_count=1, outputs=[
        {"output_type": "display_data", "metadata": {},
         "data": {"application/json": "just a string", "application/vnd.custom+json": [1, "a", None],
                  "application/geo+json": 3.25, "text/plain": "x"}}])]),
    "crlf-and-nul-in-source": _edge([_edge_code(source="a = 1\r\nb = '\u0000'\r\n")]),
    "newer-minor-read-as-4.5": _edge([_edge_code()], minor=6),
    "cell-execution-count-0": pytest.param(
        _edge([_edge_code(execution_count=0)]),
        marks=pytest.mark.xfail(strict=True, reason=(
            "server gap: a cell execution_count of 0 (nbformat allows minimum 0) is exported "
            "as null"))),
    "result-execution-count-0": pytest.param(
        _edge([_edge_code(execution_count=None, outputs=[
            {"output_type": "execute_result", "execution_count": 0, "metadata": {},
             "data": {"text/plain": "1"}}])]),
        marks=pytest.mark.xfail(strict=True, reason=(
            "server gap (documented in docs/api.md ExportNotebook): an execute_result "
            "execution_count of 0 is exported as null"))),
    "stream-with-custom-name": pytest.param(
        _edge([_edge_code(execution_count=1, outputs=[
            {"output_type": "stream", "name": "custom", "text": "from a custom stream\n"}])]),
        marks=pytest.mark.xfail(strict=True, raises=cellgate.InvalidArgument, reason=(
            "server gap: nbformat allows any stream name; the import refuses anything but "
            "stdout/stderr ('malformed stream output: `name` must be \"stdout\" or \"stderr\"')"))),
}


@pytest.mark.parametrize("original", list(EDGE_CASES.values()), ids=list(EDGE_CASES))
def test_edge_cases_round_trip(kernel: cellgate.Kernel, original: Dict[str, Any]) -> None:
    node = nbformat.reads(dumps(original).decode(), as_version=4)
    if original["nbformat_minor"] <= 5:  # nbformat has no schema for newer minors
        nbformat.validate(node)
    kernel.import_ipynb(dumps(original), replace=True)
    exported = validate_export(kernel.export_ipynb())
    assert normalise(exported) == normalise(original, minor=5)


def test_export_adds_kernelspec_and_language_info_when_missing(kernel: cellgate.Kernel) -> None:
    original = copy.deepcopy(CORPUS["v4.5-rich"])
    del original["metadata"]["kernelspec"], original["metadata"]["language_info"]
    kernel.import_ipynb(dumps(original), replace=True)
    exported = validate_export(kernel.export_ipynb())
    md = exported["metadata"]
    assert md.pop("kernelspec")["name"] == "python3"
    language_info = md.pop("language_info")
    assert language_info["name"] == "python" and language_info["version"].startswith("3.")
    assert normalise(exported) == normalise(original)


# ---- 2. bad input ------------------------------------------------------------------------

def _valid_prefix() -> List[Dict[str, Any]]:
    return [
        {"id": "ok-1", "cell_type": "markdown", "metadata": {}, "source": "fine"},
        {"id": "ok-2", "cell_type": "code", "execution_count": 1, "metadata": {},
         "outputs": [{"name": "stdout", "output_type": "stream", "text": "x\n"}],
         "source": "print('x')"},
    ]


def _nb(cells: List[Dict[str, Any]], **top: Any) -> bytes:
    nb = {"cells": cells, "metadata": {"kernelspec": KERNELSPEC}, "nbformat": 4,
          "nbformat_minor": 5}
    nb.update(top)
    return dumps(nb)


def _code(cell_id: str, **fields: Any) -> Dict[str, Any]:
    cell = {"id": cell_id, "cell_type": "code", "execution_count": None, "metadata": {},
            "outputs": [], "source": "pass"}
    cell.update(fields)
    return cell


NBFORMAT3 = {
    "metadata": {"name": "old"},
    "nbformat": 3,
    "nbformat_minor": 0,
    "worksheets": [{"cells": [{"cell_type": "code", "collapsed": False, "input": ["1 + 1"],
                               "language": "python", "metadata": {},
                               "outputs": [{"metadata": {}, "output_type": "pyout",
                                            "prompt_number": 1, "text": ["2"]}],
                               "prompt_number": 1}],
                    "metadata": {}}],
}

# name -> (payload, substrings the message must contain: what and where)
BAD_INPUTS: Dict[str, Tuple[bytes, List[str]]] = {
    "not-json": (b'{"nbformat": 4, "nbformat_minor": 5,\n "cells": [\n  {"cell_type": }',
                 ["JSON", "line 3"]),
    "binary": (make_png(2, 2), ["JSON"]),
    "json-array": (b"[1, 2, 3]", ["ipynb", "object"]),
    "nbformat-3": (dumps(NBFORMAT3), ["nbformat", "3"]),
    "nbformat-missing": (json.dumps({"cells": [], "metadata": {}}).encode(), ["nbformat"]),
    "unknown-output-type": (
        _nb(_valid_prefix() + [_code("bad", outputs=[
            {"output_type": "stream", "name": "stdout", "text": "ok\n"},
            {"output_type": "pyout", "metadata": {}, "text": ["2"]}])]),
        ["cells[2].outputs[1]", "output_type"]),
    "cell-without-cell-type": (
        _nb(_valid_prefix() + [{"id": "c3", "metadata": {}, "source": "x"}]),
        ["cells[2]", "cell_type"]),
    "unknown-cell-type": (
        _nb(_valid_prefix() + [{"id": "c3", "cell_type": "heading", "metadata": {},
                                "source": "x", "level": 1}]),
        ["cells[2].cell_type", "heading"]),
    "display-data-without-data": (
        _nb(_valid_prefix() + [_code("bad", outputs=[
            {"output_type": "display_data", "metadata": {}}])]),
        ["cells[2].outputs[0]", "data"]),
    "stream-text-not-string": (
        _nb(_valid_prefix() + [_code("bad", outputs=[
            {"output_type": "stream", "name": "stdout", "text": 42}])]),
        ["cells[2].outputs[0]", "text"]),
    "source-list-of-non-strings": (
        _nb(_valid_prefix() + [_code("bad", source=["a = 1\n", 2])]),
        ["cells[2].source[1]"]),
    "negative-execution-count": (
        _nb(_valid_prefix() + [_code("bad", execution_count=-1)]),
        ["cells[2].execution_count"]),
    "invalid-cell-id": (
        _nb(_valid_prefix() + [_code("has space")]),
        ["cells[2].id", "has space"]),
    "duplicate-cell-id": (
        _nb(_valid_prefix() + [_code("ok-1")]),
        ["cells[2].id", "duplicate", "cells[0]"]),
    "metadata-not-object": (
        _nb(_valid_prefix() + [_code("bad", metadata=[1])]),
        ["cells[2].metadata"]),
}


@pytest.fixture()
def baseline(kernel: cellgate.Kernel) -> Iterator[Tuple[bytes, List[str], str]]:
    """The shared kernel holding a known notebook: (export, cell ids, metadata)."""
    nb = kernel.import_ipynb(dumps(CORPUS["v4.5-rich"]), replace=True)
    yield kernel.export_ipynb(), [c.cell_id for c in nb], nb.metadata


def _assert_unchanged(kernel: cellgate.Kernel, baseline: Tuple[bytes, List[str], str]) -> None:
    export, ids, metadata = baseline
    nb = kernel.notebook()
    assert [c.cell_id for c in nb] == ids and nb.metadata == metadata
    assert kernel.export_ipynb() == export


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_ipynb_is_invalid_argument_and_changes_nothing(
        kernel: cellgate.Kernel, baseline: Tuple[bytes, List[str], str], name: str) -> None:
    payload, where = BAD_INPUTS[name]
    for replace in (True, False):
        with pytest.raises(cellgate.InvalidArgument) as e:
            kernel.import_ipynb(payload, replace=replace)
        for part in where:
            assert part in e.value.message, (replace, e.value.message)
        _assert_unchanged(kernel, baseline)


@pytest.mark.parametrize("name", ["not-json", "nbformat-3", "unknown-output-type",
                                  "cell-without-cell-type"])
def test_bad_notebook_at_start_kernel_names_the_field(client: Client, name: str) -> None:
    payload, where = BAD_INPUTS[name]
    labels = {"t": f"fidelity-bad-{name}"}
    with pytest.raises(cellgate.InvalidArgument) as e:
        client.start_kernel(notebook_ipynb=payload, labels=labels)
    assert e.value.message.startswith("notebook_ipynb: "), e.value.message
    for part in where:
        assert part in e.value.message, e.value.message
    # No kernel was left behind for it (it may still be shutting down).
    assert all(k.state in ("SHUTTING_DOWN", "DEAD") for k in client.list_kernels(labels=labels))


def test_size_cap(client: Client, kernel: cellgate.Kernel,
                  baseline: Tuple[bytes, List[str], str]) -> None:
    cap = client.server_info().caps.max_ipynb_bytes
    assert cap > 0
    valid = dumps(CORPUS["v4.0"])
    at_cap = valid + b" " * (cap - len(valid))         # trailing whitespace: still valid JSON
    over = at_cap + b" "
    assert len(at_cap) == cap and len(over) == cap + 1
    for replace in (True, False):
        with pytest.raises(cellgate.InvalidArgument) as e:
            kernel.import_ipynb(over, replace=replace)
        assert "ipynb" in e.value.message and str(cap) in e.value.message, e.value.message
        assert str(cap + 1) in e.value.message, e.value.message
        _assert_unchanged(kernel, baseline)
    with pytest.raises(cellgate.InvalidArgument) as e:
        client.start_kernel(notebook_ipynb=over)
    assert e.value.message.startswith("notebook_ipynb") and str(cap) in e.value.message
    # Exactly at the cap is accepted.
    nb = kernel.import_ipynb(at_cap, replace=True)
    assert len(nb) == len(CORPUS["v4.0"]["cells"])


# ---- 3. RunAll versus nbclient -----------------------------------------------------------

PLOT_MATPLOTLIB = """\
import io
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from IPython.display import SVG, Image, display
fig, ax = plt.subplots(figsize=(4, 3), dpi=80)
ax.plot([0, 1, 2, 3], [0, 1, 4, 9], marker="o", label="squares")
ax.set_title("a real plot")
ax.legend()
png, svg = io.BytesIO(), io.StringIO()
fig.savefig(png, format="png")
fig.savefig(svg, format="svg", metadata={"Date": None})
plt.close(fig)
display(Image(png.getvalue(), width=320))
display(SVG(svg.getvalue()))
print("plotted", flush=True)"""

PLOT_BY_HAND = """\
import struct, zlib
from IPython.display import SVG, Image, display
def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
rows = b"".join(b"\\x00" + b"".join(bytes((x * 6, y * 8, 128)) for x in range(40))
               for y in range(30))
png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40, 30, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
display(Image(png, width=320))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30"><circle cx="20" cy="15" r="10"/></svg>'))
print("plotted", flush=True)"""

RUN_CELLS: List[Tuple[str, str, str]] = [
    ("markdown", "title", "# Executed twice\nOnce by cellgate, once by nbclient."),
    ("code", "streams", """\
import sys
print("out 1", flush=True)
print("err 1", file=sys.stderr, flush=True)
print("out 2")
print("out 3", flush=True)
sys.stdout.write("no newline")
sys.stdout.flush()
print(" | unicode: héllo ✓ 日本")
print("err 2", file=sys.stderr)"""),
    ("code", "result", 'answer = 6 * 7\n{"answer": answer, "items": [1, 2, 3], "name": "x"}'),
    ("code", "rich", """\
from IPython.display import HTML, JSON, Markdown, display
display(HTML("<b>bold</b> <i>html</i>"))
display(Markdown("*markdown* **text**"))
display(JSON({"a": [1, 2, {"b": None}], "c": "d"}))
HTML("<table><tr><td>a result</td></tr></table>")"""),
    ("code", "plot", PLOT_MATPLOTLIB if HAVE_MATPLOTLIB else PLOT_BY_HAND),
    ("code", "clear", """\
from IPython.display import clear_output
print("will be cleared", flush=True)
clear_output()
print("after clear")"""),
    ("code", "clear-wait", """\
for i in range(3):
    clear_output(wait=True)
    print(f"tick {i}", flush=True)"""),
    ("code", "display-id", """\
progress = display(Markdown("progress: 0%"), display_id="progress-bar")
same = display("step 0", display_id="same-cell")
for i in range(1, 4):
    same.update(f"step {i}")"""),
    ("code", "error", """\
def fail(x):
    raise ValueError(f"bad value: {x}")
print("before the error", flush=True)
fail(42)"""),
    ("code", "update-elsewhere", """\
from IPython.display import update_display
update_display(Markdown("progress: 100%"), display_id="progress-bar")
print("updated")"""),
    ("raw", "raw", "raw text, never run"),
    ("code", "empty", "   \n"),
    ("code", "second-error", 'print("still running")\n{}["missing"]'),
    ("code", "last", "answer + 1"),
]


def run_notebook() -> Dict[str, Any]:
    cells = []
    for kind, cell_id, source in RUN_CELLS:
        make = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell,
                "raw": nbformat.v4.new_raw_cell}[kind]
        cells.append(make(source, id=cell_id))
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": dict(KERNELSPEC)})
    nbformat.validate(nb)
    return nb


NBCLIENT_RUNNER = """\
import sys
import nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=int(sys.argv[4]), startup_timeout=120, kernel_name="python3",
               allow_errors=True, resources={"metadata": {"path": sys.argv[3]}}).execute()
nbformat.write(nb, sys.argv[2])
"""


@pytest.fixture(scope="module")
def run_dir() -> Iterator[Path]:
    """A directory the kernels (which may run as other uids) can use; with a matplotlib
    config dir whose font cache is built up front, so no run prints a cache warning."""
    d = Path(tempfile.mkdtemp(prefix="cgfid-"))
    os.chmod(d, 0o755)
    mpl = d / "mpl"
    mpl.mkdir()
    os.chmod(mpl, 0o777)
    if HAVE_MATPLOTLIB:
        subprocess.run([sys.executable, "-c", "import matplotlib; matplotlib.use('Agg'); "
                        "import matplotlib.pyplot"], env={"MPLCONFIGDIR": str(mpl),
                                                          "PATH": "/usr/bin:/bin"},
                       check=True, capture_output=True, timeout=300)
        for p in mpl.rglob("*"):
            os.chmod(p, 0o777 if p.is_dir() else 0o666)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start_nbclient(src: Path, out: Path, work: Path, mplconfig: Path) -> subprocess.Popen:
    """nbclient in its own /usr/bin/python3, with a private HOME/IPYTHONDIR/Jupyter dirs and
    the same kernelspec cellgate uses (the repo's kernels/python3)."""
    home = work / "home"
    specs = work / "jupyter" / "kernels"
    for p in (home, specs):
        p.mkdir(parents=True)
    shutil.copytree(REPO / "kernels" / "python3", specs / "python3")
    env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "IPYTHONDIR": str(home / ".ipython"),
        "JUPYTER_PATH": str(work / "jupyter"),
        "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "MPLCONFIGDIR": str(mplconfig),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    return subprocess.Popen(["/usr/bin/python3", "-c", NBCLIENT_RUNNER, str(src), str(out),
                             str(work), str(RUN_TIMEOUT_S)],
                            env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def merged_outputs(outputs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Consecutive stream outputs of the same name merged, as nbclient's stores do."""
    merged: List[Dict[str, Any]] = []
    for out in outputs:
        out = dict(out)
        if out["output_type"] == "stream":
            out["text"] = join(out["text"])
            last = merged[-1] if merged else None
            if last is not None and last["output_type"] == "stream" and last["name"] == out["name"]:
                last["text"] += out["text"]
                continue
        merged.append(out)
    return merged


def output_signature(out: Dict[str, Any]) -> Tuple[Any, ...]:
    kind = out["output_type"]
    if kind == "stream":
        return ("stream", out["name"], out["text"])
    if kind == "error":
        traceback = [re.sub(r"ipykernel_\d+/\d+\.py", "<cell>", ANSI.sub("", line))
                     for line in out["traceback"]]
        return ("error", out["ename"], out["evalue"], tuple(traceback))
    details = []
    for mime, value in sorted(out["data"].items()):
        if mime == "image/png":
            details.append((mime, png_size(value)))
        elif mime == "image/svg+xml":
            details.append((mime, "<svg" in join(value)))
        elif is_json_mime(mime):
            details.append((mime, json.dumps(value, sort_keys=True)))
        else:
            text = join(value)
            details.append((mime, "<address>" if ADDRESS.search(text) else text))
    sig: Tuple[Any, ...] = (kind, tuple(sorted(out["data"])), tuple(details),
                            json.dumps(out.get("metadata", {}), sort_keys=True))
    if kind == "execute_result":
        sig += (out["execution_count"],)
    return sig


def cell_signatures(nb: Dict[str, Any]) -> Dict[str, Any]:
    return {c["id"]: (c.get("execution_count"),
                      [output_signature(o) for o in merged_outputs(c.get("outputs", []))])
            for c in nb["cells"] if c["cell_type"] == "code"}


@pytest.mark.skipif(not HAVE_NBCLIENT and not os.environ.get("CI"),
                    reason="needs Debian's python3-nbclient (scripts/install-deps.sh installs it)")
def test_run_all_matches_nbclient(client: Client, run_dir: Path) -> None:
    nb = run_notebook()
    work = Path(tempfile.mkdtemp(prefix="nbclient-", dir=run_dir))
    src = work / "run.ipynb"
    src.write_text(nbformat.writes(nb))
    reference = start_nbclient(src, work / "run.out.ipynb", work, run_dir / "mpl")
    try:
        with client.start_kernel(notebook_ipynb=src, env={"MPLCONFIGDIR": str(run_dir / "mpl")},
                                 labels={"t": "fidelity-nbclient"}) as k:
            run = k.run_all(stop_on_error=False, timeout=RUN_TIMEOUT_S)
            ours = validate_export(k.export_ipynb())
        log, _ = reference.communicate(timeout=RUN_TIMEOUT_S * len(RUN_CELLS))
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.wait()
    assert reference.returncode == 0, log.decode(errors="replace")[-4000:]
    theirs = json.loads((work / "run.out.ipynb").read_text())

    statuses = {r.cell_id: r.status for r in run.results}
    assert statuses == {cell_id: (ExecutionStatus.ERROR if "error" in cell_id else ExecutionStatus.OK)
                        for kind, cell_id, source in RUN_CELLS
                        if kind == "code" and source.strip()}, run.text
    assert [(s.cell_id, s.reason) for s in run.skipped] == [("empty", SkipReason.EMPTY_SOURCE)]

    got, want = cell_signatures(ours), cell_signatures(theirs)
    for cell_id in want:
        assert got[cell_id] == want[cell_id], f"cell {cell_id!r} differs from nbclient's"
    assert got == want
    # Markdown and raw cells are untouched by both.
    assert ([c for c in ours["cells"] if c["cell_type"] != "code"]
            == [c for c in theirs["cells"] if c["cell_type"] != "code"])

    # The comparison has teeth: the run produced what the cells are about.
    sig = {cell_id: outs for cell_id, (count, outs) in got.items()}
    assert sig["streams"][:2] == [("stream", "stdout", "out 1\n"), ("stream", "stderr", "err 1\n")]
    assert sig["clear"] == [("stream", "stdout", "after clear\n")]
    assert sig["clear-wait"] == [("stream", "stdout", "tick 2\n")]
    assert [dict(s[2])["text/markdown"] for s in sig["display-id"][:1]] == ["progress: 100%"]
    assert dict(sig["display-id"][1][2])["text/plain"] == "'step 3'"
    assert [s[1] for s in sig["plot"][:2]] == [("image/png", "text/plain"),
                                              ("image/svg+xml", "text/plain")]
    assert sig["error"][-1][:3] == ("error", "ValueError", "bad value: 42")
    assert dict(sig["last"][0][2])["text/plain"] == "43"
