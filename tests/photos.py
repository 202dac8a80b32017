"""Real photographs available offline (scikit-image ships them) and encoding helpers."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import skimage
from PIL import Image

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"


def photo_path(name: str) -> Path:
    path = SKIMAGE_DATA / name
    if not path.is_file():
        raise FileNotFoundError(f"{name} not in {SKIMAGE_DATA}")
    return path


def photo_bytes(name: str) -> bytes:
    return photo_path(name).read_bytes()


def photo(name: str) -> Image.Image:
    return Image.open(photo_path(name))


def encode(image: Image.Image | np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


# Transform that stores an upright image under EXIF orientation k (the inverse of
# what a viewer applies: ImageOps.exif_transpose).
STORE_AS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def with_orientation(upright: Image.Image, orientation: int, fmt: str = "JPEG") -> bytes:
    """`upright` stored the way a camera would for EXIF `orientation`: applying the
    orientation gives `upright` back."""
    stored = upright if STORE_AS[orientation] is None else upright.transpose(STORE_AS[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
