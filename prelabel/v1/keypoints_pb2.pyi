from prelabel.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KeypointKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEYPOINT_KIND_UNSPECIFIED: _ClassVar[KeypointKind]
    KEYPOINT_KIND_PERSON: _ClassVar[KeypointKind]
    KEYPOINT_KIND_FACE: _ClassVar[KeypointKind]
KEYPOINT_KIND_UNSPECIFIED: KeypointKind
KEYPOINT_KIND_PERSON: KeypointKind
KEYPOINT_KIND_FACE: KeypointKind

class KeypointRequest(_message.Message):
    __slots__ = ("image", "kind", "prompt_boxes", "score_threshold", "max_instances", "visible_threshold", "labeled_threshold", "review_policy", "priority")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROMPT_BOXES_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    VISIBLE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    LABELED_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REVIEW_POLICY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    kind: KeypointKind
    prompt_boxes: _containers.RepeatedCompositeFieldContainer[_common_pb2.Box]
    score_threshold: float
    max_instances: int
    visible_threshold: float
    labeled_threshold: float
    review_policy: _common_pb2.ReviewPolicy
    priority: _common_pb2.Priority
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., kind: _Optional[_Union[KeypointKind, str]] = ..., prompt_boxes: _Optional[_Iterable[_Union[_common_pb2.Box, _Mapping]]] = ..., score_threshold: _Optional[float] = ..., max_instances: _Optional[int] = ..., visible_threshold: _Optional[float] = ..., labeled_threshold: _Optional[float] = ..., review_policy: _Optional[_Union[_common_pb2.ReviewPolicy, _Mapping]] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ...) -> None: ...

class KeypointInstance(_message.Message):
    __slots__ = ("detection", "keypoints", "prompt_index")
    DETECTION_FIELD_NUMBER: _ClassVar[int]
    KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_INDEX_FIELD_NUMBER: _ClassVar[int]
    detection: _common_pb2.Detection
    keypoints: _containers.RepeatedCompositeFieldContainer[_common_pb2.Keypoint]
    prompt_index: int
    def __init__(self, detection: _Optional[_Union[_common_pb2.Detection, _Mapping]] = ..., keypoints: _Optional[_Iterable[_Union[_common_pb2.Keypoint, _Mapping]]] = ..., prompt_index: _Optional[int] = ...) -> None: ...

class KeypointResponse(_message.Message):
    __slots__ = ("image_id", "image_size", "instances", "schema", "provenance", "uncertainty")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    image_size: _common_pb2.ImageSize
    instances: _containers.RepeatedCompositeFieldContainer[KeypointInstance]
    schema: _common_pb2.KeypointSchema
    provenance: _common_pb2.Provenance
    uncertainty: _common_pb2.ImageUncertainty
    def __init__(self, image_id: _Optional[str] = ..., image_size: _Optional[_Union[_common_pb2.ImageSize, _Mapping]] = ..., instances: _Optional[_Iterable[_Union[KeypointInstance, _Mapping]]] = ..., schema: _Optional[_Union[_common_pb2.KeypointSchema, _Mapping]] = ..., provenance: _Optional[_Union[_common_pb2.Provenance, _Mapping]] = ..., uncertainty: _Optional[_Union[_common_pb2.ImageUncertainty, _Mapping]] = ...) -> None: ...
