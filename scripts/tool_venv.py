#!/usr/bin/env python3
"""Create (once) and print the path of an annotation tool's own virtualenv.

    python scripts/tool_venv.py NAME        # prints the venv's python, installing if needed
    python scripts/tool_venv.py --all       # every tool (what CI caches)

The pinned requirement list of each tool is `tests/tools/venvs/NAME.txt`. The tools
(Label Studio, Ultralytics, datumaro + cvat-sdk, FiftyOne) pin versions that would fight
the suite's own dependency set (numpy<2, Django, ...), so each gets its own virtualenv,
kept outside the repository at

    $PRELABEL_TOOLS_CACHE (default ~/.cache/prelabel/tools)/NAME-<hash>

where <hash> covers the requirement list, the Python version and the installer: editing a list makes a
new venv (and removes the old one), an unchanged one is reused at once (a marker file is
written last, so a venv whose install was interrupted is rebuilt). A lock file serialises concurrent callers.

The installer is uv (pinned, installed once into the cache with pip): it installs Label
Studio in ~30 s where pip takes ~5 min on CI's 2 cores.

Directives in a list (comment lines):
  `# pip-args: ARGS`     extra `pip install` arguments (e.g. --no-deps);
  `# no-deps: REQ`       install REQ with --no-deps after the list (a package whose declared
                         deps cannot install here, the list standing in for them);
  `# env: NAME=VALUE`    an environment variable for the install (e.g. a build switch);
  `# reuse-main-venv`    append the suite's .venv site-packages to the tool's path (a .pth
                         file, rewritten on every call) so that e.g. Ultralytics uses the
                         suite's torch instead of installing a second one (~5 GB);
  `# build-with-main-venv`  with reuse-main-venv: the .pth is written first and sdists are
                         built without isolation, against the suite's torch and setuptools
                         (sam2's build requires torch: an isolated build would download a
                         CUDA torch of several GB just to build a pure-Python package).
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "tests" / "tools" / "venvs"
MARKER = ".prelabel-complete"
UV_VERSION = "0.13.9"


def cache_root() -> Path:
    return Path(os.environ.get("PRELABEL_TOOLS_CACHE", Path.home() / ".cache" / "prelabel" / "tools"))


def spec_hash(text: str) -> str:
    key = f"{sys.version_info.major}.{sys.version_info.minor}\nuv {UV_VERSION}\n{text}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def directives(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.startswith("# pip-args:"):
            out["pip-args"] = line.split(":", 1)[1].strip()
        elif line.strip() == "# reuse-main-venv":
            out["reuse-main-venv"] = ""
        elif line.strip() == "# build-with-main-venv":
            out["build-with-main-venv"] = ""
        elif line.startswith("# env:"):
            out["env"] = (out.get("env", "") + " " + line.split(":", 1)[1].strip()).strip()
        elif line.startswith("# no-deps:"):
            out["no-deps"] = (out.get("no-deps", "") + " " + line.split(":", 1)[1].strip()).strip()
    return out


def main_site_packages() -> Path:
    venv = REPO / ".venv"
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return venv / "lib" / py / "site-packages"


def base_python() -> str:
    """The interpreter under any virtualenv we run in (a tool venv must not nest in ours)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def ensure_uv(root: Path) -> Path:
    uv_venv = root / f"uv-{UV_VERSION}"
    uv = uv_venv / "bin" / "uv"
    if not (uv_venv / MARKER).exists():
        shutil.rmtree(uv_venv, ignore_errors=True)
        subprocess.run([base_python(), "-m", "venv", str(uv_venv)], check=True)
        subprocess.run([str(venv_python(uv_venv)), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        f"uv=={UV_VERSION}"], check=True)
        (uv_venv / MARKER).write_text("ok\n")
    return uv


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def write_pth(venv: Path) -> None:
    site = subprocess.run([str(venv_python(venv)), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # Appended after the tool's own site-packages: its own pins win, the rest comes from the suite.
    Path(site, "prelabel_main_venv.pth").write_text(str(main_site_packages()) + "\n")


def ensure(name: str, *, quiet: bool = True) -> Path:
    spec = SPECS / f"{name}.txt"
    text = spec.read_text()
    opts = directives(text)
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / f"{name}-{spec_hash(text)}"
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / MARKER).exists():
            started = time.monotonic()
            uv = str(ensure_uv(root))
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([uv, "venv", "-q", "--python", base_python(), str(venv)], check=True)
            pip = [uv, "pip", "install", "--python", str(venv_python(venv))] + (["-q"] if quiet else [])
            env = {**os.environ, **dict(v.split("=", 1) for v in opts.get("env", "").split())}
            build = []
            if "build-with-main-venv" in opts:
                write_pth(venv)
                build = ["--no-build-isolation"]
            subprocess.run(pip + build + opts.get("pip-args", "").split() + ["-r", str(spec)], check=True, env=env)
            if opts.get("no-deps"):
                subprocess.run(pip + ["--no-deps", *opts["no-deps"].split()], check=True)
            (venv / MARKER).write_text(f"{time.monotonic() - started:.0f} s to install\n")
            for old in root.glob(f"{name}-*"):  # venvs of earlier lists
                if old != venv and old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
            print(f"tool venv {name}: installed in {time.monotonic() - started:.0f} s at {venv}", file=sys.stderr)
        if "reuse-main-venv" in opts:
            if not main_site_packages().is_dir():
                raise SystemExit(f"{name} reuses the suite's venv, but {main_site_packages()} is missing: make venv")
            write_pth(venv)
    return venv_python(venv)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--all", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    names = sorted(p.stem for p in SPECS.glob("*.txt")) if args.all else args.names
    if not names:
        parser.error("name a tool or --all")
    for name in names:
        print(ensure(name, quiet=not args.verbose))
    return 0


if __name__ == "__main__":
    sys.exit(main())
