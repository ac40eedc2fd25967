"""Request building and constants shared by the sync and asyncio clients."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import (Any, BinaryIO, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import grpc

from cellgate.errors import InvalidArgument
from cellgate.types import _to_proto_enum
from cellgate.v1 import execution_pb2, files_pb2, kernel_gateway_pb2 as gw, kernel_pb2, notebook_pb2

ChannelOptions = Union[Sequence[Tuple[str, Any]], Mapping[str, Any], None]
Metadata = Optional[Tuple[Tuple[str, str], ...]]
LimitsArg = Union[kernel_pb2.ResourceLimits, Mapping[str, Any], None]
IpynbArg = Union[bytes, bytearray, str, Mapping[str, Any], "os.PathLike[str]"]

# Results and notebooks can exceed gRPC's default 4 MiB receive limit (docs/api.md §1).
DEFAULT_CHANNEL_OPTIONS: Dict[str, Any] = {
    "grpc.max_receive_message_length": -1,
    "grpc.max_send_message_length": -1,
}

# Stream errors after which StreamOutputs is reopened from the last seq seen.
RETRYABLE_STREAM_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE,         # network blip, server restart in progress
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # cut off for falling behind
    grpc.StatusCode.INTERNAL,            # transport reset (RST_STREAM and the like)
})


def channel_options(options: ChannelOptions) -> List[Tuple[str, Any]]:
    merged = dict(DEFAULT_CHANNEL_OPTIONS)
    if options:
        items = options.items() if isinstance(options, Mapping) else options
        for key, value in items:
            merged[key] = value
    return list(merged.items())


PathArg = Union[str, "os.PathLike[str]", None]


def tls_credentials(ca_file: PathArg = None, cert_file: PathArg = None,
                    key_file: PathArg = None) -> grpc.ChannelCredentials:
    """TLS credentials for a server run with ``--tls-cert``/``--tls-key``.

    Args:
        ca_file: PEM CA certificates to trust the server's certificate by; ``None`` = the
            system's roots.
        cert_file, key_file: the client's PEM certificate chain and key, for a server run with
            ``--tls-client-ca`` (mutual TLS). Both or neither.
    """
    if (cert_file is None) != (key_file is None):
        raise InvalidArgument(
            message="tls_credentials: give both cert_file and key_file, or neither")

    def read(path: PathArg) -> Optional[bytes]:
        return None if path is None else Path(path).read_bytes()

    return grpc.ssl_channel_credentials(root_certificates=read(ca_file),
                                        private_key=read(key_file),
                                        certificate_chain=read(cert_file))


def auth_metadata(token: Optional[str]) -> Metadata:
    if token is None:
        return None
    token = token.strip()
    return (("authorization", f"Bearer {token}"),) if token else None


def timeout_ms(timeout: Optional[float], name: str = "timeout") -> int:
    """Seconds (float) to the proto's ``timeout_ms``; ``None`` = 0 = the server default."""
    if timeout is None:
        return 0
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None")
    if timeout > 0:
        return max(1, math.ceil(timeout * 1000))
    return int(timeout * 1000)  # 0 = server default; negative: the server says why it's wrong


def on_timeout(value: Any) -> int:
    try:
        return _to_proto_enum(execution_pb2.OnTimeout, "ON_TIMEOUT_", value)
    except ValueError:
        raise InvalidArgument(
            message=f"on_timeout: {value!r} is not one of 'interrupt', 'keep_running'") from None


def cascade(value: Any) -> int:
    try:
        return _to_proto_enum(gw.Cascade, "CASCADE_", value)
    except ValueError:
        raise InvalidArgument(
            message=f"cascade: {value!r} is not one of 'none', 'dependents', 'upstream'") from None


def cell_type(value: Any) -> int:
    if value is None:
        return notebook_pb2.CELL_TYPE_UNSPECIFIED
    try:
        return _to_proto_enum(notebook_pb2.CellType, "CELL_TYPE_", value)
    except ValueError:
        raise InvalidArgument(
            message=f"cell_type: {value!r} is not one of 'code', 'markdown', 'raw'") from None


def limits(value: LimitsArg) -> Optional[kernel_pb2.ResourceLimits]:
    if value is None:
        return None
    if isinstance(value, kernel_pb2.ResourceLimits):
        return value
    try:
        return kernel_pb2.ResourceLimits(**dict(value))
    except (ValueError, TypeError) as e:
        raise InvalidArgument(message=f"limits: {e}") from None


def metadata_json(value: Union[str, Mapping[str, Any], None]) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value)


def ipynb_bytes(data: IpynbArg) -> bytes:
    """Accepts .ipynb bytes, JSON text, a notebook dict (or nbformat NotebookNode), or a path."""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, os.PathLike):
        with open(data, "rb") as f:
            return f.read()
    if isinstance(data, Mapping):
        return json.dumps(data).encode("utf-8")
    raise TypeError("ipynb data must be bytes, JSON text, a notebook dict or a path")


