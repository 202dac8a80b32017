"""`python -m bench --smoke` end to end: every comparison runs (bench_sleep stands in for
the detector, so no torch model loads) and bench.json has every key with sane numbers.
Keeps the harness from rotting; the figures themselves are not checked."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

COMPARISONS = ("suite_overhead", "hop_latency", "payload", "dynamic_batching", "fanout", "sweep")
TARGET_KEYS = ("suite_overhead", "hop_added_latency", "batching_throughput", "batching_p95", "fanout", "payload",
               "decode_gain", "byom_throughput", "byom_batching")
SMOKE_LIMIT_S = 110


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(out)], check=False, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=SMOKE_LIMIT_S + 30)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, json.loads((out / "bench.json").read_text()), elapsed


@pytest.mark.integration
@pytest.mark.timeout(SMOKE_LIMIT_S + 60)
def test_smoke_is_quick(smoke):
    _, _, elapsed = smoke
    assert elapsed < SMOKE_LIMIT_S


@pytest.mark.integration
def test_every_comparison_is_there(smoke):
    _, result, _ = smoke
    assert set(COMPARISONS) <= set(result["comparisons"])
    for key in COMPARISONS:
        comp = result["comparisons"][key]
        if key == "fanout":
            assert comp["measured"] is False and comp["reason"].startswith("not measured")
        else:
            assert comp["measured"] is True, (key, comp.get("reason"))
    for key in ("byom_throughput", "byom_batching"):  # a YOLO11n export: full runs and --byom-only
        assert result["comparisons"][key]["reason"].startswith("not measured in smoke mode"), key
    assert {r["key"] for r in result["targets"]} >= set(TARGET_KEYS)
    assert result["meta"]["mode"] == "smoke"


@pytest.mark.integration
def test_numbers_are_sane(smoke):
    _, result, _ = smoke
    c = result["comparisons"]
    for key in ("suite_overhead", "dynamic_batching"):
        assert positive(c[key]["ratio"]), key
        for name, v in c[key]["variants"].items():
            assert v["errors"] == 0, (key, name, v.get("first_error"))
            assert positive(v["throughput_rps"]) and positive(v["p50_ms"]) and positive(v["p95_ms"]), (key, name)
    hop = c["hop_latency"]
    for name, v in hop["variants"].items():
        assert v["errors"] == 0 and positive(v["p50_ms"]), name
    assert math.isfinite(hop["added_ms_tiny"]) and positive(hop["prepare_ms_tiny"])
    pay = c["payload"]
    assert all(v["errors"] == 0 for v in pay["variants"].values())
    assert positive(pay["echo_ms_per_mb"]) and positive(pay["suite_ms_per_mb"]) and positive(pay["ratio"])
    assert pay["big"]["bytes"] > 900_000 and pay["tiny"]["bytes"] < 10_000
    assert c["dynamic_batching"]["batch_sizes_on"], "no batch formed with dynamic batching on"
    assert all(positive(p["suite_rps"]) and positive(p["bare_rps"]) for p in c["sweep"]["points"])
    for name, st in result["stages"].items():
        for stage, t in st["stages"].items():
            assert positive(t["median_ms"]), (name, stage)
        assert positive(st["serving_path_cpu_ms"])
    for row in result["targets"]:
        if row["measured"] is not None:
            assert math.isfinite(row["measured"]), row
            assert row["pass"] in (True, False, None)


@pytest.mark.integration
def test_report_files(smoke):
    out, result, _ = smoke
    md = (out / "bench.md").read_text()
    assert "| What | Measured | Target | Result |" in md
    assert "not measured" in md  # fan-out row
    pytest.importorskip("matplotlib")
    for name in ("throughput_vs_concurrency.png", "latency_by_stage.png"):
        assert (out / name).stat().st_size > 10_000, name
        assert name in result["plots"]


@pytest.mark.timeout(120)
def test_click_bench_measures_first_and_later_clicks():
    from bench.clicks import measure

    result = measure(rounds=2)
    for name in ("first_wall", "later_wall", "first_cpu", "later_cpu"):
        assert 0 < result[name]["p50_ms"] <= result[name]["p95_ms"]
    assert result["state_bytes_per_image"] == 171 * 256 * 3


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_sam_click_bench_measures_first_and_later_clicks_through_triton():
    """bench.sam_clicks with two rounds: the tiny SAM pair through the embedded Triton and
    the segmentation service (the bench itself asserts the later click reused the state)."""
    from bench.sam_clicks import measure

    result = measure(rounds=2)
    for name in ("first_wall", "later_wall"):
        assert 0 < result[name]["p50_ms"] <= result[name]["p95_ms"]
    assert result["state_bytes_per_image"] == 256 * 64 * 64 * 4
