"""`prelabel ls-backend` pieces without Label Studio: the labeling-config mapping, the
image-URL allow-list, the token kinds and their refresh, and what /predict answers when
tasks fail. (tests/tools/test_labelstudio.py runs it against the real Label Studio and the
real suite.)"""
from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from prelabel.formats.labelstudio import PER_REGION_TYPES, labeling_config, results_of
from prelabel.ls_backend.fetch import FetchError, Source, fetch_image, resolve
from prelabel.ls_backend.project import ConfigError, parse_config, relabel
from prelabel.ls_backend.server import Backend, BackendError, reason_phrase, serve
from prelabel.ls_backend.settings import LsBackendSettings
from prelabel.ls_backend.tokens import REFRESH_MARGIN_S, LabelStudioToken, TokenError
from prelabel.ls_backend.version import MAX_AGE_S, Asked, Versions
from prelabel.v1 import common_pb2, prelabel_pb2

CONFIG = """<View>
  <Image name="img" value="$photo"/>
  <RectangleLabels name="boxes" toName="img">
    <Label value="Person" predicted_values="person,man"/><Label value="Face"/><Label value="Mug" predicted_values="cup"/>
  </RectangleLabels>
  <BrushLabels name="paint" toName="img"><Label value="Person" predicted_values="person"/></BrushLabels>
  <KeyPointLabels name="lm" toName="img"><Label value="mouth_left"/><Label value="nose"/></KeyPointLabels>
</View>"""


def test_parse_config_maps_controls_to_tasks_when_labels_use_predicted_values():
    project = parse_config(CONFIG)
    assert (project.image, project.image_field) == ("img", "photo")
    assert project.tasks == ["detect", "segment", "faces"] and project.masks == "brush"
    assert project.controls["boxes"].labels == {"person": "Person", "man": "Person", "face": "Face",
                                                "cup": "Mug"}
    assert project.controls["lm"].kind == "face_keypoint"  # a face-only landmark and no person-only point
    controls = project.region_controls()
    assert (controls.rectangle, controls.brush, controls.face_keypoint, controls.polygon) == ("boxes", "paint", "lm", "")


def test_relabel_drops_regions_the_project_cannot_hold_when_labels_are_missing():
    project = parse_config(CONFIG)
    regions = [
        {"id": "a", "from_name": "boxes", "type": "rectanglelabels", "value": {"rectanglelabels": ["cup"]}, "score": .9},
        {"id": "b", "from_name": "boxes", "type": "rectanglelabels", "value": {"rectanglelabels": ["dog"]}, "score": .9},
        {"id": "c", "from_name": "", "type": "polygonlabels", "value": {"polygonlabels": ["person"]}, "score": .9},
        {"id": "d", "from_name": "lm", "type": "keypointlabels", "parentID": "b",
         "value": {"keypointlabels": ["nose"]}, "score": .9},
    ]
    out = relabel(regions, project)
    assert [r["id"] for r in out] == ["a", "d"]
    assert out[0]["value"]["rectanglelabels"] == ["Mug"] and "parentID" not in out[1]


def test_relabel_keeps_per_region_review_and_source_when_project_has_them_and_their_region_is_kept():
    written = labeling_config(["detect", "segment", "keypoints", "faces"])  # what annotate writes
    project = parse_config(written)
    assert (project.review, project.source) == ("review", "source")
    r = prelabel_pb2.PreLabelResponse(image_id="x")
    r.image_size.width, r.image_size.height = 100, 100
    for name, box in (("person", (10, 10, 50, 90)), ("widget", (60, 10, 90, 50))):
        d = r.detections.add(score=0.9, review=common_pb2.REVIEW_DECISION_NEEDS_REVIEW)
        d.category.name = name
        d.box.x_min, d.box.y_min, d.box.x_max, d.box.y_max = box
    regions, _ = results_of(r, project.masks, project.region_controls())
    out = relabel(regions, project)
    assert [(x["id"], x["type"]) for x in out] == [("detect-0", "rectanglelabels"), ("detect-0", "choices"),
                                                   ("detect-0", "textarea")]  # the widget has no label here
    assert out[1]["value"]["choices"] == ["needs_review"]
    # A project without them: the regions alone.
    plain = parse_config(CONFIG)
    assert (plain.review, plain.source) == ("", "")
    assert all(x["type"] not in PER_REGION_TYPES for x in results_of(r, plain.masks, plain.region_controls())[0])


