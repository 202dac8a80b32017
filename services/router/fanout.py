"""PreLabel: validate once, call the services concurrently under the caller's
deadline, merge their answers into one result per image."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc

from prelabel.core.errors import DeadlineExceeded, InvalidArgument, PrelabelError, Unavailable
from prelabel.core.review import image_uncertainty, policy_from_proto
from prelabel.core.status import OK, status_of
from prelabel.v1 import common_pb2, detection_pb2, keypoints_pb2, prelabel_pb2, segmentation_pb2
from services.common import requests as fields
from services.common.metrics import Metrics
from services.router.disagreement import disagreement
from services.router.downstream import Downstream

Task = prelabel_pb2.Task
ALL_TASKS = (prelabel_pb2.TASK_DETECT, prelabel_pb2.TASK_SEGMENT, prelabel_pb2.TASK_KEYPOINTS,
             prelabel_pb2.TASK_FACES)
PERSON = "person"
#: The merge margin never takes more than this share of a short deadline.
MAX_MERGE_SHARE = 0.2


@dataclass
class Plan:
    request: prelabel_pb2.PreLabelRequest
    tasks: list[Task]
    priority: common_pb2.Priority
    deadline: float  # time.monotonic() by which the reply must be written
    min_time_left_s: float
    merge_margin_s: float = 0.0  # kept back from every downstream call for the merge

    def time_left(self) -> float:
        """What the next hop may use: what remains of the caller's deadline less the
        merge margin, so a hung service ends DEADLINE_EXCEEDED while there is still time
        to reply with the tasks that finished."""
        left = self.deadline - self.merge_margin_s - time.monotonic()
        if left < self.min_time_left_s:
            raise DeadlineExceeded(f"only {max(left, 0) * 1000:.0f} ms left of the deadline "
                                   f"(less {self.merge_margin_s * 1000:.0f} ms kept for the merge)")
        return left


def plan(request: prelabel_pb2.PreLabelRequest, *, timeout_s: float, priority: common_pb2.Priority,
         min_time_left_s: float, merge_margin_s: float = 0.0, max_image_bytes: int | None = None) -> Plan:
    """Validate what the router itself owns, and the image's size in bytes before it
    is copied into any downstream request; the services decode and validate the rest
    (image content, per-task parameters), and their field violations come back unchanged."""
    tasks = list(dict.fromkeys(request.tasks)) or list(ALL_TASKS)
    for i, task in enumerate(tasks):
        if task not in ALL_TASKS:
            raise InvalidArgument(f"tasks[{i}]", f"unknown task {task}")
    if not request.image.data:
        raise InvalidArgument("image.data", "image is empty")
    if max_image_bytes is not None and len(request.image.data) > max_image_bytes:
        raise InvalidArgument("image.data", f"image is {len(request.image.data)} bytes; "
                                            f"the limit is {max_image_bytes}")
    fields.image_id(request.image.image_id)
    fields.probability(request, "score_threshold", fields.DEFAULT_SCORE_THRESHOLD)
    fields.max_count(request.max_labels, "max_labels")
    policy_from_proto(request.review_policy)
    return Plan(request, tasks, priority, time.monotonic() + timeout_s, min_time_left_s, merge_margin_s)


def _common(request: prelabel_pb2.PreLabelRequest) -> dict:
    kw = dict(image=request.image, review_policy=request.review_policy)
    if request.HasField("score_threshold"):
        kw["score_threshold"] = request.score_threshold
    return kw


async def _require_serving(p: Plan, down: Downstream, name: str) -> None:
    """Cascade with nothing to prompt: the empty answer is only true if the service
    could have answered, so a dead one is reported UNAVAILABLE, not OK."""
    if not await down.is_serving(name, timeout_s=p.time_left()):
        raise Unavailable(f"{name} service is not serving")


async def _detect(p: Plan, down: Downstream) -> detection_pb2.DetectResponse:
    r = p.request
    req = detection_pb2.DetectRequest(**_common(r), category_names=r.category_names,
                                      max_detections=r.max_labels, priority=p.priority)
    return await down.detector.Detect(req, timeout=p.time_left(), metadata=down.metadata)


async def _segment(p: Plan, down: Downstream, boxes: list[common_pb2.Detection] | None):
    r = p.request
    req = segmentation_pb2.SegmentRequest(**_common(r), category_names=r.category_names,
                                          max_instances=r.max_labels, include_polygons=r.include_polygons,
                                          priority=p.priority)
    if boxes is not None:
        if not boxes:
            await _require_serving(p, down, "segmentation")
            return segmentation_pb2.SegmentResponse(image_id=r.image.image_id)
        req.prompts.extend(segmentation_pb2.BoxPrompt(box=d.box, category=d.category) for d in boxes[:32])
    return await down.segmenter.Segment(req, timeout=p.time_left(), metadata=down.metadata)


async def _keypoints(p: Plan, down: Downstream, kind: keypoints_pb2.KeypointKind, boxes: list[common_pb2.Detection] | None):
    r = p.request
    req = keypoints_pb2.KeypointRequest(**_common(r), kind=kind, max_instances=r.max_labels,
                                        priority=p.priority)
    if boxes is not None:
        if not boxes:
            await _require_serving(p, down, "keypoints")
            return keypoints_pb2.KeypointResponse(image_id=r.image.image_id)
        req.prompt_boxes.extend(d.box for d in boxes[:32])
    return await down.keypoints.DetectKeypoints(req, timeout=p.time_left(), metadata=down.metadata)


async def _timed(task: int, coro, metrics: Metrics):
    start = time.perf_counter()
    try:
        return task, await coro, None, time.perf_counter() - start
    except (grpc.aio.AioRpcError, PrelabelError) as exc:
        return task, None, exc, time.perf_counter() - start


async def _run(p: Plan, down: Downstream, metrics: Metrics) -> list[tuple]:
    """Every task concurrently; in cascade mode segmentation and keypoints wait for the
    detector's boxes (faces do not need them and start at once)."""
    wanted = set(p.tasks)
    calls = {}
    if prelabel_pb2.TASK_FACES in wanted:
        calls[prelabel_pb2.TASK_FACES] = _keypoints(p, down, keypoints_pb2.KEYPOINT_KIND_FACE, None)
    cascade = p.request.cascade and (wanted & {prelabel_pb2.TASK_SEGMENT, prelabel_pb2.TASK_KEYPOINTS})
    if not cascade:
        if prelabel_pb2.TASK_DETECT in wanted:
            calls[prelabel_pb2.TASK_DETECT] = _detect(p, down)
        if prelabel_pb2.TASK_SEGMENT in wanted:
            calls[prelabel_pb2.TASK_SEGMENT] = _segment(p, down, None)
        if prelabel_pb2.TASK_KEYPOINTS in wanted:
            calls[prelabel_pb2.TASK_KEYPOINTS] = _keypoints(p, down, keypoints_pb2.KEYPOINT_KIND_PERSON, None)
    else:
        calls[prelabel_pb2.TASK_DETECT] = _cascade(p, down, wanted, metrics)
    with metrics.timed("fanout"):
        results = await asyncio.gather(*(_timed(t, c, metrics) for t, c in calls.items()))
    flat = []
    for task, value, error, seconds in results:
        if task == prelabel_pb2.TASK_DETECT and isinstance(value, list):  # cascade bundle
            flat.extend(value)
        else:
            flat.append((task, value, error, seconds))
    return flat


