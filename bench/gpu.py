"""`python -m bench.gpu [--profile gpu|cpu] [--out DIR]`: the GPU bench (bench/gpu.sh
runs it on a GPU machine; `--profile cpu` dry-runs every step on a CPU box).

For the profile's detectors (coco_detector, face_detector):
  1. the bare model in torch: the model class Triton runs (services.modelkit), called
     directly on letterboxed photos at batch sizes 1..max_batch_size; best images/s;
  2. the real tritonserver (--model-config-name=<profile>) and the detection service,
     then interleaved rounds at fixed concurrency: Detect through the suite vs bare
     tritonclient on the same model (images/s, p50, p99), and for coco_detector
     dynamic batching on vs off (a no-batching twin in the same server);
  3. added latency per hop with bench_identity at concurrency 1.
Writes gpu.json and gpu.md. The GPU coco_detector (fasterrcnn_resnet50_fpn_v2) has no
downloadable weights here: it runs with random weights (timings are still valid;
the report says so).
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import math
import os
import shlex
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import images, load
from bench.cli import (
    IDENTITY,
    NOBATCH,
    Deadline,
    _exit_on_sigterm,
    commit,
    loadavg,
    machine,
    ratio,
    section,
    versions,
)
from bench.clients import (
    Clients,
    batch_stats_delta,
    detect_request,
    scrape_stages,
    stage_means_ms,
)
from bench.load import Variant, interleave
from bench.repo import REPO_ROOT, config_for
from bench.servers import Stack

log = logging.getLogger("bench")

COCO, FACE = "coco_detector", "face_detector"


@dataclass(frozen=True)
class GpuPlan:
    profile: str
    models: tuple[str, ...]
    concurrency: int
    rounds: int
    warm_s: float
    window_s: float
    max_s: float  # per comparison: no round starts that would end after it
    hop_rounds: int
    hop_window_s: float
    torch_batches: tuple[int, ...]
    torch_seconds: float  # per batch size
    budget_s: float
    torch_warmup: int = 3


# About 5 minutes on an H100 (start-up included).
GPU = GpuPlan(profile="gpu", models=(COCO, FACE), concurrency=32, rounds=3, warm_s=2.0, window_s=4.0, max_s=60,
              hop_rounds=4, hop_window_s=1.5, torch_batches=(1, 2, 4, 8, 16), torch_seconds=1.5, budget_s=330)
# Dry run on a CPU box: the same steps, tiny counts (checks the script, not the numbers).
CPU_DRY = GpuPlan(profile="cpu", models=(COCO, FACE), concurrency=4, rounds=2, warm_s=0.5, window_s=1.0, max_s=15,
                  hop_rounds=2, hop_window_s=0.3, torch_batches=(1,), torch_seconds=0.3, budget_s=150,
                  torch_warmup=1)


def _model_class(model: str):
    if model == COCO:
        from services.modelkit.coco_detector import CocoDetector

        return CocoDetector
    if model == FACE:
        from services.modelkit.face_detector import FaceDetector

        return FaceDetector
    raise ValueError(model)


def bare_torch(model: str, profile: str, batches: tuple[int, ...], seconds: float, warmup: int = 3) -> dict:
    """The model Triton runs, without Triton: services.modelkit's class initialised as
    the Python backend would (same config, same device kind), `infer` on uint8 batches
    of letterboxed photos. Includes the uint8 -> device copy and the output padding."""
    import numpy as np
    import torch
    from google.protobuf.json_format import MessageToDict

    from services.common.preprocess import prepare_image
    from services.common.settings import ServiceSettings

    config = config_for(model, profile)
    kind = "GPU" if any(g.kind == g.KIND_GPU for g in config.instance_group) and torch.cuda.is_available() else "CPU"
    instance = _model_class(model)()
    started = time.perf_counter()
    instance.initialize({
        "model_config": json.dumps(MessageToDict(config, preserving_proto_field_name=True)),
        "model_name": model,
        "model_instance_kind": kind,
        "model_instance_device_id": "0",
    })
    load_s = time.perf_counter() - started
    dims = [int(d) for d in config.input[0].dims]
    size = (dims[1], dims[0])
    settings = ServiceSettings()
    frames = np.concatenate([prepare_image(p.data, size, settings).tensor for p in images.jpegs()])
    max_batch = config.max_batch_size or max(batches)
    out = {"device": str(instance.device), "weights": instance.weights.kind, "architecture":
           instance.weights.architecture, "load_s": load_s, "input": list(size), "batches": {}}
    for b in batches:
        if b > max_batch:
            continue
        batch = {"IMAGE": np.ascontiguousarray(np.resize(frames, (b, *frames.shape[1:])))}
        with torch.inference_mode():
            for _ in range(warmup):  # warm-up: cudnn autotuning, allocator
                instance.infer(batch)
            if instance.device.type == "cuda":
                torch.cuda.synchronize()
            n, t0 = 0, time.perf_counter()
            while n < min(3, warmup) or time.perf_counter() - t0 < seconds:
                instance.infer(batch)  # returns numpy: synchronised
                n += 1
            elapsed = time.perf_counter() - t0
        out["batches"][b] = {"images_per_s": b * n / elapsed, "ms_per_batch": elapsed / n * 1e3, "iterations": n}
    best = max(out["batches"].items(), key=lambda kv: kv[1]["images_per_s"])
    out["best_batch"], out["best_images_per_s"] = best[0], best[1]["images_per_s"]
    del instance
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


async def measure(stack: Stack, plan: GpuPlan, deadline: Deadline) -> dict:
    from prelabel.v1 import common_pb2
    from services.common.preprocess import prepare_image
    from services.common.settings import ServiceSettings

    settings = ServiceSettings()
    photos = list(images.jpegs())
    comps: dict[str, dict] = {}
    load.PROBES.clear()
    load.PROBES.update(stack.cpu_probes())
    async with Clients(stack.detection_address, stack.triton_url) as c:
        for model in plan.models:
            dims = [int(d) for d in config_for(model, plan.profile).input[0].dims]
            tensors = [prepare_image(p.data, (dims[1], dims[0]), settings).tensor for p in photos]
            outputs = await c.outputs_of(model)
            requests = [detect_request(p.data, model) for p in photos]

            async def suite_vs_bare(model=model, tensors=tensors, outputs=outputs, requests=requests):
                variants = [Variant("suite", c.detect, requests),
                            Variant("bare_triton", c.bare_triton(model, outputs), tensors)]
                before = await c.triton_stats(model)
                svc_before = scrape_stages(stack.detection_metrics_url)
                await interleave(variants, rounds=plan.rounds, concurrency=plan.concurrency,
                                 warm_s=plan.warm_s, window_s=plan.window_s, max_s=plan.max_s)
                reply = await c.detect(requests[0])
                s = {v.name: v.summary() for v in variants}
                return {
                    "model": model,
                    "concurrency": plan.concurrency,
                    "weights": common_pb2.Weights.Name(reply.provenance.weights).removeprefix("WEIGHTS_").lower(),
                    "architecture": reply.provenance.architecture,
                    "variants": s,
                    "ratio": ratio(s["suite"]["throughput_rps"], s["bare_triton"]["throughput_rps"]),
                    "service_stage_means_ms": stage_means_ms(svc_before, scrape_stages(stack.detection_metrics_url)),
                    "triton_batches": batch_stats_delta(before, await c.triton_stats(model)),
                }

            comps[f"{model}_suite_vs_triton"] = await section(f"{model}: suite vs bare Triton", deadline, suite_vs_bare)

            if model == COCO:
                async def batching(model=model, tensors=tensors, outputs=outputs):
                    twin = model + NOBATCH
                    on0, off0 = await c.triton_stats(model), await c.triton_stats(twin)
                    variants = [Variant("on", c.bare_triton(model, outputs), tensors),
                                Variant("off", c.bare_triton(twin, outputs), tensors)]
                    await interleave(variants, rounds=plan.rounds, concurrency=plan.concurrency,
                                     warm_s=plan.warm_s, window_s=plan.window_s, max_s=plan.max_s)
                    s = {v.name: v.summary() for v in variants}
                    return {
                        "model": model,
                        "concurrency": plan.concurrency,
                        "variants": s,
                        "ratio": ratio(s["on"]["throughput_rps"], s["off"]["throughput_rps"]),
                        "batch_stats_on": batch_stats_delta(on0, await c.triton_stats(model)),
                        "batch_stats_off": batch_stats_delta(off0, await c.triton_stats(twin)),
                    }

                comps[f"{model}_batching"] = await section(f"{model}: batching on/off", deadline, batching)

        tiny = images.tiny_jpeg()
        id_dims = [int(d) for d in config_for(IDENTITY, plan.profile).input[0].dims]
        id_outputs = await c.outputs_of(IDENTITY)

        async def hop():
            tensor = prepare_image(tiny.data, (id_dims[1], id_dims[0]), settings).tensor
            variants = [Variant("suite_tiny", c.detect, [detect_request(tiny.data, IDENTITY)]),
                        Variant("bare_triton", c.bare_triton(IDENTITY, id_outputs), [tensor])]
            await interleave(variants, rounds=plan.hop_rounds, concurrency=1, warm_s=0.3, window_s=plan.hop_window_s,
                             max_s=20)
            s = {v.name: v.summary() for v in variants}
            return {"model": IDENTITY, "variants": s,
                    "added_ms": s["suite_tiny"]["p50_ms"] - s["bare_triton"]["p50_ms"]}

        comps["hop_latency"] = await section("added latency per hop", deadline, hop)
    return comps


def _fmt(x, digits=1):
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown(result: dict) -> str:
    m = result["meta"]
    lines = [
        f"# prelabel GPU bench (profile {m['profile']})", "",
        f"- date (UTC): {m['date_utc']}",
        f"- machine: {m['machine']}",
        f"- command: `{m['command']}` (wall time {m.get('wall_s', 0):.0f} s)",
        f"- commit: {m['commit']}",
        f"- Triton start-up: {_fmt(m.get('startup_s', {}).get('triton'))} s",
        "",
        ("| Model | Weights | Bare torch, best batch (img/s) | Suite (img/s) | Bare Triton (img/s) | Suite / bare torch | "
         "Suite / bare Triton | Suite p50 / p99 (ms) | Bare Triton p50 / p99 (ms) | Batching on / off |"),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model in m["models"]:
        t = result["torch"].get(model, {})
        s = result["comparisons"].get(f"{model}_suite_vs_triton", {})
        b = result["comparisons"].get(f"{model}_batching", {})
        torch_best = t.get("best_images_per_s")
        weights = t.get("weights") or s.get("weights") or "?"
        if weights == "random":
            weights = "**random weights** (timings valid, labels meaningless)"
        if s.get("measured"):
            sv, bv = s["variants"]["suite"], s["variants"]["bare_triton"]
            lines.append(
                f"| {model} ({t.get('architecture', '')}, {t.get('input', ['?'])[0]} px) | {weights} | "
                f"{_fmt(torch_best)} (batch {t.get('best_batch', '?')}) | {_fmt(sv['throughput_rps'])} | "
                f"{_fmt(bv['throughput_rps'])} | {_fmt(ratio(sv['throughput_rps'], torch_best or 0), 2)} | "
                f"{_fmt(s['ratio'], 2)} | {_fmt(sv['p50_ms'])} / {_fmt(sv['p99_ms'])} | "
                f"{_fmt(bv['p50_ms'])} / {_fmt(bv['p99_ms'])} | "
                + (f"{_fmt(b['ratio'], 2)} ({_fmt(b['variants']['on']['throughput_rps'])} vs "
                   f"{_fmt(b['variants']['off']['throughput_rps'])} img/s)" if b.get("measured") else "—") + " |")
        else:
            lines.append(f"| {model} | {weights} | {_fmt(torch_best)} | {s.get('reason', 'not measured')} | | | | | | |")
    lines += ["", (f"Concurrency {m['plan']['concurrency']} for every suite/Triton row; rounds interleaved "
                   f"({m['plan']['rounds']} x {m['plan']['window_s']} s windows per variant)."), ""]
    hop = result["comparisons"].get("hop_latency", {})
    if hop.get("measured"):
        lines.append(f"- Added latency per hop (bench_identity, tiny JPEG, concurrency 1): {hop['added_ms']:.2f} ms "
                     f"(Detect p50 {hop['variants']['suite_tiny']['p50_ms']:.2f} ms vs bare tritonclient "
                     f"{hop['variants']['bare_triton']['p50_ms']:.2f} ms)")
    lines += ["", "## Bare torch by batch size", ""]
    for model, t in result["torch"].items():
        if "batches" in t:
            lines.append(f"- {model} on {t['device']}: " + ", ".join(
                f"batch {b}: {v['images_per_s']:.1f} img/s ({v['ms_per_batch']:.1f} ms)" for b, v in t["batches"].items()))
        else:
            lines.append(f"- {model}: {t.get('reason', 'not measured')}")
    for key, comp in result["comparisons"].items():
        if comp.get("triton_batches") or comp.get("batch_stats_on"):
            lines.append(f"- {key}: Triton batches {comp.get('triton_batches') or comp.get('batch_stats_on')}")
    return "\n".join(lines) + "\n"


def run(plan: GpuPlan, out: Path) -> dict:
    os.environ.setdefault("PRELABEL_ALLOW_RANDOM_WEIGHTS", "1")
    deadline = Deadline(plan.budget_s)
    full_machine, _ = machine()
    result: dict = {"meta": {
        "profile": plan.profile,
        "models": list(plan.models),
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "machine": full_machine,
        "loadavg_start": loadavg(),
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, "-m", "bench.gpu", *sys.argv[1:]]),
        "commit": commit(),
        "versions": versions(),
        "plan": asdict(plan),
    }, "torch": {}, "comparisons": {}}
    out.mkdir(parents=True, exist_ok=True)

    def save():
        result["meta"]["wall_s"] = deadline.elapsed()
        (out / "gpu.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        (out / "gpu.md").write_text(markdown(result))

    for model in plan.models:
        log.info("-- bare torch: %s", model)
        try:
            result["torch"][model] = bare_torch(model, plan.profile, plan.torch_batches, plan.torch_seconds,
                                                 plan.torch_warmup)
        except Exception as exc:
            log.exception("bare torch %s failed", model)
            result["torch"][model] = {"reason": f"error: {type(exc).__name__}: {exc}"}
        save()
    triton_models = [*plan.models, COCO + NOBATCH, IDENTITY]
    with Stack(triton_models=triton_models, service_models=[*plan.models, IDENTITY], profile=plan.profile,
               echo=False, startup_timeout_s=300, keep_logs=out / "gpu-logs") as stack:
        result["meta"]["startup_s"] = stack.startup_s
        log.info("servers up at %.0fs: %s", deadline.elapsed(), stack.startup_s)
        save()
        result["comparisons"] = asyncio.run(measure(stack, plan, deadline))
    save()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=("gpu", "cpu"), default="gpu",
                        help="gpu: the real run; cpu: dry run of every step with tiny counts")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # `timeout`, CI: stop the servers on the way out
    plan = GPU if args.profile == "gpu" else CPU_DRY
    result = run(plan, args.out)
    print(markdown(result))
    print(f"written: {args.out}/gpu.json, {args.out}/gpu.md")


if __name__ == "__main__":
    main()
