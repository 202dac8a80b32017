"""Real photographs (scikit-image ships them offline) and the JPEGs the bench sends."""
from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image

PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png")
JPEG_QUALITY = 90
BIG_TARGET_BYTES = 1_000_000  # "about 1 MB"


@dataclass(frozen=True)
class Photo:
    name: str
    data: bytes
    width: int
    height: int

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


def skimage_data() -> Path:
    """skimage/data, found without importing scikit-image (its compiled parts need not
    match the numpy in use)."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-image is not installed: its data/ folder has the bench photos")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _encode(image: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _photo(name: str, image: Image.Image, data: bytes) -> Photo:
    return Photo(name=name, data=data, width=image.width, height=image.height)


@cache
def originals() -> tuple[Photo, ...]:
    """The photos as shipped (PNG files, what a caller uploading them sends)."""
    out = []
    for name in PHOTOS:
        data = (skimage_data() / name).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            out.append(Photo(name=name, data=data, width=im.width, height=im.height))
    return tuple(out)


@cache
def jpegs() -> tuple[Photo, ...]:
    """The same photos as JPEG (quality 90): what cameras and annotation tools upload."""
    out = []
    for name in PHOTOS:
        with Image.open(skimage_data() / name) as im:
            rgb = im.convert("RGB")
        out.append(_photo(name.replace(".png", ".jpg"), rgb, _encode(rgb, quality=JPEG_QUALITY)))
    return tuple(out)


@cache
def big_jpeg(target_bytes: int = BIG_TARGET_BYTES) -> Photo:
    """A ~1 MB JPEG: the three photos side by side, upscaled (bicubic) with a little
    seeded sensor-like noise (sigma 3) and saved at quality 92, the scale fitted to the
    file size. The noise keeps pixels per byte like a camera's (~3-4 MP per MB);
    a smooth upscale would pack ~9 MP into 1 MB and overstate decode cost per MB."""
    import numpy as np

    ims = [Image.open(skimage_data() / n).convert("RGB") for n in PHOTOS]
    h = max(i.height for i in ims)
    widths = [round(i.width * h / i.height) for i in ims]
    strip = Image.new("RGB", (sum(widths), h))
    x = 0
    for im, w in zip(ims, widths, strict=False):
        strip.paste(im.resize((w, h), Image.Resampling.BICUBIC), (x, 0))
        x += w
    scale, best = 2.0, None
    for _ in range(6):  # file size ~ pixel count: rescale by sqrt(target / size)
        im = strip.resize((round(strip.width * scale), round(strip.height * scale)), Image.Resampling.BICUBIC)
        noise = np.random.default_rng(0).normal(0, 3, (im.height, im.width, 3)).round().astype(np.int16)
        im = Image.fromarray(np.clip(np.asarray(im, dtype=np.int16) + noise, 0, 255).astype(np.uint8))
        data = _encode(im, quality=92)
        if best is None or abs(len(data) - target_bytes) < abs(len(best[1]) - target_bytes):
            best = (im, data)
        if abs(len(data) - target_bytes) < 0.03 * target_bytes:
            break
        scale *= (target_bytes / len(data)) ** 0.5
    assert best is not None  # the loop runs at least once, and its first try is kept
    im, data = best
    return _photo(f"big_{im.width}x{im.height}.jpg", im, data)


@cache
def tiny_jpeg() -> Photo:
    """A tiny JPEG (chelsea at 96x64): transport and decode close to nothing."""
    with Image.open(skimage_data() / "chelsea.png") as im:
        small = im.convert("RGB").resize((96, 64), Image.Resampling.BILINEAR)
    return _photo("tiny_96x64.jpg", small, _encode(small, quality=JPEG_QUALITY))
