"""`prelabel evaluate` / `calibrate` inputs and counts, from an annotate-style output
folder built by hand (real journal writer) and corrected labels edited the way a
reviewer would: a box deleted, one moved, one relabelled, one added; in each format
the tools export (COCO, CVAT COCO 1.0 and COCO Keypoints 1.0, Label Studio)."""
from __future__ import annotations

import json
import zipfile

import pytest

from prelabel import cli
from prelabel.core.labels import COCO_KEYPOINT_NAMES
from prelabel.core.policy_file import load_policy_file
from prelabel.journal import Journal
from prelabel.quality.drafts import load_drafts
from prelabel.quality.evaluate import Options, evaluate, served_accept_at_span
from prelabel.quality.match import match, pair_images
from prelabel.quality.truth import load_truth
from prelabel.v1 import common_pb2, keypoints_pb2, prelabel_pb2

pytestmark = pytest.mark.timeout(120)

W, H = 640, 480
AUTO, REVIEW = common_pb2.REVIEW_DECISION_AUTO_ACCEPT, common_pb2.REVIEW_DECISION_NEEDS_REVIEW
PROV = common_pb2.Provenance(model_name="coco_detector", model_version="1", weights=common_pb2.WEIGHTS_PRETRAINED)
STREET, PARK = "photos/street.jpg", "photos/park.jpg"

# (name, box x0 y0 x1 y1, score, review) per image, and what the reviewer did.
DRAFTS = {
    STREET: [
        ("person", (100, 100, 200, 300), 0.95, AUTO),    # kept
        ("person", (300, 100, 380, 300), 0.92, AUTO),    # moved to 340..420 (IoU 0.33)
        ("car", (400, 300, 600, 420), 0.90, AUTO),       # relabelled truck
        ("dog", (10, 10, 60, 60), 0.88, AUTO),           # deleted
        ("person", (0, 300, 100, 400), 0.90, AUTO),      # nudged to 20..120: IoU 0.67, right but not strictly
        ("car", (50, 350, 150, 430), 0.60, REVIEW),      # kept
        ("person", (500, 50, 540, 150), 0.50, REVIEW),   # deleted
    ],
    PARK: [
        ("person", (10, 10, 50, 100), 0.97, AUTO),       # kept
        ("dog", (100, 100, 150, 150), 0.90, AUTO),       # kept
    ],
}
TRUTH = {  # (name, box)
    STREET: [("person", (100, 100, 200, 300)), ("person", (340, 100, 420, 300)), ("truck", (400, 300, 600, 420)),
             ("person", (20, 300, 120, 400)), ("car", (50, 350, 150, 430)),
             ("bicycle", (200, 350, 300, 450))],  # added: the models missed it
    PARK: [("person", (10, 10, 50, 100)), ("dog", (100, 100, 150, 150))],
}
COCO_IDS = {"person": 1, "bicycle": 2, "car": 3, "truck": 8, "dog": 18}


def keypoints_at(box, offset=0.0):
    x0, y0, x1, y1 = box
    return [((x0 + x1) / 2 + offset + i, y0 + (y1 - y0) * i / 17 + offset) for i in range(17)]


# (box, offset of the drafted points, score): the park person's points are 60 px off.
KP_DRAFTS = {STREET: (DRAFTS[STREET][0][1], 0.0, 0.9), PARK: (DRAFTS[PARK][0][1], 60.0, 0.8)}


def detection(name, box, score, review):
    return common_pb2.Detection(box=common_pb2.Box(x_min=box[0], y_min=box[1], x_max=box[2], y_max=box[3]),
                                category=common_pb2.Category(id=COCO_IDS[name], name=name), score=score,
                                review=review, provenance=PROV)