def test_parse_config_refuses_when_no_control_targets_the_image():
    with pytest.raises(ConfigError):
        parse_config('<View><Image name="i" value="$image"/><Choices name="c" toName="i"/></View>')
    with pytest.raises(ConfigError):
        parse_config("<View")


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "http://169.254.169.254/latest/meta-data/", "http://ls.example:8080.evil.com/x",
    "http://user:pw@ls.example:8080/data/x", "https://bucket.example.com.evil.net/a.jpg", "gopher://ls.example/",
])
def test_resolve_refuses_url_when_not_under_label_studio_or_an_allowed_prefix(url):
    settings = LsBackendSettings(label_studio_url="http://ls.example:8080",
                                 allowed_url_prefixes=["https://bucket.example.com/", "https://no-slash.example"])
    with pytest.raises(FetchError):
        resolve(url, settings)


def test_resolve_marks_label_studio_urls_for_the_token_when_url_is_relative_or_allowed():
    settings = LsBackendSettings(label_studio_url="http://ls.example:8080", label_studio_token="k",
                                 allowed_url_prefixes=["https://bucket.example.com/"])
    assert resolve("/data/local-files/?d=images/a.jpg", settings) == Source(
        "http://ls.example:8080/data/local-files/?d=images/a.jpg", True)
    assert resolve("https://bucket.example.com/a.jpg?sig=1", settings) == Source(
        "https://bucket.example.com/a.jpg?sig=1", False)  # no token to another host


def test_server_refuses_requests_when_body_is_too_large_or_auth_is_wrong():
    settings = LsBackendSettings(host="127.0.0.1", port=0, max_request_bytes=100, basic_auth_user="ls",
                                 basic_auth_password="pw")
    httpd = serve(settings, Backend(settings, client=object()))  # no router needed for these
    base = f"http://127.0.0.1:{httpd.server_address[1]}"

    def post(path, body, auth=None):
        req = urllib.request.Request(base + path, data=body, method="POST",
                                     headers={"Authorization": auth} if auth else {})
        try:
            with urllib.request.urlopen(req, timeout=5) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        good = "Basic bHM6cHc="  # ls:pw
        assert post("/webhook", b"{}")[0] == 401 and post("/webhook", b"{}", "Basic eDp5")[0] == 401
        assert post("/webhook", b"{}", good) == (200, {})
        assert post("/predict", b"x" * 101, good)[0] == 413
        assert post("/predict", b'{"tasks": [], "label_config": "<View"}', good)[0] == 400
        with urllib.request.urlopen(base + "/health", timeout=5) as reply:  # probes need no auth
            assert json.loads(reply.read())["status"] == "UP"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_backend_drain_waits_for_requests_in_flight_when_stopping():
    backend = Backend(LsBackendSettings(), client=object())
    backend.enter()
    assert backend.drain(0.05) is False  # one request still in flight
    threading.Timer(0.1, backend.leave).start()
    assert backend.drain(5) is True and backend.in_flight == 0


# ------------------------------------------------------------------ Label Studio tokens


