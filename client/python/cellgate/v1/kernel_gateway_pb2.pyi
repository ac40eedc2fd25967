from cellgate.v1 import execution_pb2 as _execution_pb2
from cellgate.v1 import files_pb2 as _files_pb2
from cellgate.v1 import kernel_pb2 as _kernel_pb2
from cellgate.v1 import notebook_pb2 as _notebook_pb2
from cellgate.v1 import server_info_pb2 as _server_info_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

CASCADE_DEPENDENTS: Cascade
CASCADE_NONE: Cascade
CASCADE_UNSPECIFIED: Cascade
CASCADE_UPSTREAM: Cascade
DESCRIPTOR: _descriptor.FileDescriptor

class AddCellRequest(_message.Message):
    __slots__ = ["cell_id", "cell_type", "index", "kernel_id", "metadata", "source"]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    CELL_TYPE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    cell_type: _notebook_pb2.CellType
    index: int
    kernel_id: str
    metadata: str
    source: str
    def __init__(self, kernel_id: _Optional[str] = ..., source: _Optional[str] = ..., cell_type: _Optional[_Union[_notebook_pb2.CellType, str]] = ..., index: _Optional[int] = ..., cell_id: _Optional[str] = ..., metadata: _Optional[str] = ...) -> None: ...

class DeleteCellRequest(_message.Message):
    __slots__ = ["cell_id", "kernel_id"]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    kernel_id: str
    def __init__(self, kernel_id: _Optional[str] = ..., cell_id: _Optional[str] = ...) -> None: ...

class DeleteCellResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class EditCellRequest(_message.Message):
    __slots__ = ["cell_id", "cell_type", "kernel_id", "metadata", "source"]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    CELL_TYPE_FIELD_NUMBER: _ClassVar[int]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    cell_type: _notebook_pb2.CellType
    kernel_id: str
    metadata: str
    source: str
    def __init__(self, kernel_id: _Optional[str] = ..., cell_id: _Optional[str] = ..., source: _Optional[str] = ..., cell_type: _Optional[_Union[_notebook_pb2.CellType, str]] = ..., metadata: _Optional[str] = ...) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ["code", "kernel_id", "on_timeout", "timeout_ms"]
    CODE_FIELD_NUMBER: _ClassVar[int]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    ON_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    code: str
    kernel_id: str
    on_timeout: _execution_pb2.OnTimeout
    timeout_ms: int
    def __init__(self, kernel_id: _Optional[str] = ..., code: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., on_timeout: _Optional[_Union[_execution_pb2.OnTimeout, str]] = ...) -> None: ...

class ExportNotebookRequest(_message.Message):
    __slots__ = ["kernel_id"]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    kernel_id: str
    def __init__(self, kernel_id: _Optional[str] = ...) -> None: ...

class ExportNotebookResponse(_message.Message):
    __slots__ = ["ipynb"]
    IPYNB_FIELD_NUMBER: _ClassVar[int]
    ipynb: bytes
    def __init__(self, ipynb: _Optional[bytes] = ...) -> None: ...

class GetCellRequest(_message.Message):
    __slots__ = ["cell_id", "kernel_id"]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    kernel_id: str
    def __init__(self, kernel_id: _Optional[str] = ..., cell_id: _Optional[str] = ...) -> None: ...

class GetKernelRequest(_message.Message):
    __slots__ = ["kernel_id"]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    kernel_id: str
    def __init__(self, kernel_id: _Optional[str] = ...) -> None: ...

