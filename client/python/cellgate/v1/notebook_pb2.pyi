from google.protobuf import timestamp_pb2 as _timestamp_pb2
from cellgate.v1 import execution_pb2 as _execution_pb2
from cellgate.v1 import output_pb2 as _output_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

ANALYSIS_STATUS_ANALYZED: AnalysisStatus
ANALYSIS_STATUS_NOT_APPLICABLE: AnalysisStatus
ANALYSIS_STATUS_OPAQUE: AnalysisStatus
ANALYSIS_STATUS_PENDING: AnalysisStatus
ANALYSIS_STATUS_SYNTAX_ERROR: AnalysisStatus
ANALYSIS_STATUS_UNAVAILABLE: AnalysisStatus
ANALYSIS_STATUS_UNSPECIFIED: AnalysisStatus
CELL_STATE_CANCELLED: CellState
CELL_STATE_ERROR: CellState
CELL_STATE_NEW: CellState
CELL_STATE_OK: CellState
CELL_STATE_QUEUED: CellState
CELL_STATE_RUNNING: CellState
CELL_STATE_STALE: CellState
CELL_STATE_UNSPECIFIED: CellState
CELL_TYPE_CODE: CellType
CELL_TYPE_MARKDOWN: CellType
CELL_TYPE_RAW: CellType
CELL_TYPE_UNSPECIFIED: CellType
DESCRIPTOR: _descriptor.FileDescriptor

class Cell(_message.Message):
    __slots__ = ["analysis", "analysis_detail", "cell_id", "cell_type", "defines", "depends_on", "execution_count", "index", "last_run", "metadata", "outputs", "outputs_truncated", "source", "stale_reason", "state", "uses"]
    ANALYSIS_DETAIL_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    CELL_TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFINES_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_RUN_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    STALE_REASON_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    analysis: AnalysisStatus
    analysis_detail: str
    cell_id: str
    cell_type: CellType
    defines: _containers.RepeatedScalarFieldContainer[str]
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    execution_count: int
    index: int
    last_run: LastRun
    metadata: str
    outputs: _containers.RepeatedCompositeFieldContainer[_output_pb2.Output]
    outputs_truncated: bool
    source: str
    stale_reason: str
    state: CellState
    uses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cell_id: _Optional[str] = ..., index: _Optional[int] = ..., cell_type: _Optional[_Union[CellType, str]] = ..., source: _Optional[str] = ..., state: _Optional[_Union[CellState, str]] = ..., execution_count: _Optional[int] = ..., outputs: _Optional[_Iterable[_Union[_output_pb2.Output, _Mapping]]] = ..., last_run: _Optional[_Union[LastRun, _Mapping]] = ..., metadata: _Optional[str] = ..., outputs_truncated: bool = ..., defines: _Optional[_Iterable[str]] = ..., uses: _Optional[_Iterable[str]] = ..., depends_on: _Optional[_Iterable[str]] = ..., analysis: _Optional[_Union[AnalysisStatus, str]] = ..., analysis_detail: _Optional[str] = ..., stale_reason: _Optional[str] = ...) -> None: ...

class Dependency(_message.Message):
    __slots__ = ["cell_id", "depends_on", "names"]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    depends_on: str
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cell_id: _Optional[str] = ..., depends_on: _Optional[str] = ..., names: _Optional[_Iterable[str]] = ...) -> None: ...

class DependencyGraph(_message.Message):
    __slots__ = ["available", "dependencies", "note", "unanalyzed_cell_ids"]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    UNANALYZED_CELL_IDS_FIELD_NUMBER: _ClassVar[int]
    available: bool
    dependencies: _containers.RepeatedCompositeFieldContainer[Dependency]
    note: str
    unanalyzed_cell_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, available: bool = ..., dependencies: _Optional[_Iterable[_Union[Dependency, _Mapping]]] = ..., unanalyzed_cell_ids: _Optional[_Iterable[str]] = ..., note: _Optional[str] = ...) -> None: ...

class LastRun(_message.Message):
    __slots__ = ["duration_ms", "execution_id", "started_at", "status"]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    duration_ms: int
    execution_id: str
    started_at: _timestamp_pb2.Timestamp
    status: _execution_pb2.ExecutionStatus
    def __init__(self, execution_id: _Optional[str] = ..., started_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., duration_ms: _Optional[int] = ..., status: _Optional[_Union[_execution_pb2.ExecutionStatus, str]] = ...) -> None: ...

class Notebook(_message.Message):
    __slots__ = ["cells", "graph", "kernel_id", "last_seq", "metadata"]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    KERNEL_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    cells: _containers.RepeatedCompositeFieldContainer[Cell]
    graph: DependencyGraph
    kernel_id: str
    last_seq: int
    metadata: str
    def __init__(self, kernel_id: _Optional[str] = ..., cells: _Optional[_Iterable[_Union[Cell, _Mapping]]] = ..., metadata: _Optional[str] = ..., last_seq: _Optional[int] = ..., graph: _Optional[_Union[DependencyGraph, _Mapping]] = ...) -> None: ...

class CellType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class CellState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class AnalysisStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
