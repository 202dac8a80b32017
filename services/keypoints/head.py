"""DetectKeypoints: keypoints in source pixels, run by the shared request path in
services.common.task.

Person mode (KEYPOINT_KIND_PERSON, the default): COCO's 17 keypoints from the
`keypointer` model (a keypoints head), automatic (every person found; score threshold,
top-k, review routing, rejected instances dropped unless asked for) or box-prompted
(exactly one instance per prompt box, in order, never dropped; box = the prompt box
clipped to the image, score = the model's person probability for that box).

Face mode (KEYPOINT_KIND_FACE): MTCNN faces from `face_detector` (a face_detector head),
each with its 5 landmarks. MTCNN gives no per-landmark confidence, so each landmark
carries its face's score (and the visibility that score earns under the request's
thresholds).

Keypoints outside the image (a model may place them in the letterbox padding) are
clamped to the image border.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prelabel.core.errors import InvalidArgument
from prelabel.core.labels import category_name
from prelabel.core.review import ReviewPolicy, policy_from_proto
from prelabel.v1 import keypoints_pb2
from services.common import requests as fields
from services.common.keypoints import (
    COCO_PERSON_SCHEMA,
    FACE_SCHEMA,
    KeypointThresholds,
    make_keypoints,
    thresholds_from_request,
)
from services.common.labeling import LabelFilter, select
from services.common.letterbox import Letterbox, boxes_to_source, points_to_source
from services.common.prompts import Prompt
from services.common.task import Ask, Inference, TaskHead
from services.common.triton_client import ModelSpec
from services.common.work import WorkBudget
from services.keypoints.settings import KeypointSettings
from services.modelkit.contract import (
    BOX_PROMPTS,
    BOXES,
    FACE_DETECTOR_HEAD,
    KEYPOINT_SCORES,
    KEYPOINTS,
    KEYPOINTS_HEAD,
    LANDMARKS,
    PROMPT_BOXES,
    SCORES,
)

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

    @property
    def face(self) -> bool:
        return self.kind == keypoints_pb2.KEYPOINT_KIND_FACE


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


class KeypointHead(TaskHead):
    rpc = "DetectKeypoints"
    response_type = keypoints_pb2.KeypointResponse
    labels_field = "instances"
    prompts_field = "prompt_boxes"
    prompt_kinds = (BOX_PROMPTS,)
    settings: KeypointSettings

    def model_heads(self) -> dict[str, frozenset[str]]:
        return {self.settings.person_keypoint_model: frozenset({KEYPOINTS_HEAD.name}),
                self.settings.face_landmark_model: frozenset({FACE_DETECTOR_HEAD.name})}

    def ask(self, request: keypoints_pb2.KeypointRequest) -> Ask:
        opts = options(request)
        model = self.settings.face_landmark_model if opts.face else self.settings.person_keypoint_model
        return Ask(model=model, task=TASKS[opts.kind], policy=opts.policy, options=opts)

    def prompts(self, request: keypoints_pb2.KeypointRequest, ask: Ask, spec: ModelSpec) -> list[Prompt]:
        return [Prompt(f"prompt_boxes[{k}]", {PROMPT_BOXES: pb}) for k, pb in enumerate(request.prompt_boxes)]

    def decode(self, inference: Inference, budget: WorkBudget) -> list[keypoints_pb2.KeypointInstance]:
        opts: Options = inference.ask.options
        if opts.face:
            return _faces(inference, opts)
        if inference.boxes:
            return _prompted(inference, opts)
        return _persons(inference, opts)

    def response_fields(self, ask: Ask) -> dict:
        return {"schema": FACE_SCHEMA if ask.options.face else COCO_PERSON_SCHEMA}


def _to_source(points: np.ndarray, lb: Letterbox) -> np.ndarray:
    out = points_to_source(points, lb)
    out[..., 0] = np.clip(out[..., 0], 0, lb.src_w)
    out[..., 1] = np.clip(out[..., 1], 0, lb.src_h)
    return out


def _persons(inf: Inference, opts: Options) -> list[keypoints_pb2.KeypointInstance]:
    scores = inf.output(SCORES)
    chosen = select(scores, inf.count, None, inf.spec.label_map, opts.flt)
    return [
        keypoints_pb2.KeypointInstance(
            detection=inf.detection(boxes_to_source(inf.output(BOXES)[c.index], inf.letterbox)[0], c.category_id,
                                    c.category_name, scores[c.index]),
            keypoints=make_keypoints(list(COCO_PERSON_SCHEMA.keypoint_names),
                                     _to_source(inf.output(KEYPOINTS)[c.index], inf.letterbox),
                                     inf.output(KEYPOINT_SCORES)[c.index], opts.thresholds),
        )
        for c in chosen
    ]


def _prompted(inf: Inference, opts: Options) -> list[keypoints_pb2.KeypointInstance]:
    name = category_name(inf.spec.label_map, PERSON_CATEGORY_ID)
    return [
        keypoints_pb2.KeypointInstance(
            detection=inf.detection(box, PERSON_CATEGORY_ID, name, inf.output(SCORES)[k]),
            keypoints=make_keypoints(list(COCO_PERSON_SCHEMA.keypoint_names),
                                     _to_source(inf.output(KEYPOINTS)[k], inf.letterbox),
                                     inf.output(KEYPOINT_SCORES)[k], opts.thresholds),
            prompt_index=k,
        )
        for k, box in enumerate(inf.boxes)
    ]


def _faces(inf: Inference, opts: Options) -> list[keypoints_pb2.KeypointInstance]:
    scores = inf.output(SCORES)
    chosen = select(scores, inf.count, None, inf.spec.label_map, opts.flt)
    names = list(FACE_SCHEMA.keypoint_names)
    return [
        keypoints_pb2.KeypointInstance(
            detection=inf.detection(boxes_to_source(inf.output(BOXES)[c.index], inf.letterbox)[0], c.category_id,
                                    c.category_name, scores[c.index]),
            keypoints=make_keypoints(names, _to_source(inf.output(LANDMARKS)[c.index], inf.letterbox),
                                     np.full(len(names), scores[c.index]), opts.thresholds),
        )
        for c in chosen
    ]
