"""The fuzz harness in `make test`: a short bounded atheris run (2000 executions or 20 s,
whichever comes first) and an in-process replay of the committed seed corpus."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from prelabel.core.errors import InvalidArgument
from services.common.imaging import decode_image
from services.detection.settings import DetectionSettings
from tests.reliability.report import figure, record

REPO_ROOT = Path(__file__).resolve().parents[2]
HARNESS = REPO_ROOT / "fuzz" / "fuzz_decode.py"
SEEDS = REPO_ROOT / "fuzz" / "corpus"
SMOKE_RUNS = 2000
SMOKE_SECONDS = 20
REQUEST_TAG = b"\x00"


@pytest.mark.timeout(120)
def test_fuzz_harness_finds_no_crash_when_run_briefly(tmp_path):
    pytest.importorskip("atheris", reason="atheris is in requirements-dev.txt")
    new_inputs, artifacts = tmp_path / "corpus", tmp_path / "artifacts"
    new_inputs.mkdir()
    artifacts.mkdir()
    # -seed fixed: the same inputs every run (coverage feedback is deterministic), so the
    # smoke run cannot flake; the geometry invariant stays on (PRELABEL_FUZZ_GEOMETRY).
    env = dict(os.environ, PRELABEL_FUZZ_GEOMETRY="1")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(HARNESS), f"-runs={SMOKE_RUNS}", f"-max_total_time={SMOKE_SECONDS}",
         "-seed=1", "-timeout=10", "-rss_limit_mb=2048", f"-artifact_prefix={artifacts}/",
         str(new_inputs), str(SEEDS)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=110,
    )
    wall_s = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    crashes = sorted(p.name for p in artifacts.iterdir())
    done = re.search(r"Done (\d+) runs in (\d+) second", log)
    runs = int(done.group(1)) if done else 0
    record("fuzz", smoke_executions=figure(runs, "inputs", f"{SMOKE_RUNS} or {SMOKE_SECONDS} s"),
           smoke_wall_s=figure(wall_s, "s"), smoke_crashes=figure(len(crashes), "inputs", "0", not crashes))
    assert proc.returncode == 0 and not crashes, f"crashes {crashes}\n{log[-6000:]}"
    assert runs > 0, log[-3000:]


@pytest.mark.timeout(60)
def test_decode_image_raises_only_invalid_argument_when_seed_corpus_is_replayed():
    limits = DetectionSettings(grpc_port=0, metrics_port=None)
    seeds = sorted(p for p in SEEDS.iterdir() if not p.read_bytes().startswith(REQUEST_TAG))
    assert len(seeds) >= 40, "fuzz/corpus is missing: python fuzz/make_corpus.py"
    outcomes = {"decoded": 0, "rejected": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in seeds:
            for target in (None, (320, 320)):
                try:
                    decode_image(path.read_bytes(), max_bytes=limits.max_image_bytes,
                                 max_pixels=limits.max_image_pixels, target_size=target)
                    outcomes["decoded"] += 1
                except InvalidArgument as exc:
                    assert exc.field == "image.data", path.name
                    outcomes["rejected"] += 1
    assert outcomes["decoded"] and outcomes["rejected"], outcomes


def test_fuzz_seed_corpus_stays_small_when_committed():
    sizes = [p.stat().st_size for p in SEEDS.iterdir()]
    assert sum(sizes) < 200 * 1024, f"fuzz/corpus is {sum(sizes)} bytes"
