"""DetectKeypoints: request -> decode/letterbox -> Triton -> keypoints in source pixels.

Person mode (KEYPOINT_KIND_PERSON, the default): COCO's 17 keypoints from the
`keypointer` model, automatic (every person found; score threshold, top-k, review
routing, rejected instances dropped unless asked for) or box-prompted (exactly one
instance per prompt box, in order, never dropped; box = the prompt box clipped to the
image, score = the model's person probability for that box).

Face mode (KEYPOINT_KIND_FACE): MTCNN faces from `face_detector`, each with its 5
landmarks. MTCNN gives no per-landmark confidence, so each landmark carries its face's
score (and the visibility that score earns under the request's thresholds).

Keypoints outside the image (a model may place them in the letterbox padding) are
clamped to the image border.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prelabel.v1 import keypoints_pb2

from services.common import requests as fields
from services.common.errors import InvalidArgument
from services.common.keypoints import (
    COCO_PERSON_SCHEMA,
    FACE_SCHEMA,
    KeypointThresholds,
    make_keypoints,
    thresholds_from_request,
)
from services.common.labeling import (
    LabelFilter,
    check_prompt_box_shape,
    check_prompt_count,
    count_labels,
    keep_reviewed,
    make_detection,
    prompt_tensors,
    select,
    uncertainty_of,
)
from services.common.labels import category_name
from services.common.letterbox import Letterbox, boxes_to_model, boxes_to_source, points_to_source
from services.common.metrics import Metrics
from services.common.preprocess import prepare_image_async
from services.common.review import ReviewPolicy, policy_from_proto
from services.common.triton_client import InferOutput, TritonClient
from services.keypoints.settings import KeypointSettings

PERSON_CATEGORY_ID = 1
KINDS = {
    keypoints_pb2.KEYPOINT_KIND_UNSPECIFIED: keypoints_pb2.KEYPOINT_KIND_PERSON,
    keypoints_pb2.KEYPOINT_KIND_PERSON: keypoints_pb2.KEYPOINT_KIND_PERSON,
    keypoints_pb2.KEYPOINT_KIND_FACE: keypoints_pb2.KEYPOINT_KIND_FACE,
}
TASKS = {keypoints_pb2.KEYPOINT_KIND_PERSON: "person_keypoints",
         keypoints_pb2.KEYPOINT_KIND_FACE: "face_landmarks"}


@dataclass(frozen=True)
class Options:
    kind: keypoints_pb2.KeypointKind
    flt: LabelFilter
    thresholds: KeypointThresholds
    policy: ReviewPolicy


def options(request: keypoints_pb2.KeypointRequest) -> Options:
    if request.kind not in KINDS:
        raise InvalidArgument("kind", f"unknown keypoint kind {request.kind}")
    kind = KINDS[request.kind]
    if kind == keypoints_pb2.KEYPOINT_KIND_FACE and request.prompt_boxes:
        raise InvalidArgument("prompt_boxes", "face mode takes no prompt boxes (person mode only)")
    return Options(
        kind=kind,
        flt=LabelFilter(
            score_threshold=fields.probability(request, "score_threshold", fields.DEFAULT_SCORE_THRESHOLD),
            max_labels=fields.max_count(request.max_instances, "max_instances"),
        ),
        thresholds=thresholds_from_request(request),
        policy=policy_from_proto(request.review_policy),
    )


async def detect_keypoints(
    request: keypoints_pb2.KeypointRequest,
    *,
    triton: TritonClient,
    settings: KeypointSettings,
    metrics: Metrics,
    timeout_s: float,
) -> keypoints_pb2.KeypointResponse:
    # Validate everything cheap before touching pixels or Triton.
    opts = options(request)
    face = opts.kind == keypoints_pb2.KEYPOINT_KIND_FACE
    image_id = fields.image_id(request.image.image_id)
    model = settings.face_landmark_model if face else settings.person_keypoint_model
    spec = await triton.spec(model)
    limit = 0
    if not face:
        limit = spec.inputs["PROMPT_BOXES"][0]
        check_prompt_count(len(request.prompt_boxes), limit, "prompt_boxes")
        for k, pb in enumerate(request.prompt_boxes):
            check_prompt_box_shape(pb, f"prompt_boxes[{k}]")

    metrics.payload.labels(metrics.service, "DetectKeypoints").observe(len(request.image.data))
    with metrics.timed("decode"):
        prepared = await prepare_image_async(request.image.data, spec.image_size, settings)
    lb = prepared.letterbox
    boxes = [fields.box(pb, f"prompt_boxes[{k}]", lb.src_w, lb.src_h)
             for k, pb in enumerate(request.prompt_boxes)]
    inputs = {"IMAGE": prepared.tensor}
    if not face:
        inputs.update(prompt_tensors(boxes_to_model(np.asarray(boxes).reshape(-1, 4), lb), limit))
    with metrics.timed("triton"):
        result = await triton.infer(model, inputs, timeout_s=timeout_s, priority=request.priority)
    with metrics.timed("postprocess"):
        if face:
            instances = _faces(result, spec.label_map, lb, opts)
        elif boxes:
            instances = _prompted(result, boxes, spec.label_map, lb, opts)
        else:
            instances = _persons(result, spec.label_map, lb, opts)
        kept = instances if boxes else keep_reviewed(instances, opts.policy, detection_of=lambda i: i.detection)
        response = keypoints_pb2.KeypointResponse(
            image_id=image_id,
            image_size=prepared.size_proto,
            instances=kept,
            schema=FACE_SCHEMA if face else COCO_PERSON_SCHEMA,
            provenance=result.provenance,
            uncertainty=uncertainty_of([i.detection for i in instances], opts.policy),
        )
    count_labels(metrics, TASKS[opts.kind], model, [i.detection for i in response.instances])
    return response


def _to_source(points: np.ndarray, lb: Letterbox) -> np.ndarray:
    out = points_to_source(points, lb)
    out[..., 0] = np.clip(out[..., 0], 0, lb.src_w)
    out[..., 1] = np.clip(out[..., 1], 0, lb.src_h)
    return out


def _persons(result: InferOutput, label_map: str, lb: Letterbox, opts: Options):
    out = result.outputs
    scores = out["SCORES"][0]
    chosen = select(scores, int(out["COUNT"][0][0]), None, label_map, opts.flt)
    return [
        keypoints_pb2.KeypointInstance(
            detection=make_detection(boxes_to_source(out["BOXES"][0][i], lb)[0], cat_id, name,
                                     scores[i], opts.policy, result.provenance),
            keypoints=make_keypoints(list(COCO_PERSON_SCHEMA.keypoint_names),
                                     _to_source(out["KEYPOINTS"][0][i], lb),
                                     out["KEYPOINT_SCORES"][0][i], opts.thresholds),
        )
        for i, cat_id, name in chosen
    ]


def _prompted(result: InferOutput, boxes, label_map: str, lb: Letterbox, opts: Options):
    out = result.outputs
    name = category_name(label_map, PERSON_CATEGORY_ID)
    return [
        keypoints_pb2.KeypointInstance(
            detection=make_detection(box, PERSON_CATEGORY_ID, name, out["SCORES"][0][k], opts.policy,
                                     result.provenance),
            keypoints=make_keypoints(list(COCO_PERSON_SCHEMA.keypoint_names),
                                     _to_source(out["KEYPOINTS"][0][k], lb),
                                     out["KEYPOINT_SCORES"][0][k], opts.thresholds),
            prompt_index=k,
        )
        for k, box in enumerate(boxes)
    ]


def _faces(result: InferOutput, label_map: str, lb: Letterbox, opts: Options):
    out = result.outputs
    scores = out["SCORES"][0]
    chosen = select(scores, int(out["COUNT"][0][0]), None, label_map, opts.flt)
    names = list(FACE_SCHEMA.keypoint_names)
    return [
        keypoints_pb2.KeypointInstance(
            detection=make_detection(boxes_to_source(out["BOXES"][0][i], lb)[0], cat_id, name,
                                     scores[i], opts.policy, result.provenance),
            keypoints=make_keypoints(names, _to_source(out["LANDMARKS"][0][i], lb),
                                     np.full(len(names), scores[i]), opts.thresholds),
        )
        for i, cat_id, name in chosen
    ]
