"""Bulk throughput: `prelabel annotate` (detection only) over a folder, through the
router and the detection service to Triton, against the same ONNX model called
in-process with onnxruntime on the same cores (same decode + letterbox, one image at a
time, onnxruntime using every core). Rounds alternate so both see the same machine.

The ratio says what the suite's serving path (gRPC stream, router, service, Triton's
batcher, journal and output writing) costs a bulk job relative to a script that runs
the model itself.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import images


def _folder(root: Path, copies: int) -> Path:
    folder = root / "photos"
    folder.mkdir()
    photos = images.jpegs()
    for i in range(copies):
        p = photos[i % len(photos)]
        (folder / f"{i:04d}_{p.name}").write_bytes(p.data)
    return folder


def _annotate(router: str, folder: Path, out: Path, concurrency: int) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "prelabel.cli", "annotate", str(folder), "--out", str(out), "--router", router,
         "--tasks", "detect", "--formats", "coco", "--concurrency", str(concurrency), "--no-progress"],
        capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"annotate exited {done.returncode}: {done.stderr[-1500:]}")
    return elapsed


def _in_process(folder: Path, threads: int) -> float:
    from services.common.preprocess import prepare_image
    from services.common.settings import ServiceSettings
    from services.modelkit.nanodet import NanoDet

    settings = ServiceSettings()
    model = NanoDet(threads)
    size = (model.input_size, model.input_size)
    files = sorted(folder.iterdir())
    model.detect(prepare_image(files[0].read_bytes(), size, settings).tensor[0], 0.05, 100)  # warm
    started = time.perf_counter()
    for path in files:
        model.detect(prepare_image(path.read_bytes(), size, settings).tensor[0], 0.05, 100)
    return time.perf_counter() - started


def measure_bulk(router: str, *, copies: int, rounds: int, concurrency: int = 8) -> dict:
    threads = os.cpu_count() or 1
    suite_s, direct_s = [], []
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        root = Path(tmp)
        folder = _folder(root, copies)
        for r in range(rounds):
            out = root / f"out-{r}"
            suite_s.append(_annotate(router, folder, out, concurrency))
            shutil.rmtree(out)
            direct_s.append(_in_process(folder, threads))
    suite_ips = copies / min(suite_s)
    direct_ips = copies / min(direct_s)
    return {
        "measured": True,
        "images": copies,
        "rounds": rounds,
        "concurrency": concurrency,
        "threads_in_process": threads,
        "suite_s": suite_s,
        "in_process_s": direct_s,
        "suite_ips": suite_ips,
        "in_process_ips": direct_ips,
        "ratio": suite_ips / direct_ips,
        "note": "best round of each; annotate's wall time includes its start-up and writing the outputs",
    }
