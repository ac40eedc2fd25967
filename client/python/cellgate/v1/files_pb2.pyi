from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
FILE_KIND_DIRECTORY: FileKind
FILE_KIND_FILE: FileKind
FILE_KIND_OTHER: FileKind
FILE_KIND_SYMLINK: FileKind
FILE_KIND_UNSPECIFIED: FileKind

class DeleteFileRequest(_message.Message):
    __slots__ = ["kernel_id", "path", "recursive"]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    kernel_id: str
    path: str
    recursive: bool
    def __init__(self, kernel_id: _Optional[str] = ..., path: _Optional[str] = ..., recursive: bool = ...) -> None: ...

class DeleteFileResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class DownloadFileRequest(_message.Message):
    __slots__ = ["kernel_id", "path"]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    kernel_id: str
    path: str
    def __init__(self, kernel_id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class FileChunk(_message.Message):
    __slots__ = ["data", "info"]
    DATA_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    info: FileInfo
    def __init__(self, info: _Optional[_Union[FileInfo, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class FileInfo(_message.Message):
    __slots__ = ["kind", "modified", "path", "size"]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    kind: FileKind
    modified: _timestamp_pb2.Timestamp
    path: str
    size: int
    def __init__(self, path: _Optional[str] = ..., kind: _Optional[_Union[FileKind, str]] = ..., size: _Optional[int] = ..., modified: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListFilesRequest(_message.Message):
    __slots__ = ["kernel_id", "path", "recursive"]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    kernel_id: str
    path: str
    recursive: bool
    def __init__(self, kernel_id: _Optional[str] = ..., path: _Optional[str] = ..., recursive: bool = ...) -> None: ...

class ListFilesResponse(_message.Message):
    __slots__ = ["files", "truncated"]
    FILES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[FileInfo]
    truncated: bool
    def __init__(self, files: _Optional[_Iterable[_Union[FileInfo, _Mapping]]] = ..., truncated: bool = ...) -> None: ...

class TransferVariableRequest(_message.Message):
    __slots__ = ["as_name", "from_kernel_id", "name", "timeout_ms", "to_kernel_id"]
    AS_NAME_FIELD_NUMBER: _ClassVar[int]
    FROM_KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    TO_KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    as_name: str
    from_kernel_id: str
    name: str
    timeout_ms: int
    to_kernel_id: str
    def __init__(self, from_kernel_id: _Optional[str] = ..., name: _Optional[str] = ..., to_kernel_id: _Optional[str] = ..., as_name: _Optional[str] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class TransferVariableResponse(_message.Message):
    __slots__ = ["from_execution_id", "size", "to_execution_id", "type"]
    FROM_EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    TO_EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    from_execution_id: str
    size: int
    to_execution_id: str
    type: str
    def __init__(self, size: _Optional[int] = ..., type: _Optional[str] = ..., from_execution_id: _Optional[str] = ..., to_execution_id: _Optional[str] = ...) -> None: ...

class UploadFileEnd(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class UploadFileHeader(_message.Message):
    __slots__ = ["kernel_id", "overwrite", "path", "size"]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    kernel_id: str
    overwrite: bool
    path: str
    size: int
    def __init__(self, kernel_id: _Optional[str] = ..., path: _Optional[str] = ..., overwrite: bool = ..., size: _Optional[int] = ...) -> None: ...

class UploadFileRequest(_message.Message):
    __slots__ = ["chunk", "end", "header"]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    end: UploadFileEnd
    header: UploadFileHeader
    def __init__(self, header: _Optional[_Union[UploadFileHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ..., end: _Optional[_Union[UploadFileEnd, _Mapping]] = ...) -> None: ...

class FileKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
