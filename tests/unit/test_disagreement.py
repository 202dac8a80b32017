import pytest

from prelabel.core.tasks import DETECT, KEYPOINTS, SEGMENT
from prelabel.v1 import common_pb2, keypoints_pb2, prelabel_pb2, segmentation_pb2
from services.router.disagreement import disagreement


def det(box, name="person"):
    return common_pb2.Detection(box=common_pb2.Box(x_min=box[0], y_min=box[1], x_max=box[2], y_max=box[3]),
                                category=common_pb2.Category(name=name), score=0.9)


def response(detect, masks=(), persons=()):
    r = prelabel_pb2.PreLabelResponse(detections=[det(*d) for d in detect])
    r.masks.extend(segmentation_pb2.InstanceMask(detection=det(*d)) for d in masks)
    r.person_keypoints.extend(keypoints_pb2.KeypointInstance(detection=det(*d)) for d in persons)
    return r


A, B = ((0, 0, 10, 10),), ((50, 50, 60, 60),)


def test_disagreement_is_zero_when_tasks_find_the_same_objects():
    r = response([A, B], masks=[A, B], persons=[A, B])
    assert disagreement(r, {DETECT, SEGMENT, KEYPOINTS}, cascade=False) == 0.0


def test_disagreement_counts_labels_without_counterpart_when_tasks_differ():
    # detect: A, B; masks: A only; keypoint persons: A and a far one.
    r = response([A, B], masks=[A], persons=[A, ((100, 100, 120, 140),)])
    # detect-vs-mask: B unmatched (1 of 3); persons: B and the far one unmatched (2 of 4).
    assert disagreement(r, {DETECT, SEGMENT, KEYPOINTS}, cascade=False) == pytest.approx(3 / 7)


def test_disagreement_counts_category_mismatch_when_boxes_coincide():
    r = response([(A[0], "cat")], masks=[(A[0], "dog")])
    assert disagreement(r, {DETECT, SEGMENT}, cascade=False) == 1.0


def test_disagreement_is_zero_when_cascade_or_single_task():
    r = response([A, B], masks=[A])
    assert disagreement(r, {DETECT, SEGMENT}, cascade=True) == 0.0
    assert disagreement(r, {DETECT}, cascade=False) == 0.0
