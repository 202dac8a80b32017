"""`make run`: embedded Triton + every service + the router on localhost, a pre-label
pass over real sample photos with a short summary, then serve until Ctrl-C."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from google.rpc import code_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic_settings import BaseSettings, SettingsConfigDict

from prelabel.core.models.user_models import list_user_models
from prelabel.v1 import common_pb2, detection_pb2, detection_pb2_grpc, prelabel_pb2, prelabel_pb2_grpc
from services.detection.settings import DetectionSettings
from services.embedded_triton.launcher import EmbeddedTriton
from services.embedded_triton.settings import TritonSettings

log = logging.getLogger("devstack")

SAMPLES = ["astronaut.png", "camera.png", "coffee.png", "chelsea.png", "motorcycle_left.png"]
WEIGHTS = {v: k.removeprefix("WEIGHTS_").lower() for k, v in common_pb2.Weights.items()}


class DevstackSettings(BaseSettings):
    """Ports of `make run` (env prefix PRELABEL_DEV_)."""

    model_config = SettingsConfigDict(env_prefix="PRELABEL_DEV_", extra="ignore")

    router_port: int = 50051
    detection_port: int = 50052
    segmentation_port: int = 50053
    keypoints_port: int = 50054
    metrics_base_port: int = 9091  # router 9091, detection 9092, segmentation 9093, keypoints 9094
    run_dir: Path = Path(".run")
    samples: list[str] = SAMPLES

    # A user model (`prelabel models add`) the router uses for a task; empty keeps the
    # default. Every user model is served by name either way (Detect's `model`).
    detect_model: str = ""
    """PRELABEL_DEV_DETECT_MODEL: the detector of the detect task (a detect/RT-DETR export)."""

    segment_model: str = ""
    """PRELABEL_DEV_SEGMENT_MODEL: the segment task's model (a segment export)."""

    keypoints_model: str = ""
    """PRELABEL_DEV_KEYPOINTS_MODEL: the keypoints task's person model (a pose export of
    COCO's 17 keypoints)."""

    click_model: str = ""
    """PRELABEL_DEV_CLICK_MODEL: the SAM pair (`models add --family sam|sam2 NAME`) that answers
    the segmentation service's clicks instead of GrabCut."""


def user_model_env(settings: DevstackSettings, repository: Path) -> dict[str, dict[str, str]]:
    """Per service, the environment that serves the user models of `repository`: the
    detection service takes every detector-head one by name, and the dev settings choose
    which one each task uses."""
    listed = list_user_models(repository)
    users = {m.name: m.head for m in listed}
    chosen = {"detection": ("detect_model", "detector", "PRELABEL_DEFAULT_MODEL"),
              "segmentation": ("segment_model", "promptable_masks", "PRELABEL_SEGMENTATION_MODEL"),
              "keypoints": ("keypoints_model", "keypoints", "PRELABEL_PERSON_KEYPOINT_MODEL")}
    env: dict[str, dict[str, str]] = {"detection": {}, "segmentation": {}, "keypoints": {}}
    detectors = [name for name, head in users.items() if head == "detector"]
    if detectors:
        env["detection"]["PRELABEL_MODELS"] = json.dumps([*DetectionSettings().models, *detectors])
    for service, (field, head, variable) in chosen.items():
        name = getattr(settings, field)
        if not name:
            continue
        if users.get(name) != head:
            found = f"a {users[name]} model" if name in users else "not a user model"
            raise ValueError(f"PRELABEL_DEV_{field.upper()}={name!r}: {found} in {repository}; "
                             f"the {service} service needs a {head} model (`prelabel models list`)")
        env[service][variable] = name
    if settings.click_model:
        if settings.click_model not in {m.pair for m in listed if m.family in ("sam", "sam2")}:
            raise ValueError(f"PRELABEL_DEV_CLICK_MODEL={settings.click_model!r}: no SAM pair of that name in "
                             f"{repository} (`prelabel models add --family sam NAME ...`, `prelabel models list`)")
        env["segmentation"]["PRELABEL_CLICK_MODEL"] = settings.click_model
    return env


def sample_photos(names: list[str]) -> list[Path]:
    import skimage

    data = Path(skimage.__file__).parent / "data"
    return [data / n for n in names if (data / n).is_file()]


