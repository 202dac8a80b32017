"""Start a real embedded tritonserver for a test fixture, printing its log when it fails to start."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

from services.embedded_triton.launcher import EmbeddedTriton
from services.embedded_triton.settings import TritonSettings


class _TritonWithEnv(EmbeddedTriton):
    """An EmbeddedTriton whose process environment differs from this one's by `env`
    (None removes a variable): the test process itself keeps its environment."""

    def __init__(self, settings: TritonSettings, log_path: Path, env: Mapping[str, str | None]):
        super().__init__(settings, log_path=log_path)
        self._env = dict(env)

    def environment(self) -> dict[str, str]:
        env = super().environment()
        for name, value in self._env.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env


@contextlib.contextmanager
def running_triton(settings: TritonSettings, log_path: Path,
                   env: Mapping[str, str | None] | None = None) -> Iterator[EmbeddedTriton]:
    server = _TritonWithEnv(settings, log_path, env or {})
    try:
        server.start()
    except Exception:
        print(log_path.read_text()[-5000:] if log_path.exists() else "no log")
        raise
    try:
        yield server
    finally:
        server.stop()
