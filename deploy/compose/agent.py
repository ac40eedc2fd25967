"""A stand-in for an LLM agent: starts a kernel on its cellgate sidecar, runs a few cells the
way an agent would (state kept between them), prints the plain-text results and stops."""
import os

import cellgate

target = os.environ.get("CELLGATE_TARGET", "unix:/sock/cellgate.sock")
with cellgate.Client(target, rpc_timeout=60) as client, client.start_kernel() as kernel:
    for source in ["import pandas as pd",
                   "df = pd.DataFrame({'x': range(5)}); df['y'] = df.x ** 2",
                   "df.describe().loc[['mean', 'max']]"]:
        cell = kernel.add_cell(source)
        result = kernel.run_cell(cell.cell_id, timeout=60)
        print(f">>> {source}\n{result.text}", flush=True)
