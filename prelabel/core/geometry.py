"""Box overlap, the one definition the router, the formats and the quality loop share."""
from __future__ import annotations

from collections.abc import Sequence

from prelabel.v1 import common_pb2


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes [x_min, y_min, x_max, y_max]; 0 when both are
    empty."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def xyxy(box: common_pb2.Box) -> tuple[float, float, float, float]:
    """A Box as [x_min, y_min, x_max, y_max]."""
    return box.x_min, box.y_min, box.x_max, box.y_max


def proto_box_iou(a: common_pb2.Box, b: common_pb2.Box) -> float:
    return box_iou(xyxy(a), xyxy(b))


def box_iou_xywh(a: Sequence[float], b: Sequence[float]) -> float:
    """box_iou of two COCO boxes [x, y, width, height]."""
    return box_iou((a[0], a[1], a[0] + a[2], a[1] + a[3]), (b[0], b[1], b[0] + b[2], b[1] + b[3]))
