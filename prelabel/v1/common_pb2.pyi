from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Weights(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEIGHTS_UNSPECIFIED: _ClassVar[Weights]
    WEIGHTS_PRETRAINED: _ClassVar[Weights]
    WEIGHTS_CUSTOM: _ClassVar[Weights]
    WEIGHTS_RANDOM: _ClassVar[Weights]

class ReviewDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_DECISION_UNSPECIFIED: _ClassVar[ReviewDecision]
    REVIEW_DECISION_AUTO_ACCEPT: _ClassVar[ReviewDecision]
    REVIEW_DECISION_NEEDS_REVIEW: _ClassVar[ReviewDecision]
    REVIEW_DECISION_REJECT: _ClassVar[ReviewDecision]

class Priority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIORITY_UNSPECIFIED: _ClassVar[Priority]
    PRIORITY_INTERACTIVE: _ClassVar[Priority]
    PRIORITY_BULK: _ClassVar[Priority]
WEIGHTS_UNSPECIFIED: Weights
WEIGHTS_PRETRAINED: Weights
WEIGHTS_CUSTOM: Weights
WEIGHTS_RANDOM: Weights
REVIEW_DECISION_UNSPECIFIED: ReviewDecision
REVIEW_DECISION_AUTO_ACCEPT: ReviewDecision
REVIEW_DECISION_NEEDS_REVIEW: ReviewDecision
REVIEW_DECISION_REJECT: ReviewDecision
PRIORITY_UNSPECIFIED: Priority
PRIORITY_INTERACTIVE: Priority
PRIORITY_BULK: Priority

class Image(_message.Message):
    __slots__ = ("data", "image_id")
    DATA_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    image_id: str
    def __init__(self, data: _Optional[bytes] = ..., image_id: _Optional[str] = ...) -> None: ...

class ImageSize(_message.Message):
    __slots__ = ("width", "height")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x_min", "y_min", "x_max", "y_max")
    X_MIN_FIELD_NUMBER: _ClassVar[int]
    Y_MIN_FIELD_NUMBER: _ClassVar[int]
    X_MAX_FIELD_NUMBER: _ClassVar[int]
    Y_MAX_FIELD_NUMBER: _ClassVar[int]
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    def __init__(self, x_min: _Optional[float] = ..., y_min: _Optional[float] = ..., x_max: _Optional[float] = ..., y_max: _Optional[float] = ...) -> None: ...

class Provenance(_message.Message):
    __slots__ = ("model_name", "model_version", "architecture", "weights", "weights_source", "weights_sha256", "license")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SOURCE_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    LICENSE_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: str
    architecture: str
    weights: Weights
    weights_source: str
    weights_sha256: str
    license: str
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., architecture: _Optional[str] = ..., weights: _Optional[_Union[Weights, str]] = ..., weights_source: _Optional[str] = ..., weights_sha256: _Optional[str] = ..., license: _Optional[str] = ...) -> None: ...

class Category(_message.Message):
    __slots__ = ("id", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class Detection(_message.Message):
    __slots__ = ("box", "category", "score", "review", "provenance")
    BOX_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    box: Box
    category: Category
    score: float
    review: ReviewDecision
    provenance: Provenance
    def __init__(self, box: _Optional[_Union[Box, _Mapping]] = ..., category: _Optional[_Union[Category, _Mapping]] = ..., score: _Optional[float] = ..., review: _Optional[_Union[ReviewDecision, str]] = ..., provenance: _Optional[_Union[Provenance, _Mapping]] = ...) -> None: ...

class RleMask(_message.Message):
    __slots__ = ("size", "counts")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    size: _containers.RepeatedScalarFieldContainer[int]
    counts: bytes
    def __init__(self, size: _Optional[_Iterable[int]] = ..., counts: _Optional[bytes] = ...) -> None: ...

class Polygon(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, points: _Optional[_Iterable[float]] = ...) -> None: ...

class Keypoint(_message.Message):
    __slots__ = ("name", "x", "y", "score", "visibility")
    NAME_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    name: str
    x: float
    y: float
    score: float
    visibility: int
    def __init__(self, name: _Optional[str] = ..., x: _Optional[float] = ..., y: _Optional[float] = ..., score: _Optional[float] = ..., visibility: _Optional[int] = ...) -> None: ...

class KeypointSchema(_message.Message):
    __slots__ = ("name", "keypoint_names", "skeleton")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEYPOINT_NAMES_FIELD_NUMBER: _ClassVar[int]
    SKELETON_FIELD_NUMBER: _ClassVar[int]
    name: str
    keypoint_names: _containers.RepeatedScalarFieldContainer[str]
    skeleton: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., keypoint_names: _Optional[_Iterable[str]] = ..., skeleton: _Optional[_Iterable[int]] = ...) -> None: ...

class ReviewBand(_message.Message):
    __slots__ = ("accept_at", "reject_below")
    ACCEPT_AT_FIELD_NUMBER: _ClassVar[int]
    REJECT_BELOW_FIELD_NUMBER: _ClassVar[int]
    accept_at: float
    reject_below: float
    def __init__(self, accept_at: _Optional[float] = ..., reject_below: _Optional[float] = ...) -> None: ...

class ReviewPolicy(_message.Message):
    __slots__ = ("default_band", "by_category", "include_rejected")
    class ByCategoryEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ReviewBand
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ReviewBand, _Mapping]] = ...) -> None: ...
    DEFAULT_BAND_FIELD_NUMBER: _ClassVar[int]
    BY_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_REJECTED_FIELD_NUMBER: _ClassVar[int]
    default_band: ReviewBand
    by_category: _containers.MessageMap[str, ReviewBand]
    include_rejected: bool
    def __init__(self, default_band: _Optional[_Union[ReviewBand, _Mapping]] = ..., by_category: _Optional[_Mapping[str, ReviewBand]] = ..., include_rejected: _Optional[bool] = ...) -> None: ...

class ImageUncertainty(_message.Message):
    __slots__ = ("score", "needs_review_count", "min_margin", "review_policy_id", "disagreement")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    NEEDS_REVIEW_COUNT_FIELD_NUMBER: _ClassVar[int]
    MIN_MARGIN_FIELD_NUMBER: _ClassVar[int]
    REVIEW_POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    DISAGREEMENT_FIELD_NUMBER: _ClassVar[int]
    score: float
    needs_review_count: int
    min_margin: float
    review_policy_id: str
    disagreement: float
    def __init__(self, score: _Optional[float] = ..., needs_review_count: _Optional[int] = ..., min_margin: _Optional[float] = ..., review_policy_id: _Optional[str] = ..., disagreement: _Optional[float] = ...) -> None: ...