def response(image_id, with_keypoints=False):
    r = prelabel_pb2.PreLabelResponse(image_id=image_id, image_size=common_pb2.ImageSize(width=W, height=H))
    r.detections.extend(detection(*d) for d in DRAFTS[image_id])
    if with_keypoints:
        box, offset, score = KP_DRAFTS[image_id]
        r.person_keypoints.append(keypoints_pb2.KeypointInstance(
            detection=detection("person", box, score, AUTO),
            keypoints=[common_pb2.Keypoint(name=n, x=x, y=y, score=0.9, visibility=2)
                       for n, (x, y) in zip(COCO_KEYPOINT_NAMES, keypoints_at(box, offset), strict=False)]))
    r.task_results.append(prelabel_pb2.TaskResult(task=prelabel_pb2.TASK_DETECT, code="OK", provenance=PROV))
    return r


@pytest.fixture
def drafts_dir(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with Journal(out / "journal.jsonl") as journal:
        for image_id in DRAFTS:
            journal.append_ok(image_id, image_id, response(image_id, with_keypoints=True))
    return out


def xywh(box):
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def coco_truth(file_name=lambda k: k, cat_ids=COCO_IDS, keypoints=False, box_shift=0):
    """A COCO document of TRUTH; CVAT-like when given its own ids and relative names."""
    doc = {"images": [], "annotations": [], "categories": []}
    for name, cid in cat_ids.items():
        cat = {"id": cid, "name": name, "supercategory": ""}
        if keypoints and name == "person":
            cat["keypoints"], cat["skeleton"] = list(COCO_KEYPOINT_NAMES), [[16, 14]]
        doc["categories"].append(cat)
    for number, (key, objects) in enumerate(TRUTH.items(), 1):
        doc["images"].append({"id": number, "file_name": file_name(key), "width": W, "height": H})
        for name, box in objects:
            if keypoints and name != "person":
                continue
            bbox = [v + box_shift for v in xywh(box)[:2]] + xywh(box)[2:]
            ann = {"id": len(doc["annotations"]) + 1, "image_id": number, "category_id": cat_ids[name],
                   "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0, "segmentation": [],
                   "attributes": {"occluded": False}}
            if keypoints:
                ann["keypoints"] = [0] * 51
                if box == KP_DRAFTS[key][0]:  # the person whose keypoints were drafted
                    ann["keypoints"] = [c for x, y in keypoints_at(box) for c in (x, y, 2)]
                ann["num_keypoints"] = sum(v > 0 for v in ann["keypoints"][2::3])
            doc["annotations"].append(ann)
    return doc


def label_studio_truth():
    tasks = []
    for n, (key, objects) in enumerate(TRUTH.items()):
        result = [{"id": f"r{n}_{i}", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                   "original_width": W, "original_height": H,
                   "value": {"x": 100 * b[0] / W, "y": 100 * b[1] / H, "width": 100 * (b[2] - b[0]) / W,
                             "height": 100 * (b[3] - b[1]) / H, "rotation": 0, "rectanglelabels": [name]}}
                  for i, (name, b) in enumerate(objects)]
        tasks.append({"id": n + 1, "data": {"image": f"/data/local-files/?d={key}"},
                      "annotations": [{"id": 1, "was_cancelled": True, "result": []},
                                      {"id": 2, "was_cancelled": False, "result": result}]})
    return tasks


def write_json(path, doc):
    path.write_text(json.dumps(doc))
    return str(path)


def truth_files(fmt, tmp_path):
    if fmt == "coco":
        return [write_json(tmp_path / "corrected.json", coco_truth())]
    if fmt == "cvat_coco":  # CVAT's own category ids, frame names relative to the task, in the export zip
        ids = {name: i + 1 for i, name in enumerate(sorted(COCO_IDS))}
        doc = coco_truth(file_name=lambda k: k.split("/")[-1], cat_ids=ids)
        zpath = tmp_path / "cvat_export.zip"
        with zipfile.ZipFile(zpath, "w") as z:
            z.writestr("annotations/instances_default.json", json.dumps(doc))
        return [str(zpath)]
    tasks = label_studio_truth()
    if fmt == "labelstudio_pre_1_0":  # the key before Label Studio 1.0
        tasks = [{**{k: v for k, v in t.items() if k != "annotations"}, "completions": t["annotations"]}
                 for t in tasks]
    return [write_json(tmp_path / "ls_export.json", tasks)]


@pytest.mark.parametrize("fmt", ["coco", "cvat_coco", "labelstudio", "labelstudio_pre_1_0"])
def test_evaluate_counts_reviewer_edits_when_truth_is_in_each_format(fmt, drafts_dir, tmp_path):
    drafts, truth = load_drafts([str(drafts_dir)]), load_truth(truth_files(fmt, tmp_path))
    m = match(drafts, truth)
    assert sorted(d for d, _ in m.pairs) == [PARK, STREET]
    report = evaluate(drafts, truth, m, Options())
    det = report["tasks"]["detect"]["all"]
    assert (det["drafts"], det["truth_objects"]) == (9, 8)
    assert (det["auto_accepted"], det["auto_accepted_right"]) == (7, 4)
    assert det["auto_accept_error_rate"] == pytest.approx(3 / 7, abs=1e-4)
    assert det["auto_accept_error_rate_strict"] == pytest.approx(4 / 7, abs=1e-4)  # the nudged person
    assert det["auto_accept_errors"] == {"deleted": 1, "moved": 1, "relabelled": 1}
    assert (det["needs_review"], det["needs_review_right"]) == (2, 1)
    assert det["share_reviewed"] == pytest.approx(2 / 9, abs=1e-4)
    assert det["missed"] == 3  # the moved person, the truck, the added bicycle
    classes = report["tasks"]["detect"]["classes"]
    assert classes["bicycle"]["missed"] == 1 and classes["bicycle"]["drafts"] == 0
    assert classes["dog"]["AP50"] == pytest.approx(1.0)  # the kept dog outranks the deleted one
    assert classes["truck"]["AP"] == 0.0
    # 0.5 * 1 reviewed right + 1 reviewed wrong + 3 auto wrong + 2 drawn: of the 3 missed, the
    # truck was fixed by relabelling the car draft (already counted among the wrong drafts).
    e = report["effort"]
    assert (e["missed"], e["fixed_by_relabelling"], e["drawn"]) == (3, 1, 2)
    assert e["actions"] == pytest.approx(6.5) and e["effort_saved"] == pytest.approx(1 - 6.5 / 8, abs=1e-4)
    # The served accept_at (0.85 here) lies between the highest reviewed and the lowest accepted score.
    person = classes["person"]
    assert (person["served_accept_at_above"], person["served_accept_at_max"]) == (0.5, 0.9)
    span = served_accept_at_span(person["served_accept_at_above"], person["served_accept_at_max"])
    assert span is not None and (span.low, span.high) == (0.5, 0.9) and "(0.50, 0.90]" in span.legend


def test_evaluate_judges_keypoints_by_oks_when_truth_is_cvat_keypoints_export(drafts_dir, tmp_path):
    ids = {name: i + 1 for i, name in enumerate(sorted(COCO_IDS))}
    boxes = write_json(tmp_path / "instances_default.json", coco_truth(cat_ids=ids))
    kps = write_json(tmp_path / "person_keypoints_default.json", coco_truth(cat_ids=ids, keypoints=True))
    drafts, truth = load_drafts([str(drafts_dir)]), load_truth([boxes, kps])
    # The keypoint file's persons merge into the box file's, not duplicate them.
    assert sum(a.category == "person" for a in truth.images[STREET].anns) == 3
    report = evaluate(drafts, truth, match(drafts, truth), Options())
    kp = report["tasks"]["keypoints"]["all"]
    assert (kp["drafts"], kp["auto_accepted_right"], kp["truth_objects"], kp["missed"]) == (2, 1, 2, 1)
    assert kp["auto_accept_errors"] == {"deleted": 1}  # OKS ~0: nothing like it kept
    # The right one ranks first: precision 1 up to recall 0.5, 51 of COCO's 101 recall points.
    assert report["tasks"]["keypoints"]["coco"]["person"]["AP50"] == pytest.approx(51 / 101, abs=1e-3)
    assert report["tasks"]["detect"]["all"]["truth_objects"] == 8


def test_evaluate_takes_each_file_task_from_its_name_when_truth_uses_annotate_layout(drafts_dir, tmp_path):
    boxes = write_json(tmp_path / "instances_detect.json", coco_truth())
    # The keypoint model's boxes differ from the detector's: the file, not the box, says what it is.
    kps = write_json(tmp_path / "person_keypoints_keypoints.json", coco_truth(keypoints=True, box_shift=8))
    drafts, truth = load_drafts([str(drafts_dir)]), load_truth([boxes, kps])
    report = evaluate(drafts, truth, match(drafts, truth), Options())
    assert report["tasks"]["detect"]["all"]["truth_objects"] == 8  # the keypoint file's persons are not boxes
    assert report["tasks"]["keypoints"]["all"]["truth_objects"] == 2


def test_pair_images_matches_path_suffix_and_unique_file_name_when_keys_differ():
    pairs, no_truth, no_drafts = pair_images(
        ["/data/photos/a.jpg", "photos/b.jpg", "x/c.jpg", "y/c.jpg", "d.jpg"],
        ["photos/a.jpg", "b.jpg", "c.jpg", "e.jpg"])
    assert sorted(pairs) == [("/data/photos/a.jpg", "photos/a.jpg"), ("photos/b.jpg", "b.jpg")]
    assert no_drafts == ["c.jpg", "e.jpg"]  # c.jpg is ambiguous
    assert sorted(no_truth) == ["d.jpg", "x/c.jpg", "y/c.jpg"]


def test_cli_evaluate_and_calibrate_write_report_and_loadable_policy_when_run(drafts_dir, tmp_path):
    truth = truth_files("coco", tmp_path)
    assert cli.main(["evaluate", "--drafts", str(drafts_dir), "--truth", *truth, "--out", str(tmp_path / "rep")]) == 0
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["tasks"]["detect"]["all"]["missed"] == 3
    assert "Human effort saved" in (tmp_path / "rep" / "report.md").read_text()
    assert (tmp_path / "rep" / "curves" / "detect_person.png").stat().st_size > 1000
    policy = tmp_path / "policy.yaml"
    assert cli.main(["calibrate", "--drafts", str(drafts_dir), "--truth", *truth, "--out", str(policy)]) == 0
    loaded = load_policy_file(policy)
    assert loaded.policy.by_category == {}  # nine drafts: every class too small, all listed
    assert set(loaded.provenance["fallback"]) == {"car", "dog", "person"}
    assert loaded.provenance["policy_id"] == loaded.id
    assert "coco_detector@1" in loaded.provenance["models"]


def test_cli_evaluate_exits_2_when_no_image_pairs(drafts_dir, tmp_path):
    doc = coco_truth(file_name=lambda k: "other/" + k.split("/")[-1].replace(".jpg", ".png"))
    truth = write_json(tmp_path / "t.json", doc)
    assert cli.main(["evaluate", "--drafts", str(drafts_dir), "--truth", truth, "--out", str(tmp_path / "r")]) == 2


# ----------------------------------------------------------------- masks and faces

MASKS = [("person", (100, 100, 200, 300), 0.9), ("car", (400, 300, 600, 420), 0.8), ("dog", (10, 10, 60, 60), 0.7)]
# car moved: mask IoU 0.42; dog: the reviewer kept only a strip of the mask (IoU 0.2), the box
# stated in COCO unchanged -- judged by the mask, not the box.
MASK_TRUTH = [("person", (100, 100, 200, 300)), ("car", (500, 300, 640, 420)), ("dog", (10, 10, 60, 20))]
COCO_BOX = {"dog": (10, 10, 60, 60)}
FACE_BOX = (120, 110, 160, 150)
LANDMARKS = [(130, 120), (150, 120), (140, 130), (132, 142), (148, 142)]


def rect_rle(box):
    import numpy as np
    from pycocotools import mask as mask_utils

    m = np.zeros((H, W), np.uint8, order="F")
    m[box[1]:box[3], box[0]:box[2]] = 1
    return mask_utils.encode(np.asfortranarray(m))


def masks_and_faces_drafts(tmp_path):
    from prelabel.v1 import segmentation_pb2

    r = prelabel_pb2.PreLabelResponse(image_id=STREET, image_size=common_pb2.ImageSize(width=W, height=H))
    for name, box, score in MASKS:
        rle = rect_rle(box)
        r.masks.append(segmentation_pb2.InstanceMask(
            detection=detection(name, box, score, AUTO),
            mask=common_pb2.RleMask(size=rle["size"], counts=rle["counts"]),
            area=int((box[2] - box[0]) * (box[3] - box[1]))))
    face = detection("person", FACE_BOX, 0.99, AUTO)
    face.category.name, face.category.id = "face", 91
    r.faces.append(keypoints_pb2.KeypointInstance(detection=face, keypoints=[
        common_pb2.Keypoint(name=f"p{i}", x=x, y=y, score=0.9, visibility=2) for i, (x, y) in enumerate(LANDMARKS)]))
    out = tmp_path / "out_masks"
    out.mkdir()
    with Journal(out / "journal.jsonl") as journal:
        journal.append_ok(STREET, STREET, r)
    return out


def polygon(box):
    x0, y0, x1, y1 = box
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def masks_and_faces_truth(fmt, tmp_path):
    face_kps = [c for x, y in LANDMARKS for c in (x, y, 2)]
    if fmt == "coco":
        cats = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"},
                {"id": 91, "name": "face", "keypoints": ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]}]
        anns = [{"id": i + 1, "image_id": 1, "category_id": {"person": 1, "car": 3, "dog": 18}[name],
                 "bbox": xywh(COCO_BOX.get(name, box)),
                 "segmentation": [polygon(box)], "area": 1, "iscrowd": 0}
                for i, (name, box) in enumerate(MASK_TRUTH)]
        anns.append({"id": 9, "image_id": 1, "category_id": 91, "bbox": xywh(FACE_BOX), "area": 1600, "iscrowd": 0,
                     "keypoints": face_kps, "num_keypoints": 5})
        image = {"id": 1, "file_name": STREET, "width": W, "height": H}
        return [write_json(tmp_path / "masks.json", {"images": [image], "annotations": anns, "categories": cats})]
    pct = lambda x, y: [100 * x / W, 100 * y / H]  # noqa: E731
    result = [{"id": f"m{i}", "type": "polygonlabels", "original_width": W, "original_height": H,
               "value": {"points": [pct(*polygon(box)[j:j + 2]) for j in range(0, 8, 2)], "polygonlabels": [name]}}
              for i, (name, box) in enumerate(MASK_TRUTH)]
    fx, fy = pct(FACE_BOX[0], FACE_BOX[1])
    fw, fh = pct(FACE_BOX[2] - FACE_BOX[0], FACE_BOX[3] - FACE_BOX[1])
    result.append({"id": "face", "type": "rectanglelabels", "original_width": W, "original_height": H,
                   "value": {"x": fx, "y": fy, "width": fw, "height": fh, "rectanglelabels": ["face"]}})
    for name, (x, y) in zip(["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"], LANDMARKS, strict=False):
        result.append({"id": f"k{name}", "type": "keypointlabels", "parentID": "face", "original_width": W,
                       "original_height": H, "value": {"x": pct(x, y)[0], "y": pct(x, y)[1], "width": 0.5,
                                                       "keypointlabels": [name]}})
    task = {"id": 1, "data": {"image_id": STREET}, "annotations": [{"result": result}]}
    return [write_json(tmp_path / "ls.json", [task])]


