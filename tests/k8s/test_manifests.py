"""Render every kustomization under k8s/ and check it against Kubernetes schemas and policy.

Needs `kubectl` (built-in kustomize; override the binary with $KUBECTL) and the
`kubernetes-validate` package. Both missing -> the tests fail, they do not skip.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.binaries import required_binary

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
# Oldest Kubernetes minor the manifests target (backoffLimitPerIndex is GA there); they are
# also validated against the newest schemas kubernetes-validate bundles.
KUBE_VERSION = "1.33.0"

BASE = "base"
GPU = "overlays/gpu"
CPU = "overlays/cpu"
GPU_ADAPTER = "overlays/gpu-prometheus-adapter"
JOB = "jobs/annotate"
# Optional component, rendered on top of each serving target ("<target>+<component>").
REVIEW_POLICY = "components/review-policy"
SERVING_PLAIN = [BASE, GPU, CPU, GPU_ADAPTER]
WITH_POLICY = [f"{t}+{REVIEW_POLICY}" for t in SERVING_PLAIN]
SERVING = SERVING_PLAIN + WITH_POLICY
TARGETS = SERVING + [JOB]

# Custom resources have no bundled schema: checked for apiVersion/kind/metadata.name only.
CUSTOM_RESOURCES = {
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("keda.sh/v1alpha1", "ScaledObject"),
}
CPU_SERVICES = {
    "router": 50051,
    "detection": 50052,
    "segmentation": 50053,
    "keypoints": 50054,
}
MODEL_SERVICES = {"detection", "segmentation", "keypoints"}
METRICS_PORTS = {
    "router": 9091,
    "detection": 9092,
    "segmentation": 9093,
    "keypoints": 9094,
}
PROMETHEUS_NS = {"kubernetes.io/metadata.name": "monitoring"}


# --------------------------------------------------------------------------- helpers


def _kubectl() -> str:
    return required_binary(
        "kubectl",
        "KUBECTL",
        "it renders k8s/ with its built-in kustomize. Install kubectl >= 1.27.",
    )


def _kubernetes_validate():
    try:
        import kubernetes_validate
        from kubernetes_validate.utils import latest_version
    except ImportError:
        pytest.fail(
            "the kubernetes-validate package is required: pip install 'kubernetes-validate>=1.33'"
        )
    if _minor(latest_version()) < _minor(KUBE_VERSION):
        pytest.fail(
            f"kubernetes-validate {latest_version()} lacks Kubernetes {KUBE_VERSION} schemas: "
            "pip install 'kubernetes-validate>=1.33'"
        )
    return kubernetes_validate


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.lstrip("v").split(".")[:2]
    return int(major), int(minor)


def _kustomize(kubectl: str, directory: Path, target: str) -> str:
    proc = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, (
        f"kubectl kustomize k8s/{target} failed:\n{proc.stderr}"
    )
    return proc.stdout


@functools.cache
def _render_cached(kubectl: str, target: str) -> tuple:
    """Render k8s/<target>; "<target>+<component>+..." renders the target with those
    components, as an overlay of one's own would (a temporary kustomization; kustomize
    takes relative paths only)."""
    base, *components = target.split("+")
    if not components:
        out = _kustomize(kubectl, K8S / base, target)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            kustomization = {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(K8S / base, tmp)],
                "components": [os.path.relpath(K8S / c, tmp) for c in components],
            }
            Path(tmp, "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
            out = _kustomize(kubectl, Path(tmp), target)
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def render(target: str) -> list[dict]:
    return list(_render_cached(_kubectl(), target))


def objects(target: str, kind: str) -> list[dict]:
    return [o for o in render(target) if o["kind"] == kind]


def one(target: str, kind: str, name: str) -> dict:
    found = [o for o in objects(target, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, (
        f"{target}: expected exactly one {kind}/{name}, found {len(found)}"
    )
    return found[0]


def workloads(target: str) -> list[dict]:
    return [o for o in render(target) if o["kind"] in ("Deployment", "Job")]


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def containers(workload: dict) -> list[dict]:
    spec = pod_spec(workload)
    return spec.get("initContainers", []) + spec["containers"]


def selector_matches(selector: dict, labels: dict) -> bool:
    """Kubernetes LabelSelector semantics (empty selector matches everything)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"]["labels"]


