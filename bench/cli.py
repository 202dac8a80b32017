"""`python -m bench [--smoke] [--out DIR] [--router HOST:PORT] [--byom-only]`: the CPU bench.

Starts the real tritonserver (a temporary repository: coco_detector, its
no-batching twin, bench_identity), the detection service as its own process and a
bare echo server, then runs every comparison with interleaved rounds and writes
bench.json, bench.md and the plots to --out (default bench/results/). A full run
ends with the bring-your-own-model comparisons (bench/byom.py, a stack of their own);
--byom-only runs those alone.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import images, load, report, stages
from bench.bulk import measure_bulk
from bench.byom import Rounds, measure_byom, not_measured
from bench.clients import (
    Clients,
    batch_stats_delta,
    detect_request,
    queue_ms_delta,
    scrape_stages,
)
from bench.fanout import measure_fanout, not_measured_reason
from bench.load import Variant, interleave
from bench.repo import REPO_ROOT, config_for
from bench.servers import Stack

log = logging.getLogger("bench")

IDENTITY = "bench_identity"
#: Images of the bulk comparison (~3 s of NanoDet on 2 cores per round, so annotate's
#: start-up is a small part of its wall time).
BULK_IMAGES = 120
NOBATCH = "_nobatch"


@dataclass(frozen=True)
class Plan:
    """Counts and durations of a run. Each comparison runs up to `*_rounds` interleaved
    rounds and stops starting new ones near its `*_max_s`, so the run is bounded in time
    however slow (or shared) the machine is."""

    mode: str
    detector: str  # the model of the throughput, batching and sweep comparisons
    rounds: int  # suite overhead and batching: interleaved rounds
    warm_s: float
    window_s: float
    suite_max_s: float
    batching_max_s: float
    sweep: tuple[int, ...]  # extra concurrencies for the throughput plot
    sweep_rounds: int
    sweep_window_s: float
    sweep_point_max_s: float
    hop_rounds: int
    hop_window_s: float
    hop_max_s: float
    payload_rounds: int
    payload_window_s: float
    payload_max_s: float
    stage_budget_s: float  # per image and stage
    budget_s: float  # soft limit: comparisons that would start after it are skipped
    suite_concurrency: int = 8
    batching_concurrency: int = 16


# Full: the light COCO detector on CPU (150-250 ms per image on 2 quiet cores, several
# times that on a shared machine: windows of 10 s). About 8 minutes on 2 cores; the
# caps keep it near 10 however loaded the machine is (fewer rounds, then).
FULL = Plan("full", detector="coco_detector", rounds=6, warm_s=2.0, window_s=10.0, suite_max_s=120,
            batching_max_s=130, sweep=(1, 4, 16), sweep_rounds=2, sweep_window_s=6.0, sweep_point_max_s=45,
            hop_rounds=8, hop_window_s=2.5, hop_max_s=40, payload_rounds=5, payload_window_s=2.0,
            payload_max_s=40, stage_budget_s=0.3, budget_s=450)
# Smoke: every comparison, with bench_sleep (fixed wall time per batch, no CPU, no
# torch) standing in for the detector; tiny windows. Checks the harness, not the suite.
SMOKE = Plan("smoke", detector="bench_sleep", rounds=2, warm_s=0.3, window_s=0.6, suite_max_s=8,
             batching_max_s=8, sweep=(1,), sweep_rounds=2, sweep_window_s=0.4, sweep_point_max_s=5,
             hop_rounds=2, hop_window_s=0.3, hop_max_s=5, payload_rounds=2, payload_window_s=0.3, payload_max_s=6,
             stage_budget_s=0.0, budget_s=60)


def machine() -> tuple[str, str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    n = os.cpu_count()
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception as exc:  # noqa: BLE001 - torch without CUDA, or no torch: say so
        gpu = f"no GPU ({type(exc).__name__})"
    full = f"{cpu}, {n} cores{mem}, {gpu}, {platform.system()} {platform.release()}, Python {platform.python_version()}"
    return full, f"{n} cores, {gpu}"


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], check=False, cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("torch", "torchvision", "grpcio", "protobuf", "tritonclient", "nvidia-pytriton", "Pillow", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


class Deadline:
    def __init__(self, budget_s: float):
        self.start = time.monotonic()
        self.budget_s = budget_s

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def expired(self) -> bool:
        return self.elapsed() > self.budget_s


async def section(name: str, deadline: Deadline, fn) -> dict:
    if deadline.expired():
        log.warning("%s skipped: time budget (%.0fs) spent", name, deadline.budget_s)
        return {"measured": False, "reason": f"not measured: time budget of {deadline.budget_s:.0f}s spent"}
    started = time.monotonic()
    log.info("-- %s", name)
    try:
        out = await fn()
    except Exception as exc:  # noqa: BLE001 - one broken comparison must not hide the others
        log.error("%s failed: %s", name, traceback.format_exc())
        return {"measured": False, "reason": f"error: {type(exc).__name__}: {exc}"}
    out.setdefault("measured", True)
    out["section_s"] = time.monotonic() - started
    return out


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def image_size(model: str, profile: str = "cpu") -> tuple[int, int]:
    dims = [int(d) for d in config_for(model, profile).input[0].dims]
    return dims[1], dims[0]


async def measure(stack: Stack, plan: Plan, deadline: Deadline, router: str | None,
                  singles: dict[str, str]) -> dict:
    from services.common.preprocess import prepare_image
    from services.common.settings import ServiceSettings

    settings = ServiceSettings()
    DET, DET_NOBATCH = plan.detector, plan.detector + NOBATCH
    photos = list(images.jpegs())
    size = image_size(DET)
    tensors = [prepare_image(p.data, size, settings).tensor for p in photos]
    comps: dict[str, dict] = {}
    load.PROBES.clear()
    load.PROBES.update(stack.cpu_probes())
    load.STAGES = lambda: scrape_stages(stack.detection_metrics_url)

    async with Clients(stack.detection_address, stack.triton_url, stack.echo_address) as c:
        det_outputs = await c.outputs_of(DET)
        id_outputs = await c.outputs_of(IDENTITY)
        det_requests = [detect_request(p.data, DET) for p in photos]
        # First inferences are slow (allocations, lazy init): one per model, unrecorded.
        for model in (DET, DET_NOBATCH, IDENTITY):
            warm = prepare_image(photos[0].data, image_size(model), settings).tensor
            await c.bare_triton(model, await c.outputs_of(model))(warm)

        async def suite_vs_bare(concurrency: int, rounds: int, window_s: float, max_s: float):
            variants = [Variant("suite", c.detect, det_requests),
                        Variant("bare_triton", c.bare_triton(DET, det_outputs), tensors)]
            await interleave(variants, rounds=rounds, concurrency=concurrency, warm_s=plan.warm_s,
                             window_s=window_s, max_s=max_s)
            return variants

        async def suite_overhead():
            before = await c.triton_stats(DET)
            variants = await suite_vs_bare(plan.suite_concurrency, plan.rounds, plan.window_s, plan.suite_max_s)
            suite, bare = variants
            return {
                "model": DET,
                "concurrency": plan.suite_concurrency,
                "images": [p.name for p in photos],
                "variants": {v.name: v.summary() for v in variants},
                "ratio": ratio(suite.throughput, bare.throughput),
                "per_round_ratio": [a.throughput / b.throughput if b.throughput else None
                                    for a, b in zip(suite.segments, bare.segments, strict=False)],
                "rounds": len(suite.segments),
                "triton_batches_both_variants": batch_stats_delta(before, await c.triton_stats(DET)),
            }

        comps["suite_overhead"] = await section("suite overhead", deadline, suite_overhead)

        tiny = images.tiny_jpeg()
        photo = images.jpegs()[2]  # chelsea.jpg, 451x300
        id_size = image_size(IDENTITY)

        async def hop_latency():
            tiny_tensor = prepare_image(tiny.data, id_size, settings).tensor
            variants = [
                Variant("suite_tiny", c.detect, [detect_request(tiny.data, IDENTITY)]),
                Variant("bare_triton", c.bare_triton(IDENTITY, id_outputs), [tiny_tensor]),
                Variant("suite_photo", c.detect, [detect_request(photo.data, IDENTITY)]),
            ]
            await interleave(variants, rounds=plan.hop_rounds, concurrency=1, warm_s=min(plan.warm_s, 0.3),
                             window_s=plan.hop_window_s, max_s=plan.hop_max_s)
            s = {v.name: v.summary() for v in variants}
            prep_tiny = stages.time_call(lambda: prepare_image(tiny.data, id_size, settings),
                                         budget_s=max(plan.stage_budget_s, 0.05))["median_ms"]
            prep_photo = stages.time_call(lambda: prepare_image(photo.data, id_size, settings),
                                          budget_s=max(plan.stage_budget_s, 0.05))["median_ms"]
            return {
                "model": IDENTITY,
                "concurrency": 1,
                "tiny": tiny.name,
                "photo": photo.name,
                "variants": s,
                "added_ms_tiny": s["suite_tiny"]["p50_ms"] - s["bare_triton"]["p50_ms"],
                "added_ms_photo": s["suite_photo"]["p50_ms"] - s["bare_triton"]["p50_ms"],
                "prepare_ms_tiny": prep_tiny,
                "prepare_ms_photo": prep_photo,
                "rounds": len(variants[0].segments),
            }

        comps["hop_latency"] = await section("added latency per hop", deadline, hop_latency)

        big = images.big_jpeg()

        async def payload():
            variants = [
                Variant("suite_big", c.detect, [detect_request(big.data, IDENTITY)]),
                Variant("suite_tiny", c.detect, [detect_request(tiny.data, IDENTITY)]),
                Variant("echo_big", c.echo, [big.data]),
                Variant("echo_tiny", c.echo, [tiny.data]),
            ]
            await interleave(variants, rounds=plan.payload_rounds, concurrency=1, warm_s=min(plan.warm_s, 0.3),
                             window_s=plan.payload_window_s, max_s=plan.payload_max_s)
            s = {v.name: v.summary() for v in variants}
            mb = (len(big.data) - len(tiny.data)) / 1e6
            budget = max(plan.stage_budget_s, 0.05)
            decode_in_process = (
                stages.time_call(lambda: stages._decode(big.data, id_size), budget_s=budget)["median_ms"]
                - stages.time_call(lambda: stages._decode(tiny.data, id_size), budget_s=budget)["median_ms"])
            # The service's own decode stage (decode + letterbox in its worker thread), same
            # requests, same moments: the part of the per-MB cost that is image work.
            svc_big = s["suite_big"].get("service_stage_ms", {}).get("decode")
            svc_tiny = s["suite_tiny"].get("service_stage_ms", {}).get("decode")
            decode = (svc_big - svc_tiny) if svc_big is not None and svc_tiny is not None else decode_in_process
            suite_per_mb = (s["suite_big"]["p50_ms"] - s["suite_tiny"]["p50_ms"]) / mb
            echo_per_mb = (s["echo_big"]["p50_ms"] - s["echo_tiny"]["p50_ms"]) / mb
            return {
                "model": IDENTITY,
                "concurrency": 1,
                "big": {"name": big.name, "bytes": len(big.data), "megapixels": big.megapixels},
                "tiny": {"name": tiny.name, "bytes": len(tiny.data)},
                "mb": mb,
                "variants": s,
                "suite_ms_per_mb": suite_per_mb,
                "echo_ms_per_mb": echo_per_mb,
                "ratio": ratio(suite_per_mb, echo_per_mb),
                "decode_ms_per_mb": decode / mb,
                "decode_ms_per_mb_source": "service decode stage" if decode is not decode_in_process else "in-process",
                "decode_in_process_ms_per_mb": decode_in_process / mb,
                "rounds": len(variants[0].segments),
                "ratio_without_decode": ratio(suite_per_mb - decode / mb, echo_per_mb),
                "note": "MB = 10^6 bytes; p50 differences at concurrency 1",
            }

        comps["payload"] = await section("payload cost per MB", deadline, payload)

        async def batching():
            cfg = config_for(DET, stack.profile)
            delay_ms = cfg.dynamic_batching.max_queue_delay_microseconds / 1e3
            on_before, off_before = await c.triton_stats(DET), await c.triton_stats(DET_NOBATCH)
            variants = [Variant("on", c.bare_triton(DET, det_outputs), tensors),
                        Variant("off", c.bare_triton(DET_NOBATCH, det_outputs), tensors)]
            await interleave(variants, rounds=plan.rounds, concurrency=plan.batching_concurrency,
                             warm_s=plan.warm_s, window_s=plan.window_s, max_s=plan.batching_max_s)
            on_after, off_after = await c.triton_stats(DET), await c.triton_stats(DET_NOBATCH)
            on, off = variants
            sizes_on = batch_stats_delta(on_before, on_after)
            sizes_off = batch_stats_delta(off_before, off_after)
            largest = max(sizes_on) if sizes_on else 1
            batch_ms = sizes_on[largest]["compute_ms"] if sizes_on else float("nan")
            s = {v.name: v.summary() for v in variants}
            bound = s["off"]["p95_ms"] + delay_ms + batch_ms
            return {
                "model": DET,
                "concurrency": plan.batching_concurrency,
                "via": "bare tritonclient (the batcher is Triton's; the suite adds the same on both sides)",
                "variants": s,
                "ratio": ratio(on.throughput, off.throughput),
                "per_round_ratio": [a.throughput / b.throughput if b.throughput else None
                                    for a, b in zip(on.segments, off.segments, strict=False)],
                "max_queue_delay_ms": delay_ms,
                "batch_sizes_on": {k: v["executions"] for k, v in sizes_on.items()},
                "batch_stats_on": sizes_on,
                "batch_stats_off": sizes_off,
                "queue_ms_on": queue_ms_delta(on_before, on_after),
                "queue_ms_off": queue_ms_delta(off_before, off_after),
                "largest_batch": largest,
                "largest_batch_ms": batch_ms,
                "p95_bound_ms": bound,
                "p95_pass": s["on"]["p95_ms"] <= bound,
            }

        comps["dynamic_batching"] = await section("dynamic batching on/off", deadline, batching)

        async def fanout():
            return await measure_fanout(router, singles, [p.data for p in photos], rounds=plan.hop_rounds,
                                        warm_s=plan.warm_s, window_s=plan.hop_window_s)

        comps["fanout"] = (await section("fan-out", deadline, fanout)) if router and singles else \
            {"measured": False, "reason": not_measured_reason()}

        async def sweep():
            points = []
            main = comps.get("suite_overhead", {})
            if main.get("measured"):
                points.append({"concurrency": main["concurrency"],
                               "suite_rps": main["variants"]["suite"]["throughput_rps"],
                               "bare_rps": main["variants"]["bare_triton"]["throughput_rps"],
                               "suite_p50_ms": main["variants"]["suite"]["p50_ms"],
                               "bare_p50_ms": main["variants"]["bare_triton"]["p50_ms"]})
            for conc in plan.sweep:
                if deadline.expired():
                    break
                variants = await suite_vs_bare(conc, plan.sweep_rounds, plan.sweep_window_s, plan.sweep_point_max_s)
                s = {v.name: v.summary() for v in variants}
                points.append({"concurrency": conc, "suite_rps": s["suite"]["throughput_rps"],
                               "bare_rps": s["bare_triton"]["throughput_rps"],
                               "suite_p50_ms": s["suite"]["p50_ms"], "bare_p50_ms": s["bare_triton"]["p50_ms"]})
            return {"model": DET, "points": sorted(points, key=lambda p: p["concurrency"])}

        comps["sweep"] = await section("throughput vs concurrency", deadline, sweep)
    return comps


def byom_rounds(plan: Plan) -> Rounds:
    return Rounds(rounds=min(plan.rounds, 4), warm_s=plan.warm_s, window_s=plan.window_s, max_s=plan.batching_max_s,
                  concurrency=plan.suite_concurrency, batching_concurrency=plan.batching_concurrency)


def byom_comparisons(plan: Plan, deadline: Deadline, logs: Path, accept_license: str | None) -> dict:
    """Bring your own model (bench/byom.py), on a stack of its own; not in smoke mode
    (YOLO11n at 640 px is seconds per round trip on a loaded 2-core machine). It runs after
    the soft budget too: the whole-suite comparisons before it usually spend that, and its
    own rounds are capped (about 4 minutes with its Triton's start)."""
    if plan.mode == "smoke":
        return not_measured("not measured in smoke mode (a YOLO11n export at 640 px; `python -m bench --byom-only`)")
    log.info("-- bring your own model at %.0fs", deadline.elapsed())
    return measure_byom(byom_rounds(plan), accept_license=accept_license, logs=logs)


def meta(plan: Plan) -> dict:
    full_machine, short_machine = machine()
    return {
        "mode": plan.mode,
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "machine": full_machine,
        "machine_short": short_machine,
        "loadavg_start": loadavg(),
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, "-m", "bench", *sys.argv[1:]]),
        "commit": commit(),
        "versions": versions(),
        "plan": asdict(plan),
        "profile": "cpu",
    }


