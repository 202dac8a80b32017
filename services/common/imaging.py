"""Decode and validate caller images before anything reaches Triton.

Checks run cheapest first: size in bytes, format allow-list and pixel count from the
header (no pixel is decoded for a bomb), then decoding. JPEGs are decoded at reduced
scale (libjpeg DCT scaling via Pillow's draft) when the model input is smaller, which
is invisible to the geometry: callers get the source size, and letterboxing maps to it.
"""
from __future__ import annotations

import io
import struct
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, PngImagePlugin, UnidentifiedImageError

from prelabel.core.errors import DeadlineExceeded, InvalidArgument
from prelabel.core.orientation import SWAPS_AXES, exif_orientation

#: Formats accepted; anything else (TIFF, EPS, JPEG 2000, SVG, FITS...) is refused
#: before a decoder for it is ever run (no Ghostscript, no exotic codecs).
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")

#: Exceptions Pillow raises on malformed data (the ones its own fuzzers accept).
DECODE_ERRORS = (
    OSError, ValueError, EOFError, SyntaxError, TypeError, IndexError, KeyError,
    struct.error, ZeroDivisionError, Image.DecompressionBombError,
)

# What makes a stored image upright for each EXIF orientation (as Pillow's exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image. `image` may be smaller than the source when it was
    decoded at reduced scale; `width`/`height` are always the source size (after EXIF
    orientation), the frame every coordinate returned to callers is in."""

    image: Image.Image
    width: int
    height: int
    format: str


#: Bytes Pillow's decoders read at a time when a decode can be stopped: a stop takes
#: effect within one block (a flat PNG inflates 16 KB to at most ~16 MB of pixels).
STOPPABLE_BLOCK = 16 * 1024


class _StoppableBytes(io.BytesIO):
    """The image's bytes as Pillow reads them, block by block: a read after `stop` is set
    raises, so a cancelled call stops decoding within a block (a worker thread cannot be
    interrupted otherwise)."""

    def __init__(self, data: bytes, stop: threading.Event):
        super().__init__(data)
        self.stop = stop

    def read(self, size: int | None = -1) -> bytes:
        if self.stop.is_set():
            raise DeadlineExceeded("call cancelled; image decoding stopped")
        return super().read(size)


def open_image(data: bytes, *, max_bytes: int, max_pixels: int, field: str = "image.data",
               stop: threading.Event | None = None) -> Image.Image:
    """The checks that need only the header: size in bytes, format allow-list, pixel
    count. Returns the opened (not yet decoded) image or raises InvalidArgument. With
    `stop`, decoding it raises DeadlineExceeded once `stop` is set."""
    if not data:
        raise InvalidArgument(field, "image is empty")
    if len(data) > max_bytes:
        raise InvalidArgument(field, f"image is {len(data)} bytes; the limit is {max_bytes}")
    try:
        image = Image.open(io.BytesIO(data) if stop is None else _StoppableBytes(data, stop),
                           formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError:
        raise InvalidArgument(field, "image has too many pixels (decompression bomb)") from None
    except UnidentifiedImageError:
        raise InvalidArgument(
            field, f"not a decodable image; accepted formats: {', '.join(ALLOWED_FORMATS)}"
        ) from None
    except ValueError as exc:
        reason = _metadata_bomb_reason(exc)
        if reason is not None:
            raise InvalidArgument(field, reason) from None
        raise InvalidArgument(field, f"corrupt image header ({type(exc).__name__})") from None
    except DECODE_ERRORS as exc:
        raise InvalidArgument(field, f"corrupt image header ({type(exc).__name__})") from None

    raw_w, raw_h = image.size
    if raw_w <= 0 or raw_h <= 0:
        raise InvalidArgument(field, f"image has degenerate size {raw_w}x{raw_h}")
    if raw_w * raw_h > max_pixels:
        raise InvalidArgument(
            field, f"image is {raw_w}x{raw_h} = {raw_w * raw_h} pixels; the limit is {max_pixels}"
        )
    return image


def _metadata_bomb_reason(exc: ValueError) -> str | None:
    """Why Pillow's PngImagePlugin refused the PNG's metadata, None for another error. It
    caps each compressed chunk -- text (zTXt, iTXt) and the ICC colour profile (iCCP)
    alike -- at MAX_TEXT_CHUNK decompressed, and all text together at MAX_TEXT_MEMORY."""
    text = str(exc)
    if text.startswith("Decompressed data too large"):
        return (f"a PNG metadata chunk (text or ICC colour profile) decompresses to more than "
                f"{PngImagePlugin.MAX_TEXT_CHUNK} bytes")
    if text.startswith("Too much memory used in text chunks"):
        return f"the PNG's text chunks decompress to more than {PngImagePlugin.MAX_TEXT_MEMORY} bytes in all"
    return None


def decode_image(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    target_size: tuple[int, int] | None = None,
    field: str = "image.data",
    stop: threading.Event | None = None,
) -> DecodedImage:
    """Decode `data` into an upright RGB image or raise InvalidArgument(field, reason);
    DeadlineExceeded soon after `stop` is set."""
    image = open_image(data, max_bytes=max_bytes, max_pixels=max_pixels, field=field, stop=stop)
    if stop is not None and isinstance(image, ImageFile.ImageFile):
        image.decodermaxblock = STOPPABLE_BLOCK
    raw_w, raw_h = image.size
    fmt = str(image.format or "")
    orientation = exif_orientation(image)
    width, height = (raw_h, raw_w) if orientation in SWAPS_AXES else (raw_w, raw_h)

    try:
        if target_size is not None and fmt == "JPEG":
            _draft_for(image, width, height, target_size, swapped=orientation in SWAPS_AXES)
        image.load()
        # Apply the orientation we read ourselves (not ImageOps.exif_transpose, which
        # may disagree on malformed tags), so pixels and reported size always match.
        if orientation in _TRANSPOSE:
            image = image.transpose(_TRANSPOSE[orientation])
        image = to_rgb(image)
    except DECODE_ERRORS as exc:
        raise InvalidArgument(field, f"corrupt or truncated image ({type(exc).__name__}: {exc})") from None
    return DecodedImage(image=image, width=width, height=height, format=fmt)


def _draft_for(image: Image.Image, width: int, height: int, target: tuple[int, int], swapped: bool) -> None:
    """Ask libjpeg for the smallest DCT scale still at least as large as the letterboxed size."""
    scale = min(target[0] / width, target[1] / height)
    if scale >= 1:
        return
    need_w, need_h = max(1, int(width * scale) + 1), max(1, int(height * scale) + 1)
    if swapped:
        need_w, need_h = need_h, need_w
    image.draft(image.mode, (need_w, need_h))


HIGH_BIT_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def used_range_to_8bit(values: np.ndarray) -> np.ndarray:
    """The rule for high-bit-depth greyscale: the image's used range [min, max] maps
    linearly onto [0, 255] (round to nearest), so 12-bit sensor data (0..4095) or 8-bit
    values stored in 16 bits keep their contrast instead of turning black. Non-finite
    floats are left out of the range and become 0. A flat image (min == max) has no
    range: 16-bit values scale from the full 0..65535, others are clipped to [0, 255]."""
    if values.dtype.kind == "u" and values.itemsize <= 2:  # 16-bit: one 64K lookup table
        lo, hi = int(values.min()), int(values.max())
        table = np.arange(65536, dtype=np.float32)
        table = (table - lo) * (255.0 / (hi - lo)) if hi > lo else table * (255.0 / 65535.0)
        return np.rint(np.clip(table, 0, 255)).astype(np.uint8)[values]
    v = values.astype(np.float32)
    finite = np.isfinite(v)
    if not finite.all():
        v[~finite] = 0.0
    if not finite.any():
        return np.zeros(v.shape, np.uint8)
    low, high = float(v[finite].min()), float(v[finite].max())
    if high > low:
        v -= low
        v *= 255.0 / (high - low)
    np.clip(v, 0, 255, out=v)
    if not finite.all():
        v[~finite] = 0.0
    return np.rint(v).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB. Transparent pixels are composited on white
    (what annotators see in their tools); 16-bit, 32-bit integer and float greyscale
    are mapped to 8 bits by `used_range_to_8bit`."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in HIGH_BIT_DEPTH_MODES:
        image = Image.fromarray(used_range_to_8bit(np.asarray(image)), "L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
