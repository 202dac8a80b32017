"""Which images a bulk run labels: expansion of folders, globs and manifest files, and
sharding.

Every image gets an `image_id`, the string sent to the router and used as the key of the
journal and of every output:

- a file or glob match: the path as found (relative if the argument was relative);
- a folder: the folder argument joined with the file's path below it (recursive);
- a manifest line: the line as written (leading/trailing blanks stripped). Relative lines
  are opened relative to the manifest's directory, but the id stays the line itself, so
  the same manifest gives the same ids wherever it is mounted.

A file name that is not UTF-8 (e.g. Latin-1 `caf\xe9.jpg`, from a folder, a glob or a manifest
line) becomes an id with Python's surrogate escapes (`os.fsdecode`): it is listed, sharded
by its raw bytes and then rejected as one image (the router's ids are UTF-8), never a crash
of the run.

Sharding is by a stable hash of the image id (SHA-256, first 8 bytes, modulo the shard
count), not by position: a shard's membership depends on nothing but the image's own id,
so it is the same however the inputs were listed or ordered, and an image can never move
between shards when the manifest is re-ordered or appended to. Shards are balanced in
expectation (a few percent apart at thousands of images), and may be empty for tiny inputs.
"""
from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: File name extensions taken from folders and globs: the formats the services decode.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"})

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class InputImage:
    """One image to label: its id (journal and output key) and where to read it."""

    image_id: str
    path: str


class InputError(ValueError):
    """An input argument that names nothing usable (missing path, empty glob, bad shard)."""


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _walk_folder(folder: str) -> list[str]:
    found: list[str] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, f) for f in sorted(files) if _is_image(f) and not f.startswith("."))
    return found


def _expand_path(arg: str) -> list[str]:
    if any(c in arg for c in _GLOB_CHARS) and not os.path.exists(arg):
        matches = sorted(glob.glob(arg, recursive=True))
        out: list[str] = []
        for match in matches:
            if os.path.isdir(match):
                out.extend(_walk_folder(match))
            elif _is_image(match):
                out.append(match)
        if not out:
            raise InputError(f"glob {arg!r} matches no image")
        return out
    if os.path.isdir(arg):
        return _walk_folder(arg)
    if os.path.isfile(arg):
        return [arg]  # named explicitly: taken whatever its extension
    raise InputError(f"{arg!r} is neither a file, a folder nor a glob that matches")


def read_manifest(manifest: str | os.PathLike) -> list[InputImage]:
    """One image path per line; blank lines and lines starting with '#' are skipped."""
    base = Path(manifest).resolve().parent
    images = []
    # A line that is not UTF-8 keeps its bytes (surrogate escapes, as os.fsdecode does):
    # the file opens, and the run rejects that one image rather than the whole manifest.
    with open(manifest, encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            image_id = line.strip()
            if not image_id or image_id.startswith("#"):
                continue
            path = image_id if os.path.isabs(image_id) else str(base / image_id)
            images.append(InputImage(image_id, path))
    return images


def expand_inputs(paths: Sequence[str] = (), manifest: str | os.PathLike | None = None) -> list[InputImage]:
    """Expand files, folders, globs and an optional manifest into images, in argument
    order (folders and globs sorted), each image id once (first occurrence kept)."""
    images: list[InputImage] = []
    if manifest is not None:
        images.extend(read_manifest(manifest))
    for arg in paths:
        images.extend(InputImage(p, p) for p in _expand_path(arg))
    return dedupe(images)


def dedupe(images: Iterable[InputImage]) -> list[InputImage]:
    seen: set[str] = set()
    out = []
    for image in images:
        if image.image_id not in seen:
            seen.add(image.image_id)
            out.append(image)
    return out


def shard_of(image_id: str, shard_count: int) -> int:
    """The shard an image id belongs to: stable across runs, machines and Python versions."""
    # surrogateescape: an id from a non-UTF-8 file name hashes its raw bytes (UTF-8 ids as ever).
    digest = hashlib.sha256(image_id.encode("utf-8", errors="surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % shard_count


def check_shard(shard_index: int, shard_count: int) -> None:
    if shard_count < 1:
        raise InputError(f"--shard-count must be >= 1, got {shard_count}")
    if not 0 <= shard_index < shard_count:
        raise InputError(f"--shard-index must be in [0, {shard_count}), got {shard_index}")


def select_shard(images: Iterable[InputImage], shard_index: int, shard_count: int) -> list[InputImage]:
    """The images of shard `shard_index` of `shard_count`, in input order."""
    check_shard(shard_index, shard_count)
    if shard_count == 1:
        return list(images)
    return [im for im in images if shard_of(im.image_id, shard_count) == shard_index]
