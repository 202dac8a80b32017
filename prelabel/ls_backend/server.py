"""`prelabel ls-backend`: an HTTP server that speaks Label Studio's ML backend protocol
(as the reference `label-studio-ml` package does) and asks the prelabel router.

    GET  /health    {"status": "UP", "model_class": "PrelabelBackend"}
    POST /setup     {"project": "<id>.<ts>", "schema": "<View>..."} -> {"model_version": ...}
    POST /predict   {"tasks": [...], "label_config": "<View>...", "project": ...}
                    -> {"results": [{"result": [...], "score": s, "model_version": v}, ...]}
                    one prediction per task, in order (an empty result for a task whose
                    image could not be fetched or labelled: logged and counted)
    POST /webhook   accepted (200 {}): this backend does not train
    GET  /versions  {"versions": [model_version]}
    GET  /metrics   Prometheus metrics

The project's labeling config (from /predict, else the one /setup received) decides the
tasks asked of the router and the label names returned (project.py). Images are fetched
only from Label Studio or allow-listed prefixes, with a byte cap (fetch.py). Optional
basic auth (`PRELABEL_LS_BASIC_AUTH_USER` / `_PASSWORD`, as Label Studio's "basic auth"
of an ML backend connection).
"""
from __future__ import annotations

import base64
import hmac
import json
import logging
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypedDict

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from prelabel.formats.common import iter_labels, model_tag
from prelabel.formats.labelstudio import results_of, run_model_version
from prelabel.ls_backend.fetch import FetchError, fetch_image
from prelabel.ls_backend.project import ConfigError, Project, parse_config, relabel
from prelabel.ls_backend.settings import LsBackendSettings
from prelabel.sdk import SyncPreLabelClient

