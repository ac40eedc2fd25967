"""The synchronous cellgate client.

    from cellgate import Client

    with Client("127.0.0.1:50051") as client, client.start_kernel() as kernel:
        cell = kernel.add_cell("print('hi'); 6 * 7")
        result = kernel.run_cell(cell.cell_id)
        print(result.status, result.text)        # OK hi\\n42\\n

Every method raises a :mod:`cellgate.errors` subclass of ``CellgateError`` when the RPC fails
(never a raw ``grpc.RpcError``). The RPCs' behaviour and errors are documented in docs/api.md.
"""
from __future__ import annotations

import threading
import os
from typing import (Any, BinaryIO, Callable, Iterator, List, Mapping, Optional, Type,
                    Union)

import grpc

from cellgate import _requests as rq
from cellgate._resume import _ResumeState
from cellgate.errors import CellgateError, NotFound, StreamGap, from_rpc_error
from cellgate.types import (Cell, ExecutionResult, FileInfo, KernelInfo, KernelSpec, Notebook,
                            RunAllResult, ServerInfo, VariableTransfer)
from cellgate.v1 import execution_pb2, files_pb2, kernel_gateway_pb2 as gw
from cellgate.v1 import kernel_gateway_pb2_grpc as gw_grpc

__all__ = ["Client", "Kernel", "OutputStream", "ReconnectHook"]

_UNSET: Any = object()

#: Called before each reconnect of an :class:`OutputStream` with the error that ended the
#: previous attempt and the attempt number (1 for the first retry since the last progress).
ReconnectHook = Callable[[CellgateError, int], None]


