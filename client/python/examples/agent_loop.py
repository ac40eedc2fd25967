"""An agent-style loop with no LLM: a scripted planner proposes cells for a small task, the
loop runs each one, reads ExecutionResult.text, and when a cell fails, asks the planner for a
fix, edits the cell and runs it again.

The plan has two deliberate bugs the loop must detect from the results and repair:
  * a missing import  (NameError: name 'statistics' is not defined)
  * a typo'd variable (NameError: name 'totl' is not defined)

    PYTHONPATH=client/python /usr/bin/python3 client/python/examples/agent_loop.py HOST:PORT

Exits 0 when the task's answer is right, 1 otherwise.
"""
from __future__ import annotations

import difflib
import re
import sys
from typing import List, Optional

from cellgate import Client, ExecutionResult, Kernel

TASK = "Summarise the numbers 3 1 4 1 5 9 2 6 5 3 5: mean, median and total."
EXPECTED = "mean=4.000 median=4 total=44"

# What a planner (an LLM, in real life) proposes, bugs included.
PLAN: List[str] = [
    "data = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]\nlen(data)",
    "mean = statistics.mean(data)\nmedian = statistics.median(data)",
    "total = sum(data)\nprint(f'mean={mean:.3f} median={median} total={totl}')",
]
KNOWN_MODULES = {"statistics", "math", "json", "re", "itertools", "collections"}
MAX_FIXES_PER_CELL = 3


def propose_fix(source: str, result: ExecutionResult, names_in_scope: List[str]) -> Optional[str]:
    """The 'planner' repairing a cell from what the failed run said."""
    if result.error is None:
        return None
    if result.error.ename == "NameError":
        m = re.search(r"name '(\w+)' is not defined", result.error.evalue)
        if not m:
            return None
        missing = m.group(1)
        if missing in KNOWN_MODULES:                       # forgot an import
            return f"import {missing}\n{source}"
        close = difflib.get_close_matches(missing, names_in_scope, n=1)
        if close:                                          # a typo of a defined name
            return re.sub(rf"\b{re.escape(missing)}\b", close[0], source)
    return None


def names_in_scope(kernel: Kernel, extra_source: str) -> List[str]:
    """Names the kernel knows, plus names the failing cell itself assigns."""
    r = kernel.execute("print(' '.join(k for k in globals() if not k.startswith('_')))")
    names = r.text.split() if r.ok else []
    names += re.findall(r"^(\w+)\s*=", extra_source, flags=re.M)
    return names


def main(target: str) -> int:
    print(f"task: {TASK}")
    with Client(target) as client, client.start_kernel(labels={"example": "agent_loop"}) as kernel:
        final: Optional[ExecutionResult] = None
        for step, source in enumerate(PLAN, 1):
            cell = kernel.add_cell(source)
            for attempt in range(MAX_FIXES_PER_CELL + 1):
                result = kernel.run_cell(cell.cell_id, timeout=60)
                print(f"step {step} attempt {attempt + 1}: {result.status}")
                print("  " + result.text.strip().replace("\n", "\n  "))
                if result.ok:
                    break
                fix = propose_fix(source, result, names_in_scope(kernel, source))
                if fix is None:
                    print(f"step {step}: no fix for {result.error}; giving up")
                    return 1
                print(f"step {step}: fixing {result.error} ->\n  " + fix.replace("\n", "\n  "))
                source = fix
                kernel.edit_cell(cell.cell_id, source)
            else:
                print(f"step {step}: still failing after {MAX_FIXES_PER_CELL} fixes")
                return 1
            final = result
        answer = final.text.strip() if final else ""
        print(f"answer: {answer}")
        # The notebook now holds the repaired cells: a RunAll from scratch must succeed too.
        kernel.restart()
        rerun = kernel.run_all()
        if not rerun.ok or rerun.results[-1].text.strip() != EXPECTED:
            print(f"re-run of the repaired notebook failed: {rerun.text}")
            return 1
        return 0 if answer == EXPECTED else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"))
