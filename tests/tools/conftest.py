"""Fixtures for the tests that load prelabel's outputs into the real annotation tools.

Each tool runs from its own virtualenv (scripts/tool_venv.py: created once, cached outside
the repository, reused at once); a test runs a small probe script (tests/tools/probes/)
with the tool's Python and reads the JSON it prints."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import samples as samples_mod

REPO = Path(__file__).resolve().parents[2]
PROBES = Path(__file__).resolve().parent / "probes"
#: Longest a first-time install of one tool may take (CI: 2 cores).
INSTALL_TIMEOUT_S = 900


@pytest.fixture(scope="session")
def tool_python():
    """tool_python(name) -> Path of that tool venv's python (installing it on first use)."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            done = subprocess.run([sys.executable, str(REPO / "scripts" / "tool_venv.py"), name],
                                  capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
            if done.returncode:
                pytest.fail(f"tool venv {name} could not be made:\n{done.stderr[-4000:]}")
            cache[name] = Path(done.stdout.strip().splitlines()[-1])
        return cache[name]

    return get


@pytest.fixture(scope="session")
def run_probe(tool_python, tmp_path_factory):
    """run_probe(tool, probe, *args) -> the JSON the probe printed on its last line."""
    home = tmp_path_factory.mktemp("tool-home")

    def run(tool: str, probe: str, *args: str, timeout: float = 300) -> dict:
        env = {**os.environ, "HOME": str(home), "YOLO_CONFIG_DIR": str(home / "ultralytics"),
               "MPLCONFIGDIR": str(home / "mpl"), "PYTHONPATH": str(REPO), "FIFTYONE_DO_NOT_TRACK": "true"}
        done = subprocess.run([str(tool_python(tool)), str(PROBES / probe), *map(str, args)],
                              capture_output=True, text=True, timeout=timeout, env=env, cwd=home)
        assert done.returncode == 0, f"{probe} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
        return json.loads(done.stdout.strip().splitlines()[-1])

    return run


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory):
    """(samples, out folder, image root): every format, every task, polygon masks."""
    base = tmp_path_factory.mktemp("sample-run")
    samples = samples_mod.make_samples(base / "in")
    out = base / "out"
    root = samples_mod.write(samples, out)
    return samples, out, root


def pytest_configure(config):
    config.addinivalue_line("markers", "tools: loads prelabel's outputs into a real annotation tool (own venv)")
