"""Virtualenvs for exporting checkpoints to ONNX with their authors' own code (Ultralytics'
exporter for the opt-in YOLO11n, Meta's segment_anything for SAM): the pinned packages
installed without their dependencies, everything else (torch, numpy, ...) taken from the
environment that runs `prelabel models pull` (the `models` extra) through a .pth file, so
an export venv costs megabytes, not a second torch. Cached under the model cache, keyed by
the Python version and the pins; a venv whose install did not finish is rebuilt."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import sysconfig
from importlib.util import find_spec
from pathlib import Path

PIP_TIMEOUT_S = 1200


class ExportError(RuntimeError):
    """A checkpoint could not be fetched, checked or exported (the message says why)."""


def _say(message: str) -> None:
    print(f"prelabel models: {message}", file=sys.stderr, flush=True)


def export_venv(cache_dir: Path, folder: str, packages: dict[str, str], what: str) -> Path:
    """The python of the export venv for `packages` (name -> version) under
    cache_dir/folder; `what` names it in messages ("the SAM exporter")."""
    if find_spec("torch") is None:
        raise ExportError(f"{what} needs torch here (pip install 'prelabel[models]')")
    pins = sorted(f"{k}=={v}" for k, v in packages.items())
    key = hashlib.sha256(json.dumps([sys.version_info[:2], pins]).encode()).hexdigest()[:16]
    venv = cache_dir / folder / key
    python = venv / "bin" / "python"
    if (venv / ".installed").is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    _say(f"creating the virtualenv of {what}: {venv} ({', '.join(pins)}; once)")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True, timeout=60).stdout.strip())
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                               "--disable-pip-version-check", "--target", str(site), *pins],
                              capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ExportError(f"installing {what} did not finish in {PIP_TIMEOUT_S}s") from None
    if done.returncode != 0:
        raise ExportError(f"installing {what} ({', '.join(pins)}) failed:\n{done.stderr[-2000:]}")
    # After the venv's own packages: this environment's torch, numpy, ...
    here = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "prelabel_host_env.pth").write_text("\n".join(here) + "\n")
    (venv / ".installed").write_text("\n".join(pins) + "\n")
    return python
