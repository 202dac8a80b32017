"""Settings of the model processes Triton starts (read from the server's environment)."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from prelabel.core.models.store import default_cache_dir


class ModelSettings(BaseSettings):
    """Environment of tritonserver, inherited by every Python-backend model."""

    model_config = SettingsConfigDict(env_prefix="PRELABEL_", extra="ignore")

    models_dir: Path = Field(default_factory=default_cache_dir)
    """Cache that `prelabel models pull` fills (converted ONNX models, published
    weights); every file is checked against prelabel/core/models/models.lock.json."""

    weights_dir: Path | None = None
    """Folder with operator-supplied weights: `<triton model name>.pt` (custom) or the
    published torchvision file name (pretrained)."""

    allow_random_weights: bool = False
    """Development only: serve randomly initialised weights when no real weights are
    found. Every response then reports weights=random."""

    random_seed: int = 0
    """Seed for random initialisation, so random-weight runs are reproducible."""
