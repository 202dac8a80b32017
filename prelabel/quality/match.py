"""Pair draft images with corrected ones, and each draft label with the object a human
kept (or not).

Images pair by key: the same path, else one path ending in the other ("photos/a.jpg"
and "/data/photos/a.jpg"), else the same file name when only one draft image has it.

Per image and task, drafts (highest score first) take the unmatched truth object of
the same category most similar to them, if at least `iou`, by the task's COCOeval iou
type (prelabel.core.tasks): box IoU (detect, and faces: their landmarks are judged by
their box), mask IoU (segment), OKS (person keypoints, with the COCO sigmas). A draft
without one is an error, of the kind a reviewer would have made:

- duplicate: it overlaps (>= iou) a same-category object another draft already took;
- relabelled: it overlaps (>= iou) an object of another category;
- moved: it overlaps a same-category object, but less than `iou`
  (at least MOVED_MIN_IOU);
- deleted: nothing like it was kept.

A truth object no kept draft (auto-accepted or needs-review) matched was added by a
human: missed -- unless a kept draft overlapping it was relabelled to its category, which
fixed it (`relabelled`: one edit, not a drawing; the draft still counts as wrong). A task without a single truth object (humans labelled boxes only, say)
is not judged. Which truth objects a task is judged against: those of that task when
the file says (annotate's per-task file names, or a `task` field; keypoints: persons with
a labelled point); otherwise detect: every object but faces (only those without a mask,
when an image has both kinds: a CVAT task holding both the detect and the segment
import); segment: objects with a mask; keypoints: persons with keypoints; faces: faces.
"""
from __future__ import annotations

import posixpath
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from pycocotools import mask as mask_utils

from prelabel.core.geometry import box_iou_xywh
from prelabel.core.labels import FACE
from prelabel.core.tasks import BY_NAME, TASK_NAMES, TASKS, LabelKind
from prelabel.quality.drafts import Drafts
from prelabel.quality.labels import REJECT, Ann, ImageLabels
from prelabel.quality.truth import Truth

MOVED_MIN_IOU = 0.1
#: COCOeval's kpt_oks_sigmas of each keypoint task's category (prelabel.core.labels).
OKS_SIGMAS = {t.keypoints.category: np.array(t.keypoints.oks_sigmas) for t in TASKS if t.keypoints is not None}


@dataclass
class DraftOutcome:
    image: str
    task: str
    category: str
    score: float
    review: str
    correct: bool  # matched at `iou`
    correct_strict: bool  # matched at `strict_iou`
    error: str = ""  # duplicate / relabelled / moved / deleted when not correct


@dataclass
class TruthOutcome:
    image: str
    task: str
    category: str
    found: bool  # matched by a kept (not rejected) draft at `iou`
    relabelled: bool = False  # not found, but a kept relabelled draft overlapping it fixed it


@dataclass
class Matching:
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (draft key, truth key)
    drafts: list[DraftOutcome] = field(default_factory=list)
    truths: list[TruthOutcome] = field(default_factory=list)
    unpaired_drafts: list[str] = field(default_factory=list)  # draft images without truth
    unpaired_truth: list[str] = field(default_factory=list)  # truth images never pre-labelled
    outside_label_space: dict[str, int] = field(default_factory=dict)  # category -> drafts not judged
    tasks_without_truth: list[str] = field(default_factory=list)  # tasks humans did not label: not judged
    iou: float = 0.5
    strict_iou: float = 0.75

    def samples(self, strict: bool = False) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
        """(task, category) -> (scores, correct) of every judged draft: calibration input."""
        out: dict[tuple[str, str], tuple[list, list]] = defaultdict(lambda: ([], []))
        for d in self.drafts:
            scores, correct = out[(d.task, d.category)]
            scores.append(d.score)
            correct.append(d.correct_strict if strict else d.correct)
        return {k: (np.array(s), np.array(c, dtype=bool)) for k, (s, c) in out.items()}