@pytest.mark.parametrize("fmt", ["coco", "labelstudio"])
def test_evaluate_judges_masks_by_mask_iou_and_faces_by_landmarks_when_truth_has_them(fmt, tmp_path):
    drafts = load_drafts([str(masks_and_faces_drafts(tmp_path))])
    truth = load_truth(masks_and_faces_truth(fmt, tmp_path))
    report = evaluate(drafts, truth, match(drafts, truth), Options())
    seg = report["tasks"]["segment"]
    assert (seg["all"]["auto_accepted"], seg["all"]["auto_accepted_right"]) == (3, 1)
    assert seg["all"]["auto_accept_errors"] == {"moved": 2}  # the car's and the dog's masks
    assert seg["classes"]["person"]["AP"] == pytest.approx(1.0)
    faces = report["tasks"]["faces"]
    assert faces["all"]["auto_accepted_right"] == 1 and faces["coco"]["face"]["AP"] == pytest.approx(1.0)
    assert faces["coco_landmarks"]["face"]["AP"] == pytest.approx(1.0)


# ----------------------------------------------------------------- the suite's own outputs, corrected


def test_evaluate_counts_edits_when_truth_is_the_suites_own_outputs_corrected(drafts_dir, tmp_path):
    from prelabel.formats import write_outputs
    from prelabel.formats.coco import file_path as coco_file

    out = tmp_path / "formats"
    items = [(n, image_id, image_id, response(image_id)) for n, image_id in enumerate(DRAFTS, 1)]
    write_outputs(out, ["coco", "labelstudio"], items, tasks=["detect"], image_root="photos")

    # COCO: the reviewer deletes the street's dog and adds a bicycle.
    with open(coco_file(out, "detect")) as f:
        coco = json.load(f)
    street = next(i["id"] for i in coco["images"] if i["file_name"].endswith("street.jpg"))
    dog = next(c["id"] for c in coco["categories"] if c["name"] == "dog")
    coco["annotations"] = [a for a in coco["annotations"] if not (a["image_id"] == street and a["category_id"] == dog)]
    bicycle = next(c["id"] for c in coco["categories"] if c["name"] == "bicycle")
    coco["annotations"].append({"id": 999, "image_id": street, "category_id": bicycle, "bbox": [200, 350, 100, 100],
                                "area": 10000, "iscrowd": 0, "segmentation": []})
    truth_coco = write_json(tmp_path / "instances_detect.json", coco)

    # Label Studio: the reviewer accepts every prediction but the street's dog.
    tasks = json.loads((out / "labelstudio.json").read_text())
    for t in tasks:
        kept = [r for r in t["predictions"][0]["result"]
                if not (t["data"]["image_id"] == STREET and "dog" in r["value"].get("rectanglelabels", []))]
        t["annotations"] = [{"result": kept}]
    truth_ls = write_json(tmp_path / "ls_export.json", tasks)

    for drafts_path, truth_path, missed in [(str(drafts_dir), truth_coco, 1),
                                            (coco_file(out, "detect"), truth_coco, 1),  # drafts from the COCO file
                                            (str(drafts_dir), truth_ls, 0)]:
        drafts, truth = load_drafts([drafts_path]), load_truth([truth_path])
        det = evaluate(drafts, truth, match(drafts, truth), Options())["tasks"]["detect"]["all"]
        assert (det["drafts"], det["auto_accepted"], det["auto_accepted_right"]) == (9, 7, 6), drafts_path
        assert det["auto_accept_errors"] == {"deleted": 1}
        assert (det["needs_review_right"], det["missed"]) == (2, missed)


def test_truth_for_task_keeps_boxes_for_detect_and_masks_for_segment_when_an_image_has_both():
    from prelabel.quality.labels import Ann, ImageLabels
    from prelabel.quality.match import truth_for_task

    box = Ann("person", [0, 0, 10, 10])
    mask = Ann("person", [0, 0, 10, 10], segmentation=[[0, 0, 10, 0, 10, 10]])
    assert truth_for_task(ImageLabels("a", anns=[box, mask]), "detect") == [box]
    assert truth_for_task(ImageLabels("a", anns=[box, mask]), "segment") == [mask]
    assert truth_for_task(ImageLabels("a", anns=[mask]), "detect") == [mask]  # masks only: their boxes count
