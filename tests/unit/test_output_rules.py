"""The rules every output format shares: the review filter of the train-ready outputs (YOLO,
Label Studio; COCO keeps every label), masks of area 0 left out everywhere, and simplified
polygons (on masks traced by the segmentation service's own tracer from real images)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from pycocotools import mask as mask_utils

from prelabel.formats import write_outputs
from prelabel.formats.coco import file_path as coco_file
from prelabel.formats.common import DEFAULT_OUTPUTS_REVIEW
from prelabel.formats.labelstudio import PER_REGION_TYPES
from prelabel.formats.polygons import MAX_VERTICES, simplify
from prelabel.run_summary import LabelCounts, RunSummary
from prelabel.v1 import common_pb2, prelabel_pb2
from services.common.masks import BinaryMask, outer_polygons
from tests.unit.test_formats import H, W, detection, make_response

pytestmark = pytest.mark.timeout(60)

ACCEPT, REVIEW, REJECT = (common_pb2.REVIEW_DECISION_AUTO_ACCEPT, common_pb2.REVIEW_DECISION_NEEDS_REVIEW,
                          common_pb2.REVIEW_DECISION_REJECT)


def with_rejected_and_empty() -> prelabel_pb2.PreLabelResponse:
    """make_response plus a rejected box, a rejected mask and a mask of area 0."""
    r = make_response("x.jpg")
    r.detections.append(detection((400, 300, 420, 330), "cup", 47, 0.06, REJECT))
    m = np.zeros((H, W), np.uint8)
    m[10:50, 500:560] = 1
    for box, mask, review in (((500, 10, 560, 50), m, REJECT), ((600, 400, 600.4, 400.4), m * 0, ACCEPT)):
        rle = mask_utils.encode(np.asfortranarray(mask))
        inst = r.masks.add()
        inst.detection.CopyFrom(detection(box, "dog", 18, 0.2 if review == REJECT else 0.9, review))
        inst.mask.size.extend(rle["size"])
        inst.mask.counts = rle["counts"]
        inst.area = int(mask.sum())
        if inst.area:
            inst.polygons.add(points=[500, 10, 560, 10, 560, 50, 500, 50])
    return r


def outputs(tmp_path: Path, **options) -> dict:
    """Label counts per output: COCO annotations by task, YOLO lines by dataset, Label Studio
    regions by type and the review decisions they hold."""
    write_outputs(tmp_path, ["coco", "yolo", "labelstudio"], [(1, "x.jpg", "/data/x.jpg", with_rejected_and_empty())],
                  tasks=["detect", "segment"], **options)
    coco = {t: json.loads(Path(coco_file(tmp_path, t)).read_text())["annotations"] for t in ("detect", "segment")}
    yolo = {k: (tmp_path / "yolo" / k / "labels" / "x.txt").read_text().splitlines() for k in ("detect", "segment")}
    (task,) = json.loads((tmp_path / "labelstudio.json").read_text())
    regions = [r for r in task["predictions"][0]["result"]
               if r["id"].split("-")[0] in ("detect", "segment") and r["type"] not in PER_REGION_TYPES]
    return {"coco": {t: sorted(a["attributes"]["review"] for a in anns) for t, anns in coco.items()},
            "coco_areas": [a["area"] for a in coco["segment"]],
            "yolo": {k: len(lines) for k, lines in yolo.items()},
            "ls": sorted(r["type"] for r in regions), "ls_ids": sorted(r["id"] for r in regions)}


def test_outputs_leave_rejected_drafts_out_of_yolo_and_label_studio_but_not_coco_by_default(tmp_path):
    got = outputs(tmp_path)
    assert got["coco"] == {"detect": ["auto_accept", "needs_review", "reject"], "segment": ["auto_accept", "reject"]}
    assert got["yolo"] == {"detect": 2, "segment": 1}  # person + cup boxes; the person mask
    assert got["ls"] == ["polygonlabels", "rectanglelabels", "rectanglelabels"]
    assert "detect-2" not in got["ls_ids"] and "segment-1" not in got["ls_ids"]  # the rejected ones


def test_outputs_take_every_decision_named_when_review_includes_reject(tmp_path):
    got = outputs(tmp_path, review=["auto_accept", "needs_review", "reject"])
    assert got["yolo"] == {"detect": 3, "segment": 2}
    assert got["ls"] == ["polygonlabels"] * 2 + ["rectanglelabels"] * 3


def test_outputs_take_only_accepted_labels_when_review_is_auto_accept(tmp_path):
    got = outputs(tmp_path, review=["auto_accept"])
    assert got["yolo"] == {"detect": 1, "segment": 1}  # the cup box (the person box needs review)
    assert got["coco"]["detect"] == ["auto_accept", "needs_review", "reject"]


@pytest.mark.parametrize("ls_masks", ["polygon", "brush"])
def test_masks_of_area_0_are_left_out_of_every_output(tmp_path, ls_masks):
    got = outputs(tmp_path, review=["auto_accept", "needs_review", "reject"], ls_masks=ls_masks)
    assert 0 not in got["coco_areas"] and len(got["coco_areas"]) == 2  # 3 masks, one empty
    assert got["yolo"]["segment"] == 2
    assert sorted(i for i in got["ls_ids"] if i.startswith("segment")) == ["segment-0", "segment-1"]


def real_masks() -> list[np.ndarray]:
    """Large objects of real images: the horse silhouette, the photographer of camera.png,
    and the largest coins of coins.png (each one 4-connected component)."""
    horse = ~skimage.data.horse()
    camera = skimage.data.camera() < 60
    coins = skimage.data.coins() > 120
    masks = []
    for image in (horse, camera, coins):
        h, w = image.shape
        polygons = outer_polygons(BinaryMask(image.astype(bool), 0, 0, w, h))
        for poly in sorted(polygons, key=len)[-2:]:
            component = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([poly], h, w)))
            masks.append(component.astype(bool) & image)
    return masks


def iou(polygon: list[float], mask: np.ndarray) -> float:
    h, w = mask.shape
    drawn = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([polygon], h, w))).astype(bool)
    return float((drawn & mask).sum() / (drawn | mask).sum())


def test_simplified_polygons_are_bounded_and_keep_the_shape_when_masks_are_real():
    for mask in real_masks():
        h, w = mask.shape
        (traced, *_) = sorted(outer_polygons(BinaryMask(mask, 0, 0, w, h)), key=len, reverse=True)
        simplified = simplify(traced)
        assert 3 <= len(simplified) // 2 <= MAX_VERTICES
        if mask.sum() >= 3000:  # a thin sliver of 564 pixels keeps most of its vertices
            assert len(simplified) < len(traced) / 2, (len(traced) // 2, len(simplified) // 2)
        drawn_traced = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([traced], h, w))).astype(bool)
        assert iou(simplified, drawn_traced) >= 0.9
        # Holes are in neither polygon: against the mask, both lose them alike.
        assert iou(simplified, mask) >= 0.9 * iou(traced, mask)


def test_simplify_keeps_the_polygon_when_tolerance_is_0_or_it_would_collapse():
    square = [0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    assert simplify(square, 5.0) == square
    staircase = [float(v) for i in range(50) for v in (i, i, i + 1, i)] + [50.0, 50.0, 0.0, 50.0]
    assert simplify(staircase, 0.0) == staircase
    assert len(simplify(staircase, 1.0)) // 2 == 3  # the staircase is a triangle


def test_simplify_bounds_the_vertices_when_the_tolerance_alone_would_not():
    angles = np.linspace(0, 2 * np.pi, 4000, endpoint=False)
    radius = 1000 + 30 * np.sin(angles * 97)  # a wavy circle: many vertices beyond 1 px
    ring = np.stack([2000 + radius * np.cos(angles), 2000 + radius * np.sin(angles)], axis=1).reshape(-1).tolist()
    assert len(simplify(ring, 1.0)) // 2 <= MAX_VERTICES
    assert len(simplify(ring, 1.0, max_vertices=50)) // 2 <= 50


def test_run_summary_counts_labels_by_task_and_review_and_says_what_the_filter_left_out(tmp_path):
    counts = LabelCounts(review=DEFAULT_OUTPUTS_REVIEW)
    rows = list(counts.counting([(1, "x.jpg", "/data/x.jpg", with_rejected_and_empty())]))
    assert len(rows) == 1  # passed through to the writers
    assert counts.by_task == {("detect", "auto_accept"): 1, ("detect", "needs_review"): 1, ("detect", "reject"): 1,
                              ("segment", "auto_accept"): 1, ("segment", "reject"): 1,
                              ("keypoints", "auto_accept"): 1, ("faces", "auto_accept"): 1}
    assert counts.train_ready == counts.total - 2
    text = RunSummary(out_dir="out", images=3, labelled_now=1, labelled_before=1, rejected=1, not_labelled=0,
                      seconds=2.5, formats=["coco", "yolo"], counts=counts).text()
    assert "1 labelled in this run, 1 before; 1 rejected, 0 not labelled (see failures.jsonl)" in text
    assert "labels: 7 in COCO (every review decision); 5 in YOLO and Label Studio" in text
    (detect,) = [line.split() for line in text.splitlines() if line.strip().startswith("detect")]
    assert detect == ["detect", "1", "1", "1", "3"]
    assert "out/coco/" in text and "out/yolo/" in text and "labelstudio.json" not in text
