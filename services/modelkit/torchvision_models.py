"""Build torchvision detection models with real or (explicitly allowed) random
weights, sized for a fixed square model input."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torchvision.models import get_model_weights

from prelabel.core.models.store import sha256_file
from services.modelkit.parameters import BoxFloorParameters
from services.modelkit.settings import ModelSettings
from services.modelkit.weights import (
    RANDOM,
    WeightsInfo,
    find_weights,
    load_state_dict,
    missing_weights_error,
    random_weights_info,
)


@dataclass(frozen=True, kw_only=True)
class TorchvisionParameters(BoxFloorParameters):
    """Parameters of the torchvision R-CNN family models."""

    architecture: str
    """A torchvision detection builder (e.g. `fasterrcnn_resnet50_fpn_v2`), or one of the
    builders the implementation defines (services.modelkit.rcnn.LITE_ARCHITECTURES)."""

    box_score_floor: float = 0.001
    """Candidates the model returns (its box_score_thresh); callers choose their own
    threshold per request (the service applies it), down to this floor."""


def published_file(architecture: str) -> str | None:
    """File name of the published COCO weights (as torch hub caches them)."""
    weights = get_model_weights(architecture).DEFAULT
    return Path(weights.url).name


def build_detector(
    *,
    model_name: str,
    architecture: str,
    input_size: int,
    max_detections: int,
    settings: ModelSettings,
    device: torch.device,
    custom_builders: dict[str, Callable[..., torch.nn.Module]] | None = None,
    **kwargs,
) -> tuple[torch.nn.Module, WeightsInfo]:
    """A torchvision R-CNN-family model whose internal resize is a no-op for a
    `input_size` square input (the service letterboxes to exactly that).

    `architecture` names a torchvision builder (published COCO weights are looked
    for) or one of `custom_builders` (no published weights: custom file or random)."""
    if custom_builders and architecture in custom_builders:
        build, file, extra = custom_builders[architecture], None, {}
    else:
        build = getattr(torchvision.models.detection, architecture)
        file = published_file(architecture)
        extra = {"weights": None, "weights_backbone": None}
    found = find_weights(
        model_name=model_name, architecture=architecture, published_file=file,
        weights_dir=settings.weights_dir, models_dir=settings.models_dir,
    )
    if found is None and not settings.allow_random_weights:
        raise missing_weights_error(model_name, architecture, file, settings.weights_dir)
    torch.manual_seed(settings.random_seed)
    model = build(
        min_size=input_size,
        max_size=input_size,
        box_detections_per_img=max_detections,
        **extra,
        **kwargs,
    )
    if found is None:
        info = random_weights_info(architecture, settings.random_seed)
    else:
        path, kind = found
        model.load_state_dict(load_state_dict(path))
        digest = sha256_file(path)
        info = WeightsInfo(kind=kind, source=f"{path.name} sha256:{digest[:12]}", architecture=architecture,
                           sha256=digest, license="BSD-3-Clause (torchvision)" if kind == "pretrained" else "")
    return model.eval().to(device), info


def to_float_images(batch_uint8, device: torch.device) -> list[torch.Tensor]:
    """[B,H,W,3] uint8 -> list of [3,H,W] float in [0,1] (the model normalises)."""
    images = torch.from_numpy(batch_uint8).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    return list(images)


def is_random(info: WeightsInfo) -> bool:
    return info.kind == RANDOM
