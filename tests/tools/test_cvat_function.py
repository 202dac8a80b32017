"""prelabel.cvat_function passes cvat_sdk's own checks of an auto-annotation function
(`cvat-cli task auto-annotate --function-module prelabel.cvat_function`), against a
loopback router: rectangles, masks or polygons, skeletons with CVAT's visibility flags."""
from __future__ import annotations

import pytest

from tests.tools import router_stub

pytestmark = [pytest.mark.tools, pytest.mark.timeout(900)]


def test_cvat_function_returns_shapes_cvat_accepts_when_run_per_task(sample_run, run_probe):
    samples, _, _ = sample_run
    server, router, address = router_stub.start()
    try:
        got = run_probe("cvat", "cvat_function_check.py", address, samples[0].path)
    finally:
        server.stop(0)
    # samples.response_for scores (person >= 0.55, cup 0.93, mask 0.88, keypoints 0.8, face 0.99)
    # are all above the 0.5 threshold the probe passes as CVAT's conf_threshold.
    assert [s["type"] for s in got["detect"]] == ["rectangle", "rectangle"]
    assert [s["type"] for s in got["segment"]] == ["mask"]
    assert [s["type"] for s in got["segment+poly"]] == ["polygon"] and got["segment+poly"][0]["points"] == 8
    assert sorted(s["type"] for s in got["detect,segment"]) == ["mask", "rectangle", "rectangle"]
    for key, shapes in got.items():
        assert all(s["frame"] == 7 and s["label_id"] >= 100 and 0.5 <= s["score"] <= 1 for s in shapes), key
    (person,) = got["keypoints"]
    assert person["type"] == "skeleton" and len(person["elements"]) == 17
    flags = [(e["outside"], e["occluded"]) for e in person["elements"]]
    # samples: point 3 unlabelled (v=0), point 4 occluded (v=1), the rest visible
    assert flags[3] == (True, False) and flags[4] == (False, True) and flags.count((False, False)) == 15
    (face,) = got["faces"]
    assert face["type"] == "skeleton" and len(face["elements"]) == 5
    assert {r.image.image_id for r in router.requests} == {"a/one.png"}  # CVAT's frame name as image id
    assert all(abs(r.score_threshold - 0.5) < 1e-6 for r in router.requests)
