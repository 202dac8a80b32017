"""Segmentation service against the real embedded tritonserver (segmenter model, CPU
profile: NanoDet + selfie + GrabCut, real weights): masks in source pixels that follow
drawn shapes of known geometry, prompted one-mask-per-box, COCO RLE through pycocotools,
bad requests, batching under concurrent load."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pycocotools import mask as coco_mask

from prelabel.core.models.store import read_lock
from prelabel.v1 import common_pb2, segmentation_pb2
from services.common.triton_client import ModelSpec
from services.segmentation.settings import SegmentationSettings
from tests.grpc_helpers import concurrent_counts, invalid_argument_field
from tests.photos import encode, photo_bytes
from tests.unit.triton_models import config_json

pytestmark = pytest.mark.integration

RPC_TIMEOUT_S = 60
EVERYTHING = common_pb2.ReviewPolicy(include_rejected=True)


def ellipse_of(width: int, height: int) -> tuple:
    return (width * 0.1, height * 0.1, width * 0.45, height * 0.8)


def rectangle_of(width: int, height: int) -> tuple:
    return (width * 0.55, height * 0.3, width * 0.95, height * 0.95)


def drawn_image(width: int, height: int) -> bytes:
    """A synthetic scene: a grey background with an ellipse and a rectangle."""
    image = Image.new("RGB", (width, height), (90, 110, 130))
    draw = ImageDraw.Draw(image)
    draw.ellipse(ellipse_of(width, height), fill=(220, 60, 50))
    draw.rectangle(rectangle_of(width, height), fill=(40, 200, 90))
    return encode(image, "PNG")


def shape_truth(width: int, height: int, shape: str) -> np.ndarray:
    image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(image)
    if shape == "ellipse":
        draw.ellipse(ellipse_of(width, height), fill=1)
    else:
        draw.rectangle(rectangle_of(width, height), fill=1)
    return np.asarray(image).astype(bool)


def box(x0, y0, x1, y1) -> common_pb2.Box:
    return common_pb2.Box(x_min=x0, y_min=y0, x_max=x1, y_max=y1)


def decoded(instance: segmentation_pb2.InstanceMask) -> np.ndarray:
    return coco_mask.decode({"size": list(instance.mask.size), "counts": instance.mask.counts})


def assert_inside(mask: np.ndarray, b: common_pb2.Box) -> None:
    ys, xs = np.nonzero(mask)
    assert len(xs), "mask is empty"
    assert xs.min() + 0.5 >= b.x_min and xs.max() + 0.5 <= b.x_max
    assert ys.min() + 0.5 >= b.y_min and ys.max() + 0.5 <= b.y_max


def box_pixels(b: common_pb2.Box, width: int, height: int) -> int:
    cols = np.arange(width) + 0.5
    rows = np.arange(height) + 0.5
    return int(((cols >= b.x_min) & (cols <= b.x_max)).sum() * ((rows >= b.y_min) & (rows <= b.y_max)).sum())





@pytest.mark.parametrize(("width", "height"), [(640, 200), (200, 640), (333, 333)])
async def test_segment_returns_one_aligned_mask_per_prompt_when_boxes_are_prompted(segmenter, width, height):
    prompts = [
        box(0, 0, width * 0.3, height * 0.25),  # top-left corner
        box(width * 0.7, height * 0.6, width, height),  # bottom-right corner, on the border
        box(width * 0.2, height * 0.3, width * 0.6, height * 0.7),  # middle
        box(-15, height * 0.5, width * 0.1, height + 40),  # crosses the border: clipped
    ]
    reply = await segmenter.Segment(segmentation_pb2.SegmentRequest(
        image=common_pb2.Image(data=drawn_image(width, height), image_id="synthetic"),
        prompts=[segmentation_pb2.BoxPrompt(box=b) for b in prompts],
        mask_threshold=0.05,
    ), timeout=RPC_TIMEOUT_S)

    assert (reply.image_size.width, reply.image_size.height) == (width, height)
    assert [m.prompt_index for m in reply.instances] == [0, 1, 2, 3]
    for prompt, instance in zip(prompts, reply.instances, strict=False):
        clipped = box(max(0, prompt.x_min), max(0, prompt.y_min), min(width, prompt.x_max), min(height, prompt.y_max))
        got = instance.detection.box
        assert (got.x_min, got.y_min, got.x_max, got.y_max) == pytest.approx(
            (clipped.x_min, clipped.y_min, clipped.x_max, clipped.y_max), abs=1e-3)
        mask = decoded(instance)
        assert mask.shape == (height, width)
        if mask.any():  # a box over plain background may rightly get no foreground
            assert_inside(mask, clipped)
        assert mask.sum() <= box_pixels(clipped, width, height)
        assert instance.area == mask.sum() == int(coco_mask.area(
            {"size": list(instance.mask.size), "counts": instance.mask.counts}))
        assert 0 <= instance.mask_quality <= 1
        assert instance.detection.score == pytest.approx(instance.mask_quality)


#: Prompt rows of one segmenter inference (PROMPT_BOXES of its config.pbtxt).
MODEL_ROWS = ModelSpec.from_config(config_json("segmenter")).prompt_capacity


def grid_prompts(width: int, height: int, count: int) -> list[segmentation_pb2.BoxPrompt]:
    """`count` different boxes over the image; every other one names a category (cup:
    GrabCut masks it), the rest leave it to the model."""
    prompts = []
    for k in range(count):
        x0, y0 = (k % 8) * width / 10, (k // 8) * height / 7
        prompts.append(segmentation_pb2.BoxPrompt(box=box(x0, y0, x0 + width / 4, y0 + height / 3),
                                                  category=common_pb2.Category(id=47 if k % 2 else 0)))
    return prompts


@pytest.mark.timeout(300)
async def test_segment_answers_every_prompt_in_order_when_there_are_more_than_the_model_rows(segmenter):
    count = MODEL_ROWS + 8
    data = drawn_image(400, 300)
    prompts = grid_prompts(400, 300, count)

    def ask(ps):
        return segmenter.Segment(segmentation_pb2.SegmentRequest(
            image=common_pb2.Image(data=data), prompts=ps, mask_threshold=0.3, review_policy=EVERYTHING),
            timeout=RPC_TIMEOUT_S)

    whole, first, rest = await asyncio.gather(ask(prompts), ask(prompts[:MODEL_ROWS]), ask(prompts[MODEL_ROWS:]))
    assert [m.prompt_index for m in whole.instances] == list(range(count))
    alone = list(first.instances) + list(rest.instances)
    assert len(alone) == count
    for k, (got, want) in enumerate(zip(whole.instances, alone, strict=True)):
        assert got.detection.box == want.detection.box == prompts[k].box
        assert got.detection.category == want.detection.category, k
        assert (got.mask, got.area, got.mask_quality, got.detection.score) == \
            (want.mask, want.area, want.mask_quality, want.detection.score), k
    assert any(m.area for m in whole.instances[MODEL_ROWS:]), "the second inference's masks are all empty"


@pytest.mark.parametrize(("width", "height"), [(640, 200), (333, 333)])
@pytest.mark.parametrize("shape", ["ellipse", "rectangle"])
async def test_segment_mask_follows_the_drawn_shape_when_box_prompted(segmenter, width, height, shape):
    x0, y0, x1, y1 = (ellipse_of if shape == "ellipse" else rectangle_of)(width, height)
    mx, my = (x1 - x0) * 0.08, (y1 - y0) * 0.08
    reply = await segmenter.Segment(segmentation_pb2.SegmentRequest(
        image=common_pb2.Image(data=drawn_image(width, height)),
        prompts=[segmentation_pb2.BoxPrompt(box=box(x0 - mx, y0 - my, x1 + mx, min(height, y1 + my)))],
    ), timeout=RPC_TIMEOUT_S)
    mask, truth = decoded(reply.instances[0]).astype(bool), shape_truth(width, height, shape)
    overlap = (mask & truth).sum() / (mask | truth).sum()
    assert overlap > 0.85, f"mask IoU with the drawn {shape}: {overlap:.2f}"


async def test_segment_round_trips_rle_through_pycocotools_when_automatic(segmenter):
    reply = await segmenter.Segment(segmentation_pb2.SegmentRequest(
        image=common_pb2.Image(data=photo_bytes("coffee.png"), image_id="coffee"),
        score_threshold=0.0, review_policy=EVERYTHING, include_polygons=True, max_instances=5,
    ), timeout=RPC_TIMEOUT_S)

    width, height = reply.image_size.width, reply.image_size.height
    assert (width, height) == (600, 400)
    assert 0 < len(reply.instances) <= 5
    scores = [m.detection.score for m in reply.instances]
    assert scores == sorted(scores, reverse=True)
    for instance in reply.instances:
        assert list(instance.mask.size) == [height, width]
        assert not instance.HasField("prompt_index")
        rle = {"size": list(instance.mask.size), "counts": instance.mask.counts}
        mask = coco_mask.decode(rle)
        assert instance.area == int(coco_mask.area(rle)) == int(mask.sum())
        b = instance.detection.box
        assert 0 <= b.x_min <= b.x_max <= width and 0 <= b.y_min <= b.y_max <= height
        if instance.area:
            assert_inside(mask, b)
            # Polygons (outer contours) rasterise back inside the box and cover the mask.
            polygons = [list(p.points) for p in instance.polygons]
            assert polygons
            filled = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(polygons, height, width)))
            assert (filled >= mask).all()
            xs, ys = np.concatenate([p[0::2] for p in polygons]), np.concatenate([p[1::2] for p in polygons])
            assert xs.min() >= np.floor(b.x_min) and xs.max() <= np.ceil(b.x_max)
            assert ys.min() >= np.floor(b.y_min) and ys.max() <= np.ceil(b.y_max)


async def test_segment_reports_pretrained_provenance_of_every_file_when_cpu_profile(segmenter):
    reply = await segmenter.Segment(segmentation_pb2.SegmentRequest(
        image=common_pb2.Image(data=drawn_image(300, 200)), prompts=[segmentation_pb2.BoxPrompt(box=box(10, 10, 90, 90))],
    ), timeout=RPC_TIMEOUT_S)
    lock = read_lock()["converted"]
    assert reply.provenance.model_name == "segmenter"
    assert reply.provenance.weights == common_pb2.WEIGHTS_PRETRAINED
    assert reply.provenance.weights_sha256.split(",") == [lock["nanodet"]["onnx_sha256"],
                                                          lock["selfie"]["onnx_sha256"]]
    assert "grabcut" in reply.provenance.architecture
    assert reply.instances[0].detection.provenance == reply.provenance


async def test_segment_routes_grabcut_masks_to_review_and_keeps_person_probabilities_when_prompted(segmenter):
    # A person box (astronaut.png, drawn by hand): selfie's own probabilities. A box
    # around the drawn ellipse prompted as a non-person class: GrabCut, which follows the
    # shape but gives no confidence of its own.
    person_reply = await segmenter.Segment(segmentation_pb2.SegmentRequest(
        image=common_pb2.Image(data=photo_bytes("astronaut.png")),
        prompts=[segmentation_pb2.BoxPrompt(box=box(10, 10, 365, 512), category=common_pb2.Category(id=1))],
    ), timeout=RPC_TIMEOUT_S)
    x0, y0, x1, y1 = ellipse_of(640, 200)
    shape_reply = await segmenter.Segment(segmentation_pb2.SegmentRequest(
        image=common_pb2.Image(data=drawn_image(640, 200)),
        prompts=[segmentation_pb2.BoxPrompt(box=box(x0 - 10, y0 - 10, x1 + 10, y1 + 10),
                                            category=common_pb2.Category(id=5))],
    ), timeout=RPC_TIMEOUT_S)
    person, other = person_reply.instances[0], shape_reply.instances[0]
    assert person.area > 0 and other.area > 0
    assert person.mask_quality > 0.8  # selfie is sure of most of the astronaut
    assert other.mask_quality == pytest.approx(0.6, abs=0.01)
    assert other.detection.score == pytest.approx(other.mask_quality)
    assert other.detection.review == common_pb2.REVIEW_DECISION_NEEDS_REVIEW


async def test_segment_echoes_the_prompt_category_when_one_is_given(segmenter):
    prompts = [
        segmentation_pb2.BoxPrompt(box=box(10, 10, 150, 150), category=common_pb2.Category(id=18)),
        segmentation_pb2.BoxPrompt(box=box(10, 10, 150, 150), category=common_pb2.Category(name="cat")),
        segmentation_pb2.BoxPrompt(box=box(10, 10, 150, 150), category=common_pb2.Category(id=7000, name="widget")),
        segmentation_pb2.BoxPrompt(box=box(10, 10, 150, 150)),
    ]
    reply = await segmenter.Segment(segmentation_pb2.SegmentRequest(
        image=common_pb2.Image(data=drawn_image(300, 200)), prompts=prompts), timeout=RPC_TIMEOUT_S)
    categories = [(m.detection.category.id, m.detection.category.name) for m in reply.instances]
    assert categories[:3] == [(18, "dog"), (17, "cat"), (7000, "widget")]
    # Unknown: the category of the detection overlapping the box, or none (0, "") when
    # the detector sees nothing there -- never a made-up "class_0".
    model_id, model_name = categories[3]
    assert (model_id, model_name) == (0, "") or (1 <= model_id <= 90 and not model_name.startswith("class_"))


async def test_segment_keeps_rejected_prompts_when_review_would_drop_them(segmenter):
    strict = common_pb2.ReviewPolicy(default_band=common_pb2.ReviewBand(accept_at=1.0, reject_below=1.0))
    reply = await segmenter.Segment(segmentation_pb2.SegmentRequest(
        image=common_pb2.Image(data=drawn_image(300, 200)), review_policy=strict,
        prompts=[segmentation_pb2.BoxPrompt(box=box(10, 10, 90, 90)), segmentation_pb2.BoxPrompt(box=box(100, 50, 290, 190))],
    ), timeout=RPC_TIMEOUT_S)
    assert [m.detection.review for m in reply.instances] == [common_pb2.REVIEW_DECISION_REJECT] * 2


async def test_segment_still_answers_every_prompt_when_a_box_is_thinner_than_a_pixel(segmenter):
    reply = await segmenter.Segment(segmentation_pb2.SegmentRequest(
        image=common_pb2.Image(data=drawn_image(300, 200)), mask_threshold=0.05,
        prompts=[segmentation_pb2.BoxPrompt(box=box(10.1, 10, 10.4, 60)),  # covers no pixel centre
                 segmentation_pb2.BoxPrompt(box=box(20.2, 10, 20.8, 60))],  # covers column 20
    ), timeout=RPC_TIMEOUT_S)
    thin, sliver = reply.instances
    assert thin.area == 0 and thin.mask_quality == 0 and decoded(thin).sum() == 0
    assert thin.detection.review == common_pb2.REVIEW_DECISION_REJECT
    mask = decoded(sliver)
    assert set(np.nonzero(mask)[1]) <= {20} and sliver.area == mask.sum()


def _prompts(n: int, b=None) -> list:
    return [segmentation_pb2.BoxPrompt(box=b or box(1, 1, 50, 50)) for _ in range(n)]


@pytest.mark.parametrize(("request_fields", "field"), [
    ({"image": common_pb2.Image(data=b"not an image")}, "image.data"),
    ({"prompts": _prompts(SegmentationSettings().max_prompts + 1)}, "prompts"),
    ({"prompts": _prompts(1, box(50, 10, 40, 60))}, "prompts[0].box"),  # x_max < x_min
    ({"prompts": _prompts(1) + _prompts(1, box(5, 5, 5, 30))}, "prompts[1].box"),  # zero width
    ({"prompts": [segmentation_pb2.BoxPrompt(box=box(float("nan"), 0, 5, 5))]}, "prompts[0].box"),
    ({"prompts": _prompts(1, box(400, 10, 500, 60))}, "prompts[0].box"),  # outside the 300x200 image
    ({"prompts": [segmentation_pb2.BoxPrompt()]}, "prompts[0].box"),  # missing
    ({"score_threshold": 1.5}, "score_threshold"),
    ({"mask_threshold": 1.0}, "mask_threshold"),
    ({"mask_threshold": 0.0}, "mask_threshold"),
    ({"max_instances": 100000}, "max_instances"),
    ({"review_policy": common_pb2.ReviewPolicy(default_band=common_pb2.ReviewBand(accept_at=2))},
     "review_policy.default_band.accept_at"),
])
async def test_segment_rejects_bad_requests_with_the_field_name_when_fields_are_invalid(
        segmenter, request_fields, field):
    request = segmentation_pb2.SegmentRequest(image=common_pb2.Image(data=drawn_image(300, 200)))
    request.MergeFrom(segmentation_pb2.SegmentRequest(**request_fields))
    assert await invalid_argument_field(segmenter.Segment, request, RPC_TIMEOUT_S) == field


async def test_segmenter_model_batches_requests_when_they_arrive_concurrently(segmenter, triton):
    images = [drawn_image(320 + 16 * i, 240) for i in range(12)]
    requests = [
        segmentation_pb2.SegmentRequest(
            image=common_pb2.Image(data=data, image_id=str(i)),
            prompts=_prompts(i % 3, box(5, 5, 100, 100)),
            score_threshold=0.5,
        )
        for i, data in enumerate(images)
    ]
    replies, inferences, executions = await concurrent_counts(
        triton.grpc_url, "segmenter", segmenter.Segment, requests, RPC_TIMEOUT_S)
    assert [r.image_id for r in replies] == [str(i) for i in range(12)]
    assert [len(r.instances) for r in replies if r.image_id in ("1", "2")] == [1, 2]
    assert inferences == 12
    assert executions < inferences, f"{executions} executions for {inferences} inferences: no batching"
