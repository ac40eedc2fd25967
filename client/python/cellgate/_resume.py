"""Resume bookkeeping shared by the sync and asyncio ``OutputStream``.

:class:`_ResumeState` holds what a resumable ``StreamOutputs`` must remember across reconnects
(the last seq yielded, the reconnect count and errors, the retry settings) and decides what to
do with each error and event; the streams themselves only do the I/O (a blocking iterator or
``async for``), the waiting and the closing.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

import grpc

from cellgate._requests import RETRYABLE_STREAM_CODES
from cellgate.errors import CellgateError, OutOfRange, StreamGap
from cellgate.v1 import execution_pb2, kernel_gateway_pb2 as gw

if TYPE_CHECKING:
    from cellgate.client import ReconnectHook


class _ResumeState:
    """Base of both ``OutputStream`` classes: their public resume attributes and logic."""

    def __init__(self, kernel_id: str, *, after_seq: int, follow: bool,
                 cell_id: Optional[str], execution_id: Optional[str], max_retries: int,
                 backoff: float, max_backoff: float,
                 on_reconnect: Optional[ReconnectHook]) -> None:
        self.kernel_id = kernel_id
        self.follow = follow
        self.cell_id = cell_id or ""
        self.execution_id = execution_id or ""
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.on_reconnect = on_reconnect
        self.last_seq: int = after_seq
        self.reconnects: int = 0
        self.errors: List[CellgateError] = []
        self._yielded_any = False
        self._attempt = 0           # reconnects since the last event yielded

    @property
    def filtered(self) -> bool:
        return bool(self.cell_id or self.execution_id)

    def _request(self) -> gw.StreamOutputsRequest:
        """The request that (re)opens the stream right after the last event yielded."""
        return gw.StreamOutputsRequest(kernel_id=self.kernel_id, after_seq=self.last_seq,
                                       follow=self.follow, cell_id=self.cell_id,
                                       execution_id=self.execution_id)

    def _should_retry(self, err: CellgateError) -> bool:
        """Whether the stream is reopened after ``err`` (else it ends with :meth:`_final_error`)."""
        return err.code in RETRYABLE_STREAM_CODES and self._attempt < self.max_retries

    def _final_error(self, err: CellgateError) -> CellgateError:
        """What to raise for an error that is not retried: OUT_OF_RANGE becomes a StreamGap."""
        if isinstance(err, OutOfRange):
            return StreamGap(err.code, err.message, last_seq=self.last_seq)
        return err

    def _count_reconnect(self, err: CellgateError) -> Optional[float]:
        """Records a reconnect after ``err`` and calls ``on_reconnect``; returns the delay in
        seconds before reopening, or None to reopen at once."""
        self._attempt += 1
        self.reconnects += 1
        self.errors.append(err)
        if self.on_reconnect is not None:
            self.on_reconnect(err, self._attempt)
        # A reader cut off for being slow may retry at once; otherwise back off.
        if err.code == grpc.StatusCode.RESOURCE_EXHAUSTED and self._attempt == 1:
            return None
        return min(self.max_backoff, self.backoff * (2 ** (self._attempt - 1)))

    def _admit(self, event: execution_pb2.OutputEvent) -> bool:
        """Records ``event`` as yielded (resetting the retry count) and returns True, or returns
        False for an event already yielded (defensive: the server never resends). Raises
        :class:`StreamGap` if events are missing before it; the caller then stops the stream."""
        if event.seq <= self.last_seq:
            return False
        if not self.filtered and (self._yielded_any or self.last_seq > 0) \
                and event.seq != self.last_seq + 1:
            raise StreamGap(message=f"events {self.last_seq + 1}..{event.seq - 1} are missing "
                                    f"from the stream", last_seq=self.last_seq)
        self.last_seq = event.seq
        self._yielded_any = True
        self._attempt = 0
        return True
