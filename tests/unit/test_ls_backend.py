"""`prelabel ls-backend` pieces without servers: the labeling-config mapping and the
image-URL allow-list."""
from __future__ import annotations

import pytest

from prelabel.ls_backend.fetch import FetchError, resolve
from prelabel.ls_backend.project import ConfigError, parse_config, relabel
from prelabel.ls_backend.settings import LsBackendSettings

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


def test_resolve_sends_the_token_to_label_studio_only_when_url_is_relative_or_allowed():
    settings = LsBackendSettings(label_studio_url="http://ls.example:8080", label_studio_token="k",
                                 allowed_url_prefixes=["https://bucket.example.com/"])
    url, headers = resolve("/data/local-files/?d=images/a.jpg", settings)
    assert url == "http://ls.example:8080/data/local-files/?d=images/a.jpg" and headers == {"Authorization": "Token k"}
    assert resolve("https://bucket.example.com/a.jpg?sig=1", settings) == ("https://bucket.example.com/a.jpg?sig=1", {})


def test_server_refuses_requests_when_body_is_too_large_or_auth_is_wrong():
    import json
    import urllib.error
    import urllib.request

    from prelabel.ls_backend.server import Backend, serve

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
    import threading

    from prelabel.ls_backend.server import Backend

    backend = Backend(LsBackendSettings(), client=object())
    backend.enter()
    assert backend.drain(0.05) is False  # one request still in flight
    threading.Timer(0.1, backend.leave).start()
    assert backend.drain(5) is True and backend.in_flight == 0