def run_byom_only(plan: Plan, out: Path, accept_license: str | None) -> dict:
    """`--byom-only`: the bring-your-own-model comparisons alone, to bench_byom.json/.md."""
    deadline = Deadline(plan.budget_s)
    result: dict = {"meta": meta(plan), "stages": {}}
    result["comparisons"] = measure_byom(byom_rounds(plan), accept_license=accept_license, logs=out / "logs" / "byom")
    result["targets"] = report.byom_rows(result["comparisons"])
    result["meta"]["loadavg_end"] = loadavg()
    result["meta"]["wall_s"] = deadline.elapsed()
    report.write(result, out, stem="bench_byom")
    return result


def run(plan: Plan, out: Path, router: str | None = None, singles: dict[str, str] | None = None,
        accept_license: str | None = None) -> dict:
    deadline = Deadline(plan.budget_s)
    result: dict = {"meta": meta(plan)}
    log.info("-- per-image CPU stages")
    result["stages"] = stages.measure(input_size=image_size(plan.detector), budget_s=plan.stage_budget_s)
    log.info("stages done at %.0fs", deadline.elapsed())
    triton_models = [plan.detector, plan.detector + NOBATCH, IDENTITY]
    with Stack(triton_models=triton_models, service_models=[plan.detector, IDENTITY],
               keep_logs=out / "logs") as stack:
        result["meta"]["startup_s"] = stack.startup_s
        log.info("servers up at %.0fs: %s", deadline.elapsed(), stack.startup_s)
        result["comparisons"] = asyncio.run(measure(stack, plan, deadline, router, singles or {}))
    if router is None and plan.mode == "full" and not deadline.expired():
        result["comparisons"].update(whole_suite_comparisons(plan, out / "logs"))
    result["comparisons"].update(byom_comparisons(plan, deadline, out / "logs" / "byom", accept_license))
    result["targets"] = report.targets(result["comparisons"], result["stages"])
    result["meta"]["loadavg_end"] = loadavg()
    result["meta"]["wall_s"] = deadline.elapsed()
    report.write(result, out)
    return result


