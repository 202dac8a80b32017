"""A real Label Studio 1.23 server on loopback (own venv, own data dir), at its default
settings (legacy API tokens disabled; a personal access token made the way a user makes one),
takes what annotate writes as it is -- the labeling config, the tasks with predictions,
images through its local-files storage -- and, connected to `prelabel ls-backend` in front
of the real suite, asks it for predictions and, through its interactive pre-annotation, for
the mask of a clicked object."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
from pycocotools import mask as coco_mask

from prelabel.formats.labelstudio import PER_REGION_TYPES
from prelabel.sdk import SyncPreLabelClient
from prelabel.v1 import common_pb2, segmentation_pb2
from tests.ls_backend_process import free_port, running_ls_backend
from tests.photos import photo_path
from tests.tools import samples as samples_mod

pytestmark = [pytest.mark.tools, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 400  # first start migrates a fresh SQLite database (26-115 s on 2 busy cores)
USER, PASSWORD = "test@example.com", "prelabel-pass-1"


@dataclass(frozen=True)
class LabelStudio:
    base: str
    pat: str  # personal access token, made through Label Studio's own API as its UI does
    legacy_token: str  # the legacy API token Label Studio also shows (refused at its defaults)
    log: Path

    def headers(self) -> dict[str, str]:
        """A fresh access token for each call (they live 5 minutes)."""
        r = requests.post(self.base + "/api/token/refresh/", json={"refresh": self.pat}, timeout=30)
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access']}"}


def personal_access_token(base: str) -> tuple[str, str]:
    """(PAT, legacy token) of the user, made as a user does: log in, Account & Settings ->
    Personal Access Token -> Create (the UI's `POST /api/token/`)."""
    with requests.Session() as session:
        session.get(base + "/user/login/", timeout=30)
        r = session.post(base + "/user/login/", timeout=30, allow_redirects=False,
                         data={"email": USER, "password": PASSWORD,
                               "csrfmiddlewaretoken": session.cookies["csrftoken"]},
                         headers={"Referer": base + "/user/login/"})
        assert r.status_code == 302, r.text[-2000:]
        csrf = {"X-CSRFToken": str(session.cookies["csrftoken"]), "Referer": base + "/"}
        r = session.post(base + "/api/token/", headers=csrf, timeout=30)
        assert r.status_code == 201, r.text
        legacy = session.get(base + "/api/current-user/token", timeout=30)
        assert legacy.status_code == 200, legacy.text
        return r.json()["token"], legacy.json()["token"]


@pytest.fixture(scope="session")
def label_studio(tool_python, sample_run, tmp_path_factory):
    """Label Studio at its defaults, with only the settings docs/tools.md tells a user to
    set: local-files serving, and ML backends allowed on loopback."""
    _, _, root = sample_run
    bin_dir = tool_python("label-studio").parent
    data = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    env = {**os.environ, "HOME": str(data), "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
           # the document root is the image root's parent (see formats/labelstudio.py)
           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": os.path.dirname(root),
           # Label Studio refuses ML backends on private addresses unless told (docs/tools.md)
           "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": ""}
    log_path = data / "server.log"
    log = open(log_path, "wb")  # noqa: SIM115  # closed after the server stops
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(bin_dir / "label-studio"), "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(port),
         "--data-dir", str(data / "data"), "--username", USER, "--password", PASSWORD],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = started + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, log_path.read_text()[-4000:]
            try:
                if requests.get(base + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "Label Studio did not start"
            time.sleep(1)
        print(f"Label Studio started in {time.monotonic() - started:.0f} s")
        yield LabelStudio(base, *personal_access_token(base), log_path)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def new_project(ls: LabelStudio, title: str, config: str, storage_path: str) -> int:
    r = requests.post(ls.base + "/api/projects", headers=ls.headers(), json={"title": title, "label_config": config})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    r = requests.post(ls.base + "/api/storages/localfiles", headers=ls.headers(),
                      json={"project": pid, "path": storage_path, "use_blob_urls": True, "title": "images"})
    assert r.status_code == 201, r.text
    return pid


def tasks_of(ls: LabelStudio, pid: int) -> list[dict]:
    params: dict[str, str | int] = {"project": pid, "fields": "all", "page_size": 100}
    r = requests.get(ls.base + "/api/tasks", headers=ls.headers(), params=params)
    assert r.status_code == 200, r.text
    return r.json()["tasks"]


def parsed_config(ls: LabelStudio, pid: int) -> dict:
    return requests.get(f"{ls.base}/api/projects/{pid}", headers=ls.headers()).json()["parsed_label_config"]


def check_regions(regions: list[dict], config: dict) -> None:
    """Every region names a control of the project and one of that control's labels; every
    keypoint's and mask's parent is a rectangle of the same prediction; a per-region result
    (review, source) belongs to a region of it."""
    rectangles = {r["id"] for r in regions if r["type"] == "rectanglelabels"}
    shapes = {r["id"] for r in regions if r["type"] not in PER_REGION_TYPES}
    for region in regions:
        control = config[region["from_name"]]
        assert region["to_name"] in control["to_name"]
        if region["type"] == "textarea":
            assert region["id"] in shapes and region["value"]["text"], region
            continue
        (label,) = region["value"][region["type"]]
        assert label in control["labels"], region
        if region["type"] == "choices":
            assert region["id"] in shapes, region
        if region["type"] == "keypointlabels" or "parentID" in region:
            assert region.get("parentID") in rectangles, region


def test_label_studio_imports_tasks_and_serves_images_when_config_is_the_written_one(label_studio, sample_run):
    samples, out, root = sample_run
    base, headers = label_studio.base, label_studio.headers()
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
    assert kinds == {"rectanglelabels", "polygonlabels", "keypointlabels", "choices", "textarea"}
    # One object, several tasks: each person is one rectangle, its mask and keypoints its
    # children, and the rectangle's source lines name every task that labelled it.
    for task in tasks:
        result = task["predictions"][0]["result"]
        persons = [r["id"] for r in result if r["type"] == "rectanglelabels" and r["value"]["rectanglelabels"] == ["person"]]
        if not persons:
            continue
        assert len(persons) == 1, result
        children = {r["type"] for r in result if r.get("parentID") == persons[0]}
        assert children == {"polygonlabels", "keypointlabels"}, result
        (source,) = [r["value"]["text"] for r in result if r["id"] == persons[0] and r["type"] == "textarea"]
        # detect, segment, keypoints -- or, where an output's review filter left a rejected
        # detect box out, the keypoints' own box speaking for segment and keypoints
        assert [line.split(":")[0] for line in source] in (["detect", "segment", "keypoints"],
                                                            ["segment", "keypoints"]), source


def test_label_studio_brush_masks_decode_to_the_mask_when_written_as_brush(label_studio, sample_run, tmp_path,
                                                                           run_probe):
    samples, _, root = sample_run
    out = tmp_path / "brush"
    samples_mod.write(samples, out, formats=["labelstudio"], ls_masks="brush")
    base, headers = label_studio.base, label_studio.headers()
    pid = new_project(label_studio, "prelabel brush", (out / "labelstudio.xml").read_text(), root)
    r = requests.post(f"{base}/api/projects/{pid}/import", headers=headers,
                      json=json.loads((out / "labelstudio.json").read_text()))
    assert r.status_code == 201, r.text
    config = parsed_config(label_studio, pid)
    results = [t["predictions"][0]["result"] for t in tasks_of(label_studio, pid)]
    for result in results:
        check_regions(result, config)
    regions = [r for result in results for r in result if r["type"] == "brushlabels"]
    assert len(regions) == sum(len(s.response.masks) for s in samples)
    (tmp_path / "brush.json").write_text(json.dumps(regions))
    decoded = run_probe("label-studio", "ls_brush_decode.py", tmp_path / "brush.json")  # Label Studio's decoder
    areas = sorted(int(m.area) for s in samples for m in s.response.masks)
    assert sorted(decoded["areas"]) == areas




# ---------------------------------------------------------------------- live backend


def ls_backend(ls: LabelStudio, router: str, token: str, log_path: Path, port: int | None = None):
    """`prelabel ls-backend` as a user starts it (token in the environment); yields its URL."""
    return running_ls_backend({"PRELABEL_LS_ROUTER": router, "PRELABEL_LS_LABEL_STUDIO_URL": ls.base,
                               "PRELABEL_LS_LABEL_STUDIO_TOKEN": token}, log_path, port)


def retrieve_predictions(ls: LabelStudio, pid: int, ids: list[int]) -> float:
    """The Data Manager's "Retrieve Predictions" on `ids`; seconds it took."""
    started = time.monotonic()
    params: dict[str, str | int] = {"id": "retrieve_tasks_predictions", "project": pid}
    r = requests.post(f"{ls.base}/api/dm/actions", headers=ls.headers(), timeout=300, params=params,
                      json={"selectedItems": {"all": False, "included": ids}})
    assert r.status_code == 200, r.text  # "Retrieved N predictions" whatever the backend answered
    return time.monotonic() - started


def server_log_after(ls: LabelStudio, offset: int) -> str:
    with open(ls.log, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def live_backend_scenario(ls: LabelStudio, config: str, document_root: Path, router: str, logs: Path) -> None:
    photos = document_root / "live-photos"
    photos.mkdir()
    shutil.copy(photo_path("astronaut.png"), photos / "astronaut.png")
    later = photos / "camera.png"  # not there yet: Label Studio answers 404 for it
    pid = new_project(ls, "prelabel live", config, str(photos))

    # The legacy token is refused at Label Studio's defaults: ls-backend's /setup says so,
    # and Label Studio refuses the connection with that reason.
    with ls_backend(ls, router, ls.legacy_token, logs / "legacy.log") as url:
        r = requests.post(f"{ls.base}/api/ml", headers=ls.headers(), timeout=120,
                          json={"url": url, "project": pid, "title": "prelabel"})
    assert r.status_code == 400 and "legacy token authentication has been disabled" in r.text, r.text

    with ls_backend(ls, router, ls.pat, logs / "backend.log") as url:
        r = requests.post(f"{ls.base}/api/ml", headers=ls.headers(), timeout=120,
                          json={"url": url, "project": pid, "title": "prelabel", "is_interactive": True})
        assert r.status_code == 201 and r.json()["state"] == "CO", r.text  # /health, /setup (token checked)
        ml_id = r.json()["id"]
        r = requests.post(f"{ls.base}/api/projects/{pid}/import", headers=ls.headers(), timeout=60, json=[
            {"data": {"image": "/data/local-files/?d=live-photos/astronaut.png"}},
            {"data": {"image": "/data/local-files/?d=live-photos/camera.png"}}])
        assert r.status_code == 201, r.text
        ids = {Path(t["data"]["image"]).name: t["id"] for t in tasks_of(ls, pid)}
        good, bad = ids["astronaut.png"], ids["camera.png"]
        config_of = parsed_config(ls, pid)

        # One request for both: the readable one gets real labels, the other none (its entry
        # {"error": ...} is logged and skipped by Label Studio).
        offset = ls.log.stat().st_size
        took = retrieve_predictions(ls, pid, [good, bad])
        tasks = {t["id"]: t for t in tasks_of(ls, pid)}
        (prediction,) = tasks[good]["predictions"]
        check_regions(prediction["result"], config_of)
        # regions, and per region its review decision and the tasks that labelled its object
        assert {"rectanglelabels", "polygonlabels", "keypointlabels", "choices", "textarea"} <= \
            {r["type"] for r in prediction["result"]}
        assert tasks[bad]["predictions"] == []
        assert f"task {bad}: cannot read image: HTTP 404" in server_log_after(ls, offset)
        print(f"retrieve predictions, 2 tasks (1 unreadable): {took:.1f} s")

        # Alone, every task of the request failed: an error status whose reason Label Studio
        # logs, and shows the annotator for interactive pre-annotation; nothing is stored.
        offset = ls.log.stat().st_size
        retrieve_predictions(ls, pid, [bad])
        assert f"Error occurred: 502 Server Error: task {bad}: cannot read image: HTTP 404" in \
            server_log_after(ls, offset)
        r = requests.post(f"{ls.base}/api/ml/{ml_id}/interactive-annotating", headers=ls.headers(), timeout=120,
                          json={"task": bad})
        assert r.status_code == 200 and f"task {bad}: cannot read image: HTTP 404" in r.json()["errors"][0], r.text
        assert [t["predictions"] for t in tasks_of(ls, pid) if t["id"] == bad] == [[]]

        # The cause fixed, the task is asked for again and gets its labels; the other is not
        # asked again.
        shutil.copy(photo_path("camera.png"), later)
        took = retrieve_predictions(ls, pid, [good, bad])
        tasks = {t["id"]: t for t in tasks_of(ls, pid)}
        assert len(tasks[good]["predictions"]) == 1
        (prediction,) = tasks[bad]["predictions"]
        assert prediction["result"], prediction
        check_regions(prediction["result"], config_of)
        print(f"retrieve predictions after the fix: {took:.1f} s")
        metrics = requests.get(url + "/metrics", timeout=10).text
        assert 'prelabel_ls_tasks_total{outcome="ok"} 2.0' in metrics
        assert 'prelabel_ls_tasks_total{outcome="fetch_error"} 3.0' in metrics
    (version,) = {p["model_version"] for t in tasks_of(ls, pid) for p in t["predictions"]}

    # The backend restarted (same address, models and settings): the same model version, so
    # Label Studio asks it for no task again and stores no second prediction.
    with ls_backend(ls, router, ls.pat, logs / "restarted.log", port=int(url.rsplit(":", 1)[1])) as url:
        retrieve_predictions(ls, pid, [good, bad])
        assert [len(t["predictions"]) for t in tasks_of(ls, pid)] == [1, 1]
        assert requests.get(url + "/versions", timeout=10).json() == {"versions": [version]}  # /setup answered
        assert 'endpoint="/predict"' not in requests.get(url + "/metrics", timeout=10).text  # never asked
    assert ls.pat not in (logs / "backend.log").read_text()  # the token is never logged
    assert ls.legacy_token not in (logs / "legacy.log").read_text()


@pytest.mark.integration
async def test_label_studio_at_defaults_gets_predictions_from_real_suite_when_connected_with_personal_token(
        label_studio, sample_run, router_address, tmp_path):
    """Label Studio at its defaults, a personal access token only, `prelabel ls-backend` in
    front of the real router (Triton, detection, segmentation, keypoints): a task on a real
    photo gets real labels; a task whose image cannot be read gets an error and no stored
    prediction, and is retried once the image is there; the backend restarted, Label Studio
    asks it for no task again (same model version: no second prediction)."""
    _, out, root = sample_run
    # blocking HTTP in a thread: the suite's servers run in this event loop
    await asyncio.to_thread(live_backend_scenario, label_studio, (out / "labelstudio.xml").read_text(),
                            Path(os.path.dirname(root)), router_address, tmp_path)


# ---------------------------------------------------------------- interactive pre-annotation

#: The labeling config docs/tools.md gives for interactive pre-annotation (checked equal below).
SMART_CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <KeyPointLabels name="click" toName="image" smart="true">
    <Label value="cup" background="#ff0000"/>
  </KeyPointLabels>
  <RectangleLabels name="box" toName="image" smart="true">
    <Label value="cup" background="#ff0000"/>
  </RectangleLabels>
  <BrushLabels name="mask" toName="image">
    <Label value="cup" background="#ff0000"/>
  </BrushLabels>
</View>"""
COFFEE_W, COFFEE_H = 600, 400
# On scikit-image's coffee photo (looked at: the cup with its saucer and spoon, on a wooden
# table), in pixels: a click on the cup's rim, points on the cup and saucer, the table
# below the saucer that one click's mask runs into (tests/unit/test_grabcut_clicks.py), and
# points off the cup.
CUP_CLICK, TABLE = (300, 200), (420, 385)
ON_CUP = [(250, 120), (200, 300)]
OFF_CUP = [(20, 20), (560, 60), (560, 380), (40, 300)]
CUP_BOX = (80, 30, 480, 360)


def smart_keypoint(x: float, y: float, positive: bool = True) -> dict:
    """A smart keypoint (pixels of the coffee photo) as Label Studio's editor serializes it
    into the context: percent of the image, `is_positive` false for an Alt+click."""
    return {"id": f"kp{x:.0f}-{y:.0f}", "type": "keypointlabels", "from_name": "click", "to_name": "image",
            "origin": "manual", "original_width": COFFEE_W, "original_height": COFFEE_H, "image_rotation": 0,
            "is_positive": positive,
            "value": {"x": 100 * x / COFFEE_W, "y": 100 * y / COFFEE_H, "width": 0.5, "keypointlabels": ["cup"],
                      "labels": ["cup"]}}


def smart_rectangle(x_min: float, y_min: float, x_max: float, y_max: float) -> dict:
    return {"id": "box1", "type": "rectanglelabels", "from_name": "box", "to_name": "image", "origin": "manual",
            "original_width": COFFEE_W, "original_height": COFFEE_H, "image_rotation": 0,
            "value": {"x": 100 * x_min / COFFEE_W, "y": 100 * y_min / COFFEE_H, "width": 100 * (x_max - x_min) / COFFEE_W,
                      "height": 100 * (y_max - y_min) / COFFEE_H, "rotation": 0, "rectanglelabels": ["cup"]}}


def at(mask, points) -> list[bool]:
    return [bool(mask[y, x]) for x, y in points]


def router_mask(router: str, image: bytes, points: list[tuple[int, int, bool]], box=None):
    """The mask the router's SegmentClick gives for the same prompt, asked directly."""
    prompt = segmentation_pb2.ClickPrompt(points=[segmentation_pb2.PointPrompt(
        x=x, y=y, label=segmentation_pb2.POINT_LABEL_POSITIVE if positive else segmentation_pb2.POINT_LABEL_NEGATIVE)
        for x, y, positive in points], multimask_output=len(points) == 1 and box is None)
    if box is not None:
        prompt.box.CopyFrom(common_pb2.Box(x_min=box[0], y_min=box[1], x_max=box[2], y_max=box[3]))
    with SyncPreLabelClient(router, timeout_s=60) as client:
        reply = client.segment_click(segmentation_pb2.ClickRequest(image=common_pb2.Image(data=image), prompt=prompt))
    rle = reply.candidates[0].instance.mask
    return coco_mask.decode({"size": list(rle.size), "counts": rle.counts}).astype(bool)


def interactive_scenario(ls: LabelStudio, document_root: Path, router: str, logs: Path, run_probe) -> None:
    photos = document_root / "smart-photos"
    photos.mkdir()
    shutil.copy(photo_path("coffee.png"), photos / "coffee.png")
    pid = new_project(ls, "prelabel smart", SMART_CONFIG, str(photos))
    with ls_backend(ls, router, ls.pat, logs / "smart-backend.log") as url:
        r = requests.post(f"{ls.base}/api/ml", headers=ls.headers(), timeout=120,
                          json={"url": url, "project": pid, "title": "prelabel", "is_interactive": True})
        assert r.status_code == 201 and r.json()["state"] == "CO", r.text
        ml_id = r.json()["id"]
        r = requests.post(f"{ls.base}/api/projects/{pid}/import", headers=ls.headers(), timeout=60, json=[
            {"data": {"image": "/data/local-files/?d=smart-photos/coffee.png"}},
            {"data": {"image": "/data/local-files/?d=smart-photos/missing.png"}}])
        assert r.status_code == 201, r.text
        ids = {Path(t["data"]["image"]).name: t["id"] for t in tasks_of(ls, pid)}
        coffee, missing = ids["coffee.png"], ids["missing.png"]

        def interactive(task: int, *regions: dict) -> dict:
            """What Label Studio's editor posts when a smart region is finished; its answer."""
            r = requests.post(f"{ls.base}/api/ml/{ml_id}/interactive-annotating", headers=ls.headers(), timeout=120,
                              json={"task": task, "context": {"result": list(regions)}})
            assert r.status_code == 200, r.text
            return r.json()

        prompts = {  # name: (context regions, the same prompt in pixels for the router)
            "click": ([smart_keypoint(*CUP_CLICK)], [(*CUP_CLICK, True)], None),
            "negative": ([smart_keypoint(*CUP_CLICK), smart_keypoint(*TABLE, positive=False)],
                         [(*CUP_CLICK, True), (*TABLE, False)], None),
            "box": ([smart_rectangle(*CUP_BOX)], [], CUP_BOX),
        }
        regions = []
        for name, (context, _, _) in prompts.items():
            answer = interactive(coffee, *context)
            assert "errors" not in answer, (name, answer)
            (region,) = answer["data"]["result"]
            assert region["type"] == "brushlabels" and region["value"]["format"] == "rle", region
            assert (region["from_name"], region["to_name"], region["value"]["brushlabels"]) == ("mask", "image", ["cup"])
            assert (region["original_width"], region["original_height"]) == (COFFEE_W, COFFEE_H)
            # GrabCut has no confidence of its own: the served grabcut_probability (0.6), a
            # little less at the mask's edge
            assert 0.55 < region["score"] <= 0.6 + 1e-6 and answer["data"]["score"] == region["score"]
            assert answer["data"]["model_version"]
            regions.append(region)
        (logs / "smart.json").write_text(json.dumps(regions))
        run_probe("label-studio", "ls_brush_decode.py", logs / "smart.json", logs / "smart.npz")  # Label Studio's decoder
        decoded = np.load(logs / "smart.npz")
        masks = dict(zip(prompts, (decoded[f"arr_{i}"] for i in range(len(prompts))), strict=True))
        image = photo_path("coffee.png").read_bytes()
        for name, (_, points, box) in prompts.items():
            assert masks[name].shape == (COFFEE_H, COFFEE_W)
            assert np.array_equal(masks[name], router_mask(router, image, points, box)), name  # the RLE is exact
        click, negative, box = masks["click"], masks["negative"], masks["box"]
        assert at(click, [CUP_CLICK, *ON_CUP]) == [True] * 3 and at(click, OFF_CUP) == [False] * 4
        assert at(click, [TABLE]) == [True], "premise: one click's mask runs into the table below the saucer"
        assert at(negative, [CUP_CLICK, *ON_CUP]) == [True] * 3, "the negative click kept the cup"
        assert at(negative, [TABLE, (440, 370), *OFF_CUP]) == [False] * 6, "the negative click removed the table"
        rows, cols = np.nonzero(box)
        assert at(box, [CUP_CLICK, *ON_CUP, (400, 220)]) == [True] * 4
        assert cols.min() >= CUP_BOX[0] - 3 and cols.max() <= CUP_BOX[2] + 3, "the box's mask stays inside it"
        assert rows.min() >= CUP_BOX[1] - 3 and rows.max() <= CUP_BOX[3] + 3

        # The annotator accepts the suggestion and submits: Label Studio stores the mask
        # as it came, and gives it back.
        r = requests.post(f"{ls.base}/api/tasks/{coffee}/annotations", headers=ls.headers(), timeout=60,
                          json={"result": [regions[1]]})
        assert r.status_code == 201, r.text
        r = requests.get(f"{ls.base}/api/annotations/{r.json()['id']}", headers=ls.headers(), timeout=60)
        (stored,) = r.json()["result"]
        assert stored["value"] == regions[1]["value"] and stored["type"] == "brushlabels", stored
        (logs / "stored.json").write_text(json.dumps([stored]))
        run_probe("label-studio", "ls_brush_decode.py", logs / "stored.json", logs / "stored.npz")
        assert np.array_equal(np.load(logs / "stored.npz")["arr_0"], negative)

        # Failures are said to the annotator (Label Studio's {"errors": [...]}), never an empty mask:
        # an image Label Studio cannot serve, a click the router refuses (outside the image).
        errors = interactive(missing, smart_keypoint(*CUP_CLICK))["errors"]
        assert f"task {missing}: cannot read image: HTTP 404" in errors[0], errors
        errors = interactive(coffee, smart_keypoint(COFFEE_W * 1.5, 200))["errors"]
        assert f"422 Client Error: task {coffee}: router: INVALID_ARGUMENT: prompt.points: points lie outside " \
               f"the {COFFEE_W}x{COFFEE_H} image" in errors[0], errors
        # Interactive answers are suggestions: Label Studio stored no prediction of them.
        assert all(t["predictions"] == [] for t in tasks_of(ls, pid))
        metrics = requests.get(url + "/metrics", timeout=10).text
        assert 'prelabel_ls_tasks_total{outcome="ok"} 3.0' in metrics
    assert ls.pat not in (logs / "smart-backend.log").read_text()


def test_tools_doc_gives_the_tested_interactive_labeling_config():
    assert SMART_CONFIG in (REPO / "docs" / "tools.md").read_text()


@pytest.mark.integration
async def test_label_studio_interactive_request_gets_a_mask_of_the_clicked_object_from_the_real_suite(
        label_studio, sample_run, router_address, tmp_path, run_probe):
    """Label Studio at its defaults, a project with smart KeyPointLabels and RectangleLabels and
    a BrushLabels control, `prelabel ls-backend` connected with interactive pre-annotation on,
    in front of the real router (GrabCut on CPU): interactive requests through Label Studio's
    own API get one brush mask of the clicked cup (a click, a click and a negative click, a
    box), which decode with Label Studio's decoder to the router's mask, and Label Studio
    stores the accepted mask; an unreadable image or a refused click is an error."""
    _, _, root = sample_run
    await asyncio.to_thread(interactive_scenario, label_studio, Path(os.path.dirname(root)), router_address,
                            tmp_path, run_probe)