class Client:
    """A connection to a cellgate server.

    Args:
        target: ``HOST:PORT`` or ``unix:/path``.
        token: bearer token, sent as ``authorization: Bearer <token>`` on every call.
        options: extra gRPC channel options (a list of pairs or a dict); the receive size limit
            is unlimited by default because results and notebooks can exceed 4 MiB.
        rpc_timeout: a deadline in seconds for the calls that do not run code (everything but
            RunCell, RunAll, Execute and StreamOutputs); ``None`` = no deadline.
        credentials: channel credentials for a server that serves TLS, e.g.
            :func:`cellgate.tls_credentials`; ``None`` = plaintext.
    """

    def __init__(self, target: str, token: Optional[str] = None, *,
                 options: rq.ChannelOptions = None, rpc_timeout: Optional[float] = None,
                 credentials: Optional[grpc.ChannelCredentials] = None) -> None:
        self.target = target
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=rq.channel_options(options))
        else:
            self._channel = grpc.secure_channel(target, credentials,
                                               options=rq.channel_options(options))
        self._stub = gw_grpc.KernelGatewayStub(self._channel)
        self._metadata = rq.auth_metadata(token)
        self._rpc_timeout = rpc_timeout

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, method: str, request: Any, timeout: Optional[float] = _UNSET) -> Any:
        if timeout is _UNSET:
            timeout = self._rpc_timeout
        try:
            return getattr(self._stub, method)(request, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from e

    def close(self) -> None:
        """Closes the channel (kernels keep running on the server)."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- kernels ----------------------------------------------------------------------------

    def start_kernel(self, kernel_spec: str = "", *, env: Optional[Mapping[str, str]] = None,
                     limits: rq.LimitsArg = None, labels: Optional[Mapping[str, str]] = None,
                     notebook_ipynb: Optional[rq.IpynbArg] = None,
                     idle_timeout_seconds: int = 0,
                     timeout: Optional[float] = _UNSET) -> "Kernel":
        """Starts a kernel (``kernel_spec`` empty = the server's default, ``python3``) and
        returns once it answered ``kernel_info``. ``limits``: a ``ResourceLimits`` or a dict
        such as ``{"address_space_bytes": 2 << 30}`` (only tighter than the server's caps).
        ``notebook_ipynb``: .ipynb bytes / JSON text / dict / path whose cells become the
        notebook (nothing is run). Use the returned kernel as a context manager to shut it
        down at the end."""
        req = rq.start_kernel(kernel_spec, env, limits, labels, notebook_ipynb,
                              idle_timeout_seconds)
        info = KernelInfo.from_proto(self._call("StartKernel", req, timeout))
        return Kernel(self, info.kernel_id, info)

    def kernel(self, kernel_id: str, *, check: bool = True) -> "Kernel":
        """A handle on an existing kernel; with ``check`` (default) GetKernel is called first,
        so an unknown id raises ``NotFound`` here."""
        info = self.get_kernel(kernel_id) if check else None
        return Kernel(self, kernel_id, info)

    def get_kernel(self, kernel_id: str) -> KernelInfo:
        return KernelInfo.from_proto(self._call("GetKernel", gw.GetKernelRequest(kernel_id=kernel_id)))

    def list_kernels(self, labels: Optional[Mapping[str, str]] = None) -> List[KernelInfo]:
        """Every kernel (any state) carrying all of ``labels`` with those values."""
        resp = self._call("ListKernels", gw.ListKernelsRequest(label_selector=dict(labels or {})))
        return [KernelInfo.from_proto(k) for k in resp.kernels]

    def kernel_specs(self) -> List[KernelSpec]:
        """The kernelspecs StartKernel accepts, sorted by name."""
        resp = self._call("ListKernelSpecs", gw.ListKernelSpecsRequest())
        return [KernelSpec.from_proto(s) for s in resp.kernel_specs]

    def server_info(self, *, timeout: Optional[float] = _UNSET) -> ServerInfo:
        """Version, sandbox layers, caps, defaults, kernel counts (the protobuf message)."""
        return self._call("GetServerInfo", gw.GetServerInfoRequest(), timeout)

    def transfer_variable(self, from_kernel: Union[str, "Kernel"], name: str,
                          to_kernel: Union[str, "Kernel"], *, as_name: Optional[str] = None,
                          timeout: Optional[float] = None) -> VariableTransfer:
        """Copies the value of ``name`` in one Python kernel to ``as_name`` (default: the same
        name) in another, with pickle. ``timeout`` (seconds; None = the server default) bounds
        how long each kernel may keep it waiting. Unpickling can run code the pickle names:
        transfer only from kernels you would trust to run code in the target (docs/api.md)."""
        return VariableTransfer.from_proto(self._call("TransferVariable", rq.transfer_variable(
            from_kernel, name, to_kernel, as_name, timeout), None))


class Kernel:
    """A handle on one kernel: its notebook, executions and event stream.

    As a context manager it shuts the kernel down on exit.
    """

    def __init__(self, client: Client, kernel_id: str, info: Optional[KernelInfo] = None) -> None:
        self._client = client
        self.id: str = kernel_id
        #: What the server last said about this kernel when the handle was made (may be None).
        self.initial_info: Optional[KernelInfo] = info

    @property
    def kernel_id(self) -> str:
        return self.id

    def __repr__(self) -> str:
        return f"Kernel({self.id!r})"

    def __enter__(self) -> "Kernel":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], *exc: Any) -> None:
        try:
            self.shutdown()
        except NotFound:
            pass
        except CellgateError:
            if exc_type is None:
                raise

    def _call(self, method: str, request: Any, timeout: Optional[float] = _UNSET) -> Any:
        return self._client._call(method, request, timeout)

    # -- kernel -----------------------------------------------------------------------------

    def info(self) -> KernelInfo:
        """GetKernel: state, language, counts, ``last_seq``, limits, death reason…"""
        return self._client.get_kernel(self.id)

    def interrupt(self) -> KernelInfo:
        """Interrupts the running execution; queued ones end CANCELLED. Returns at once."""
        return KernelInfo.from_proto(
            self._call("InterruptKernel", gw.InterruptKernelRequest(kernel_id=self.id)))

    def restart(self) -> KernelInfo:
        """Replaces the kernel process (variables lost, cells kept and marked STALE)."""
        return KernelInfo.from_proto(
            self._call("RestartKernel", gw.RestartKernelRequest(kernel_id=self.id)))

    def shutdown(self) -> None:
        """Shuts the kernel down (graceful, then forced); later calls raise NotFound."""
        self._call("ShutdownKernel", gw.ShutdownKernelRequest(kernel_id=self.id))

    # -- cells ------------------------------------------------------------------------------

    def add_cell(self, source: str, *, cell_type: str = "code", index: Optional[int] = None,
                 cell_id: Optional[str] = None,
                 metadata: Union[str, Mapping[str, Any], None] = None) -> Cell:
        """Adds a cell (appended unless ``index`` is given). A client-chosen ``cell_id`` makes
        retries idempotent: the same id again raises ``AlreadyExists``."""
        return Cell.from_proto(self._call("AddCell", rq.add_cell(
            self.id, source, cell_type, index, cell_id, metadata)))

    def edit_cell(self, cell_id: str, source: str, *, cell_type: Optional[str] = None,
                  metadata: Union[str, Mapping[str, Any], None] = None) -> Cell:
        """Replaces the cell's source (always pass the full source); ``cell_type`` /
        ``metadata`` None = unchanged."""
        return Cell.from_proto(self._call("EditCell", rq.edit_cell(
            self.id, cell_id, source, cell_type, metadata)))

    def delete_cell(self, cell_id: str) -> None:
        self._call("DeleteCell", gw.DeleteCellRequest(kernel_id=self.id, cell_id=cell_id))

    def move_cell(self, cell_id: str, index: int) -> Cell:
        """Moves the cell to position ``index`` (0..count-1)."""
        return Cell.from_proto(self._call(
            "MoveCell", gw.MoveCellRequest(kernel_id=self.id, cell_id=cell_id, index=index)))

    def cell(self, cell_id: str) -> Cell:
        return Cell.from_proto(self._call(
            "GetCell", gw.GetCellRequest(kernel_id=self.id, cell_id=cell_id)))

    def notebook(self, *, outputs: bool = True) -> Notebook:
        """Every cell in order with stored outputs, and the ``last_seq`` the snapshot includes.
        ``outputs=False``: the cells without their outputs (ids, sources, states, analyses)."""
        return Notebook.from_proto(self._call(
            "GetNotebook", gw.GetNotebookRequest(kernel_id=self.id, omit_outputs=not outputs)))

    def export_ipynb(self) -> bytes:
        """The notebook as nbformat 4.5 JSON bytes."""
        return self._call("ExportNotebook", gw.ExportNotebookRequest(kernel_id=self.id)).ipynb

    def import_ipynb(self, data: rq.IpynbArg, replace: bool = False, *,
                     outputs: bool = True) -> Notebook:
        """Imports .ipynb cells (bytes, JSON text, a dict/NotebookNode or a path); appended, or
        replacing the notebook with ``replace=True``. Nothing is run. Returns the notebook;
        ``outputs=False``: its cells without the outputs (which are imported all the same)."""
        return Notebook.from_proto(self._call("ImportNotebook", gw.ImportNotebookRequest(
            kernel_id=self.id, ipynb=rq.ipynb_bytes(data), replace=replace,
            omit_outputs=not outputs)))

    # -- execution --------------------------------------------------------------------------

    def run_cell(self, cell_id: str, *, timeout: Optional[float] = None,
                 on_timeout: str = "interrupt", cascade: str = "none") -> ExecutionResult:
        """Runs a code cell and waits for its result. ``timeout`` (seconds, None = the server's
        default) counts from when the kernel starts it; at expiry the kernel is interrupted
        (``on_timeout="interrupt"``) or left running (``"keep_running"``) and the result is
        ``TIMEOUT``. Failures of the code are results (``status``), not exceptions.

        ``cascade="dependents"`` then runs every cell depending on it (what its run makes
        stale); ``"upstream"`` first runs the cells it depends on that are not OK. Their
        results are in ``result.cascade`` (a :class:`RunAllResult`); ``timeout`` is per cell."""
        req = gw.RunCellRequest(kernel_id=self.id, cell_id=cell_id,
                                timeout_ms=rq.timeout_ms(timeout), on_timeout=rq.on_timeout(on_timeout),
                                cascade=rq.cascade(cascade))
        return ExecutionResult.from_proto(self._call("RunCell", req, None))

    def run_stale(self, *, stop_on_error: bool = True,
                  timeout: Optional[float] = None) -> RunAllResult:
        """Runs every STALE code cell and every cell depending on one, in notebook order."""
        return RunAllResult.from_proto(self._call(
            "RunStale", rq.run_stale(self.id, stop_on_error, timeout), None))

    def run_all(self, *, stop_on_error: bool = True, timeout: Optional[float] = None) -> RunAllResult:
        """Runs every non-empty code cell in order; ``timeout`` is per cell (seconds)."""
        return RunAllResult.from_proto(self._call(
            "RunAll", rq.run_all(self.id, stop_on_error, timeout), None))

    def execute(self, code: str, *, timeout: Optional[float] = None,
                on_timeout: str = "interrupt") -> ExecutionResult:
        """Runs scratch code (not stored as a cell) in the kernel's queue."""
        req = gw.ExecuteRequest(kernel_id=self.id, code=code, timeout_ms=rq.timeout_ms(timeout),
                                on_timeout=rq.on_timeout(on_timeout))
        return ExecutionResult.from_proto(self._call("Execute", req, None))

    # -- files in the kernel's working directory (docs/api.md, Files) ----------------------

    def upload_file(self, path: str, data: rq.UploadData, *, overwrite: bool = False,
                    timeout: Optional[float] = None) -> FileInfo:
        """Writes ``data`` (bytes, a ``pathlib.Path`` of a local file, or a binary file object)
        to ``path`` in the kernel's working directory, in 1 MiB chunks; the kernel's code sees it
        at once. Nothing appears under ``path`` unless the whole upload arrived. An existing
        file is replaced only with ``overwrite=True`` (else ``AlreadyExists``)."""
        source = rq.UploadSource(self.id, path, data, overwrite)
        try:
            return FileInfo.from_proto(self._client._stub.UploadFile(
                source, metadata=self._client._metadata, timeout=timeout))
        except grpc.RpcError as e:
            if source.failure is not None:  # reading the data failed: nothing was written
                raise source.failure from None
            raise from_rpc_error(e) from e

    def send_variable(self, name: str, to_kernel: Union[str, "Kernel"], *,
                      as_name: Optional[str] = None,
                      timeout: Optional[float] = None) -> VariableTransfer:
        """:meth:`Client.transfer_variable` from this kernel."""
        return self._client.transfer_variable(self, name, to_kernel, as_name=as_name,
                                              timeout=timeout)

    def _download(self, path: str, timeout: Optional[float]) -> Iterator[Any]:
        try:
            yield from self._client._stub.DownloadFile(
                files_pb2.DownloadFileRequest(kernel_id=self.id, path=path),
                metadata=self._client._metadata, timeout=timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from e

    def download_file(self, path: str, *, timeout: Optional[float] = None) -> bytes:
        """The bytes of a regular file of the kernel's working directory."""
        return b"".join(chunk.data for chunk in self._download(path, timeout))

    def download_file_to(self, path: str, destination: Union["os.PathLike[str]", BinaryIO], *,
                         timeout: Optional[float] = None) -> FileInfo:
        """Streams a file of the kernel's working directory into a local path or binary file
        object, a chunk at a time; returns what the file was when it was opened."""
        info: Optional[FileInfo] = None
        if isinstance(destination, os.PathLike):
            with open(destination, "wb") as f:
                return self.download_file_to(path, f, timeout=timeout)
        for chunk in self._download(path, timeout):
            if info is None:
                info = FileInfo.from_proto(chunk.info)
            destination.write(chunk.data)
        assert info is not None
        return info

    def list_files(self, path: str = "", *, recursive: bool = False) -> List[FileInfo]:
        """The entries of a directory of the workspace ("" = the working directory), sorted."""
        response = self._call("ListFiles", files_pb2.ListFilesRequest(
            kernel_id=self.id, path=path, recursive=recursive))
        return [FileInfo.from_proto(f) for f in response.files]

    def delete_file(self, path: str, *, recursive: bool = False) -> None:
        """Deletes a file, symbolic link or directory (a non-empty one with ``recursive``)."""
        self._call("DeleteFile", files_pb2.DeleteFileRequest(kernel_id=self.id, path=path,
                                                      recursive=recursive))

    def stream_outputs(self, after_seq: int = 0, follow: bool = True, *,
                       cell_id: Optional[str] = None, execution_id: Optional[str] = None,
                       max_retries: int = 5, backoff: float = 0.05, max_backoff: float = 2.0,
                       on_reconnect: Optional[ReconnectHook] = None) -> "OutputStream":
        """The kernel's events with ``seq > after_seq``, then (``follow``) live ones.

        Returns an :class:`OutputStream`: iterate it for ``OutputEvent`` protobuf messages.
        It reconnects by itself (from the last seq it yielded) when the stream breaks with
        UNAVAILABLE, RESOURCE_EXHAUSTED (cut off for falling behind) or INTERNAL, at most
        ``max_retries`` times in a row without progress, so it never yields a gap or a
        duplicate; when a gap cannot be avoided it raises :class:`~cellgate.errors.StreamGap`
        (an ``OutOfRange``) carrying ``last_seq``. It ends when ``follow`` is False and the log
        was replayed, or when the kernel is shut down. ``close()`` stops it (also from another
        thread)."""
        return OutputStream(self._client, self.id, after_seq=after_seq, follow=follow,
                            cell_id=cell_id, execution_id=execution_id, max_retries=max_retries,
                            backoff=backoff, max_backoff=max_backoff, on_reconnect=on_reconnect)


class OutputStream(_ResumeState, Iterator[execution_pb2.OutputEvent]):
    """A resumable ``StreamOutputs`` (see :meth:`Kernel.stream_outputs`).

    Attributes:
        last_seq: seq of the last event yielded (``after_seq`` before the first).
        reconnects: how many times the stream was reopened.
        errors: the errors that caused those reconnects, in order.
    """

    def __init__(self, client: Client, kernel_id: str, *, after_seq: int = 0, follow: bool = True,
                 cell_id: Optional[str] = None, execution_id: Optional[str] = None,
                 max_retries: int = 5, backoff: float = 0.05, max_backoff: float = 2.0,
                 on_reconnect: Optional[ReconnectHook] = None) -> None:
        self._client = client
        super().__init__(kernel_id, after_seq=after_seq, follow=follow, cell_id=cell_id,
                         execution_id=execution_id, max_retries=max_retries, backoff=backoff,
                         max_backoff=max_backoff, on_reconnect=on_reconnect)
        self._closed = False
        self._done = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._call: Any = self._open()   # the RPC starts now, not at the first next()

    def _open(self) -> Any:
        return self._client._stub.StreamOutputs(self._request(), metadata=self._client._metadata)

    def __iter__(self) -> "OutputStream":
        return self

    def __next__(self) -> execution_pb2.OutputEvent:
        while True:
            if self._done or self._closed:
                raise StopIteration
            try:
                event = next(self._call)
            except StopIteration:
                self._done = True
                raise
            except grpc.RpcError as e:
                if self._closed:
                    raise StopIteration from None
                err = from_rpc_error(e)
                if self._should_retry(err):
                    self._reconnect(err)
                    continue
                self._done = True
                raise self._final_error(err) from e
            try:
                if not self._admit(event):
                    continue
            except StreamGap:
                self._done = True
                self.cancel()
                raise
            return event

    def _reconnect(self, err: CellgateError) -> None:
        delay = self._count_reconnect(err)
        if delay is not None and self._wake.wait(delay):  # close() interrupts the wait
            return
        with self._lock:
            if not self._closed:
                self._call = self._open()

    def cancel(self) -> None:
        """Stops the stream; a pending ``next()`` (also in another thread) ends the iteration."""
        with self._lock:
            self._closed = True
            self._wake.set()
            self._call.cancel()

    close = cancel

    def __enter__(self) -> "OutputStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cancel()
