"""EXIF orientation: the one rule for the frame every pixel coordinate is in, the upright
image (as Pillow's exif_transpose makes it). The services' decoder applies it
(services.common.imaging); ls-backend reads it to turn Label Studio's percentages into
those pixels before it calls the suite."""
from __future__ import annotations

from PIL import Image

ORIENTATION_TAG = 0x0112
#: Orientations whose upright image has the stored image's width and height swapped.
SWAPS_AXES = frozenset({5, 6, 7, 8})


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1..8) when stored as a proper integer, else 1 (upright).
    A tag of another type (ASCII "6", a rational) is ignored rather than half-applied,
    and so is EXIF Pillow cannot parse."""
    try:
        raw = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # malformed EXIF comes in many kinds: the image counts as upright
        return 1
    return raw if type(raw) is int and 1 <= raw <= 8 else 1


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of the upright image, from the opened (not decoded) image."""
    width, height = image.size
    return (height, width) if exif_orientation(image) in SWAPS_AXES else (width, height)
