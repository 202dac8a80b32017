"""scripts/reliability_report.py: the JSON the tests write becomes README's section."""
from __future__ import annotations

import importlib.util
import json

import pytest

from tests.reliability import report

REPO_ROOT = report.REPO_ROOT


def load_script():
    spec = importlib.util.spec_from_file_location("reliability_report", REPO_ROOT / "scripts" / "reliability_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_record_merges_sections_when_called_twice(tmp_path, monkeypatch):
    monkeypatch.setenv(report.REPORT_ENV, str(tmp_path / "r.json"))
    report.record("overload", sent=report.figure(10, "requests"))
    report.record("overload", ok=report.figure(7, "requests"))
    report.record("fuzz", smoke_executions=report.figure(2000, "inputs", "2000", True))
    data = json.loads((tmp_path / "r.json").read_text())
    assert set(data["sections"]["overload"]["figures"]) == {"sent", "ok"}
    assert data["sections"]["fuzz"]["figures"]["smoke_executions"]["ok"] is True


def test_reliability_report_rewrites_only_the_marked_section_when_readme_has_markers(tmp_path, monkeypatch):
    script = load_script()
    monkeypatch.setenv(report.REPORT_ENV, str(tmp_path / "r.json"))
    report.record("overload", rejection_p99_ms=report.figure(7.3456, "ms", "< 50", True),
                  hung=report.figure(0, "requests", "0", True, note="a | pipe"))
    report.record("bombs", rss_growth_mb=report.figure(60.0, "MB", "< 50", False))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Reliability\n{script.START}\nold\n{script.END}\n\n## After\n")
    args = ["--report", str(tmp_path / "r.json"), "--readme", str(readme)]

    assert script.main(args + ["--check"]) == 1
    assert script.main(args) == 0
    text = readme.read_text()
    assert "old" not in text and text.startswith("# x\n") and text.endswith("## After\n")
    assert "| rejection p99 ms | 7.35 ms | < 50 | met |" in text
    assert "**missed**" in text and "a \\| pipe" in text
    assert text.index("Decompression bombs") < text.index("Overload")
    assert script.main(args + ["--check"]) == 0


def test_reliability_report_fails_clearly_when_readme_has_no_markers(tmp_path, monkeypatch):
    script = load_script()
    monkeypatch.setenv(report.REPORT_ENV, str(tmp_path / "r.json"))
    report.record("fuzz", smoke_executions=report.figure(1, "inputs"))
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        script.main(["--report", str(tmp_path / "r.json"), "--readme", str(readme)])
