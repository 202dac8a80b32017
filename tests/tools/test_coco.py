"""The COCO files load as written in CVAT's importers (datumaro "coco_instances" for
"COCO 1.0", "coco_person_keypoints" for "COCO Keypoints 1.0") and score per task in
pycocotools' COCOeval (face landmarks with the documented sigmas)."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from prelabel.core.labels import COCO_KEYPOINT_NAMES, COCO_SKELETON, FACE_LANDMARK_NAMES, FACE_SKELETON
from prelabel.core.tasks import FACES
from prelabel.formats.coco import file_path as coco_file
from prelabel.formats.common import relative_name

pytestmark = [pytest.mark.tools, pytest.mark.timeout(1200)]

IOU_TYPE = {"detect": "bbox", "segment": "segm", "keypoints": "keypoints", "faces": "keypoints"}


def frame_ids(samples, root):
    """What CVAT/datumaro call each image: its file_name without extension."""
    return {relative_name(s.image_id, root).rsplit(".", 1)[0] for s in samples}


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_datumaro_imports_instances_when_file_is_coco_1_0(sample_run, run_probe, task):
    samples, out, root = sample_run
    got = run_probe("cvat", "datumaro_import.py", "coco_instances", coco_file(out, task))
    assert set(got["items"]) == frame_ids(samples, root)
    n = sum(len(s.response.detections if task == "detect" else s.response.masks) for s in samples)
    # datumaro reads a mask as the mask plus its box, grouped
    assert got["types"] == ({"bbox": n} if task == "detect" else {"mask": n, "bbox": n})
    for item in got["items"].values():
        for ann in item["anns"]:
            assert ann["attributes"]["review"] in ("auto_accept", "needs_review", "reject")
            assert ann["attributes"]["model"] == "coco_detector@1" and 0 < ann["attributes"]["score"] <= 1


@pytest.mark.parametrize("task,names,skeleton", [
    ("keypoints", COCO_KEYPOINT_NAMES, [list(e) for e in COCO_SKELETON]),
    ("faces", FACE_LANDMARK_NAMES, [list(e) for e in FACE_SKELETON])])
def test_datumaro_imports_skeletons_when_file_is_coco_keypoints_1_0(sample_run, run_probe, task, names, skeleton):
    samples, out, root = sample_run
    got = run_probe("cvat", "datumaro_import.py", "coco_person_keypoints", coco_file(out, task))
    assert set(got["items"]) == frame_ids(samples, root)
    labelled = sum(1 for s in samples if s.response.detections)
    assert got["types"].get("points") == labelled  # one skeleton per instance
    (cat,) = got["points_categories"].values()
    assert cat["labels"] == names
    assert {tuple(sorted(j)) for j in cat["joints"]} == {tuple(sorted(e)) for e in skeleton}  # datumaro: a set


@pytest.mark.parametrize("task", ["detect", "segment", "keypoints", "faces"])
def test_cocoeval_scores_each_task_alone_when_drafts_are_evaluated_against_themselves(sample_run, task):
    _, out, _ = sample_run
    path = Path(coco_file(out, task))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        dt = gt.loadRes(json.loads(path.read_text())["annotations"])
        ev = COCOeval(gt, dt, IOU_TYPE[task])
        if task == "faces":
            ev.params.kpt_oks_sigmas = np.array(FACES.keypoints.oks_sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)  # AP of a file scored against itself
    categories = {a["category_id"] for a in gt.dataset["annotations"]}
    assert categories == ({1, 47} if task == "detect" else {91} if task == "faces" else {1})
