"""Click-to-segment with a SAM 2.1 pair served by Triton: a small SAM 2.1 with RANDOM weights
(Meta's sam2 1.1.0 architecture with a five-block Hiera, exported by
prelabel/core/models/convert/sam2_to_onnx.py; tests/tools/probes/sam2_export.py, cached by
the scripts and the `sam2` tool venv's versions), added with `prelabel models add --family
sam2 --weights random`, served by the real embedded tritonserver (NAME_encoder +
NAME_decoder beside the segmenter) behind the real segmentation service with click_model set.

Two pairs: the random model, whose single-mask answer always falls back to a multimask
candidate (SAM 2's stability check: random logits lie near 0), and the same with mask 0
sharpened (logits x100), whose mask 0 is stable and answers; so both branches of SAM 2's
choice go through the service.

- equivalence: SegmentClick for points, one point, a box, points + box and a refinement (the
  previous mask from the suite's first answer), one mask and the three multimask
  candidates, equal Meta's SAM2ImagePredictor.predict on the same weights (the sam2 venv's
  probe): mask IoU >= 0.99, predicted IoUs within 1e-3, masks of non-trivial area;
- the per-image state holds SAM 2's three feature maps: a second click on the same bytes
  calls only the decoder (Triton's own inference counts);
- prompted Segment (box prompts) is answered by the pair on the same held features, SAM 2's
  box mask.
"""
from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from pycocotools import mask as coco_mask

from prelabel.core.models import store
from prelabel.v1 import common_pb2, segmentation_pb2, segmentation_pb2_grpc
from scripts.tool_venv import SPECS, cache_root
from services.common.metrics import Metrics
from services.embedded_triton.settings import TritonSettings
from services.segmentation.app import build_app
from services.segmentation.settings import SegmentationSettings
from tests.conftest import running
from tests.tools.test_sam_clicks import (
    box_prompt,
    click_request,
    coffee_png,
    iou,
    mask_of,
    point,
    segment_request,
    suite_and_reference,
)
from tests.triton_server import running_triton

pytestmark = [pytest.mark.tools, pytest.mark.integration, pytest.mark.timeout(900)]

TOOL = "sam2"
EXPORT_SCRIPT = Path(store.__file__).with_name("convert") / "sam2_to_onnx.py"  # imports sam2: read, not imported
PROBES = Path(__file__).resolve().parent / "probes"
PAIRS = {"base": "tiny_sam2", "sharp": "sharp_sam2"}  # exported folder -> pair name
FEATURE_BYTES = (256 * 64 * 64 + 32 * 256 * 256 + 64 * 128 * 128) * 4
RPC_TIMEOUT_S = 120
POSITIVE, NEGATIVE = segmentation_pb2.POINT_LABEL_POSITIVE, segmentation_pb2.POINT_LABEL_NEGATIVE
WIDTH, HEIGHT = 600, 400  # the coffee photo


def exported_pairs(run_probe) -> Path:
    """OUT/{base,sharp}/{encoder.onnx,decoder.onnx,sam2.pt}, made once per version of the
    export scripts, the sam2 venv's pins and torch."""
    key = hashlib.sha256("\n".join([*((PROBES / p).read_text() for p in ("sam2_export.py", "sam2_reference.py")),
                                    EXPORT_SCRIPT.read_text(), (SPECS / f"{TOOL}.txt").read_text(),
                                    importlib.metadata.version("torch")]).encode()).hexdigest()[:12]
    out = cache_root() / "exports" / f"tiny-sam2-{key}"
    if not (out / "sharp" / "sam2.pt").exists():
        part = out.with_name(f"{out.name}.{os.getpid()}.part")
        shutil.rmtree(part, ignore_errors=True)
        run_probe(TOOL, "sam2_export.py", part, timeout=900)
        part.replace(out)
    return out


@dataclass
class Stack:
    triton_url: str
    pairs: Path  # the exported files

    def inferences(self, model: str) -> int:
        client = grpcclient.InferenceServerClient(self.triton_url)
        try:
            stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
        finally:
            client.close()
        return int(stats["inference_stats"]["success"].get("count", 0))


@pytest.fixture(scope="module")
def stack(run_probe, tmp_path_factory):
    """Both pairs through `prelabel models add --family sam2` into a fresh user repository,
    served by Triton."""
    from prelabel.cli import main

    pairs = exported_pairs(run_probe)
    base = tmp_path_factory.mktemp("sam2")
    repo = base / "user-models"
    for folder, pair in PAIRS.items():
        assert main(["models", "add", pair, "--family", "sam2", "--encoder", str(pairs / folder / "encoder.onnx"),
                     "--decoder", str(pairs / folder / "decoder.onnx"), "--weights", "random", "--license",
                     "Apache-2.0", "--user-models-dir", str(repo)]) == 0
    models = ["segmenter", *(f"{pair}_{part}" for pair in PAIRS.values() for part in ("encoder", "decoder"))]
    settings = TritonSettings(grpc_port=0, http_port=0, metrics_port=0, models=models, user_model_repository=repo)
    with running_triton(settings, base / "tritonserver.log") as server:
        yield Stack(server.grpc_url, pairs)


