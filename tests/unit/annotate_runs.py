"""Run `prelabel annotate` as its own process, on fake photo files, for tests that serve it
a PreLabeler double (tests/unit/prelabeler_double.py)."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def photos(folder: Path, names) -> Path:
    """`folder` holding a small file per name (the double never decodes them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"image " + name.encode())
    return folder


async def start_annotate(*args: str) -> asyncio.subprocess.Process:
    """`prelabel annotate --no-progress ARGS` started from the repository, output and
    errors together on its stdout pipe."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "prelabel.cli", "annotate", "--no-progress", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=REPO)


async def annotate(*args: str) -> tuple[int, str]:
    """(exit code, output) of `prelabel annotate --no-progress ARGS` run to the end."""
    proc = await start_annotate(*args)
    out, _ = await asyncio.wait_for(proc.communicate(), 50)
    return proc.returncode, out.decode()
