"""Command line: run a notebook or a snippet on a cellgate server.

    python3 -m cellgate --target HOST:PORT [--token-file F] run NOTEBOOK.ipynb [--timeout S]
                        [--output OUT.ipynb]
    python3 -m cellgate --target HOST:PORT [--token-file F] exec "CODE" [--timeout S]

Add ``--tls-ca CA.pem`` for a server that serves TLS, and ``--tls-cert``/``--tls-key`` for one
that asks for client certificates.

``run`` imports the notebook into a fresh kernel, runs all its cells (stopping at the first
failure), prints each cell's text, optionally writes the executed notebook, and shuts the kernel
down. ``exec`` runs the code in a fresh kernel and prints its text.

Exit status: 0 every cell / the code succeeded; 1 a cell or the code failed (error, timeout,
…); 2 the server is unreachable, refused the request, or the arguments are wrong.
The target defaults to $CELLGATE_TARGET or 127.0.0.1:50051, the token to $CELLGATE_TOKEN.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional, TextIO

from cellgate._requests import tls_credentials
from cellgate.client import Client, Kernel
from cellgate.errors import CellgateError, DeadlineExceeded, Unavailable
from cellgate.types import ExecutionResult

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
CONNECT_TIMEOUT_S = 10.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m cellgate",
                                description="Run notebooks and code on a cellgate server.")
    p.add_argument("--target", default=os.environ.get("CELLGATE_TARGET", "127.0.0.1:50051"),
                   help="server address HOST:PORT or unix:/path (default: $CELLGATE_TARGET or "
                        "127.0.0.1:50051)")
    p.add_argument("--token-file", type=Path,
                   help="file holding the bearer token (default: $CELLGATE_TOKEN, if set)")
    p.add_argument("--tls-ca", type=Path,
                   help="connect with TLS, trusting the server's certificate by these PEM CAs")
    p.add_argument("--tls-cert", type=Path,
                   help="with TLS: this client's PEM certificate, for mutual TLS (with --tls-key)")
    p.add_argument("--tls-key", type=Path, help="the PEM private key of --tls-cert")
    p.add_argument("--kernel-spec", default="", help="kernelspec (default: the server's)")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run every cell of a notebook in a fresh kernel")
    run.add_argument("notebook", type=Path, help="the .ipynb to run")
    run.add_argument("--timeout", type=float, default=None, help="per-cell timeout, seconds")
    run.add_argument("--output", type=Path, help="write the executed notebook here")
    run.add_argument("--keep-going", action="store_true",
                     help="run the remaining cells after a failure")
    ex = sub.add_parser("exec", help="run a snippet of code in a fresh kernel")
    ex.add_argument("code", help="the code to run")
    ex.add_argument("--timeout", type=float, default=None, help="timeout, seconds")
    return p


def _print_result(result: ExecutionResult, out: TextIO, header: Optional[str]) -> None:
    if header:
        print(header, file=out)
    text = result.text
    out.write(text if not text or text.endswith("\n") else text + "\n")


def _run(kernel: Kernel, args: argparse.Namespace, out: TextIO) -> int:
    data = args.notebook.read_bytes()
    nb = kernel.import_ipynb(data, replace=True, outputs=False)  # only where each cell is
    positions = {c.cell_id: c for c in nb.cells}
    run = kernel.run_all(stop_on_error=not args.keep_going, timeout=args.timeout)
    for r in run.results:
        cell = positions.get(r.cell_id)
        where = f"cell {cell.index + 1}" if cell else "cell"
        count = f" [{r.execution_count}]" if r.execution_count else ""
        _print_result(r, out, f"--- {where} ({r.cell_id}){count} {r.status} ---")
    for s in run.skipped:
        if str(s.reason) != "EMPTY_SOURCE":
            cell = positions.get(s.cell_id)
            where = f"cell {cell.index + 1}" if cell else "cell"
            print(f"--- {where} ({s.cell_id}) skipped: {s.reason} ---", file=out)
    if args.output:
        args.output.write_bytes(kernel.export_ipynb())
    failed = run.failed
    ran = len(run.results)
    if run.ok:
        print(f"cellgate: {ran} cell(s) ran OK", file=sys.stderr)
        return EXIT_OK
    if failed is not None:
        cell = positions.get(failed.cell_id)
        where = f"cell {cell.index + 1} ({failed.cell_id})" if cell else failed.cell_id
        what = str(failed.error) if failed.error else str(failed.status)
        print(f"cellgate: {where} failed: {failed.status}: {what}", file=sys.stderr)
    else:
        print("cellgate: some cells did not run", file=sys.stderr)
    return EXIT_FAILED


def _exec(kernel: Kernel, args: argparse.Namespace, out: TextIO) -> int:
    result = kernel.execute(args.code, timeout=args.timeout)
    _print_result(result, out, None)
    if result.ok:
        return EXIT_OK
    print(f"cellgate: {result.status}" + (f": {result.error}" if result.error else ""),
          file=sys.stderr)
    return EXIT_FAILED


def main(argv: Optional[List[str]] = None, out: Optional[TextIO] = None) -> int:
    """The CLI; returns the exit status."""
    out = out if out is not None else sys.stdout
    args = _parser().parse_args(argv)
    token = os.environ.get("CELLGATE_TOKEN")
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip().splitlines()[0].strip()
        except (OSError, IndexError) as e:
            print(f"cellgate: cannot read token file {args.token_file}: {e}", file=sys.stderr)
            return EXIT_ERROR
    if args.command == "run" and not args.notebook.is_file():
        print(f"cellgate: no such notebook: {args.notebook}", file=sys.stderr)
        return EXIT_ERROR
    credentials = None
    if args.tls_ca is not None or args.tls_cert is not None or args.tls_key is not None:
        try:
            credentials = tls_credentials(args.tls_ca, args.tls_cert, args.tls_key)
        except OSError as e:
            print(f"cellgate: cannot read a TLS file: {e}", file=sys.stderr)
            return EXIT_ERROR
        except CellgateError as e:
            print(f"cellgate: {e.message}", file=sys.stderr)
            return EXIT_ERROR
    try:
        with Client(args.target, token, credentials=credentials) as client:
            try:
                client.server_info(timeout=CONNECT_TIMEOUT_S)
            except (Unavailable, DeadlineExceeded) as e:
                print(f"cellgate: cannot reach the server at {args.target}: {e.message}",
                      file=sys.stderr)
                return EXIT_ERROR
            with client.start_kernel(args.kernel_spec, labels={"client": "cellgate-cli"}) as kernel:
                if args.command == "run":
                    return _run(kernel, args, out)
                return _exec(kernel, args, out)
    except CellgateError as e:
        print(f"cellgate: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("cellgate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
