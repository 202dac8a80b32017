"""A real Label Studio 1.23 server on loopback (own venv, own data dir) takes what annotate
writes as it is -- the labeling config, the tasks with predictions, images through its
local-files storage -- and, connected to `prelabel ls-backend`, asks it for predictions."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from prelabel.ls_backend.server import serve
from prelabel.ls_backend.settings import LsBackendSettings
from tests.tools import router_stub
from tests.tools import samples as samples_mod

pytestmark = [pytest.mark.tools, pytest.mark.timeout(1500)]

TOKEN = "prelabel-test-token-0123456789"
START_TIMEOUT_S = 400  # first start migrates a fresh SQLite database (~80 s on 2 busy cores)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def label_studio(tool_python, sample_run, tmp_path_factory):
    """(base URL, auth headers) of a Label Studio server serving the sample images."""
    _, _, root = sample_run
    bin_dir = tool_python("label-studio").parent
    data = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    env = {**os.environ, "HOME": str(data), "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
           # the document root is the image root's parent (see formats/labelstudio.py)
           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": os.path.dirname(root),
           # Label Studio refuses ML backends on private addresses unless told (docs/tools.md)
           "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": ""}
    log = open(data / "server.log", "wb")  # noqa: SIM115  # closed after the server stops
    proc = subprocess.Popen(
        [str(bin_dir / "label-studio"), "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(port),
         "--data-dir", str(data / "data"), "--username", "test@example.com", "--password", "prelabel-pass-1",
         "--user-token", TOKEN, "--enable-legacy-api-token"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, (data / "server.log").read_text()[-4000:]
            try:
                if requests.get(base + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "Label Studio did not start"
            time.sleep(1)
        yield base, {"Authorization": f"Token {TOKEN}"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def new_project(ls, title: str, config: str, storage_path: str) -> int:
    base, headers = ls
    r = requests.post(base + "/api/projects", headers=headers, json={"title": title, "label_config": config})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    r = requests.post(base + "/api/storages/localfiles", headers=headers,
                      json={"project": pid, "path": storage_path, "use_blob_urls": True, "title": "images"})
    assert r.status_code == 201, r.text
    return pid


def tasks_of(ls, pid: int) -> list[dict]:
    base, headers = ls
    r = requests.get(base + "/api/tasks", headers=headers, params={"project": pid, "fields": "all", "page_size": 100})
    assert r.status_code == 200, r.text
    return r.json()["tasks"]


def parsed_config(ls, pid: int) -> dict:
    base, headers = ls
    return requests.get(f"{base}/api/projects/{pid}", headers=headers).json()["parsed_label_config"]


def check_regions(regions: list[dict], config: dict) -> None:
    """Every region names a control of the project and one of that control's labels; every
    keypoint's parent is a region of the same prediction."""
    ids = {r["id"] for r in regions}
    for region in regions:
        control = config[region["from_name"]]
        (label,) = region["value"][region["type"]]
        assert label in control["labels"], region
        assert region["to_name"] in control["to_name"]
        if region["type"] == "keypointlabels":
            assert region.get("parentID") in ids, region


def test_label_studio_imports_tasks_and_serves_images_when_config_is_the_written_one(label_studio, sample_run):
    samples, out, root = sample_run
    base, headers = label_studio
    pid = new_project(label_studio, "prelabel import", (out / "labelstudio.xml").read_text(), root)
    r = requests.post(f"{base}/api/projects/{pid}/import", headers=headers,
                      json=json.loads((out / "labelstudio.json").read_text()))
    assert r.status_code == 201 and r.json()["task_count"] == len(samples) == r.json()["prediction_count"], r.text

    tasks = tasks_of(label_studio, pid)
    config = parsed_config(label_studio, pid)
    assert {t["data"]["image_id"] for t in tasks} == {s.image_id for s in samples}
    assert len({p["model_version"] for t in tasks for p in t["predictions"]}) == 1
    kinds = set()
    for task in tasks:
        (prediction,) = task["predictions"]
        check_regions(prediction["result"], config)
        kinds |= {r["type"] for r in prediction["result"]}
        image = requests.get(base + task["data"]["image"], headers=headers, timeout=10)
        assert image.status_code == 200 and image.headers["Content-Type"].startswith("image/"), task["data"]
        assert image.content == Path(task["data"]["image_id"]).read_bytes()
    assert kinds == {"rectanglelabels", "polygonlabels", "keypointlabels"}


