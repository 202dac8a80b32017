"""Files that appear whole or not at all: write a temp file in the same folder, fsync it,
os.replace it over the target, fsync the folder."""
from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import IO

from prelabel.journal import fsync_dir


class AtomicFile:
    """A temp file beside `path`; `commit` makes it `path`, `discard` removes it."""

    def __init__(self, path: str | os.PathLike, mode: str = "w"):
        self.path = os.fspath(path)
        self.folder = os.path.dirname(os.path.abspath(self.path))
        self.tmp = os.path.join(self.folder, f".{os.path.basename(self.path)}.tmp-{os.getpid()}")
        # Held open until commit() or discard().
        self.file: IO = open(self.tmp, mode, encoding=None if "b" in mode else "utf-8")  # noqa: SIM115

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)
        fsync_dir(self.folder)

    def discard(self) -> None:
        self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Write `path` through a temp file that replaces it only when the block succeeds."""
    af = AtomicFile(path, mode)
    try:
        yield af.file
    except BaseException:
        af.discard()
        raise
    af.commit()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path) as fh:
        fh.write(text)


def swap_in_folder(tmp: str, final: str, out_dir: str) -> None:
    """Make the (synced) folder `tmp` the folder `final`: the old one is moved aside, the
    new one renamed into place and the parent synced, so readers see one or the other."""
    old = f"{final}.old-{os.getpid()}"
    if os.path.exists(final):
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(out_dir)
    shutil.rmtree(old, ignore_errors=True)