def pair_images(draft_keys, truth_keys) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    drafts = set(draft_keys)
    by_name: dict[str, list[str]] = defaultdict(list)
    for k in drafts:
        by_name[posixpath.basename(k)].append(k)
    pairs, unpaired_truth = [], []
    for t in sorted(truth_keys):
        match = t if t in drafts else None
        if match is None:
            ends = [d for d in by_name.get(posixpath.basename(t), [])
                    if d.endswith("/" + t) or t.endswith("/" + d)]
            same_name = by_name.get(posixpath.basename(t), [])
            match = ends[0] if len(ends) == 1 else (same_name[0] if len(same_name) == 1 else None)
        if match is None:
            unpaired_truth.append(t)
        else:
            pairs.append((match, t))
    paired = {d for d, _ in pairs}
    return pairs, sorted(drafts - paired), unpaired_truth


def truth_for_task(image: ImageLabels, task: str) -> list[Ann]:
    anns = [a for a in image.anns if not a.iscrowd]
    spec = BY_NAME[task]
    judged_by_oks = spec.coco_iou_type == "keypoints"
    if any(a.task for a in anns):
        # A person whose points were all removed is no keypoint object (COCOeval agrees).
        return [a for a in anns if a.task == task and (not judged_by_oks or a.has_keypoints)]
    if spec.kind is LabelKind.BOX:
        objects = [a for a in anns if a.category != FACE]
        # Boxes and masks in one export (a CVAT task holding both imports): the masks are
        # the segment task's objects, not a second copy of each box.
        boxes = [a for a in objects if not a.has_mask]
        return boxes if boxes and len(boxes) < len(objects) else objects
    if spec.kind is LabelKind.MASK:
        return [a for a in anns if a.has_mask]
    return [a for a in anns if a.category == spec.category and (not judged_by_oks or a.has_keypoints)]


def _rle(ann: Ann, height: int, width: int):
    seg = ann.segmentation
    if isinstance(seg, list):  # polygons
        return mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    if isinstance(seg, dict) and isinstance(seg.get("counts"), list):  # uncompressed RLE (CVAT)
        return mask_utils.frPyObjects(seg, *seg["size"])
    if isinstance(seg, dict):
        return {"size": seg["size"], "counts": seg["counts"].encode("ascii") if isinstance(seg["counts"], str)
                else seg["counts"]}
    x, y, w, h = ann.bbox  # no mask: its box
    return mask_utils.frPyObjects([[x, y, x + w, y, x + w, y + h, x, y + h]], height, width)[0]


def oks(draft: Ann, truth: Ann, sigmas: np.ndarray) -> float:
    """COCO object keypoint similarity; box IoU when the truth has no labelled point."""
    g = np.asarray(truth.keypoints, dtype=float).reshape(-1, 3)
    d = np.asarray(draft.keypoints or [0.0] * g.size, dtype=float).reshape(-1, 3)
    visible = g[:, 2] > 0
    if not visible.any() or len(d) != len(g) or len(sigmas) != len(g):
        return box_iou_xywh(draft.bbox, truth.bbox)
    area = truth.bbox[2] * truth.bbox[3] + np.spacing(1)
    e = ((d[:, 0] - g[:, 0]) ** 2 + (d[:, 1] - g[:, 1]) ** 2) / ((2 * sigmas) ** 2 * area * 2)
    return float(np.exp(-e[visible]).mean())


def similarity(task: str, drafts: list[Ann], truths: list[Ann], height: int, width: int) -> np.ndarray:
    """[len(drafts), len(truths)] similarity used to match: by the task's COCOeval iou type
    (mask IoU, OKS, else box IoU)."""
    if not drafts or not truths:
        return np.zeros((len(drafts), len(truths)))
    spec = BY_NAME[task]
    if spec.coco_iou_type == "segm" and height and width:
        return np.asarray(mask_utils.iou([_rle(a, height, width) for a in drafts],
                                         [_rle(a, height, width) for a in truths], [0] * len(truths)))
    if spec.coco_iou_type == "keypoints" and spec.category is not None:
        sigmas = OKS_SIGMAS[spec.category]
        return np.array([[oks(d, t, sigmas) if t.has_keypoints else box_iou_xywh(d.bbox, t.bbox)
                          for t in truths] for d in drafts])
    return np.array([[box_iou_xywh(d.bbox, t.bbox) for t in truths] for d in drafts])


