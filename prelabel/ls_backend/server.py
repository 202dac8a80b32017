"""`prelabel ls-backend`: an HTTP server that speaks Label Studio's ML backend protocol
(as the reference `label-studio-ml` package does) and asks the prelabel router.

    GET  /health    {"status": "UP", "model_class": "PrelabelBackend"}
    POST /setup     {"project": "<id>.<ts>", "schema": "<View>..."} -> {"model_version": ...}
                    (502 when Label Studio refuses the backend's token: Label Studio then
                    refuses the connection, or marks it "Error", with the reason; an error
                    status too when the router cannot tell its served models yet)
    POST /predict   {"tasks": [...], "label_config": "<View>...", "project": ...}
                    -> {"results": [{"result": [...], "score": s, "model_version": v}, ...]}
                    one entry per task, in order; see below for tasks that fail.
                    Interactive pre-annotation (one task, the annotator's smart keypoints /
                    rectangle in "params": {"context": ...}): the one brushlabels mask of
                    the clicked object, through the router's SegmentClick (smart.py)
    POST /webhook   accepted (200 {}): this backend does not train
    GET  /versions  {"versions": [the model_version of each project's drafts]}
    GET  /metrics   Prometheus metrics

model_version is the same for every task of a project and across restarts: a function of
the served models and of the settings that change the drafts (version.py), since Label
Studio asks again, and stores a second prediction, for tasks whose predictions hold another.

Label Studio stores every prediction it is given and never asks for that task again, so a
task whose image cannot be read (Label Studio or the image host refused it, timed out, the
bytes are not an image) or whose labels came back incomplete (a suite task failed) gets no
prediction: when every task of the request failed the answer is an error status whose HTTP
reason phrase is the cause (Label Studio 1.23 shows only `<status> ... Error: <reason> for
url: ...`: in its log, and to the annotator for interactive pre-annotation) and the body
lists each task's error; when only some failed, the others get their predictions (200) and
a failed task's entry is `{"error": ...}` without a "result", which Label Studio logs and
skips. Either way the task has no prediction and is asked for again once the cause is fixed.

The project's labeling config (from /predict, else the one /setup received) decides the
tasks asked of the router and the label names returned (project.py); `outputs_review`
decides which review decisions' drafts are returned (formats.common.output_labels, the
rule of annotate's Label Studio output: by default no rejected draft). Images are fetched
only from Label Studio or allow-listed prefixes, with a byte cap (fetch.py), with the token
of tokens.py. Optional basic auth (`PRELABEL_LS_BASIC_AUTH_USER` / `_PASSWORD`, as Label
Studio's "basic auth" of an ML backend connection).
"""
from __future__ import annotations

import base64
import functools
import hmac
import json
import logging
import re
import signal
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypedDict

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from prelabel.formats.common import model_tag
from prelabel.formats.labelstudio import PER_REGION_TYPES, results_of
from prelabel.ls_backend.fetch import FetchError, check_token, exchange_token, fetch_image
from prelabel.ls_backend.project import ConfigError, Project, parse_config, relabel
from prelabel.ls_backend.settings import LsBackendSettings
from prelabel.ls_backend.smart import SmartPrompt, brush_label, brush_region, click_request, smart_prompt, upright_size
from prelabel.ls_backend.tokens import LabelStudioToken, TokenError
from prelabel.ls_backend.version import PROBE_IMAGE_ID, Asked, Versions, drafts_version, probe_image
from prelabel.sdk import TASK_NAMES, SyncPreLabelClient
from prelabel.v1 import prelabel_pb2

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


@dataclass(frozen=True)
class TaskFailure:
    """Why one task gets no prediction; `status` is the HTTP status when every task failed."""

    task_id: object
    status: int
    message: str
    outcome: str  # metrics label


class BackendError(Exception):
    """Answered with `status`, the message as the HTTP reason phrase and `body`."""

    def __init__(self, status: int, message: str, body: dict | None = None):
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **(body or {})}


#: Router status codes worth retrying as they are (503); any other failure is a 502.
_RETRYABLE = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED"}


def _router_status(code: str) -> int:
    if code == "INVALID_ARGUMENT":
        return 422  # the bytes are not an image the suite can read
    return 503 if code in _RETRYABLE else 502


