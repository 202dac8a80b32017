"""FiftyOne 1.22 loads the COCO files as written (COCODetectionDataset, data_path =
coco/images): boxes with their confidence, masks, keypoints, the extras as attributes."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.tools, pytest.mark.timeout(900)]


def test_fiftyone_loads_every_coco_file_when_data_path_is_coco_images(sample_run, run_probe):
    samples, out, _ = sample_run
    got = run_probe("fiftyone", "fiftyone_load.py", out / "coco", timeout=600)
    n = len(samples)
    labelled = sum(1 for s in samples if s.response.detections)
    for name, result in got.items():
        assert result["samples"] == n and result["files_exist"], name
    (detect,) = got["instances_detect"]["fields"].values()
    assert detect["type"] == "Detection" and detect["count"] == 2 * labelled
    assert {"review", "model"} <= set(detect["attrs"]) and 0.93 in detect["confidence"]  # score -> confidence
    masks = got["instances_segment"]["fields"]["segmentations"]
    assert masks["count"] == masks["masks"] == labelled
    for name, points in (("person_keypoints_keypoints", 17), ("person_keypoints_faces", 5)):
        (kps,) = got[name]["fields"].values()
        assert kps["type"] == "Keypoint" and kps["count"] == labelled and kps["points"] == [points], name
