"""The asyncio cellgate client: the same shape as :mod:`cellgate.client` on ``grpc.aio``.

    from cellgate.aio import Client

    async with Client("127.0.0.1:50051") as client:
        async with await client.start_kernel() as kernel:
            result = await kernel.execute("6 * 7")
            async for event in kernel.stream_outputs(follow=False):
                ...

Create the client inside the running event loop. Errors are the typed
:mod:`cellgate.errors`.
"""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, List, Mapping, Optional, Type, Union

import grpc
import grpc.aio

from cellgate import _requests as rq
from cellgate._resume import _ResumeState
from cellgate.client import ReconnectHook
from cellgate.errors import CellgateError, NotFound, StreamGap, from_rpc_error
from cellgate.types import (Cell, ExecutionResult, FileInfo, VariableTransfer, KernelInfo, KernelSpec, Notebook,
                            RunAllResult, ServerInfo)
from cellgate.v1 import execution_pb2, files_pb2, kernel_gateway_pb2 as gw
from cellgate.v1 import kernel_gateway_pb2_grpc as gw_grpc

__all__ = ["Client", "Kernel", "OutputStream"]

_UNSET: Any = object()


class Client:
    """An asyncio connection to a cellgate server (arguments as :class:`cellgate.Client`)."""

    def __init__(self, target: str, token: Optional[str] = None, *,
                 options: rq.ChannelOptions = None, rpc_timeout: Optional[float] = None,
                 credentials: Optional[grpc.ChannelCredentials] = None) -> None:
        self.target = target
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(target, options=rq.channel_options(options))
        else:
            self._channel = grpc.aio.secure_channel(target, credentials,
                                               options=rq.channel_options(options))
        self._stub = gw_grpc.KernelGatewayStub(self._channel)
        self._metadata = rq.auth_metadata(token)
        self._rpc_timeout = rpc_timeout

    async def _call(self, method: str, request: Any, timeout: Optional[float] = _UNSET) -> Any:
        if timeout is _UNSET:
            timeout = self._rpc_timeout
        try:
            return await getattr(self._stub, method)(request, metadata=self._metadata,
                                                     timeout=timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from e

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def start_kernel(self, kernel_spec: str = "", *,
                           env: Optional[Mapping[str, str]] = None, limits: rq.LimitsArg = None,
                           labels: Optional[Mapping[str, str]] = None,
                           notebook_ipynb: Optional[rq.IpynbArg] = None,
                           idle_timeout_seconds: int = 0,
                           timeout: Optional[float] = _UNSET) -> "Kernel":
        req = rq.start_kernel(kernel_spec, env, limits, labels, notebook_ipynb,
                              idle_timeout_seconds)
        info = KernelInfo.from_proto(await self._call("StartKernel", req, timeout))
        return Kernel(self, info.kernel_id, info)

    async def kernel(self, kernel_id: str, *, check: bool = True) -> "Kernel":
        info = await self.get_kernel(kernel_id) if check else None
        return Kernel(self, kernel_id, info)

    async def get_kernel(self, kernel_id: str) -> KernelInfo:
        return KernelInfo.from_proto(
            await self._call("GetKernel", gw.GetKernelRequest(kernel_id=kernel_id)))

    async def list_kernels(self, labels: Optional[Mapping[str, str]] = None) -> List[KernelInfo]:
        resp = await self._call("ListKernels",
                                gw.ListKernelsRequest(label_selector=dict(labels or {})))
        return [KernelInfo.from_proto(k) for k in resp.kernels]

    async def kernel_specs(self) -> List[KernelSpec]:
        resp = await self._call("ListKernelSpecs", gw.ListKernelSpecsRequest())
        return [KernelSpec.from_proto(s) for s in resp.kernel_specs]

    async def server_info(self, *, timeout: Optional[float] = _UNSET) -> ServerInfo:
        return await self._call("GetServerInfo", gw.GetServerInfoRequest(), timeout)

    async def transfer_variable(self, from_kernel: Any, name: str, to_kernel: Any, *,
                                as_name: Optional[str] = None,
                                timeout: Optional[float] = None) -> VariableTransfer:
        return VariableTransfer.from_proto(await self._call("TransferVariable",
                                                            rq.transfer_variable(
            from_kernel, name, to_kernel, as_name, timeout), None))


class Kernel:
    """An asyncio handle on one kernel (methods as :class:`cellgate.Kernel`, awaitable).
    ``async with`` shuts it down on exit."""

    def __init__(self, client: Client, kernel_id: str, info: Optional[KernelInfo] = None) -> None:
        self._client = client
        self.id: str = kernel_id
        self.initial_info: Optional[KernelInfo] = info

    @property
    def kernel_id(self) -> str:
        return self.id

    def __repr__(self) -> str:
        return f"aio.Kernel({self.id!r})"

    async def __aenter__(self) -> "Kernel":
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], *exc: Any) -> None:
        try:
            await self.shutdown()
        except NotFound:
            pass
        except CellgateError:
            if exc_type is None:
                raise

    async def _call(self, method: str, request: Any, timeout: Optional[float] = _UNSET) -> Any:
        return await self._client._call(method, request, timeout)

    async def info(self) -> KernelInfo:
        return await self._client.get_kernel(self.id)

    async def interrupt(self) -> KernelInfo:
        return KernelInfo.from_proto(
            await self._call("InterruptKernel", gw.InterruptKernelRequest(kernel_id=self.id)))

    async def restart(self) -> KernelInfo:
        return KernelInfo.from_proto(
            await self._call("RestartKernel", gw.RestartKernelRequest(kernel_id=self.id)))

    async def shutdown(self) -> None:
        await self._call("ShutdownKernel", gw.ShutdownKernelRequest(kernel_id=self.id))

    async def add_cell(self, source: str, *, cell_type: str = "code", index: Optional[int] = None,
                       cell_id: Optional[str] = None,
                       metadata: Union[str, Mapping[str, Any], None] = None) -> Cell:
        return Cell.from_proto(await self._call("AddCell", rq.add_cell(
            self.id, source, cell_type, index, cell_id, metadata)))

    async def edit_cell(self, cell_id: str, source: str, *, cell_type: Optional[str] = None,
                        metadata: Union[str, Mapping[str, Any], None] = None) -> Cell:
        return Cell.from_proto(await self._call("EditCell", rq.edit_cell(
            self.id, cell_id, source, cell_type, metadata)))

    async def delete_cell(self, cell_id: str) -> None:
        await self._call("DeleteCell", gw.DeleteCellRequest(kernel_id=self.id, cell_id=cell_id))

    async def move_cell(self, cell_id: str, index: int) -> Cell:
        return Cell.from_proto(await self._call(
            "MoveCell", gw.MoveCellRequest(kernel_id=self.id, cell_id=cell_id, index=index)))

    async def cell(self, cell_id: str) -> Cell:
        return Cell.from_proto(await self._call(
            "GetCell", gw.GetCellRequest(kernel_id=self.id, cell_id=cell_id)))

    async def notebook(self, *, outputs: bool = True) -> Notebook:
        return Notebook.from_proto(await self._call(
            "GetNotebook", gw.GetNotebookRequest(kernel_id=self.id, omit_outputs=not outputs)))

    async def export_ipynb(self) -> bytes:
        resp = await self._call("ExportNotebook", gw.ExportNotebookRequest(kernel_id=self.id))
        return resp.ipynb

    async def import_ipynb(self, data: rq.IpynbArg, replace: bool = False, *,
                           outputs: bool = True) -> Notebook:
        return Notebook.from_proto(await self._call("ImportNotebook", gw.ImportNotebookRequest(
            kernel_id=self.id, ipynb=rq.ipynb_bytes(data), replace=replace,
            omit_outputs=not outputs)))

    async def run_cell(self, cell_id: str, *, timeout: Optional[float] = None,
                       on_timeout: str = "interrupt", cascade: str = "none") -> ExecutionResult:
        req = gw.RunCellRequest(kernel_id=self.id, cell_id=cell_id,
                                timeout_ms=rq.timeout_ms(timeout), on_timeout=rq.on_timeout(on_timeout),
                                cascade=rq.cascade(cascade))
        return ExecutionResult.from_proto(await self._call("RunCell", req, None))

    async def run_stale(self, *, stop_on_error: bool = True,
                        timeout: Optional[float] = None) -> RunAllResult:
        return RunAllResult.from_proto(await self._call(
            "RunStale", rq.run_stale(self.id, stop_on_error, timeout), None))

    async def run_all(self, *, stop_on_error: bool = True,
                      timeout: Optional[float] = None) -> RunAllResult:
        return RunAllResult.from_proto(await self._call(
            "RunAll", rq.run_all(self.id, stop_on_error, timeout), None))

    async def execute(self, code: str, *, timeout: Optional[float] = None,
                      on_timeout: str = "interrupt") -> ExecutionResult:
        req = gw.ExecuteRequest(kernel_id=self.id, code=code, timeout_ms=rq.timeout_ms(timeout),
                                on_timeout=rq.on_timeout(on_timeout))
        return ExecutionResult.from_proto(await self._call("Execute", req, None))

    async def upload_file(self, path: str, data: rq.UploadData, *, overwrite: bool = False,
                          timeout: Optional[float] = None) -> FileInfo:
        """As :meth:`cellgate.Kernel.upload_file` (a file object is read in this thread)."""
        source = rq.UploadSource(self.id, path, data, overwrite)
        try:
            return FileInfo.from_proto(await self._client._stub.UploadFile(
                source, metadata=self._client._metadata, timeout=timeout))
        except grpc.RpcError as e:
            if source.failure is not None:  # reading the data failed: nothing was written
                raise source.failure from None
            raise from_rpc_error(e) from e

    async def download_file(self, path: str, *, timeout: Optional[float] = None) -> bytes:
        parts: List[bytes] = []
        try:
            async for chunk in self._client._stub.DownloadFile(
                    files_pb2.DownloadFileRequest(kernel_id=self.id, path=path),
                    metadata=self._client._metadata, timeout=timeout):
                parts.append(chunk.data)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from e
        return b"".join(parts)

    async def list_files(self, path: str = "", *, recursive: bool = False) -> List[FileInfo]:
        response = await self._call("ListFiles", files_pb2.ListFilesRequest(
            kernel_id=self.id, path=path, recursive=recursive))
        return [FileInfo.from_proto(f) for f in response.files]

    async def delete_file(self, path: str, *, recursive: bool = False) -> None:
        await self._call("DeleteFile", files_pb2.DeleteFileRequest(kernel_id=self.id, path=path,
                                                            recursive=recursive))

    def stream_outputs(self, after_seq: int = 0, follow: bool = True, *,
                       cell_id: Optional[str] = None, execution_id: Optional[str] = None,
                       max_retries: int = 5, backoff: float = 0.05, max_backoff: float = 2.0,
                       on_reconnect: Optional[ReconnectHook] = None) -> "OutputStream":
        """``async for event in kernel.stream_outputs(...)``: resumable like the sync one."""
        return OutputStream(self._client, self.id, after_seq=after_seq, follow=follow,
                            cell_id=cell_id, execution_id=execution_id, max_retries=max_retries,
                            backoff=backoff, max_backoff=max_backoff, on_reconnect=on_reconnect)


