"""The command line (python3 -m cellgate), the examples, and pip-installing the package."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from conftest import CLIENT_DIR, Server

ENV = dict(os.environ, PYTHONPATH=str(CLIENT_DIR))


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cellgate", *args], env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def write_nb(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A notebook")] +
                                  [nbformat.v4.new_code_cell(s) for s in sources])
    nbformat.write(nb, str(path))
    return path


def test_cli_run_success_and_output(target: str, tmp_path: Path) -> None:
    nb = write_nb(tmp_path / "ok.ipynb", "x = 6", "print('x is', x)", "x * 7")
    out = tmp_path / "out.ipynb"
    p = cli("--target", target, "run", str(nb), "--timeout", "60", "--output", str(out))
    assert p.returncode == 0, p.stderr
    assert "x is 6\n" in p.stdout and "42\n" in p.stdout
    assert p.stdout.count(" OK ---") == 3
    executed = nbformat.read(str(out), as_version=4)
    nbformat.validate(executed)
    assert executed.cells[2].outputs[0].text == "x is 6\n"
    assert executed.cells[3].execution_count == 3


def test_cli_run_failing_notebook(target: str, tmp_path: Path) -> None:
    nb = write_nb(tmp_path / "bad.ipynb", "a = 1", "print(undefined_name)", "print('never')")
    p = cli("--target", target, "run", str(nb))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "NameError: name 'undefined_name' is not defined" in p.stdout
    assert "skipped: PREVIOUS_FAILED" in p.stdout and "never" not in p.stdout
    assert "failed" in p.stderr


def test_cli_exec(target: str) -> None:
    p = cli("--target", target, "exec", "print(sum(range(10)))")
    assert (p.returncode, p.stdout) == (0, "45\n"), p.stderr
    p = cli("--target", target, "exec", "raise KeyError('k')")
    assert p.returncode == 1 and "KeyError: 'k'" in p.stdout


def test_cli_unreachable_and_bad_input(tmp_path: Path) -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = cli("--target", f"127.0.0.1:{port}", "exec", "1")
    assert p.returncode == 2 and "cannot reach the server" in p.stderr
    p = cli("--target", f"127.0.0.1:{port}", "run", str(tmp_path / "missing.ipynb"))
    assert p.returncode == 2 and "no such notebook" in p.stderr


def test_cli_token_file(auth_server: Server, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(f"{auth_server.token}\n")
    p = cli("--target", auth_server.target, "--token-file", str(token), "exec", "print('ok')")
    assert (p.returncode, p.stdout) == (0, "ok\n"), p.stderr
    token.write_text("wrong\n")
    p = cli("--target", auth_server.target, "--token-file", str(token), "exec", "print('ok')")
    assert p.returncode == 2 and "UNAUTHENTICATED" in p.stderr


def test_example_agent_loop(target: str) -> None:
    p = subprocess.run([sys.executable, str(CLIENT_DIR / "examples" / "agent_loop.py"), target],
                       env=ENV, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    # it really met both failures and repaired them
    assert "fixing NameError: name 'statistics' is not defined" in p.stdout
    assert "fixing NameError: name 'totl' is not defined" in p.stdout
    assert "answer: mean=4.000 median=4 total=44" in p.stdout


def test_example_follow_outputs(target: str) -> None:
    p = subprocess.run([sys.executable, str(CLIENT_DIR / "examples" / "follow_outputs.py"), target],
                       env=ENV, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "stdout: 'tick 2\\n'" in p.stdout and "ZeroDivisionError" in p.stdout
    assert "SHUTTING_DOWN" in p.stdout.splitlines()[-1]


def test_pip_install_offline(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(CLIENT_DIR, src, ignore=shutil.ignore_patterns(
        "__pycache__", "tests", "build", "*.egg-info"))
    target = tmp_path / "site"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps",
                        "--no-index", "--disable-pip-version-check", "--target", str(target),
                        str(src)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    check = ("import cellgate, cellgate.aio, cellgate.v1.kernel_gateway_pb2_grpc as g; "
             "print(cellgate.__file__); print(cellgate.__version__)")
    p = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(target)))
    assert p.returncode == 0, p.stderr
    path, version = p.stdout.split()
    assert path.startswith(str(target)) and version == "0.1.0"
    assert (target / "cellgate" / "py.typed").exists()
    assert (target / "cellgate" / "v1" / "kernel_gateway_pb2.pyi").exists()
    dist = list(target.glob("cellgate-0.1.0.dist-info"))
    assert dist, list(target.iterdir())
