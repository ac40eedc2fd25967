"""Typed errors raised by the cellgate client.

Every wrapper method converts a failed gRPC call into a subclass of :class:`CellgateError`
chosen by its status code (see docs/api.md §8 for which RPC fails with which code and why);
no method lets a raw ``grpc.RpcError`` escape.

Execution outcomes (an exception in a cell, a timeout, a dead kernel during a run) are *not*
errors: they come back as an :class:`~cellgate.types.ExecutionResult` whose ``status`` says
what happened.
"""
from __future__ import annotations

from typing import Dict, Optional, Type

import grpc

__all__ = [
    "CellgateError",
    "Cancelled",
    "UnknownError",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
    "StreamGap",
    "from_rpc_error",
]


class CellgateError(Exception):
    """A failed cellgate RPC.

    Attributes:
        code: the gRPC status code (``grpc.StatusCode``).
        message: the server's (or gRPC's) message, e.g. ``"kernel_id: no kernel '…'"``.
    """

    default_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, code: Optional[grpc.StatusCode] = None, message: str = "") -> None:
        self.code: grpc.StatusCode = code if code is not None else self.default_code
        self.message: str = message
        super().__init__(f"{self.code.name}: {message}" if message else self.code.name)

    @property
    def code_name(self) -> str:
        """The status code's name, e.g. ``"NOT_FOUND"``."""
        return self.code.name


class Cancelled(CellgateError):
    """The call was cancelled (by this client)."""

    default_code = grpc.StatusCode.CANCELLED


class UnknownError(CellgateError):
    default_code = grpc.StatusCode.UNKNOWN


class InvalidArgument(CellgateError):
    """Malformed input; the message starts with the field's path and says why."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(CellgateError):
    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(CellgateError):
    """Unknown kernel (never existed or shut down) or unknown cell."""

    default_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(CellgateError):
    """AddCell with a ``cell_id`` already in the notebook."""

    default_code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(CellgateError):
    default_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(CellgateError):
    """A server cap (max kernels, max cells), a stream cut off for falling behind, or a
    message over a gRPC size limit."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(CellgateError):
    """The kernel cannot do it now: dead, shutting down, restarting, or the cell is busy."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(CellgateError):
    default_code = grpc.StatusCode.ABORTED


class OutOfRange(CellgateError):
    """StreamOutputs ``after_seq`` evicted from the log or beyond its last seq."""

    default_code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(CellgateError):
    default_code = grpc.StatusCode.UNIMPLEMENTED


class Internal(CellgateError):
    default_code = grpc.StatusCode.INTERNAL


class Unavailable(CellgateError):
    """Server unreachable or draining, or a kernel failed to start."""

    default_code = grpc.StatusCode.UNAVAILABLE


class DataLoss(CellgateError):
    default_code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(CellgateError):
    """Missing or wrong bearer token."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class StreamGap(OutOfRange):
    """A resumable output stream could not continue without losing events.

    Raised by :class:`~cellgate.client.OutputStream` when resuming from ``last_seq`` is no
    longer possible (the events after it were evicted from the kernel's log). Resync from a
    snapshot: ``kernel.notebook()`` then ``kernel.stream_outputs(after_seq=nb.last_seq)``.

    Attributes:
        last_seq: the seq of the last event the stream yielded (or the ``after_seq`` it
            started from if it yielded none).
    """

    def __init__(self, code: Optional[grpc.StatusCode] = None, message: str = "",
                 *, last_seq: int = 0) -> None:
        super().__init__(code, message)
        self.last_seq: int = last_seq


_BY_CODE: Dict[grpc.StatusCode, Type[CellgateError]] = {
    cls.default_code: cls
    for cls in (Cancelled, UnknownError, InvalidArgument, DeadlineExceeded, NotFound,
                AlreadyExists, PermissionDenied, ResourceExhausted, FailedPrecondition,
                Aborted, OutOfRange, Unimplemented, Internal, Unavailable, DataLoss,
                Unauthenticated)
}


def error_class(code: grpc.StatusCode) -> Type[CellgateError]:
    """The :class:`CellgateError` subclass for a gRPC status code."""
    return _BY_CODE.get(code, CellgateError)


def from_rpc_error(err: grpc.RpcError) -> CellgateError:
    """Converts a ``grpc.RpcError`` (sync or ``grpc.aio.AioRpcError``) into a typed error."""
    try:
        code = err.code()  # type: ignore[attr-defined]
    except Exception:  # pragma: no cover - an RpcError that is not a Call
        code = grpc.StatusCode.UNKNOWN
    try:
        message = err.details() or ""  # type: ignore[attr-defined]
    except Exception:  # pragma: no cover
        message = str(err)
    if code is None:
        code = grpc.StatusCode.UNKNOWN
    exc = error_class(code)(code, message)
    exc.__cause__ = err
    return exc