class OutputStream(_ResumeState, AsyncIterator[execution_pb2.OutputEvent]):
    """A resumable asyncio ``StreamOutputs``; attributes as :class:`cellgate.OutputStream`."""

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
        self._call: Any = self._open()

    def _open(self) -> Any:
        return self._client._stub.StreamOutputs(self._request(), metadata=self._client._metadata)

    def __aiter__(self) -> "OutputStream":
        return self

    async def __anext__(self) -> execution_pb2.OutputEvent:
        while True:
            if self._done or self._closed:
                raise StopAsyncIteration
            try:
                event = await self._call.read()
            except asyncio.CancelledError:
                if self._closed:
                    raise StopAsyncIteration from None
                raise
            except grpc.RpcError as e:
                if self._closed:
                    raise StopAsyncIteration from None
                err = from_rpc_error(e)
                if self._should_retry(err):
                    await self._reconnect(err)
                    continue
                self._done = True
                raise self._final_error(err) from e
            if event is grpc.aio.EOF:
                self._done = True
                raise StopAsyncIteration
            try:
                if not self._admit(event):
                    continue
            except StreamGap:
                self._done = True
                self.cancel()
                raise
            return event

    async def _reconnect(self, err: CellgateError) -> None:
        delay = self._count_reconnect(err)
        if delay is not None:
            await asyncio.sleep(delay)
        if not self._closed:
            self._call = self._open()

    def cancel(self) -> None:
        """Stops the stream; the iteration ends."""
        self._closed = True
        self._call.cancel()

    close = cancel

    async def __aenter__(self) -> "OutputStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.cancel()
