#!/usr/bin/env python3
"""(Re)generate fuzz/corpus/: small seeds for fuzz_decode.py (images of every allowed
format and colour mode, EXIF orientations, animations, bomb headers, malformed and
foreign files, DetectRequest messages), under 200 KB in all. Random parts use a fixed
seed; the encoders' bytes may still differ across Pillow versions, which is harmless.

    python fuzz/make_corpus.py            # rewrite fuzz/corpus/
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from prelabel.v1 import common_pb2, detection_pb2  # noqa: E402
from tests.reliability import corpus  # noqa: E402

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
MAX_TOTAL_BYTES = 200 * 1024
MAX_SEED_BYTES = 8 * 1024
REQUEST_TAG = b"\x00"  # fuzz_decode.py: inputs starting with it are DetectRequests


def image_seeds() -> dict[str, bytes]:
    small = corpus.sample_photo((24, 16))
    seeds = {
        "photo.png": corpus.encode(small, "PNG"),
        "photo.jpg": corpus.encode(small, "JPEG", quality=80),
        "photo_progressive.jpg": corpus.encode(small, "JPEG", quality=80, progressive=True),
        "photo.webp": corpus.encode(small, "WEBP", quality=70),
        "photo_lossless.webp": corpus.encode(small, "WEBP", lossless=True),
        "photo.bmp": corpus.encode(small, "BMP"),
        "photo_rle8.bmp": corpus.encode(small.convert("P"), "BMP"),
        "photo.gif": corpus.encode(small.convert("P"), "GIF"),
        "photo_optimized.png": corpus.encode(small, "PNG", optimize=True),
        "animated.gif": corpus.animated("GIF"),
        "animated.webp": corpus.animated("WEBP"),
        "animated.png": corpus.animated("PNG"),
        "orientation6.jpg": corpus.oriented(small, 6, "JPEG", quality=80),
        "orientation3.png": corpus.oriented(small, 3, "PNG"),
        "orientation8.webp": corpus.oriented(small, 8, "WEBP", lossless=True),
        "bomb_png_30000.png": corpus.png_claiming(30000, 30000),
        "bomb_gif_65535.gif": corpus.gif_claiming(65535, 65535),
        "bomb_bmp_7000.bmp": corpus.bmp_claiming(7000, 7000),
        "bomb_jpeg_8000.jpg": corpus.jpeg_claiming(8000, 8000),
        "bomb_webp_16383.webp": corpus.webp_claiming(16383, 16383),
    }
    for name, data, _ in corpus.colour_mode_cases():
        seeds[f"mode_{name}"] = data
    for case in corpus.malformed_cases():
        if case.data and not case.data.startswith(REQUEST_TAG) and len(case.data) <= MAX_SEED_BYTES:
            seeds[f"malformed_{case.name}"] = case.data
    for case in corpus.foreign_format_cases():
        if len(case.data) <= MAX_SEED_BYTES:
            seeds[f"foreign_{case.name}"] = case.data
    return seeds


def request_seeds() -> dict[str, bytes]:
    band = common_pb2.ReviewBand
    requests = {
        "request_minimal": detection_pb2.DetectRequest(image=common_pb2.Image(data=b"\xff\xd8\xff", image_id="a")),
        "request_full": detection_pb2.DetectRequest(
            image=common_pb2.Image(data=b"x", image_id="tasks/42/frame_0001.jpg"),
            model="coco_detector", score_threshold=0.25, category_ids=[1, 3, 17],
            category_names=["person", "car"], max_detections=50,
            review_policy=common_pb2.ReviewPolicy(
                default_band=band(accept_at=0.9, reject_below=0.2),
                by_category={"person": band(accept_at=0.8), "car": band(reject_below=0.4)},
                include_rejected=True),
            priority=common_pb2.PRIORITY_BULK),
        "request_bad_values": detection_pb2.DetectRequest(
            model="nope", score_threshold=float("nan"), max_detections=100000,
            review_policy=common_pb2.ReviewPolicy(default_band=band(accept_at=0.1, reject_below=0.9))),
    }
    return {name: REQUEST_TAG + r.SerializeToString() for name, r in requests.items()}


def seeds() -> dict[str, bytes]:
    out = {**image_seeds(), **request_seeds()}
    too_big = {k: len(v) for k, v in out.items() if len(v) > MAX_SEED_BYTES}
    assert not too_big, f"seeds over {MAX_SEED_BYTES} bytes: {too_big}"
    total = sum(map(len, out.values()))
    assert total <= MAX_TOTAL_BYTES, f"corpus is {total} bytes, limit {MAX_TOTAL_BYTES}"
    return out


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    wanted = seeds()
    CORPUS_DIR.mkdir(exist_ok=True)
    for stale in CORPUS_DIR.iterdir():
        if stale.name not in wanted:
            stale.unlink()
    for name, data in wanted.items():
        (CORPUS_DIR / name).write_bytes(data)
    digest = hashlib.sha256(b"".join(wanted[k] for k in sorted(wanted))).hexdigest()[:12]
    print(f"{len(wanted)} seeds, {sum(map(len, wanted.values()))} bytes, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