def test_label_studio_brush_masks_decode_to_the_mask_when_written_as_brush(label_studio, sample_run, tmp_path,
                                                                           run_probe):
    samples, _, root = sample_run
    out = tmp_path / "brush"
    samples_mod.write(samples, out, formats=["labelstudio"], ls_masks="brush")
    base, headers = label_studio
    pid = new_project(label_studio, "prelabel brush", (out / "labelstudio.xml").read_text(), root)
    r = requests.post(f"{base}/api/projects/{pid}/import", headers=headers,
                      json=json.loads((out / "labelstudio.json").read_text()))
    assert r.status_code == 201, r.text
    regions = [r for t in tasks_of(label_studio, pid) for r in t["predictions"][0]["result"]
               if r["type"] == "brushlabels"]
    assert len(regions) == sum(len(s.response.masks) for s in samples)
    check_regions(regions, parsed_config(label_studio, pid))
    (tmp_path / "brush.json").write_text(json.dumps(regions))
    decoded = run_probe("label-studio", "ls_brush_decode.py", tmp_path / "brush.json")  # Label Studio's decoder
    areas = sorted(int(m.area) for s in samples for m in s.response.masks)
    assert sorted(decoded["areas"]) == areas


def test_label_studio_gets_predictions_from_ls_backend_when_connected(label_studio, sample_run):
    samples, out, root = sample_run
    base, headers = label_studio
    grpc_server, router, address = router_stub.start()
    settings = LsBackendSettings(host="127.0.0.1", port=0, router=address, label_studio_url=base,
                                 label_studio_token=TOKEN, max_image_bytes=1_000_000)
    backend = serve(settings)
    try:
        url = f"http://127.0.0.1:{backend.server_address[1]}"
        pid = new_project(label_studio, "prelabel backend", (out / "labelstudio.xml").read_text(), root)
        bare = [{"data": t["data"]} for t in json.loads((out / "labelstudio.json").read_text())]
        assert requests.post(f"{base}/api/projects/{pid}/import", headers=headers, json=bare).status_code == 201

        r = requests.post(f"{base}/api/ml", headers=headers, json={"url": url, "project": pid, "title": "prelabel"})
        assert r.status_code == 201, r.text  # Label Studio checked /health and /setup
        assert pid in [int(k) for k in backend.backend.projects]
        ids = [t["id"] for t in tasks_of(label_studio, pid)]
        r = requests.post(f"{base}/api/dm/actions", headers=headers,
                          params={"id": "retrieve_tasks_predictions", "project": pid},
                          json={"selectedItems": {"all": False, "included": ids}})
        assert r.status_code == 200, r.text

        tasks = tasks_of(label_studio, pid)
        config = parsed_config(label_studio, pid)
        assert len(router.requests) == len(samples)  # one router call per task, image fetched from LS
        assert {tuple(sorted(rq.tasks)) for rq in router.requests} == {(1, 2, 3, 4)}
        for task in tasks:
            (prediction,) = task["predictions"]
            check_regions(prediction["result"], config)
            assert prediction["model_version"] == "coco_detector@1,face_detector@1"
            assert {r["type"] for r in prediction["result"]} == {"rectanglelabels", "polygonlabels", "keypointlabels"}
        metrics = requests.get(url + "/metrics", timeout=5).text
        assert f'prelabel_ls_tasks_total{{outcome="ok"}} {float(len(samples))}' in metrics
    finally:
        backend.shutdown()
        backend.server_close()
        grpc_server.stop(0)