class Service:
    def __init__(self, stub: segmentation_pb2_grpc.SegmenterStub, metrics: Metrics, pair: str):
        self.stub, self.metrics, self.pair = stub, metrics, pair

    def state(self, name: str) -> float:
        sample = f"prelabel_image_state_{name}" + ("" if name == "bytes" else "_total")
        labels = {"service": "segmentation", "kind": f"sam-embedding:{self.pair}"}
        return self.metrics.registry.get_sample_value(sample, labels) or 0.0


@pytest.fixture(scope="module", params=list(PAIRS))
async def service(stack, request):
    metrics = Metrics("segmentation")
    pair = PAIRS[request.param]
    settings = SegmentationSettings(grpc_port=0, metrics_port=None, triton_url=stack.triton_url, click_model=pair,
                                    click_state_max_bytes=64 * 1024 * 1024)
    async with running(build_app(settings, metrics)) as address, grpc.aio.insecure_channel(address) as channel:
        yield Service(segmentation_pb2_grpc.SegmenterStub(channel), metrics, pair)


# --- equivalence with SAM2ImagePredictor -----------------------------------------------------

POINTS = [(300.0, 200.0, POSITIVE), (420.0, 385.0, NEGATIVE)]
BOX = (80.0, 30.0, 480.0, 360.0)
PROMPTS = {"points": (POINTS, None), "one-point": (POINTS[:1], None), "box": ([], BOX),
           "points+box": (POINTS, BOX), "refinement": (POINTS, None)}
CASES = [f"{name}/{mode}" for name in PROMPTS for mode in ("single", "multi")]


@pytest.fixture(scope="module")
async def answers(service, stack, run_probe, tmp_path_factory):
    """Per case, the suite's candidates (SegmentClick) and SAM2ImagePredictor's masks and scores."""
    folder = next(f for f, pair in PAIRS.items() if pair == service.pair)
    return await suite_and_reference(service.stub, PROMPTS, TOOL, stack.pairs / folder / "sam2.pt", run_probe,
                                     tmp_path_factory.mktemp("sam2-cases"))


@pytest.mark.parametrize("case", CASES)
async def test_the_suite_s_sam2_clicks_equal_sam2_image_predictor_on_the_same_random_weights(answers, service,
                                                                                               case):
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
        assert instance.area == int(mask.sum())
        low_res = np.frombuffer(candidate.low_res_mask.data, np.float32)
        assert low_res.size == 256 * 256 and np.abs(low_res).max() <= 32.0  # SAM 2 clamps what it hands back
        assert instance.detection.provenance.weights == common_pb2.WEIGHTS_RANDOM
    assert reply.provenance.model_name == f"{service.pair}_decoder"
    assert reply.provenance.license == "Apache-2.0"


# --- the per-image state and box prompts --------------------------------------------------

async def test_the_second_click_on_the_same_image_skips_the_encoder(service, stack):
    data = coffee_png(2)
    encoder = f"{service.pair}_encoder"
    encoded = stack.inferences(encoder)
    state_bytes = service.state("bytes")
    first = await service.stub.SegmentClick(click_request(data, point(300, 200)), timeout=RPC_TIMEOUT_S)
    assert not first.image_state_reused
    assert service.state("bytes") == state_bytes + FEATURE_BYTES  # the three feature maps are held
    second = await service.stub.SegmentClick(click_request(
        data, point(300, 200), point(420, 385, NEGATIVE), previous_mask=first.candidates[0].low_res_mask),
        timeout=RPC_TIMEOUT_S)
    assert second.image_state_reused and second.candidates
    for _ in range(100):  # Triton counts an inference a moment after its response
        if stack.inferences(encoder) > encoded:
            break
        await asyncio.sleep(0.05)
    assert stack.inferences(encoder) == encoded + 1, "the second click called the encoder"


async def test_prompted_segment_answers_a_box_with_sam2_on_the_held_features(service, answers):
    _, ref_masks, ref_scores = answers["box/single"]
    reply = await service.stub.Segment(segment_request(coffee_png(1), box_prompt(BOX)), timeout=RPC_TIMEOUT_S)
    [instance] = reply.instances
    mask = coco_mask.decode({"size": list(instance.mask.size), "counts": instance.mask.counts}).astype(bool)
    assert iou(mask, ref_masks[0]) >= 0.99 and abs(instance.mask_quality - ref_scores[0]) <= 1e-3
    b = instance.detection.box
    assert (b.x_min, b.y_min, b.x_max, b.y_max) == BOX
    assert reply.provenance.model_name == f"{service.pair}_decoder"
