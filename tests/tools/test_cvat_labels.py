"""cvat_labels.json is what CVAT takes as a project's or task's labels: every entry passes
the real cvat_sdk's request models (PatchedLabelRequest with SublabelRequest and
AttributeRequest, as a ProjectWriteRequest / TaskWriteRequest), a task made from it serves
prelabel.cvat_function, and its names are the ones datumaro -- CVAT's importer -- reads from
the COCO files written with it."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from prelabel.formats.cvat_labels import FILE_NAME, file_name

pytestmark = [pytest.mark.tools, pytest.mark.timeout(900)]


def edges(svg: str) -> list[list[int]]:
    root = ET.fromstring("<root>" + svg + "</root>")  # as CVAT's exporter reads it
    return sorted(sorted((int(e.attrib["data-node-from"]), int(e.attrib["data-node-to"])))
                  for e in root if e.tag == "line")


def test_cvat_labels_pass_cvat_sdk_and_match_datumaro_imports_when_written_with_coco(sample_run, run_probe):
    _, out, _ = sample_run
    got = run_probe("cvat", "cvat_labels_check.py", out)
    main, person_file = FILE_NAME, file_name("keypoints")
    assert set(got["files"]) == {main, person_file}
    written = {name: json.loads((out / name).read_text()) for name in got["files"]}
    for name, seen in got["files"].items():
        assert seen["errors"] == [], name
        assert seen["checked"] == len(written[name])
        assert seen["sublabels"] == sum(len(label.get("sublabels", [])) for label in written[name])

    # a task made from cvat_labels.json takes the function's boxes, masks and faces; the
    # person skeleton needs the task made from cvat_labels_keypoints.json
    ok = {name: sorted(t for t, r in seen["function_tasks"].items() if r == "ok") for name, seen in got["files"].items()}
    assert ok == {main: ["detect", "detect,segment", "faces", "segment"], person_file: ["keypoints"]}

    dm = got["datumaro"]
    boxes = [label["name"] for label in written[main] if label["type"] == "any"]
    assert dm["detect"]["labels"] == boxes and dm["segment"]["labels"] == boxes
    skeletons = {label["name"]: label for name in written for label in written[name] if label["type"] == "skeleton"}
    assert set(skeletons) == {"person", "face"}
    for task in ("keypoints", "faces"):
        (name,) = dm[task]["labels"]
        label = skeletons[name]
        assert dm[task]["points"][name]["labels"] == [s["name"] for s in label["sublabels"]]
        assert dm[task]["points"][name]["joints"] == edges(label["svg"])
