"""Mask geometry and encoding: paste in source pixels, COCO RLE, polygons."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as coco_mask
from scipy import ndimage

from services.common.masks import BinaryMask, encode_mask, encode_rle, outer_polygons, pixel_span
from tests.mask_oracles import binarize, full_mask, paste_mask, polygon_area, rle_from_full

FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)
EIGHT_CONNECTED = ndimage.generate_binary_structure(2, 2)


@st.composite
def boxed_probabilities(draw):
    """An image size, a box that may cross its border, and a 28x28 probability grid."""
    width = draw(st.integers(1, 80))
    height = draw(st.integers(1, 80))
    x0 = draw(st.floats(-20, width - 0.5))
    y0 = draw(st.floats(-20, height - 0.5))
    x1 = x0 + draw(st.floats(0.6, 90))
    y1 = y0 + draw(st.floats(0.6, 90))
    seed = draw(st.integers(0, 2**32 - 1))
    probs = np.random.default_rng(seed).uniform(0, 1, (28, 28))
    return width, height, (x0, y0, x1, y1), probs


@settings(max_examples=150, deadline=None)
@given(case=boxed_probabilities(), threshold=st.floats(0.05, 0.95))
def test_encode_mask_round_trips_through_pycocotools_when_masks_are_random(case, threshold):
    width, height, box, probs = case
    binary = binarize(paste_mask(probs, box, width, height), threshold)
    encoded = encode_mask(probs, box, width, height, threshold)

    # Compressed RLE goes to pycocotools as is (frPyObjects is for polygons and
    # uncompressed counts).
    rle = {"size": encoded.rle["size"], "counts": encoded.rle["counts"]}
    assert rle["size"] == [height, width]
    assert np.array_equal(coco_mask.decode(rle), full_mask(binary))
    assert int(coco_mask.area(rle)) == encoded.area == binary.area
    # Byte-identical to pycocotools' own encoder (canonical counts).
    assert encoded.rle["counts"] == rle_from_full(full_mask(binary))["counts"]


@settings(max_examples=150, deadline=None)
@given(case=boxed_probabilities(), threshold=st.floats(0.05, 0.95))
def test_paste_mask_stays_inside_its_box_when_box_crosses_the_border(case, threshold):
    width, height, (x0, y0, x1, y1), probs = case
    mask = full_mask(binarize(paste_mask(probs, (x0, y0, x1, y1), width, height), threshold))
    ys, xs = np.nonzero(mask)
    if len(xs):
        # Pixel centres inside the box; pixel extents inside the box rounded outwards.
        assert xs.min() + 0.5 >= x0 and xs.max() + 0.5 <= x1
        assert ys.min() + 0.5 >= y0 and ys.max() + 0.5 <= y1
        assert xs.min() >= np.floor(x0) and xs.max() + 1 <= np.ceil(x1)


def test_paste_mask_fills_exactly_the_box_pixels_when_probabilities_are_one():
    mask = full_mask(binarize(paste_mask(np.ones((28, 28)), (10.2, 5.7, 30.6, 20.4), 40, 30), 0.5))
    expected = np.zeros((30, 40), np.uint8)
    expected[6:20, 10:31] = 1  # centres 6.5..19.5 and 10.5..30.5 lie in the box
    assert np.array_equal(mask, expected)


def test_paste_mask_keeps_left_and_top_when_the_grid_is_asymmetric():
    probs = np.zeros((28, 28))
    probs[:14, :7] = 1.0  # top half, left quarter of the box
    mask = full_mask(binarize(paste_mask(probs, (0, 0, 80, 40), 100, 50), 0.5))
    ys, xs = np.nonzero(mask)
    assert xs.max() < 80 * 7 / 28 + 2 and ys.max() < 40 * 14 / 28 + 2
    assert xs.min() == 0 and ys.min() == 0


def test_paste_mask_is_empty_when_the_box_covers_no_pixel_centre():
    pasted = paste_mask(np.ones((28, 28)), (3.6, 3.6, 4.4, 4.4), 10, 10)
    assert pasted.probs.size == 0
    assert encode_mask(np.ones((28, 28)), (3.6, 3.6, 4.4, 4.4), 10, 10, 0.5).area == 0


def test_pixel_span_counts_pixels_whose_centres_lie_in_the_interval_when_ends_are_on_centres():
    assert pixel_span(0.5, 2.5, 10) == (0, 3)
    assert pixel_span(-5, 100, 10) == (0, 10)
    assert pixel_span(0.6, 1.4, 10) == (1, 1)


def test_encode_mask_reports_mean_probability_inside_the_mask_when_probabilities_vary():
    probs = np.full((28, 28), 0.2)
    probs[:, 14:] = 0.9
    encoded = encode_mask(probs, (0, 0, 28, 28), 28, 28, 0.5)
    assert encoded.area == 28 * 14
    assert encoded.quality == pytest.approx(0.9, abs=1e-6)
    assert encode_mask(np.zeros((28, 28)), (0, 0, 28, 28), 28, 28, 0.5).quality == 0.0


def test_encode_rle_is_canonical_when_the_crop_spans_the_full_height():
    mask = BinaryMask(np.ones((5, 3), bool), x0=1, y0=0, width=6, height=5)
    assert encode_rle(mask)["counts"] == rle_from_full(full_mask(mask))["counts"]
    corner = BinaryMask(np.ones((2, 2), bool), x0=4, y0=3, width=6, height=5)  # ends on the last pixel
    assert encode_rle(corner)["counts"] == rle_from_full(full_mask(corner))["counts"]


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), density=st.floats(0.2, 0.8))
def test_outer_polygons_enclose_each_component_and_its_holes_when_masks_are_random(seed, density):
    crop = np.random.default_rng(seed).uniform(0, 1, (12, 15)) < density
    labels, count = ndimage.label(crop, structure=FOUR_CONNECTED)
    polygons = outer_polygons(BinaryMask(crop, x0=3, y0=2, width=20, height=16))
    assert len(polygons) == count
    for k in range(1, count + 1):
        component = labels == k
        (polygon,) = outer_polygons(BinaryMask(component, x0=3, y0=2, width=20, height=16))
        # The outer boundary of a 4-connected component encloses exactly the component
        # and the background it cuts off from the outside (8-connected background).
        filled = ndimage.binary_fill_holes(component, structure=EIGHT_CONNECTED)
        assert polygon_area(polygon) == filled.sum()
        xs, ys = np.asarray(polygon[0::2]) - 3, np.asarray(polygon[1::2]) - 2
        cols, rows = np.nonzero(component.T)
        assert xs.min() == cols.min() and xs.max() == cols.max() + 1
        assert ys.min() == rows.min() and ys.max() == rows.max() + 1


def test_outer_polygons_rasterise_back_to_the_mask_through_pycocotools_when_shapes_are_simple():
    mask = np.zeros((12, 14), np.uint8)
    mask[2:9, 3:11] = 1
    mask[5:11, 1:4] = 1  # an L-shape
    mask[0, 13] = 1  # a single pixel in a corner
    polygons = outer_polygons(BinaryMask(mask.astype(bool), 0, 0, 14, 12))
    assert len(polygons) == 2
    rasterised = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(polygons, 12, 14)))
    assert np.array_equal(rasterised, mask)


def test_encode_mask_returns_polygons_only_when_asked():
    probs = np.ones((28, 28))
    assert encode_mask(probs, (2, 2, 9, 9), 12, 12, 0.5).polygons == []
    (polygon,) = encode_mask(probs, (2, 2, 9, 9), 12, 12, 0.5, polygons=True).polygons
    assert polygon == [2.0, 2.0, 9.0, 2.0, 9.0, 9.0, 2.0, 9.0]
