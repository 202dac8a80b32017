"""Click-to-segment with a SAM-interface pair served by Triton: a small SAM with RANDOM
weights (Meta's architecture and ONNX export, one encoder block; tests/tools/probes/
sam_export.py, cached by the scripts and the `sam` tool venv's versions), added with
`prelabel models add --family sam --weights random`, served by the real embedded
tritonserver (NAME_encoder + NAME_decoder beside the segmenter) behind the real
segmentation service with click_model set.

- equivalence: SegmentClick for points, a box, points + box and a refinement (the previous
  mask from the suite's first answer), one mask and the three multimask candidates, equal
  Meta's SamPredictor.predict on the same weights (the sam venv's probe): mask IoU >= 0.99,
  predicted IoUs within 1e-3, masks of non-trivial area (random weights make masks of every
  size, so two empty or full masks agreeing would prove nothing);
- the image-embedding cache: Triton's own inference counts show a second click on the same
  bytes calls only the decoder; an evicted image is encoded again, not an error;
- box prompts: prompted Segment (what the router's cascade sends) is answered by the pair on
  the same held embedding, one SamPredictor box mask per prompt; with sam_box_prompts off,
  and always in automatic mode, the segmenter answers;
- bad input on the SAM path: INVALID_ARGUMENT naming the field.
"""
from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import skimage.data
import tritonclient.grpc as grpcclient
from pycocotools import mask as coco_mask

from prelabel import sam_checkpoints
from prelabel.v1 import common_pb2, segmentation_pb2, segmentation_pb2_grpc
from scripts.tool_venv import SPECS, cache_root
from services.common.metrics import Metrics
from services.embedded_triton.settings import TritonSettings
from services.segmentation.app import build_app
from services.segmentation.settings import SegmentationSettings
from tests.conftest import running
from tests.grpc_helpers import invalid_argument_field
from tests.photos import encode
from tests.triton_server import running_triton

pytestmark = [pytest.mark.tools, pytest.mark.integration, pytest.mark.timeout(900)]

TOOL = "sam"
PROBES = Path(__file__).resolve().parent / "probes"
PAIR = "tiny_sam"
ENCODER, DECODER = f"{PAIR}_encoder", f"{PAIR}_decoder"
KIND = f"sam-embedding:{PAIR}"
EMBEDDING_BYTES = 256 * 64 * 64 * 4
RPC_TIMEOUT_S = 120
POSITIVE, NEGATIVE = segmentation_pb2.POINT_LABEL_POSITIVE, segmentation_pb2.POINT_LABEL_NEGATIVE
WIDTH, HEIGHT = 600, 400  # the coffee photo


def exported_pair(run_probe) -> Path:
    """The tiny SAM's encoder.onnx, decoder.onnx and sam.pt, made once per version of the
    export scripts, the sam venv's pins and torch."""
    key = hashlib.sha256("\n".join([(PROBES / "sam_export.py").read_text(), (PROBES / "sam_reference.py").read_text(),
                                    sam_checkpoints.EXPORT_SCRIPT.read_text(),
                                    (SPECS / f"{TOOL}.txt").read_text(), importlib.metadata.version("torch")])
                         .encode()).hexdigest()[:12]
    out = cache_root() / "exports" / f"tiny-sam-{key}"
    if not (out / "sam.pt").exists():
        part = out.with_name(f"{out.name}.{os.getpid()}.part")
        shutil.rmtree(part, ignore_errors=True)
        run_probe(TOOL, "sam_export.py", part, timeout=900)
        part.replace(out)
    return out


def coffee_png(variant: int = 0) -> bytes:
    """The coffee photo as PNG; `variant` changes one pixel, so the bytes (the state's key)
    differ."""
    image = skimage.data.coffee().copy()
    image[0, 0, 0] = variant % 256
    return encode(image, "PNG")


def point(x: float, y: float, label=POSITIVE) -> segmentation_pb2.PointPrompt:
    return segmentation_pb2.PointPrompt(x=x, y=y, label=label)