def env_value(target: str, workload: dict, container: dict, name: str) -> str | None:
    """Value of an env var, following envFrom ConfigMaps of the rendered target."""
    for env in container.get("env", []):
        if env["name"] == name and "value" in env:
            return env["value"]
    configmaps = {
        c["metadata"]["name"]: c.get("data", {}) for c in objects(target, "ConfigMap")
    }
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref and name in configmaps.get(ref["name"], {}):
            return configmaps[ref["name"]][name]
    return None


def prestop_sleep_s(container: dict) -> int:
    pre = container.get("lifecycle", {}).get("preStop")
    if not pre:
        return 0
    if "sleep" in pre:
        return int(pre["sleep"]["seconds"])
    command = pre["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, f"unexpected preStop {command}"
    return int(command[1])


def triton_arg(container: dict, flag: str) -> str | None:
    for arg in container.get("command", []) + container.get("args", []):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


# --------------------------------------------------------------------------- schema


@pytest.mark.parametrize("version", ["oldest", "newest"])
@pytest.mark.parametrize("target", TARGETS)
def test_renders_and_validates_strictly(target, version):
    kv = _kubernetes_validate()
    kube_version = KUBE_VERSION if version == "oldest" else kv.utils.latest_version()
    docs = render(target)
    assert docs, f"k8s/{target} rendered nothing"
    errors = []
    for obj in docs:
        api, kind = obj.get("apiVersion"), obj.get("kind")
        assert api and kind and obj.get("metadata", {}).get("name"), (
            f"incomplete object {obj}"
        )
        if (api, kind) in CUSTOM_RESOURCES:
            assert "spec" in obj, f"{kind}/{obj['metadata']['name']} has no spec"
            continue
        try:
            kv.validate(obj, kube_version, strict=True)
        except kv.ValidationError as err:
            errors.append(
                f"{kind}/{obj['metadata']['name']}: {err.message} at {'.'.join(map(str, err.path))}"
            )
        except kv.SchemaNotFoundError as err:
            errors.append(
                f"{err.message} (a custom resource missing from CUSTOM_RESOURCES?)"
            )
    assert not errors, (
        f"k8s/{target} fails schema validation (Kubernetes {kube_version}, strict):\n"
        + "\n".join(errors)
    )


@pytest.mark.parametrize("target", TARGETS)
def test_common_labels_and_namespace(target):
    for obj in render(target):
        labels = obj["metadata"].get("labels", {})
        what = f"{obj['kind']}/{obj['metadata']['name']}"
        assert labels.get("app.kubernetes.io/part-of") == "prelabel", what
        assert labels.get("app.kubernetes.io/name"), what
        assert labels.get("app.kubernetes.io/component"), what
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") in ("prelabel", "monitoring"), what
    for wl in workloads(target):
        labels = pod_labels(wl)
        assert labels.get("app.kubernetes.io/part-of") == "prelabel"
        assert labels.get("app.kubernetes.io/name") and labels.get(
            "app.kubernetes.io/component"
        )


@pytest.mark.parametrize("target", SERVING)
def test_namespace_enforces_restricted_pod_security(target):
    ns = one(target, "Namespace", "prelabel")
    assert (
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    )


# --------------------------------------------------------------------------- pods


@pytest.mark.parametrize("target", TARGETS)
def test_pods_meet_restricted_and_resource_policy(target):
    assert workloads(target)
    for wl in workloads(target):
        spec = pod_spec(wl)
        name = wl["metadata"]["name"]
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        assert (
            not spec.get("hostNetwork")
            and not spec.get("hostPID")
            and not spec.get("hostIPC")
        )
        for c in containers(wl):
            sc = c.get("securityContext", {})
            where = f"{target}: {name}/{c['name']}"
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert int(sc.get("runAsUser", pod_sc.get("runAsUser", 0))) > 0, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert not sc.get("privileged"), where
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{where}: {kind}"
            assert c["image"].count(":") == 1 and not c["image"].endswith(":latest"), (
                where
            )
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: read-only root needs a writable /tmp"
        for vol in spec.get("volumes", []):
            assert "hostPath" not in vol, name


@pytest.mark.parametrize("target", SERVING)
def test_grpc_services_have_native_grpc_probes(target):
    for name, port in CPU_SERVICES.items():
        dep = one(target, "Deployment", name)
        (c,) = pod_spec(dep)["containers"]
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == {
            "grpc": port,
            "metrics": METRICS_PORTS[name],
        }
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"]["port"] == port, f"{name}.{probe}"
        # Startup/readiness follow Triton (overall health ""); liveness must not, or
        # every pod restarts while Triton is down.
        assert c["startupProbe"]["grpc"].get("service", "") == ""
        assert c["readinessProbe"]["grpc"].get("service", "") == ""
        assert c["livenessProbe"]["grpc"]["service"] == "liveness"
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        assert env["PRELABEL_GRPC_PORT"] == str(port)
        assert env["PRELABEL_METRICS_PORT"] == str(METRICS_PORTS[name])
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(METRICS_PORTS[name])
        if name in MODEL_SERVICES:
            assert env["PRELABEL_TRITON_URL"] == "triton:8001"
    router = pod_spec(one(target, "Deployment", "router"))["containers"][0]
    env = {e["name"]: e.get("value") for e in router["env"]}
    for name in MODEL_SERVICES:
        assert env[f"PRELABEL_{name.upper()}_ADDR"] == f"{name}:{CPU_SERVICES[name]}"


@pytest.mark.parametrize("target", SERVING)
def test_triton_probes_shm_and_model_control(target):
    dep = one(target, "Deployment", "triton")
    spec = pod_spec(dep)
    (c,) = spec["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    startup = c["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/ready"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600, (
        "model loading needs >= 10 min"
    )
    assert triton_arg(c, "--model-control-mode") == "none"
    assert triton_arg(c, "--model-repository") == "/models"
    assert triton_arg(c, "--allow-metrics") == "true"
    volumes = {v["name"]: v for v in spec["volumes"]}
    shm = [m for m in c["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    assert len(shm) == 1
    shm_vol = volumes[shm[0]["name"]]["emptyDir"]
    assert shm_vol["medium"] == "Memory" and shm_vol.get("sizeLimit")
    weights = [m for m in c["volumeMounts"] if m["mountPath"] == "/weights"]
    assert len(weights) == 1 and weights[0].get("readOnly") is True


@pytest.mark.parametrize("target", SERVING)
def test_triton_restricts_admin_apis_when_deployed(target):
    from services.embedded_triton.launcher import ADMIN_APIS, ADMIN_HEADER

    (c,) = pod_spec(one(target, "Deployment", "triton"))["containers"]
    expected = f"{ADMIN_APIS}:{ADMIN_HEADER}=$(TRITON_ADMIN_KEY)"  # as the embedded server does
    assert triton_arg(c, "--http-restricted-api") == expected
    assert triton_arg(c, "--grpc-restricted-protocol") == expected
    env = {e["name"]: e for e in c["env"]}
    assert env["TRITON_ADMIN_KEY"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid"


@pytest.mark.parametrize("target", SERVING)
def test_shutdown_fits_in_termination_grace(target):
    for dep in objects(target, "Deployment"):
        name = dep["metadata"]["name"]
        spec = pod_spec(dep)
        grace = spec["terminationGracePeriodSeconds"]
        (c,) = spec["containers"]
        sleep = prestop_sleep_s(c)
        assert sleep > 0, f"{name}: preStop sleep missing"
        if name == "triton":
            exit_timeout = int(triton_arg(c, "--exit-timeout-secs"))
            assert exit_timeout < grace, name
            assert sleep + exit_timeout < grace, name
        else:
            drain = env_value(target, dep, c, "PRELABEL_SHUTDOWN_GRACE_S")
            assert drain is not None, f"{name}: PRELABEL_SHUTDOWN_GRACE_S unset"
            assert grace > float(drain) + sleep, (
                f"{name}: grace {grace} <= {drain} + {sleep}"
            )


@pytest.mark.parametrize("target", SERVING)
def test_every_deployment_has_pdb_and_service(target):
    pdbs = objects(target, "PodDisruptionBudget")
    services = objects(target, "Service")
    for dep in objects(target, "Deployment"):
        name, labels = dep["metadata"]["name"], pod_labels(dep)
        assert selector_matches(dep["spec"]["selector"], labels), name
        matching = [p for p in pdbs if selector_matches(p["spec"]["selector"], labels)]
        assert len(matching) == 1, f"{name}: {len(matching)} PDBs select it"
        pdb = matching[0]["spec"]
        assert "maxUnavailable" in pdb or "minAvailable" in pdb
        svc = [
            s
            for s in services
            if selector_matches({"matchLabels": s["spec"]["selector"]}, labels)
        ]
        assert len(svc) == 1, f"{name}: {len(svc)} Services select it"
        port_names = {p["name"] for p in pod_spec(dep)["containers"][0]["ports"]}
        for port in svc[0]["spec"]["ports"]:
            assert port["targetPort"] in port_names, (
                f"{name}: Service targets unknown port {port}"
            )


@pytest.mark.parametrize("target", SERVING)
def test_cpu_services_have_cpu_hpa(target):
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]: h
        for h in objects(target, "HorizontalPodAutoscaler")
    }
    for name in CPU_SERVICES:
        hpa = hpas.get(name)
        assert hpa, f"{target}: no HPA for {name}"
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert (
            hpa["spec"]["minReplicas"] >= 1
            and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
        )
        cpu = [
            m
            for m in hpa["spec"]["metrics"]
            if m["type"] == "Resource"
            and m["resource"]["name"] == "cpu"
            and m["resource"]["target"]["type"] == "Utilization"
        ]
        assert cpu, f"{name}: HPA does not scale on CPU utilization"


# --------------------------------------------------------------------------- review policy

POLICY_ENV = "PRELABEL_REVIEW_POLICY_FILE"
POLICY_SERVERS = set(CPU_SERVICES)  # the four processes that serve a review policy


def _policy_generator() -> dict:
    component = yaml.safe_load((K8S / REVIEW_POLICY / "kustomization.yaml").read_text())
    (generator,) = component["configMapGenerator"]
    return generator


def test_review_policy_example_is_a_policy_file_the_services_accept():
    from prelabel.core.policy_file import load_policy_file

    (source,) = _policy_generator()["files"]
    loaded = load_policy_file(K8S / REVIEW_POLICY / source)
    assert loaded.provenance.get("policy_id") == loaded.id, "provenance names another policy id"


@pytest.mark.parametrize("target", SERVING_PLAIN)
def test_review_policy_mounted_read_only_as_directory(target, tmp_path):
    from prelabel.core.policy_file import load_policy_file

    # Optional: without the component every process serves the built-in defaults.
    for dep in objects(target, "Deployment"):
        for c in containers(dep):
            assert env_value(target, dep, c, POLICY_ENV) is None, f"{target}: {dep['metadata']['name']}"
    composed = f"{target}+{REVIEW_POLICY}"
    for name in POLICY_SERVERS:
        dep = one(composed, "Deployment", name)
        spec = pod_spec(dep)
        (c,) = spec["containers"]
        where = f"{composed}: {name}"
        path = env_value(composed, dep, c, POLICY_ENV)
        assert path and path.startswith("/"), f"{where}: {POLICY_ENV} = {path!r}"
        directory, key = path.rsplit("/", 1)
        mounts = [m for m in c["volumeMounts"] if m["mountPath"].rstrip("/") == directory]
        assert len(mounts) == 1, f"{where}: {path} is not directly in one mounted directory"
        (mount,) = mounts
        assert mount.get("readOnly") is True, f"{where}: policy mount not read-only"
        # A subPath mount is never updated by the kubelet; only a whole-volume mount sees
        # the atomic ..data symlink swap of a ConfigMap update.
        assert "subPath" not in mount and "subPathExpr" not in mount, where
        volume = {v["name"]: v for v in spec["volumes"]}[mount["name"]]
        ref = volume.get("configMap")
        assert ref and "items" not in ref, f"{where}: policy volume {volume}"
        cm = one(composed, "ConfigMap", ref["name"])
        assert cm["metadata"]["namespace"] == dep["metadata"]["namespace"], where
        # Updated in place (so served pods reload it): not immutable, no hash suffix.
        assert not cm.get("immutable"), f"{where}: an immutable ConfigMap never updates"
        assert ref["name"] == _policy_generator()["name"], (
            f"{where}: hash-suffixed ConfigMap: an edit would roll the pods, not reload"
        )
        rendered = tmp_path / key
        rendered.write_text(cm["data"][key])
        load_policy_file(rendered)  # what the pods will read: a file they accept
    for dep in objects(composed, "Deployment"):
        if dep["metadata"]["name"] not in POLICY_SERVERS:
            for c in containers(dep):
                assert env_value(composed, dep, c, POLICY_ENV) is None, dep["metadata"]["name"]


# --------------------------------------------------------------------------- profiles


def _triton(target):
    dep = one(target, "Deployment", "triton")
    return dep, pod_spec(dep)["containers"][0]


def _common_config(target) -> dict:
    (cm,) = [
        c
        for c in objects(target, "ConfigMap")
        if c["metadata"]["name"].startswith("prelabel-common")
    ]
    return cm["data"]


@pytest.mark.parametrize("target", [GPU, GPU_ADAPTER])
def test_gpu_overlay_puts_triton_on_gpus(target):
    dep, c = _triton(target)
    spec = pod_spec(dep)
    assert str(c["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert triton_arg(c, "--model-config-name") == "gpu"
    assert spec["nodeSelector"], "GPU node selector missing"
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    config = _common_config(target)
    assert config["PRELABEL_REQUIRE_PRETRAINED"] == "true"
    assert env_value(target, dep, c, "PRELABEL_ALLOW_RANDOM_WEIGHTS") in (None, "false")
    assert one(target, "PersistentVolumeClaim", "prelabel-weights")
    for other in objects(target, "Deployment"):
        if other["metadata"]["name"] != "triton":
            for oc in pod_spec(other)["containers"]:
                assert "nvidia.com/gpu" not in oc["resources"].get("limits", {})


def test_cpu_overlay_has_no_gpu():
    dep, c = _triton(CPU)
    for obj in render(CPU):
        assert "nvidia.com/gpu" not in yaml.safe_dump(obj), (
            f"{obj['kind']}/{obj['metadata']['name']}"
        )
    assert triton_arg(c, "--model-config-name") is None
    assert "nodeSelector" not in pod_spec(dep)
    # Real weights on the CPU profile too (baked into the image): random never allowed.
    assert env_value(CPU, dep, c, "PRELABEL_ALLOW_RANDOM_WEIGHTS") in (None, "false")
    assert _common_config(CPU)["PRELABEL_REQUIRE_PRETRAINED"] == "true"
    assert not objects(CPU, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in pod_spec(dep)["volumes"]}
    assert set(volumes["weights"]) == {"name", "emptyDir"}


def test_base_is_production_safe():
    dep, c = _triton(BASE)
    assert _common_config(BASE)["PRELABEL_REQUIRE_PRETRAINED"] == "true"
    assert env_value(BASE, dep, c, "PRELABEL_ALLOW_RANDOM_WEIGHTS") == "false"


# --------------------------------------------------------------------------- settings


def _settings_class(service: str):
    """The settings class of `python -m services.<service>` (its one ServiceSettings subclass)."""
    import importlib
    import inspect

    from services.common.settings import ServiceSettings

    module = importlib.import_module(f"services.{service}.settings")
    (cls,) = [c for _, c in inspect.getmembers(module, inspect.isclass)
              if issubclass(c, ServiceSettings) and c.__module__ == module.__name__]
    return cls


def _env_names(target: str, container: dict) -> set[str]:
    names = {e["name"] for e in container.get("env", [])}
    configmaps = {c["metadata"]["name"]: c.get("data", {}) for c in objects(target, "ConfigMap")}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref:
            names |= set(configmaps.get(ref["name"], {}))
    return names


def _memory_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


@pytest.mark.parametrize("target", SERVING)
def test_grpc_processes_get_only_settings_they_read(target):
    """Every PRELABEL_* variable a gRPC process gets (env or ConfigMap) names one of its
    settings: a variable nothing reads would be a setting that only looks real."""
    for name in CPU_SERVICES:
        dep = one(target, "Deployment", name)
        (c,) = pod_spec(dep)["containers"]
        assert c["command"] == ["python", "-m", f"services.{name}"], name
        fields = {f"PRELABEL_{f.upper()}" for f in _settings_class(name).model_fields}
        unread = sorted(n for n in _env_names(target, c) if n.startswith("PRELABEL_") and n not in fields)
        assert not unread, f"{target}: {name} gets {unread}, which no setting of it reads"


@pytest.mark.parametrize("target", SERVING)
def test_per_image_state_fits_in_the_memory_limit(target):
    """The per-image state bound (image_state_max_bytes: env, else the process's default)
    takes at most a tenth of the container's memory limit; the rest holds the process and
    its requests in flight."""
    bounds = {}
    for name in MODEL_SERVICES:
        dep = one(target, "Deployment", name)
        (c,) = pod_spec(dep)["containers"]
        value = env_value(target, dep, c, "PRELABEL_IMAGE_STATE_MAX_BYTES")
        bound = bounds[name] = int(value) if value is not None else _settings_class(name)().image_state_max_bytes
        limit = _memory_bytes(c["resources"]["limits"]["memory"])
        assert bound <= limit // 10, f"{target}: {name} keeps up to {bound} bytes of a {limit} byte limit"
    assert bounds["keypoints"] > 0, "keypoints gets each PreLabel image twice: its cache is on"


# --------------------------------------------------------------------------- triton scaling


def _triton_autoscalers(target):
    keda = [
        s
        for s in objects(target, "ScaledObject")
        if s["spec"]["scaleTargetRef"]["name"] == "triton"
    ]
    hpa = [
        h
        for h in objects(target, "HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]["name"] == "triton"
    ]
    return keda, hpa


def test_gpu_overlay_scales_triton_with_keda_on_queue_time():
    keda, hpa = _triton_autoscalers(GPU)
    assert len(keda) == 1 and not hpa
    triggers = keda[0]["spec"]["triggers"]
    assert all(t["type"] == "prometheus" for t in triggers)
    queries = " ".join(t["metadata"]["query"] for t in triggers)
    assert (
        "nv_inference_queue_duration_us" in queries
        and "nv_inference_pending_request_count" in queries
    )
    assert keda[0]["spec"]["maxReplicaCount"] > keda[0]["spec"]["minReplicaCount"] >= 1


def test_adapter_overlay_scales_triton_with_hpa_on_custom_metrics():
    keda, hpa = _triton_autoscalers(GPU_ADAPTER)
    assert not keda and len(hpa) == 1
    wanted = {
        m["pods"]["metric"]["name"]
        for m in hpa[0]["spec"]["metrics"]
        if m["type"] == "Pods"
    }
    rules_cm = one(GPU_ADAPTER, "ConfigMap", "prelabel-prometheus-adapter-rules")
    rules = yaml.safe_load(rules_cm["data"]["config.yaml"])["rules"]
    assert wanted == {r["name"]["as"] for r in rules}


@pytest.mark.parametrize("target", [BASE, CPU])
def test_no_triton_autoscaler_without_gpu_overlay(target):
    keda, hpa = _triton_autoscalers(target)
    assert not keda and not hpa


# --------------------------------------------------------------------------- network


def _policies_for(target, labels):
    return [
        p
        for p in objects(target, "NetworkPolicy")
        if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and selector_matches(p["spec"]["podSelector"], labels)
    ]


def _ingress_rules(target, workload):
    """Ingress rules applying to a workload's pods, named ports resolved to numbers."""
    named = {
        p["name"]: p["containerPort"]
        for c in containers(workload)
        for p in c.get("ports", [])
        if "name" in p
    }
    rules = []
    for policy in _policies_for(target, pod_labels(workload)):
        for rule in policy["spec"].get("ingress", []):
            ports = set()
            for p in rule.get("ports", []):
                port = p.get("port")
                ports.add(named.get(port, -1) if isinstance(port, str) else port)
            rules.append({"from": rule.get("from"), "ports": ports})
    return rules


def _pods_selected(target, peer):
    """Names of this target's workloads a same-namespace peer podSelector admits."""
    return {
        wl["metadata"]["name"]
        for t in (target, JOB)
        for wl in workloads(t)
        if selector_matches(peer["podSelector"], pod_labels(wl))
    }


@pytest.mark.parametrize("target", SERVING)
def test_default_deny_ingress(target):
    deny = [
        p
        for p in objects(target, "NetworkPolicy")
        if p["spec"]["podSelector"] == {}
        and p["spec"].get("policyTypes") == ["Ingress"]
        and not p["spec"].get("ingress")
    ]
    assert deny, "no default-deny ingress policy"


@pytest.mark.parametrize("target", SERVING)
def test_triton_admits_only_model_services_and_prometheus(target):
    dep, _ = _triton(target)
    rules = _ingress_rules(target, dep)
    assert rules
    for rule in rules:
        ports = rule["ports"]
        peers = rule.get("from")
        assert peers and ports, f"rule admits everything: {rule}"
        for peer in peers:
            if "namespaceSelector" in peer:
                assert peer["namespaceSelector"] == {"matchLabels": PROMETHEUS_NS}, peer
                assert "podSelector" not in peer or peer["podSelector"]
                assert ports == {8002}, f"Prometheus may reach only metrics: {rule}"
            else:
                assert "ipBlock" not in peer, peer
                assert _pods_selected(target, peer) == MODEL_SERVICES, peer
                assert ports == {8001}, f"services may reach only gRPC: {rule}"


@pytest.mark.parametrize("target", SERVING)
def test_model_services_admit_only_router_and_prometheus(target):
    for name in MODEL_SERVICES:
        rules = _ingress_rules(target, one(target, "Deployment", name))
        admitted = set()
        for rule in rules:
            ports = rule["ports"]
            assert rule.get("from") and ports, rule
            for peer in rule["from"]:
                if "namespaceSelector" in peer:
                    assert peer["namespaceSelector"] == {"matchLabels": PROMETHEUS_NS}
                    assert ports == {METRICS_PORTS[name]}, rule
                else:
                    assert _pods_selected(target, peer) == {"router"}, peer
                    assert ports == {CPU_SERVICES[name]}
                    admitted.add("router")
        assert admitted == {"router"}, name


@pytest.mark.parametrize("target", SERVING)
def test_router_admits_namespace_and_ingress_on_grpc_only(target):
    rules = _ingress_rules(target, one(target, "Deployment", "router"))
    assert [r for r in rules if r["ports"] == {50051}]
    for rule in rules:
        assert rule["ports"] and rule.get("from"), rule
        assert rule["ports"] in ({50051}, {9091}), rule
        if rule["ports"] == {9091}:
            assert all(
                p.get("namespaceSelector") == {"matchLabels": PROMETHEUS_NS}
                for p in rule["from"]
            )


@pytest.mark.parametrize("target", SERVING)
def test_metrics_reachable_from_prometheus(target):
    for name, port in {**METRICS_PORTS, "triton": 8002}.items():
        ok = [
            r
            for r in _ingress_rules(target, one(target, "Deployment", name))
            if port in r["ports"]
            and any(
                p.get("namespaceSelector") == {"matchLabels": PROMETHEUS_NS}
                for p in r["from"]
            )
        ]
        assert ok, f"{name}: Prometheus cannot scrape port {port}"


# --------------------------------------------------------------------------- monitoring


@pytest.mark.parametrize("target", SERVING)
def test_podmonitors_use_agreed_job_names(target):
    monitors = {m["metadata"]["name"]: m for m in objects(target, "PodMonitor")}
    for job, selected in (("prelabel", set(CPU_SERVICES)), ("triton", {"triton"})):
        spec = monitors[job]["spec"]
        got = {
            d["metadata"]["name"]
            for d in objects(target, "Deployment")
            if selector_matches(spec["selector"], pod_labels(d))
        }
        assert got == selected, job
        (endpoint,) = spec["podMetricsEndpoints"]
        assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
        assert {"targetLabel": "job", "replacement": job} in endpoint["relabelings"]


def test_prometheusrule_matches_alerts_file():
    rule = one(BASE, "PrometheusRule", "prelabel")
    source = yaml.safe_load((ROOT / "monitoring" / "alerts.yaml").read_text())
    assert rule["spec"]["groups"] == source["groups"], (
        "k8s/base/prometheusrule.yaml is stale: run python monitoring/sync_prometheusrule.py"
    )


# --------------------------------------------------------------------------- bulk job


def test_bulk_job_is_indexed_and_sharded():
    (job,) = objects(JOB, "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] >= 1 and 1 <= spec["parallelism"] <= spec["completions"]
    assert spec.get("backoffLimitPerIndex", spec.get("backoffLimit")) is not None
    assert pod_spec(job)["restartPolicy"] == "Never"
    (c,) = pod_spec(job)["containers"]
    argv = c.get("command", []) + c.get("args", [])
    assert argv[:2] == ["prelabel", "annotate"]
    assert len(argv) % 2 == 0, f"options must come in --flag value pairs: {argv}"
    opts = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert opts["--shard-index"] == "$(JOB_COMPLETION_INDEX)"
    assert int(opts["--shard-count"]) == spec["completions"]
    assert opts["--router"] == "router:50051"
    assert set(opts["--tasks"].split(",")) == {
        "detect",
        "segment",
        "keypoints",
        "faces",
    }
    assert "$(JOB_COMPLETION_INDEX)" in opts["--out"], (
        "each shard needs its own --out (its _SUCCESS)"
    )
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    out_mount = next(p for p in mounts if opts["--out"].startswith(p + "/"))
    claim = volumes[mounts[out_mount]]["persistentVolumeClaim"]["claimName"]
    assert one(JOB, "PersistentVolumeClaim", claim)
    manifest_mount = next(p for p in mounts if opts["--manifest"].startswith(p + "/"))
    assert {"persistentVolumeClaim", "configMap"} & set(volumes[mounts[manifest_mount]])
    # The bulk job reaches the router through its NetworkPolicy (same-namespace pods).
    assert any(
        50051 in r["ports"]
        and any(
            "podSelector" in p
            and "namespaceSelector" not in p
            and selector_matches(p["podSelector"], pod_labels(job))
            for p in r["from"]
        )
        for r in _ingress_rules(BASE, one(BASE, "Deployment", "router"))
    )
