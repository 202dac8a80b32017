"""The figures the reliability tests measure, collected into reliability-report.json.

Each test calls `record(section, name=figure(value, unit, target), ...)` once it has
measured something; the file is merged (read, update one section, atomic replace), so
a partial run refreshes only the sections it ran. `scripts/reliability_report.py`
renders the file into README's "Reliability" section.

The file goes to $PRELABEL_RELIABILITY_REPORT, default <repo>/reliability-report.json.
"""
from __future__ import annotations

import json
import os
import platform
import socket
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
REPORT_ENV = "PRELABEL_RELIABILITY_REPORT"
SCHEMA = 1


def report_path() -> Path:
    return Path(os.environ.get(REPORT_ENV) or REPO_ROOT / "reliability-report.json")


def figure(value, unit: str = "", target: str = "", ok: bool | None = None, note: str = "") -> dict:
    """One measured figure. `target` is the figure from docs/reliability.md as text
    (e.g. "< 50"), `ok` whether the measurement met it (None: no target)."""
    if isinstance(value, float):
        value = round(value, 3)
    return {"value": value, "unit": unit, "target": target, "ok": ok, "note": note}


def load(path: Path | None = None) -> dict:
    path = path or report_path()
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.get("schema") == SCHEMA:
            return data
    except (OSError, ValueError):
        pass
    return {"schema": SCHEMA, "sections": {}}


def record(section: str, **figures: dict) -> Path:
    """Merge `figures` into `section` of the report and write it atomically."""
    path = report_path()
    data = load(path)
    entry = data["sections"].setdefault(section, {"figures": {}})
    entry["figures"].update(figures)
    entry["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    entry["host"] = {"machine": platform.machine(), "cpus": os.cpu_count(), "node": socket.gethostname(),
                     "python": platform.python_version()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".reliability-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return path