async def _cascade(p: Plan, down: Downstream, wanted: set, metrics: Metrics) -> list[tuple]:
    detect = await _timed(prelabel_pb2.TASK_DETECT, _detect(p, down), metrics)
    results = [detect] if prelabel_pb2.TASK_DETECT in wanted else []
    if detect[2] is not None:  # no boxes to prompt with: the dependent tasks fail alike
        return results + [(t, None, detect[2], 0.0) for t in
                          (prelabel_pb2.TASK_SEGMENT, prelabel_pb2.TASK_KEYPOINTS) if t in wanted]
    # Boxes clipped to zero area at the image border cannot prompt anything.
    boxes = [d for d in detect[1].detections if d.box.x_max > d.box.x_min and d.box.y_max > d.box.y_min]
    persons = [d for d in boxes if d.category.name == PERSON]
    calls = []
    if prelabel_pb2.TASK_SEGMENT in wanted:
        calls.append(_timed(prelabel_pb2.TASK_SEGMENT, _segment(p, down, boxes), metrics))
    if prelabel_pb2.TASK_KEYPOINTS in wanted:
        calls.append(_timed(prelabel_pb2.TASK_KEYPOINTS,
                            _keypoints(p, down, keypoints_pb2.KEYPOINT_KIND_PERSON, persons), metrics))
    return results + list(await asyncio.gather(*calls))


