from google.rpc import code_pb2 as _code_pb2
from prelabel.v1 import common_pb2 as _common_pb2
from prelabel.v1 import keypoints_pb2 as _keypoints_pb2
from prelabel.v1 import segmentation_pb2 as _segmentation_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Task(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_UNSPECIFIED: _ClassVar[Task]
    TASK_DETECT: _ClassVar[Task]
    TASK_SEGMENT: _ClassVar[Task]
    TASK_KEYPOINTS: _ClassVar[Task]
    TASK_FACES: _ClassVar[Task]
TASK_UNSPECIFIED: Task
TASK_DETECT: Task
TASK_SEGMENT: Task
TASK_KEYPOINTS: Task
TASK_FACES: Task

class PreLabelRequest(_message.Message):
    __slots__ = ("image", "tasks", "score_threshold", "category_names", "max_labels", "review_policy", "cascade", "include_polygons")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_NAMES_FIELD_NUMBER: _ClassVar[int]
    MAX_LABELS_FIELD_NUMBER: _ClassVar[int]
    REVIEW_POLICY_FIELD_NUMBER: _ClassVar[int]
    CASCADE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_POLYGONS_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    tasks: _containers.RepeatedScalarFieldContainer[Task]
    score_threshold: float
    category_names: _containers.RepeatedScalarFieldContainer[str]
    max_labels: int
    review_policy: _common_pb2.ReviewPolicy
    cascade: bool
    include_polygons: bool
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[Task, str]]] = ..., score_threshold: _Optional[float] = ..., category_names: _Optional[_Iterable[str]] = ..., max_labels: _Optional[int] = ..., review_policy: _Optional[_Union[_common_pb2.ReviewPolicy, _Mapping]] = ..., cascade: _Optional[bool] = ..., include_polygons: _Optional[bool] = ...) -> None: ...

class TaskResult(_message.Message):
    __slots__ = ("task", "code", "message", "latency_ms", "provenance", "status", "retry_after_ms")
    TASK_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    task: Task
    code: str
    message: str
    latency_ms: float
    provenance: _common_pb2.Provenance
    status: _code_pb2.Code
    retry_after_ms: int
    def __init__(self, task: _Optional[_Union[Task, str]] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., latency_ms: _Optional[float] = ..., provenance: _Optional[_Union[_common_pb2.Provenance, _Mapping]] = ..., status: _Optional[_Union[_code_pb2.Code, str]] = ..., retry_after_ms: _Optional[int] = ...) -> None: ...

class PreLabelResponse(_message.Message):
    __slots__ = ("image_id", "image_size", "detections", "masks", "person_keypoints", "faces", "task_results", "uncertainty", "keypoint_schemas")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    MASKS_FIELD_NUMBER: _ClassVar[int]
    PERSON_KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    TASK_RESULTS_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    KEYPOINT_SCHEMAS_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    image_size: _common_pb2.ImageSize
    detections: _containers.RepeatedCompositeFieldContainer[_common_pb2.Detection]
    masks: _containers.RepeatedCompositeFieldContainer[_segmentation_pb2.InstanceMask]
    person_keypoints: _containers.RepeatedCompositeFieldContainer[_keypoints_pb2.KeypointInstance]
    faces: _containers.RepeatedCompositeFieldContainer[_keypoints_pb2.KeypointInstance]
    task_results: _containers.RepeatedCompositeFieldContainer[TaskResult]
    uncertainty: _common_pb2.ImageUncertainty
    keypoint_schemas: _containers.RepeatedCompositeFieldContainer[_common_pb2.KeypointSchema]
    def __init__(self, image_id: _Optional[str] = ..., image_size: _Optional[_Union[_common_pb2.ImageSize, _Mapping]] = ..., detections: _Optional[_Iterable[_Union[_common_pb2.Detection, _Mapping]]] = ..., masks: _Optional[_Iterable[_Union[_segmentation_pb2.InstanceMask, _Mapping]]] = ..., person_keypoints: _Optional[_Iterable[_Union[_keypoints_pb2.KeypointInstance, _Mapping]]] = ..., faces: _Optional[_Iterable[_Union[_keypoints_pb2.KeypointInstance, _Mapping]]] = ..., task_results: _Optional[_Iterable[_Union[TaskResult, _Mapping]]] = ..., uncertainty: _Optional[_Union[_common_pb2.ImageUncertainty, _Mapping]] = ..., keypoint_schemas: _Optional[_Iterable[_Union[_common_pb2.KeypointSchema, _Mapping]]] = ...) -> None: ...
