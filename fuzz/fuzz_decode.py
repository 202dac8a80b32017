#!/usr/bin/env python3
"""atheris (libFuzzer) harness over what the services do with untrusted bytes before
anything reaches Triton:

* `services.common.imaging.decode_image` (format allow-list, header pixel cap, EXIF
  orientation, colour modes) at the detection limits, with and without a target size;
* request validation: `services.detection.head.label_filter` / `model_name`,
  `prelabel.core.review.policy_from_proto`, `services.common.requests`
  (probability, max_count, image_id, box) on DetectRequests parsed from the input.

Contract: only `InvalidArgument` may escape (naming a field); anything else is a crash.
A successful decode must be an RGB image within the pixel cap; with
PRELABEL_FUZZ_GEOMETRY=1 (the default) it must also have exactly the size the decoder
reports (the frame every returned coordinate is in).

Runs:
  python fuzz/fuzz_decode.py -runs=2000 -max_total_time=20 NEW_DIR fuzz/corpus   # smoke
  python fuzz/fuzz_decode.py -max_total_time=600 -rss_limit_mb=2048 \
      -artifact_prefix=.fuzz/artifacts/ .fuzz/corpus fuzz/corpus                   # long
libFuzzer writes new inputs into the FIRST directory only: keep fuzz/corpus (the small
committed seeds) second. A crashing input is saved as <artifact_prefix>crash-<sha1>;
replay it with `python fuzz/fuzz_decode.py <file>`.
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import atheris  # noqa: E402

with atheris.instrument_imports(include=["services", "PIL"]):
    from google.protobuf.message import DecodeError
    from PIL import Image

    from prelabel.core.errors import InvalidArgument
    from prelabel.core.review import policy_from_proto
    from prelabel.v1 import common_pb2, detection_pb2
    from services.common import requests as fields
    from services.common.imaging import decode_image
    from services.detection.head import label_filter, model_name
    from services.detection.settings import DetectionSettings

    Image.init()  # imports every plugin now, inside the instrumentation

SETTINGS = DetectionSettings(grpc_port=0, metrics_port=None)
MAX_BYTES = SETTINGS.max_image_bytes
MAX_PIXELS = SETTINGS.max_image_pixels
CHECK_GEOMETRY = os.environ.get("PRELABEL_FUZZ_GEOMETRY", "1") != "0"
TARGETS = [None, (320, 320), (512, 512), (64, 48)]

# Inputs starting with this byte are request messages, the rest are images. Image
# seeds never start with it (JPEG 0xFF, PNG 0x89, GIF 'G', BMP 'B', WebP 'R').
REQUEST_TAG = 0x00


class ContractViolation(AssertionError):
    """A successful result that breaks an invariant (not a crash of the code itself)."""


def check_decode(data: bytes, target) -> None:
    try:
        decoded = decode_image(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS, target_size=target)
    except InvalidArgument as exc:
        if exc.field != "image.data":
            raise ContractViolation(f"violation on {exc.field!r}, expected image.data") from exc
        return
    image = decoded.image
    if image.mode != "RGB":
        raise ContractViolation(f"decoded mode {image.mode}")
    if not (decoded.width > 0 and decoded.height > 0 and decoded.width * decoded.height <= MAX_PIXELS):
        raise ContractViolation(f"decoded size {decoded.width}x{decoded.height}")
    if target is None and CHECK_GEOMETRY and image.size != (decoded.width, decoded.height):
        raise ContractViolation(
            f"pixels are {image.size[0]}x{image.size[1]} but the reported (coordinate) frame is "
            f"{decoded.width}x{decoded.height}")


def check_request(data: bytes) -> None:
    try:
        request = detection_pb2.DetectRequest.FromString(data)
    except DecodeError:
        return  # not a message: gRPC's deserializer refuses it before our code runs
    fdp = atheris.FuzzedDataProvider(data)
    for validate in (
        lambda: label_filter(request),
        lambda: policy_from_proto(request.review_policy),
        lambda: fields.image_id(request.image.image_id),
        lambda: model_name(request, SETTINGS),
        lambda: fields.probability(request, "score_threshold", 0.5, open_interval=True),
        lambda: fields.max_count(request.max_detections, "max_detections"),
        lambda: fields.box(common_pb2.Box(x_min=fdp.ConsumeFloat(), y_min=fdp.ConsumeFloat(),
                                          x_max=fdp.ConsumeFloat(), y_max=fdp.ConsumeFloat()),
                           "box", fdp.ConsumeIntInRange(1, 1 << 16), fdp.ConsumeIntInRange(1, 1 << 16)),
    ):
        try:
            validate()
        except InvalidArgument as exc:
            if not exc.field:
                raise ContractViolation("InvalidArgument without a field") from exc


def TestOneInput(data: bytes) -> None:
    if data[:1] == bytes([REQUEST_TAG]):
        check_request(data[1:])
        return
    target = TARGETS[len(data) % len(TARGETS)]
    check_decode(data, target)


def main() -> None:
    warnings.simplefilter("ignore")  # DecompressionBombWarning, EXIF metadata warnings
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
