"""Output formats of `prelabel annotate`, from hand-built PreLabelResponse protos."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from prelabel.core.labels import (
    COCO_KEYPOINT_NAMES,
    COCO_SKELETON,
    FACE_LANDMARK_NAMES,
    FACE_SKELETON,
)
from prelabel.formats import ls_brush, write_outputs
from prelabel.formats.coco import CocoWriter
from prelabel.formats.coco import file_path as coco_file
from prelabel.formats.common import FACE_COCO_ID, FIXED_NAMES, coco_category_id, image_root_of, relative_name
from prelabel.formats.labelstudio import PER_REGION_TYPES, labeling_config, task_of
from prelabel.formats.yolo import dataset_name, flip_idx
from prelabel.v1 import common_pb2, prelabel_pb2

pytestmark = pytest.mark.timeout(60)

W, H = 640, 480
PERSON_BOX = (100.0, 50.0, 300.0, 450.0)  # x_min, y_min, x_max, y_max
ALL_TASKS = ["detect", "segment", "keypoints", "faces"]
PROV = common_pb2.Provenance(model_name="coco_detector", model_version="1", weights=common_pb2.WEIGHTS_PRETRAINED)


def detection(box, name, cid, score, review=common_pb2.REVIEW_DECISION_AUTO_ACCEPT):
    return common_pb2.Detection(
        box=common_pb2.Box(x_min=box[0], y_min=box[1], x_max=box[2], y_max=box[3]),
        category=common_pb2.Category(id=cid, name=name), score=score, review=review, provenance=PROV)


def person_mask() -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[100:400, 150:250] = 1
    return m


def make_response(image_id="img", *, uncertainty=0.5, needs_review=1, width=W, height=H):
    r = prelabel_pb2.PreLabelResponse(image_id=image_id, image_size=common_pb2.ImageSize(width=width, height=height))
    r.detections.append(detection(PERSON_BOX, "person", 1, 0.6, common_pb2.REVIEW_DECISION_NEEDS_REVIEW))
    r.detections.append(detection((10, 20, 60, 80), "cup", 47, 0.95))
    rle = mask_utils.encode(np.asfortranarray(person_mask()))
    inst = r.masks.add()
    inst.detection.CopyFrom(detection((150, 100, 250, 400), "person", 1, 0.9))
    inst.mask.size.extend(rle["size"])
    inst.mask.counts = rle["counts"]
    inst.area = int(person_mask().sum())
    inst.polygons.add(points=[150, 100, 250, 100, 250, 400, 150, 400])
    inst.polygons.add(points=[0, 0, 1, 0, 1, 1])  # a speck: the larger polygon is used
    kp = r.person_keypoints.add()
    kp.detection.CopyFrom(detection((102, 52, 298, 448), "person", 1, 0.8))
    for i, name in enumerate(COCO_KEYPOINT_NAMES):
        v = i % 3  # 0, 1, 2, 0, ...
        kp.keypoints.add(name=name, x=(200.0 + i) if v else 0.0, y=(100.0 + i) if v else 0.0, score=0.3 * v,
                         visibility=v)
    face = r.faces.add()
    face.detection.CopyFrom(detection((180, 60, 230, 120), "face", 1, 0.99))
    for i, name in enumerate(FACE_LANDMARK_NAMES):
        face.keypoints.add(name=name, x=190.0 + 5 * i, y=80.0, score=0.99, visibility=2)
    r.keypoint_schemas.add(name="coco_person_17", keypoint_names=COCO_KEYPOINT_NAMES,
                           skeleton=[i for edge in COCO_SKELETON for i in edge])
    r.keypoint_schemas.add(name="face_5", keypoint_names=FACE_LANDMARK_NAMES)
    r.uncertainty.score = uncertainty
    r.uncertainty.needs_review_count = needs_review
    r.uncertainty.min_margin = 0.1
    return r


def write_all(out, items, formats=("coco", "yolo", "labelstudio"), tasks=ALL_TASKS):
    return write_outputs(out, formats, [(n, i, f"/data/{i}", r) for n, (i, r) in enumerate(items, 1)], tasks=tasks)


# ---------------------------------------------------------------------------- COCO


def load_coco(out, task):
    return COCO(coco_file(out, task))


def read_coco_json(out, task) -> dict:
    with open(coco_file(out, task)) as f:
        return json.load(f)


def test_coco_writes_one_file_per_task_when_every_task_has_labels(tmp_path):
    write_all(tmp_path, [("a/x.jpg", make_response()), ("b/y.png", make_response())])
    assert sorted(p.name for p in (tmp_path / "coco/annotations").iterdir()) == [
        "instances_detect.json", "instances_segment.json", "person_keypoints_faces.json",
        "person_keypoints_keypoints.json"]
    per_task = {t: load_coco(tmp_path, t) for t in ALL_TASKS}
    for coco in per_task.values():
        assert [img["file_name"] for img in coco.loadImgs(coco.getImgIds())] == ["a/x.jpg", "b/y.png"]
        for ann in coco.dataset["annotations"]:
            assert "segmentation" in ann and set(ann["attributes"]) == {"review", "model"}
            assert not {"task", "review", "model"} & set(ann)  # extras only under attributes
    assert [len(c.getAnnIds(imgIds=[1])) for c in per_task.values()] == [2, 1, 1, 1]

    det = next(a for a in per_task["detect"].dataset["annotations"] if a["category_id"] == 1)
    assert det["bbox"] == [100.0, 50.0, 200.0, 400.0] and det["score"] == pytest.approx(0.6)
    assert det["segmentation"] == [] and det["attributes"] == {"review": "needs_review", "model": "coco_detector@1"}

    seg_coco = per_task["segment"]
    seg = seg_coco.dataset["annotations"][0]
    assert isinstance(seg["segmentation"]["counts"], str) and seg["segmentation"]["size"] == [H, W]
    assert np.array_equal(seg_coco.annToMask(seg), person_mask())
    assert seg["area"] == int(person_mask().sum())

    kp_coco = per_task["keypoints"]
    kp = kp_coco.dataset["annotations"][0]
    assert len(kp["keypoints"]) == 17 * 3
    assert kp["keypoints"][:6] == [0, 0, 0, 201.0, 101.0, 1]  # nose v=0, left_eye v=1
    assert kp["num_keypoints"] == sum(1 for i in range(17) if i % 3)
    (person,) = kp_coco.dataset["categories"]
    assert person["id"] == 1 and person["keypoints"] == COCO_KEYPOINT_NAMES
    assert person["skeleton"] == [list(e) for e in COCO_SKELETON]

    (face_cat,) = per_task["faces"].dataset["categories"]
    assert face_cat["id"] == FACE_COCO_ID and face_cat["keypoints"] == FACE_LANDMARK_NAMES
    assert face_cat["skeleton"] == [list(e) for e in FACE_SKELETON]
    face = per_task["faces"].dataset["annotations"][0]
    assert len(face["keypoints"]) == 15 and face["num_keypoints"] == 5

    for task, coco in per_task.items():
        results = coco.loadRes(read_coco_json(tmp_path, task)["annotations"])
        assert len(results.getAnnIds()) == 2 * len(coco.getAnnIds(imgIds=[1]))


def test_coco_file_name_is_relative_to_image_root_when_a_root_is_given(tmp_path):
    write_outputs(tmp_path, ["coco"], [(1, "/data/images/a/x.jpg", "/data/images/a/x.jpg", make_response())],
                  tasks=["detect"], image_root="/data/images")
    assert load_coco(tmp_path, "detect").dataset["images"][0]["file_name"] == "a/x.jpg"


def test_coco_categories_are_the_same_when_shards_see_different_labels(tmp_path):
    only_cup = make_response()
    del only_cup.detections[0], only_cup.masks[:], only_cup.person_keypoints[:], only_cup.faces[:]
    (tmp_path / "s0").mkdir()
    (tmp_path / "s1").mkdir()
    write_all(tmp_path / "s0", [("a.jpg", make_response())], formats=["coco"])
    write_all(tmp_path / "s1", [("b.jpg", only_cup)], formats=["coco"])
    for task in ALL_TASKS:
        cats = [read_coco_json(tmp_path / s, task)["categories"] for s in ("s0", "s1")]
        assert cats[0] == cats[1]
    detect = read_coco_json(tmp_path / "s0", "detect")["categories"]
    assert len(detect) == 80 and FACE_COCO_ID not in {c["id"] for c in detect}


def test_coco_category_id_is_stable_when_name_is_not_a_coco_class():
    assert coco_category_id("person") == 1 and coco_category_id("toothbrush") == 90
    assert coco_category_id("face") == FACE_COCO_ID
    assert coco_category_id("widget") == coco_category_id("widget") > 1000
    assert coco_category_id("widget") != coco_category_id("gadget")


def test_coco_writer_adds_category_when_a_label_has_an_unknown_name(tmp_path):
    r = make_response()
    r.detections[1].category.name = "widget"
    writer = CocoWriter(tmp_path, tasks=["detect"])
    writer.add(1, "a.jpg", "a.jpg", r)
    writer.close()
    coco = load_coco(tmp_path, "detect")
    assert coco.loadCats([coco_category_id("widget")])[0]["name"] == "widget"


def test_image_root_of_is_the_deepest_common_folder_when_ids_share_one():
    assert image_root_of(["/d/images/a.jpg", "/d/images/b/c.jpg"]) == "/d/images"
    assert image_root_of(["x/a.jpg", "y/b.jpg"]) == "" and image_root_of(["a.jpg"]) == ""
    assert image_root_of(["/a.jpg", "rel/b.jpg"]) == ""
    assert relative_name("/d/images/b/c.jpg", "/d/images") == "b/c.jpg"
    assert relative_name("/elsewhere/c.jpg", "/d/images") == "elsewhere/c.jpg"


# ---------------------------------------------------------------------------- YOLO


def read_lines(path):
    return [line.split() for line in path.read_text().splitlines()]


def test_yolo_lines_are_normalised_when_box_is_known(tmp_path):
    write_all(tmp_path, [("imgs/x.jpg", make_response())], formats=["yolo"])
    yolo = tmp_path / "yolo"
    detect = read_lines(yolo / "detect/labels/imgs/x.txt")
    assert detect[0][0] == "0"  # person is class 0 in coco80 order
    assert [float(v) for v in detect[0][1:]] == pytest.approx([200 / W, 250 / H, 200 / W, 400 / H], abs=1e-6)
    assert detect[1][0] == str(FIXED_NAMES.index("cup"))

    (segment,) = read_lines(yolo / "segment/labels/imgs/x.txt")
    assert segment[0] == "0" and len(segment) == 1 + 8
    assert [float(v) for v in segment[1:3]] == pytest.approx([150 / W, 100 / H], abs=1e-6)

    (pose,) = read_lines(yolo / "pose/labels/imgs/x.txt")
    assert len(pose) == 5 + 17 * 3
    visibilities = pose[5 + 2::3]
    assert visibilities == [str(i % 3) for i in range(17)]
    assert pose[5:8] == ["0", "0", "0"]

    (face,) = read_lines(yolo / "faces/labels/imgs/x.txt")
    assert len(face) == 5 + 5 * 3
    coordinates = [v for line in detect + [segment] for v in line[1:]]
    coordinates += [v for line in (pose, face) for i, v in enumerate(line[1:]) if i < 4 or (i - 4) % 3 != 2]
    assert coordinates and all(0.0 <= float(v) <= 1.0 for v in coordinates)


def test_yolo_clips_coordinates_when_box_leaves_the_image(tmp_path):
    r = make_response()
    r.detections[0].box.x_max = W + 50
    r.detections[0].box.x_min = -10
    write_all(tmp_path, [("x.jpg", r)], formats=["yolo"], tasks=["detect"])
    for line in read_lines(tmp_path / "yolo/detect/labels/x.txt"):
        assert all(0.0 <= float(v) <= 1.0 for v in line[1:])
    assert not (tmp_path / "yolo/pose").exists()  # only the requested tasks


def test_yolo_gives_each_image_its_own_file_when_stems_collide(tmp_path):
    empty = prelabel_pb2.PreLabelResponse(image_size=common_pb2.ImageSize(width=W, height=H))
    write_all(tmp_path, [("a.jpg", make_response()), ("a.png", empty), ("/abs/../b.jpg", empty)],
              formats=["yolo"], tasks=["detect"])
    root = tmp_path / "yolo/detect"
    assert sorted(p.relative_to(root / "labels").as_posix() for p in (root / "labels").rglob("*.txt")) == [
        "a.png.txt", "a.txt", "abs/__/b.txt"]
    assert sorted(p.relative_to(root / "images").as_posix() for p in (root / "images").rglob("*")
                  if p.is_symlink()) == ["a.jpg", "a.png.png", "abs/__/b.jpg"]
    assert os.readlink(root / "images/a.png.png") == "/data/a.png"  # the file that was read
    assert (root / "labels/a.png.txt").read_text() == ""  # background image: empty file


def test_yolo_renames_folders_named_images_when_inputs_live_in_one():
    assert dataset_name("/data/images/train/images/x.jpg", "/data") == "images_/train/images_/x.jpg"
    assert dataset_name("images.jpg") == "images.jpg"  # only folders matter to Ultralytics' rule


def test_yolo_splits_train_and_val_when_a_val_fraction_is_given(tmp_path):
    yaml = pytest.importorskip("yaml")
    items = [(f"{i}.jpg", make_response()) for i in range(20)]
    write_outputs(tmp_path, ["yolo"], [(n, i, i, r) for n, (i, r) in enumerate(items, 1)], tasks=["detect"],
                  val_fraction=0.25)
    root = tmp_path / "yolo/detect"
    data = yaml.safe_load((root / "data.yaml").read_text())
    assert (data["train"], data["val"]) == ("train.txt", "val.txt") and "path" not in data
    train, val = ((root / f).read_text().split() for f in ("train.txt", "val.txt"))
    assert 0 < len(val) < 10 and len(train) + len(val) == 20 and not set(train) & set(val)
    assert all(line.startswith("./images/") for line in train + val)


@pytest.mark.parametrize("fraction,side", [(0.9999, "val"), (0.0001, "train")])
def test_yolo_points_an_empty_split_at_the_other_when_every_image_fell_on_one_side(tmp_path, fraction, side):
    # Ultralytics refuses an empty image list; with few images a fraction can put them all in one split.
    yaml = pytest.importorskip("yaml")
    items = [(f"{i}.jpg", make_response()) for i in range(3)]
    write_outputs(tmp_path, ["yolo"], [(n, i, i, r) for n, (i, r) in enumerate(items, 1)], tasks=["detect"],
                  val_fraction=fraction)
    root = tmp_path / "yolo/detect"
    data = yaml.safe_load((root / "data.yaml").read_text())
    assert (data["train"], data["val"]) == (f"{side}.txt", f"{side}.txt")
    assert len((root / f"{side}.txt").read_text().split()) == 3


def test_yolo_data_yaml_lists_keypoint_shape_when_pose(tmp_path):
    yaml = pytest.importorskip("yaml")
    write_all(tmp_path, [("x.jpg", make_response())], formats=["yolo"])
    pose = yaml.safe_load((tmp_path / "yolo/pose/data.yaml").read_text())
    assert pose["kpt_shape"] == [17, 3] and pose["names"] == {0: "person"}
    assert pose["flip_idx"] == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    detect = yaml.safe_load((tmp_path / "yolo/detect/data.yaml").read_text())
    assert detect["names"][0] == "person" and detect["names"][79] == "toothbrush" and detect["names"][80] == "face"


def test_flip_idx_swaps_mouth_corners_when_face_landmarks():
    assert flip_idx(FACE_LANDMARK_NAMES) == [1, 0, 2, 4, 3]


def test_dataset_name_stays_inside_the_dataset_when_id_climbs_up():
    assert dataset_name("../../etc/passwd.jpg") == "__/__/etc/passwd.jpg"


# ---------------------------------------------------------------------------- Label Studio


def test_labelstudio_regions_are_in_percent_when_box_is_known():
    r = make_response()
    r.masks[0].detection.box.CopyFrom(r.detections[0].box)  # cascade mode: the mask's box is the prompt box
    task = task_of("imgs/x.jpg", r, url="/data/local-files/?d=imgs/x.jpg")
    assert task["data"]["image"] == "/data/local-files/?d=imgs/x.jpg"
    assert task["data"]["uncertainty"] == 0.5 and task["data"]["needs_review"] == 1
    (prediction,) = task["predictions"]
    regions = {r["id"]: r for r in prediction["result"] if r["type"] not in PER_REGION_TYPES}
    person = regions["detect-0"]
    assert person["type"] == "rectanglelabels" and person["value"]["rectanglelabels"] == ["person"]
    assert person["value"]["x"] == pytest.approx(100 / W * 100, abs=1e-3)
    assert person["value"]["y"] == pytest.approx(50 / H * 100, abs=1e-3)
    assert person["value"]["width"] == pytest.approx(200 / W * 100, abs=1e-3)
    assert person["value"]["height"] == pytest.approx(400 / H * 100, abs=1e-3)
    assert person["score"] == pytest.approx(0.6) and person["original_width"] == W

    polygon = regions["segment-0"]
    assert polygon["value"]["points"][0] == pytest.approx([150 / W * 100, 100 / H * 100], abs=1e-3)
    assert polygon["parentID"] == "detect-0"  # one object: the mask is the person's box's child

    keypoints = [r for r in prediction["result"] if r["type"] == "keypointlabels"]
    person_kps = [r for r in keypoints if r["id"].startswith("keypoints-")]
    assert len(person_kps) == sum(1 for i in range(17) if i % 3)  # visibility 0 is left out
    assert {r["parentID"] for r in person_kps} == {"detect-0"}  # its detect box
    face_kps = [r for r in keypoints if r["id"].startswith("faces-")]
    assert {r["parentID"] for r in face_kps} == {"faces-0"} and "faces-0" in regions
    assert {r["from_name"] for r in face_kps} == {"face_keypoint"} != {r["from_name"] for r in person_kps}
    assert "keypoints-0" not in regions  # no duplicate person rectangle
    # Per region: its own review decision, and every task's label of its object.
    per_region = {(r["id"], r["type"]): r["value"] for r in prediction["result"] if r["type"] in PER_REGION_TYPES}
    assert per_region[("detect-0", "choices")]["choices"] == ["needs_review"]
    assert per_region[("segment-0", "choices")]["choices"] == ["auto_accept"]
    assert per_region[("detect-0", "choices")]["x"] == person["value"]["x"]  # the region's geometry beside
    assert [line.split(":")[0] for line in per_region[("detect-0", "textarea")]["text"]] == \
        ["detect", "segment", "keypoints"]
    assert per_region[("detect-0", "textarea")]["text"][0] == "detect: person 0.60 needs_review (coco_detector@1)"
    assert {i for i, _ in per_region} == {"detect-0", "detect-1", "segment-0", "faces-0"}  # no per-point ones
    assert prediction["model_version"] == "coco_detector@1"
    assert 0 < prediction["score"] <= 1


def test_labelstudio_file_is_a_task_list_with_one_model_version_when_models_differ(tmp_path):
    other = make_response()
    other.detections[1].provenance.model_version = "2"
    write_all(tmp_path, [("a.jpg", make_response()), ("b b.jpg", other)], formats=["labelstudio"])
    tasks = json.loads((tmp_path / "labelstudio.json").read_text())
    assert [t["data"]["image_id"] for t in tasks] == ["a.jpg", "b b.jpg"]
    # local files by default: the image root's folder name, then the name (root: the cwd here)
    assert tasks[1]["data"]["image"] == f"/data/local-files/?d={os.path.basename(os.getcwd())}/b%20b.jpg"
    assert {t["predictions"][0]["model_version"] for t in tasks} == {"coco_detector@1,coco_detector@2"}


def test_labelstudio_config_lists_every_label_when_written(tmp_path):
    r = make_response()
    r.detections[1].category.name = "widget"
    write_all(tmp_path, [("a.jpg", r)], formats=["labelstudio"])
    config = (tmp_path / "labelstudio.xml").read_text()
    import xml.etree.ElementTree as ET

    view = ET.fromstring(config)
    controls = {c.get("name"): [label.get("value") for label in c] for c in view if c.tag.endswith("Labels")}
    assert set(controls) == {"label", "polygon", "keypoint", "face_keypoint"}
    per_region = {c.get("name"): c for c in view if c.get("perRegion") == "true"}
    assert [c.get("value") for c in per_region["review"]] == ["auto_accept", "needs_review", "reject"]
    assert per_region["source"].tag == "TextArea"
    assert set(FIXED_NAMES) | {"widget"} == set(controls["label"])
    assert controls["keypoint"] == COCO_KEYPOINT_NAMES and controls["face_keypoint"] == FACE_LANDMARK_NAMES
    regions = json.loads((tmp_path / "labelstudio.json").read_text())[0]["predictions"][0]["result"]
    for region in regions:  # every region's label is in its control
        if region["type"] == "choices":
            (value,) = region["value"]["choices"]
            assert value in [c.get("value") for c in per_region[region["from_name"]]]
        elif region["type"] != "textarea":
            (value,) = region["value"][region["type"]]
            assert value in controls[region["from_name"]], region


def test_labelstudio_writes_brush_rle_when_masks_are_brush():
    task = task_of("x.jpg", make_response(), masks="brush")
    (brush,) = [r for r in task["predictions"][0]["result"] if r["type"] == "brushlabels"]
    assert brush["from_name"] == "brush" and brush["value"]["format"] == "rle"
    assert brush["value"]["brushlabels"] == ["person"] and all(0 <= b < 256 for b in brush["value"]["rle"])
    assert "BrushLabels" in labeling_config(["segment"], masks="brush")


def test_ls_brush_header_counts_rgba_values_when_encoded():
    rle = ls_brush.encode(person_mask())
    assert int.from_bytes(bytes(rle[:4]), "big") == W * H * 4
    assert len(rle) < W * H // 20  # runs, not pixels


# ---------------------------------------------------------------------------- review queue


def test_review_queue_lists_most_uncertain_first_when_images_differ(tmp_path):
    items = [("calm.jpg", make_response(uncertainty=0.1, needs_review=0)),
             ("unsure.jpg", make_response(uncertainty=0.97, needs_review=3)),
             ("mid.jpg", make_response(uncertainty=0.5, needs_review=1)),
             ("mid2.jpg", make_response(uncertainty=0.5, needs_review=2))]
    write_all(tmp_path, items, formats=[])
    queue = [json.loads(line) for line in (tmp_path / "review_queue.jsonl").read_text().splitlines()]
    assert [q["image_id"] for q in queue] == ["unsure.jpg", "mid2.jpg", "mid.jpg", "calm.jpg"]
    (label,) = queue[0]["labels"]  # only the needs_review label
    assert label == {"task": "detect", "index": 0, "category": "person", "score": pytest.approx(0.6),
                     "box": list(PERSON_BOX)}


# ---------------------------------------------------------------------------- atomicity


def test_write_outputs_leaves_nothing_half_written_when_a_response_is_bad(tmp_path):
    (tmp_path / "coco.json").write_text("previous")
    bad = make_response(width=0, height=0)  # no image size: YOLO cannot normalise
    with pytest.raises(ValueError):
        write_all(tmp_path, [("a.jpg", make_response()), ("b.jpg", bad)])
    assert (tmp_path / "coco.json").read_text() == "previous"
    assert sorted(os.listdir(tmp_path)) == ["coco.json"]  # no coco/, yolo/, labelstudio.*
