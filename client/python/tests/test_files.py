"""Files in a kernel's workspace against a real server and real ipykernels: uploads the kernel
reads at once, downloads of what it wrote, the ways out of the workspace refused, the caps."""
from __future__ import annotations

import hashlib
import io
import threading
import time
from pathlib import Path
from typing import Iterator, List

import pytest

import cellgate
from cellgate import Client, FileKind
from conftest import Server


@pytest.fixture()
def kernel(client: Client) -> Iterator[cellgate.Kernel]:
    with client.start_kernel(labels={"suite": "files"}) as k:
        yield k


def run(kernel: cellgate.Kernel, code: str) -> str:
    result = kernel.execute(code)
    assert result.ok, result.text
    return result.text


def test_a_50_mb_csv_uploaded_in_chunks_is_read_by_pandas(kernel: cellgate.Kernel,
                                                          tmp_path: Path) -> None:
    rows = 1_500_000
    csv = tmp_path / "big.csv"
    with open(csv, "w") as f:
        f.write("id,value,label\n")
        for i in range(rows):
            f.write(f"{i},{i * 7 % 1000},category-{i % 97:03d}-padding-xx\n")
    size = csv.stat().st_size
    assert size > 50 << 20
    info = kernel.upload_file("data/big.csv", csv)
    assert info.path == "data/big.csv" and info.size == size and info.kind is FileKind.FILE
    text = run(kernel, "import pandas as pd\n"
                       "df = pd.read_csv('data/big.csv')\n"
                       "print(len(df), df['value'].sum())")
    assert text == f"{rows} {sum(i * 7 % 1000 for i in range(rows))}\n"
    # Written with the kernel's uid: its code may change and delete it.
    assert run(kernel, "import os; st = os.stat('data/big.csv'); "
                       "print(st.st_uid == os.getuid())") == "True\n"


def test_a_png_a_cell_saved_downloads_byte_for_byte(kernel: cellgate.Kernel) -> None:
    digest = run(kernel, "import matplotlib\nmatplotlib.use('Agg')\n"
                         "import matplotlib.pyplot as plt, hashlib\n"
                         "plt.plot([1, 3, 2])\n"
                         "import os; os.makedirs('plots', exist_ok=True)\n"
                         "plt.savefig('plots/fig.png')\n"
                         "print(hashlib.sha256(open('plots/fig.png', 'rb').read()).hexdigest())")
    data = kernel.download_file("plots/fig.png")
    assert data.startswith(b"\x89PNG")
    assert hashlib.sha256(data).hexdigest() + "\n" == digest
    sink = io.BytesIO()
    info = kernel.download_file_to("plots/fig.png", sink)
    assert sink.getvalue() == data and info.size == len(data)
    listed = {f.path: f for f in kernel.list_files(recursive=True)}
    assert listed["plots"].kind is FileKind.DIRECTORY
    assert listed["plots/fig.png"].size == len(data)
    assert ".connection.json" not in listed, "the gateway's files are not listed"


def test_paths_out_of_the_workspace_are_refused(kernel: cellgate.Kernel) -> None:
    for bad in ("../outside.txt", "/etc/passwd", "a/../../b", ""):
        with pytest.raises(cellgate.InvalidArgument, match="path"):
            kernel.upload_file(bad, b"x")
        with pytest.raises(cellgate.InvalidArgument, match="path"):
            kernel.download_file(bad)
    # Links the kernel's code plants lead nowhere.
    run(kernel, "import os; os.symlink('/etc', 'etc'); os.symlink('/etc/hostname', 'host'); "
                "os.mkfifo('pipe')")
    with pytest.raises(cellgate.PermissionDenied, match="outside"):
        kernel.download_file("etc/passwd")
    with pytest.raises(cellgate.PermissionDenied, match="outside"):
        kernel.download_file("host")
    with pytest.raises(cellgate.PermissionDenied, match="outside"):
        kernel.upload_file("etc/cellgate-was-here", b"x")
    assert not Path("/etc/cellgate-was-here").exists()
    with pytest.raises(cellgate.PermissionDenied, match="fifo"):
        kernel.download_file("pipe")
    with pytest.raises(cellgate.PermissionDenied, match="gateway"):
        kernel.download_file(".connection.json")
    kinds = {f.path: f.kind for f in kernel.list_files()}
    assert kinds["etc"] is FileKind.SYMLINK and kinds["pipe"] is FileKind.OTHER
    kernel.delete_file("etc")  # the link, not /etc
    assert Path("/etc/passwd").exists()


