"""PreLabel: validate once, call the services concurrently under the caller's
deadline (one route per task, services.router.routes), merge their answers into one
result per image."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from prelabel.core.review import ReviewPolicy, image_uncertainty
from prelabel.core.status import OK, status_of
from prelabel.core.tasks import DETECT, TASKS, TaskSpec
from prelabel.v1 import common_pb2, prelabel_pb2
from services.common.image_bytes import ImageBytesBudget, image_cost
from services.common.metrics import Metrics
from services.router.disagreement import disagreement
from services.router.downstream import Downstream
from services.router.plan import Plan, plan
from services.router.routes import ROUTES, Outcome, attempt

#: The merge margin never takes more than this share of a short deadline.
MAX_MERGE_SHARE = 0.2


async def _run(p: Plan, down: Downstream, metrics: Metrics) -> list[Outcome]:
    """Every task concurrently; in cascade mode the tasks the detector's boxes prompt
    wait for them (the others start at once). Outcomes in request order."""
    prompted = [t for t in p.tasks if t.cascade_prompted] if p.request.cascade else []
    # With prompted tasks, detection runs in the cascade (first).
    independent = [attempt(ROUTES[t.enum], p, down) for t in p.tasks
                   if t not in prompted and not (prompted and t is DETECT)]
    with metrics.timed("fanout"):
        alone, cascaded = await asyncio.gather(asyncio.gather(*independent), _cascade(p, down, prompted))
    by_task = {o.task.enum: o for o in [*alone, *cascaded]}
    return [by_task[t.enum] for t in p.tasks]


async def _cascade(p: Plan, down: Downstream, prompted: list[TaskSpec]) -> list[Outcome]:
    """Detection first (also when the request did not ask for it), then the `prompted`
    tasks with its boxes; nothing when no task is prompted."""
    if not prompted:
        return []
    detect = await attempt(ROUTES[DETECT.enum], p, down)
    if detect.error is not None:  # no boxes to prompt with: the prompted tasks fail alike
        return [detect] + [Outcome(ROUTES[t.enum], None, detect.error, 0.0) for t in prompted]
    # Boxes clipped to zero area at the image border cannot prompt anything.
    boxes = [d for d in detect.route.labels(detect.reply)
             if d.box.x_max > d.box.x_min and d.box.y_max > d.box.y_min]
    routes = [ROUTES[t.enum] for t in prompted]
    return [detect, *await asyncio.gather(*(attempt(r, p, down, r.prompts(boxes)) for r in routes))]


def merge(p: Plan, outcomes: Sequence[Outcome]) -> prelabel_pb2.PreLabelResponse:
    """One response with every task's labels and status, in request order."""
    r = p.request
    out = prelabel_pb2.PreLabelResponse(image_id=r.image.image_id)
    by_task = {o.task.enum: o for o in outcomes}
    for task in p.tasks:
        o = by_task[task.enum]
        status = OK if o.error is None else status_of(o.error)
        out.task_results.append(status.task_result(task.enum, latency_ms=o.seconds * 1000))
        if o.reply is None:
            continue
        if o.reply.HasField("provenance"):
            out.task_results[-1].provenance.CopyFrom(o.reply.provenance)
        if o.reply.HasField("image_size"):
            out.image_size.CopyFrom(o.reply.image_size)
        o.route.merge_into(out, o.reply)
    labels = [t.detection(label) for t in TASKS for label in t.labels(out)]
    out.uncertainty.CopyFrom(image_uncertainty(
        ((d.score, p.policy.band(d.category.name)) for d in labels), p.policy.id).to_proto())
    succeeded = {t for t in p.tasks if by_task[t.enum].error is None}
    out.uncertainty.disagreement = disagreement(out, succeeded, r.cascade)
    return out


async def prelabel(request: prelabel_pb2.PreLabelRequest, down: Downstream, metrics: Metrics, *,
                   served_policy: ReviewPolicy, timeout_s: float, priority: common_pb2.Priority,
                   min_time_left_s: float, merge_margin_s: float = 0.0, max_image_bytes: int | None = None,
                   raise_when_all_failed: bool = True,
                   image_bytes: ImageBytesBudget | None = None) -> prelabel_pb2.PreLabelResponse:
    p = plan(request, served_policy=served_policy, timeout_s=timeout_s, priority=priority,
             min_time_left_s=min_time_left_s, merge_margin_s=min(merge_margin_s, timeout_s * MAX_MERGE_SHARE),
             max_image_bytes=max_image_bytes)
    with image_bytes.hold(image_cost(len(request.image.data), len(p.tasks))) if image_bytes \
            else contextlib.nullcontext():
        outcomes = await _run(p, down, metrics)
    errors = [o.error for o in outcomes if o.error is not None]
    if raise_when_all_failed and errors and len(errors) == len(outcomes):
        raise errors[0]  # answered by the same table as the task results (the error interceptor)
    response = merge(p, outcomes)
    metrics.images.labels(metrics.service, "prelabel").inc()
    return response
