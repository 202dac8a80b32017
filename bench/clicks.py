"""`python -m bench.clicks [--rounds N] [--out FILE]`: per-click latency of the CPU
interactive engine (GrabCut, services.segmentation.interactive), in-process, on a 1 MP
JPEG (the coffee photo resized to 1224 x 816).

- first click: decode + downscale to the grid (the per-image state) + GrabCut + mask
  encoding, what a click on a new (or evicted) image costs;
- later click: GrabCut + mask encoding on the held state, what every further click costs.

Reports p50/p95 wall and CPU milliseconds of each, their ratio and the state's bytes per
image (JSON on stdout, and to --out). gRPC adds well under a millisecond on loopback.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from prelabel.core.review import policy_from_proto
from prelabel.v1 import common_pb2, segmentation_pb2
from services.common.image_state import ImageStateCache
from services.common.metrics import Metrics
from services.common.work import WorkBudget
from services.modelkit.grabcut_clicks import DEFAULT_ITERATIONS, DEFAULT_PROBABILITY
from services.segmentation.clicks import placed_click, read_click
from services.segmentation.interactive import GrabCutClicks, GrabCutSettings, prepare_click_image
from services.segmentation.settings import SegmentationSettings

SIZE = (1224, 816)  # 1.0 MP


def percentiles(values: list[float]) -> dict[str, float]:
    ms = np.asarray(values) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1)}


#: What the CPU segmenter's config gives GrabCut (no Triton here to ask).
GRABCUT = GrabCutSettings(DEFAULT_PROBABILITY, DEFAULT_ITERATIONS)


def grabcut_engine(settings: SegmentationSettings) -> GrabCutClicks:
    """The service's GrabCut engine with the CPU segmenter's defaults (no Triton to ask) and
    no per-image state."""
    async def fixed() -> GrabCutSettings:
        return GRABCUT

    return GrabCutClicks(settings, ImageStateCache(0), Metrics("segmentation"), fixed)


def measure(rounds: int, settings: SegmentationSettings | None = None) -> dict:
    settings = settings or SegmentationSettings()
    photo = cv2.resize(skimage.data.coffee(), SIZE, interpolation=cv2.INTER_CUBIC)
    data = cv2.imencode(".jpg", photo[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    engine = grabcut_engine(settings)
    policy = policy_from_proto(common_pb2.ReviewPolicy())
    prompt = segmentation_pb2.ClickPrompt(points=[segmentation_pb2.PointPrompt(
        x=SIZE[0] / 2, y=SIZE[1] / 2, label=segmentation_pb2.POINT_LABEL_POSITIVE)])
    timings: dict[str, list[float]] = {"first_wall": [], "first_cpu": [], "later_wall": [], "later_cpu": []}
    nbytes = 0
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        image = prepare_click_image(data, settings)
        prepared_wall, prepared_cpu = time.perf_counter(), time.process_time()
        click = placed_click(read_click(prompt, "prompt", settings.click_max_points), image.width, image.height)
        engine.candidates(image, click, policy, GRABCUT, WorkBudget(time.monotonic() + 600, 0))
        end_wall, end_cpu = time.perf_counter(), time.process_time()
        timings["first_wall"].append(end_wall - wall)
        timings["first_cpu"].append(end_cpu - cpu)
        timings["later_wall"].append(end_wall - prepared_wall)
        timings["later_cpu"].append(end_cpu - prepared_cpu)
        nbytes = image.nbytes
    result = {name: percentiles(values) for name, values in timings.items()}
    return {
        "engine": "grabcut", "image": f"{SIZE[0]}x{SIZE[1]} JPEG", "grid_max_side": settings.click_grid_max_side,
        "rounds": rounds, **result,
        "first_to_later_ratio_p50": round(result["first_wall"]["p50_ms"] / max(result["later_wall"]["p50_ms"], 1e-9), 2),
        "state_bytes_per_image": nbytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = json.dumps(measure(args.rounds), indent=2)
    print(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(result + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