def mask_of(candidate: segmentation_pb2.MaskCandidate) -> np.ndarray:
    m = candidate.instance.mask
    return coco_mask.decode({"size": list(m.size), "counts": m.counts}).astype(bool)


def click_request(data: bytes, *points, **prompt) -> segmentation_pb2.ClickRequest:
    return segmentation_pb2.ClickRequest(image=common_pb2.Image(data=data, image_id="coffee"),
                                         prompt=segmentation_pb2.ClickPrompt(points=list(points), **prompt))


@dataclass
class Stack:
    triton_url: str
    pair: Path  # the exported files

    def inferences(self, model: str) -> int:
        """Triton's own count of successful inferences of `model`."""
        client = grpcclient.InferenceServerClient(self.triton_url)
        try:
            stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
        finally:
            client.close()
        return int(stats["inference_stats"]["success"].get("count", 0))

    async def settled(self, model: str, expected: int, timeout_s: float = 10.0) -> int:
        """`model`'s count once it reaches `expected` (Triton counts an inference a moment
        after its response is sent), or what it is after `timeout_s`."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while (count := self.inferences(model)) < expected and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return count


@pytest.fixture(scope="module")
def stack(run_probe, tmp_path_factory):
    """`prelabel models add --family sam` into a fresh user repository, served by Triton."""
    from prelabel.cli import main

    pair = exported_pair(run_probe)
    base = tmp_path_factory.mktemp("sam")
    repo = base / "user-models"
    assert main(["models", "add", PAIR, "--family", "sam", "--encoder", str(pair / "encoder.onnx"), "--decoder",
                 str(pair / "decoder.onnx"), "--weights", "random", "--license", "Apache-2.0",
                 "--user-models-dir", str(repo)]) == 0
    settings = TritonSettings(grpc_port=0, http_port=0, metrics_port=0, models=["segmenter", ENCODER, DECODER],
                              user_model_repository=repo)
    with running_triton(settings, base / "tritonserver.log") as server:
        yield Stack(server.grpc_url, pair)


class Service:
    def __init__(self, address: str, stub: segmentation_pb2_grpc.SegmenterStub, metrics: Metrics):
        self.address, self.stub, self.metrics = address, stub, metrics

    def state(self, name: str) -> float:
        sample = f"prelabel_image_state_{name}" + ("" if name == "bytes" else "_total")
        return self.metrics.registry.get_sample_value(sample, {"service": "segmentation", "kind": KIND}) or 0.0


async def serve(stack: Stack, state_bytes: int, sam_box_prompts: bool = True):
    metrics = Metrics("segmentation")
    settings = SegmentationSettings(grpc_port=0, metrics_port=None, triton_url=stack.triton_url, click_model=PAIR,
                                    click_state_max_bytes=state_bytes, sam_box_prompts=sam_box_prompts)
    async with running(build_app(settings, metrics)) as address, grpc.aio.insecure_channel(address) as channel:
        yield Service(address, segmentation_pb2_grpc.SegmenterStub(channel), metrics)


@pytest.fixture(scope="module")
async def service(stack):
    async for s in serve(stack, 64 * 1024 * 1024):
        yield s


@pytest.fixture(scope="module")
async def one_image_service(stack):
    """A second service whose per-image state holds one embedding."""
    async for s in serve(stack, EMBEDDING_BYTES):
        yield s


# --- equivalence with SamPredictor ---------------------------------------------------------

POINTS = [(300.0, 200.0, POSITIVE), (420.0, 385.0, NEGATIVE)]
BOX = (80.0, 30.0, 480.0, 360.0)
PROMPTS = {"points": (POINTS, None), "box": ([], BOX), "points+box": (POINTS, BOX), "refinement": (POINTS, None)}
CASES = [f"{name}/{mode}" for name in PROMPTS for mode in ("single", "multi")]


async def suite_and_reference(stub, prompts: dict, tool: str, weights: Path, run_probe, work: Path) -> dict:
    """Per case of `prompts` (name -> (points, box); each single and multimask, "refinement"
    sending back the first "points/single" answer's low-res mask), the suite's SegmentClick
    reply and the `tool` venv's Meta predictor's masks and scores on `weights`
    (probes/sam_predict.py)."""
    data = coffee_png(1)
    (work / "coffee.png").write_bytes(data)
    suite, cases = {}, {}
    first = None
    names = [f"{name}/{mode}" for name in prompts for mode in ("single", "multi")]
    for case in names:
        name, mode = case.split("/")
        points, box = prompts[name]
        prompt = {"multimask_output": mode == "multi"}
        if box is not None:
            prompt["box"] = common_pb2.Box(x_min=box[0], y_min=box[1], x_max=box[2], y_max=box[3])
        previous = None
        if name == "refinement":
            assert first is not None
            prompt["previous_mask"] = first.candidates[0].low_res_mask
            previous = work / "previous.npy"
            np.save(previous, np.frombuffer(first.candidates[0].low_res_mask.data, np.float32).reshape(256, 256))
        reply = await stub.SegmentClick(click_request(data, *(point(*p) for p in points), **prompt),
                                        timeout=RPC_TIMEOUT_S)
        if case == "points/single":
            first = reply
        suite[case] = reply
        cases[case] = {"points": [p[:2] for p in points], "labels": [1 if p[2] == POSITIVE else 0 for p in points],
                       "box": list(box) if box else None, "previous": str(previous) if previous else None,
                       "multimask": mode == "multi"}
    (work / "cases.json").write_text(json.dumps(cases))
    run_probe(tool, "sam_predict.py", tool, weights, work / "coffee.png", work / "cases.json",
              work / "reference.npz", timeout=600)
    reference = np.load(work / "reference.npz")
    return {case: (suite[case], reference[f"{case}/masks"], reference[f"{case}/scores"]) for case in names}


@pytest.fixture(scope="module")
async def answers(service, stack, run_probe, tmp_path_factory):
    """Per case, the suite's candidates (SegmentClick) and SamPredictor's masks and scores."""
    return await suite_and_reference(service.stub, PROMPTS, TOOL, stack.pair / "sam.pt", run_probe,
                                     tmp_path_factory.mktemp("sam-cases"))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@pytest.mark.parametrize("case", CASES)
async def test_the_suite_s_sam_clicks_equal_sam_predictor_on_the_same_random_weights(answers, case):
    reply, ref_masks, ref_scores = answers[case]
    expected = 3 if case.endswith("multi") else 1
    assert len(reply.candidates) == len(ref_masks) == expected
    assert all(0 < area < WIDTH * HEIGHT for area in ref_masks.sum(axis=(1, 2))), "a degenerate mask proves nothing"
    assert ((ref_scores > 0) & (ref_scores < 1)).all(), "predicted IoUs the service would clip"
    order = np.argsort(-ref_scores, kind="stable")  # the suite answers best first
    for candidate, k in zip(reply.candidates, order, strict=True):
        instance = candidate.instance
        mask = mask_of(candidate)
        assert mask.shape == (HEIGHT, WIDTH)
        assert iou(mask, ref_masks[k]) >= 0.99
        assert abs(instance.mask_quality - ref_scores[k]) <= 1e-3
        assert abs(instance.detection.score - ref_scores[k]) <= 1e-3
        assert instance.area == int(mask.sum())
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        box = instance.detection.box
        assert (box.x_min, box.y_min, box.x_max, box.y_max) == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        assert list(candidate.low_res_mask.shape) == [256, 256] and len(candidate.low_res_mask.data) == 256 * 256 * 4
        assert instance.detection.provenance.weights == common_pb2.WEIGHTS_RANDOM
    assert reply.provenance.model_name == DECODER and reply.provenance.weights == common_pb2.WEIGHTS_RANDOM
    assert reply.provenance.license == "Apache-2.0"


# --- the image-embedding cache -------------------------------------------------------------

async def test_the_second_click_on_the_same_image_skips_the_encoder(service, stack):
    data = coffee_png(2)
    encoded, decoded = stack.inferences(ENCODER), stack.inferences(DECODER)
    misses, hits = service.state("misses"), service.state("hits")
    first = await service.stub.SegmentClick(click_request(data, point(300, 200)), timeout=RPC_TIMEOUT_S)
    assert not first.image_state_reused
    assert await stack.settled(DECODER, decoded + 1) == decoded + 1
    assert await stack.settled(ENCODER, encoded + 1) == encoded + 1
    second = await service.stub.SegmentClick(click_request(
        data, point(300, 200), point(420, 385, NEGATIVE), previous_mask=first.candidates[0].low_res_mask),
        timeout=RPC_TIMEOUT_S)
    assert second.image_state_reused and second.candidates
    assert await stack.settled(DECODER, decoded + 2) == decoded + 2
    assert stack.inferences(ENCODER) == encoded + 1, "the second click called the encoder"
    assert (service.state("misses"), service.state("hits")) == (misses + 1, hits + 1)
    assert service.state("bytes") >= EMBEDDING_BYTES


async def test_an_evicted_image_is_encoded_again(one_image_service, stack):
    service = one_image_service
    a, b = coffee_png(3), coffee_png(4)
    encoded = stack.inferences(ENCODER)
    for data in (a, b):
        reply = await service.stub.SegmentClick(click_request(data, point(300, 200)), timeout=RPC_TIMEOUT_S)
        assert not reply.image_state_reused
        assert service.state("bytes") == EMBEDDING_BYTES
    assert service.state("evictions") == 1
    again = await service.stub.SegmentClick(click_request(a, point(300, 200)), timeout=RPC_TIMEOUT_S)
    assert not again.image_state_reused and len(again.candidates) == 1
    assert await stack.settled(ENCODER, encoded + 3) == encoded + 3


async def test_a_session_holds_the_embedding_and_refines_the_mask(service, stack):
    answers_q: asyncio.Queue = asyncio.Queue()

    async def messages():
        yield segmentation_pb2.ClickSessionRequest(start=segmentation_pb2.ClickSessionStart(
            image=common_pb2.Image(data=coffee_png(5), image_id="coffee-5")))
        yield segmentation_pb2.ClickSessionRequest(click=segmentation_pb2.ClickPrompt(points=[point(300, 200)]))
        first = await answers_q.get()
        yield segmentation_pb2.ClickSessionRequest(click=segmentation_pb2.ClickPrompt(
            points=[point(300, 200), point(420, 385, NEGATIVE)], previous_mask=first.candidates[0].low_res_mask,
            multimask_output=True))

    encoded = stack.inferences(ENCODER)
    replies = []
    async for reply in service.stub.ClickSession(messages(), timeout=RPC_TIMEOUT_S):
        replies.append(reply)
        await answers_q.put(reply)
    assert [len(r.candidates) for r in replies] == [1, 3]
    assert [r.image_id for r in replies] == ["coffee-5"] * 2
    scores = [c.instance.mask_quality for c in replies[1].candidates]
    assert scores == sorted(scores, reverse=True), "best first"
    assert await stack.settled(ENCODER, encoded + 1) == encoded + 1


# --- box prompts: prompted Segment and the router's cascade --------------------------------

def box_prompt(box, category: common_pb2.Category | None = None) -> segmentation_pb2.BoxPrompt:
    return segmentation_pb2.BoxPrompt(box=common_pb2.Box(x_min=box[0], y_min=box[1], x_max=box[2], y_max=box[3]),
                                      category=category)


def segment_request(data: bytes, *prompts: segmentation_pb2.BoxPrompt) -> segmentation_pb2.SegmentRequest:
    return segmentation_pb2.SegmentRequest(image=common_pb2.Image(data=data, image_id="coffee"), prompts=prompts)


async def test_prompted_segment_answers_each_box_with_sam_on_the_embedding_the_clicks_use(service, stack, answers):
    """The box case of the equivalence above, asked as a Segment prompt (as the router's
    cascade asks with the detector's boxes) on the image the clicks were made on: SamPredictor's
    mask, its predicted IoU as score, the caller's category, the prompt box; the held
    embedding is used (no encoder call)."""
    _, ref_masks, ref_scores = answers["box/single"]
    encoded = stack.inferences(ENCODER)
    cup = common_pb2.Category(id=47, name="cup")
    reply = await service.stub.Segment(segment_request(coffee_png(1), box_prompt(BOX, cup),
                                                       box_prompt((400.0, 0.0, 700.0, 150.0))), timeout=RPC_TIMEOUT_S)
    assert [i.prompt_index for i in reply.instances] == [0, 1]
    first, second = reply.instances
    mask = coco_mask.decode({"size": list(first.mask.size), "counts": first.mask.counts}).astype(bool)
    assert iou(mask, ref_masks[0]) >= 0.99 and abs(first.mask_quality - ref_scores[0]) <= 1e-3
    assert first.detection.score == pytest.approx(first.mask_quality) and first.area == int(mask.sum())
    assert (first.detection.category.id, first.detection.category.name) == (47, "cup")
    b = first.detection.box
    assert (b.x_min, b.y_min, b.x_max, b.y_max) == BOX
    b = second.detection.box  # reaching past the image: clipped to it
    assert (b.x_min, b.y_min, b.x_max, b.y_max) == (400.0, 0.0, 600.0, 150.0)
    assert (second.detection.category.id, second.detection.category.name) == (0, "")  # SAM names nothing
    assert reply.provenance.model_name == DECODER and reply.provenance.weights == common_pb2.WEIGHTS_RANDOM
    assert (reply.image_size.width, reply.image_size.height) == (WIDTH, HEIGHT)
    assert stack.inferences(ENCODER) == encoded, "the held embedding was not used"


async def test_automatic_segment_and_boxes_with_sam_box_prompts_off_stay_with_the_segmenter(stack):
    async for service in serve(stack, 64 * 1024 * 1024, sam_box_prompts=False):
        prompted = await service.stub.Segment(segment_request(coffee_png(7), box_prompt(BOX)), timeout=RPC_TIMEOUT_S)
        automatic = await service.stub.Segment(segment_request(coffee_png(7)), timeout=RPC_TIMEOUT_S)
    assert prompted.provenance.model_name == automatic.provenance.model_name == "segmenter"
    assert len(prompted.instances) == 1 and prompted.instances[0].prompt_index == 0


async def test_a_bad_box_prompt_on_the_sam_path_is_invalid_argument_naming_the_field(service):
    request = segment_request(coffee_png(6), box_prompt(BOX), box_prompt((50.0, 10.0, 40.0, 20.0)))
    assert await invalid_argument_field(service.stub.Segment, request, RPC_TIMEOUT_S) == "prompts[1].box"
    off_image = segment_request(coffee_png(6), box_prompt((700.0, 500.0, 800.0, 600.0)))
    assert await invalid_argument_field(service.stub.Segment, off_image, RPC_TIMEOUT_S) == "prompts[0].box"


# --- bad input on the SAM path -------------------------------------------------------------

BAD_PROMPTS = {
    "a GrabCut mask as the previous mask": (
        (point(300, 200),), {"previous_mask": segmentation_pb2.LowResMask(data=bytes(171 * 256), shape=[171, 256])},
        "prompt.previous_mask.shape"),
    "a previous mask of one byte per pixel": (
        (point(300, 200),), {"previous_mask": segmentation_pb2.LowResMask(data=bytes(256 * 256), shape=[256, 256])},
        "prompt.previous_mask.data"),
    "a point outside the image": ((point(601, 200),), {}, "prompt.points"),
    "a negative coordinate": ((point(300, 200), point(-1, 5, NEGATIVE)), {}, "prompt.points"),
}


@pytest.mark.parametrize("case", sorted(BAD_PROMPTS))
async def test_a_bad_prompt_on_the_sam_path_is_invalid_argument_naming_the_field(service, case):
    points, prompt, field = BAD_PROMPTS[case]
    request = click_request(coffee_png(6), *points, **prompt)
    assert await invalid_argument_field(service.stub.SegmentClick, request, RPC_TIMEOUT_S) == field