class Backend:
    """The protocol's logic, without HTTP."""

    def __init__(self, settings: LsBackendSettings, client=None):
        self.settings = settings
        self.metrics = Metrics()
        secret = settings.label_studio_token.get_secret_value().strip() if settings.label_studio_token else ""
        self.token = LabelStudioToken(secret, functools.partial(exchange_token, settings)) if secret else None
        metadata = [("authorization", f"Bearer {settings.router_token}")] if settings.router_token else []
        ca = None
        if settings.router_ca_file:
            with open(settings.router_ca_file, "rb") as f:
                ca = f.read()
        self.client = client or SyncPreLabelClient(settings.router, timeout_s=settings.timeout_s,
                                                   tls=settings.router_tls, root_certificates=ca, metadata=metadata)
        self.projects: dict[str, Project] = {}  # project id -> config set up
        self.versions = Versions()  # model_version of each Asked (version.py)
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
        """Label Studio calls this on connecting and before every batch of predictions: a
        token it refuses is said here, where Label Studio shows it (connection refused, or
        the model marked "Error" with this reason). The model_version answered is the one
        Label Studio skips the tasks of (version.py)."""
        project_id = str(body.get("project", "")).split(".", 1)[0]
        schema = body.get("schema") or body.get("label_config")
        project = parse_config(schema) if schema else None
        if self.token is not None:
            try:
                check_token(self.settings, self.token)
            except FetchError as exc:
                raise BackendError(exc.status, f"cannot read images from Label Studio: {exc}") from None
        if project is not None:
            with self._lock:
                self.projects[project_id] = project
        return {"model_version": self.version_of(project or self._project(body))}

    def version_of(self, project: Project) -> str:
        """The model_version of `project`'s drafts: learned less than version.MAX_AGE_S
        ago, else from the router's answer to the probe image; while the router cannot
        answer, the one learned last (a BackendError when there is none)."""
        asked = Asked.of(project)
        version = self.versions.fresh(asked)
        if version is not None:
            return version
        answer = self._probe(project)
        if not isinstance(answer, TaskFailure):
            version = drafts_version(answer, asked, self.settings)
            self.versions.learned(asked, version)
            return version
        last = self.versions.last(asked)
        if last is None:
            raise BackendError(answer.status, f"cannot learn the router's served models: {answer.message}")
        log.warning("router's served models not learned again (%s): still %s", answer.message, last)
        return last

    def _probe(self, project: Project) -> prelabel_pb2.PreLabelResponse | TaskFailure:
        """The router's complete answer to the probe image for `project`'s tasks, or why
        there is none."""
        try:
            response = self._ask_router(probe_image(), PROBE_IMAGE_ID, project)
        except grpc.RpcError as exc:
            return self._router_failure(None, exc)
        return self._failed_tasks(None, response) or response

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
        params = body.get("params")
        prompt = smart_prompt(params.get("context"), project) if isinstance(params, dict) else None
        if prompt is not None and len(tasks) != 1:
            raise ConfigError("an interactive request (params.context) is for one task")
        answers = [self.predict_task(task, project, prompt) for task in tasks]
        failures = [a for a in answers if isinstance(a, TaskFailure)]
        if failures and len(failures) == len(answers):
            first = failures[0]
            more = f" (and {len(failures) - 1} more tasks)" if len(failures) > 1 else ""
            raise BackendError(first.status, f"task {first.task_id}: {first.message}{more}",
                               {"tasks": [{"id": f.task_id, "error": f.message} for f in failures]})
        return {"results": [{"error": f"task {a.task_id}: {a.message}"} if isinstance(a, TaskFailure) else a
                            for a in answers]}

    def predict_task(self, task: object, project: Project, prompt: SmartPrompt | None = None) -> dict | TaskFailure:
        """The task's prediction (with `prompt`: the mask for the annotator's smart regions),
        or why it gets none."""
        started = time.monotonic()
        answer = self._prediction(task, project) if prompt is None else self._click_prediction(task, project, prompt)
        self.metrics.predict_seconds.observe(time.monotonic() - started)
        if isinstance(answer, TaskFailure):
            log.warning("task %s: no prediction (%d): %s", answer.task_id, answer.status, answer.message)
            self.metrics.tasks.labels(answer.outcome).inc()
        else:
            self.metrics.tasks.labels("ok").inc()
            self.metrics.regions.inc(sum(r["type"] not in PER_REGION_TYPES for r in answer["result"]))
        return answer

    def _image(self, task: object, project: Project) -> bytes | TaskFailure:
        """The bytes of the task's image, or why they cannot be had."""
        task_id = task.get("id") if isinstance(task, dict) else None
        data = task.get("data") if isinstance(task, dict) else None
        url = data.get(project.image_field) if isinstance(data, dict) else None
        if not isinstance(url, str) or not url:
            return TaskFailure(task_id, 422, f"task has no data.{project.image_field}", "bad_task")
        try:
            return fetch_image(url, self.settings, self.token)
        except FetchError as exc:
            return TaskFailure(task_id, exc.status, f"cannot read image: {exc}", "fetch_error")

    @staticmethod
    def _router_failure(task_id: object, exc: grpc.RpcError) -> TaskFailure:
        code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        details = exc.details() if hasattr(exc, "details") else str(exc)
        return TaskFailure(task_id, _router_status(code), f"router: {code}: {details}",
                           "bad_task" if code == "INVALID_ARGUMENT" else "router_error")

    def _ask_router(self, image: bytes, image_id: str, project: Project) -> prelabel_pb2.PreLabelResponse:
        """The router's labels of `image` for `project`'s tasks; raises grpc.RpcError."""
        return self.client.prelabel(image, image_id, project.tasks, include_polygons=project.masks == "polygon",
                                    score_threshold=self.settings.score_threshold or None)

    @staticmethod
    def _failed_tasks(task_id: object, response: prelabel_pb2.PreLabelResponse) -> TaskFailure | None:
        """Why the response is incomplete (a suite task failed), or None."""
        failed = [r for r in response.task_results if r.code != "OK"]
        if not failed:
            return None
        return TaskFailure(task_id, max(_router_status(r.code) for r in failed),
                           "; ".join(f"{TASK_NAMES.get(r.task, r.task)}: {r.code}: {r.message}" for r in failed),
                           "router_error")

    def _prediction(self, task: object, project: Project) -> dict | TaskFailure:
        task_id = task.get("id") if isinstance(task, dict) else None
        image = self._image(task, project)
        if isinstance(image, TaskFailure):
            return image
        try:
            response = self._ask_router(image, str(task_id or ""), project)
        except grpc.RpcError as exc:
            return self._router_failure(task_id, exc)
        failure = self._failed_tasks(task_id, response)
        if failure is not None:  # a stored prediction without, say, its masks would never be completed
            return failure
        asked = Asked.of(project)
        version = drafts_version(response, asked, self.settings)
        self.versions.learned(asked, version)  # a model redeployed since the last /setup: its version now
        try:
            raw, _ = results_of(response, project.masks, project.region_controls(),
                                review=self.settings.outputs_review)
        except ValueError as exc:  # an answer without the image's size
            return TaskFailure(task_id, 502, f"router: {exc}", "router_error")
        regions = relabel(raw, project, self.settings.score_threshold)
        scores = [r["score"] for r in regions if r["type"] != "keypointlabels" and "score" in r]
        return {"result": regions, "model_version": version,
                "score": round(sum(scores) / len(scores), 5) if scores else 0.0}

    def _click_prediction(self, task: object, project: Project, prompt: SmartPrompt) -> dict | TaskFailure:
        """One brushlabels region for the smart regions (smart.py), or why there is none:
        an interactive answer is never empty."""
        control, label = brush_label(prompt, project)
        task_id = task.get("id") if isinstance(task, dict) else None
        image = self._image(task, project)
        if isinstance(image, TaskFailure):
            return image
        try:
            size = upright_size(image)
        except ValueError as exc:
            return TaskFailure(task_id, 422, f"cannot read image: {exc}", "bad_task")
        try:
            response = self.client.segment_click(click_request(prompt, image, str(task_id or ""), size))
        except grpc.RpcError as exc:
            return self._router_failure(task_id, exc)
        served = (response.image_size.width, response.image_size.height)
        if served != size:  # the clicks would land elsewhere than the annotator put them
            return TaskFailure(task_id, 502, f"router: the image is {served[0]}x{served[1]} there and "
                                             f"{size[0]}x{size[1]} here", "router_error")
        region = brush_region(response, control, label, project.image)
        if region is None:
            return TaskFailure(task_id, 502, "router: no mask for the clicks (no candidate, or an empty one)",
                               "router_error")
        # a suggestion Label Studio does not store: the model that made the mask
        return {"result": [region], "model_version": model_tag(response.provenance), "score": region["score"]}


