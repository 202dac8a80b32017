from prelabel.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PointLabel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POINT_LABEL_UNSPECIFIED: _ClassVar[PointLabel]
    POINT_LABEL_POSITIVE: _ClassVar[PointLabel]
    POINT_LABEL_NEGATIVE: _ClassVar[PointLabel]
POINT_LABEL_UNSPECIFIED: PointLabel
POINT_LABEL_POSITIVE: PointLabel
POINT_LABEL_NEGATIVE: PointLabel

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

class PointPrompt(_message.Message):
    __slots__ = ("x", "y", "label")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    label: PointLabel
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., label: _Optional[_Union[PointLabel, str]] = ...) -> None: ...

class LowResMask(_message.Message):
    __slots__ = ("data", "shape")
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, data: _Optional[bytes] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class ClickPrompt(_message.Message):
    __slots__ = ("points", "box", "previous_mask", "multimask_output", "mask_threshold", "include_polygons", "category")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_MASK_FIELD_NUMBER: _ClassVar[int]
    MULTIMASK_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    MASK_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_POLYGONS_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[PointPrompt]
    box: _common_pb2.Box
    previous_mask: LowResMask
    multimask_output: bool
    mask_threshold: float
    include_polygons: bool
    category: _common_pb2.Category
    def __init__(self, points: _Optional[_Iterable[_Union[PointPrompt, _Mapping]]] = ..., box: _Optional[_Union[_common_pb2.Box, _Mapping]] = ..., previous_mask: _Optional[_Union[LowResMask, _Mapping]] = ..., multimask_output: _Optional[bool] = ..., mask_threshold: _Optional[float] = ..., include_polygons: _Optional[bool] = ..., category: _Optional[_Union[_common_pb2.Category, _Mapping]] = ...) -> None: ...

class ClickRequest(_message.Message):
    __slots__ = ("image", "prompt", "review_policy", "priority")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    REVIEW_POLICY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    prompt: ClickPrompt
    review_policy: _common_pb2.ReviewPolicy
    priority: _common_pb2.Priority
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., prompt: _Optional[_Union[ClickPrompt, _Mapping]] = ..., review_policy: _Optional[_Union[_common_pb2.ReviewPolicy, _Mapping]] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ...) -> None: ...

class ClickSessionStart(_message.Message):
    __slots__ = ("image", "review_policy", "priority")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    REVIEW_POLICY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    review_policy: _common_pb2.ReviewPolicy
    priority: _common_pb2.Priority
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., review_policy: _Optional[_Union[_common_pb2.ReviewPolicy, _Mapping]] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ...) -> None: ...

class ClickSessionRequest(_message.Message):
    __slots__ = ("start", "click")
    START_FIELD_NUMBER: _ClassVar[int]
    CLICK_FIELD_NUMBER: _ClassVar[int]
    start: ClickSessionStart
    click: ClickPrompt
    def __init__(self, start: _Optional[_Union[ClickSessionStart, _Mapping]] = ..., click: _Optional[_Union[ClickPrompt, _Mapping]] = ...) -> None: ...

class MaskCandidate(_message.Message):
    __slots__ = ("instance", "low_res_mask")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    LOW_RES_MASK_FIELD_NUMBER: _ClassVar[int]
    instance: InstanceMask
    low_res_mask: LowResMask
    def __init__(self, instance: _Optional[_Union[InstanceMask, _Mapping]] = ..., low_res_mask: _Optional[_Union[LowResMask, _Mapping]] = ...) -> None: ...

class ClickResponse(_message.Message):
    __slots__ = ("image_id", "image_size", "candidates", "provenance", "image_state_reused")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_STATE_REUSED_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    image_size: _common_pb2.ImageSize
    candidates: _containers.RepeatedCompositeFieldContainer[MaskCandidate]
    provenance: _common_pb2.Provenance
    image_state_reused: bool
    def __init__(self, image_id: _Optional[str] = ..., image_size: _Optional[_Union[_common_pb2.ImageSize, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[MaskCandidate, _Mapping]]] = ..., provenance: _Optional[_Union[_common_pb2.Provenance, _Mapping]] = ..., image_state_reused: _Optional[bool] = ...) -> None: ...
