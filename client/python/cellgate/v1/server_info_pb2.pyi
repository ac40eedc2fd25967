from google.protobuf import timestamp_pb2 as _timestamp_pb2
from cellgate.v1 import kernel_pb2 as _kernel_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KernelStateCount(_message.Message):
    __slots__ = ["count", "state"]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    count: int
    state: _kernel_pb2.KernelState
    def __init__(self, state: _Optional[_Union[_kernel_pb2.KernelState, str]] = ..., count: _Optional[int] = ...) -> None: ...

class SandboxLayer(_message.Message):
    __slots__ = ["available", "detail", "in_force", "name"]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    available: bool
    detail: str
    in_force: bool
    name: str
    def __init__(self, name: _Optional[str] = ..., available: bool = ..., in_force: bool = ..., detail: _Optional[str] = ...) -> None: ...

class ServerCaps(_message.Message):
    __slots__ = ["event_log_max_bytes", "limits", "max_cells_per_kernel", "max_execution_output_bytes", "max_idle_timeout_seconds", "max_ipynb_bytes", "max_kernels", "max_result_text_bytes", "max_source_bytes", "max_timeout_ms", "max_transfer_bytes", "max_upload_bytes", "max_workspace_bytes"]
    EVENT_LOG_MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    MAX_CELLS_PER_KERNEL_FIELD_NUMBER: _ClassVar[int]
    MAX_EXECUTION_OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_IDLE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_IPYNB_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_KERNELS_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULT_TEXT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_SOURCE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_TRANSFER_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_UPLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_WORKSPACE_BYTES_FIELD_NUMBER: _ClassVar[int]
    event_log_max_bytes: int
    limits: _kernel_pb2.ResourceLimits
    max_cells_per_kernel: int
    max_execution_output_bytes: int
    max_idle_timeout_seconds: int
    max_ipynb_bytes: int
    max_kernels: int
    max_result_text_bytes: int
    max_source_bytes: int
    max_timeout_ms: int
    max_transfer_bytes: int
    max_upload_bytes: int
    max_workspace_bytes: int
    def __init__(self, max_kernels: _Optional[int] = ..., max_cells_per_kernel: _Optional[int] = ..., max_source_bytes: _Optional[int] = ..., max_ipynb_bytes: _Optional[int] = ..., max_execution_output_bytes: _Optional[int] = ..., max_result_text_bytes: _Optional[int] = ..., event_log_max_bytes: _Optional[int] = ..., max_timeout_ms: _Optional[int] = ..., max_idle_timeout_seconds: _Optional[int] = ..., limits: _Optional[_Union[_kernel_pb2.ResourceLimits, _Mapping]] = ..., max_upload_bytes: _Optional[int] = ..., max_workspace_bytes: _Optional[int] = ..., max_transfer_bytes: _Optional[int] = ...) -> None: ...

class ServerDefaults(_message.Message):
    __slots__ = ["idle_timeout_seconds", "kernel_spec", "limits", "timeout_ms"]
    IDLE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    KERNEL_SPEC_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    idle_timeout_seconds: int
    kernel_spec: str
    limits: _kernel_pb2.ResourceLimits
    timeout_ms: int
    def __init__(self, kernel_spec: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., idle_timeout_seconds: _Optional[int] = ..., limits: _Optional[_Union[_kernel_pb2.ResourceLimits, _Mapping]] = ...) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ["auth_required", "caps", "defaults", "kernel_count", "kernel_counts", "sandbox_layers", "sandbox_mode", "started_at", "version"]
    AUTH_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    CAPS_FIELD_NUMBER: _ClassVar[int]
    DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    KERNEL_COUNTS_FIELD_NUMBER: _ClassVar[int]
    KERNEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_LAYERS_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_MODE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    auth_required: bool
    caps: ServerCaps
    defaults: ServerDefaults
    kernel_count: int
    kernel_counts: _containers.RepeatedCompositeFieldContainer[KernelStateCount]
    sandbox_layers: _containers.RepeatedCompositeFieldContainer[SandboxLayer]
    sandbox_mode: str
    started_at: _timestamp_pb2.Timestamp
    version: str
    def __init__(self, version: _Optional[str] = ..., started_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., sandbox_mode: _Optional[str] = ..., sandbox_layers: _Optional[_Iterable[_Union[SandboxLayer, _Mapping]]] = ..., caps: _Optional[_Union[ServerCaps, _Mapping]] = ..., defaults: _Optional[_Union[ServerDefaults, _Mapping]] = ..., kernel_count: _Optional[int] = ..., kernel_counts: _Optional[_Iterable[_Union[KernelStateCount, _Mapping]]] = ..., auth_required: bool = ...) -> None: ...
