"""`prelabel ls-backend`'s model_version against the real suite (Triton, services, router):
the same for two backends started one after the other with the same settings, before either
has predicted anything, and in every prediction; another version when a setting changes the
drafts. (Label Studio skips, on "Retrieve Predictions", the tasks holding a prediction of
the version /setup answers; any other version has it store a second prediction of each
task: prelabel/ls_backend/version.py.)"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from prelabel.formats.labelstudio import labeling_config
from tests.ls_backend_process import running_ls_backend
from tests.photos import photo_path

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

#: annotate's labeling config: every task.
CONFIG = labeling_config(["detect", "segment", "keypoints", "faces"])
#: A photo with a person (boxes, masks, keypoints, a face) and one without (no keypoints, no face).
PHOTOS = ("astronaut.png", "coffee.png")


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def image_host(folder: Path) -> Iterator[str]:
    """`folder` over HTTP on loopback (standing in for Label Studio's image serving)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def setup_version(url: str) -> str:
    r = requests.post(url + "/setup", json={"project": "1.1700000000", "schema": CONFIG}, timeout=120)
    assert r.status_code == 200, (r.status_code, r.reason)
    return r.json()["model_version"]


def predicted_versions(url: str) -> list[str]:
    tasks = [{"id": i + 1, "data": {"image": f"/{name}"}} for i, name in enumerate(PHOTOS)]
    r = requests.post(url + "/predict", json={"tasks": tasks, "label_config": CONFIG, "project": "1.1700000000"},
                      timeout=300)
    assert r.status_code == 200, (r.status_code, r.reason)
    results = r.json()["results"]
    assert all(p["result"] for p in results), results  # real labels on both
    return [p["model_version"] for p in results]


def versions_scenario(router: str, images: str, logs: Path) -> None:
    settings = {"PRELABEL_LS_ROUTER": router, "PRELABEL_LS_LABEL_STUDIO_URL": images}
    with running_ls_backend(settings, logs / "first.log") as url:
        version = setup_version(url)
        assert predicted_versions(url) == [version, version]  # whatever labels each photo got
        assert requests.get(url + "/versions", timeout=10).json() == {"versions": [version]}
    with running_ls_backend(settings, logs / "second.log") as url:  # a restart, nothing predicted yet
        assert setup_version(url) == version
    print(f"model_version: {version}")
    rejected_too = {**settings, "PRELABEL_LS_OUTPUTS_REVIEW": "auto_accept,needs_review,reject"}
    with running_ls_backend(rejected_too, logs / "rejected.log") as url:
        other = setup_version(url)
    assert other != version and other.split(" #")[0] == version.split(" #")[0]  # same models, other drafts


async def test_ls_backend_reports_one_model_version_across_restarts_when_models_and_settings_are_the_same(
        router_address, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in PHOTOS:
        shutil.copy(photo_path(name), folder / name)
    with image_host(folder) as images:
        # blocking HTTP in a thread: the suite's servers run in this event loop
        await asyncio.to_thread(versions_scenario, router_address, images, tmp_path)
