import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from services.common.letterbox import (
    boxes_to_model,
    boxes_to_source,
    letterbox_for,
    letterbox_image,
    points_to_model,
    points_to_source,
)

sizes = st.integers(min_value=1, max_value=5000)
model_sizes = st.sampled_from([64, 320, 512, 640, 800])


@settings(max_examples=300, deadline=None)
@given(sizes, sizes, model_sizes, model_sizes)
def test_letterbox_for_fits_content_inside_input_when_any_size(src_w, src_h, dst_w, dst_h):
    lb = letterbox_for(src_w, src_h, dst_w, dst_h)
    assert 1 <= lb.new_w <= dst_w and 1 <= lb.new_h <= dst_h
    assert lb.pad_x >= 0 and lb.pad_x + lb.new_w <= dst_w
    assert lb.pad_y >= 0 and lb.pad_y + lb.new_h <= dst_h
    # one side fills the input (up to rounding of the other)
    assert lb.new_w == dst_w or lb.new_h == dst_h or min(lb.new_w, lb.new_h) == 1


@settings(max_examples=300, deadline=None)
@given(sizes, sizes, model_sizes, st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1))
def test_boxes_round_trip_source_model_source_when_box_inside_image(src_w, src_h, dst, a, b, c, d):
    lb = letterbox_for(src_w, src_h, dst, dst)
    x0, x1 = sorted((a * src_w, b * src_w))
    y0, y1 = sorted((c * src_h, d * src_h))
    box = np.array([[x0, y0, x1, y1]])
    back = boxes_to_source(boxes_to_model(box, lb), lb)
    np.testing.assert_allclose(back, box, atol=1e-6 * max(src_w, src_h) + 1e-9)


@settings(max_examples=200, deadline=None)
@given(sizes, sizes, model_sizes)
def test_points_to_source_maps_content_corners_to_image_corners_when_letterboxed(src_w, src_h, dst):
    lb = letterbox_for(src_w, src_h, dst, dst)
    corners = np.array([[lb.pad_x, lb.pad_y], [lb.pad_x + lb.new_w, lb.pad_y + lb.new_h]], dtype=float)
    np.testing.assert_allclose(points_to_source(corners, lb), [[0, 0], [src_w, src_h]], atol=1e-6)
    np.testing.assert_allclose(points_to_model(points_to_source(corners, lb), lb), corners, atol=1e-6)


def test_boxes_to_source_clips_to_image_when_box_reaches_into_padding():
    lb = letterbox_for(640, 320, 320, 320)  # content 320x160, pad_y 80
    out = boxes_to_source(np.array([[-10, 0, 330, 320]]), lb)
    np.testing.assert_allclose(out, [[0, 0, 640, 320]])


def test_letterbox_image_places_content_centred_with_zero_padding_when_wide_image():
    image = Image.new("RGB", (400, 100), (255, 0, 0))
    lb = letterbox_for(400, 100, 320, 320)
    out = letterbox_image(image, lb)
    assert out.shape == (320, 320, 3)
    assert (lb.new_w, lb.new_h, lb.pad_x, lb.pad_y) == (320, 80, 0, 120)
    assert out[:120].max() == 0 and out[200:].max() == 0
    assert (out[120:200, :, 0] == 255).all()


def test_letterbox_image_accepts_reduced_decode_when_image_smaller_than_source():
    # A reduced-scale decode spans the whole source: the geometry only uses source size.
    lb = letterbox_for(1000, 500, 320, 320)
    small = Image.new("RGB", (250, 125), (0, 255, 0))
    out = letterbox_image(small, lb)
    assert (out[lb.pad_y : lb.pad_y + lb.new_h, :, 1] == 255).all()


def _stripes(width: int, height: int) -> Image.Image:
    """One-pixel black and white columns: what a resize without averaging aliases."""
    row = np.where(np.arange(width) % 2 == 0, 255, 0).astype(np.uint8)
    return Image.fromarray(np.repeat(np.tile(row, (height, 1))[..., None], 3, axis=2))


def test_letterbox_image_averages_fine_detail_when_shrinking_below_half():
    lb = letterbox_for(1600, 1600, 320, 320)  # 5x down: bilinear picks every 5th column
    content = letterbox_image(_stripes(1600, 1600), lb)[lb.pad_y : lb.pad_y + lb.new_h]
    assert abs(float(content.mean()) - 127.5) < 10
    # Averages of 5 columns are 2/5 or 3/5 white (std 25.5); picked columns give 0 or 255.
    assert content.std() < 40


def test_letterbox_image_keeps_smooth_content_when_shrinking_mildly():
    # A horizontal ramp resized 512 -> 416 stays a ramp (bilinear interpolates between columns).
    ramp = np.repeat(np.tile(np.linspace(0, 255, 512), (512, 1))[..., None], 3, axis=2).astype(np.uint8)
    lb = letterbox_for(512, 512, 416, 416)
    out = letterbox_image(Image.fromarray(ramp), lb)
    expected = np.linspace(0, 255, 416)
    assert np.abs(out[200, :, 0].astype(float) - expected).max() < 2.5
