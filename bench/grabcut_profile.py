"""`python -m bench.grabcut_profile [--rounds N]`: where a GrabCut click's time goes, on
bench.clicks' 1 MP photo (coffee resized to 1224 x 816, JPEG q90, held as the service
holds it: on the 256 px grid), for two prompts:
- first click: one positive click on the cup (bench.clicks' click, no previous mask);
- refinement: that click's answer sent back as the previous mask, plus a positive click
  on the cup's body (what a session's next click on the same object sends).

For each: the whole click on the held image (services.segmentation.interactive
GrabCutClicks.candidates: GrabCut, pasting to 1 MP and RLE), p50 wall and CPU ms; and
GrabCut alone, one iteration per OpenCV call (GC_INIT_WITH_MASK with no iteration for the
k-means colour models, then GC_EVAL with the models carried over; checked to give the
engine's labels), median CPU ms of the initialisation and of each iteration. OpenCV's
thread count is printed: GrabCut itself runs on one thread.
"""
from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np
import skimage.data

from bench.clicks import GRABCUT, SIZE, grabcut_engine
from prelabel.core.review import policy_from_proto
from prelabel.v1 import common_pb2, segmentation_pb2
from services.common.work import WorkBudget
from services.modelkit import grabcut_clicks
from services.modelkit.grabcut_clicks import DEFAULT_ITERATIONS, Seeds
from services.segmentation.clicks import placed_click, read_click
from services.segmentation.interactive import ClickImage, GrabCutClicks, prepare_click_image
from services.segmentation.settings import SegmentationSettings

CUP = (SIZE[0] / 2, SIZE[1] / 2)  # bench.clicks' click
CUP_BODY = (598.0, 477.0)  # below the rim: outside the first click's answer


def positive(*points: tuple[float, float]) -> list[segmentation_pb2.PointPrompt]:
    return [segmentation_pb2.PointPrompt(x=x, y=y, label=segmentation_pb2.POINT_LABEL_POSITIVE) for x, y in points]


def step_by_step(grid: np.ndarray, seeds: Seeds, iterations: int) -> tuple[list[float], np.ndarray]:
    """CPU seconds of [model initialisation, iteration 1, ...] and the final labels."""
    labels = grabcut_clicks.initial_labels((grid.shape[0], grid.shape[1]), seeds)
    bgr = np.ascontiguousarray(grid[..., ::-1])
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    started = time.process_time()
    cv2.grabCut(bgr, labels, None, bgd, fgd, 0, cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]
    costs = [time.process_time() - started]
    for _ in range(iterations):
        started = time.process_time()
        cv2.grabCut(bgr, labels, None, bgd, fgd, 1, cv2.GC_EVAL)  # type: ignore[call-overload]
        costs.append(time.process_time() - started)
    return costs, labels


def one_call(grid: np.ndarray, seeds: Seeds, iterations: int) -> np.ndarray:
    """The labels of the engine's way: all iterations in one call."""
    labels = grabcut_clicks.initial_labels((grid.shape[0], grid.shape[1]), seeds)
    cv2.setRNGSeed(0)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(np.ascontiguousarray(grid[..., ::-1]), labels, None, bgd, fgd,  # type: ignore[call-overload]
                iterations, cv2.GC_INIT_WITH_MASK)
    return labels


def profile(engine: GrabCutClicks, image: ClickImage, prompt: segmentation_pb2.ClickPrompt,
            rounds: int) -> tuple[dict, segmentation_pb2.MaskCandidate]:
    """The prompt's whole-click and per-iteration costs, and its answer."""
    click = placed_click(read_click(prompt, "prompt", engine.settings.click_max_points), image.width, image.height)
    policy = policy_from_proto(common_pb2.ReviewPolicy())
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        candidate, = engine.candidates(image, click, policy, GRABCUT, WorkBudget(time.monotonic() + 600, 0))
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    previous = None
    if click.previous is not None:
        previous = np.frombuffer(click.previous.data, np.uint8).reshape(tuple(click.previous.shape))
    seeds = Seeds(positive=image.to_grid(click.positive), negative=image.to_grid(click.negative), box=None,
                  previous=previous)
    runs = [step_by_step(image.grid, seeds, DEFAULT_ITERATIONS) for _ in range(rounds)]
    if not np.array_equal(runs[0][1], one_call(image.grid, seeds, DEFAULT_ITERATIONS)):
        raise AssertionError("one iteration per call no longer gives the engine's labels")
    ms = np.median([costs for costs, _ in runs], axis=0) * 1000
    return {
        "click_wall_p50_ms": round(float(np.median(walls)) * 1000, 1),
        "click_cpu_p50_ms": round(float(np.median(cpus)) * 1000, 1),
        "grabcut_init_cpu_ms": round(float(ms[0]), 1),
        "grabcut_iteration_cpu_ms": [round(float(v), 1) for v in ms[1:]],
        "grabcut_cpu_ms": round(float(ms.sum()), 1),
    }, candidate


def measure(rounds: int) -> dict:
    settings = SegmentationSettings()
    photo = cv2.resize(skimage.data.coffee(), SIZE, interpolation=cv2.INTER_CUBIC)  # bench.clicks' photo
    data = cv2.imencode(".jpg", photo[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    image = prepare_click_image(data, settings)
    engine = grabcut_engine(settings)
    first, answer = profile(engine, image, segmentation_pb2.ClickPrompt(points=positive(CUP)), rounds)
    refinement, _ = profile(engine, image, segmentation_pb2.ClickPrompt(
        points=positive(CUP, CUP_BODY), previous_mask=answer.low_res_mask), rounds)
    return {"image": f"{SIZE[0]}x{SIZE[1]} JPEG", "grid": list(image.grid.shape[:2]),
            "opencv_threads": cv2.getNumThreads(), "rounds": rounds, "first_click": first, "refinement": refinement}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(measure(args.rounds), indent=2))


if __name__ == "__main__":
    main()
