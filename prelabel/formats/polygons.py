"""Editable polygons of the masks, for the outputs that take one polygon per object (YOLO
segment lines, Label Studio polygons, live or bulk, and the CVAT function's polygons).

The segmentation service traces each mask's outer boundary along pixel edges
(`include_polygons`): exact, but a staircase of 700-1,100 vertices for a person, painful to
edit. The formats take the largest of a mask's polygons and simplify it here with
Douglas-Peucker: every vertex dropped lies within `tolerance` pixels of the simplified
outline, and at most `max_vertices` remain (the tolerance doubles until they do). Thin
parts (a strap, a leg a few pixels wide) can lose more than their width to 1 px, so where
the simplified polygon covers the traced one with IoU under MIN_IOU the tolerance halves
(while the vertex bound allows). A tolerance of 1 px removes the staircase: a person's
700-900 traced vertices become 90-170 on the test photos (tests/unit/test_output_rules.py,
tests/integration/test_cli_bulk.py); 0 keeps the traced polygon as it is. The masks
themselves stay exact RLE in the COCO files and Label Studio brush regions.

Done here, on the client, rather than in the service: `prelabel annotate --polygon-tolerance`
applies without a request field, and the journal keeps the exact polygons.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from pycocotools import mask as mask_utils

#: Default Douglas-Peucker tolerance, pixels (`prelabel annotate --polygon-tolerance`).
DEFAULT_TOLERANCE_PX = 1.0
#: Most vertices of one simplified polygon.
MAX_VERTICES = 200
#: Least IoU of a simplified polygon with the traced one, unless the vertex bound forbids.
MIN_IOU = 0.9
#: Finest tolerance the IoU guard goes down to, pixels.
_FINEST_PX = 0.125


def ring_area(points: Sequence[float]) -> float:
    """Area enclosed by a flattened polygon [x0, y0, x1, y1, ...] (shoelace)."""
    xs, ys = np.asarray(points[0::2], float), np.asarray(points[1::2], float)
    return float(abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))) / 2)


def largest_polygon(polygons: Iterable) -> list[float]:
    """The points of the polygon (messages with `points`) enclosing the largest area; []
    when none has three vertices. YOLO and Label Studio take one polygon per object."""
    best: list[float] = []
    best_area = -1.0
    for poly in polygons:
        pts = list(poly.points)
        if len(pts) < 6:
            continue
        area = ring_area(pts)
        if area > best_area:
            best, best_area = pts, area
    return best


def _douglas_peucker(path: np.ndarray, tolerance: float) -> np.ndarray:
    """Which points of an open path [n, 2] to keep (both ends always)."""
    keep = np.zeros(len(path), bool)
    keep[[0, -1]] = True
    stack = [(0, len(path) - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        chord = path[b] - path[a]
        rel = path[a + 1:b] - path[a]
        length = float(np.hypot(*chord))
        if length == 0.0:
            dist = np.hypot(rel[:, 0], rel[:, 1])
        else:
            dist = np.abs(chord[0] * rel[:, 1] - chord[1] * rel[:, 0]) / length
        i = int(np.argmax(dist))
        if dist[i] > tolerance:
            k = a + 1 + i
            keep[k] = True
            stack += [(a, k), (k, b)]
    return keep


def _simplify_ring(ring: np.ndarray, tolerance: float) -> np.ndarray:
    # A closed ring is two open paths: from vertex 0 to the vertex farthest from it, and back.
    far = int(np.argmax(np.hypot(*(ring - ring[0]).T)))
    if far == 0:
        return ring[:1]
    closed = np.vstack([ring, ring[:1]])
    keep = np.concatenate([_douglas_peucker(closed[:far + 1], tolerance)[:-1],
                           _douglas_peucker(closed[far:], tolerance)[:-1]])
    return ring[keep]


def polygon_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two rings [n, 2] as pycocotools rasterises them (in their joint bounding box)."""
    origin = np.minimum(a.min(axis=0), b.min(axis=0))
    w, h = (int(v) + 2 for v in np.ceil(np.maximum(a.max(axis=0), b.max(axis=0)) - origin))
    rles = [mask_utils.frPyObjects([(r - origin).reshape(-1).tolist()], h, w)[0] for r in (a, b)]
    return float(mask_utils.iou([rles[0]], [rles[1]], [0])[0][0])


def simplify(points: Sequence[float], tolerance: float = DEFAULT_TOLERANCE_PX,
             max_vertices: int = MAX_VERTICES) -> list[float]:
    """A flattened polygon simplified with Douglas-Peucker (see the module docstring); the
    polygon as it is when the tolerance is 0 or simplifying would leave under 3 vertices."""
    if tolerance <= 0 or len(points) < 8:
        return list(points)
    ring = np.asarray(points, float).reshape(-1, 2)
    out = _simplify_ring(ring, tolerance)
    while len(out) > max_vertices:
        tolerance *= 2
        out = _simplify_ring(ring, tolerance)
    while tolerance > _FINEST_PX and (len(out) < 3 or polygon_iou(out, ring) < MIN_IOU):
        finer = _simplify_ring(ring, tolerance / 2)
        if len(finer) > max_vertices:
            break
        tolerance, out = tolerance / 2, finer
    if len(out) < 3:
        return list(points)
    return [float(v) for v in out.reshape(-1)]


def mask_polygon(mask, tolerance: float = DEFAULT_TOLERANCE_PX) -> list[float]:
    """The simplified largest polygon of an InstanceMask ([] when it has none)."""
    return simplify(largest_polygon(mask.polygons), tolerance)
