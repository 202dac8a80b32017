import grpc
import pytest
from google.rpc import code_pb2

from prelabel.core.errors import DeadlineExceeded, InvalidArgument
from prelabel.core.review import Band, ReviewPolicy
from prelabel.core.tasks import DETECT, FACES, KEYPOINTS, SEGMENT, TASKS
from prelabel.v1 import common_pb2, detection_pb2, keypoints_pb2, prelabel_pb2
from services.router.fanout import merge
from services.router.plan import plan
from services.router.routes import ROUTES, Outcome
from services.router.servicer import failed_response


def det(score, name="person"):
    return common_pb2.Detection(box=common_pb2.Box(x_min=1, y_min=2, x_max=3, y_max=4), score=score,
                                category=common_pb2.Category(id=1, name=name))


def make_plan(**kw):
    request = prelabel_pb2.PreLabelRequest(image=common_pb2.Image(data=b"x", image_id="img"), **kw)
    return plan(request, served_policy=ReviewPolicy(), timeout_s=5, priority=common_pb2.PRIORITY_INTERACTIVE,
                min_time_left_s=0.01)


class FakeRpcError(grpc.aio.AioRpcError):
    """A downstream failure as grpc.aio raises it (built directly: the unit under test
    only reads code() and details())."""

    def __init__(self, code, details):
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def test_plan_defaults_to_all_tasks_when_none_named():
    assert make_plan().tasks == list(TASKS)


def test_every_task_of_the_registry_has_a_route():
    assert {task: route.task for task, route in ROUTES.items()} == {t.enum: t for t in TASKS}


@pytest.mark.parametrize("kw,field", [
    ({"tasks": [99]}, "tasks[0]"),
    ({"score_threshold": -1}, "score_threshold"),
    ({"max_labels": 10**6}, "max_labels"),
])
def test_plan_rejects_request_naming_field_when_invalid(kw, field):
    with pytest.raises(InvalidArgument) as err:
        make_plan(**kw)
    assert err.value.field == field


def test_plan_time_left_raises_when_deadline_spent():
    p = plan(prelabel_pb2.PreLabelRequest(image=common_pb2.Image(data=b"x")), served_policy=ReviewPolicy(),
             timeout_s=0.0, priority=1, min_time_left_s=0.01)
    with pytest.raises(DeadlineExceeded):
        p.time_left()


