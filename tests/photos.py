"""Real photographs available offline (scikit-image ships them) and encoding helpers."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

import skimage

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
