from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from prelabel.core.models.user_models import user_models_dir

REPO_ROOT = Path(__file__).resolve().parents[2]


class TritonSettings(BaseSettings):
    """Settings of the embedded tritonserver process (env prefix PRELABEL_TRITON_)."""

    model_config = SettingsConfigDict(env_prefix="PRELABEL_TRITON_", extra="ignore")

    model_repository: Path = REPO_ROOT / "model_repository"
    """Standard Triton model repository (the same files the GPU container serves)."""

    user_model_repository: Path = Field(default_factory=user_models_dir)
    """The user model repository (`prelabel models add`; default $PRELABEL_USER_MODELS_DIR or
    ~/.local/share/prelabel/models), served beside `model_repository` when it exists: Triton
    takes several --model-repository, and a model name must be unique across them."""

    host: str = "127.0.0.1"
    """Address every Triton endpoint binds to. Loopback by default: only local
    services and Prometheus should reach Triton."""

    grpc_port: int = 8001
    """gRPC inference port (0 picks a free port)."""

    allow_http: bool = False
    """Serve Triton's HTTP endpoint too (curl-style debugging). Off: the services and the
    launcher's readiness use gRPC, and a closed endpoint exposes nothing."""

    http_port: int = 8000
    """HTTP port when allow_http is on (0 picks a free port)."""

    metrics_port: int = 8002
    """Prometheus metrics port, nv_inference_* (0 picks a free port)."""

    profile: str = "cpu"
    """Model configuration profile: "cpu" uses each model's config.pbtxt, any other
    name N uses model_repository/<model>/configs/N.pbtxt (--model-config-name)."""

    models: list[str] = []
    """Load only these models (explicit model control); empty loads every model."""

    startup_timeout_s: float = 300.0
    """How long to wait for every model to be ready."""

    exit_timeout_s: int = 10
    """Grace Triton gives in-flight requests on SIGTERM (--exit-timeout-secs)."""

    allow_random_weights: bool = False
    """Passed to the models as PRELABEL_ALLOW_RANDOM_WEIGHTS. Every model of the default
    (CPU) profile has real weights (`prelabel models pull`); only tests that say so, or
    a repository of custom architectures, turn this on."""

    log_verbose: int = 0
