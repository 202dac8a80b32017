"""A small bulk run built by hand: real image files (drawn with Pillow, so the geometry is
exact and no model is involved), PreLabelResponses whose labels match the drawings, and
the outputs `prelabel annotate` writes from them (through the journal's own JSON round
trip, as annotate does)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf import json_format
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from prelabel.core.labels import COCO_KEYPOINT_NAMES, COCO_SKELETON, FACE_LANDMARK_NAMES
from prelabel.formats import write_outputs
from prelabel.formats.common import image_root_of
from prelabel.journal import response_of
from prelabel.v1 import common_pb2, prelabel_pb2

ALL_TASKS = ["detect", "segment", "keypoints", "faces"]
PROV = common_pb2.Provenance(model_name="coco_detector", model_version="1", architecture="test",
                             weights=common_pb2.WEIGHTS_PRETRAINED)
FACE_PROV = common_pb2.Provenance(model_name="face_detector", model_version="1", weights=common_pb2.WEIGHTS_PRETRAINED)
#: (relative path under the input folder, width, height, has labels). The input folder is
#: named `images` and holds sub-folders, one named `images` too: the case that breaks
#: Ultralytics' label pairing when label trees copy image paths.
IMAGES = [("a/one.png", 640, 480, True), ("a/two.jpg", 320, 240, True), ("images/one.png", 480, 640, True),
          ("b/empty.png", 200, 160, False)]
REVIEWS = [common_pb2.REVIEW_DECISION_AUTO_ACCEPT, common_pb2.REVIEW_DECISION_NEEDS_REVIEW,
           common_pb2.REVIEW_DECISION_REJECT]


@dataclass
class Sample:
    image_id: str
    path: Path
    width: int
    height: int
    response: prelabel_pb2.PreLabelResponse


def _det(box, name, cid, score, review, prov=PROV) -> common_pb2.Detection:
    return common_pb2.Detection(box=common_pb2.Box(x_min=box[0], y_min=box[1], x_max=box[2], y_max=box[3]),
                                category=common_pb2.Category(id=cid, name=name), score=score, review=review,
                                provenance=prov)


def person_geometry(w: int, h: int):
    """A person box, its mask rectangle, 17 keypoints and a face box inside it, scaled to the image."""
    box = (0.2 * w, 0.1 * h, 0.6 * w, 0.95 * h)
    mask_box = (int(0.25 * w), int(0.15 * h), int(0.55 * w), int(0.9 * h))
    face = (0.33 * w, 0.12 * h, 0.47 * w, 0.28 * h)
    return box, mask_box, face


def response_for(image_id: str, w: int, h: int, k: int) -> prelabel_pb2.PreLabelResponse:
    r = prelabel_pb2.PreLabelResponse(image_id=image_id, image_size=common_pb2.ImageSize(width=w, height=h))
    box, mb, face_box = person_geometry(w, h)
    r.detections.append(_det(box, "person", 1, 0.55 + 0.1 * k, REVIEWS[(k + 1) % 3]))
    r.detections.append(_det((0.7 * w, 0.6 * h, 0.9 * w, 0.85 * h), "cup", 47, 0.93, REVIEWS[0]))
    m = np.zeros((h, w), np.uint8)
    m[mb[1]:mb[3], mb[0]:mb[2]] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    inst = r.masks.add()
    inst.detection.CopyFrom(_det(mb, "person", 1, 0.88, REVIEWS[0]))
    inst.mask.size.extend(rle["size"])
    inst.mask.counts = rle["counts"]
    inst.area = int(m.sum())
    inst.polygons.add(points=[mb[0], mb[1], mb[2], mb[1], mb[2], mb[3], mb[0], mb[3]])
    kp = r.person_keypoints.add()
    kp_box = (box[0] + 3, box[1] + 3, box[2] - 3, box[3] - 3)  # another model's box of the same person
    kp.detection.CopyFrom(_det(kp_box, "person", 1, 0.8, REVIEWS[1]))
    x0, y0, x1, y1 = box
    for i, name in enumerate(COCO_KEYPOINT_NAMES):
        v = 0 if i == 3 else (1 if i == 4 else 2)  # one unlabelled, one occluded point
        px = x0 + (x1 - x0) * (0.3 + 0.4 * (i % 2))
        py = y0 + (y1 - y0) * (0.05 + 0.055 * i)
        kp.keypoints.add(name=name, x=px if v else 0, y=py if v else 0, score=0.9 if v == 2 else 0.3, visibility=v)
    face = r.faces.add()
    face.detection.CopyFrom(_det(face_box, "face", 1, 0.99, REVIEWS[0], FACE_PROV))
    fx0, fy0, fx1, fy1 = face_box
    for (u, v), name in zip([(0.3, 0.35), (0.7, 0.35), (0.5, 0.55), (0.35, 0.8), (0.65, 0.8)], FACE_LANDMARK_NAMES, strict=False):
        face.keypoints.add(name=name, x=fx0 + u * (fx1 - fx0), y=fy0 + v * (fy1 - fy0), score=0.99, visibility=2)
    r.keypoint_schemas.add(name="coco_person_17", keypoint_names=COCO_KEYPOINT_NAMES,
                           skeleton=[i for edge in COCO_SKELETON for i in edge])
    r.keypoint_schemas.add(name="face_5", keypoint_names=FACE_LANDMARK_NAMES)
    r.uncertainty.score = [0.2, 0.9, 0.5][k % 3]
    r.uncertainty.needs_review_count = 1 + k
    r.uncertainty.min_margin = 0.05
    return r


def draw(path: Path, w: int, h: int, labelled: bool) -> None:
    img = Image.new("RGB", (w, h), (90, 120, 150))
    d = ImageDraw.Draw(img)
    if labelled:
        box, mb, face = person_geometry(w, h)
        d.rectangle(mb, fill=(200, 80, 60))
        d.ellipse(face, fill=(240, 200, 170))
        d.rectangle((0.7 * w, 0.6 * h, 0.9 * w, 0.85 * h), fill=(250, 250, 250))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def make_samples(folder: Path) -> list[Sample]:
    """Draw the images under `folder/images/` and build their responses (through the
    journal's proto-JSON round trip)."""
    samples = []
    for k, (rel, w, h, labelled) in enumerate(IMAGES):
        path = folder / "images" / rel
        draw(path, w, h, labelled)
        image_id = str(path)
        r = response_for(image_id, w, h, k) if labelled else prelabel_pb2.PreLabelResponse(
            image_id=image_id, image_size=common_pb2.ImageSize(width=w, height=h))
        record = {"response": json_format.MessageToDict(r, preserving_proto_field_name=True)}
        samples.append(Sample(image_id, path, w, h, response_of(record)))
    return samples


def write(samples: list[Sample], out: Path, formats=("coco", "yolo", "labelstudio"), **options) -> str:
    """Write the outputs as annotate does; returns the image root used."""
    out.mkdir(parents=True, exist_ok=True)
    root = options.pop("image_root", image_root_of(s.image_id for s in samples))
    write_outputs(out, formats, [(n, s.image_id, str(s.path), s.response) for n, s in enumerate(samples, 1)],
                  tasks=ALL_TASKS, image_root=root, **options)
    return root
