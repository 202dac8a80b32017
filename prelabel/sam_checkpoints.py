"""`prelabel models pull --model sam_vit_b` (the GPU profile pulls it too): one of Meta's
Segment Anything checkpoints (prelabel/core/models/catalog.py SAM_CHECKPOINTS) fetched
from its published URL, checked, exported to SAM's ONNX pair with Meta's own code
(prelabel/core/models/convert/sam_to_onnx.py in the SAM export virtualenv) and added to
the user model repository as a SAM pair (NAME_encoder, NAME_decoder), which the
segmentation service answers clicks with when PRELABEL_CLICK_MODEL=NAME.

What is checked, and what could not be: Meta publishes no SHA-256 for these files. The
file name carries the first six hex digits of its MD5, and several projects that download
them record all 32 (the catalog's): a download whose MD5 differs is refused. MD5 catches
a corrupt or substituted file, not a deliberately forged collision. The file's SHA-256 is
printed and written beside it (`<file>.sha256`) for the record. These machines have no
network: the published files were not downloaded here, so neither MD5 was checked against
the real files, only against each other and the file names.

Cache (under the model cache root):

    sam/<published file name>                  the checkpoint (+ .sha256)
    sam/<name>-<md5[:12]>/{encoder,decoder}.onnx  its export
    sam-exporter/<hash of the pins>/           the export virtualenv
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from prelabel import published_files
from prelabel.core.models import catalog, store, user_models
from prelabel.export_venv import ExportError, export_venv

DOWNLOAD_TIMEOUT_S = 30
EXPORT_TIMEOUT_S = 1800  # ViT-L on a CPU takes minutes
EXPORT_SCRIPT = Path(store.__file__).with_name("convert") / "sam_to_onnx.py"


class SamPullError(ExportError):
    pass


def _say(message: str) -> None:
    print(f"prelabel models: {message}", file=sys.stderr, flush=True)


def checkpoint_path(checkpoint: catalog.SamCheckpoint, cache_dir: Path) -> Path:
    return cache_dir / "sam" / checkpoint.file_name


def ensure_checkpoint(checkpoint: catalog.SamCheckpoint, cache_dir: Path, base_url: str | None = None) -> Path:
    """The checkpoint in the cache, downloaded (from `base_url` + its file name when given)
    unless a file with its MD5 is there."""
    target = checkpoint_path(checkpoint, cache_dir)
    if target.is_file() and store.file_digest(target, "md5") == checkpoint.md5:
        return target
    url = f"{base_url.rstrip('/')}/{checkpoint.file_name}" if base_url else checkpoint.url
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.{os.getpid()}.part")
    _say(f"downloading {url}")
    try:
        published_files.download(url, part, DOWNLOAD_TIMEOUT_S)
    except OSError as exc:  # DownloadError too
        part.unlink(missing_ok=True)
        raise SamPullError(f"cannot download {checkpoint.file_name} from {url} ({exc}). "
                           f"Without a network, fetch it elsewhere and put it at {target}.") from None
    md5 = store.file_digest(part, "md5")
    if md5 != checkpoint.md5:
        part.unlink()
        raise SamPullError(f"{checkpoint.file_name}: downloaded file has MD5 {md5}, the published one is "
                           f"{checkpoint.md5}: refused")
    sha256 = store.sha256_file(part)
    target.with_name(target.name + ".sha256").write_text(f"{sha256}  {target.name}\n")
    part.replace(target)
    _say(f"{checkpoint.file_name}: MD5 {md5} as published; SHA-256 {sha256}")
    return target


def export_pair(checkpoint: catalog.SamCheckpoint, weights: Path, cache_dir: Path) -> Path:
    """The folder holding encoder.onnx and decoder.onnx exported from `weights` (kept: a
    second pull reuses it)."""
    out = cache_dir / "sam" / f"{checkpoint.name}-{checkpoint.md5[:12]}"
    if (out / "encoder.onnx").is_file() and (out / "decoder.onnx").is_file():
        return out
    python = export_venv(cache_dir, "sam-exporter", catalog.SAM_EXPORT_PACKAGES, "the SAM exporter")
    _say(f"exporting {weights.name} ({checkpoint.architecture}) to ONNX with segment_anything's code")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        pair = Path(tmp) / "pair"
        try:
            done = subprocess.run([str(python), str(EXPORT_SCRIPT), str(weights), checkpoint.architecture, str(pair)],
                                  capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise SamPullError(f"exporting {weights.name} did not finish in {EXPORT_TIMEOUT_S}s") from None
        if done.returncode != 0:
            raise SamPullError(f"exporting {weights.name} failed:\n{done.stderr[-3000:]}")
        shutil.rmtree(out, ignore_errors=True)
        pair.rename(out)
    return out


def pull_sam(name: str, cache_dir: Path, repository: Path, base_url: str | None = None,
             checkpoints: dict[str, catalog.SamCheckpoint] | None = None) -> list[user_models.UserModel]:
    """Fetch, check, export and add the SAM pair `name`; a pair already added from the same
    export is kept."""
    known = checkpoints if checkpoints is not None else catalog.SAM_CHECKPOINTS
    if name not in known:
        raise SamPullError(f"no SAM checkpoint {name!r}; known: {', '.join(sorted(known))}")
    checkpoint = known[name]
    folder = export_pair(checkpoint, ensure_checkpoint(checkpoint, cache_dir, base_url), cache_dir)
    encoder, decoder = folder / "encoder.onnx", folder / "decoder.onnx"
    wanted = {user_models.sam_model_name(name, "encoder"): store.sha256_file(encoder),
              user_models.sam_model_name(name, "decoder"): store.sha256_file(decoder)}
    added = {m.name: m for m in user_models.list_user_models(repository) if m.name in wanted}
    if {n: m.sha256 for n, m in added.items()} == wanted:
        return list(added.values())
    if added:
        user_models.remove_model(name, repository)
    return user_models.add_sam_model(name, encoder, decoder, license=checkpoint.license, weights=checkpoint.weights,
                                     repository=repository)
