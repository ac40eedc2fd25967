"""Plain-Python views of cellgate's protobuf messages.

The wrapper methods return these thin, read-only dataclasses instead of raw protobuf messages
because agents mostly want a few fields in readable form (``result.ok``, ``result.text``,
``result.status == "ERROR"``). Every dataclass keeps the message it was made from in
``.proto`` for anything not copied out. Enums are ``str`` subclasses whose value is the proto
name without its prefix (``ExecutionStatus.OK == "OK"``, ``CellType.CODE == "code"``).

Field meanings are documented in docs/api.md and the proto comments
(proto/cellgate/v1/*.proto).
"""
from __future__ import annotations

import datetime as _dt
import enum
import functools
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Type, TypeVar

from google.protobuf import timestamp_pb2

from cellgate.v1 import execution_pb2, files_pb2, kernel_pb2, notebook_pb2, output_pb2

__all__ = [
    "ExecutionStatus",
    "KernelState",
    "CellState",
    "CellType",
    "SkipReason",
    "InterruptMode",
    "ErrorInfo",
    "ExecutionResult",
    "SkippedCell",
    "RunAllResult",
    "LastRun",
    "Cell",
    "Notebook",
    "KernelInfo",
    "KernelSpec",
    "OutputEvent",
    "Output",
    "ResourceLimits",
    "ServerInfo",
    "event_kind",
    "describe_event",
]

# Protobuf messages returned as they are (documented in the protos).
OutputEvent = execution_pb2.OutputEvent
Output = output_pb2.Output
ResourceLimits = kernel_pb2.ResourceLimits
from cellgate.v1.server_info_pb2 import ServerInfo  # noqa: E402  (re-exported)


class _StrEnum(str, enum.Enum):
    """A str enum that prints as its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class ExecutionStatus(_StrEnum):
    """How an execution ended (``ExecutionResult.status``)."""

    UNSPECIFIED = "UNSPECIFIED"
    OK = "OK"
    ERROR = "ERROR"
    TIMEOUT = "TIMEOUT"
    INTERRUPTED = "INTERRUPTED"
    KERNEL_DIED = "KERNEL_DIED"
    CANCELLED = "CANCELLED"


class KernelState(_StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    STARTING = "STARTING"
    IDLE = "IDLE"
    BUSY = "BUSY"
    RESTARTING = "RESTARTING"
    DEAD = "DEAD"
    SHUTTING_DOWN = "SHUTTING_DOWN"


class CellState(_StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    NEW = "NEW"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    OK = "OK"
    ERROR = "ERROR"
    STALE = "STALE"
    CANCELLED = "CANCELLED"


class CellType(_StrEnum):
    UNSPECIFIED = "unspecified"
    CODE = "code"
    MARKDOWN = "markdown"
    RAW = "raw"


class SkipReason(_StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    EMPTY_SOURCE = "EMPTY_SOURCE"
    PREVIOUS_FAILED = "PREVIOUS_FAILED"
    CANCELLED = "CANCELLED"
    KERNEL_DIED = "KERNEL_DIED"


class AnalysisStatus(_StrEnum):
    """Where a cell's dependency analysis stands (``Cell.analysis``)."""

    UNSPECIFIED = "UNSPECIFIED"
    NOT_APPLICABLE = "NOT_APPLICABLE"
    PENDING = "PENDING"
    ANALYZED = "ANALYZED"
    OPAQUE = "OPAQUE"
    SYNTAX_ERROR = "SYNTAX_ERROR"
    UNAVAILABLE = "UNAVAILABLE"


