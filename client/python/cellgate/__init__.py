"""Python client for cellgate, a headless gRPC gateway to Jupyter kernels.

    from cellgate import Client

    with Client("127.0.0.1:50051") as client, client.start_kernel() as kernel:
        result = kernel.execute("print('hi'); 6 * 7")
        print(result.ok, result.status, result.text)     # True OK hi\\n42\\n

:mod:`cellgate.aio` has the same API on asyncio. The RPCs' behaviour, the event model and the
errors are documented in docs/api.md; the generated protobuf modules are in ``cellgate.v1``.
"""
from cellgate._requests import tls_credentials
from cellgate.client import Client, Kernel, OutputStream, ReconnectHook
from cellgate.errors import (Aborted, AlreadyExists, Cancelled, CellgateError, DataLoss,
                             DeadlineExceeded, FailedPrecondition, Internal, InvalidArgument,
                             NotFound, OutOfRange, PermissionDenied, ResourceExhausted,
                             StreamGap, Unauthenticated, Unavailable, Unimplemented, UnknownError)
from cellgate.types import (AnalysisStatus, Cell, CellState, CellType, Dependency,
                            DependencyGraph, ErrorInfo, FileInfo, FileKind, VariableTransfer, ExecutionResult,
                            ExecutionStatus, InterruptMode, KernelInfo, KernelSpec, KernelState,
                            LastRun, Notebook, Output, OutputEvent, ResourceLimits, RunAllResult,
                            ServerInfo, SkippedCell, SkipReason, describe_event, event_kind)

__version__ = "0.1.0"

__all__ = [
    "Client", "Kernel", "OutputStream", "ReconnectHook", "tls_credentials",
    "CellgateError", "Aborted", "AlreadyExists", "Cancelled", "DataLoss", "DeadlineExceeded",
    "FailedPrecondition", "Internal", "InvalidArgument", "NotFound", "OutOfRange",
    "PermissionDenied", "ResourceExhausted", "StreamGap", "Unauthenticated", "Unavailable",
    "Unimplemented", "UnknownError",
    "AnalysisStatus", "Cell", "CellState", "CellType", "Dependency", "DependencyGraph", "ErrorInfo",
    "FileInfo", "FileKind", "VariableTransfer", "ExecutionResult", "ExecutionStatus",
    "InterruptMode", "KernelInfo", "KernelSpec", "KernelState", "LastRun", "Notebook", "Output",
    "OutputEvent", "ResourceLimits", "RunAllResult", "ServerInfo", "SkippedCell", "SkipReason",
    "describe_event", "event_kind",
    "__version__",
]
