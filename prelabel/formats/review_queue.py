"""The review queue (`DIR/review_queue.jsonl`): one line per image, most uncertain first.

Each line: `image_id`, `path`, `priority`, `uncertainty` (ImageUncertainty.score: largest
binary entropy of a label score, in [0, 1]), `disagreement` (ImageUncertainty.disagreement:
share of labels the independently run tasks do not agree on, in [0, 1]),
`needs_review_count`, `min_margin` (closest any score is to its review band's edge),
`review_policy_id` (the policy that made the decisions) and `labels`: the labels whose
review decision is needs_review, each with `task`, `index` (position in that task's list
of the response), `category`, `score` and `box` [x_min, y_min, x_max, y_max] in pixels.

Order: `priority` = max(uncertainty, disagreement) descending -- an image is worth a look
when a label is unsure *or* two models contradict each other, even confidently -- then
needs_review_count descending, then min_margin ascending, then input order. Every image is
listed, so the file is also the complete work list for a review team; images without
labels come last.
"""
from __future__ import annotations

import json
import os

from prelabel.atomic import atomic_open
from prelabel.formats.common import iter_labels
from prelabel.v1 import prelabel_pb2

FILE_NAME = "review_queue.jsonl"


def entry_of(image_id: str, path: str, response: prelabel_pb2.PreLabelResponse) -> dict:
    u = response.uncertainty
    labels = []
    for label in iter_labels(response):
        if label.needs_review:
            b = label.detection.box
            labels.append({"task": label.task.name, "index": label.index, "category": label.category,
                           "score": round(float(label.detection.score), 5),
                           "box": [round(float(v), 2) for v in (b.x_min, b.y_min, b.x_max, b.y_max)]})
    return {"image_id": image_id, "path": path,
            "priority": round(max(float(u.score), float(u.disagreement)), 5),
            "uncertainty": round(float(u.score), 5), "disagreement": round(float(u.disagreement), 5),
            "needs_review_count": int(u.needs_review_count), "min_margin": round(float(u.min_margin), 5),
            "review_policy_id": u.review_policy_id, "labels": labels}


class ReviewQueueWriter:
    def __init__(self, out_dir: str | os.PathLike, **_: object):
        self.path = os.path.join(out_dir, FILE_NAME)
        self._entries: list[tuple[tuple, str]] = []

    def add(self, number: int, image_id: str, path: str, response: prelabel_pb2.PreLabelResponse) -> None:
        entry = entry_of(image_id, path, response)
        key = (-entry["priority"], -entry["needs_review_count"], entry["min_margin"], number)
        self._entries.append((key, json.dumps(entry, ensure_ascii=False)))

    def close(self) -> None:
        self._entries.sort(key=lambda e: e[0])
        with atomic_open(self.path) as fh:
            for _, line in self._entries:
                fh.write(line + "\n")
        self._entries = []

    def abort(self) -> None:
        self._entries = []
