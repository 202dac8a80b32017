"""GrabCut seeded by clicks, a box and a previous mask: the weight-free interactive
segmenter of the CPU profile (OpenCV only, no torch; the segmentation service runs it
in-process).

It works on a copy of the image downscaled to a long side of `max_side` px (GrabCut on a
full photo takes seconds). The seeds, in GrabCut's labels (GC_INIT_WITH_MASK):
- a previous mask (this function's own earlier answer on the same grid): its foreground
  probably foreground, the rest probably background;
- else a box: outside definitely background, inside probably foreground;
- else (clicks only): probably foreground within a quarter of the long side of each
  positive click, probably background elsewhere;
- then a disc around each positive click is definitely foreground and a wider one around
  each negative click definitely background.

After GrabCut, the answer keeps the foreground regions that contain a positive click (all
of it when there is none: a box alone), minus the region of each negative click (the
foreground colour-connected to it): GrabCut's colour models are global, so a negative
click alone rarely cuts off a region of colours it kept; this rule makes "a negative click
on a wrongly included region removes it" hold.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import cv2
import numpy as np

#: GrabCut's labels are hard 0/1 with no confidence: its foreground pixels get this
#: probability unless the served config says otherwise (the CPU segmenter's
#: `grabcut_probability`): a weightless colour model must not pass for a sure mask.
DEFAULT_PROBABILITY = 0.6
DEFAULT_ITERATIONS = 5
#: Probably-foreground radius around positive clicks when there is neither box nor
#: previous mask, as a fraction of the long side.
CLICK_PRIOR_RADIUS = 0.25
#: Definite seed discs, as fractions of the long side (at least 2 px).
POSITIVE_RADIUS = 0.015
NEGATIVE_RADIUS = 0.04
#: A negative click removes the foreground within this per-channel colour distance of it
#: (connected to it).
NEGATIVE_TOLERANCE = 24


@dataclass(frozen=True)
class Seeds:
    """The prompt on the downscaled grid (grid pixels)."""

    positive: np.ndarray  # [k, 2] (x, y)
    negative: np.ndarray  # [k, 2] (x, y)
    box: np.ndarray | None  # x_min, y_min, x_max, y_max
    previous: np.ndarray | None  # uint8 [h, w], 1 = foreground


def grid_shape(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(height, width) of the downscaled grid of a width x height image."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(height * scale)), max(1, round(width * scale))


def on_grid(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The RGB image resized to the grid `shape` (height, width) GrabCut works on."""
    if tuple(rgb.shape[:2]) == tuple(shape):
        return np.ascontiguousarray(rgb)
    return cv2.resize(rgb, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def _discs(mask: np.ndarray, points: np.ndarray, radius: int, value: int) -> None:
    for x, y in points:
        cv2.circle(mask, (int(round(x)), int(round(y))), radius, (value,), -1)


def initial_labels(shape: tuple[int, int], seeds: Seeds) -> np.ndarray:
    """GrabCut's initial label mask for `seeds` (see the module docstring)."""
    h, w = shape
    side = max(h, w)
    labels = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    if seeds.previous is not None:
        labels[seeds.previous > 0] = cv2.GC_PR_FGD
    elif seeds.box is not None:
        labels[:] = cv2.GC_BGD
        x0, y0 = np.floor(seeds.box[:2]).astype(int)
        x1, y1 = np.ceil(seeds.box[2:]).astype(int)
        labels[max(0, y0):y1, max(0, x0):x1] = cv2.GC_PR_FGD
    else:
        _discs(labels, seeds.positive, max(2, int(CLICK_PRIOR_RADIUS * side)), cv2.GC_PR_FGD)
    if seeds.box is not None and seeds.previous is not None:  # the box bounds a refinement too
        inside = np.zeros_like(labels, dtype=bool)
        x0, y0 = np.floor(seeds.box[:2]).astype(int)
        x1, y1 = np.ceil(seeds.box[2:]).astype(int)
        inside[max(0, y0):y1, max(0, x0):x1] = True
        labels[~inside] = cv2.GC_BGD
    _discs(labels, seeds.positive, max(2, int(POSITIVE_RADIUS * side)), cv2.GC_FGD)
    _discs(labels, seeds.negative, max(2, int(NEGATIVE_RADIUS * side)), cv2.GC_BGD)
    return labels


def segment(grid_rgb: np.ndarray, seeds: Seeds, iterations: int) -> np.ndarray:
    """The foreground (uint8 [h, w], 1 = object) of GrabCut seeded by `seeds` on the
    downscaled image. Deterministic: OpenCV's RNG (GrabCut's k-means) is reseeded."""
    h, w = grid_rgb.shape[:2]
    labels = initial_labels((h, w), seeds)
    fg_seen = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).any()
    bg_seen = ((labels == cv2.GC_BGD) | (labels == cv2.GC_PR_BGD)).any()
    if fg_seen and bg_seen:  # GrabCut needs a sample of each
        cv2.setRNGSeed(0)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        # A degenerate colour sample (e.g. a one-colour image) fails: the seeds stand.
        with contextlib.suppress(cv2.error):
            cv2.grabCut(np.ascontiguousarray(grid_rgb[..., ::-1]), labels, None,  # type: ignore[call-overload]
                        bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    fg = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)
    return _follow_clicks(grid_rgb, fg, seeds)


def _follow_clicks(grid_rgb: np.ndarray, fg: np.ndarray, seeds: Seeds) -> np.ndarray:
    """The foreground regions holding a positive click, minus the region of each negative
    click: the foreground pixels colour-connected to it (a flood fill within
    NEGATIVE_TOLERANCE of its colour), unless that region holds a positive click."""
    h, w = fg.shape
    fg = fg.copy()
    positive = [(min(w - 1, int(x)), min(h - 1, int(y))) for x, y in seeds.positive]
    for x, y in seeds.negative:
        # floodFill's mask blocks where it is non-zero and is 2 px larger than the image.
        region = np.pad(1 - fg, 1, constant_values=1)
        seed = (min(w - 1, int(x)), min(h - 1, int(y)))
        region[seed[1] + 1, seed[0] + 1] = 0  # the click itself was made background by its disc
        # (MASK_ONLY leaves the image as is, but OpenCV wants a writable one: the grid is shared.)
        tol = (NEGATIVE_TOLERANCE,) * 3
        cv2.floodFill(grid_rgb.copy(), region, seed, (0, 0, 0), tol, tol,  # type: ignore[call-overload]
                      4 | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (2 << 8))
        filled = region[1:-1, 1:-1] == 2
        if not any(filled[py, px] for px, py in positive):
            fg[filled] = 0
    if not positive:
        return fg
    _, regions = cv2.connectedComponents(fg, connectivity=8)
    clicked = {int(regions[py, px]) for px, py in positive} - {0}
    return np.isin(regions, sorted(clicked)).astype(np.uint8)
