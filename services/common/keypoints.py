"""Keypoints as COCO expects them: named points with a score and a visibility flag
(0 not labeled, 1 labeled but not visible, 2 visible), and the keypoint schemas."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prelabel.core.errors import InvalidArgument
from prelabel.core.labels import COCO_KEYPOINT_NAMES, COCO_SKELETON, FACE_LANDMARK_NAMES
from prelabel.v1 import common_pb2
from services.common import requests as fields

DEFAULT_VISIBLE_THRESHOLD = 0.5
DEFAULT_LABELED_THRESHOLD = 0.2

NOT_LABELED, LABELED_NOT_VISIBLE, VISIBLE = 0, 1, 2


@dataclass(frozen=True)
class KeypointThresholds:
    visible: float = DEFAULT_VISIBLE_THRESHOLD
    labeled: float = DEFAULT_LABELED_THRESHOLD

    def __post_init__(self):
        if not (0.0 <= self.labeled <= self.visible <= 1.0):
            raise ValueError(f"need 0 <= labeled ({self.labeled}) <= visible ({self.visible}) <= 1")


def thresholds_from_request(request) -> KeypointThresholds:
    """`visible_threshold` / `labeled_threshold` of a request, validated: each in
    [0, 1] and labeled <= visible."""
    visible = fields.probability(request, "visible_threshold", DEFAULT_VISIBLE_THRESHOLD)
    labeled = fields.probability(request, "labeled_threshold", DEFAULT_LABELED_THRESHOLD)
    if labeled > visible:
        field = "labeled_threshold" if request.HasField("labeled_threshold") else "visible_threshold"
        raise InvalidArgument(field, f"labeled_threshold ({labeled}) must not exceed "
                                     f"visible_threshold ({visible})")
    return KeypointThresholds(visible=visible, labeled=labeled)


def visibility(score: float, thresholds: KeypointThresholds) -> int:
    """COCO visibility of a keypoint with confidence `score`."""
    if score >= thresholds.visible:
        return VISIBLE
    if score >= thresholds.labeled:
        return LABELED_NOT_VISIBLE
    return NOT_LABELED


def make_keypoints(names: list[str], points: np.ndarray, scores: np.ndarray,
                   thresholds: KeypointThresholds) -> list[common_pb2.Keypoint]:
    """Keypoint messages in schema order; an unlabeled point (visibility 0) claims no
    position (x = y = 0), as in COCO annotations."""
    points = np.asarray(points, dtype=np.float64).reshape(len(names), 2)
    scores = np.clip(np.asarray(scores, dtype=np.float64).reshape(len(names)), 0.0, 1.0)
    out = []
    for name, (x, y), score in zip(names, points, scores, strict=False):
        flag = visibility(float(score), thresholds)
        if flag == NOT_LABELED:
            x = y = 0.0
        out.append(common_pb2.Keypoint(name=name, x=float(x), y=float(y), score=float(score),
                                       visibility=flag))
    return out


def schema(name: str, names: list[str], skeleton: list[tuple[int, int]]) -> common_pb2.KeypointSchema:
    return common_pb2.KeypointSchema(
        name=name, keypoint_names=names, skeleton=[i for edge in skeleton for i in edge],
    )


COCO_PERSON_SCHEMA = schema("coco_person_17", COCO_KEYPOINT_NAMES, COCO_SKELETON)
#: MTCNN's five landmarks; "left"/"right" are as seen in the image (MTCNN's
#: convention), not the subject's left/right as in COCO person keypoints.
FACE_SCHEMA = schema("face_5", FACE_LANDMARK_NAMES, [])
