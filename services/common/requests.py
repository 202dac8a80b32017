"""Validation of request fields shared by the services: every bad value becomes
InvalidArgument naming the field."""
from __future__ import annotations

import math

from prelabel.core.errors import InvalidArgument
from prelabel.core.limits import MAX_IMAGE_ID_BYTES
from prelabel.v1 import common_pb2

DEFAULT_SCORE_THRESHOLD = 0.05
DEFAULT_MAX_LABELS = 100
MAX_LABELS_LIMIT = 1000


def probability(message, name: str, default: float, *, field: str | None = None,
                open_interval: bool = False) -> float:
    """Read an `optional float` field that must be a probability."""
    if not message.HasField(name):
        return default
    value = getattr(message, name)
    ok = (0.0 < value < 1.0) if open_interval else (0.0 <= value <= 1.0)
    if math.isnan(value) or not ok:
        bounds = "(0, 1)" if open_interval else "[0, 1]"
        raise InvalidArgument(field or name, f"must be in {bounds}, got {value}")
    return value


def max_count(value: int, field: str, default: int = DEFAULT_MAX_LABELS, limit: int = MAX_LABELS_LIMIT) -> int:
    if value == 0:
        return default
    if value > limit:
        raise InvalidArgument(field, f"must be at most {limit}, got {value}")
    return value


def image_id(value: str, field: str = "image.image_id") -> str:
    if len(value.encode("utf-8")) > MAX_IMAGE_ID_BYTES:
        raise InvalidArgument(field, f"longer than {MAX_IMAGE_ID_BYTES} bytes")
    return value


def box(pb, field: str, width: int, height: int) -> tuple[float, float, float, float]:
    """A caller box must be finite, ordered and overlap the image."""
    values = (pb.x_min, pb.y_min, pb.x_max, pb.y_max)
    if not all(math.isfinite(v) for v in values):
        raise InvalidArgument(field, "coordinates must be finite")
    x0, y0, x1, y1 = values
    if x1 <= x0 or y1 <= y0:
        raise InvalidArgument(field, f"needs x_min < x_max and y_min < y_max, got {values}")
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise InvalidArgument(field, f"lies outside the {width}x{height} image")
    return max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1)


def priority(value: int, field: str = "priority") -> int:
    """A known Priority (UNSPECIFIED is served as interactive); an unknown number, which
    proto3 keeps as is, is refused rather than silently served at some level."""
    if value not in common_pb2.Priority.values():
        raise InvalidArgument(field, f"unknown priority {value}; one of "
                                     f"{', '.join(common_pb2.Priority.keys())}")
    return value
