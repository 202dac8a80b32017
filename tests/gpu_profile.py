"""The GPU profile (model_repository/<model>/configs/gpu.pbtxt) served by the embedded
Triton on CPU, for tests: each model's GPU config becomes the config.pbtxt of a
test-only repository, rewritten only where a CPU needs it -- one CPU instance and a
shrunk IMAGE input (a torchvision R50 R-CNN at 640 px costs 7-10 s per image on two
cores). Parameters (architecture, implementation, thresholds, threads) and every other
tensor stay exactly as shipped, so the model code and the services run what the GPU
profile names.

No R-CNN weights exist offline: the server runs with random initialisation allowed and
every weights lookup pointed at empty folders, so the R-CNNs always serve RANDOM weights
(and say so) even on a machine whose torch hub cache holds the published files.
"""
from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from services.embedded_triton.launcher import EmbeddedTriton
from services.embedded_triton.settings import TritonSettings
from tests.triton_server import running_triton

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_REPOSITORY = REPO_ROOT / "model_repository"

#: IMAGE side of the shrunk configs: the R50 R-CNNs answer in ~1-2 s on one core here
#: (their RoI heads on ~700 proposals dominate; smaller inputs save little more).
SHRUNK_IMAGE_SIDE = 128


def gpu_models() -> list[str]:
    """Every model folder that ships a GPU profile."""
    return sorted(p.parent.parent.name for p in MODEL_REPOSITORY.glob("*/configs/gpu.pbtxt"))


def shrunk_gpu_config(model: str, image_side: int = SHRUNK_IMAGE_SIDE) -> model_config_pb2.ModelConfig:
    """The model's GPU config with one CPU instance and an `image_side` square IMAGE."""
    text = (MODEL_REPOSITORY / model / "configs" / "gpu.pbtxt").read_text()
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    image = next(t for t in config.input if t.name == "IMAGE")
    height, width, channels = image.dims
    assert height == width, f"{model}: the GPU profile's IMAGE is not square ({height}x{width})"
    image.dims[:] = [image_side, image_side, channels]
    del config.instance_group[:]
    config.instance_group.add(kind=model_config_pb2.ModelInstanceGroup.KIND_CPU, count=1)
    return config


def gpu_profile_repository(into: Path, models: list[str] | None = None,
                           image_side: int = SHRUNK_IMAGE_SIDE) -> Path:
    """A model repository at `into` whose config.pbtxt files are the shrunk GPU configs."""
    for model in models if models is not None else gpu_models():
        shutil.copytree(MODEL_REPOSITORY / model / "1", into / model / "1")
        config = shrunk_gpu_config(model, image_side)
        (into / model / "config.pbtxt").write_text(text_format.MessageToString(config))
    return into


@contextlib.contextmanager
def random_weights_triton(repository: Path, workdir: Path) -> Iterator[EmbeddedTriton]:
    """A real tritonserver on `repository` with random weights allowed and no real
    weights to find: PRELABEL_WEIGHTS_DIR unset, the model cache and the torch hub
    (TORCH_HOME) empty folders under `workdir`."""
    empty = workdir / "no-weights"
    (empty / "models").mkdir(parents=True, exist_ok=True)
    (empty / "torch").mkdir(exist_ok=True)
    settings = TritonSettings(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0,
                              allow_random_weights=True)
    env = {"PRELABEL_WEIGHTS_DIR": None, "PRELABEL_MODELS_DIR": str(empty / "models"),
           "TORCH_HOME": str(empty / "torch")}
    with running_triton(settings, workdir / "tritonserver.log", env=env) as server:
        yield server
