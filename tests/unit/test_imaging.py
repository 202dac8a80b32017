import io

import numpy as np
import pytest
from PIL import Image

from prelabel.core.errors import InvalidArgument
from services.common.imaging import decode_image, to_rgb, used_range_to_8bit
from tests.photos import encode, photo
from tests.reliability import corpus

LIMITS = dict(max_bytes=5_000_000, max_pixels=20_000_000)


def decode(data, **kw):
    return decode_image(data, **{**LIMITS, **kw})


@pytest.mark.parametrize("data,reason", [
    (b"", "empty"),
    (b"hello, I am text pretending to be a JPEG", "not a decodable image"),
    (encode(Image.new("RGB", (64, 64)), "JPEG")[:100], "corrupt"),
    (encode(Image.new("RGB", (64, 64)), "TIFF"), "not a decodable image"),
])
def test_decode_image_raises_invalid_argument_with_reason_when_bad_bytes(data, reason):
    with pytest.raises(InvalidArgument) as err:
        decode(data)
    assert err.value.field == "image.data"
    assert reason in err.value.reason


def test_decode_image_scales_from_full_range_when_16_bit_greyscale_is_flat():
    values = np.full((8, 8), 0xAB12, dtype=np.uint16)
    out = decode(encode(Image.fromarray(values), "PNG"))
    assert np.asarray(out.image)[0, 0].tolist() == [round(0xAB12 * 255 / 65535)] * 3


@pytest.mark.parametrize("top", [255, 4095, 65535], ids=["8 bit in 16", "12 bit", "16 bit"])
def test_decode_image_maps_used_range_to_8_bits_when_16_bit_greyscale(top):
    values = np.linspace(0, top, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    grey = np.asarray(decode(encode(Image.fromarray(values), "PNG")).image)[..., 0]
    assert grey.min() == 0 and grey.max() == 255
    expected = np.rint(values.astype(np.float64) * 255 / top)
    assert np.abs(grey - expected).max() <= 1


@pytest.mark.parametrize("values", [
    np.linspace(-1000, 3000, 64 * 64, dtype=np.float32).reshape(64, 64).astype(np.int32),
    np.linspace(0.0, 1.0, 64 * 64, dtype=np.float32).reshape(64, 64),
], ids=["32-bit int", "float 0..1"])
def test_used_range_to_8bit_spans_0_to_255_when_32_bit_int_or_float(values):
    image = Image.fromarray(values)
    assert image.mode in ("I", "F")
    grey = np.asarray(to_rgb(image))[..., 0]
    assert grey.min() == 0 and grey.max() == 255
    assert np.all(np.diff(grey[:, 0].astype(int)) >= 0)  # order kept


def test_used_range_to_8bit_leaves_non_finite_out_when_float_has_nan_and_inf():
    values = np.array([[0.0, np.nan, 2.0, np.inf]], dtype=np.float32)
    assert used_range_to_8bit(values).tolist() == [[0, 0, 255, 0]]


def test_decode_image_names_the_bomb_when_png_text_chunk_decompresses_too_large():
    with pytest.raises(InvalidArgument, match="PNG metadata chunk"):
        decode(corpus.png_text_chunk_bomb())


def test_decode_image_names_the_icc_profile_when_png_carries_a_2mb_one():
    with pytest.raises(InvalidArgument, match="ICC colour profile") as caught:
        decode(corpus.png_with_icc_profile(2 << 20))
    assert "text chunks" not in str(caught.value)


def test_decode_image_rejects_from_header_when_pixels_over_cap():
    data = encode(Image.new("L", (5000, 5000)), "PNG")  # small file, 25 MP
    with pytest.raises(InvalidArgument, match="pixels"):
        decode(data, max_pixels=10_000_000)


def test_decode_image_rejects_when_bytes_over_cap():
    with pytest.raises(InvalidArgument, match="bytes"):
        decode(b"\xff" * 101, max_bytes=100)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "1", "I;16"])
def test_decode_image_returns_rgb_when_any_colour_mode(mode):
    image = Image.new(mode, (40, 30))
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = decode(encode(image, fmt))
    assert out.image.mode == "RGB" and (out.width, out.height) == (40, 30)


def test_decode_image_applies_exif_orientation_and_reports_upright_size():
    upright = np.zeros((30, 60, 3), np.uint8)
    upright[:, :10] = 255  # white band on the left
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # 30x60 -> 60x30 stored
    exif = Image.Exif()
    exif[0x0112] = 6  # display: rotate 90 CW, which undoes the stored CCW rotation
    out = decode(encode(stored, "JPEG", exif=exif, quality=95))
    assert (out.width, out.height) == (60, 30)
    pixels = np.asarray(out.image)
    assert pixels[:, :8].mean() > 200 and pixels[:, 20:].mean() < 50


def test_decode_image_decodes_jpeg_at_reduced_scale_when_target_small():
    big = photo("astronaut.png").convert("RGB").resize((2048, 2048))
    out = decode(encode(big, "JPEG"), target_size=(320, 320))
    assert (out.width, out.height) == (2048, 2048)  # source frame kept
    assert 320 <= out.image.width < 2048  # decoded smaller, never below the target


def test_decode_image_keeps_first_frame_when_animated_gif():
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = decode(buf.getvalue())
    assert np.asarray(out.image)[10, 10, 0] > 200