class InterruptMode(_StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    SIGNAL = "SIGNAL"
    MESSAGE = "MESSAGE"


_E = TypeVar("_E", bound=_StrEnum)


# (enum class, proto value) -> member: a 1000-cell notebook converts 2000 enums.
_ENUM_MEMBERS: Dict[Tuple[type, int], Any] = {}


def _from_proto_enum(cls: Type[_E], proto_enum: Any, value: int, prefix: str) -> _E:
    member = _ENUM_MEMBERS.get((cls, value))
    if member is not None:
        return member
    try:
        name = proto_enum.Name(value)
    except ValueError:
        member = cls["UNSPECIFIED"]  # a value this client does not know yet
    else:
        short = name[len(prefix):] if name.startswith(prefix) else name
        if cls is CellType:
            short = short.lower()
        member = cls(short)
    _ENUM_MEMBERS[(cls, value)] = member
    return member


def _to_proto_enum(proto_enum: Any, prefix: str, value: Any) -> int:
    """Maps ``"code"``, ``CellType.CODE``, ``"CELL_TYPE_CODE"`` or an int to the proto value."""
    if isinstance(value, int):
        return value
    text = str(value).upper()
    if not text.startswith(prefix):
        text = prefix + text
    return int(proto_enum.Value(text))


def _time(ts: timestamp_pb2.Timestamp) -> Optional[_dt.datetime]:
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime(tzinfo=_dt.timezone.utc)


@dataclass(frozen=True)
class ErrorInfo:
    """The error of a failed execution (traceback lines without ANSI escapes)."""

    ename: str
    evalue: str
    traceback: List[str]

    def __str__(self) -> str:
        return f"{self.ename}: {self.evalue}" if self.evalue else self.ename


@dataclass(frozen=True)
class ExecutionResult:
    """The outcome of RunCell, one RunAll cell, or Execute.

    ``text`` is a plain-text rendering of everything the execution printed and returned
    (stdout, stderr, ``text/plain`` results, placeholders for images, the error), ready to put
    in an LLM prompt; see docs/api.md §5.
    """

    execution_id: str
    cell_id: str
    status: ExecutionStatus
    execution_count: int
    text: str
    error: Optional[ErrorInfo]
    truncated: bool
    started_at: Optional[_dt.datetime]
    duration_ms: int
    status_detail: str
    #: For ``run_cell(cascade=...)``: the other cells the cascade ran or skipped.
    cascade: Optional["RunAllResult"]
    outputs: Sequence[output_pb2.Output] = field(repr=False)
    proto: execution_pb2.ExecutionResult = field(repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when the execution ended ``OK``."""
        return self.status is ExecutionStatus.OK

    @classmethod
    def from_proto(cls, m: execution_pb2.ExecutionResult) -> "ExecutionResult":
        err = None
        if m.HasField("error") and (m.error.ename or m.error.evalue or m.error.traceback):
            err = ErrorInfo(m.error.ename, m.error.evalue, list(m.error.traceback))
        return cls(
            execution_id=m.execution_id,
            cell_id=m.cell_id,
            status=_from_proto_enum(ExecutionStatus, execution_pb2.ExecutionStatus, m.status,
                                    "EXECUTION_STATUS_"),
            execution_count=m.execution_count,
            text=m.text,
            error=err,
            truncated=m.truncated,
            started_at=_time(m.started_at),
            duration_ms=m.duration_ms,
            status_detail=m.status_detail,
            cascade=RunAllResult.from_proto(m.cascade) if m.HasField("cascade") else None,
            outputs=list(m.outputs),
            proto=m,
        )


@dataclass(frozen=True)
class SkippedCell:
    """A code cell RunAll did not send to the kernel, and why."""

    cell_id: str
    reason: SkipReason


@dataclass(frozen=True)
class RunAllResult:
    """RunAll's (and RunStale's) answer: one result per cell run (in run order) and the cells
    skipped; ``note`` says when the dependency graph followed was incomplete."""

    results: List[ExecutionResult]
    skipped: List[SkippedCell]
    note: str
    proto: execution_pb2.RunAllResult = field(repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when every cell run ended OK and none was skipped for a failure or
        cancellation (cells skipped for an empty source do not count)."""
        return all(r.ok for r in self.results) and all(
            s.reason is SkipReason.EMPTY_SOURCE for s in self.skipped)

    @property
    def failed(self) -> Optional[ExecutionResult]:
        """The first result that did not end OK, if any."""
        return next((r for r in self.results if not r.ok), None)

    @property
    def text(self) -> str:
        """Every result's text, in run order."""
        return "".join(r.text if r.text.endswith("\n") or not r.text else r.text + "\n"
                       for r in self.results)

    @classmethod
    def from_proto(cls, m: execution_pb2.RunAllResult) -> "RunAllResult":
        return cls(
            results=[ExecutionResult.from_proto(r) for r in m.results],
            skipped=[SkippedCell(s.cell_id, _from_proto_enum(
                SkipReason, execution_pb2.SkipReason, s.reason, "SKIP_REASON_"))
                for s in m.skipped],
            note=m.note,
            proto=m,
        )


@dataclass(frozen=True)
class LastRun:
    execution_id: str
    started_at: Optional[_dt.datetime]
    duration_ms: int
    status: ExecutionStatus


@dataclass(frozen=True)
class Cell:
    """A notebook cell with its stored outputs (nbclient semantics, docs/api.md §6)."""

    cell_id: str
    index: int
    cell_type: CellType
    source: str
    state: CellState
    execution_count: int
    outputs_truncated: bool
    last_run: Optional[LastRun]
    metadata: str
    analysis: AnalysisStatus
    analysis_detail: str
    #: Why it is STALE ("upstream cell load edited", ...); empty in other states.
    stale_reason: str
    outputs: Sequence[output_pb2.Output] = field(repr=False)
    proto: notebook_pb2.Cell = field(repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.cell_id

    # Read from the message on first use: a 1000-cell notebook need not convert them all.
    @functools.cached_property
    def defines(self) -> List[str]:
        """Names it defines (Python kernels; docs/api.md §4.8)."""
        return list(self.proto.defines)

    @functools.cached_property
    def uses(self) -> List[str]:
        """Names it reads before defining them (builtins left out)."""
        return list(self.proto.uses)

    @functools.cached_property
    def depends_on(self) -> List[str]:
        """The cells it depends on directly, in notebook order."""
        return list(self.proto.depends_on)

    @classmethod
    def from_proto(cls, m: notebook_pb2.Cell) -> "Cell":
        last_run = None
        if m.HasField("last_run"):
            lr = m.last_run
            last_run = LastRun(lr.execution_id, _time(lr.started_at), lr.duration_ms,
                               _from_proto_enum(ExecutionStatus, execution_pb2.ExecutionStatus,
                                                lr.status, "EXECUTION_STATUS_"))
        return cls(
            cell_id=m.cell_id,
            index=m.index,
            cell_type=_from_proto_enum(CellType, notebook_pb2.CellType, m.cell_type, "CELL_TYPE_"),
            source=m.source,
            state=_from_proto_enum(CellState, notebook_pb2.CellState, m.state, "CELL_STATE_"),
            execution_count=m.execution_count,
            outputs_truncated=m.outputs_truncated,
            last_run=last_run,
            metadata=m.metadata,
            analysis=_from_proto_enum(AnalysisStatus, notebook_pb2.AnalysisStatus, m.analysis,
                                      "ANALYSIS_STATUS_"),
            analysis_detail=m.analysis_detail,
            stale_reason=m.stale_reason,
            outputs=list(m.outputs),
            proto=m,
        )


@dataclass(frozen=True)
class Dependency:
    """``cell_id`` reads ``names`` whose latest definition above it is in ``depends_on``
    (``names`` empty: ``depends_on`` is OPAQUE)."""

    cell_id: str
    depends_on: str
    names: List[str]


@dataclass(frozen=True)
class DependencyGraph:
    """Which cells depend on which (``Notebook.graph``); ``available`` is False for kernels
    without an analyzer, and ``note`` says why the graph is absent or incomplete."""

    available: bool
    dependencies: List[Dependency]
    unanalyzed_cell_ids: List[str]
    note: str

    @classmethod
    def from_proto(cls, m: notebook_pb2.DependencyGraph) -> "DependencyGraph":
        return cls(m.available,
                   [Dependency(d.cell_id, d.depends_on, list(d.names)) for d in m.dependencies],
                   list(m.unanalyzed_cell_ids), m.note)


@dataclass(frozen=True)
class Notebook:
    """A kernel's notebook: cells in order, with outputs. ``last_seq`` is the last event the
    snapshot includes: ``stream_outputs(after_seq=nb.last_seq)`` continues it without a gap."""

    kernel_id: str
    cells: List[Cell]
    metadata: str
    last_seq: int
    proto: notebook_pb2.Notebook = field(repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.cells)

    def __iter__(self) -> Iterator[Cell]:
        return iter(self.cells)

    @functools.cached_property
    def graph(self) -> DependencyGraph:
        """Which cells depend on which (docs/api.md §4.8)."""
        return DependencyGraph.from_proto(self.proto.graph)

    def cell(self, cell_id: str) -> Cell:
        """The cell with this id (``KeyError`` if absent)."""
        for c in self.cells:
            if c.cell_id == cell_id:
                return c
        raise KeyError(cell_id)

    @classmethod
    def from_proto(cls, m: notebook_pb2.Notebook) -> "Notebook":
        return cls(m.kernel_id, [Cell.from_proto(c) for c in m.cells], m.metadata, m.last_seq, m)


@dataclass(frozen=True)
class VariableTransfer:
    """What TransferVariable carried: the pickle's size, the value's type, and the two
    executions (pickling in the source, unpickling in the target) in the kernels' event logs."""

    size: int
    type: str
    from_execution_id: str
    to_execution_id: str

    @classmethod
    def from_proto(cls, m: files_pb2.TransferVariableResponse) -> "VariableTransfer":
        return cls(m.size, m.type, m.from_execution_id, m.to_execution_id)


class FileKind(_StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    FILE = "FILE"
    DIRECTORY = "DIRECTORY"
    SYMLINK = "SYMLINK"
    OTHER = "OTHER"


@dataclass(frozen=True)
class FileInfo:
    """An entry of a kernel's workspace (its working directory); ``path`` is relative to it."""

    path: str
    kind: FileKind
    size: int
    modified: Optional[_dt.datetime]
    proto: files_pb2.FileInfo = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: files_pb2.FileInfo) -> "FileInfo":
        return cls(m.path, _from_proto_enum(FileKind, files_pb2.FileKind, m.kind, "FILE_KIND_"),
                   m.size, _time(m.modified), m)


@dataclass(frozen=True)
class KernelInfo:
    """A kernel as GetKernel / ListKernels / StartKernel describe it."""

    kernel_id: str
    kernel_spec: str
    state: KernelState
    language: str
    language_version: str
    pid: int
    created_at: Optional[_dt.datetime]
    last_activity_at: Optional[_dt.datetime]
    execution_count: int
    cell_count: int
    last_seq: int
    oldest_retained_seq: int
    labels: Dict[str, str]
    restart_count: int
    last_death_reason: str
    idle_timeout_seconds: int
    pending_executions: int
    limits: kernel_pb2.ResourceLimits = field(repr=False)
    # IOPub counters of the current process: messages, bytes, unparsed_output_bytes (output
    # past the hard cap), rejected_messages.
    iopub_traffic: kernel_pb2.IopubTraffic = field(repr=False)
    proto: kernel_pb2.Kernel = field(repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.kernel_id

    @classmethod
    def from_proto(cls, m: kernel_pb2.Kernel) -> "KernelInfo":
        return cls(
            kernel_id=m.kernel_id,
            kernel_spec=m.kernel_spec,
            state=_from_proto_enum(KernelState, kernel_pb2.KernelState, m.state, "KERNEL_STATE_"),
            language=m.language.name,
            language_version=m.language.version,
            pid=m.pid,
            created_at=_time(m.created_at),
            last_activity_at=_time(m.last_activity_at),
            execution_count=m.execution_count,
            cell_count=m.cell_count,
            last_seq=m.last_seq,
            oldest_retained_seq=m.oldest_retained_seq,
            labels=dict(m.labels),
            restart_count=m.restart_count,
            last_death_reason=m.last_death_reason,
            idle_timeout_seconds=m.idle_timeout_seconds,
            pending_executions=m.pending_executions,
            limits=m.limits,
            iopub_traffic=m.iopub_traffic,
            proto=m,
        )


@dataclass(frozen=True)
class KernelSpec:
    """An installed kernelspec StartKernel accepts (ListKernelSpecs)."""

    name: str
    display_name: str
    language: str
    interrupt_mode: InterruptMode

    @classmethod
    def from_proto(cls, m: kernel_pb2.KernelSpec) -> "KernelSpec":
        return cls(m.name, m.display_name, m.language,
                   _from_proto_enum(InterruptMode, kernel_pb2.InterruptMode, m.interrupt_mode,
                                    "INTERRUPT_MODE_"))


def event_kind(event: execution_pb2.OutputEvent) -> str:
    """Which event an ``OutputEvent`` carries: ``"execution_queued"``, ``"execution_started"``,
    ``"output"``, ``"display_update"``, ``"clear_output"``, ``"execution_finished"`` or
    ``"kernel_status"``."""
    return event.WhichOneof("event") or ""


def describe_event(event: execution_pb2.OutputEvent) -> str:
    """A one-line human-readable description of an event (for logs and followers)."""
    kind = event_kind(event)
    head = f"#{event.seq} {kind}"
    if event.cell_id:
        head += f" cell={event.cell_id}"
    if kind == "output":
        out = event.output
        which = out.WhichOneof("output")
        if which == "stream":
            name = "stderr" if out.stream.name == output_pb2.STREAM_NAME_STDERR else "stdout"
            return f"{head} {name}: {out.stream.text!r}"
        if which == "execute_result":
            return f"{head} result: {out.execute_result.data.get('text/plain', '')!r}"
        if which == "display_data":
            return f"{head} display: {sorted(out.display_data.data)}"
        if which == "error":
            return f"{head} error: {out.error.ename}: {out.error.evalue}"
        return head
    if kind == "execution_queued":
        reason = event.execution_queued.reason
        return f"{head} ({reason})" if reason and reason != "requested" else head
    if kind == "execution_started":
        return f"{head} count={event.execution_started.execution_count}"
    if kind == "execution_finished":
        status = _from_proto_enum(ExecutionStatus, execution_pb2.ExecutionStatus,
                                  event.execution_finished.status, "EXECUTION_STATUS_")
        detail = event.execution_finished.status_detail
        return f"{head} {status}" + (f" ({detail})" if detail else "")
    if kind == "kernel_status":
        state = _from_proto_enum(KernelState, kernel_pb2.KernelState, event.kernel_status.state,
                                 "KERNEL_STATE_")
        reason = event.kernel_status.reason
        return f"{head} {state}" + (f" ({reason})" if reason else "")
    return head
