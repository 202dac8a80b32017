"""The one in-memory form of labels that evaluate and calibrate work on, whatever file
they came from: per image, a list of `Ann` in source pixels."""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

#: Review decisions as written by `annotate`.
AUTO_ACCEPT, NEEDS_REVIEW, REJECT = "auto_accept", "needs_review", "reject"


@dataclass
class Ann:
    category: str
    bbox: list[float]  # COCO [x, y, width, height], pixels
    task: str = ""  # drafts: always; truth: only when the file says (a corrected annotate coco.json)
    score: float = 1.0
    review: str = ""
    segmentation: Any = None  # COCO polygons [[x0, y0, ...], ...] or RLE {"size", "counts"}
    keypoints: list[float] | None = None  # COCO [x, y, v] * K
    iscrowd: bool = False

    @property
    def has_mask(self) -> bool:
        return bool(self.segmentation)

    @property
    def has_keypoints(self) -> bool:
        return self.keypoints is not None and any(v > 0 for v in self.keypoints[2::3])


@dataclass
class ImageLabels:
    key: str  # drafts: the image id; truth: the file name / path the tool knows
    width: int = 0
    height: int = 0
    anns: list[Ann] = field(default_factory=list)


def normalise_key(key: str) -> str:
    key = key.replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return posixpath.normpath(key) if key else key
