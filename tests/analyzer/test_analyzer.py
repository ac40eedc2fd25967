"""The cell analyzer (kernels/analyzer/cellgate_analyzer.py) on a corpus of tricky Python, and
its JSON-lines protocol through a real process.

Run: /usr/bin/python3 -m pytest tests/analyzer -q"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

ANALYZER = Path(__file__).resolve().parents[2] / "kernels" / "analyzer" / "cellgate_analyzer.py"
sys.path.insert(0, str(ANALYZER.parent))

from cellgate_analyzer import analyze  # noqa: E402

# (source, defines, uses, opaque)
CORPUS: List[Tuple[str, List[str], List[str], bool]] = [
    # Plain assignment, and reading what the cell bound before.
    ("x = 1", ["x"], [], False),
    ("y = x * 2", ["y"], ["x"], False),
    ("x = 1\ny = x + z", ["x", "y"], ["z"], False),
    ("a, (b, *c) = t", ["a", "b", "c"], ["t"], False),
    ("a = b = 0", ["a", "b"], [], False),
    # Augmented assignment reads the name first.
    ("x += 1", ["x"], ["x"], False),
    ("n = 0\nn += 1", ["n"], [], False),
    # Assignment into a container or attribute reads the container, defines nothing.
    ("d['k'] = v", [], ["d", "v"], False),
    ("obj.attr = 3", [], ["obj"], False),
    # del: needs the name, changes it.
    ("del x", ["x"], ["x"], False),
    ("x = 1\ndel x\nprint(x)", ["x"], ["x"], False),
    # Imports.
    ("import numpy as np", ["np"], [], False),
    ("import os.path", ["os"], [], False),
    ("from collections import OrderedDict as OD, deque", ["OD", "deque"], [], False),
    ("from os import *", [], [], True),
    # Functions: the name is defined; the body's free names are read when it is called.
    ("def f(a, b=default):\n    return a + g(b) + CONST", ["f"], ["CONST", "default", "g"],
     False),
    ("def f():\n    return helper()\ndef helper():\n    return 1", ["f", "helper"], [], False),
    ("async def fetch(url):\n    async with session.get(url) as r:\n        return await r.text()",
     ["fetch"], ["session"], False),
    # Decorators run at definition.
    ("@functools.lru_cache(maxsize=size)\ndef f(x):\n    return x", ["f"],
     ["functools", "size"], False),
    # Annotations are evaluated; an annotation alone binds nothing.
    ("x: int = 5", ["x"], [], False),
    ("y: MyType", [], ["MyType"], False),
    ("def f(a: Arg) -> Ret:\n    return a", ["f"], ["Arg", "Ret"], False),
    # global and nonlocal.
    # A function that binds a global defines it (when called): conservatively, its cell does.
    ("def bump():\n    global counter\n    counter += 1", ["bump", "counter"], ["counter"],
     False),
    ("def outer():\n    n = 0\n    def inner():\n        nonlocal n\n        n += 1\n"
     "        return n + step\n    return inner", ["outer"], ["step"], False),
    # Comprehension variables are the comprehension's own; the first iterable is read outside.
    ("squares = [i * i for i in range(n)]", ["squares"], ["n"], False),
    ("pairs = {k: v for k, v in items if v > limit}", ["pairs"], ["items", "limit"], False),
    ("total = sum(x for row in grid for x in row)", ["total"], ["grid"], False),
    ("i = 0\nvals = [i for i in data]\nprint(i)", ["i", "vals"], ["data"], False),
    # The walrus binds in the enclosing scope, also from a comprehension.
    ("if (m := pattern.match(s)):\n    print(m)", ["m"], ["pattern", "s"], False),
    ("found = [y for x in xs if (y := f(x))]\nprint(y)", ["found", "y"], ["f", "xs"], False),
    # Conditional definitions define, but a later read may still come from above.
    ("if flag:\n    z = 1\nprint(z)", ["z"], ["flag", "z"], False),
    ("if flag:\n    z = 1\nelse:\n    z = 2\nprint(z)", ["z"], ["flag"], False),
    ("for k in keys:\n    last = k\nprint(last)", ["k", "last"], ["keys", "last"], False),
    ("while cond():\n    w = 1", ["w"], ["cond"], False),
    ("try:\n    import ujson as json\nexcept ImportError as e:\n    import json\n    err = e",
     ["e", "err", "json"], [], False),
    ("with open(path) as fh:\n    text = fh.read()\nn = len(text)", ["fh", "n", "text"],
     ["path"], False),
    # Classes: the body runs now in its own namespace; methods run later.
    ("class Point(Base, metaclass=Meta):\n    dims = DIMS\n    def norm(self):\n"
     "        return sqrt(self.x)", ["Point"], ["Base", "DIMS", "Meta", "sqrt"], False),
    ("class C:\n    a = 1\n    b = a + 1", ["C"], [], False),
    # f-strings read their expressions.
    ("msg = f'{name!r} has {count:>{width}} items'", ["msg"], ["count", "name", "width"],
     False),
    # Lambdas read at call time.
    ("key = lambda r: r[col]", ["key"], ["col"], False),
    # match statements capture names.
    ("match cmd:\n    case Point(x=0, y=yy):\n        hit = yy\n    case {'k': v, **rest}:\n"
     "        hit = rest\n    case [first, *others]:\n        hit = first",
     ["first", "hit", "others", "rest", "v", "yy"], ["Point", "cmd"], False),
    ("@dataclass\nclass P:\n    x: int = 0\n    tags: list = field(default_factory=list)",
     ["P"], ["dataclass", "field"], False),
    ("del d[k]", [], ["d", "k"], False),
    ("global g\ng = 1", ["g"], [], False),
    ("import a.b.c as d", ["d"], [], False),
    ("f = lambda x, scale=factor: x * scale * other", ["f"], ["factor", "other"], False),
    ("for i in range(3):\n    pass\nelse:\n    done = True", ["done", "i"], [], False),
    ("def load():\n    import json\n    return json.loads(raw)", ["load"], ["raw"], False),
    ("result = func(*args, **kwargs)", ["result"], ["args", "func", "kwargs"], False),
    # Builtins and what IPython provides are no dependency.
    ("print(len(range(3)))\ndisplay(In)", [], [], False),
    # Opaque: code the analyzer cannot see.
    ("exec(code)", [], ["code"], True),
    ("globals()['x'] = 1", [], [], True),
    ("def f():\n    return eval(s)", ["f"], ["s"], True),
    # IPython syntax, as IPython turns it into Python.
    ("%matplotlib inline\nimport matplotlib.pyplot as plt", ["plt"], [], False),
    ("%time result = slow(data)", ["result"], ["data", "slow"], False),
    ("%%time\nfit = model.fit(X)", ["fit"], ["X", "model"], False),
    ("%%capture captured\nprint(noisy())", ["captured"], ["noisy"], False),
    ("files = !ls {folder}", ["files"], [], False),
    ("!pip list", [], [], False),
    ("%run helpers.py", [], [], True),
    ("%store -r saved", [], [], True),
    ("%xdel big", ["big"], ["big"], False),
    ("np.linspace?", [], [], False),
    ("%%bash\necho $HOME", [], [], False),
]


@pytest.mark.parametrize("source,defines,uses,opaque", CORPUS,
                         ids=[c[0].split("\n")[0][:40] for c in CORPUS])
def test_corpus(source: str, defines: List[str], uses: List[str], opaque: bool) -> None:
    result = analyze(source).to_json(None)
    assert result["error"] == ""
    assert (result["defines"], result["uses"], result["opaque"]) == (defines, uses, opaque), \
        result


def test_a_syntax_error_defines_nothing_and_says_where() -> None:
    result = analyze("x = (1,\ny = 2").to_json(None)
    assert result["defines"] == [] and result["uses"] == []
    assert result["error"].startswith("syntax error at line")


def test_opaque_cells_say_why() -> None:
    assert analyze("from pandas import *\nexec(s)").reasons == [
        "star import from pandas", "calls exec"]
    assert analyze("%run setup.py").reasons == ["%run"]


def test_the_process_answers_json_lines_in_order_and_survives_bad_requests() -> None:
    requests = [{"id": 1, "source": "a = b"}, "not json", {"id": 3, "source": "%%time\nc = a"}]
    lines = "".join((json.dumps(r) if isinstance(r, dict) else r) + "\n" for r in requests)
    out = subprocess.run(["/usr/bin/python3", str(ANALYZER)], input=lines, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    replies = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["id"] for r in replies] == [1, None, 3]
    assert replies[0]["defines"] == ["a"] and replies[0]["uses"] == ["b"]
    assert replies[1]["error"] and replies[1]["opaque"]
    assert replies[2]["defines"] == ["c"] and replies[2]["uses"] == ["a"]
