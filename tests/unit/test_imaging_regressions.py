"""Regression tests for what fuzzing and the bad-input battery found in
services.common.imaging.decode_image. Each input is built here byte by byte.

Open bugs are `xfail(strict=True)`: when the fix lands the test XPASSes, which fails
the run until the marker is removed, so the regression test stays on guard."""
from __future__ import annotations

import pytest
from PIL import Image

from prelabel.core.errors import InvalidArgument
from services.common.imaging import decode_image
from tests.reliability import corpus

LIMITS = dict(max_bytes=20 * 1024 * 1024, max_pixels=36_000_000)

# 200x100 stored pixels. Orientation 6 means "rotate to get the upright image", which
# would then be 100x200 -- but only when the tag is a proper SHORT. Pillow's
# ImageOps.exif_transpose looks the raw value up in a dict of ints, so an ASCII "6" or a
# RATIONAL 13/2 is ignored by it, while decode_image's own int(...) reads both as 6 and
# swaps the reported width/height. Result: pixels 200x100, reported frame 100x200;
# letterboxing and every returned box use the wrong frame (no error raised).
MALFORMED_ORIENTATION = {
    "ascii_6": corpus.exif_orientation(6, type_code=2),
    "rational_13_over_2": corpus.exif_orientation(13, type_code=5),
}


def stored(fmt: str, exif: bytes) -> bytes:
    return corpus.encode(corpus.sample_photo((200, 100)), fmt, exif=exif)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_decode_image_reports_pixel_frame_when_orientation_tag_is_a_proper_short(fmt):
    decoded = decode_image(stored(fmt, corpus.exif_orientation(6)), **LIMITS)
    assert (decoded.width, decoded.height) == (100, 200)
    assert decoded.image.size == (100, 200)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("kind", list(MALFORMED_ORIENTATION))
def test_decode_image_reports_pixel_frame_when_orientation_tag_has_wrong_type(fmt, kind):
    decoded = decode_image(stored(fmt, MALFORMED_ORIENTATION[kind]), **LIMITS)
    assert decoded.image.size == (decoded.width, decoded.height)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF"])
def test_decode_image_reports_source_format_when_image_is_converted(fmt):
    image = corpus.sample_photo((40, 30))
    data = corpus.encode(image.convert("P") if fmt == "GIF" else image, fmt)
    assert decode_image(data, **LIMITS).format == fmt


def test_decode_image_rejects_before_decoding_when_header_is_over_our_cap_but_under_pillows():
    with pytest.raises(InvalidArgument) as err:
        decode_image(corpus.png_claiming(7000, 7000), **LIMITS)
    assert err.value.field == "image.data"
    assert "7000x7000" in err.value.reason


@pytest.mark.parametrize("data", [corpus.png_claiming(30000, 30000), corpus.gif_claiming(65535, 65535)],
                         ids=["png_30000x30000", "gif_65535x65535"])
def test_decode_image_names_pixel_limit_when_pillow_itself_refuses_a_bomb(data):
    with pytest.raises(InvalidArgument) as err:
        decode_image(data, **LIMITS)
    assert "pixels" in err.value.reason and "corrupt" not in err.value.reason


def test_decode_image_rejects_truncated_png_when_exif_lookup_already_failed_to_load_it():
    # PNG getexif() loads the image to find an eXIf chunk after IDAT; on a truncated file
    # that load fails and is swallowed, so the real load must still raise.
    png = corpus.encode(corpus.sample_photo(), "PNG", exif=corpus.exif_orientation(6))
    with pytest.raises(InvalidArgument):
        decode_image(png[: len(png) * 2 // 3], **LIMITS)


def test_decode_image_uses_canvas_size_when_gif_logical_screen_is_zero():
    # Pillow grows a 0-wide GIF screen to its first frame: a valid 1x16 image.
    decoded = decode_image(corpus.gif_claiming(0, 16), **LIMITS)
    assert decoded.image.size == (decoded.width, decoded.height) == (1, 16)
    assert decoded.image.mode == "RGB"


def test_pillow_is_at_least_10_3_when_webp_is_decoded():
    major, minor = (int(p) for p in Image.__version__.split(".")[:2])
    assert (major, minor) >= (10, 3), "libwebp CVE-2023-4863 and later decoder fixes"
