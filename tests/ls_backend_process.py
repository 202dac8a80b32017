"""`prelabel ls-backend` as a user starts it: its own process, settings in the environment."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_ls_backend(settings: Mapping[str, str], log_path: Path, port: int | None = None) -> Iterator[str]:
    """The backend with `settings` (PRELABEL_LS_* variables) on loopback `port` (default: a
    free one) until the block ends (then SIGTERM); yields its URL."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "prelabel.cli", "ls-backend", "--host", "127.0.0.1",
                                 "--port", str(port), "-v"], cwd=REPO, env={**os.environ, **settings},
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                assert proc.poll() is None, log_path.read_text()[-4000:]
                try:
                    if requests.get(url + "/health", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                assert time.monotonic() < deadline, "ls-backend did not start"
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            proc.wait(30)
