"""The task registry (prelabel.core.tasks) against the API it describes, and box IoU
(prelabel.core.geometry)."""
import pytest

from prelabel.core.geometry import box_iou, box_iou_xywh, proto_box_iou
from prelabel.core.tasks import BY_ENUM, DETECT, FACES, KEYPOINTS, TASKS, LabelKind, by_enum, by_name
from prelabel.v1 import common_pb2, keypoints_pb2, prelabel_pb2, segmentation_pb2
from tests.geometry import iou as oracle_iou

pytestmark = pytest.mark.timeout(30)

MESSAGE_OF_KIND = {LabelKind.BOX: common_pb2.Detection, LabelKind.MASK: segmentation_pb2.InstanceMask,
                   LabelKind.KEYPOINTS: keypoints_pb2.KeypointInstance}


def test_registry_declares_every_task_of_the_api_once():
    declared = {v for v in prelabel_pb2.Task.values() if v != prelabel_pb2.TASK_UNSPECIFIED}
    assert [t.enum for t in TASKS] == sorted(declared)
    for attribute in ("name", "response_field", "coco_file", "yolo_kind"):
        values = [getattr(t, attribute) for t in TASKS]
        assert len(set(values)) == len(values), attribute


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_response_field_holds_labels_of_the_tasks_kind(task):
    field = prelabel_pb2.PreLabelResponse.DESCRIPTOR.fields_by_name[task.response_field]
    assert field.message_type is MESSAGE_OF_KIND[task.kind].DESCRIPTOR
    assert field.label == field.LABEL_REPEATED


@pytest.mark.parametrize("task", [t for t in TASKS if t.keypoints is not None], ids=lambda t: t.name)
def test_keypoint_set_is_consistent_when_task_yields_keypoints(task):
    kps = task.keypoints
    assert len(kps.oks_sigmas) == len(kps.names) and all(s > 0 for s in kps.oks_sigmas)
    assert all(1 <= i <= len(kps.names) for edge in kps.skeleton for i in edge)
    assert task.category == kps.category


def test_lookups_find_each_task_and_refuse_unknown_ones():
    assert by_name("faces") is FACES and by_enum(prelabel_pb2.TASK_KEYPOINTS) is KEYPOINTS
    assert BY_ENUM[prelabel_pb2.TASK_DETECT] is DETECT
    with pytest.raises(KeyError, match="detect, segment, keypoints, faces"):
        by_name("pose")
    with pytest.raises(KeyError):
        by_enum(prelabel_pb2.TASK_UNSPECIFIED)


def test_detection_of_a_label_is_the_label_itself_only_for_box_tasks():
    box = common_pb2.Detection(score=0.7)
    face = keypoints_pb2.KeypointInstance(detection=common_pb2.Detection(score=0.6))
    assert DETECT.detection(box) is box
    assert FACES.detection(face).score == pytest.approx(0.6)
    response = prelabel_pb2.PreLabelResponse(detections=[box], faces=[face])
    assert [len(t.labels(response)) for t in TASKS] == [1, 0, 0, 1]


@pytest.mark.parametrize("a,b", [
    ((0, 0, 10, 10), (5, 5, 15, 15)),      # partial overlap: 25 / 175
    ((0, 0, 10, 10), (0, 0, 10, 10)),      # same box
    ((0, 0, 10, 10), (20, 20, 30, 30)),    # apart
    ((0, 0, 0, 0), (0, 0, 0, 0)),          # both empty: 0, not a division by zero
    ((1.5, 2.5, 7.25, 9.0), (3.0, 1.0, 8.5, 6.75)),
])
def test_box_iou_agrees_with_the_oracle_in_every_box_form(a, b):
    expected = oracle_iou(a, b)
    assert box_iou(a, b) == pytest.approx(expected)
    assert box_iou_xywh([a[0], a[1], a[2] - a[0], a[3] - a[1]],
                        [b[0], b[1], b[2] - b[0], b[3] - b[1]]) == pytest.approx(expected)
    pa, pb = (common_pb2.Box(x_min=v[0], y_min=v[1], x_max=v[2], y_max=v[3]) for v in (a, b))
    assert proto_box_iou(pa, pb) == pytest.approx(expected)