def merge(p: Plan, results: list[tuple]) -> prelabel_pb2.PreLabelResponse:
    """One response with every task's labels and status, in request order."""
    r = p.request
    out = prelabel_pb2.PreLabelResponse(image_id=r.image.image_id)
    by_task = {task: (value, error, seconds) for task, value, error, seconds in results}
    for task in p.tasks:
        value, error, seconds = by_task[task]
        status = OK if error is None else status_of(error)
        out.task_results.append(status.task_result(task, latency_ms=seconds * 1000))
        if value is None:
            continue
        if value.HasField("provenance"):
            out.task_results[-1].provenance.CopyFrom(value.provenance)
        if value.HasField("image_size"):
            out.image_size.CopyFrom(value.image_size)
        if task == prelabel_pb2.TASK_DETECT:
            out.detections.extend(value.detections)
        elif task == prelabel_pb2.TASK_SEGMENT:
            out.masks.extend(value.instances)
        elif task == prelabel_pb2.TASK_KEYPOINTS:
            out.person_keypoints.extend(value.instances)
        elif task == prelabel_pb2.TASK_FACES:
            out.faces.extend(value.instances)
        if task in (prelabel_pb2.TASK_KEYPOINTS, prelabel_pb2.TASK_FACES) and value.HasField("schema"):
            out.keypoint_schemas.append(value.schema)
    policy = policy_from_proto(r.review_policy)
    labels = [*out.detections, *(m.detection for m in out.masks),
              *(k.detection for k in out.person_keypoints), *(f.detection for f in out.faces)]
    out.uncertainty.CopyFrom(
        image_uncertainty(((d.score, policy.band(d.category.name)) for d in labels), policy.id).to_proto())
    out.uncertainty.disagreement = disagreement(out, {t for t in p.tasks if by_task[t][1] is None}, r.cascade)
    return out


async def prelabel(request: prelabel_pb2.PreLabelRequest, down: Downstream, metrics: Metrics, *,
                   timeout_s: float, priority: common_pb2.Priority, min_time_left_s: float, merge_margin_s: float = 0.0,
                   max_image_bytes: int | None = None,
                   raise_when_all_failed: bool = True) -> prelabel_pb2.PreLabelResponse:
    p = plan(request, timeout_s=timeout_s, priority=priority, min_time_left_s=min_time_left_s,
             merge_margin_s=min(merge_margin_s, timeout_s * MAX_MERGE_SHARE), max_image_bytes=max_image_bytes)
    results = await _run(p, down, metrics)
    errors = [e for _, _, e, _ in results if e is not None]
    if raise_when_all_failed and errors and len(errors) == len(results):
        raise errors[0]  # answered by the same table as the task results (the error interceptor)
    response = merge(p, results)
    metrics.images.labels(metrics.service, "prelabel").inc()
    return response
