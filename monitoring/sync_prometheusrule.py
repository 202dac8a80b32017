"""Regenerate k8s/base/prometheusrule.yaml from monitoring/alerts.yaml (the single source).

Usage: python monitoring/sync_prometheusrule.py
tests/k8s/test_manifests.py fails when the two differ.
"""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "monitoring" / "alerts.yaml"
TARGET = ROOT / "k8s" / "base" / "prometheusrule.yaml"


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render() -> str:
    groups = yaml.safe_load(SOURCE.read_text())["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "prelabel",
            "labels": {
                "app.kubernetes.io/name": "prelabel",
                "app.kubernetes.io/component": "monitoring",
            },
        },
        "spec": {"groups": groups},
    }
    header = "# GENERATED from monitoring/alerts.yaml by monitoring/sync_prometheusrule.py. Do not edit.\n"
    return header + yaml.dump(rule, Dumper=_Dumper, sort_keys=False, width=120)


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(ROOT)}")
