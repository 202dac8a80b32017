"""Find real weights for a model, or (only when allowed) fall back to random ones,
and say which happened: every response carries this provenance."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

PRETRAINED = "pretrained"
CUSTOM = "custom"
RANDOM = "random"


class MissingWeightsError(RuntimeError):
    """No real weights were found and random weights are not allowed."""


@dataclass(frozen=True)
class WeightsInfo:
    kind: str  # PRETRAINED | CUSTOM | RANDOM
    source: str  # file name + sha256 prefix, package name, or "random (seed N)"
    architecture: str
    sha256: str = ""  # of the file served ("" where weights ship inside a package)
    license: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def load_state_dict(path: Path) -> dict:
    # weights_only: never unpickle arbitrary objects from a weights file.
    return torch.load(path, map_location="cpu", weights_only=True)


def find_weights(
    *,
    model_name: str,
    architecture: str,
    published_file: str | None,
    weights_dir: Path | None,
    models_dir: Path | None = None,
) -> tuple[Path, str] | None:
    """Return (path, kind) of the first real weights file found, or None.

    Order: `<weights_dir>/<model_name>.pt` (custom), `<weights_dir>/<published_file>`,
    the model cache `<models_dir>/torchvision/<published_file>` (what `prelabel models
    pull --profile gpu` fetched and verified) and the torch hub cache
    `<hub>/checkpoints/<published_file>` (pretrained).
    """
    candidates: list[tuple[Path, str]] = []
    if weights_dir is not None:
        candidates.append((weights_dir / f"{model_name}.pt", CUSTOM))
        if published_file:
            candidates.append((weights_dir / published_file, PRETRAINED))
    if models_dir is not None and published_file:
        candidates.append((models_dir / "torchvision" / published_file, PRETRAINED))
    if published_file:
        hub = Path(torch.hub.get_dir()) / "checkpoints" / published_file
        candidates.append((hub, PRETRAINED))
    for path, kind in candidates:
        if path.is_file():
            return path, kind
    return None


def random_weights_info(architecture: str, seed: int) -> WeightsInfo:
    log.warning(
        "!!! %s is running with RANDOM weights (seed %d): its labels are meaningless. "
        "Development only; every response says weights=random. !!!",
        architecture,
        seed,
    )
    return WeightsInfo(kind=RANDOM, source=f"random (seed {seed})", architecture=architecture)


def missing_weights_error(model_name: str, architecture: str, published_file: str | None,
                          weights_dir: Path | None) -> MissingWeightsError:
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    wanted = f"{published_file} in {weights_dir or '$PRELABEL_WEIGHTS_DIR'} or {hub}"
    return MissingWeightsError(
        f"{model_name} ({architecture}): no weights found (looked for {model_name}.pt or "
        f"{wanted}). Provide weights, or set PRELABEL_ALLOW_RANDOM_WEIGHTS=1 for "
        "development (labels will be meaningless)."
    )