log = logging.getLogger("prelabel.ls_backend")
MODEL_CLASS = "PrelabelBackend"
ENDPOINTS = frozenset({"/", "/health", "/setup", "/predict", "/webhook", "/versions", "/metrics"})


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("prelabel_ls_requests_total", "HTTP requests by endpoint and status code",
                                ["endpoint", "code"], registry=self.registry)
        self.tasks = Counter("prelabel_ls_tasks_total", "Tasks predicted, by outcome (ok, fetch_error, "
                             "router_error, bad_task)", ["outcome"], registry=self.registry)
        self.regions = Counter("prelabel_ls_regions_total", "Regions returned to Label Studio",
                               registry=self.registry)
        self.predict_seconds = Histogram("prelabel_ls_predict_seconds", "Time to predict one task",
                                         registry=self.registry,
                                         buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


class Backend:
    """The protocol's logic, without HTTP."""

    def __init__(self, settings: LsBackendSettings, client=None):
        self.settings = settings
        self.metrics = Metrics()
        metadata = [("authorization", f"Bearer {settings.router_token}")] if settings.router_token else []
        ca = None
        if settings.router_ca_file:
            with open(settings.router_ca_file, "rb") as f:
                ca = f.read()
        self.client = client or SyncPreLabelClient(settings.router, timeout_s=settings.timeout_s,
                                                   tls=settings.router_tls, root_certificates=ca, metadata=metadata)
        self.projects: dict[str, Project] = {}  # project id -> config set up
        self.model_version = "prelabel"
        self._lock = threading.Lock()
        self.in_flight = 0  # requests being handled (drained on SIGTERM)
        self.idle = threading.Condition(self._lock)

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1
            self.idle.notify_all()

    def drain(self, timeout_s: float) -> bool:
        """Wait until no request is in flight (True) or `timeout_s` passed (False)."""
        with self._lock:
            return self.idle.wait_for(lambda: self.in_flight == 0, timeout_s)

    def setup(self, body: dict) -> dict:
        project_id = str(body.get("project", "")).split(".", 1)[0]
        schema = body.get("schema") or body.get("label_config")
        if schema:
            project = parse_config(schema)
            with self._lock:
                self.projects[project_id] = project
        return {"model_version": self.model_version}

    def _project(self, body: dict) -> Project:
        if body.get("label_config"):
            return parse_config(body["label_config"])
        project_id = str(body.get("project", "")).split(".", 1)[0]
        with self._lock:
            project = self.projects.get(project_id)
        if project is None:
            raise ConfigError("no label_config in the request and none set up for this project")
        return project

    def predict(self, body: dict) -> dict:
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise ConfigError("'tasks' must be a list")
        if len(tasks) > self.settings.max_tasks_per_request:
            raise ConfigError(f"at most {self.settings.max_tasks_per_request} tasks per request")
        project = self._project(body)
        return {"results": [self.predict_task(task, project) for task in tasks]}

    def predict_task(self, task: dict, project: Project) -> dict:
        started = time.monotonic()
        outcome, regions, scores = "ok", [], []
        try:
            url = (task.get("data") or {}).get(project.image_field) if isinstance(task, dict) else None
            if not isinstance(url, str) or not url:
                outcome = "bad_task"
                raise ValueError(f"task has no data.{project.image_field}")
            image = fetch_image(url, self.settings)
            response = self.client.prelabel(
                image, str(task.get("id", "")), project.tasks, include_polygons=project.masks == "polygon",
                score_threshold=self.settings.score_threshold or None)
            tags = {model_tag(label.detection.provenance) for label in iter_labels(response)}
            if tags:
                self.model_version = run_model_version(tags)
            raw, _ = results_of(response, project.masks, project.region_controls())
            regions = relabel(raw, project, self.settings.score_threshold)
            scores = [r["score"] for r in regions if r["type"] != "keypointlabels" and "score" in r]
        except FetchError as exc:
            outcome = "fetch_error"
            log.warning("task %s: %s", task.get("id") if isinstance(task, dict) else "?", exc)
        except grpc.RpcError as exc:
            outcome = "router_error"
            log.warning("task %s: router: %s", task.get("id"), exc.code() if hasattr(exc, "code") else exc)
        except ValueError as exc:
            outcome = outcome if outcome != "ok" else "bad_task"
            log.warning("task: %s", exc)
        self.metrics.tasks.labels(outcome).inc()
        self.metrics.regions.inc(len(regions))
        self.metrics.predict_seconds.observe(time.monotonic() - started)
        prediction: dict[str, object] = {"result": regions, "model_version": self.model_version}
        prediction["score"] = round(sum(scores) / len(scores), 5) if scores else 0.0
        return prediction


def make_handler(backend: Backend):
    settings = backend.settings

    class Handler(BaseHTTPRequestHandler):
        server_version = "prelabel-ls-backend"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # through logging, not stderr
            log.debug("%s " + fmt, self.address_string(), *args)

        def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            path = self.path.split("?")[0]
            # known endpoints only: a label per random path would grow without bound
            backend.metrics.requests.labels(path if path in ENDPOINTS else "other", str(code)).inc()

        def _json(self, code: int, obj) -> None:
            self._send(code, json.dumps(obj).encode())

        def _authorized(self) -> bool:
            if not settings.basic_auth_user:
                return True
            expected = base64.b64encode(f"{settings.basic_auth_user}:{settings.basic_auth_password}".encode()).decode()
            return hmac.compare_digest(self.headers.get("Authorization", ""), f"Basic {expected}")

        def do_GET(self):
            path = self.path.split("?")[0]
            if path in ("/health", "/"):
                self._json(200, {"status": "UP", "model_class": MODEL_CLASS})
            elif path == "/metrics":
                self._send(200, generate_latest(backend.metrics.registry), CONTENT_TYPE_LATEST)
            elif not self._authorized():
                self._json(401, {"error": "unauthorized"})
            elif path == "/versions":
                self._json(200, {"versions": [backend.model_version]})
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self):
            backend.enter()
            try:
                self._post()
            finally:
                backend.leave()

        def _post(self):
            path = self.path.split("?")[0]
            if not self._authorized():
                self._json(401, {"error": "unauthorized"})
                return
            length = self.headers.get("Content-Length", "")
            if not length.isdigit() or int(length) > settings.max_request_bytes:
                self._json(413 if length.isdigit() else 411, {"error": "body too large or without length"})
                self.close_connection = True
                return
            try:
                body = json.loads(self.rfile.read(int(length)) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
                if path == "/setup":
                    self._json(200, backend.setup(body))
                elif path == "/predict":
                    self._json(200, backend.predict(body))
                elif path == "/webhook":
                    self._json(200, {})
                else:
                    self._json(404, {"error": "not found"})
            except (ValueError, ConfigError) as exc:
                self._json(400, {"error": str(exc)})
            except Exception:
                log.exception("%s failed", path)
                self._json(500, {"error": "internal error"})

    return Handler


class BackendServer(ThreadingHTTPServer):
    """The HTTP server of one Backend (request threads are daemons)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], backend: Backend) -> None:
        super().__init__(address, make_handler(backend))
        self.backend = backend


def serve(settings: LsBackendSettings, backend: Backend | None = None) -> BackendServer:
    """A started server (serve_forever in a daemon thread); `.shutdown()` stops it."""
    httpd = BackendServer((settings.host, settings.port), backend or Backend(settings))
    threading.Thread(target=httpd.serve_forever, name="ls-backend", daemon=True).start()
    return httpd


class _Overrides(TypedDict, total=False):
    """Command-line values that replace the environment's settings."""

    host: str
    port: int


def main(host: str | None = None, port: int | None = None) -> int:
    overrides: _Overrides = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = LsBackendSettings(**overrides)
    httpd = serve(settings)
    log.info("ls-backend on http://%s:%d -> router %s", settings.host, httpd.server_address[1], settings.router)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.shutdown()  # no new requests; those in flight finish within the grace
        if not httpd.backend.drain(settings.shutdown_grace_s):
            log.warning("%d requests still in flight after %.0f s", httpd.backend.in_flight, settings.shutdown_grace_s)
        httpd.server_close()
    return 0
