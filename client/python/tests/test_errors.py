"""Typed errors: every failed RPC surfaces as a cellgate.CellgateError subclass."""
from __future__ import annotations

import grpc
import pytest

import cellgate
from cellgate import Client
from conftest import Server


def test_not_found(client: Client, kernel: cellgate.Kernel) -> None:
    with pytest.raises(cellgate.NotFound) as e:
        client.kernel("0" * 32)
    assert e.value.code is grpc.StatusCode.NOT_FOUND and "kernel_id" in e.value.message
    assert isinstance(e.value, cellgate.CellgateError) and not isinstance(e.value, grpc.RpcError)
    with pytest.raises(cellgate.NotFound, match="no cell"):
        kernel.cell("no-such-cell")
    for call in (lambda: kernel.run_cell("no-such-cell"), lambda: kernel.delete_cell("nope"),
                 lambda: kernel.edit_cell("nope", "x"), lambda: kernel.move_cell("nope", 0)):
        with pytest.raises(cellgate.NotFound):
            call()
    ghost = client.kernel("f" * 32, check=False)
    with pytest.raises(cellgate.NotFound):
        ghost.notebook()


def test_invalid_argument_names_the_field(client: Client, kernel: cellgate.Kernel) -> None:
    with pytest.raises(cellgate.InvalidArgument) as e:
        client.kernel("not a valid id!")
    assert e.value.message.startswith("kernel_id")
    with pytest.raises(cellgate.InvalidArgument) as e:
        kernel.add_cell("x", cell_id="bad id with spaces")
    assert e.value.message.startswith("cell_id")
    with pytest.raises(cellgate.InvalidArgument) as e:
        client.start_kernel(limits={"address_space_bytes": 1 << 60})
    assert e.value.message.startswith("limits.address_space_bytes")
    with pytest.raises(cellgate.InvalidArgument) as e:
        client.start_kernel("no-such-spec")
    assert e.value.message.startswith("kernel_spec")
    with pytest.raises(cellgate.InvalidArgument) as e:
        client.list_kernels(labels={"bad key": "v"})
    assert "label_selector" in e.value.message
    with pytest.raises(cellgate.InvalidArgument) as e:
        kernel.add_cell("x", index=10_000)
    assert "index" in e.value.message
    with pytest.raises(cellgate.InvalidArgument) as e:
        kernel.run_cell(kernel.add_cell("# md", cell_type="markdown").cell_id)
    assert e.value.message.startswith("cell_id")
    with pytest.raises(cellgate.InvalidArgument) as e:
        kernel.execute("1", timeout=-1)
    assert "timeout_ms" in e.value.message
    with pytest.raises(cellgate.InvalidArgument, match="cell_type"):
        kernel.add_cell("x", cell_type="spreadsheet")


def test_already_exists(kernel: cellgate.Kernel) -> None:
    kernel.add_cell("x = 1", cell_id="twice")
    with pytest.raises(cellgate.AlreadyExists) as e:
        kernel.add_cell("x = 1", cell_id="twice")
    assert e.value.code is grpc.StatusCode.ALREADY_EXISTS


def test_out_of_range_on_stream(kernel: cellgate.Kernel) -> None:
    stream = kernel.stream_outputs(after_seq=10 ** 9, follow=False)
    with pytest.raises(cellgate.OutOfRange) as e:
        next(stream)
    assert isinstance(e.value, cellgate.StreamGap) and e.value.last_seq == 10 ** 9
    assert "beyond" in e.value.message
    with pytest.raises(cellgate.InvalidArgument, match="after_seq"):
        next(kernel.stream_outputs(after_seq=-1))


def test_unauthenticated(auth_server: Server) -> None:
    for token in (None, "wrong-token"):
        with Client(auth_server.target, token) as c:
            with pytest.raises(cellgate.Unauthenticated) as e:
                c.server_info()
            assert e.value.code is grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(cellgate.Unauthenticated):
                c.list_kernels()
            with pytest.raises(cellgate.Unauthenticated):
                next(c.kernel("a" * 32, check=False).stream_outputs())  # not retried
    with auth_server.client() as c:
        assert c.server_info().auth_required
        assert isinstance(c.list_kernels(), list)


def test_auth_token_on_every_call(auth_server: Server) -> None:
    with auth_server.client() as c, c.start_kernel() as k:
        assert k.execute("print(1)").text == "1\n"
        events = list(k.stream_outputs(follow=False))
        assert events and events[0].seq == 1


def test_unavailable_when_server_unreachable() -> None:
    import socket
    with socket.socket() as s:   # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Client(f"127.0.0.1:{port}") as c:
        with pytest.raises(cellgate.Unavailable):
            c.server_info(timeout=10)


def test_error_mapping_covers_status_codes() -> None:
    for code in grpc.StatusCode:
        if code is grpc.StatusCode.OK:
            continue
        cls = cellgate.errors.error_class(code)
        assert cls.default_code is code, code
        err = cls(code, "m")
        assert err.code is code and err.message == "m" and code.name in str(err)