def whole_suite_comparisons(plan: Plan, logs: Path) -> dict:
    """Start the whole suite (Triton with every model, the three services, the router)
    on free loopback ports, as `make run` does; compare the router with the services
    (fan-out) and a detection-only `prelabel annotate` with the model in-process (bulk)."""
    from prelabel.core.tasks import TASKS
    from services.devstack import DevstackSettings
    from services.devstack import Stack as SuiteStack
    from services.embedded_triton.launcher import free_port
    from services.embedded_triton.settings import TritonSettings

    ports = [free_port() for _ in range(4)]
    settings = DevstackSettings(router_port=ports[0], detection_port=ports[1], segmentation_port=ports[2],
                                keypoints_port=ports[3], metrics_base_port=0, run_dir=logs / "fanout")
    suite = SuiteStack(settings, TritonSettings(grpc_port=0, http_port=0, metrics_port=0))

    async def go() -> dict:
        await suite.wait_serving()
        # The detection-stack probes point at processes that have stopped.
        load.PROBES.clear()
        load.STAGES = None
        a = suite.addresses()
        singles = {t.name: a[t.service] for t in TASKS}  # each task's service
        return await measure_fanout(a["router"], singles, [p.data for p in images.jpegs()],
                                    rounds=plan.hop_rounds, warm_s=plan.warm_s, window_s=plan.hop_window_s * 2)

    log.info("-- fan-out and bulk: starting the whole suite")
    results: dict = {}
    try:
        suite.start()
        results["fanout"] = asyncio.run(go())
    except Exception as exc:  # report, don't lose the rest of the run
        log.exception("fan-out failed")
        results["fanout"] = {"measured": False, "reason": f"fan-out failed: {exc}"}
    try:
        if "fanout" in results and suite.procs:
            log.info("-- bulk: prelabel annotate (detect) vs NanoDet in-process")
            results["bulk"] = measure_bulk(suite.addresses()["router"], copies=BULK_IMAGES, rounds=2)
    except Exception as exc:
        log.exception("bulk failed")
        results["bulk"] = {"measured": False, "reason": f"bulk failed: {exc}"}
    finally:
        suite.stop()
    return results


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny counts: checks the harness in about a minute")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results", help="results folder")
    parser.add_argument("--router", default=None, help="router address HOST:PORT for the fan-out comparison")
    parser.add_argument("--fanout-single", action="append", default=[], metavar="TASK=HOST:PORT",
                        help="a service the router fans out to (detect, segment, keypoints, faces); repeat")
    parser.add_argument("--budget-s", type=float, default=None, help="soft time budget for the comparisons")
    parser.add_argument("--byom-only", action="store_true",
                        help="only the bring-your-own-model comparisons (bench/byom.py), to bench_byom.json/.md")
    parser.add_argument("--accept-license", default=None, metavar="SPDX",
                        help="AGPL-3.0: measure the real YOLO11n if `prelabel models pull` has cached its export "
                             "(nothing is fetched); otherwise a random-initialised yolo11n.yaml export")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # `timeout`, CI: stop the servers on the way out
    plan = SMOKE if args.smoke else FULL
    if args.budget_s is not None:
        plan = Plan(**{**asdict(plan), "budget_s": args.budget_s})
    singles = dict(item.split("=", 1) for item in args.fanout_single)
    if args.byom_only:
        result = run_byom_only(plan, args.out, args.accept_license)
    else:
        result = run(plan, args.out, args.router, singles, args.accept_license)
    print(report.markdown(result))
    stem = "bench_byom" if args.byom_only else "bench"
    print(f"\nwritten: {args.out}/{stem}.json, {stem}.md, {', '.join(result.get('plots', []))}")


if __name__ == "__main__":
    main()
