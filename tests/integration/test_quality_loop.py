"""The whole loop over the real router and services: annotate real photos under a
policy file -> correct the suite's own coco.json as a reviewer would (a draft deleted,
an object added) -> evaluate -> calibrate -> serve the written policy.

Counts are derived from whatever the models drafted, never from what a model is
expected to find in a picture."""
from __future__ import annotations

import asyncio
import json
import shutil
import sys

import grpc
import pytest

from prelabel.core.geometry import box_iou_xywh as iou
from prelabel.core.policy_file import load_policy_file
from prelabel.core.review import AUTO_ACCEPT, BUILT_IN_POLICY, NEEDS_REVIEW, REJECT
from prelabel.quality.drafts import load_drafts
from prelabel.v1 import common_pb2, prelabel_pb2, prelabel_pb2_grpc
from tests.conftest import REPO_ROOT, serving
from tests.photos import photo_path

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

PHOTOS = ["astronaut.png", "coffee.png", "chelsea.png"]
DECISIONS = {"auto_accept": AUTO_ACCEPT, "needs_review": NEEDS_REVIEW, "reject": REJECT}


async def cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "prelabel.cli", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, cwd=REPO_ROOT)
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    return proc.returncode, out.decode()


def corrected(drafts) -> tuple[dict, bool]:
    """The drafts (as `evaluate` reads them from the journal) as a reviewer leaves them, in
    COCO with a `task` per object: the first auto-accepted draft deleted, a person added to
    the first image. Returns the document and whether a draft was deleted."""
    names = sorted({a.category for img in drafts.images.values() for a in img.anns} | {"person"})
    ids = {n: i + 1 for i, n in enumerate(names)}
    doc = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for n, i in ids.items()]}
    deleted = False
    for number, (key, img) in enumerate(sorted(drafts.images.items()), 1):
        doc["images"].append({"id": number, "file_name": key, "width": img.width, "height": img.height})
        for a in img.anns:
            alone = all(b is a or b.task != a.task or b.category != a.category or iou(a.bbox, b.bbox) < 0.5
                        for b in img.anns)  # nothing it could be confused with
            if not deleted and a.review == "auto_accept" and alone:
                deleted = True
                continue
            doc["annotations"].append({"id": len(doc["annotations"]) + 1, "image_id": number,
                                       "category_id": ids[a.category], "bbox": a.bbox, "iscrowd": 0,
                                       "area": a.bbox[2] * a.bbox[3], "task": a.task,
                                       "segmentation": a.segmentation or [], "keypoints": a.keypoints or []})
        if number == 1:  # tiny and in a corner: no draft there
            doc["annotations"].append({"id": 10**6, "image_id": 1, "category_id": ids["person"], "iscrowd": 0,
                                       "bbox": [1, 1, img.width / 50, img.height / 50], "area": 1, "task": "detect"})
    return doc, deleted


async def test_quality_loop_runs_annotate_evaluate_calibrate_serve_when_real_services(
        tmp_path, detection_address, segmentation_address, keypoints_address, router_address):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in PHOTOS:
        shutil.copy(photo_path(name), photos / name)
    policy = tmp_path / "annotate_policy.json"
    policy.write_text(json.dumps({"review_policy": {"default_band": {"accept_at": 0.6, "reject_below": 0.2}}}))
    out = tmp_path / "out"

    # 1. annotate under a policy file: every decision is the file's.
    code, log = await cli("annotate", str(photos), "--out", str(out), "--router", router_address,
                          "--tasks", "detect,faces", "--no-progress", "--review-policy", str(policy))
    assert code == 0, log
    served = load_policy_file(policy)
    for line in (out / "journal.jsonl").read_text().splitlines():
        response = json.loads(line)["response"]
        assert response["uncertainty"]["review_policy_id"] == served.id
    drafts = load_drafts([str(out)])
    assert len(drafts.images) == len(PHOTOS)
    for img in drafts.images.values():
        for a in img.anns:
            assert DECISIONS[a.review] == served.policy.band(a.category).decide(a.score), a

    # 2. correct, 3. evaluate.
    truth, deleted = corrected(drafts)
    (tmp_path / "corrected.json").write_text(json.dumps(truth))
    code, log = await cli("evaluate", "--drafts", str(out), "--truth", str(tmp_path / "corrected.json"),
                          "--out", str(tmp_path / "report"))
    assert code == 0, log
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["images"]["paired"] == len(PHOTOS)
    detect = report["tasks"]["detect"]["all"]
    assert detect["missed"] == 1  # the added person; every kept draft matches itself
    errors = sum(t["all"]["auto_accepted"] - t["all"]["auto_accepted_right"] for t in report["tasks"].values())
    assert errors == (1 if deleted else 0)

    # 4. calibrate: too little data here, so every class keeps its built-in band (faces the
    #    stricter one), listed.
    written = tmp_path / "policy.yaml"
    code, log = await cli("calibrate", "--drafts", str(out), "--truth", str(tmp_path / "corrected.json"),
                          "--out", str(written), "--min-support", "1000")
    assert code == 0, log
    calibrated = load_policy_file(written)
    assert calibrated.provenance["images"] == len(PHOTOS) and set(calibrated.policy.by_category) == {"face"}
    assert calibrated.policy.band("face").accept_at == pytest.approx(BUILT_IN_POLICY.band("face").accept_at)
    assert {m.split("@")[0] for m in calibrated.provenance["models"]} >= {"coco_detector", "face_detector"}

    # 5. serve it: a router with the file reports its id.
    async with serving("router", "RouterSettings", detection_addr=detection_address,
                       segmentation_addr=segmentation_address, keypoints_addr=keypoints_address,
                       review_policy_file=written) as address, grpc.aio.insecure_channel(address) as channel:
        reply = await prelabel_pb2_grpc.PreLabelerStub(channel).PreLabel(prelabel_pb2.PreLabelRequest(
            image=common_pb2.Image(data=(photos / PHOTOS[0]).read_bytes(), image_id="a"),
            tasks=[prelabel_pb2.TASK_FACES]), timeout=120)
    assert reply.uncertainty.review_policy_id == calibrated.id