def _greedy(sim: np.ndarray, drafts: list[Ann], truths: list[Ann], threshold: float) -> tuple[list, list]:
    """COCO-style: drafts by score, each takes the best free same-category truth."""
    taken_by = [-1] * len(truths)
    match = [-1] * len(drafts)
    for i in sorted(range(len(drafts)), key=lambda i: -drafts[i].score):
        best, best_j = threshold, -1
        for j, t in enumerate(truths):
            if taken_by[j] < 0 and t.category == drafts[i].category and sim[i, j] >= best:
                best, best_j = sim[i, j], j
        if best_j >= 0:
            match[i], taken_by[best_j] = best_j, i
    return match, taken_by


def _relabel_target(i: int, sim: np.ndarray, drafts: list[Ann], truths: list[Ann]) -> int:
    """The object of another category a relabelled draft overlaps most."""
    return max((j for j, t in enumerate(truths) if t.category != drafts[i].category), key=lambda j: sim[i, j])


def _error_kind(i: int, sim: np.ndarray, drafts: list[Ann], truths: list[Ann], threshold: float) -> str:
    same = [sim[i, j] for j, t in enumerate(truths) if t.category == drafts[i].category]
    other = [sim[i, j] for j, t in enumerate(truths) if t.category != drafts[i].category]
    if same and max(same) >= threshold:
        return "duplicate"
    if other and max(other) >= threshold:
        return "relabelled"
    if same and max(same) >= MOVED_MIN_IOU:
        return "moved"
    return "deleted"


def match(drafts: Drafts, truth: Truth, iou: float = 0.5, strict_iou: float = 0.75,
          tasks: tuple[str, ...] = TASK_NAMES) -> Matching:
    pairs, unpaired_drafts, unpaired_truth = pair_images(drafts.images, truth.images)
    out = Matching(pairs=pairs, unpaired_drafts=unpaired_drafts, unpaired_truth=unpaired_truth,
                   iou=iou, strict_iou=strict_iou)
    # A task none of whose objects occur in the corrected labels was not labelled by
    # humans (e.g. boxes only): its drafts are not judged.
    out.tasks_without_truth = [t for t in tasks if not any(truth_for_task(truth.images[k], t) for _, k in pairs)]
    tasks = tuple(t for t in tasks if t not in out.tasks_without_truth)
    for dkey, tkey in pairs:
        dimg, timg = drafts.images[dkey], truth.images[tkey]
        height, width = timg.height or dimg.height, timg.width or dimg.width
        for task in tasks:
            ds = []
            for a in dimg.anns:
                if a.task != task:
                    continue
                if truth.categories and a.category not in truth.categories:
                    out.outside_label_space[a.category] = out.outside_label_space.get(a.category, 0) + 1
                    continue
                ds.append(a)
            ts = truth_for_task(timg, task)
            if not ds and not ts:
                continue
            sim = similarity(task, ds, ts, height, width)
            m, _ = _greedy(sim, ds, ts, iou)
            m_strict, _ = _greedy(sim, ds, ts, strict_iou)
            relabelled = set()
            for i, a in enumerate(ds):
                error = "" if m[i] >= 0 else _error_kind(i, sim, ds, ts, iou)
                if error == "relabelled" and a.review != REJECT:
                    relabelled.add(_relabel_target(i, sim, ds, ts))
                out.drafts.append(DraftOutcome(
                    image=dkey, task=task, category=a.category, score=a.score, review=a.review,
                    correct=m[i] >= 0, correct_strict=m_strict[i] >= 0, error=error))
            found = {m[i] for i, a in enumerate(ds) if m[i] >= 0 and a.review != REJECT}
            out.truths.extend(TruthOutcome(image=dkey, task=task, category=t.category, found=j in found,
                                           relabelled=j in relabelled and j not in found)
                              for j, t in enumerate(ts))
    return out
