from prelabel.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DetectRequest(_message.Message):
    __slots__ = ("image", "model", "score_threshold", "category_ids", "category_names", "max_detections", "review_policy", "priority")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_IDS_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_NAMES_FIELD_NUMBER: _ClassVar[int]
    MAX_DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    REVIEW_POLICY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    model: str
    score_threshold: float
    category_ids: _containers.RepeatedScalarFieldContainer[int]
    category_names: _containers.RepeatedScalarFieldContainer[str]
    max_detections: int
    review_policy: _common_pb2.ReviewPolicy
    priority: _common_pb2.Priority
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., model: _Optional[str] = ..., score_threshold: _Optional[float] = ..., category_ids: _Optional[_Iterable[int]] = ..., category_names: _Optional[_Iterable[str]] = ..., max_detections: _Optional[int] = ..., review_policy: _Optional[_Union[_common_pb2.ReviewPolicy, _Mapping]] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("image_id", "image_size", "detections", "provenance", "uncertainty")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    image_size: _common_pb2.ImageSize
    detections: _containers.RepeatedCompositeFieldContainer[_common_pb2.Detection]
    provenance: _common_pb2.Provenance
    uncertainty: _common_pb2.ImageUncertainty
    def __init__(self, image_id: _Optional[str] = ..., image_size: _Optional[_Union[_common_pb2.ImageSize, _Mapping]] = ..., detections: _Optional[_Iterable[_Union[_common_pb2.Detection, _Mapping]]] = ..., provenance: _Optional[_Union[_common_pb2.Provenance, _Mapping]] = ..., uncertainty: _Optional[_Union[_common_pb2.ImageUncertainty, _Mapping]] = ...) -> None: ...
