"""The dependency direction of the packages: the client side (prelabel/, with the shared
core prelabel/core) never imports the server side (services/), so the client installs
without torch, onnxruntime or Triton; the core imports neither the client's modules nor
the servers'."""
import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


#: Scripts run by path in their own export virtualenvs (tensorflow, torch + Meta's code), never
#: imported (checked below): they are not part of what the client imports.
EXPORT_SCRIPTS = ROOT / "prelabel" / "core" / "models" / "convert"


def violations(folder: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    out = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        if path.is_relative_to(EXPORT_SCRIPTS):
            continue
        for line, module in imported_modules(path):
            top = module.split(".")
            if any(module == f or module.startswith(f + ".") for f in forbidden) and not any(
                    module == a or module.startswith(a + ".") for a in allowed):
                out.append(f"{path.relative_to(ROOT)}:{line} imports {module} ({'.'.join(top[:2])})")
    return out


def test_client_package_never_imports_the_server_side():
    assert violations("prelabel", ("services", "bench", "tests", "torch", "torchvision", "tritonclient",
                                   "onnxruntime", "pytriton")) == []


def test_export_scripts_are_run_by_path_never_imported():
    assert violations("prelabel", ("prelabel.core.models.convert",)) == []
    assert violations("services", ("prelabel.core.models.convert",)) == []


def test_core_imports_only_itself_and_the_generated_api():
    assert violations("prelabel/core", ("prelabel", "services"),
                      allowed=("prelabel.core", "prelabel.v1")) == []


def test_layering_check_sees_an_import_when_there_is_one(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("import os\nfrom services.common import task\n")
    assert (2, "services.common") in imported_modules(sample)
