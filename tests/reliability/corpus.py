"""Hostile and unusual image inputs, generated here with a fixed seed (Pillow's own test
images are not available offline). Shared by the bad-input battery, the bomb checks,
the imaging regression tests and `fuzz/make_corpus.py` (the fuzzer's seed corpus).

Every builder returns plain bytes; nothing is read from disk except scikit-image's
bundled photographs.
"""
from __future__ import annotations

import io
import os
import random
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, features

SEED = 20240611
"""Fixed seed of every random corpus: the same bytes on every run and machine."""


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def sample_photo(size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A real photograph (scikit-image's astronaut), resized: realistic entropy for
    the codecs, small enough to keep the corpus tiny."""
    from tests.photos import photo

    return photo("astronaut.png").convert("RGB").resize(size, Image.BILINEAR)


# --------------------------------------------------------------------- header writers
def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int, *, color_type: int = 2, bit_depth: int = 8,
                 idat: bool = True) -> bytes:
    """A valid-looking PNG whose IHDR claims `width`x`height` but that carries only a
    few hundred bytes of pixel data: a decompression bomb as far as the header goes."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    body = png_chunk(b"IHDR", ihdr)
    if idat:
        body += png_chunk(b"IDAT", zlib.compress(b"\x00" * 4096, 9))
    return b"\x89PNG\r\n\x1a\n" + body + png_chunk(b"IEND", b"")


def png_deflate_bomb(width: int = 8000, height: int = 8000) -> bytes:
    """A real deflate bomb: a greyscale PNG whose IDAT inflates to (width+1)*height zero
    bytes (64 MB by default, 3x that once converted to RGB) from ~60 KB on the wire.
    Over our pixel cap, under Pillow's own bomb limit: only our header check stops it."""
    total = (width + 1) * height  # a filter byte per row, then the pixels
    comp = zlib.compressobj(9)
    block = bytes(1 << 20)
    parts = [comp.compress(block) for _ in range(total >> 20)]
    parts.append(comp.compress(bytes(total & ((1 << 20) - 1))))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", b"".join(parts)) + png_chunk(b"IEND", b""))


def png_text_chunk_bomb(inflated_bytes: int = 8 << 20) -> bytes:
    """An 8x8 PNG with a zTXt chunk that inflates to `inflated_bytes` (over Pillow's
    MAX_TEXT_CHUNK) from a few KB: a bomb in the metadata, not the pixels."""
    png = encode(Image.new("RGB", (8, 8)), "PNG")
    ztxt = png_chunk(b"zTXt", b"comment\0\0" + zlib.compress(bytes(inflated_bytes), 9))
    return png[:33] + ztxt + png[33:]  # right after IHDR


def png_with_icc_profile(profile_bytes: int = 2 << 20) -> bytes:
    """An 8x8 PNG whose iCCP chunk (the ICC colour profile) inflates to `profile_bytes`."""
    png = encode(Image.new("RGB", (8, 8)), "PNG")
    iccp = png_chunk(b"iCCP", b"profile\0\0" + zlib.compress(os.urandom(profile_bytes), 1))
    return png[:33] + iccp + png[33:]  # right after IHDR


def gif_claiming(width: int, height: int) -> bytes:
    """GIF89a with a logical screen of `width`x`height` and one 1x1 frame."""
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + screen + frame + b";"


def bmp_claiming(width: int, height: int, bpp: int = 24) -> bytes:
    """A BMP header (BITMAPINFOHEADER) claiming `width`x`height` with 16 bytes of pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bpp, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 16, 0, 0, 54) + info + b"\x00" * 16


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 frame header is rewritten to claim `width`x`height`."""
    data = encode(Image.new("RGB", (8, 8), (90, 120, 150)), "JPEG")
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


def webp_claiming(width: int, height: int) -> bytes:
    """A lossless WebP (VP8L) whose 14-bit width/height fields are rewritten."""
    data = bytearray(encode(Image.new("RGB", (8, 8), (10, 20, 30)), "WEBP", lossless=True))
    at = data.index(b"VP8L") + 8  # chunk tag + size
    assert data[at] == 0x2F, "VP8L signature byte"
    bits = int.from_bytes(data[at + 1 : at + 5], "little")
    bits = (bits & ~((1 << 28) - 1)) | ((width - 1) & 0x3FFF) | (((height - 1) & 0x3FFF) << 14)
    data[at + 1 : at + 5] = bits.to_bytes(4, "little")
    return bytes(data)


def exif_orientation(value: int, type_code: int = 3) -> bytes:
    """Raw EXIF (big-endian TIFF, one IFD entry) holding Orientation with the given TIFF
    type: 3 SHORT is the standard one; 2 ASCII, 5 RATIONAL... are malformed but seen."""
    if type_code == 3:
        entry = struct.pack(">HHIHH", 0x0112, 3, 1, value, 0)
        extra = b""
    elif type_code == 2:  # ASCII "6\0"
        entry = struct.pack(">HHI", 0x0112, 2, 2) + f"{value}".encode()[:1] + b"\x00\x00\x00"
        extra = b""
    elif type_code == 5:  # RATIONAL value/2 stored at offset 26
        entry = struct.pack(">HHII", 0x0112, 5, 1, 26)
        extra = struct.pack(">II", value, 2)
    else:
        raise ValueError(type_code)
    ifd = struct.pack(">H", 1) + entry + struct.pack(">I", 0)
    return b"Exif\x00\x00" + b"MM\x00*" + struct.pack(">I", 8) + ifd + extra


# --------------------------------------------------------------------------- corpora
def truncated(data: bytes, fractions=(0.05, 0.3, 0.6, 0.9)) -> list[bytes]:
    return [data[: max(1, int(len(data) * f))] for f in fractions]


def malformed_cases() -> list[Case]:
    """Inputs that must be rejected with INVALID_ARGUMENT on image.data, every time."""
    rng = random.Random(SEED)
    photo = sample_photo()
    png, jpg = encode(photo, "PNG"), encode(photo, "JPEG", quality=90)
    cases = [
        Case("empty", b""),
        Case("one_byte", b"\x00"),
        Case("garbage_64", rng.randbytes(64)),
        Case("garbage_4k", rng.randbytes(4096)),
        Case("zeros_4k", bytes(4096)),
        Case("text_as_image", b"This is not an image, it is a note about one.\n" * 20),
        Case("html_as_image", b"<!DOCTYPE html><html><body><img src=x></body></html>"),
        Case("json_as_image", b'{"image": "cat.jpg", "width": 640, "height": 480}'),
        Case("png_signature_only", png[:8]),
        Case("png_header_only", png_claiming(64, 64, idat=False)),
        Case("png_no_iend_no_idat", png[:33]),
        Case("jpeg_soi_only", b"\xff\xd8\xff"),
        Case("jpeg_headers_only", jpg[: jpg.index(b"\xff\xda")]),
        Case("gif_signature_only", b"GIF89a"),
        Case("bmp_signature_only", b"BM" + bytes(12)),
        Case("webp_riff_only", b"RIFF\x10\x00\x00\x00WEBPVP8 "),
    ]
    for i, cut in enumerate(truncated(png)):
        cases.append(Case(f"png_truncated_{i}", cut))
    for i, cut in enumerate(truncated(jpg)):
        cases.append(Case(f"jpeg_truncated_{i}", cut))
    return cases


def bomb_cases() -> list[Case]:
    """Header says huge, body is tiny: each must be refused from the header alone."""
    return [
        Case("png_30000x30000", png_claiming(30000, 30000)),
        Case("png_7000x7000", png_claiming(7000, 7000)),  # over our cap, under Pillow's
        Case("png_16bit_rgba_20000x20000", png_claiming(20000, 20000, color_type=6, bit_depth=16)),
        Case("gif_65535x65535", gif_claiming(65535, 65535)),
        Case("gif_10000x10000", gif_claiming(10000, 10000)),
        Case("bmp_50000x50000", bmp_claiming(50000, 50000)),
        Case("bmp_7000x-7000_topdown", bmp_claiming(7000, -7000)),
        Case("jpeg_65500x65500", jpeg_claiming(65500, 65500)),
        Case("jpeg_8000x8000", jpeg_claiming(8000, 8000)),
        Case("webp_16383x16383", webp_claiming(16383, 16383)),
        Case("png_text_chunk_bomb", png_text_chunk_bomb()),
    ]


def fits_header() -> bytes:
    cards = ["SIMPLE  =                    T", "BITPIX  =                    8",
             "NAXIS   =                    2", "NAXIS1  =                   64",
             "NAXIS2  =                   64", "END"]
    header = b"".join(c.ljust(80).encode() for c in cards)
    return header.ljust(2880, b" ") + bytes(64 * 64)


def foreign_format_cases() -> list[Case]:
    """Real files of formats outside the allow-list (JPEG, PNG, WEBP, BMP, GIF)."""
    photo = sample_photo((32, 24))
    cases = [
        Case("tiff", encode(photo, "TIFF")),
        Case("tiff_deflate", encode(photo, "TIFF", compression="tiff_deflate")),
        Case("eps", encode(photo, "EPS")),
        Case("ico", encode(photo, "ICO")),
        Case("ppm", encode(photo, "PPM")),
        Case("pcx", encode(photo, "PCX")),
        Case("tga", encode(photo, "TGA")),
        Case("pdf", encode(photo, "PDF")),
        Case("psd_like", b"8BPS\x00\x01" + bytes(6) + struct.pack(">HIIHH", 3, 24, 32, 8, 3) + bytes(64)),
        Case("svg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" '
                    b'height="64"><rect width="64" height="64" fill="red"/></svg>'),
        Case("fits_named_jpg", fits_header()),
        Case("postscript", b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"),
    ]
    if features.check("jpg_2000"):
        cases.append(Case("jpeg2000_jp2", encode(photo, "JPEG2000")))
        cases.append(Case("jpeg2000_j2k", encode(photo, "JPEG2000", no_jp2=True)))
    return cases


def mutated_cases(count: int = 48) -> list[Case]:
    """Bit flips, byte overwrites and insertions in valid files of each allowed format;
    some still decode (a flipped bit inside JPEG entropy data), most must not: either
    a correct result or INVALID_ARGUMENT is acceptable."""
    rng = random.Random(SEED + 1)
    photo = sample_photo((48, 32))
    bases = {
        "png": encode(photo, "PNG"), "jpeg": encode(photo, "JPEG"),
        "webp": encode(photo, "WEBP"), "bmp": encode(photo, "BMP"),
        "gif": encode(photo.convert("P"), "GIF"),
    }
    cases = []
    for i in range(count):
        fmt = list(bases)[i % len(bases)]
        data = bytearray(bases[fmt])
        how = rng.choice(("flip", "overwrite", "insert", "header"))
        if how == "flip":
            for _ in range(rng.randint(1, 6)):
                at = rng.randrange(len(data))
                data[at] ^= 1 << rng.randrange(8)
        elif how == "overwrite":
            at = rng.randrange(len(data))
            data[at : at + 8] = rng.randbytes(8)
        elif how == "insert":
            at = rng.randrange(len(data))
            data[at:at] = rng.randbytes(rng.randint(1, 32))
        else:
            at = rng.randrange(min(40, len(data)))
            data[at] = rng.randrange(256)
        cases.append(Case(f"{fmt}_{how}_{i}", bytes(data)))
    return cases


def colour_mode_cases() -> list[tuple[str, bytes, tuple[int, int, int]]]:
    """(name, bytes, expected RGB of the top-left pixel after decoding) for every colour
    mode the allowed codecs produce. Solid images keep the expectation exact."""
    c = (200, 50, 100)
    solid = Image.new("RGB", (40, 30), c)
    grey = solid.convert("L").getpixel((0, 0))
    palette = Image.new("P", (40, 30), 0)
    palette.putpalette([*c, 0, 0, 255])
    return [
        ("rgb_png", encode(solid, "PNG"), c),
        ("cmyk_jpeg", encode(solid.convert("CMYK"), "JPEG", quality=95), c),
        ("l_png", encode(solid.convert("L"), "PNG"), (grey,) * 3),
        ("l_jpeg", encode(solid.convert("L"), "JPEG", quality=95), (grey,) * 3),
        ("i16_png", encode(Image.fromarray(np.full((30, 40), 40000, np.uint16)), "PNG"), (156,) * 3),
        ("la_png_transparent", encode(Image.new("LA", (40, 30), (90, 0)), "PNG"), (255, 255, 255)),
        ("la_png_opaque", encode(Image.new("LA", (40, 30), (90, 255)), "PNG"), (90, 90, 90)),
        ("rgba_png_transparent", encode(Image.new("RGBA", (40, 30), (*c, 0)), "PNG"), (255, 255, 255)),
        ("rgba_png_opaque", encode(Image.new("RGBA", (40, 30), (*c, 255)), "PNG"), c),
        ("rgba_webp_transparent", encode(Image.new("RGBA", (40, 30), (*c, 0)), "WEBP", lossless=True),
         (255, 255, 255)),
        ("p_png", encode(palette, "PNG"), c),
        ("p_png_transparency", encode(palette, "PNG", transparency=0), (255, 255, 255)),
        ("p_gif_transparency", encode(palette, "GIF", transparency=0), (255, 255, 255)),
        ("bilevel_png", encode(Image.new("1", (40, 30), 1), "PNG"), (255, 255, 255)),
        ("bilevel_bmp", encode(Image.new("1", (40, 30), 0), "BMP"), (0, 0, 0)),
        ("p_bmp", encode(palette, "BMP"), c),
    ]


def animated(fmt: str) -> bytes:
    """Three frames red, green, blue: the first frame (red) is what must be labelled."""
    frames = [Image.new("RGB", (40, 30), col) for col in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()