_NOT_IN_REASON = re.compile(r"[^\x20-\x7e]+")
MAX_REASON_CHARS = 400


def reason_phrase(message: str) -> str:
    """`message` as an HTTP reason phrase: one line of printable ASCII, bounded."""
    phrase = _NOT_IN_REASON.sub(" ", message).strip()
    return phrase if len(phrase) <= MAX_REASON_CHARS else phrase[:MAX_REASON_CHARS - 3] + "..."


def make_handler(backend: Backend):
    settings = backend.settings

    class Handler(BaseHTTPRequestHandler):
        server_version = "prelabel-ls-backend"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # through logging, not stderr
            log.debug("%s " + fmt, self.address_string(), *args)

        def _send(self, code: int, body: bytes, content_type: str = "application/json",
                  reason: str | None = None) -> None:
            self.send_response(code, reason)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            path = self.path.split("?")[0]
            # known endpoints only: a label per random path would grow without bound
            backend.metrics.requests.labels(path if path in ENDPOINTS else "other", str(code)).inc()

        def _json(self, code: int, obj) -> None:
            self._send(code, json.dumps(obj).encode())

        def _error(self, code: int, message: str, body: dict | None = None) -> None:
            """An error answer whose reason phrase is the message: Label Studio shows only
            that (its client's `<code> Server Error: <reason> for url: ...`), not the body."""
            self._send(code, json.dumps(body or {"error": message}).encode(), reason=reason_phrase(message))

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
                self._json(200, {"versions": backend.versions.all()})
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
            except BackendError as exc:
                self._error(exc.status, str(exc), exc.body)
            except ValueError as exc:  # ConfigError, a body that is not JSON
                self._error(400, str(exc))
            except Exception:
                log.exception("%s failed", path)
                self._error(500, "internal error (see the ls-backend log)")

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
    try:
        backend = Backend(settings)
    except TokenError as exc:
        log.error("ls-backend: PRELABEL_LS_LABEL_STUDIO_TOKEN: %s", exc)
        return 2
    httpd = serve(settings, backend)
    log.info("ls-backend on http://%s:%d -> router %s; Label Studio %s with %s", settings.host,
             httpd.server_address[1], settings.router, settings.label_studio_url,
             f"a {backend.token.kind}" if backend.token else "no token")
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
