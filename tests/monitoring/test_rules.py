"""Alert rules, their promtool unit tests, the example scrape configs and the dashboard.

Needs `promtool` (Debian: apt-get install -y prometheus). Missing -> the tests fail.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.binaries import required_binary

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
MON = ROOT / "monitoring"
ALERTS = MON / "alerts.yaml"
ALERTS_TEST = MON / "alerts_test.yaml"
DASHBOARD = MON / "grafana-dashboard.json"

# Metric names the processes and Triton export (the agreed list), plus Prometheus' own `up`.
_HISTOGRAMS = [
    "prelabel_rpc_latency_seconds",
    "prelabel_stage_seconds",
    "prelabel_payload_bytes",
]
KNOWN_METRICS = {
    "prelabel_rpc_requests_total",
    "prelabel_review_policy_reloads_total",
    "prelabel_rpc_in_flight",
    "prelabel_images_total",
    "prelabel_labels_total",
    *(h + s for h in _HISTOGRAMS for s in ("_bucket", "_sum", "_count")),
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_pending_request_count",
    "nv_gpu_utilization",
    "up",
}

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}


def promtool() -> str:
    return required_binary("promtool", "PROMTOOL", "apt-get install -y prometheus")


def run_promtool(
    *args: str, cwd: Path = MON, failure: str | None = None
) -> subprocess.CompletedProcess:
    """Run promtool; a non-zero exit fails the test with `failure` (default: the command)."""
    proc = subprocess.run(
        [promtool(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    what = failure or f"promtool {' '.join(args)} failed"
    assert proc.returncode == 0, f"{what}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (enough PromQL for this repo's queries)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )
    text = re.sub(r"<<[^>]*>>", "", text)  # prometheus-adapter templates
    names = set()
    for match in re.finditer(r"(?<![\w$.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def check_promql_syntax(exprs: dict[str, str], tmp_path: Path) -> None:
    """Parse each expression with promtool by wrapping it in a recording rule."""
    rules = {
        "groups": [
            {
                "name": "syntax",
                "rules": [
                    {"record": f"check:expr_{i}", "expr": e}
                    for i, e in enumerate(exprs.values())
                ],
            }
        ]
    }
    path = tmp_path / "exprs.yaml"
    path.write_text(yaml.safe_dump(rules))
    run_promtool("check", "rules", str(path), failure=f"invalid PromQL among {list(exprs)}")


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [r for g in groups for r in g["rules"]]


# --------------------------------------------------------------------------- rules


def test_promtool_check_rules():
    out = run_promtool("check", "rules", ALERTS.name)
    assert "SUCCESS" in out.stdout


def test_promtool_unit_tests_pass():
    out = run_promtool("test", "rules", ALERTS_TEST.name)
    assert "SUCCESS" in out.stdout


def test_each_alert_has_firing_and_quiet_cases():
    alerts = {r["alert"] for r in alert_rules() if "alert" in r}
    assert {
        "PrelabelHighErrorRatio",
        "PrelabelLatencySLOBurnFast",
        "PrelabelLatencySLOBurnSlow",
        "TritonQueueTimeHigh",
        "PrelabelTargetDown",
        "PrelabelReviewPolicyReloadRefused",
    } <= alerts
    firing, quiet = set(), set()
    for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert alerts <= firing, f"no firing case for {alerts - firing}"
    assert alerts <= quiet, f"no not-firing case for {alerts - quiet}"


def test_alerts_have_for_severity_and_annotations():
    for rule in alert_rules():
        if "alert" not in rule:
            continue
        name = rule["alert"]
        assert rule.get("for"), f"{name}: no `for`"
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"].get("summary") and rule["annotations"].get(
            "description"
        ), name


def test_rule_expressions_use_known_metrics():
    recorded = {r["record"] for r in alert_rules() if "record" in r}
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names, f"{rule.get('alert') or rule.get('record')}: no metric found"
        unknown = names - KNOWN_METRICS - recorded
        assert not unknown, (
            f"{rule.get('alert') or rule.get('record')}: unknown metrics {unknown}"
        )


def test_refused_reload_series_appears_at_first_refusal(tmp_path):
    """What PrelabelReviewPolicyReloadRefused and its promtool cases assume: a process exports
    no refused series until its first refusal, and then exports 1 (no 0 sample before it,
    which increase() alone would need), while the old policy keeps serving."""
    from services.common.metrics import Metrics
    from services.common.served_policy import ServedPolicy

    policy = tmp_path / "policy.yaml"
    policy.write_text("review_policy: {default_band: {accept_at: 0.9, reject_below: 0.2}}\n")
    metrics = Metrics("detection")
    served = ServedPolicy(policy, reload_s=0, metrics=metrics)
    first_id = served.current.id

    def reloads(outcome: str) -> float | None:
        return metrics.registry.get_sample_value(
            "prelabel_review_policy_reloads_total",
            {"service": "detection", "outcome": outcome},
        )

    assert reloads("refused") is None
    policy.write_text("review_policy: {default_band: {accept_at: 1.5}}\n")
    served.maybe_reload()
    assert reloads("refused") == 1.0
    assert reloads("ok") is None
    assert served.current.id == first_id


# --------------------------------------------------------------------------- scrape configs


def test_example_prometheus_config_is_valid():
    run_promtool("check", "config", "prometheus.yml")
    config = yaml.safe_load((MON / "prometheus.yml").read_text())
    assert [j["job_name"] for j in config["scrape_configs"]] == ["prelabel", "triton"]
    targets = {
        t
        for j in config["scrape_configs"]
        for sc in j["static_configs"]
        for t in sc["targets"]
    }
    assert {t.rsplit(":", 1)[1] for t in targets} == {
        "9091",
        "9092",
        "9093",
        "9094",
        "8002",
    }


def test_kubernetes_example_config_jobs():
    # Debian's promtool lacks kubernetes_sd_configs, so only the structure is checked here.
    config = yaml.safe_load((MON / "prometheus-kubernetes.yml").read_text())
    assert config["rule_files"] == ["alerts.yaml"]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"prelabel", "triton"}
    for job in jobs.values():
        assert job["kubernetes_sd_configs"][0]["role"] == "pod"
        targets = {r.get("target_label") for r in job["relabel_configs"]}
        assert "service" not in targets, (
            "would shadow the processes' own `service` label"
        )


# --------------------------------------------------------------------------- dashboard


def dashboard_exprs() -> dict[str, str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = {}
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"panel {panel['title']!r} has no queries"
        for target in panel["targets"]:
            exprs[f"{panel['title']} [{target['refId']}]"] = target["expr"]
    return exprs


def test_dashboard_loads_and_has_required_panels():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 30
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    exprs = dashboard_exprs()
    joined = "\n".join(exprs.values())
    assert "sum by (service) (rate(prelabel_rpc_requests_total" in joined  # throughput
    for q in ("0.5", "0.95", "0.99"):  # stage quantiles
        assert (
            f"histogram_quantile({q}, sum by (le, stage) (rate(prelabel_stage_seconds_bucket"
            in joined
        )
    assert re.search(
        r"rate\(nv_inference_count\b.*\)\) / sum by \(model\) \(rate\(nv_inference_exec_count",
        joined,
    )
    assert "nv_inference_queue_duration_us" in joined
    assert "sum by (code) (rate(prelabel_rpc_requests_total" in joined  # errors by code
    assert "nv_gpu_utilization" in joined


def test_dashboard_queries_use_known_metrics(tmp_path):
    exprs = dashboard_exprs()
    for title, expr in exprs.items():
        names = metric_names(expr)
        assert names, f"{title}: no metric found in {expr!r}"
        assert names <= KNOWN_METRICS, (
            f"{title}: unknown metrics {names - KNOWN_METRICS}"
        )
    grafana_vars = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
    resolved = {}
    for title, expr in exprs.items():
        for var, value in grafana_vars.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"{title}: unresolved variable in {expr!r}"
        resolved[title] = expr
    check_promql_syntax(resolved, tmp_path)


# --------------------------------------------------------------------------- autoscaling queries


def test_triton_autoscaling_queries(tmp_path):
    exprs = {}
    scaled = yaml.safe_load(
        (ROOT / "k8s/components/triton-keda/scaledobject.yaml").read_text()
    )
    for trigger in scaled["spec"]["triggers"]:
        exprs[f"keda {trigger['name']}"] = trigger["metadata"]["query"]
    adapter_cm = yaml.safe_load(
        (
            ROOT / "k8s/components/triton-prometheus-adapter/adapter-rules.yaml"
        ).read_text()
    )
    for rule in yaml.safe_load(adapter_cm["data"]["config.yaml"])["rules"]:
        query = rule["metricsQuery"]
        query = query.replace(
            "<<.LabelMatchers>>", 'namespace="prelabel",pod=~"triton-.*"'
        )
        exprs[f"adapter {rule['name']['as']}"] = query.replace("<<.GroupBy>>", "pod")
        series = re.match(r"([A-Za-z_:][\w:]*)", rule["seriesQuery"]).group(1)
        assert series in KNOWN_METRICS
    for title, expr in exprs.items():
        assert metric_names(expr) and metric_names(expr) <= KNOWN_METRICS, title
    check_promql_syntax(exprs, tmp_path)
