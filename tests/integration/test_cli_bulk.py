"""`prelabel annotate` end to end against the real suite (`router_address`: real Triton,
real services, real router): SIGKILL mid-run, restart, and every image is labelled
exactly once in every output; a finished shard is a no-op; a finished shard given new
photos labels just those (and refuses other --tasks); rejected drafts stay out of YOLO and
Label Studio; polygons are simplified.

(The fake PreLabeler used while the router was being written is gone: this runs against
the real router only. Faults the router cannot produce on demand are covered by
tests/unit/test_bulk.py with a loopback double.)
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import ImageOps
from pycocotools.coco import COCO

from prelabel.formats.coco import file_path as coco_file
from prelabel.formats.common import DEFAULT_OUTPUTS_REVIEW, image_root_of, iter_labels, output_labels
from prelabel.formats.polygons import MAX_VERTICES, polygon_iou
from prelabel.formats.yolo import dataset_name, label_relpath
from prelabel.journal import Journal, response_of
from prelabel.v1 import prelabel_pb2
from tests.photos import photo, photo_path

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
PHOTOS = ["astronaut.png", "camera.png", "coffee.png", "chelsea.png", "rocket.jpg", "horse.png",
          "motorcycle_left.png", "motorcycle_right.png"]
BAD = "broken.jpg"


def make_inputs(folder: Path) -> list[str]:
    """12 real photos (8 originals, 4 re-encoded variants in a sub-folder) plus one file
    that is not an image. Returns the image ids the CLI will use for the 12 photos."""
    folder.mkdir()
    for name in PHOTOS:
        (folder / name).write_bytes(photo_path(name).read_bytes())
    variants = folder / "variants"
    variants.mkdir()
    ImageOps.mirror(photo("astronaut.png")).save(variants / "astronaut_mirrored.jpg", quality=90)
    photo("chelsea.png").rotate(90, expand=True).save(variants / "chelsea_rotated.png")
    photo("coffee.png").resize((300, 200)).save(variants / "coffee_small.webp")
    ImageOps.grayscale(photo("horse.png").convert("RGB")).save(variants / "horse_gray.bmp")
    (folder / BAD).write_bytes(b"this is text, not a JPEG")
    ids = [str(folder / n) for n in PHOTOS] + [str(p) for p in sorted(variants.iterdir())]
    assert len(ids) == 12
    return ids


async def start(folder: Path, out: Path, router: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "prelabel.cli", "annotate", str(folder), "--out", str(out),
        "--router", router, "--tasks", "detect,segment,keypoints,faces", "--concurrency", "2",
        "--no-progress", cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


def journal_ids(out: Path) -> list[str]:
    path = out / "journal.jsonl"
    if not path.exists():
        return []
    ids = []
    for line in path.read_bytes().split(b"\n")[:-1]:  # complete lines only
        ids.append(json.loads(line)["image_id"])
    return ids


async def finish(proc: asyncio.subprocess.Process, timeout_s: float) -> tuple[int, str]:
    out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    return proc.returncode, out.decode(errors="replace")


def journal_responses(out: Path) -> dict[str, prelabel_pb2.PreLabelResponse]:
    journal = Journal(out / "journal.jsonl")
    return {image_id: response_of(journal.read(image_id))
            for image_id, entry in journal.index.items() if entry.status == "ok"}


def yolo_label(image_id: str, ids: list[str]) -> str:
    return label_relpath(dataset_name(image_id, image_root_of(ids)))


def check_yolo(out: Path, ids: list[str]) -> None:
    expected = sorted(yolo_label(i, ids) for i in ids)
    for kind, width in (("detect", 5), ("segment", None), ("pose", 5 + 17 * 3), ("faces", 5 + 5 * 3)):
        labels = out / "yolo" / kind / "labels"
        files = sorted(p.relative_to(labels).as_posix() for p in labels.rglob("*.txt"))
        assert files == expected, kind  # every image once, no other file
        names = yaml.safe_load((out / "yolo" / kind / "data.yaml").read_text())["names"]
        for path in labels.rglob("*.txt"):
            for line in path.read_text().splitlines():
                fields = line.split()
                assert int(fields[0]) in names
                if width is not None:
                    assert len(fields) == width, (kind, line)
                else:
                    assert len(fields) >= 7 and len(fields) % 2 == 1, line
                values = [float(v) for v in fields[1:]]
                if kind in ("pose", "faces"):
                    values = [v for i, v in enumerate(values) if i < 4 or (i - 4) % 3 != 2]
                assert all(0.0 <= v <= 1.0 for v in values), (kind, line)


async def test_annotate_labels_each_image_exactly_once_when_killed_and_restarted(router_address, tmp_path):
    ids = make_inputs(tmp_path / "photos")
    bad_id = str(tmp_path / "photos" / BAD)
    out = tmp_path / "out"

    # 1. Start, SIGKILL once the journal has some but not all images.
    proc = await start(tmp_path / "photos", out, router_address)
    deadline = time.monotonic() + 600
    while len(journal_ids(out)) < 3:
        assert proc.returncode is None, (await finish(proc, 10))[1]
        assert time.monotonic() < deadline, "no progress"
        await asyncio.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    before = journal_ids(out)
    assert 3 <= len(before) < len(ids) + 1, "killed too late to test a resume"
    assert not (out / "_SUCCESS").exists() and not (out / "coco").exists()

    # 2. Restart: it skips what the journal holds and finishes the shard.
    code, log = await finish(await start(tmp_path / "photos", out, router_address), 600)
    assert code == 4, log  # complete, with one rejected image
    assert f"{len(before)} already done" in log, log
    after = journal_ids(out)
    assert after[: len(before)] == before
    assert sorted(after) == sorted(ids + [bad_id])  # each image journaled exactly once
    success = json.loads((out / "_SUCCESS").read_text())
    assert (success["images"], success["labelled"], success["rejected"]) == (13, 12, 1)

    (failure,) = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert failure["image_id"] == bad_id and failure["retryable"] is False
    assert "INVALID_ARGUMENT" in failure["reason"]

    # 3. Every output holds each photo exactly once and loads in its consumer.
    # The outputs hold exactly what the router returned (the COCO models may run with
    # random weights here and return nothing; MTCNN's face weights are real).
    responses = journal_responses(out)
    expected = Counter((image_id, label.task.name) for image_id, r in responses.items() for label in output_labels(r))
    train_ready = Counter((image_id, label.task.name) for image_id, r in responses.items()
                          for label in output_labels(r, DEFAULT_OUTPUTS_REVIEW))
    root = Path(image_root_of(ids))
    for task in ("detect", "segment", "keypoints", "faces"):
        coco = COCO(coco_file(out, task))
        assert sorted(str(root / img["file_name"]) for img in coco.dataset["images"]) == sorted(ids)
        anns = coco.dataset["annotations"]
        file_of = {img["id"]: str(root / img["file_name"]) for img in coco.dataset["images"]}
        assert Counter((file_of[a["image_id"]], task) for a in anns) == Counter(
            {k: n for k, n in expected.items() if k[1] == task})
        for ann in anns:
            image = coco.imgs[ann["image_id"]]
            if task == "segment":
                assert coco.annToMask(ann).shape == (image["height"], image["width"])
            if task in ("keypoints", "faces"):
                assert len(ann["keypoints"]) == 3 * len(coco.cats[ann["category_id"]]["keypoints"])
        if anns:
            results = coco.loadRes(json.loads(Path(coco_file(out, task)).read_text())["annotations"])
            assert len(results.anns) == len(anns)
    astronaut = str(tmp_path / "photos" / "astronaut.png")
    assert expected[(astronaut, "faces")] >= 1, "MTCNN finds the astronaut's face"

    check_yolo(out, ids)
    for image_id in responses:
        for kind, task in (("detect", "detect"), ("pose", "keypoints"), ("faces", "faces")):
            label_file = out / "yolo" / kind / "labels" / yolo_label(image_id, ids)
            assert len(label_file.read_text().splitlines()) == train_ready[(image_id, task)], (kind, image_id)

    studio = json.loads((out / "labelstudio.json").read_text())
    assert sorted(t["data"]["image_id"] for t in studio) == sorted(ids)
    for task in studio:
        for region in task["predictions"][0]["result"]:
            value = region["value"]
            for key in ("x", "y", "width", "height"):
                if key in value:
                    assert -0.01 <= value[key] <= 100.01, region

    queue = [json.loads(line) for line in (out / "review_queue.jsonl").read_text().splitlines()]
    assert sorted(q["image_id"] for q in queue) == sorted(ids)
    assert [q["uncertainty"] for q in queue] == sorted((q["uncertainty"] for q in queue), reverse=True)

    # 4. A finished shard: exits 0 at once and touches nothing.
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    started = time.monotonic()
    code, log = await finish(await start(tmp_path / "photos", out, router_address), 60)
    assert code == 0, log
    assert time.monotonic() - started < 10
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes
    assert not [p for p in os.listdir(out) if ".tmp-" in p]


async def annotate(folder: Path, out: Path, router: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "prelabel.cli", "annotate", str(folder), "--out", str(out), "--router", router,
        "--concurrency", "2", "--no-progress", *args,
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    return await finish(proc, 600)


def journal_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]


async def test_annotate_labels_just_the_new_photos_and_filters_rejected_drafts_when_a_folder_grows(
        router_address, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ["astronaut.png", "coffee.png", "chelsea.png"]:
        (folder / name).write_bytes(photo_path(name).read_bytes())
    # A calibration batch (docs/quality.md): rejected drafts come back too.
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"review_policy": {"include_rejected": True}}))
    out = tmp_path / "out"
    flags = ("--tasks", "detect,segment", "--review-policy", str(policy))
    code, log = await annotate(folder, out, router_address, *flags)
    assert code == 0, log
    first = journal_records(out)
    assert len(first) == 3

    # Three new photos: exactly those are labelled, the outputs hold all six.
    new = ["rocket.jpg", "horse.png", "motorcycle_left.png"]
    for name in new:
        (folder / name).write_bytes(photo_path(name).read_bytes())
    code, log = await annotate(folder, out, router_address, *flags)
    assert code == 0, log
    records = journal_records(out)
    assert records[:3] == first  # the journal grew by the new photos only
    assert sorted(r["image_id"] for r in records[3:]) == sorted(str(folder / n) for n in new)
    assert "3 labelled in this run, 3 before" in log, log  # the end-of-run summary
    ids = sorted(r["image_id"] for r in records)
    for task in ("detect", "segment"):
        coco = json.loads(Path(coco_file(out, task)).read_text())
        assert sorted(str(folder / img["file_name"]) for img in coco["images"]) == ids, task
    studio = json.loads((out / "labelstudio.json").read_text())
    assert sorted(t["data"]["image_id"] for t in studio) == ids
    assert json.loads((out / "_SUCCESS").read_text())["labelled"] == 6

    # Other --tasks: refused, saying which parameter differs and what to do.
    code, log = await annotate(folder, out, router_address, "--tasks", "detect", "--review-policy", str(policy))
    assert code == 2, log
    assert "tasks: ['detect', 'segment'] there, ['detect'] now" in log and "another --out" in log, log
    assert journal_records(out) == records

    # Rejected drafts: all in the journal and COCO, none in YOLO or Label Studio.
    responses = journal_responses(out)
    decisions = Counter(label.review for r in responses.values() for label in iter_labels(r))
    assert decisions["reject"] > 0, decisions
    coco_detect = json.loads(Path(coco_file(out, "detect")).read_text())["annotations"]
    assert Counter(a["attributes"]["review"] for a in coco_detect) == Counter(
        label.review for r in responses.values() for label in iter_labels(r) if label.task.name == "detect")
    for image_id, r in responses.items():
        kept = [label for label in output_labels(r, DEFAULT_OUTPUTS_REVIEW) if label.task.name == "detect"]
        lines = (out / "yolo" / "detect" / "labels" / yolo_label(image_id, ids)).read_text().splitlines()
        assert len(lines) == len(kept), image_id
    by_id = {image_id: {f"{label.task.name}-{label.index}": label for label in iter_labels(r)}
             for image_id, r in responses.items()}
    regions = [(t["data"]["image_id"], region["id"]) for t in studio for region in t["predictions"][0]["result"]]
    assert regions and all(by_id[i][rid].review != "reject" for i, rid in regions)

    # Polygons of the real masks: bounded, simplified, true to the traced outline.
    masks = 0
    for image_id, r in responses.items():
        labels = [label for label in output_labels(r, DEFAULT_OUTPUTS_REVIEW) if label.task.name == "segment"]
        lines = (out / "yolo" / "segment" / "labels" / yolo_label(image_id, ids)).read_text().splitlines()
        assert len(lines) == len(labels), image_id
        for label, line in zip(labels, lines, strict=True):
            height, width = label.mask.mask.size
            traced = max((list(p.points) for p in label.mask.polygons), key=len)
            values = [float(v) for v in line.split()[1:]]
            polygon = [v * (width if i % 2 == 0 else height) for i, v in enumerate(values)]
            assert len(polygon) // 2 <= MAX_VERTICES
            assert len(polygon) < len(traced), (len(polygon) // 2, len(traced) // 2)
            rings = [np.asarray(p, float).reshape(-1, 2) for p in (polygon, traced)]
            assert polygon_iou(*rings) >= 0.88  # 0.9 by construction, less YOLO's 6-digit rounding
            masks += 1
    assert masks, "the segmenter finds the astronaut"
