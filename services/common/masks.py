"""Instance masks in source pixels: paste a model's low-resolution box mask into the
source image, binarise it, and encode it as COCO RLE (and, on request, polygons).

Geometry. A Mask R-CNN mask of M x M probabilities covers its box exactly (RoIAlign
divides the box into M x M bins; bin (i, j) is centred at x_min + (j + 0.5) * w / M).
We evaluate it bilinearly at the centre of every source pixel whose centre lies inside
the box (clamping at the outer bin centres, i.e. edge values extend to the box edge),
so a mask never leaves its box: every mask pixel (u, v) has x_min <= u + 0.5 <= x_max
and y_min <= v + 0.5 <= y_max. Only the box's pixels are ever computed, so the cost is
proportional to the box area, not the image.

Encoding. RLE is COCO's column-major run-length encoding exactly as pycocotools
writes it (`{"size": [h, w], "counts": b"..."}`, compressed counts), built from the
box crop without materialising the full-size mask.

Polygons. Outer boundaries of the 4-connected components, traced along pixel edges
(vertices on pixel corners), so each polygon encloses exactly its component's pixels
(holes are not subtracted). Flattened [x0, y0, x1, y1, ...] as in COCO.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as coco_mask


@dataclass(frozen=True)
class BinaryMask:
    """A binarised mask: `crop[r, c]` is pixel (x0 + c, y0 + r); zero elsewhere."""

    crop: np.ndarray  # bool [rows, cols]
    x0: int
    y0: int
    width: int
    height: int

    @property
    def area(self) -> int:
        return int(self.crop.sum())


@dataclass(frozen=True)
class EncodedMask:
    rle: dict  # {"size": [h, w], "counts": bytes}
    area: int  # mask pixels
    quality: float  # mean probability inside the binarised mask, 0 when empty
    polygons: list[list[float]]


def pixel_span(lo: float, hi: float, size: int) -> tuple[int, int]:
    """[first, last + 1) of the pixels whose centres lie in [lo, hi], within [0, size)."""
    first = max(0, math.ceil(lo - 0.5))
    last = min(size - 1, math.floor(hi - 0.5))
    return first, max(first, last + 1)


def bilinear_weights(first: int, stop: int, lo: float, hi: float, m: int) -> np.ndarray:
    """[stop - first, m] bilinear weights sampling an m-bin grid over [lo, hi] at the
    pixel centres first + 0.5 ... stop - 0.5 (edge bins extend to the box edge)."""
    centres = np.arange(first, stop, dtype=np.float64) + 0.5
    extent = max(hi - lo, 1e-6)
    t = np.clip((centres - lo) / extent * m - 0.5, 0.0, m - 1.0)
    i0 = np.floor(t).astype(np.int64)
    i1 = np.minimum(i0 + 1, m - 1)
    frac = t - i0
    weights = np.zeros((len(centres), m), dtype=np.float64)
    rows = np.arange(len(centres))
    np.add.at(weights, (rows, i0), 1.0 - frac)
    np.add.at(weights, (rows, i1), frac)
    return weights


def encode_rle(mask: BinaryMask) -> dict:
    """COCO compressed RLE of the full-size mask, computed from its crop."""
    h, w = mask.height, mask.width
    rows, cols = mask.crop.shape
    if rows == 0 or cols == 0 or not mask.crop.any():
        counts = [h * w]
    else:
        # Column-major positions where the mask switches on or off. A zero row above
        # and below each crop column keeps the columns' runs apart.
        padded = np.zeros((rows + 2, cols), dtype=np.int8)
        padded[1:-1] = mask.crop
        r, c = np.nonzero(np.diff(padded, axis=0))  # r: first row after the change
        order = np.lexsort((r, c))
        positions = (mask.x0 + c[order]).astype(np.int64) * h + (mask.y0 + r[order])
        # A crop spanning the full height ends one column exactly where the next
        # starts: drop those empty runs so the counts are pycocotools' canonical ones.
        positions, seen = np.unique(positions, return_counts=True)
        positions = positions[seen == 1]
        bounds = np.concatenate(([0], positions, [h * w]))
        counts = np.diff(bounds).tolist()
        if counts[-1] == 0:  # the mask reaches the last pixel: no trailing empty run
            counts.pop()
    rle = coco_mask.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [h, w], "counts": rle["counts"]}


# Directions as (dx, dy) with y pointing down: east, south, west, north.
_EAST, _SOUTH, _WEST, _NORTH = (1, 0), (0, 1), (-1, 0), (0, -1)
# For a walk that keeps the mask on its right: the pixels (column, row offsets from
# the corner reached) ahead-left and ahead-right of each direction.
_AHEAD = {
    _EAST: ((0, -1), (0, 0)),
    _SOUTH: ((0, 0), (-1, 0)),
    _WEST: ((-1, 0), (-1, -1)),
    _NORTH: ((-1, -1), (0, -1)),
}


def _right(d):
    return (-d[1], d[0])


def _left(d):
    return (d[1], -d[0])


def _component_starts(crop: np.ndarray, budget=None) -> list[tuple[int, int]]:
    """(row, col) of the top-left pixel of every 4-connected component (union-find
    over the horizontal runs of each row)."""
    padded = np.zeros((crop.shape[0], crop.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = crop
    changes = np.diff(padded, axis=1)
    runs: list[tuple[int, int, int]] = []  # (row, start, stop)
    parent: list[int] = []

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    previous: list[int] = []
    for row in range(crop.shape[0]):
        if budget is not None and row % STRIP_ROWS == 0:
            budget.check()
        starts = np.flatnonzero(changes[row] == 1)
        stops = np.flatnonzero(changes[row] == -1)
        current = []
        for s, e in zip(starts.tolist(), stops.tolist(), strict=False):
            index = len(runs)
            runs.append((row, s, e))
            parent.append(index)
            current.append(index)
        # Merge with overlapping runs of the previous row (4-connectivity).
        i = j = 0
        while i < len(previous) and j < len(current):
            _, ps, pe = runs[previous[i]]
            _, cs, ce = runs[current[j]]
            if ps < ce and cs < pe:
                a, b = find(previous[i]), find(current[j])
                if a != b:
                    parent[max(a, b)] = min(a, b)
            if pe < ce:
                i += 1
            else:
                j += 1
        previous = current
    firsts: dict[int, tuple[int, int]] = {}
    for index, (row, start, _) in enumerate(runs):  # raster order: first run wins
        firsts.setdefault(find(index), (row, start))
    return list(firsts.values())


#: Corners traced between two budget checks.
TRACE_CHECK_EVERY = 4096


def _trace(crop: np.ndarray, row: int, col: int, budget=None) -> list[tuple[int, int]]:
    """Corners (x, y) of the outer boundary of the component whose top-left pixel
    is (row, col), walking along pixel edges with the component on the right."""
    h, w = crop.shape

    def on(x: int, y: int) -> bool:
        return 0 <= x < w and 0 <= y < h and bool(crop[y, x])

    x, y, d = col, row, _EAST
    corners = [(x, y)]
    while True:
        x, y = x + d[0], y + d[1]
        if (x, y) == (col, row):
            break
        (lx, ly), (rx, ry) = _AHEAD[d]
        if not on(x + rx, y + ry):
            d = _right(d)
        elif on(x + lx, y + ly):
            d = _left(d)
        else:
            continue
        corners.append((x, y))
        if budget is not None and len(corners) % TRACE_CHECK_EVERY == 0:
            budget.spend_vertices(TRACE_CHECK_EVERY)
            budget.check()
    if budget is not None:
        budget.spend_vertices(len(corners) % TRACE_CHECK_EVERY)
    return corners


def outer_polygons(mask: BinaryMask, budget=None) -> list[list[float]]:
    """One flattened polygon per 4-connected component, in source pixels. With a
    `budget`, every vertex is spent from it and tracing stops when it runs out."""
    crop = np.asarray(mask.crop, dtype=bool)
    polygons = []
    for row, col in _component_starts(crop, budget):
        corners = _trace(crop, row, col, budget)
        flat: list[float] = []
        for x, y in corners:
            flat += [float(x + mask.x0), float(y + mask.y0)]
        polygons.append(flat)
    return polygons


#: Rows pasted at a time: bounds the float temporaries of a large box (a 6000-pixel-wide
#: box costs 256 x 6000 x 8 bytes = 12 MB per strip, not 288 MB for the whole crop) and
#: lets a WorkBudget stop the work between strips.
STRIP_ROWS = 256


def paste_binary(probs: np.ndarray, box, width: int, height: int, threshold: float,
                 budget=None) -> tuple[BinaryMask, float]:
    """Paste an [M, M] (or [Mh, Mw]) probability grid covering `box` (x_min, y_min,
    x_max, y_max in source pixels, possibly reaching outside the image) into the source
    image of `width` x `height` and binarise it at `threshold`, strip by strip, with the
    sum of the probabilities inside the mask; `budget.check()` runs between strips."""
    probs = np.asarray(probs, dtype=np.float64)
    x_min, y_min, x_max, y_max = (float(v) for v in box)
    c0, c1 = pixel_span(x_min, x_max, width)
    r0, r1 = pixel_span(y_min, y_max, height)
    if c1 <= c0 or r1 <= r0:
        return BinaryMask(np.zeros((0, 0), bool), c0, r0, width, height), 0.0
    wy = bilinear_weights(r0, r1, y_min, y_max, probs.shape[0])
    wx_t = bilinear_weights(c0, c1, x_min, x_max, probs.shape[1]).T
    crop = np.empty((r1 - r0, c1 - c0), dtype=bool)
    total = 0.0
    for a in range(0, r1 - r0, STRIP_ROWS):
        if budget is not None:
            budget.check()
        strip = ((wy[a:a + STRIP_ROWS] @ probs) @ wx_t).astype(np.float32)
        on = strip >= threshold
        crop[a:a + STRIP_ROWS] = on
        total += float(strip[on].sum(dtype=np.float64))
    return BinaryMask(crop, c0, r0, width, height), total


def encode_mask(probs: np.ndarray, box, width: int, height: int, threshold: float,
                polygons: bool = False, budget=None) -> EncodedMask:
    """Paste, binarise and encode one mask (the whole per-instance pipeline). With a
    `budget` (services.common.work.WorkBudget) the work stops at its deadline or
    cancellation, and polygon vertices count against it."""
    binary, prob_sum = paste_binary(probs, box, width, height, threshold, budget)
    area = binary.area
    quality = prob_sum / area if area else 0.0
    if budget is not None:
        budget.check()
    return EncodedMask(
        rle=encode_rle(binary),
        area=area,
        quality=quality,
        polygons=outer_polygons(binary, budget) if polygons and area else [],
    )
