"""Ultralytics export layouts (prelabel/core/models/ultralytics_layouts.py; decoded by
services/modelkit/families) without Ultralytics: what a file's edges say, what is refused
and why, and the decoding steps against torch's own operators (torchvision's NMS, torch's
bilinear interpolate) as oracles. The equivalence with
Ultralytics' predictor on real exports is tests/tools/test_ultralytics_layouts.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from prelabel.core.models.onnx_graph import NotOnnxError, OnnxGraph, TensorInfo, read_onnx_graph
from prelabel.core.models.store import verified_model_path
from prelabel.core.models.ultralytics_layouts import LayoutError, describe_graph, read_layout
from services.modelkit.families.ultralytics_decode import (
    PAD_VALUE,
    box_masks,
    decode,
    fit_to_input,
    nms,
    to_input,
)
from tests.onnx_edges import assert_agrees_with_onnxruntime
from tests.photos import photo_bytes

pytestmark = pytest.mark.timeout(120)

COCO_LIKE = {i: f"c{i}" for i in range(80)}
IMAGES = TensorInfo("images", "float32", (1, 3, 640, 640))


def metadata(task: str, names=COCO_LIKE, **extra: str) -> dict[str, str]:
    """metadata_props as Ultralytics 8.4 writes them (values are Python literals as text)."""
    args = {"batch": 1, "nms": extra.pop("nms", None), "dynamic": False, "simplify": True, "opset": 17}
    return {"task": task, "names": repr(names), "imgsz": "[640, 640]", "stride": "32", "args": repr(args),
            "end2end": extra.pop("end2end", "False"), "license": "AGPL-3.0 License", **extra}


def graph(*outputs: TensorInfo, meta: dict[str, str] | None = None, inputs=(IMAGES,)) -> OnnxGraph:
    return OnnxGraph(8, tuple(inputs), tuple(outputs), meta or {})


def out(name: str, *shape) -> TensorInfo:
    return TensorInfo(name, "float32", tuple(shape))


# --- layouts of the shapes Ultralytics 8.4 exports (measured) -------------------------------

def test_each_export_layout_is_recognised_from_its_shapes_and_metadata():
    seg = describe_graph(graph(out("output0", 1, 116, 8400), out("output1", 1, 32, 160, 160),
                               meta=metadata("segment")))
    assert (seg.family, seg.task, seg.num_classes, seg.mask_dim, seg.protos_name) == ("yolo", "segment", 80, 32,
                                                                                      "output1")
    pose = describe_graph(graph(out("output0", 1, 56, 8400), meta=metadata("pose", {0: "person"}, kpt_shape="[17, 3]")))
    assert (pose.task, pose.names, pose.kpt_shape) == ("pose", ("person",), (17, 3))
    rtdetr = describe_graph(graph(out("output0", 1, 300, 6), meta=metadata("detect", head="RTDETRDecoder")))
    assert (rtdetr.family, rtdetr.stretch) == ("rtdetr", True)
    e2e = describe_graph(graph(out("output0", 1, 300, 6), meta=metadata("detect", end2end="True")))
    nms_seg = describe_graph(graph(out("output0", 1, 300, 38), out("output1", 1, 32, 160, 160),
                                   meta=metadata("segment", nms=True)))
    assert (e2e.family, nms_seg.family, nms_seg.task) == ("end2end", "end2end", "segment")
    dyn = describe_graph(graph(out("output0", "batch", 84, "anchors"), meta=metadata("detect"),
                               inputs=[TensorInfo("images", "float32", ("batch", 3, "height", "width"))]))
    assert (dyn.dynamic_batch, dyn.input_height, dyn.input_width) == (True, 640, 640)
    assert seg.batch_size == 1 and not seg.dynamic_batch and seg.license == "AGPL-3.0 License"


def test_a_plain_file_without_metadata_is_described_by_its_shapes_and_the_caller():
    det = describe_graph(graph(out("output0", 1, 84, 8400)))
    assert (det.family, det.task, det.names[:2], det.num_classes) == ("yolo", "detect", ("class0", "class1"), 80)
    seg = describe_graph(graph(out("out", 1, 4 + 2 + 32, 8400), out("protos", 1, 32, 160, 160)),
                         names=["scratch", "dent"])
    assert (seg.task, seg.names, seg.output_name, seg.protos_name) == ("segment", ("scratch", "dent"), "out", "protos")
    pose = describe_graph(graph(out("output0", 1, 4 + 1 + 5 * 2, 8400)), kpt_shape=(5, 2))
    assert (pose.task, pose.num_classes, pose.kpt_shape) == ("pose", 1, (5, 2))
    rows = describe_graph(graph(out("output0", 1, 300, 6)), family="end2end", names=["a", "b"])
    assert (rows.family, rows.names) == ("end2end", ("a", "b"))
    sized = describe_graph(graph(out("output0", 1, 84, "anchors"),
                                 inputs=[TensorInfo("images", "float16", (1, 3, "h", "w"))]), input_size=(480, 640))
    assert (sized.input_height, sized.input_width, sized.input_dtype) == (480, 640, "float16")


# --- refusals ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["text", "png", "empty", "truncated"])
def test_a_file_that_is_not_onnx_is_refused(tmp_path, kind):
    path = tmp_path / f"model-{kind}.onnx"
    content = {"text": b"names:\n  0: scratch\n  1: dent\n", "png": photo_bytes("coffee.png"), "empty": b"",
               "truncated": verified_model_path("nanodet")[0].read_bytes()[:5000]}[kind]
    path.write_bytes(content)
    with pytest.raises(NotOnnxError, match="is not an ONNX model|is empty"):
        read_layout(path)


@pytest.mark.parametrize("name", ["nanodet", "movenet-multipose", "selfie"])
def test_a_real_onnx_of_no_known_layout_is_refused_naming_what_was_expected_and_found(name):
    import onnxruntime as ort

    path, _ = verified_model_path(name)
    g = read_onnx_graph(path)
    assert_agrees_with_onnxruntime(g, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]))
    with pytest.raises(LayoutError) as refused:
        read_layout(path)
    message = str(refused.value)
    assert "expected" in message and f"found inputs: {g.inputs[0].name}" in message
    print(f"{name}: {message}")


def test_class_names_that_disagree_with_the_output_width_are_refused():
    with pytest.raises(LayoutError, match=r"3 class names, but output0 has 84 channels = 4 \+ 80 classes"):
        describe_graph(graph(out("output0", 1, 84, 8400)), names=["scratch", "dent", "rust"])
    with pytest.raises(LayoutError, match=r"2 class names, but output0 has 56 channels = 4 \+ 1 classes \+ 51 pose"):
        describe_graph(graph(out("output0", 1, 56, 8400)), names=["a", "b"], kpt_shape=(17, 3))
    with pytest.raises(LayoutError, match="2 names given, the file's metadata has 80"):
        describe_graph(graph(out("output0", 1, 84, 8400), meta=metadata("detect")), names=["a", "b"])


@pytest.mark.parametrize("outputs, known, message", [
    ([out("output0", 1, 84, 8400)], {"task": "segment"}, "expected an Ultralytics yolo segment export"),
    ([out("output0", 1, 300, 6)], {}, "say which family it is"),
    ([out("output0", 1, 300, 6)], {"family": "end2end"}, "give the class names"),
    ([out("output0", 1, 300, 7)], {"family": "end2end", "names": ["a"]}, r"expected an Ultralytics end2end detect"),
    ([out("output0", 1, 300, 6)], {"family": "rtdetr", "task": "pose", "kpt_shape": (17, 3)}, "RT-DETR"),
    ([out("output0", 1, 56, 8400)], {"task": "pose"}, "needs the keypoint shape"),
    ([out("output0", 1, 84, 8400), out("extra", 1, 84, 8400)], {}, "expected an Ultralytics yolo detect"),
    ([out("output0", 1, 1000)], {}, "expected an Ultralytics yolo detect"),
    ([out("output0", 1, 84, 8400)], {"family": "detr"}, "not one of"),
    ([out("output0", 1, 84, 8400)], {"input_size": 320}, r"input size \[320, 320\] given, the graph's input is"),
])
def test_a_graph_that_matches_no_layout_is_refused(outputs, known, message):
    with pytest.raises(LayoutError, match=message) as refused:
        describe_graph(graph(*outputs), **known)
    if "expected an" in message:
        assert "found inputs: images float32 [1, 3, 640, 640]; outputs: output0" in str(refused.value)


@pytest.mark.parametrize("inputs", [
    [TensorInfo("images", "float32", (1, 640, 640, 3))],  # NHWC
    [TensorInfo("images", "uint8", (1, 3, 640, 640))],
    [IMAGES, TensorInfo("orig_target_sizes", "int64", (1, 2))],  # e.g. a DETR export with sizes
])
def test_an_input_other_than_one_float_image_is_refused(inputs):
    with pytest.raises(LayoutError, match=r"expected one input"):
        describe_graph(graph(out("output0", 1, 84, 8400), inputs=inputs))


def test_what_the_caller_says_must_agree_with_the_metadata():
    meta = metadata("detect")
    with pytest.raises(LayoutError, match="is a 'detect' export .* not 'pose'"):
        describe_graph(graph(out("output0", 1, 84, 8400), meta=meta), task="pose")
    with pytest.raises(LayoutError, match="is a 'yolo' export .* not 'end2end'"):
        describe_graph(graph(out("output0", 1, 84, 8400), meta=meta), family="end2end")
    with pytest.raises(LayoutError, match="metadata 'names' is not a Python literal"):
        describe_graph(graph(out("output0", 1, 84, 8400), meta={**meta, "names": "{0: person"}))
    with pytest.raises(LayoutError, match="input size is dynamic and the file has no 'imgsz'"):
        describe_graph(graph(out("output0", 1, 84, "anchors"),
                             inputs=[TensorInfo("images", "float32", (1, 3, "h", "w"))]))


# --- decoding, against torch's operators ---------------------------------------------

def test_nms_keeps_what_torchvision_keeps_ties_included():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(1, 400))
        xy = rng.uniform(0, 600, (n, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + rng.uniform(1, 200, (n, 2)).astype(np.float32)], axis=1)
        scores = rng.choice([0.3, 0.5, 0.9], n).astype(np.float32) if trial % 2 else rng.random(n, np.float32)
        iou = float(rng.uniform(0.3, 0.8))
        want = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou).numpy()
        np.testing.assert_array_equal(nms(boxes, scores, iou), want)


def yolo_layout(task="detect", nc=2, **known):
    shapes = {"detect": [out("output0", 1, 4 + nc, 8400)],
              "segment": [out("output0", 1, 4 + nc + 4, 8400), out("output1", 1, 4, 160, 160)],
              "pose": [out("output0", 1, 4 + nc + 2 * 3, 8400)]}[task]
    return describe_graph(graph(*shapes), names=[f"n{i}" for i in range(nc)],
                          **({"kpt_shape": (2, 3)} if task == "pose" else {}), **known)


def raw_yolo(rows: list[tuple], channels: int, anchors: int = 8400) -> np.ndarray:
    """[channels, anchors] with `rows` (cx, cy, w, h, scores..., extras...) in the first anchors."""
    pred = np.zeros((channels, anchors), np.float32)
    for i, row in enumerate(rows):
        pred[:len(row), i] = row
    return pred


def test_yolo_decoding_is_class_wise_nms_over_a_strict_score_floor():
    layout = yolo_layout()
    pred = raw_yolo([(100, 100, 50, 50, 0.9, 0.1), (102, 101, 50, 50, 0.8, 0.1),  # same class, overlapping
                     (101, 100, 50, 50, 0.1, 0.7),  # overlapping, other class: kept
                     (400, 400, 20, 40, 0.25, 0.0),  # exactly at the floor: dropped (strict >)
                     (300, 300, 20, 40, 0.0, 0.3)], 6)
    dets = decode(layout, {"output0": pred}, score_floor=0.25, iou=0.7)
    np.testing.assert_allclose(dets.scores, [0.9, 0.7, 0.3])
    np.testing.assert_array_equal(dets.class_ids, [0, 1, 1])
    np.testing.assert_allclose(dets.boxes[0], [75, 75, 125, 125])
    np.testing.assert_allclose(dets.boxes[2], [290, 280, 310, 320])
    assert len(decode(layout, {"output0": pred}, score_floor=0.25, iou=0.7, max_det=2)) == 2
    assert len(decode(layout, {"output0": pred}, score_floor=0.95)) == 0


def test_end2end_rows_are_kept_in_order_over_the_floor_and_padding_rows_go():
    layout = describe_graph(graph(out("output0", 1, 300, 6)), family="end2end", names=["a", "b", "c"])
    rows = np.zeros((300, 6), np.float32)
    rows[:3] = [(10, 20, 30, 60, 0.9, 2), (10, 20, 30, 60, 0.8, 1), (0, 0, 5, 5, 0.1, 0)]
    dets = decode(layout, {"output0": rows}, score_floor=0.2)
    np.testing.assert_array_equal(dets.class_ids, [2, 1])  # no NMS: the graph's rows are final
    np.testing.assert_allclose(dets.boxes, [[10, 20, 30, 60]] * 2)
    assert len(decode(layout, {"output0": rows}, score_floor=0.0)) == 3  # zero rows: 0 > 0 is false


def test_rtdetr_rows_are_normalised_centre_boxes_scaled_to_the_input():
    layout = describe_graph(graph(out("output0", 1, 300, 6), inputs=[TensorInfo("images", "float32", (1, 3, 480, 640))]),
                            family="rtdetr", names=["a", "b"])
    rows = np.zeros((300, 6), np.float32)
    rows[0] = (0.5, 0.5, 0.25, 0.5, 0.6, 1)
    dets = decode(layout, {"output0": rows}, score_floor=0.5)
    np.testing.assert_allclose(dets.boxes, [[240, 120, 400, 360]])
    assert dets.class_ids.tolist() == [1]


def test_pose_keypoints_are_read_keypoint_major_with_their_visibility():
    layout = yolo_layout("pose", nc=1)
    pred = raw_yolo([(100, 100, 50, 50, 0.9, 90, 91, 0.2, 110, 111, 0.8)], 4 + 1 + 6)
    dets = decode(layout, {"output0": pred})
    assert dets.keypoints is not None and dets.keypoint_scores is not None
    np.testing.assert_allclose(dets.keypoints, [[[90, 91], [110, 111]]])
    np.testing.assert_allclose(dets.keypoint_scores, [[0.2, 0.8]])


def test_box_masks_are_torch_bilinear_upsampling_cropped_to_the_box():
    rng = np.random.default_rng(1)
    protos = rng.normal(size=(8, 40, 40)).astype(np.float32)
    coefs = rng.normal(size=(3, 8)).astype(np.float32)
    boxes = np.array([[10.3, 20.0, 90.7, 150.2], [-5, -5, 40, 30], [100, 100, 160, 160]], np.float32)
    logits = torch.from_numpy(coefs @ protos.reshape(8, -1)).view(3, 40, 40)
    full = torch.nn.functional.interpolate(logits[None], (160, 160), mode="bilinear")[0].numpy()
    for mask, box, want in zip(box_masks(protos, coefs, boxes, 160, 160), boxes, full, strict=True):
        assert mask is not None
        cols, rows = np.arange(160), np.arange(160)
        inside = ((rows[:, None] >= box[1]) & (rows[:, None] < box[3]) & (cols >= box[0]) & (cols < box[2]))
        got = mask.paste(160, 160)
        np.testing.assert_allclose(got[inside], 1 / (1 + np.exp(-want[inside])), atol=1e-5)
        assert not got[~inside].any()
        assert (mask.left, mask.top) == (int(np.clip(np.ceil(box[0]), 0, 160)), int(np.clip(np.ceil(box[1]), 0, 160)))


def test_a_segment_detection_whose_mask_is_empty_in_its_box_is_dropped():
    layout = yolo_layout("segment", nc=1)
    pred = raw_yolo([(50, 50, 40, 40, 0.9, 1, 0, 0, 0), (300, 300, 40, 40, 0.8, -1, 0, 0, 0)], 4 + 1 + 4)
    protos = np.ones((4, 160, 160), np.float32)
    dets = decode(layout, {"output0": pred, "output1": protos})
    assert len(dets) == 1 and dets.masks is not None and len(dets.masks) == 1
    np.testing.assert_allclose(dets.scores, [0.9])
    assert dets.masks[0].probabilities.shape == (40, 40) and (dets.masks[0].left, dets.masks[0].top) == (30, 30)


def test_fit_to_input_letterboxes_centred_on_grey_and_rtdetr_stretches():
    image = np.full((400, 600, 3), 7, np.uint8)
    layout = yolo_layout()
    fitted = fit_to_input(image, layout)
    g = fitted.geometry
    assert (g.new_w, g.new_h, g.pad_x, g.pad_y) == (640, 427, 0, 106)
    assert (fitted.pixels[:106] == PAD_VALUE).all() and (fitted.pixels[106 + 427:] == PAD_VALUE).all()
    assert (fitted.pixels[106:106 + 427] == 7).all()
    x = to_input(fitted.pixels[None], layout)
    assert x.shape == (1, 3, 640, 640) and x.dtype == np.float32 and x.max() == np.float32(114 / 255)
    rtdetr = describe_graph(graph(out("output0", 1, 300, 6)), family="rtdetr", names=["a"])
    stretched = fit_to_input(image, rtdetr)
    assert (stretched.pixels == 7).all() and (stretched.geometry.new_w, stretched.geometry.new_h) == (640, 640)
