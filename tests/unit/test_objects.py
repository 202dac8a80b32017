"""formats.objects: one object's labels from several tasks, grouped by box IoU."""
from __future__ import annotations

from prelabel.formats.common import iter_labels
from prelabel.formats.objects import group_objects
from prelabel.v1 import common_pb2, prelabel_pb2


def det(box, name="person", score=0.9) -> common_pb2.Detection:
    return common_pb2.Detection(box=common_pb2.Box(x_min=box[0], y_min=box[1], x_max=box[2], y_max=box[3]),
                                category=common_pb2.Category(name=name), score=score)


def tasks_of(objects) -> list[list[tuple[str, int]]]:
    return [[(label.task.name, label.index) for label in obj.labels] for obj in objects]


def test_group_objects_puts_each_tasks_label_of_a_person_under_its_box_when_boxes_overlap():
    r = prelabel_pb2.PreLabelResponse()
    r.detections.extend([det((0, 0, 100, 200)), det((300, 0, 400, 200)), det((0, 0, 100, 200), "dog")])
    r.masks.add().detection.CopyFrom(det((305, 5, 395, 195)))  # the second person's
    r.masks.add().detection.CopyFrom(det((0, 0, 100, 200)))    # the first person's
    r.person_keypoints.add().detection.CopyFrom(det((4, 4, 96, 196)))
    r.faces.add().detection.CopyFrom(det((20, 10, 60, 50), "face"))
    objects = group_objects(iter_labels(r))
    assert tasks_of(objects) == [[("detect", 0), ("segment", 1), ("keypoints", 0)],
                                 [("detect", 1), ("segment", 0)],
                                 [("detect", 2)],  # a dog at the same place: another category
                                 [("faces", 0)]]
    assert objects[0].anchor.task.name == "detect" and objects[3].category == "face"


def test_group_objects_keeps_one_label_per_task_and_object_when_two_masks_overlap_one_box():
    r = prelabel_pb2.PreLabelResponse()
    r.detections.append(det((0, 0, 100, 100)))
    r.masks.add().detection.CopyFrom(det((0, 0, 90, 100)))   # IoU 0.9: the better one joins
    r.masks.add().detection.CopyFrom(det((0, 0, 100, 100)))  # IoU 1.0
    r.masks.add().detection.CopyFrom(det((0, 0, 40, 100)))   # IoU 0.4: too little overlap anyway
    assert tasks_of(group_objects(iter_labels(r))) == [[("detect", 0), ("segment", 1)], [("segment", 0)], [("segment", 2)]]


def test_group_objects_anchors_keypoints_on_a_mask_when_no_detect_box():
    r = prelabel_pb2.PreLabelResponse()
    r.masks.add().detection.CopyFrom(det((0, 0, 100, 200)))
    r.person_keypoints.add().detection.CopyFrom(det((0, 0, 100, 180)))
    assert tasks_of(group_objects(iter_labels(r))) == [[("segment", 0), ("keypoints", 0)]]
