from prelabel.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BoxPrompt(_message.Message):
    __slots__ = ("box", "category")
    BOX_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    box: _common_pb2.Box
    category: _common_pb2.Category
    def __init__(self, box: _Optional[_Union[_common_pb2.Box, _Mapping]] = ..., category: _Optional[_Union[_common_pb2.Category, _Mapping]] = ...) -> None: ...

class SegmentRequest(_message.Message):
    __slots__ = ("image", "prompts", "score_threshold", "category_ids", "category_names", "max_instances", "mask_threshold", "include_polygons", "review_policy", "priority")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_IDS_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_NAMES_FIELD_NUMBER: _ClassVar[int]
    MAX_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    MASK_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_POLYGONS_FIELD_NUMBER: _ClassVar[int]
    REVIEW_POLICY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    prompts: _containers.RepeatedCompositeFieldContainer[BoxPrompt]
    score_threshold: float
    category_ids: _containers.RepeatedScalarFieldContainer[int]
    category_names: _containers.RepeatedScalarFieldContainer[str]
    max_instances: int
    mask_threshold: float
    include_polygons: bool
    review_policy: _common_pb2.ReviewPolicy
    priority: _common_pb2.Priority
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., prompts: _Optional[_Iterable[_Union[BoxPrompt, _Mapping]]] = ..., score_threshold: _Optional[float] = ..., category_ids: _Optional[_Iterable[int]] = ..., category_names: _Optional[_Iterable[str]] = ..., max_instances: _Optional[int] = ..., mask_threshold: _Optional[float] = ..., include_polygons: _Optional[bool] = ..., review_policy: _Optional[_Union[_common_pb2.ReviewPolicy, _Mapping]] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ...) -> None: ...

class InstanceMask(_message.Message):
    __slots__ = ("detection", "mask", "area", "mask_quality", "polygons", "prompt_index")
    DETECTION_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    MASK_QUALITY_FIELD_NUMBER: _ClassVar[int]
    POLYGONS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_INDEX_FIELD_NUMBER: _ClassVar[int]
    detection: _common_pb2.Detection
    mask: _common_pb2.RleMask
    area: int
    mask_quality: float
    polygons: _containers.RepeatedCompositeFieldContainer[_common_pb2.Polygon]
    prompt_index: int
    def __init__(self, detection: _Optional[_Union[_common_pb2.Detection, _Mapping]] = ..., mask: _Optional[_Union[_common_pb2.RleMask, _Mapping]] = ..., area: _Optional[int] = ..., mask_quality: _Optional[float] = ..., polygons: _Optional[_Iterable[_Union[_common_pb2.Polygon, _Mapping]]] = ..., prompt_index: _Optional[int] = ...) -> None: ...

class SegmentResponse(_message.Message):
    __slots__ = ("image_id", "image_size", "instances", "provenance", "uncertainty")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    image_size: _common_pb2.ImageSize
    instances: _containers.RepeatedCompositeFieldContainer[InstanceMask]
    provenance: _common_pb2.Provenance
    uncertainty: _common_pb2.ImageUncertainty
    def __init__(self, image_id: _Optional[str] = ..., image_size: _Optional[_Union[_common_pb2.ImageSize, _Mapping]] = ..., instances: _Optional[_Iterable[_Union[InstanceMask, _Mapping]]] = ..., provenance: _Optional[_Union[_common_pb2.Provenance, _Mapping]] = ..., uncertainty: _Optional[_Union[_common_pb2.ImageUncertainty, _Mapping]] = ...) -> None: ...
