"""The plan of one PreLabel call: what the router validates itself, the tasks in request
order, the review policy resolved once, and the deadline every downstream call shares."""
from __future__ import annotations

import time
from dataclasses import dataclass

from prelabel.core.errors import DeadlineExceeded, InvalidArgument
from prelabel.core.review import ReviewPolicy, policy_to_proto, resolve
from prelabel.core.tasks import BY_ENUM, TASKS, TaskSpec
from prelabel.v1 import common_pb2, prelabel_pb2
from services.common import requests as fields

#: Every task's enum value: what a request naming no task asks for.
ALL_TASKS = tuple(t.enum for t in TASKS)


@dataclass
class Plan:
    request: prelabel_pb2.PreLabelRequest
    tasks: list[TaskSpec]  # in request order
    priority: common_pb2.Priority
    deadline: float  # time.monotonic() by which the reply must be written
    min_time_left_s: float
    policy: ReviewPolicy  # the request's effective review policy, parsed once
    forwarded_policy: common_pb2.ReviewPolicy  # the same, every band spelled out for the services
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


def plan(request: prelabel_pb2.PreLabelRequest, *, served_policy: ReviewPolicy, timeout_s: float,
         priority: common_pb2.Priority, min_time_left_s: float, merge_margin_s: float = 0.0,
         max_image_bytes: int | None = None) -> Plan:
    """Validate what the router itself owns, and the image's size in bytes before it
    is copied into any downstream request; the services decode and validate the rest
    (image content, per-task parameters), and their field violations come back unchanged.
    Drops the request's unknown fields.
    The review policy is the request's bands, else `served_policy`'s (review.resolve)."""
    # Unknown fields (a newer client's, or padding) are never forwarded: in the image they
    # would reach every service and pass the image-size check below unseen.
    request.DiscardUnknownFields()
    policy = resolve(request.review_policy, served_policy)
    tasks = []
    for i, value in enumerate(dict.fromkeys(request.tasks)):
        if value not in BY_ENUM:
            raise InvalidArgument(f"tasks[{i}]", f"unknown task {value}")
        tasks.append(BY_ENUM[value])
    if not request.image.data:
        raise InvalidArgument("image.data", "image is empty")
    if max_image_bytes is not None and len(request.image.data) > max_image_bytes:
        raise InvalidArgument("image.data", f"image is {len(request.image.data)} bytes; "
                                            f"the limit is {max_image_bytes}")
    fields.image_id(request.image.image_id)
    fields.probability(request, "score_threshold", fields.DEFAULT_SCORE_THRESHOLD)
    fields.max_count(request.max_labels, "max_labels")
    return Plan(request, tasks or list(TASKS), priority, deadline=time.monotonic() + timeout_s,
                min_time_left_s=min_time_left_s, policy=policy, forwarded_policy=policy_to_proto(policy),
                merge_margin_s=merge_margin_s)