class Stack:
    def __init__(self, settings: DevstackSettings, triton_settings: TritonSettings | None = None):
        self.s = settings
        self.triton_settings = triton_settings
        self.procs: dict[str, subprocess.Popen] = {}
        self.triton: EmbeddedTriton | None = None

    def services(self) -> list[tuple[str, int, int]]:
        s = self.s

        def metrics(offset: int) -> int:  # base 0: every process picks a free port
            return 0 if s.metrics_base_port == 0 else s.metrics_base_port + offset

        return [
            ("detection", s.detection_port, metrics(1)),
            ("segmentation", s.segmentation_port, metrics(2)),
            ("keypoints", s.keypoints_port, metrics(3)),
            ("router", s.router_port, metrics(0)),
        ]

    def start(self) -> None:
        self.s.run_dir.mkdir(exist_ok=True)
        print("starting tritonserver (first start loads the models; ~10-30 s)...", flush=True)
        triton_settings = self.triton_settings or TritonSettings()
        users = user_model_env(self.s, triton_settings.user_model_repository)
        self.triton = EmbeddedTriton(triton_settings, log_path=self.s.run_dir / "tritonserver.log").start()
        env = dict(os.environ, PRELABEL_TRITON_URL=self.triton.grpc_url,
                   PRELABEL_DETECTION_ADDR=f"127.0.0.1:{self.s.detection_port}",
                   PRELABEL_SEGMENTATION_ADDR=f"127.0.0.1:{self.s.segmentation_port}",
                   PRELABEL_KEYPOINTS_ADDR=f"127.0.0.1:{self.s.keypoints_port}")
        for name, port, metrics_port in self.services():
            with open(self.s.run_dir / f"{name}.log", "ab") as log_file:  # the child keeps its own copy
                self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", f"services.{name}"],
                    env=dict(env, PRELABEL_GRPC_PORT=str(port), PRELABEL_METRICS_PORT=str(metrics_port),
                             **users.get(name, {})),
                    stdout=log_file, stderr=subprocess.STDOUT,
                )

    async def wait_serving(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        for name, port, _ in self.services():
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                while True:
                    if self.procs[name].poll() is not None:
                        raise RuntimeError(f"{name} exited ({self.procs[name].returncode}); "
                                           f"see {self.s.run_dir / (name + '.log')}")
                    try:
                        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                        if reply.status == health_pb2.HealthCheckResponse.SERVING:
                            break
                    except grpc.aio.AioRpcError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{name} not serving after {timeout_s:.0f}s")
                    await asyncio.sleep(0.2)
            print(f"  {name:<13} 127.0.0.1:{port}  ready", flush=True)

    def addresses(self) -> dict[str, str]:
        return {name: f"127.0.0.1:{port}" for name, port, _ in self.services()}

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.triton is not None:
            self.triton.stop()


REJECT = common_pb2.REVIEW_DECISION_REJECT
OPT_IN_HINT = ("A stronger detector is opt-in: `prelabel models pull --model yolo11n --accept-license AGPL-3.0`, "
               "then `PRELABEL_DEV_DETECT_MODEL=yolo11n make run` uses YOLO11n (39.5 COCO mAP vs NanoDet's ~21-23) "
               "for the detect task. Its weights are AGPL-3.0 (README, 'YOLO11n, opt-in').")


def _top(labels, limit: int = 4) -> str:
    """'person 0.73, chair 0.32' for the highest-scoring labels."""
    ranked = sorted(labels, key=lambda d: -d.score)[:limit]
    return ", ".join(f"{d.category.name or '?'} {d.score:.2f}" for d in ranked) or "-"


def _kept(items, detection_of=lambda x: x):
    return [i for i in items if detection_of(i).review != REJECT]


async def summarise(router_port: int, photos: list[Path]) -> None:
    """Pre-label each photo through the router (every task) and print what was found."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{router_port}") as channel:
        stub = prelabel_pb2_grpc.PreLabelerStub(channel)
        weights_seen: dict[str, str] = {}
        print(f"\n{'image':<22}{'size':>10}{'boxes':>7}{'masks':>7}{'persons':>8}{'faces':>6}"
              f"{'uncert.':>9}{'ms':>7}")
        for path in photos:
            start = time.perf_counter()
            # Rejected drafts too, so the summary can say what the default review band hides.
            reply = await stub.PreLabel(prelabel_pb2.PreLabelRequest(
                image=common_pb2.Image(data=path.read_bytes(), image_id=path.name),
                review_policy=common_pb2.ReviewPolicy(include_rejected=True)), timeout=120)
            ms = (time.perf_counter() - start) * 1000
            for t in reply.task_results:
                if t.HasField("provenance"):
                    weights_seen[t.provenance.model_name] = (
                        f"{WEIGHTS[t.provenance.weights]} ({t.provenance.weights_source or t.provenance.architecture})")
            failed = [f"{prelabel_pb2.Task.Name(t.task)}:{t.code}" for t in reply.task_results
                      if t.status != code_pb2.OK]
            masks = _kept(reply.masks, lambda m: m.detection)
            persons = _kept(reply.person_keypoints, lambda k: k.detection)
            faces = _kept(reply.faces, lambda k: k.detection)
            print(f"{path.name:<22}{reply.image_size.width:>5}x{reply.image_size.height:<4}"
                  f"{len(_kept(reply.detections)):>7}{len(masks):>7}{len(persons):>8}"
                  f"{len(faces):>6}{reply.uncertainty.score:>9.2f}{ms:>7.0f}"
                  f"{'  FAILED ' + ' '.join(failed) if failed else ''}")
            print(f"    boxes: {_top(_kept(reply.detections))}")
            rejected = [d for d in reply.detections if d.review == REJECT]
            if rejected:
                print(f"    under the reject band (hidden by default): {_top(rejected)}")
            if masks:
                areas = ", ".join(f"{m.detection.category.name or '?'} {m.area} px" for m in
                                  sorted(masks, key=lambda m: -m.detection.score)[:3])
                print(f"    masks: {areas}")
            for person in persons[:2]:
                named = {k.name: k for k in person.keypoints}
                nose = named.get("nose")
                where = f" nose at ({nose.x:.0f},{nose.y:.0f})" if nose and nose.visibility else ""
                visible = sum(k.visibility == 2 for k in person.keypoints)
                print(f"    person {person.detection.score:.2f}: {visible}/17 keypoints visible{where}")
            for face in faces[:2]:
                b = face.detection.box
                print(f"    face {face.detection.score:.2f} at ({b.x_min:.0f},{b.y_min:.0f},{b.x_max:.0f},{b.y_max:.0f})")
        print("\nWeights served:")
        for model, weights in sorted(weights_seen.items()):
            print(f"  {model:<14} {weights}")
        print("Small CPU models: scores run low and some labels are drafts to correct (README, "
              "'What the small CPU models miss'); the GPU profile serves the R-CNN models.")


def banner(settings: DevstackSettings, triton_metrics_url: str) -> str:
    """What `make run` prints once the stack serves."""
    base = settings.metrics_base_port
    metrics = "metrics on free ports (see each log)" if base == 0 else f"metrics :{base}-{base + 3}"
    clicks = f"SAM pair {settings.click_model}" if settings.click_model else "GrabCut"
    return (f"Serving: router 127.0.0.1:{settings.router_port} (PreLabeler), detection :{settings.detection_port}, "
            f"segmentation :{settings.segmentation_port} (clicks: {clicks}), keypoints :{settings.keypoints_port}; "
            f"{metrics}, Triton metrics {triton_metrics_url}. Logs in {settings.run_dir}/. Ctrl-C to stop.")


async def compare_detectors(detection_port: int, photos: list[Path], models: list[str]) -> None:
    """The same photos through each detector by name, side by side (kept drafts, top first)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{detection_port}") as channel:
        stub = detection_pb2_grpc.DetectorStub(channel)
        print(f"\nDetectors side by side ({' | '.join(models)}):")
        for path in photos:
            print(f"  {path.name}")
            for model in models:
                reply = await stub.Detect(detection_pb2.DetectRequest(
                    image=common_pb2.Image(data=path.read_bytes(), image_id=path.name), model=model), timeout=120)
                print(f"    {model:<14} {_top(_kept(reply.detections))}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    settings = DevstackSettings()
    stack = Stack(settings)
    stopping = asyncio.Event()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        stack.start()
        await stack.wait_serving()
        assert stack.triton is not None  # set by start()
        await summarise(settings.router_port, sample_photos(settings.samples))
        if settings.detect_model:
            await compare_detectors(settings.detection_port, sample_photos(settings.samples),
                                    [DetectionSettings().default_model, settings.detect_model])
        else:
            print(OPT_IN_HINT)
        print("\n" + banner(settings, stack.triton.metrics_url), flush=True)
        await stopping.wait()

    try:
        asyncio.run(run())
    finally:
        print("stopping...", flush=True)
        stack.stop()


if __name__ == "__main__":
    main()