class GetNotebookRequest(_message.Message):
    __slots__ = ["kernel_id", "omit_outputs"]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    OMIT_OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    kernel_id: str
    omit_outputs: bool
    def __init__(self, kernel_id: _Optional[str] = ..., omit_outputs: bool = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ImportNotebookRequest(_message.Message):
    __slots__ = ["ipynb", "kernel_id", "omit_outputs", "replace"]
    IPYNB_FIELD_NUMBER: _ClassVar[int]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    OMIT_OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    ipynb: bytes
    kernel_id: str
    omit_outputs: bool
    replace: bool
    def __init__(self, kernel_id: _Optional[str] = ..., ipynb: _Optional[bytes] = ..., replace: bool = ..., omit_outputs: bool = ...) -> None: ...

class InterruptKernelRequest(_message.Message):
    __slots__ = ["kernel_id"]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    kernel_id: str
    def __init__(self, kernel_id: _Optional[str] = ...) -> None: ...

class ListKernelSpecsRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListKernelSpecsResponse(_message.Message):
    __slots__ = ["default_kernel_spec", "kernel_specs"]
    DEFAULT_KERNEL_SPEC_FIELD_NUMBER: _ClassVar[int]
    KERNEL_SPECS_FIELD_NUMBER: _ClassVar[int]
    default_kernel_spec: str
    kernel_specs: _containers.RepeatedCompositeFieldContainer[_kernel_pb2.KernelSpec]
    def __init__(self, kernel_specs: _Optional[_Iterable[_Union[_kernel_pb2.KernelSpec, _Mapping]]] = ..., default_kernel_spec: _Optional[str] = ...) -> None: ...

class ListKernelsRequest(_message.Message):
    __slots__ = ["label_selector"]
    class LabelSelectorEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    label_selector: _containers.ScalarMap[str, str]
    def __init__(self, label_selector: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListKernelsResponse(_message.Message):
    __slots__ = ["kernels"]
    KERNELS_FIELD_NUMBER: _ClassVar[int]
    kernels: _containers.RepeatedCompositeFieldContainer[_kernel_pb2.Kernel]
    def __init__(self, kernels: _Optional[_Iterable[_Union[_kernel_pb2.Kernel, _Mapping]]] = ...) -> None: ...

class MoveCellRequest(_message.Message):
    __slots__ = ["cell_id", "index", "kernel_id"]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    index: int
    kernel_id: str
    def __init__(self, kernel_id: _Optional[str] = ..., cell_id: _Optional[str] = ..., index: _Optional[int] = ...) -> None: ...

class RestartKernelRequest(_message.Message):
    __slots__ = ["kernel_id"]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    kernel_id: str
    def __init__(self, kernel_id: _Optional[str] = ...) -> None: ...

class RunAllRequest(_message.Message):
    __slots__ = ["kernel_id", "stop_on_error", "timeout_ms"]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    STOP_ON_ERROR_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    kernel_id: str
    stop_on_error: bool
    timeout_ms: int
    def __init__(self, kernel_id: _Optional[str] = ..., stop_on_error: bool = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class RunCellRequest(_message.Message):
    __slots__ = ["cascade", "cell_id", "kernel_id", "on_timeout", "timeout_ms"]
    CASCADE_FIELD_NUMBER: _ClassVar[int]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    ON_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    cascade: Cascade
    cell_id: str
    kernel_id: str
    on_timeout: _execution_pb2.OnTimeout
    timeout_ms: int
    def __init__(self, kernel_id: _Optional[str] = ..., cell_id: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., on_timeout: _Optional[_Union[_execution_pb2.OnTimeout, str]] = ..., cascade: _Optional[_Union[Cascade, str]] = ...) -> None: ...

class RunStaleRequest(_message.Message):
    __slots__ = ["kernel_id", "stop_on_error", "timeout_ms"]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    STOP_ON_ERROR_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    kernel_id: str
    stop_on_error: bool
    timeout_ms: int
    def __init__(self, kernel_id: _Optional[str] = ..., stop_on_error: bool = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class ShutdownKernelRequest(_message.Message):
    __slots__ = ["kernel_id"]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    kernel_id: str
    def __init__(self, kernel_id: _Optional[str] = ...) -> None: ...

class ShutdownKernelResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class StartKernelRequest(_message.Message):
    __slots__ = ["env", "idle_timeout_seconds", "kernel_spec", "labels", "limits", "notebook_ipynb"]
    class EnvEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENV_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    KERNEL_SPEC_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    NOTEBOOK_IPYNB_FIELD_NUMBER: _ClassVar[int]
    env: _containers.ScalarMap[str, str]
    idle_timeout_seconds: int
    kernel_spec: str
    labels: _containers.ScalarMap[str, str]
    limits: _kernel_pb2.ResourceLimits
    notebook_ipynb: bytes
    def __init__(self, kernel_spec: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., limits: _Optional[_Union[_kernel_pb2.ResourceLimits, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., notebook_ipynb: _Optional[bytes] = ..., idle_timeout_seconds: _Optional[int] = ...) -> None: ...

class StreamOutputsRequest(_message.Message):
    __slots__ = ["after_seq", "cell_id", "execution_id", "follow", "kernel_id"]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    cell_id: str
    execution_id: str
    follow: bool
    kernel_id: str
    def __init__(self, kernel_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., follow: bool = ..., cell_id: _Optional[str] = ..., execution_id: _Optional[str] = ...) -> None: ...

class Cascade(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
