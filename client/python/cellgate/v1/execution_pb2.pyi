from google.protobuf import timestamp_pb2 as _timestamp_pb2
from cellgate.v1 import kernel_pb2 as _kernel_pb2
from cellgate.v1 import output_pb2 as _output_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
EXECUTION_STATUS_CANCELLED: ExecutionStatus
EXECUTION_STATUS_ERROR: ExecutionStatus
EXECUTION_STATUS_INTERRUPTED: ExecutionStatus
EXECUTION_STATUS_KERNEL_DIED: ExecutionStatus
EXECUTION_STATUS_OK: ExecutionStatus
EXECUTION_STATUS_TIMEOUT: ExecutionStatus
EXECUTION_STATUS_UNSPECIFIED: ExecutionStatus
ON_TIMEOUT_INTERRUPT: OnTimeout
ON_TIMEOUT_KEEP_RUNNING: OnTimeout
ON_TIMEOUT_UNSPECIFIED: OnTimeout
RUN_TRIGGER_CASCADE_DEPENDENT: RunTrigger
RUN_TRIGGER_CASCADE_UPSTREAM: RunTrigger
RUN_TRIGGER_REQUESTED: RunTrigger
RUN_TRIGGER_RUN_ALL: RunTrigger
RUN_TRIGGER_RUN_STALE: RunTrigger
RUN_TRIGGER_UNSPECIFIED: RunTrigger
SKIP_REASON_CANCELLED: SkipReason
SKIP_REASON_EMPTY_SOURCE: SkipReason
SKIP_REASON_KERNEL_DIED: SkipReason
SKIP_REASON_PREVIOUS_FAILED: SkipReason
SKIP_REASON_UNSPECIFIED: SkipReason

class ErrorInfo(_message.Message):
    __slots__ = ["ename", "evalue", "traceback"]
    ENAME_FIELD_NUMBER: _ClassVar[int]
    EVALUE_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    ename: str
    evalue: str
    traceback: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ename: _Optional[str] = ..., evalue: _Optional[str] = ..., traceback: _Optional[_Iterable[str]] = ...) -> None: ...

class ExecutionFinished(_message.Message):
    __slots__ = ["duration_ms", "status", "status_detail"]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_DETAIL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    duration_ms: int
    status: ExecutionStatus
    status_detail: str
    def __init__(self, status: _Optional[_Union[ExecutionStatus, str]] = ..., duration_ms: _Optional[int] = ..., status_detail: _Optional[str] = ...) -> None: ...

class ExecutionQueued(_message.Message):
    __slots__ = ["cause_cell_id", "reason", "trigger"]
    CAUSE_CELL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    cause_cell_id: str
    reason: str
    trigger: RunTrigger
    def __init__(self, trigger: _Optional[_Union[RunTrigger, str]] = ..., cause_cell_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ExecutionResult(_message.Message):
    __slots__ = ["cascade", "cell_id", "duration_ms", "error", "execution_count", "execution_id", "outputs", "started_at", "status", "status_detail", "text", "truncated"]
    CASCADE_FIELD_NUMBER: _ClassVar[int]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_DETAIL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    cascade: RunAllResult
    cell_id: str
    duration_ms: int
    error: ErrorInfo
    execution_count: int
    execution_id: str
    outputs: _containers.RepeatedCompositeFieldContainer[_output_pb2.Output]
    started_at: _timestamp_pb2.Timestamp
    status: ExecutionStatus
    status_detail: str
    text: str
    truncated: bool
    def __init__(self, execution_id: _Optional[str] = ..., cell_id: _Optional[str] = ..., status: _Optional[_Union[ExecutionStatus, str]] = ..., execution_count: _Optional[int] = ..., outputs: _Optional[_Iterable[_Union[_output_pb2.Output, _Mapping]]] = ..., error: _Optional[_Union[ErrorInfo, _Mapping]] = ..., text: _Optional[str] = ..., truncated: bool = ..., started_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., duration_ms: _Optional[int] = ..., status_detail: _Optional[str] = ..., cascade: _Optional[_Union[RunAllResult, _Mapping]] = ...) -> None: ...

class ExecutionStarted(_message.Message):
    __slots__ = ["execution_count"]
    EXECUTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    execution_count: int
    def __init__(self, execution_count: _Optional[int] = ...) -> None: ...

class KernelStatus(_message.Message):
    __slots__ = ["reason", "state"]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    state: _kernel_pb2.KernelState
    def __init__(self, state: _Optional[_Union[_kernel_pb2.KernelState, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class OutputEvent(_message.Message):
    __slots__ = ["cell_id", "clear_output", "display_update", "execution_finished", "execution_id", "execution_queued", "execution_started", "kernel_id", "kernel_status", "output", "seq", "time"]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    CLEAR_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_UPDATE_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_FINISHED_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_QUEUED_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_STARTED_FIELD_NUMBER: _ClassVar[int]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    KERNEL_STATUS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    clear_output: _output_pb2.ClearOutput
    display_update: _output_pb2.DisplayUpdate
    execution_finished: ExecutionFinished
    execution_id: str
    execution_queued: ExecutionQueued
    execution_started: ExecutionStarted
    kernel_id: str
    kernel_status: KernelStatus
    output: _output_pb2.Output
    seq: int
    time: _timestamp_pb2.Timestamp
    def __init__(self, seq: _Optional[int] = ..., kernel_id: _Optional[str] = ..., cell_id: _Optional[str] = ..., execution_id: _Optional[str] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., execution_queued: _Optional[_Union[ExecutionQueued, _Mapping]] = ..., execution_started: _Optional[_Union[ExecutionStarted, _Mapping]] = ..., output: _Optional[_Union[_output_pb2.Output, _Mapping]] = ..., display_update: _Optional[_Union[_output_pb2.DisplayUpdate, _Mapping]] = ..., clear_output: _Optional[_Union[_output_pb2.ClearOutput, _Mapping]] = ..., execution_finished: _Optional[_Union[ExecutionFinished, _Mapping]] = ..., kernel_status: _Optional[_Union[KernelStatus, _Mapping]] = ...) -> None: ...

class RunAllResult(_message.Message):
    __slots__ = ["note", "results", "skipped"]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    note: str
    results: _containers.RepeatedCompositeFieldContainer[ExecutionResult]
    skipped: _containers.RepeatedCompositeFieldContainer[SkippedCell]
    def __init__(self, results: _Optional[_Iterable[_Union[ExecutionResult, _Mapping]]] = ..., skipped: _Optional[_Iterable[_Union[SkippedCell, _Mapping]]] = ..., note: _Optional[str] = ...) -> None: ...

class SkippedCell(_message.Message):
    __slots__ = ["cell_id", "reason"]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    reason: SkipReason
    def __init__(self, cell_id: _Optional[str] = ..., reason: _Optional[_Union[SkipReason, str]] = ...) -> None: ...

class ExecutionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class OnTimeout(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class SkipReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class RunTrigger(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