def test_an_interrupted_upload_leaves_no_file(kernel: cellgate.Kernel) -> None:
    class Broken(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = 0

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            if self.sent >= 3 << 20:
                raise OSError("the source disk went away")
            self.sent += 1 << 20
            return b"x" * (1 << 20)

    with pytest.raises(Exception):
        kernel.upload_file("partial.bin", Broken())  # type: ignore[arg-type]
    deadline = time.monotonic() + 30
    while True:  # the server removes its temporary file when it sees the call end
        names = run(kernel, "import os; print(sorted(os.listdir('.')))")
        if "cellgate-upload" not in names or time.monotonic() > deadline:
            break
    assert "partial.bin" not in names and "cellgate-upload" not in names, names
    with pytest.raises(cellgate.NotFound):
        kernel.download_file("partial.bin")


def test_existing_files_are_replaced_only_when_asked_and_deleted(kernel: cellgate.Kernel) -> None:
    kernel.upload_file("notes.txt", b"first")
    with pytest.raises(cellgate.AlreadyExists):
        kernel.upload_file("notes.txt", b"second")
    kernel.upload_file("notes.txt", b"second", overwrite=True)
    assert kernel.download_file("notes.txt") == b"second"
    kernel.upload_file("d/e/f.txt", b"deep")
    with pytest.raises(cellgate.FailedPrecondition, match="not empty"):
        kernel.delete_file("d")
    kernel.delete_file("d", recursive=True)
    kernel.delete_file("notes.txt")
    assert not {"notes.txt", "d"} & {f.path for f in kernel.list_files()}
    with pytest.raises(cellgate.NotFound):
        kernel.delete_file("notes.txt")


def test_uploads_to_two_kernels_at_once(client: Client) -> None:
    with client.start_kernel() as a, client.start_kernel() as b:
        payloads = {a.id: bytes(range(256)) * 40_000, b.id: b"\xff\x00" * 5_000_000}
        errors: List[BaseException] = []

        def upload(kernel: cellgate.Kernel) -> None:
            try:
                kernel.upload_file("blob.bin", payloads[kernel.id])
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=upload, args=(k,)) for k in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors
        for kernel in (a, b):
            assert kernel.download_file("blob.bin") == payloads[kernel.id]


def test_caps_are_enforced() -> None:
    mib = 1 << 20
    server = Server(f"--max-upload-bytes={mib}", f"--max-workspace-bytes={2 * mib}")
    try:
        with server.client() as client, client.start_kernel() as kernel:
            caps = client.server_info().caps
            assert caps.max_upload_bytes == mib and caps.max_workspace_bytes == 2 * mib
            with pytest.raises(cellgate.ResourceExhausted, match="per file"):
                kernel.upload_file("big", b"x" * (mib + 1))
            with pytest.raises(cellgate.ResourceExhausted, match="per file"):
                kernel.upload_file("big", io.BytesIO(b"x" * (mib + 1)))  # size not known ahead
            # The kernel's own files (its IPython profile, say) count too.
            used = sum(f.size for f in kernel.list_files(recursive=True))
            assert used < mib
            kernel.upload_file("one", b"1" * mib)
            kernel.upload_file("two", b"2" * (mib - used - 4096))
            with pytest.raises(cellgate.ResourceExhausted, match="workspace"):
                kernel.upload_file("three", b"3" * 8192)
            names = {f.path for f in kernel.list_files()}
            assert {"one", "two"} <= names and not {"big", "three"} & names
    finally:
        assert server.stop() == 0, server.log_tail()
