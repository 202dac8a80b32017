#!/usr/bin/env python3
"""Render reliability-report.json (written by the tests under tests/reliability and
tests/fuzz) into README.md between the markers

    <!-- reliability:start -->
    <!-- reliability:end -->

Usage (from the repository root):
    python scripts/reliability_report.py                 # rewrite README.md in place
    python scripts/reliability_report.py --check         # exit 1 when README is stale
    python scripts/reliability_report.py --stdout        # print the section only
Options: --report PATH (default $PRELABEL_RELIABILITY_REPORT or reliability-report.json),
--readme PATH (default README.md).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
START = "<!-- reliability:start -->"
END = "<!-- reliability:end -->"

# Section order and titles; unknown sections follow in name order.
SECTIONS = {
    "bad_input": "Bad input through the detection server",
    "bombs": "Decompression bombs (decode_image, in-process)",
    "orientation": "EXIF orientation",
    "fuzz": "Fuzzing (atheris)",
    "overload": "Overload (admission control, real Triton)",
    "triton_queue": "Triton queue full (max_queue_size 1)",
    "deadlines": "Deadlines",
    "triton_kill": "Triton SIGKILL under load and restart",
    "bulk_triton_restart": "Bulk run through a Triton SIGKILL (prelabel annotate)",
    "shutdown": "SIGTERM drain (python -m services.detection)",
    "hung_service": "Hung service (segmentation process SIGSTOPped)",
    "payload_abuse": "Compressed and oversized payloads (router process)",
    "prompted_work": "Prompted segmentation work (segmentation process)",
    "router_streams": "PreLabelStream admission, idle timeout and SIGTERM (router process)",
    "router_memory": "Router memory under 20 MB calls (router process)",
    "service_memory": "Model services at their caps (detection and segmentation processes)",
    "cancelled_decode": "Cancelled decoding (detection process)",
}


def _value(fig: dict) -> str:
    value, unit = fig.get("value"), fig.get("unit", "")
    if not isinstance(value, float):
        text = str(value)
    elif abs(value) < 100:
        text = f"{value:.3g}"
    else:
        text = f"{value:.0f}"
    return f"{text} {unit}".strip()


def _verdict(fig: dict) -> str:
    ok = fig.get("ok")
    return "" if ok is None else ("met" if ok else "**missed**")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(report: dict) -> str:
    sections = report.get("sections", {})
    names = [n for n in SECTIONS if n in sections] + sorted(n for n in sections if n not in SECTIONS)
    lines = [START, "", "Measured by `make test` (tests/reliability, tests/fuzz) on the machine named "
             "below each table; targets from docs/reliability.md. Regenerate with "
             "`make reliability-report`.", ""]
    if not names:
        lines += ["_No figures yet: run the reliability tests first._", "", END]
        return "\n".join(lines)
    for name in names:
        entry = sections[name]
        lines += [f"### {SECTIONS.get(name, name)}", "",
                  "| Figure | Measured | Target | |", "|---|---|---|---|"]
        for key, fig in entry.get("figures", {}).items():
            label = key.replace("_", " ")
            if fig.get("note"):
                label += f" ({fig['note']})"
            lines.append(f"| {_cell(label)} | {_cell(_value(fig))} | {_cell(fig.get('target', ''))} "
                         f"| {_verdict(fig)} |")
        host = entry.get("host", {})
        lines += ["", f"_{entry.get('measured_at', '?')}, {host.get('cpus', '?')} CPUs "
                      f"({host.get('machine', '?')}), Python {host.get('python', '?')}_", ""]
    lines.append(END)
    return "\n".join(lines)


def splice(readme: str, section: str) -> str:
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < 0 or end < start:
        raise SystemExit(f"README has no '{START}' ... '{END}' markers")
    return readme[:start] + section + readme[end + len(END):]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render reliability-report.json into README.md")
    parser.add_argument("--report", type=Path,
                        default=Path(os.environ.get("PRELABEL_RELIABILITY_REPORT")
                                     or REPO_ROOT / "reliability-report.json"))
    parser.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 when README differs from the report")
    mode.add_argument("--stdout", action="store_true", help="print the rendered section only")
    args = parser.parse_args(argv)

    try:
        report = json.loads(args.report.read_text())
    except FileNotFoundError:
        print(f"{args.report} not found: run the reliability tests first "
              "(e.g. .venv/bin/pytest tests/reliability tests/fuzz)", file=sys.stderr)
        return 2
    section = render(report)
    if args.stdout:
        print(section)
        return 0
    readme = args.readme.read_text()
    updated = splice(readme, section)
    if args.check:
        if updated != readme:
            print(f"{args.readme} reliability section is stale: run make reliability-report", file=sys.stderr)
            return 1
        return 0
    if updated != readme:
        args.readme.write_text(updated)
        print(f"updated the reliability section of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
