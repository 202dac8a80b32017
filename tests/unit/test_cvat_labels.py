"""cvat_labels.json (prelabel.formats.cvat_labels): the labels CVAT needs before it imports
the COCO files, named exactly as the COCO files written from the same journal name their
categories and keypoints, in the shape CVAT's raw labels editor and server accept (the real
cvat_sdk checks them in tests/tools/test_cvat_labels.py)."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from prelabel.formats import write_outputs
from prelabel.formats.coco import file_path as coco_file
from prelabel.formats.cvat_labels import FILE_NAME, file_name
from tests.tools import samples

pytestmark = pytest.mark.timeout(60)

# CVAT's label types (cvat-core LabelType), attribute input types, and what cvat-core's
# Label.parseUntrustedSvg keeps of a skeleton SVG (DOMPurify allow-list).
LABEL_TYPES = {"any", "cuboid", "ellipse", "mask", "points", "polygon", "polyline", "rectangle", "skeleton", "tag"}
INPUT_TYPES = {"checkbox", "number", "text", "radio", "select"}
SVG_TAGS = {"line", "circle"}
SVG_ATTRS = {"cx", "cy", "r", "data-type", "data-element-id", "data-label-name", "data-label-id", "data-node-id",
             "x1", "y1", "x2", "y2", "data-node-from", "data-node-to"}


def load(out, name=FILE_NAME):
    return json.loads((out / name).read_text())


def categories(out, task):
    return json.loads(open(coco_file(out, task)).read())["categories"]


def check_attributes(attributes):
    """cvat-ui's validateParsedAttribute and CVAT's AttributeSerializer."""
    assert len({a["name"] for a in attributes}) == len(attributes)
    for a in attributes:
        assert a["input_type"] in INPUT_TYPES and isinstance(a["mutable"], bool)
        assert a["values"] and all(isinstance(v, str) for v in a["values"]) and len(set(a["values"])) == len(a["values"])
        assert a["input_type"] not in ("select", "radio") or a["default_value"] in a["values"]


def check_label(label):
    """What cvat-ui's raw labels editor (validateParsedLabel) and CVAT's LabelSerializer need."""
    assert set(label) <= {"name", "type", "attributes", "svg", "sublabels"}  # no ids: CVAT assigns them
    assert isinstance(label["name"], str) and 1 <= len(label["name"].strip()) <= 64
    assert label["type"] in LABEL_TYPES
    check_attributes(label["attributes"])
    if label["type"] != "skeleton":
        assert "svg" not in label and "sublabels" not in label
        return
    names = [s["name"] for s in label["sublabels"]]
    assert names and len(set(names)) == len(names)
    for sub in label["sublabels"]:
        assert set(sub) <= {"name", "type", "attributes"} and sub["type"] == "points"
        check_attributes(sub["attributes"])


def parse_svg(svg: str):
    """The SVG as CVAT's exporter reads it (ET.fromstring('<root>' + svg + '</root>')):
    (circles in order, edges as (from, to))."""
    assert "<svg" not in svg  # cvat-core wraps it in <svg> itself
    root = ET.fromstring("<root>" + svg + "</root>")
    assert {el.tag for el in root} <= SVG_TAGS
    assert all(set(el.attrib) <= SVG_ATTRS for el in root)
    circles = [el.attrib for el in root if el.tag == "circle"]
    edges = [(int(el.attrib["data-node-from"]), int(el.attrib["data-node-to"])) for el in root if el.tag == "line"]
    lines = [el.attrib for el in root if el.tag == "line"]
    return circles, edges, lines


def check_skeleton_against_category(label, category):
    """Sublabels, SVG nodes and edges of a skeleton label = the COCO keypoint category."""
    assert label["name"] == category["name"] and label["type"] == "skeleton"
    assert [s["name"] for s in label["sublabels"]] == category["keypoints"]
    circles, edges, lines = parse_svg(label["svg"])
    assert [c["data-label-name"] for c in circles] == category["keypoints"]  # the exporter's sublabel order
    assert all(c["data-type"] == "element node" for c in circles)
    assert [int(c["data-node-id"]) for c in circles] == list(range(1, len(circles) + 1))
    assert [int(c["data-element-id"]) for c in circles] == list(range(1, len(circles) + 1))
    assert [list(e) for e in edges] == [list(e) for e in category["skeleton"]]  # the COCO 1-based numbering
    at = {int(c["data-node-id"]): (float(c["cx"]), float(c["cy"])) for c in circles}
    assert all(0 <= v <= 100 for xy in at.values() for v in xy)  # the configurator's 100 x 100 viewBox
    for line, (a, b) in zip(lines, edges, strict=False):
        assert line["data-type"] == "edge"
        assert (float(line["x1"]), float(line["y1"]), float(line["x2"]), float(line["y2"])) == at[a] + at[b]
    # CVAT's server links each node to its sublabel by this exact text
    svg = label["svg"]
    for i, name in enumerate(category["keypoints"]):
        assert svg.count(f'data-label-name="{name}"') == 1
        svg = svg.replace(f'data-label-name="{name}"', f'data-label-id="{1000 + i}"')
    assert "data-label-name" not in svg


def test_cvat_labels_name_every_coco_category_and_keypoint_when_written_for_the_same_journal(tmp_path):
    out = tmp_path / "out"
    samples.write(samples.make_samples(tmp_path / "in"), out)  # every task, through the journal
    main, person_file = load(out), load(out, file_name("keypoints"))
    for labels in (main, person_file):
        assert len({label["name"] for label in labels}) == len(labels)  # unique in a project/task
        for label in labels:
            check_label(label)

    boxes = [label for label in main if label["type"] != "skeleton"]
    box_names = [c["name"] for c in categories(out, "detect")]
    assert [label["name"] for label in boxes] == box_names == [c["name"] for c in categories(out, "segment")]
    assert {label["type"] for label in boxes} == {"any"}  # rectangles, masks and polygons alike
    (face,) = [label for label in main if label["type"] == "skeleton"]
    (face_category,) = categories(out, "faces")
    check_skeleton_against_category(face, face_category)
    # "person" is a box label here, so the person skeleton is in a file of its own
    (person,) = person_file
    (person_category,) = categories(out, "keypoints")
    check_skeleton_against_category(person, person_category)
    assert len(person["sublabels"]) == 17 and len(face["sublabels"]) == 5
    for label in main + person_file:  # the attributes every COCO annotation carries
        assert [a["name"] for a in label["attributes"]] == ["review", "model"]
        assert set(label["attributes"][0]["values"]) >= {"auto_accept", "needs_review", "reject"}


def test_cvat_labels_keep_person_skeleton_in_the_main_file_when_no_box_task_is_written(tmp_path):
    (tmp_path / file_name("keypoints")).write_text("[]")  # left by an earlier run
    r = samples.response_for("a.jpg", 320, 240, 0)
    write_outputs(tmp_path, ["coco"], [(1, "a.jpg", "a.jpg", r)], tasks=["keypoints", "faces"])
    labels = load(tmp_path)
    assert [(label["name"], label["type"]) for label in labels] == [("person", "skeleton"), ("face", "skeleton")]
    check_skeleton_against_category(labels[0], categories(tmp_path, "keypoints")[0])
    assert not (tmp_path / file_name("keypoints")).exists()


def test_cvat_labels_add_a_label_when_a_detection_has_a_name_outside_coco(tmp_path):
    r = samples.response_for("a.jpg", 320, 240, 0)
    r.detections[1].category.name = "widget"
    write_outputs(tmp_path, ["coco"], [(1, "a.jpg", "a.jpg", r)], tasks=["detect"])
    names = [label["name"] for label in load(tmp_path)]
    assert names == [c["name"] for c in categories(tmp_path, "detect")] and names[-1] == "widget"


def test_cvat_labels_follow_the_response_schema_when_a_model_names_other_keypoints(tmp_path):
    r = samples.response_for("a.jpg", 320, 240, 0)
    del r.faces[0].keypoints[:]
    for name in ("tip", "base", "knot"):
        r.faces[0].keypoints.add(name=name, x=10, y=10, score=0.9, visibility=2)
    r.keypoint_schemas.add(name="rope_3", keypoint_names=["tip", "base", "knot"], skeleton=[1, 3, 3, 2])
    write_outputs(tmp_path, ["coco"], [(1, "a.jpg", "a.jpg", r)], tasks=["faces"])
    (face,) = load(tmp_path)
    (category,) = categories(tmp_path, "faces")
    assert category["keypoints"] == ["tip", "base", "knot"] and category["skeleton"] == [[1, 3], [3, 2]]
    check_skeleton_against_category(face, category)


def test_cvat_labels_are_not_written_when_coco_is_not(tmp_path):
    r = samples.response_for("a.jpg", 320, 240, 0)
    write_outputs(tmp_path, ["labelstudio"], [(1, "a.jpg", "a.jpg", r)], tasks=["detect"])
    assert not (tmp_path / FILE_NAME).exists()