def start_kernel(kernel_spec: str = "", env: Optional[Mapping[str, str]] = None,
                 limits_: LimitsArg = None, labels: Optional[Mapping[str, str]] = None,
                 notebook_ipynb: Optional[IpynbArg] = None,
                 idle_timeout_seconds: int = 0) -> gw.StartKernelRequest:
    req = gw.StartKernelRequest(kernel_spec=kernel_spec or "", env=dict(env or {}),
                                labels=dict(labels or {}),
                                idle_timeout_seconds=idle_timeout_seconds or 0)
    lim = limits(limits_)
    if lim is not None:
        req.limits.CopyFrom(lim)
    if notebook_ipynb is not None:
        req.notebook_ipynb = ipynb_bytes(notebook_ipynb)
    return req


def add_cell(kernel_id: str, source: str, cell_type_: Any, index: Optional[int],
             cell_id: Optional[str], metadata: Union[str, Mapping[str, Any], None]
             ) -> gw.AddCellRequest:
    req = gw.AddCellRequest(kernel_id=kernel_id, source=source, cell_type=cell_type(cell_type_),
                            cell_id=cell_id or "", metadata=metadata_json(metadata) or "")
    if index is not None:
        req.index = index
    return req


def edit_cell(kernel_id: str, cell_id: str, source: str, cell_type_: Any,
              metadata: Union[str, Mapping[str, Any], None]) -> gw.EditCellRequest:
    req = gw.EditCellRequest(kernel_id=kernel_id, cell_id=cell_id, source=source,
                             cell_type=cell_type(cell_type_))
    md = metadata_json(metadata)
    if md is not None:
        req.metadata = md
    return req


def run_stale(kernel_id: str, stop_on_error: bool,
              timeout: Optional[float]) -> gw.RunStaleRequest:
    return gw.RunStaleRequest(kernel_id=kernel_id, stop_on_error=bool(stop_on_error),
                              timeout_ms=timeout_ms(timeout))


def run_all(kernel_id: str, stop_on_error: bool, timeout: Optional[float]) -> gw.RunAllRequest:
    return gw.RunAllRequest(kernel_id=kernel_id, stop_on_error=bool(stop_on_error),
                            timeout_ms=timeout_ms(timeout))


def transfer_variable(from_kernel: Any, name: str, to_kernel: Any, as_name: Optional[str],
                      timeout: Optional[float]) -> files_pb2.TransferVariableRequest:
    """Kernels may be given as ids or handles (anything with an ``id``)."""
    return files_pb2.TransferVariableRequest(
        from_kernel_id=getattr(from_kernel, "id", from_kernel), name=name,
        to_kernel_id=getattr(to_kernel, "id", to_kernel), as_name=as_name or "",
        timeout_ms=timeout_ms(timeout))


#: What UploadFile takes: the bytes, a local file's path, or a binary file object.
UploadData = Union[bytes, bytearray, memoryview, "os.PathLike[str]", BinaryIO]
UPLOAD_CHUNK_BYTES = 1 << 20


class UploadSource:
    """The UploadFile request stream; ``failure`` keeps what went wrong reading the data (gRPC
    reports only that the iterator raised)."""

    def __init__(self, kernel_id: str, path: str, data: "UploadData", overwrite: bool) -> None:
        self._requests = upload_requests(kernel_id, path, data, overwrite)
        self.failure: Optional[BaseException] = None

    def __iter__(self) -> "UploadSource":
        return self

    def __next__(self) -> files_pb2.UploadFileRequest:
        try:
            return next(self._requests)
        except StopIteration:
            raise
        except BaseException as e:
            self.failure = e
            raise


def upload_requests(kernel_id: str, path: str, data: UploadData, overwrite: bool,
                    chunk_size: int = UPLOAD_CHUNK_BYTES) -> Iterator[files_pb2.UploadFileRequest]:
    """The UploadFile stream: the header, then the bytes in chunks."""
    if isinstance(data, str):
        raise TypeError("data must be bytes, a pathlib.Path or a binary file, not str "
                        "(encode text, or wrap a local path in pathlib.Path)")
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data)
        yield files_pb2.UploadFileRequest(header=files_pb2.UploadFileHeader(
            kernel_id=kernel_id, path=path, overwrite=overwrite, size=len(view)))
        for start in range(0, len(view), chunk_size):
            yield files_pb2.UploadFileRequest(chunk=bytes(view[start:start + chunk_size]))
        yield files_pb2.UploadFileRequest(end=files_pb2.UploadFileEnd())
        return
    if isinstance(data, os.PathLike):
        with open(data, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            yield from _file_chunks(kernel_id, path, f, overwrite, chunk_size, size)
        return
    yield from _file_chunks(kernel_id, path, data, overwrite, chunk_size, 0)


def _file_chunks(kernel_id: str, path: str, f: BinaryIO, overwrite: bool, chunk_size: int,
                 size: int) -> Iterator[files_pb2.UploadFileRequest]:
    yield files_pb2.UploadFileRequest(header=files_pb2.UploadFileHeader(
        kernel_id=kernel_id, path=path, overwrite=overwrite, size=size))
    while True:
        chunk = f.read(chunk_size)
        if not chunk:
            yield files_pb2.UploadFileRequest(end=files_pb2.UploadFileEnd())
            return
        yield files_pb2.UploadFileRequest(chunk=chunk)
