from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
INTERRUPT_MODE_MESSAGE: InterruptMode
INTERRUPT_MODE_SIGNAL: InterruptMode
INTERRUPT_MODE_UNSPECIFIED: InterruptMode
KERNEL_STATE_BUSY: KernelState
KERNEL_STATE_DEAD: KernelState
KERNEL_STATE_IDLE: KernelState
KERNEL_STATE_RESTARTING: KernelState
KERNEL_STATE_SHUTTING_DOWN: KernelState
KERNEL_STATE_STARTING: KernelState
KERNEL_STATE_UNSPECIFIED: KernelState

class IopubTraffic(_message.Message):
    __slots__ = ["bytes", "messages", "rejected_messages", "unparsed_output_bytes"]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    UNPARSED_OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    messages: int
    rejected_messages: int
    unparsed_output_bytes: int
    def __init__(self, messages: _Optional[int] = ..., bytes: _Optional[int] = ..., unparsed_output_bytes: _Optional[int] = ..., rejected_messages: _Optional[int] = ...) -> None: ...

class Kernel(_message.Message):
    __slots__ = ["cell_count", "created_at", "execution_count", "idle_timeout_seconds", "iopub_traffic", "kernel_id", "kernel_spec", "labels", "language", "last_activity_at", "last_death_reason", "last_seq", "limits", "oldest_retained_seq", "pending_executions", "pid", "restart_count", "state"]
    class LabelsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CELL_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    IOPUB_TRAFFIC_FIELD_NUMBER: _ClassVar[int]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    KERNEL_SPEC_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_DEATH_REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_RETAINED_SEQ_FIELD_NUMBER: _ClassVar[int]
    PENDING_EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    RESTART_COUNT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    cell_count: int
    created_at: _timestamp_pb2.Timestamp
    execution_count: int
    idle_timeout_seconds: int
    iopub_traffic: IopubTraffic
    kernel_id: str
    kernel_spec: str
    labels: _containers.ScalarMap[str, str]
    language: LanguageInfo
    last_activity_at: _timestamp_pb2.Timestamp
    last_death_reason: str
    last_seq: int
    limits: ResourceLimits
    oldest_retained_seq: int
    pending_executions: int
    pid: int
    restart_count: int
    state: KernelState
    def __init__(self, kernel_id: _Optional[str] = ..., kernel_spec: _Optional[str] = ..., state: _Optional[_Union[KernelState, str]] = ..., language: _Optional[_Union[LanguageInfo, _Mapping]] = ..., pid: _Optional[int] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., last_activity_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., execution_count: _Optional[int] = ..., cell_count: _Optional[int] = ..., last_seq: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., limits: _Optional[_Union[ResourceLimits, _Mapping]] = ..., restart_count: _Optional[int] = ..., last_death_reason: _Optional[str] = ..., idle_timeout_seconds: _Optional[int] = ..., oldest_retained_seq: _Optional[int] = ..., pending_executions: _Optional[int] = ..., iopub_traffic: _Optional[_Union[IopubTraffic, _Mapping]] = ...) -> None: ...

class KernelSpec(_message.Message):
    __slots__ = ["display_name", "interrupt_mode", "language", "name"]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    INTERRUPT_MODE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    display_name: str
    interrupt_mode: InterruptMode
    language: str
    name: str
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., language: _Optional[str] = ..., interrupt_mode: _Optional[_Union[InterruptMode, str]] = ...) -> None: ...

class LanguageInfo(_message.Message):
    __slots__ = ["name", "version"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class ResourceLimits(_message.Message):
    __slots__ = ["address_space_bytes", "allow_network", "cpu_seconds", "max_file_size_bytes", "max_open_files", "max_processes"]
    ADDRESS_SPACE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALLOW_NETWORK_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_FILE_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_OPEN_FILES_FIELD_NUMBER: _ClassVar[int]
    MAX_PROCESSES_FIELD_NUMBER: _ClassVar[int]
    address_space_bytes: int
    allow_network: bool
    cpu_seconds: int
    max_file_size_bytes: int
    max_open_files: int
    max_processes: int
    def __init__(self, address_space_bytes: _Optional[int] = ..., cpu_seconds: _Optional[int] = ..., max_processes: _Optional[int] = ..., max_open_files: _Optional[int] = ..., max_file_size_bytes: _Optional[int] = ..., allow_network: bool = ...) -> None: ...

class KernelState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class InterruptMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
