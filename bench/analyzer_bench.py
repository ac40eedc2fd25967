"""Cell analysis latency (issue #9): one request through the analyzer process's pipe, as the
gateway will send it, per cell of three sizes; with Python's own ast.parse of the same source
in this process as the baseline measured in the same run.

    /usr/bin/python3 bench/analyzer_bench.py [--rounds 500] [--json /tmp/analyzer.json]
"""
from __future__ import annotations

import argparse
import ast
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
ANALYZER = REPO / "kernels" / "analyzer" / "cellgate_analyzer.py"
sys.path.insert(0, str(REPO / "tests" / "analyzer"))
sys.path.insert(0, str(ANALYZER.parent))

from cellgate_analyzer import _IPYTHON_LINE  # noqa: E402
from test_analyzer import CORPUS  # noqa: E402  (the tricky cells the tests check)

SMALL = "y = x * 2"
# A typical data-science cell: imports, a function, a loop, a comprehension, a plot, magics.
MEDIUM = """%matplotlib inline
import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

def clean(frame, columns=DEFAULT_COLUMNS):
    frame = frame.dropna(subset=columns)
    return frame[frame[target] > threshold]

data = clean(pd.read_csv(path))
X_train, X_test, y_train, y_test = train_test_split(data[features], data[target], test_size=0.2)
scores = {name: model.fit(X_train, y_train).score(X_test, y_test) for name, model in models.items()}
best = max(scores, key=scores.get)
for name, score in sorted(scores.items()):
    print(f"{name:>20}: {score:.3f}")
%time final = models[best].fit(data[features], data[target])
fig, ax = plt.subplots()
ax.bar(list(scores), list(scores.values()))
"""
LARGE = "\n".join(src for src, *_ in CORPUS if not src.startswith("%%") and "?" not in src) * 3


def percentile(values: List[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--json")
    args = parser.parse_args()
    proc = subprocess.Popen(["/usr/bin/python3", str(ANALYZER)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1)
    assert proc.stdin is not None and proc.stdout is not None
    results: Dict[str, Dict[str, float]] = {}
    request_id = 0

    def ask(source: str) -> float:
        nonlocal request_id
        request_id += 1
        started = time.perf_counter()
        proc.stdin.write(json.dumps({"id": request_id, "source": source}) + "\n")
        reply = json.loads(proc.stdout.readline())
        elapsed = time.perf_counter() - started
        assert reply["id"] == request_id and not reply["error"], reply
        return elapsed * 1000

    started = time.perf_counter()
    ask(SMALL)  # the first request pays for the imports (IPython's transformer)
    first_ms = (time.perf_counter() - started) * 1000
    for _ in range(50):
        ask(MEDIUM)
    for label, source in (("small (1 line)", SMALL), ("medium (18 lines)", MEDIUM),
                          (f"large ({LARGE.count(chr(10)) + 1} lines)", LARGE)):
        through_pipe = [ask(source) for _ in range(args.rounds)]
        # The baseline: ast.parse of the cell's plain-Python lines.
        python = "\n".join(line for line in source.splitlines() if not _IPYTHON_LINE.search(line))
        parse_only = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            ast.parse(python)
            parse_only.append((time.perf_counter() - t) * 1000)
        p50, p99 = statistics.median(through_pipe), percentile(through_pipe, 99)
        base = statistics.median(parse_only)
        results[label] = {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
                          "ast_parse_p50_ms": round(base, 3),
                          "ratio_to_ast_parse": round(p50 / base, 1)}
        print(f"{label:>20}: p50 {p50:.3f} ms, p99 {p99:.3f} ms through the pipe; "
              f"ast.parse alone {base:.3f} ms ({p50 / base:.1f}x)")
    print(f"first request (imports): {first_ms:.0f} ms")
    proc.stdin.close()
    proc.wait(timeout=30)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"command": sys.argv, "first_request_ms": round(first_ms, 1), "results": results},
            indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