def test_merge_keeps_other_tasks_labels_and_reports_status_when_one_task_failed():
    p = make_plan(tasks=[prelabel_pb2.TASK_DETECT, prelabel_pb2.TASK_SEGMENT, prelabel_pb2.TASK_FACES])
    provenance = common_pb2.Provenance(model_name="coco_detector", weights=common_pb2.WEIGHTS_RANDOM)
    detect = detection_pb2.DetectResponse(image_size=common_pb2.ImageSize(width=10, height=20),
                                          detections=[det(0.95), det(0.5, "dog")], provenance=provenance)
    faces = keypoints_pb2.KeypointResponse(
        instances=[keypoints_pb2.KeypointInstance(detection=det(0.99, "face"))],
        schema=common_pb2.KeypointSchema(name="face_5"))
    out = merge(p, [
        Outcome(ROUTES[DETECT.enum], detect, None, 0.010),
        Outcome(ROUTES[SEGMENT.enum], None, FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down"), 0.002),
        Outcome(ROUTES[FACES.enum], faces, None, 0.020),
    ])
    assert [t.status for t in out.task_results] == [code_pb2.OK, code_pb2.UNAVAILABLE, code_pb2.OK]
    assert [t.code for t in out.task_results] == ["OK", "UNAVAILABLE", "OK"]
    assert out.task_results[1].message == "down"
    assert out.task_results[0].provenance == provenance
    assert not out.task_results[1].HasField("provenance")
    assert len(out.detections) == 2 and len(out.faces) == 1 and not out.masks
    assert (out.image_size.width, out.image_size.height) == (10, 20)
    assert out.uncertainty.score == pytest.approx(1.0)  # the 0.5 dog
    assert out.uncertainty.needs_review_count == 1
    assert [s.name for s in out.keypoint_schemas] == ["face_5"]
    assert out.uncertainty.review_policy_id == ReviewPolicy().id


def test_plan_resolves_the_policy_once_and_forwards_every_band_when_request_sets_one():
    served = ReviewPolicy(by_category={"dog": Band(accept_at=0.6, reject_below=0.1)})
    p = make_plan(review_policy=common_pb2.ReviewPolicy(default_band=common_pb2.ReviewBand(accept_at=0.7)))
    assert p.policy.default.accept_at == pytest.approx(0.7) and p.policy.by_category == {}
    assert p.forwarded_policy.default_band.HasField("reject_below")  # spelled out for the services
    q = plan(prelabel_pb2.PreLabelRequest(image=common_pb2.Image(data=b"x")), served_policy=served,
             timeout_s=5, priority=1, min_time_left_s=0.01)
    assert q.policy == served and "dog" in q.forwarded_policy.by_category


def test_merge_scores_labels_under_the_plans_policy():
    p = make_plan(tasks=[prelabel_pb2.TASK_DETECT],
                  review_policy=common_pb2.ReviewPolicy(default_band=common_pb2.ReviewBand(accept_at=0.4)))
    detect = detection_pb2.DetectResponse(detections=[det(0.5)])
    out = merge(p, [Outcome(ROUTES[DETECT.enum], detect, None, 0.01)])
    assert out.uncertainty.needs_review_count == 0  # 0.5 >= accept_at 0.4: accepted
    assert out.uncertainty.review_policy_id == p.policy.id != ReviewPolicy().id


def many_people(n):
    return [common_pb2.Detection(box=common_pb2.Box(x_min=i, y_min=i, x_max=i + 10, y_max=i + 20), score=0.9,
                                 category=common_pb2.Category(id=1, name="person")) for i in range(n)]


@pytest.mark.parametrize("task", [SEGMENT, KEYPOINTS])
def test_cascade_route_forwards_every_box_when_detector_finds_more_than_32(task):
    p = make_plan(tasks=[task.enum], cascade=True, max_labels=100)
    route = ROUTES[task.enum]
    boxes = many_people(40) + [det(0.9, "dog")]
    request = route.request(p, route.prompts(boxes))
    prompts = request.prompts if task is SEGMENT else request.prompt_boxes
    # Segmentation takes every box, person keypoints the persons.
    assert len(prompts) == (41 if task is SEGMENT else 40)


def test_merge_reports_unavailable_naming_the_code_when_a_service_failed_with_one_its_caller_cannot_act_on():
    p = make_plan(tasks=[prelabel_pb2.TASK_DETECT, prelabel_pb2.TASK_SEGMENT])
    out = merge(p, [
        Outcome(ROUTES[DETECT.enum], None, FakeRpcError(grpc.StatusCode.INTERNAL, "boom"), 0.001),
        Outcome(ROUTES[SEGMENT.enum], None, DeadlineExceeded("only 3 ms left"), 0.001),
    ])
    assert [(t.status, t.code, t.message) for t in out.task_results] == [
        (code_pb2.UNAVAILABLE, "UNAVAILABLE", "INTERNAL: boom"),
        (code_pb2.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", "only 3 ms left")]


def test_failed_response_gives_every_requested_task_the_items_status():
    request = prelabel_pb2.PreLabelRequest(image=common_pb2.Image(image_id="img"),
                                           tasks=[prelabel_pb2.TASK_DETECT, prelabel_pb2.TASK_FACES])
    out = failed_response(request, InvalidArgument("image.image_id", "required"))
    assert out.image_id == "img"
    assert [(t.task, t.status, t.code, t.message) for t in out.task_results] == [
        (task, code_pb2.INVALID_ARGUMENT, "INVALID_ARGUMENT", "image.image_id: required")
        for task in (prelabel_pb2.TASK_DETECT, prelabel_pb2.TASK_FACES)]
