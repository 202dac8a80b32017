"""Start a real embedded tritonserver for a test fixture, printing its log when it fails to start."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from services.embedded_triton.launcher import EmbeddedTriton
from services.embedded_triton.settings import TritonSettings


@contextlib.contextmanager
def running_triton(settings: TritonSettings, log_path: Path) -> Iterator[EmbeddedTriton]:
    server = EmbeddedTriton(settings, log_path=log_path)
    try:
        server.start()
    except Exception:
        print(log_path.read_text()[-5000:] if log_path.exists() else "no log")
        raise
    try:
        yield server
    finally:
        server.stop()
