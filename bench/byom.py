"""Bring your own model (issue 18): an Ultralytics detect export served as a user model.

- throughput: Detect through the detection service (the export in a user model folder,
  `prelabel models add`'s layout, in the bench's Triton) against the same ONNX run
  in-process with onnxruntime on the same cores (same decode + letterbox of the JPEG, same
  fit to the graph's input and decode of its outputs, 2 threads, one image at a time);
  interleaved rounds at concurrency 8 (target >= 0.9);
- dynamic batching on/off: a `dynamic=True` export (a dynamic batch axis: a Triton batch
  runs in one onnxruntime call) served with its config as added (max_batch_size 8, dynamic
  batcher) and as a twin without batching (max_batch_size 1, no batcher), bare tritonclient.

Which export: the real YOLO11n only when its license is accepted (`--accept-license
AGPL-3.0`) and its export is already cached by `prelabel models pull` (nothing is ever
fetched here); otherwise a random-initialised `yolo11n.yaml` export, made offline by the
onnx-export tool venv (tests/tools/probes/ultralytics_export.py) and cached under the tools
cache as tests/tools/test_ultralytics_layouts.py caches its exports (same spec and key, a
name of its own). The
compute of both is the same graph; the random one's scores spread so decode sees many
candidates. Without the venv or the file the stage says "not measured: <reason>".
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

from bench import images, load
from bench.clients import Clients, batch_stats_delta, detect_request, scrape_stages
from bench.load import Variant, interleave
from bench.repo import REPO_ROOT, _model_config_pb2
from bench.servers import Stack

log = logging.getLogger("bench")

MODEL = "byom_yolo11n"  # the throughput comparison's model (batch-1 export)
DYNAMIC = "byom_yolo11n_dynamic"  # the batching comparison's (dynamic batch axis)
DYNAMIC_OFF = DYNAMIC + "_nobatch"
IN_PROCESS_THREADS = 2
TOOL = "onnx-export"
PROBE = REPO_ROOT / "tests" / "tools" / "probes" / "ultralytics_export.py"
EXPORT_TIMEOUT_S = 900
#: The photos test_ultralytics_layouts.py calibrates the random weights on (part of its cache key).
CALIBRATION = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")


class NotAvailable(RuntimeError):
    """The export cannot be had here (the message is the report's reason)."""


@dataclass(frozen=True)
class ByomExports:
    model: Path  # batch-1 export for the throughput comparison
    dynamic: Path  # dynamic-batch export for the batching comparison
    what: str  # which weights, for the report


def _tools_cache() -> Path:
    return Path(os.environ.get("PRELABEL_TOOLS_CACHE", Path.home() / ".cache" / "prelabel" / "tools"))


def _random_spec(dynamic: bool) -> dict:
    from bench.images import skimage_data

    return {"model": "yolo11n.yaml", "imgsz": [640, 640], "export": {"dynamic": True} if dynamic else {},
            "calibrate": [str(skimage_data() / p) for p in CALIBRATION]}


def _tool_python() -> Path:
    """The onnx-export venv's python if that venv is already complete (never installed here)."""
    from scripts.tool_venv import MARKER, SPECS, spec_hash

    venv = _tools_cache() / f"{TOOL}-{spec_hash((SPECS / f'{TOOL}.txt').read_text())}"
    if not (venv / MARKER).is_file():
        raise NotAvailable(f"the {TOOL} tool venv is not built ({venv}; `python scripts/tool_venv.py {TOOL}`)")
    return venv / "bin" / "python"


def random_export(name: str, dynamic: bool) -> Path:
    """The random-initialised yolo11n.yaml export, cached like test_ultralytics_layouts.py's."""
    from scripts.tool_venv import SPECS

    spec = _random_spec(dynamic)
    key = hashlib.sha256("\n".join([json.dumps(spec, sort_keys=True), PROBE.read_text(),
                                    (SPECS / f"{TOOL}.txt").read_text()]).encode()).hexdigest()[:12]
    out = _tools_cache() / "exports" / f"{name}-{key}.onnx"
    if out.is_file():
        return out
    python = _tool_python()
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_suffix(f".{os.getpid()}.part")
    with tempfile.TemporaryDirectory(prefix="bench-export-") as home:
        env = {**os.environ, "HOME": home, "YOLO_CONFIG_DIR": str(Path(home) / "ultralytics"),
               "PYTHONPATH": str(REPO_ROOT)}
        done = subprocess.run([str(python), str(PROBE), json.dumps(spec), str(part)], capture_output=True, text=True,
                              timeout=EXPORT_TIMEOUT_S, env=env, cwd=home)
    if done.returncode != 0:
        raise NotAvailable(f"exporting {name} failed: {done.stderr.strip().splitlines()[-1:]}")
    part.replace(out)
    return out


def accepted_yolo11n(accept_license: str | None) -> Path | None:
    """The cached export of the real YOLO11n if its license is accepted; never fetched."""
    from prelabel.core.models import catalog
    from prelabel.core.models.store import default_cache_dir
    from prelabel.opt_in_models import checkpoint_path

    if accept_license != catalog.YOLO11N.license:
        return None
    onnx = checkpoint_path(catalog.YOLO11N, default_cache_dir()).with_suffix(".onnx")
    return onnx if onnx.is_file() else None


def exports(accept_license: str | None) -> ByomExports:
    real = accepted_yolo11n(accept_license)
    dynamic = random_export("bench-dynamic-detect", dynamic=True)
    if real is not None:
        return ByomExports(real, dynamic, "YOLO11n, real COCO weights (AGPL-3.0 accepted; cached export); "
                                          "batching: random-initialised yolo11n.yaml dynamic export")
    return ByomExports(random_export("bench-detect", dynamic=False), dynamic,
                       "random-initialised yolo11n.yaml exports (the same graph as YOLO11n; real weights "
                       "not accepted or not cached)")


def add_to_repository(repo: Path, found: ByomExports) -> list[str]:
    """The user model folders in the bench's repository, as `prelabel models add` writes
    them, plus the dynamic export's twin without batching; returns their names."""
    from prelabel.core.models.user_models import add_model

    add_model(MODEL, found.model, repository=repo)
    add_model(DYNAMIC, found.dynamic, repository=repo)
    twin = repo / DYNAMIC_OFF
    twin.mkdir()
    for entry in (repo / DYNAMIC).iterdir():
        if entry.name not in ("config.pbtxt", "configs"):
            (twin / entry.name).symlink_to(entry.resolve())
    config = _model_config_pb2().ModelConfig()
    text_format.Parse((repo / DYNAMIC / "config.pbtxt").read_text(), config)
    config.name = DYNAMIC_OFF
    config.max_batch_size = 1
    config.ClearField("dynamic_batching")
    (twin / "config.pbtxt").write_text("# Generated by bench/byom.py: max_batch_size 1, no dynamic batcher.\n"
                                       + text_format.MessageToString(config))
    return [MODEL, DYNAMIC, DYNAMIC_OFF]


class InProcess:
    """The export run as a script would: the suite's decode + letterbox of the JPEG, the
    model's fit to the graph input, onnxruntime, the same decoder; one image at a time."""

    def __init__(self, path: Path, threads: int = IN_PROCESS_THREADS):
        from prelabel.core.models.ultralytics_layouts import read_layout
        from services.common.settings import ServiceSettings
        from services.modelkit.ultralytics_model import UltralyticsParameters, open_onnx

        self.layout = read_layout(path)
        self.session = open_onnx(path, threads, None)
        self.names = [o.name for o in self.session.get_outputs()]
        self.size = max(self.layout.input_height, self.layout.input_width)  # IMAGE as the config declares it
        self.settings = ServiceSettings()
        # The served model's defaults (class attributes of the parameters dataclass).
        self.floor, self.iou = UltralyticsParameters.box_score_floor, UltralyticsParameters.nms_iou
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="bench-in-process")

    def detect(self, data: bytes) -> int:
        from services.common.letterbox import boxes_to_source
        from services.common.preprocess import prepare_image
        from services.modelkit.families.ultralytics_decode import decode, fit_to_input, to_input

        image = prepare_image(data, (self.size, self.size), self.settings).tensor[0]
        fit = fit_to_input(image, self.layout)
        [raw] = [dict(zip(self.names, (o[0] for o in self.session.run(
            self.names, {self.layout.input_name: to_input(fit.pixels[None], self.layout)})), strict=True))]
        det = decode(self.layout, raw, score_floor=self.floor, iou=self.iou, max_det=100)
        return len(boxes_to_source(det.boxes, fit.geometry))

    async def call(self, data: bytes) -> int:
        """One image on the single worker thread: concurrent callers queue, as a loop would."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.detect, data)

    def close(self) -> None:
        self.executor.shutdown(wait=True)


@dataclass(frozen=True)
class Rounds:
    rounds: int
    warm_s: float
    window_s: float
    max_s: float  # per comparison
    concurrency: int = 8
    batching_concurrency: int = 16


def not_measured(reason: str) -> dict:
    return {"byom_throughput": {"measured": False, "reason": reason},
            "byom_batching": {"measured": False, "reason": reason}}


async def _guarded(name: str, coro) -> dict:
    try:
        return await coro
    except Exception as exc:  # noqa: BLE001 - one broken comparison must not hide the other
        log.exception("%s failed", name)
        return {"measured": False, "reason": f"error: {type(exc).__name__}: {exc}"}


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


async def _throughput(c: Clients, found: ByomExports, r: Rounds) -> dict:
    photos = images.jpegs()
    in_process = InProcess(found.model)
    try:
        requests = [detect_request(p.data, MODEL) for p in photos]
        await c.detect(requests[0])  # first inferences are slow: unrecorded
        in_process.detect(photos[0].data)
        variants = [Variant("suite", c.detect, requests), Variant("in_process", in_process.call, [p.data for p in photos])]
        await interleave(variants, rounds=r.rounds, concurrency=r.concurrency, warm_s=r.warm_s, window_s=r.window_s,
                         max_s=r.max_s)
    finally:
        in_process.close()
    suite, direct = variants
    return {
        "measured": True, "model": MODEL, "weights": found.what, "export": found.model.name, "concurrency": r.concurrency,
        "threads_in_process": IN_PROCESS_THREADS, "variants": {v.name: v.summary() for v in variants},
        "ratio": _ratio(suite.throughput, direct.throughput),
        "per_round_ratio": [a.throughput / b.throughput if b.throughput else None
                            for a, b in zip(suite.segments, direct.segments, strict=False)],
        "rounds": len(suite.segments),
        "note": "in-process: the same decode + letterbox, fit to the graph input and decoder, one image at a time",
    }


async def _batching(c: Clients, found: ByomExports, r: Rounds) -> dict:
    from services.common.preprocess import prepare_image
    from services.common.settings import ServiceSettings

    size = InProcess(found.dynamic).size
    settings = ServiceSettings()
    tensors = [prepare_image(p.data, (size, size), settings).tensor for p in images.jpegs()]
    outputs = await c.outputs_of(DYNAMIC)
    for model in (DYNAMIC, DYNAMIC_OFF):
        await c.bare_triton(model, outputs)(tensors[0])
    before = {m: await c.triton_stats(m) for m in (DYNAMIC, DYNAMIC_OFF)}
    variants = [Variant("on", c.bare_triton(DYNAMIC, outputs), tensors),
                Variant("off", c.bare_triton(DYNAMIC_OFF, outputs), tensors)]
    await interleave(variants, rounds=r.rounds, concurrency=r.batching_concurrency, warm_s=r.warm_s,
                     window_s=r.window_s, max_s=r.max_s)
    on, off = variants
    sizes = {m: batch_stats_delta(before[m], await c.triton_stats(m)) for m in (DYNAMIC, DYNAMIC_OFF)}
    return {
        "measured": True, "model": DYNAMIC, "export": found.dynamic.name, "concurrency": r.batching_concurrency,
        "via": "bare tritonclient; on: the config as `models add` writes it (max_batch_size 8, dynamic batcher); "
               "off: max_batch_size 1, no batcher",
        "variants": {v.name: v.summary() for v in variants},
        "ratio": _ratio(on.throughput, off.throughput),
        "per_round_ratio": [a.throughput / b.throughput if b.throughput else None
                            for a, b in zip(on.segments, off.segments, strict=False)],
        "rounds": len(on.segments),
        "batch_sizes_on": {k: v["executions"] for k, v in sizes[DYNAMIC].items()},
        "batch_stats_on": sizes[DYNAMIC], "batch_stats_off": sizes[DYNAMIC_OFF],
    }


def measure_byom(r: Rounds, *, accept_license: str | None, logs: Path | None) -> dict:
    """{"byom_throughput": ..., "byom_batching": ...}, each "not measured: <reason>" when
    the exports cannot be had; the stack (Triton with the user model folders, the detection
    service serving the batch-1 one) is this stage's own."""
    try:
        found = exports(accept_license)
    except (NotAvailable, OSError, subprocess.SubprocessError) as exc:
        return not_measured(f"not measured: {exc}")
    log.info("-- bring your own model: %s", found.what)
    try:
        return _measure_on_stack(r, found, logs)
    except Exception as exc:  # noqa: BLE001 - a stack that does not start must not fail the bench
        log.exception("bring your own model failed")
        return not_measured(f"error: {type(exc).__name__}: {exc}")
    finally:
        load.PROBES.clear()
        load.STAGES = None


def _measure_on_stack(r: Rounds, found: ByomExports, logs: Path | None) -> dict:
    with Stack(triton_models=[], service_models=[MODEL], echo=False, keep_logs=logs,
               add_models=lambda repo: add_to_repository(repo, found)) as stack:
        load.PROBES.clear()
        load.PROBES.update(stack.cpu_probes())
        load.STAGES = lambda: scrape_stages(stack.detection_metrics_url)

        async def go() -> dict:
            async with Clients(stack.detection_address, stack.triton_url) as c:
                return {"byom_throughput": await _guarded("byom throughput", _throughput(c, found, r)),
                        "byom_batching": await _guarded("byom batching", _batching(c, found, r))}

        out = asyncio.run(go())
        out["byom_throughput"]["startup_s"] = stack.startup_s
    return out
