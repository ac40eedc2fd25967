from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
STREAM_NAME_STDERR: StreamName
STREAM_NAME_STDOUT: StreamName
STREAM_NAME_UNSPECIFIED: StreamName

class ClearOutput(_message.Message):
    __slots__ = ["wait"]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    wait: bool
    def __init__(self, wait: bool = ...) -> None: ...

class DisplayData(_message.Message):
    __slots__ = ["data", "display_id", "metadata"]
    class DataEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DATA_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    data: _containers.ScalarMap[str, str]
    display_id: str
    metadata: str
    def __init__(self, data: _Optional[_Mapping[str, str]] = ..., metadata: _Optional[str] = ..., display_id: _Optional[str] = ...) -> None: ...

class DisplayUpdate(_message.Message):
    __slots__ = ["data", "display_id", "metadata"]
    class DataEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DATA_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    data: _containers.ScalarMap[str, str]
    display_id: str
    metadata: str
    def __init__(self, display_id: _Optional[str] = ..., data: _Optional[_Mapping[str, str]] = ..., metadata: _Optional[str] = ...) -> None: ...

class ErrorOutput(_message.Message):
    __slots__ = ["ename", "evalue", "traceback"]
    ENAME_FIELD_NUMBER: _ClassVar[int]
    EVALUE_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    ename: str
    evalue: str
    traceback: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ename: _Optional[str] = ..., evalue: _Optional[str] = ..., traceback: _Optional[_Iterable[str]] = ...) -> None: ...

class ExecuteResult(_message.Message):
    __slots__ = ["data", "execution_count", "metadata"]
    class DataEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DATA_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    data: _containers.ScalarMap[str, str]
    execution_count: int
    metadata: str
    def __init__(self, execution_count: _Optional[int] = ..., data: _Optional[_Mapping[str, str]] = ..., metadata: _Optional[str] = ...) -> None: ...

class Output(_message.Message):
    __slots__ = ["display_data", "error", "execute_result", "stream"]
    DISPLAY_DATA_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EXECUTE_RESULT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    display_data: DisplayData
    error: ErrorOutput
    execute_result: ExecuteResult
    stream: StreamOutput
    def __init__(self, stream: _Optional[_Union[StreamOutput, _Mapping]] = ..., display_data: _Optional[_Union[DisplayData, _Mapping]] = ..., execute_result: _Optional[_Union[ExecuteResult, _Mapping]] = ..., error: _Optional[_Union[ErrorOutput, _Mapping]] = ...) -> None: ...

class StreamOutput(_message.Message):
    __slots__ = ["name", "text"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    name: StreamName
    text: str
    def __init__(self, name: _Optional[_Union[StreamName, str]] = ..., text: _Optional[str] = ...) -> None: ...

class StreamName(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
