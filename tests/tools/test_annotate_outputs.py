"""`prelabel annotate` itself (the CLI, over gRPC, against a loopback router that answers
with hand-built labels) writes outputs the tools load with the documented steps and
nothing else: the image root from the inputs, local-files URLs for Label Studio."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest

from prelabel.formats.coco import file_path as coco_file
from prelabel.formats.common import DEFAULT_OUTPUTS_REVIEW, output_labels
from prelabel.journal import response_of
from tests.tools import router_stub
from tests.tools import samples as samples_mod

pytestmark = [pytest.mark.tools, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    base = tmp_path_factory.mktemp("annotate")
    samples = samples_mod.make_samples(base / "in")
    server, router, address = router_stub.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "prelabel.cli", "annotate", str(base / "in" / "images"), "--out", str(base / "out"),
             "--router", address, "--no-progress", "--concurrency", "2", "--yolo-val-fraction", "0.3"],
            cwd=REPO, capture_output=True, text=True, timeout=300)
    finally:
        server.stop(0)
    assert done.returncode == 0, done.stderr[-3000:]
    return samples, base / "out", base / "in" / "images"


def test_annotate_names_images_relative_to_the_input_folder_when_run_on_a_folder(annotated):
    samples, out, root = annotated
    names = {str(s.path.relative_to(root)) for s in samples}
    coco = json.loads(Path(coco_file(out, "detect")).read_text())
    assert {img["file_name"] for img in coco["images"]} == names
    assert (out / "coco" / "images").resolve() == root.resolve()
    tasks = json.loads((out / "labelstudio.json").read_text())
    prefix = "/data/local-files/?d=images/"  # the root's own folder name, then the name
    assert {unquote(t["data"]["image"][len(prefix):]) for t in tasks} == names
    assert all(t["data"]["image"].startswith(prefix) for t in tasks)
    assert f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root.parent}" in (out / "labelstudio.xml").read_text()


def test_annotate_outputs_load_in_ultralytics_and_datumaro_when_written_by_the_cli(annotated, run_probe):
    samples, out, _ = annotated
    yolo = run_probe("ultralytics", "ultralytics_load.py", *[out / "yolo" / k / "data.yaml"
                                                             for k in ("detect", "segment", "pose", "faces")])
    kinds = {"detect": "detect", "segment": "segment", "keypoints": "pose", "faces": "faces"}
    responses = [response_of(json.loads(line)) for line in (out / "journal.jsonl").read_text().splitlines()]
    expected = Counter(kinds[label.task.name] for r in responses
                       for label in output_labels(r, DEFAULT_OUTPUTS_REVIEW))  # no rejected draft
    assert expected["detect"] == 2 * len(samples) - 2  # the stub rejects the person box of two images
    for kind in kinds.values():
        splits = yolo[kind]["splits"]
        parts = ["train"] if yolo[kind]["val_is_train"] else ["train", "val"]
        assert sum(splits[p]["instances"] for p in parts) == expected[kind], kind
    for task, fmt in (("detect", "coco_instances"), ("keypoints", "coco_person_keypoints")):
        got = run_probe("cvat", "datumaro_import.py", fmt, coco_file(out, task))
        assert len(got["items"]) == len(samples), task
