"""`python -m bench.sam_clicks [--rounds N] [--out FILE]`: per-click latency of the SAM click
path (services/segmentation/sam_clicks.py) through the real stack: the embedded Triton
serving a SAM-interface pair as `prelabel models add --family sam` writes it (NAME_encoder +
NAME_decoder, CPU profile) and the segmentation service (in this process, click_model set),
SegmentClick over loopback gRPC on a 1 MP JPEG (the coffee photo resized to 1224 x 816), one
positive click.

- first click: new image bytes (one pixel changed per round): decode + resize + the encoder
  + the decoder + masks, what a click on a new (or evicted) image costs;
- later click: the same bytes again: the embedding is held, only the decoder runs.

The pair is the small random-initialised SAM of tests/tools/test_sam_clicks.py (Meta's
decoder at its published size -- the decoder of every SAM ViT -- and a one-block, 64-wide
encoder), cached by the same key; made by the `sam` tool venv when it is missing (never
installed here: without it the bench says "not measured: <reason>"). The first click's
encoder is therefore far cheaper than a ViT-B's: the ratio is a floor. Reports p50/p95 wall
milliseconds of each, their ratio and the state's bytes per image (JSON on stdout, and to
--out).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.metadata
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import grpc
import skimage.data

from bench.clicks import SIZE, percentiles
from bench.repo import REPO_ROOT

PAIR = "bench_sam"
TOOL = "sam"
PROBES = REPO_ROOT / "tests" / "tools" / "probes"
EXPORT_TIMEOUT_S = 900


class NotAvailable(RuntimeError):
    """The export cannot be had here (the message is the report's reason)."""


def _tools_cache() -> Path:
    return Path(os.environ.get("PRELABEL_TOOLS_CACHE", Path.home() / ".cache" / "prelabel" / "tools"))


def tiny_sam_pair() -> Path:
    """The folder with encoder.onnx and decoder.onnx, cached as tests/tools/test_sam_clicks.py
    caches it (same key)."""
    from scripts.tool_venv import MARKER, SPECS, spec_hash

    spec = (SPECS / f"{TOOL}.txt").read_text()
    key = hashlib.sha256("\n".join([(PROBES / "sam_export.py").read_text(), (PROBES / "sam_reference.py").read_text(),
                                    spec, importlib.metadata.version("torch")]).encode()).hexdigest()[:12]
    out = _tools_cache() / "exports" / f"tiny-sam-{key}"
    if (out / "sam.pt").is_file():
        return out
    venv = _tools_cache() / f"{TOOL}-{spec_hash(spec)}"
    if not (venv / MARKER).is_file():
        raise NotAvailable(f"the {TOOL} tool venv is not built ({venv}; `python scripts/tool_venv.py {TOOL}`)")
    part = out.with_name(f"{out.name}.{os.getpid()}.part")
    with tempfile.TemporaryDirectory(prefix="bench-export-") as home:
        done = subprocess.run([str(venv / "bin" / "python"), str(PROBES / "sam_export.py"), str(part)],
                              capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S, cwd=home,
                              env={**os.environ, "HOME": home, "PYTHONPATH": str(REPO_ROOT)})
    if done.returncode != 0:
        raise NotAvailable(f"exporting the tiny SAM failed: {done.stderr.strip().splitlines()[-1:]}")
    part.replace(out)
    return out


def photo_jpeg(variant: int) -> bytes:
    """The 1 MP photo with a 16 px corner block of a colour of its own per variant (a
    one-pixel change can vanish in JPEG's quantisation, leaving the same bytes)."""
    photo = cv2.resize(skimage.data.coffee(), SIZE, interpolation=cv2.INTER_CUBIC)
    photo[:16, :16] = ((variant * 53) % 256, (variant * 101) % 256, (variant * 7) % 256)
    return cv2.imencode(".jpg", photo[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


async def _clicks(triton_url: str, rounds: int) -> dict:
    from prelabel.v1 import common_pb2, segmentation_pb2, segmentation_pb2_grpc
    from services.common.metrics import Metrics
    from services.segmentation.app import build_app
    from services.segmentation.settings import SegmentationSettings

    metrics = Metrics("segmentation")
    app = build_app(SegmentationSettings(grpc_port=0, metrics_port=None, triton_url=triton_url, click_model=PAIR),
                    metrics)
    await app.start()
    served = asyncio.create_task(app.run(install_signal_handlers=False))
    prompt = segmentation_pb2.ClickPrompt(points=[segmentation_pb2.PointPrompt(
        x=SIZE[0] / 2, y=SIZE[1] / 2, label=segmentation_pb2.POINT_LABEL_POSITIVE)])
    timings: dict[str, list[float]] = {"first_wall": [], "later_wall": []}
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = segmentation_pb2_grpc.SegmenterStub(channel)
            await stub.SegmentClick(segmentation_pb2.ClickRequest(  # warm: the first call's set-up
                image=common_pb2.Image(data=photo_jpeg(0)), prompt=prompt), timeout=120)
            for i in range(1, rounds + 1):
                request = segmentation_pb2.ClickRequest(image=common_pb2.Image(data=photo_jpeg(i)), prompt=prompt)
                for name in ("first_wall", "later_wall"):
                    started = time.perf_counter()
                    reply = await stub.SegmentClick(request, timeout=120)
                    timings[name].append(time.perf_counter() - started)
                    assert reply.image_state_reused == (name == "later_wall"), "the state did not behave"
    finally:
        app.request_stop()
        await asyncio.wait_for(served, 60)
    kind = {"service": "segmentation", "kind": f"sam-embedding:{PAIR}"}
    held = metrics.registry.get_sample_value("prelabel_image_state_bytes", kind) or 0.0
    entries = min(rounds + 1, int(SegmentationSettings().click_state_max_bytes // (256 * 64 * 64 * 4)))
    result = {name: percentiles(values) for name, values in timings.items()}
    return {**result, "state_bytes_per_image": int(held // max(entries, 1))}


def measure(rounds: int) -> dict:
    from prelabel.core.models.user_models import add_sam_model, sam_model_name
    from services.embedded_triton.launcher import EmbeddedTriton
    from services.embedded_triton.settings import TritonSettings

    pair = tiny_sam_pair()
    with tempfile.TemporaryDirectory(prefix="bench-sam-") as work:
        repo = Path(work) / "user-models"
        add_sam_model(PAIR, pair / "encoder.onnx", pair / "decoder.onnx", weights="random", repository=repo)
        models = ["segmenter", sam_model_name(PAIR, "encoder"), sam_model_name(PAIR, "decoder")]
        triton = EmbeddedTriton(TritonSettings(grpc_port=0, http_port=0, metrics_port=0, models=models,
                                               user_model_repository=repo), log_path=Path(work) / "triton.log")
        triton.start()
        try:
            result = asyncio.run(_clicks(triton.grpc_url, rounds))
        finally:
            triton.stop()
    return {
        "engine": "sam (tiny random-initialised pair through Triton)", "image": f"{SIZE[0]}x{SIZE[1]} JPEG",
        "rounds": rounds, **result,
        "first_to_later_ratio_p50": round(result["first_wall"]["p50_ms"] / max(result["later_wall"]["p50_ms"], 1e-9),
                                          2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    try:
        result = json.dumps(measure(args.rounds), indent=2)
    except NotAvailable as exc:
        result = json.dumps({"engine": "sam", "not_measured": str(exc)})
    print(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(result + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