def jwt(**claims) -> str:
    """A JWT-shaped token (Label Studio signs its own; the backend never verifies them)."""
    def part(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


PAT = jwt(token_type="refresh", exp=8_103_408_747, iat=1_796_208_747, user_id="1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_kind_is_read_from_the_token_when_personal_legacy_or_access():
    assert LabelStudioToken(PAT, exchange=lambda pat: "x").personal
    legacy = LabelStudioToken("406116b745bcdf6fbc94e6e95dd2130eac04f33e", exchange=lambda pat: "x")
    assert not legacy.personal and legacy.header() == "Token 406116b745bcdf6fbc94e6e95dd2130eac04f33e"
    with pytest.raises(TokenError, match="personal access token"):  # an access token pasted by mistake
        LabelStudioToken(jwt(token_type="access", exp=2, iat=1), exchange=lambda pat: "x")


def test_token_is_exchanged_again_before_it_expires_and_after_label_studio_refuses_it():
    clock = Clock()
    issued: list[str] = []

    def exchange(pat: str) -> str:
        assert pat == PAT
        # Label Studio's clock is an hour off this machine's: only exp - iat counts
        issued.append(jwt(token_type="access", iat=5_000 + len(issued), exp=5_300 + len(issued)))
        return issued[-1]

    token = LabelStudioToken(PAT, exchange, clock=clock, wall_clock=lambda: 3600.0)
    first = token.header()
    assert first == f"Bearer {issued[0]}" and token.header() == first  # cached
    clock.now += 300 - REFRESH_MARGIN_S - 1
    assert token.header() == first
    clock.now += 2  # within the margin before expiry: a new one
    second = token.header()
    assert second == f"Bearer {issued[1]}"
    token.rejected(first)  # a late 401 for the old token does not drop the new one
    assert token.header() == second and len(issued) == 2
    token.rejected(second)
    assert token.header() == f"Bearer {issued[2]}"


class LabelStudioDouble(BaseHTTPRequestHandler):
    """Label Studio's token exchange and an image, on loopback. A double because an access
    token expiring takes 5 minutes of the real server; `valid` is the one access token it
    accepts (None: the last one expired)."""

    pat = PAT
    valid: str | None = None
    minted = 0
    requests: list[tuple[str, str]] = []

    def log_message(self, *args):
        pass

    def _answer(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        cls.requests.append(("POST", self.path))
        if self.path != "/api/token/refresh/" or body.get("refresh") != cls.pat:
            self._answer(401, b'{"detail": "Token is invalid or expired"}')
            return
        cls.minted += 1
        cls.valid = jwt(token_type="access", iat=100, exp=400, jti=str(cls.minted))
        self._answer(200, json.dumps({"access": cls.valid}).encode())

    def do_GET(self):
        cls = type(self)
        cls.requests.append(("GET", self.path))
        authorization = self.headers.get("Authorization", "")
        if authorization.startswith("Token "):
            self._answer(401, b'{"detail": "Authentication token no longer valid: legacy token authentication '
                              b'has been disabled for this organization"}')
        elif cls.valid is None or authorization != f"Bearer {cls.valid}":
            self._answer(401, b'{"detail": "Given token not valid for any token type"}')
        elif self.path.startswith("/data/missing"):
            self._answer(404, b"", "text/html")
        else:
            self._answer(200, b"image bytes", "image/png")


@pytest.fixture
def label_studio_double():
    handler = type("Handler", (LabelStudioDouble,), {"valid": None, "minted": 0, "requests": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_fetch_exchanges_the_personal_token_once_more_when_label_studio_answers_401(label_studio_double):
    double, url = label_studio_double
    settings = LsBackendSettings(label_studio_url=url, label_studio_token=PAT)
    backend = Backend(settings, client=object())
    assert fetch_image("/data/a.png", settings, backend.token) == b"image bytes"
    assert fetch_image("/data/b.png", settings, backend.token) == b"image bytes" and double.minted == 1
    double.valid = None  # the cached access token expired early (clock, restart with a new key)
    assert fetch_image("/data/c.png", settings, backend.token) == b"image bytes" and double.minted == 2
    assert double.requests[-3:] == [("GET", "/data/c.png"), ("POST", "/api/token/refresh/"), ("GET", "/data/c.png")]


def test_fetch_says_why_label_studio_refuses_the_token_when_legacy_or_revoked(label_studio_double):
    double, url = label_studio_double
    legacy = Backend(LsBackendSettings(label_studio_url=url, label_studio_token="0" * 40), client=object())
    with pytest.raises(FetchError, match="refused the legacy token: HTTP 401 .*legacy token authentication has "
                                         "been disabled") as refused:
        fetch_image("/data/a.png", legacy.settings, legacy.token)
    assert refused.value.status == 502 and len(double.requests) == 1  # not sent twice
    revoked = Backend(LsBackendSettings(label_studio_url=url, label_studio_token=jwt(token_type="refresh", exp=9)),
                      client=object())
    with pytest.raises(FetchError, match="refused the personal access token: HTTP 401 .*Token is invalid"):
        fetch_image("/data/a.png", revoked.settings, revoked.token)


CONFIG_BOXES = '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">' \
               '<Label value="person"/></RectangleLabels></View>'


class RouterDouble:
    """The router's answers, in-process: a person box, or (`failing`) a failed suite task,
    which the real router gives only when a service is down; with `decisions`, one person
    box per review decision (a rejected draft comes from the real router only under a
    policy with include_rejected, on a photo whose scores fall in the reject band)."""

    def __init__(self, failing: bool = False, decisions: tuple[int, ...] = (common_pb2.REVIEW_DECISION_UNSPECIFIED,)):
        self.failing = failing
        self.decisions = decisions
        self.asked: list[str] = []  # image ids

    def prelabel(self, image: bytes, image_id: str, tasks, **options) -> prelabel_pb2.PreLabelResponse:
        self.asked.append(image_id)
        response = prelabel_pb2.PreLabelResponse(image_id=image_id)
        response.image_size.width, response.image_size.height = 40, 30
        if self.failing:
            response.task_results.add(task=prelabel_pb2.TASK_DETECT, code="UNAVAILABLE", message="detection down")
            return response
        result = response.task_results.add(task=prelabel_pb2.TASK_DETECT, code="OK")
        result.provenance.model_name, result.provenance.model_version = "coco_detector", "1"
        for i, decision in enumerate(self.decisions):
            detection = response.detections.add(score=0.9 - 0.1 * i, review=decision)
            detection.category.name = "person"
            detection.box.x_min, detection.box.y_min, detection.box.x_max, detection.box.y_max = 1 + i, 2, 20, 25
        return response


def post_predict(base: str, task_urls: list[str]) -> tuple[int, str, dict]:
    body = json.dumps({"tasks": [{"id": i + 1, "data": {"image": u}} for i, u in enumerate(task_urls)],
                       "label_config": CONFIG_BOXES}).encode()
    request = urllib.request.Request(base + "/predict", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.reason, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.reason, json.loads(exc.read())


@pytest.mark.timeout(60)
def test_predict_gives_no_prediction_for_a_task_whose_image_cannot_be_read_when_alone_or_with_others(
        label_studio_double):
    _, url = label_studio_double
    settings = LsBackendSettings(host="127.0.0.1", port=0, label_studio_url=url, label_studio_token=PAT)
    httpd = serve(settings, Backend(settings, client=RouterDouble()))
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        status, reason, body = post_predict(base, ["/data/missing.png"])
        assert status == 502 and reason.startswith("task 1: cannot read image: HTTP 404 from ")
        assert body["tasks"] == [{"id": 1, "error": reason.removeprefix("task 1: ")}]

        status, _, body = post_predict(base, ["/data/a.png", "/data/missing.png"])
        first, second = body["results"]
        assert status == 200 and [r["value"]["rectanglelabels"] for r in first["result"]] == [["person"]]
        assert "result" not in second and second["error"].startswith("task 2: cannot read image: HTTP 404")
    finally:
        httpd.shutdown()
        httpd.server_close()
    httpd = serve(settings, Backend(settings, client=RouterDouble(failing=True)))
    try:
        status, reason, _ = post_predict(f"http://127.0.0.1:{httpd.server_address[1]}", ["/data/a.png"])
        assert status == 503 and reason == "task 1: detect: UNAVAILABLE: detection down"  # not a partial prediction
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_reason_phrase_is_one_bounded_line_of_ascii_when_message_is_not():
    phrase = reason_phrase("cannot read /data/ph\u00f6to.png\r\nX-Injected: 1 " + "x" * 1000)
    assert "\r" not in phrase and "\n" not in phrase and phrase.isascii() and len(phrase) <= 400


AUTO, REVIEW, REJECT = (common_pb2.REVIEW_DECISION_AUTO_ACCEPT, common_pb2.REVIEW_DECISION_NEEDS_REVIEW,
                        common_pb2.REVIEW_DECISION_REJECT)


@pytest.mark.timeout(60)
def test_predict_leaves_rejected_drafts_out_unless_outputs_review_takes_them(label_studio_double, monkeypatch):
    _, url = label_studio_double
    task = {"id": 1, "data": {"image": "/data/a.png"}}
    config = CONFIG_BOXES.replace("</View>", '<Choices name="review" toName="image" perRegion="true">'
                                             '<Choice value="auto_accept"/><Choice value="needs_review"/>'
                                             '<Choice value="reject"/></Choices></View>')  # each box's decision

    def drafts(**settings) -> list[tuple[float, list[str]]]:
        """(score, review choice) of each box the backend returns for the three drafts."""
        settings = LsBackendSettings(label_studio_url=url, label_studio_token=PAT, **settings)
        backend = Backend(settings, client=RouterDouble(decisions=(AUTO, REVIEW, REJECT)))
        (prediction,) = backend.predict({"tasks": [task], "label_config": config})["results"]
        choices = {r["id"]: r["value"]["choices"] for r in prediction["result"] if r["type"] == "choices"}
        return [(r["score"], choices[r["id"]]) for r in prediction["result"] if r["type"] == "rectanglelabels"]

    # the default is annotate's --outputs-review default: no rejected draft
    assert drafts() == [(0.9, ["auto_accept"]), (0.8, ["needs_review"])]
    assert drafts(outputs_review="auto_accept,needs_review,reject") == [
        (0.9, ["auto_accept"]), (0.8, ["needs_review"]), (0.7, ["reject"])]
    assert drafts(outputs_review="reject") == [(0.7, ["reject"])]
    monkeypatch.setenv("PRELABEL_LS_OUTPUTS_REVIEW", " needs_review, needs_review,reject")  # as the flag takes it
    assert LsBackendSettings().outputs_review == ("needs_review", "reject")
    for bad in ("accept", "", "auto_accept,unspecified"):
        monkeypatch.setenv("PRELABEL_LS_OUTPUTS_REVIEW", bad)
        with pytest.raises(ValueError, match="choose from auto_accept,needs_review,reject"):
            LsBackendSettings()


def test_setup_answers_the_version_learned_last_when_the_router_cannot_answer_and_an_error_before_any():
    """The router down is a fault the real one gives only when stopped: a double
    (tests/integration/test_ls_backend_version.py has the real suite)."""
    router = RouterDouble(failing=True)
    backend = Backend(LsBackendSettings(), client=router)
    clock = Clock()
    backend.versions = Versions(clock)
    setup = {"project": "3.1700000000", "schema": CONFIG_BOXES}
    with pytest.raises(BackendError, match="cannot learn the router's served models: detect: UNAVAILABLE") as refused:
        backend.setup(setup)
    assert refused.value.status == 503
    router.failing = False
    version = backend.setup(setup)["model_version"]
    assert version.startswith("coco_detector@1 #") and len(router.asked) == 2
    clock.now += MAX_AGE_S - 1
    assert backend.setup(setup)["model_version"] == version and len(router.asked) == 2  # learned: no probe
    router.failing = True
    clock.now += 2
    assert backend.setup(setup)["model_version"] == version and len(router.asked) == 3  # probed, failed: the last


def test_a_renamed_label_is_another_asked_and_the_same_config_parsed_again_is_the_same():
    """model_version digests the parsed labeling config: its names and labels are written into
    every region, so a project that renames a label gets other drafts (Label Studio asks
    again), while the same config parsed in another process keeps the version."""
    config = labeling_config(["detect"])
    renamed = config.replace('value="cup"', 'value="mug"')
    assert renamed != config
    assert Asked.of(parse_config(config)) == Asked.of(parse_config(config))
    assert Asked.of(parse_config(renamed)).config != Asked.of(parse_config(config)).config
