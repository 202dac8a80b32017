"""A user's Ultralytics ONNX export (YOLO, end-to-end, RT-DETR) served through a contract
head: `detector` (detect), `keypoints` (pose) or `promptable_masks` (segment).

The config names the file (`onnx_file`, relative to the model folder), its SHA-256 (the
file is hashed at load and refused if it differs), what it is (`family`, `task`), its
class names (`names`, JSON; the config's label_map is "custom", so the services name every
category from the same list: category id = class index + 1) and its `license`. The layout
is read from the file itself (prelabel.core.models.ultralytics_layouts) and must agree with all of it.

Input: the services send IMAGE already letterboxed to S x S (centred, padded with 0, INTER_AREA
below half size). The model re-fits that IMAGE to the graph's input as Ultralytics' predictor
fits a photo (identity when the graph takes S x S; a letterbox, or RT-DETR's stretch, when
it does not), so the decoders' equivalence with Ultralytics holds on the model's own input.
What differs from Ultralytics' predictor run on the source photo is the services' resize
and pad value (0, not 114), and RT-DETR sees the letterboxed image rather than the photo
stretched: a small drift, not measured against the predictor here.

Prompted mode (keypoints, promptable_masks): row k answers prompt box k with the detected
instance that overlaps it most (IoU; among the prompt's category when it gives one); a
prompt no instance overlaps gets its own box, score 0, and an empty mask / zero keypoints.
The model does not refine a mask or keypoints from a box: it only picks among its own.

A graph with a dynamic batch axis runs a Triton batch in one call; a batch-1 graph item by
item.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prelabel.core.labels import CUSTOM_LABEL_MAP, custom_categories
from prelabel.core.models.store import ModelFileError, sha256_file
from prelabel.core.models.ultralytics_layouts import FAMILIES, TASKS, UltralyticsLayout, read_layout
from prelabel.core.models.user_models import HEAD_OF_TASK
from services.common.letterbox import boxes_to_source, points_to_source
from services.modelkit.contract import (
    BOXES,
    COUNT,
    IMAGE,
    KEYPOINT_SCORES,
    KEYPOINTS,
    LABELS,
    MASKS,
    PROMPT_BOXES,
    PROMPT_COUNT,
    PROMPT_LABELS,
    SCORES,
)
from services.modelkit.cpu_masks import box_grid
from services.modelkit.families.ultralytics_decode import Detections, decode, fit_to_input, to_input
from services.modelkit.nanodet import iou_one_to_many
from services.modelkit.parameters import BoxFloorParameters, require
from services.modelkit.triton_base import BatchedModel, pad_rows
from services.modelkit.weights import CUSTOM, WeightsInfo


@dataclass(frozen=True, kw_only=True)
class UltralyticsParameters(BoxFloorParameters):
    onnx_file: str
    """The ONNX export, relative to the model folder (or absolute)."""

    sha256: str
    """SHA-256 of that file (hex): a different file is refused at load."""

    family: str
    """The export's layout: yolo, end2end or rtdetr (prelabel.core.models.ultralytics_layouts)."""

    task: str
    """detect, segment or pose; must match the head."""

    names: str
    """Class names, a JSON list in class-index order (category id = index + 1)."""

    license: str = ""
    """The weights' license as the user gave it (SPDX), reported in every provenance."""

    nms_iou: float = 0.7
    """IoU above which class-wise NMS drops a box (yolo layouts; Ultralytics' default)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.family in FAMILIES, "family", self.family, f"expected one of {list(FAMILIES)}")
        require(self.task in TASKS, "task", self.task, f"expected one of {list(TASKS)}")
        require(HEAD_OF_TASK.get(self.task) == self.head, "head", self.head,
                f"a {self.task} export serves the {HEAD_OF_TASK.get(self.task)} head")
        require(self.label_map == CUSTOM_LABEL_MAP, "label_map", self.label_map,
                f"must be {CUSTOM_LABEL_MAP!r}: the names come from the `names` parameter")
        try:
            custom_categories(self.names)
        except ValueError as exc:
            require(False, "names", self.names, str(exc))
        require(len(self.sha256) == 64 and all(c in "0123456789abcdef" for c in self.sha256), "sha256",
                self.sha256, "must be 64 lowercase hex digits")
        require(0.0 < self.nms_iou <= 1.0, "nms_iou", self.nms_iou, "must be in (0, 1]")


def verified_file(path: Path, sha256: str) -> Path:
    """`path` if it exists and has SHA-256 `sha256`; ModelFileError otherwise."""
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    found = sha256_file(path)
    if found != sha256:
        raise ModelFileError(f"model file {path} has SHA-256 {found}, the config names {sha256}: "
                             "the file changed after it was added (add it again if that is intended)")
    return path


def open_onnx(path: Path, threads: int, device_id: int | None):
    """An onnxruntime session on the CPU, or on CUDA device `device_id` (GPU instances)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    providers: list = ["CPUExecutionProvider"]
    if device_id is not None:
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device_id}))
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


@dataclass(frozen=True)
class Answer:
    """One image's rows in IMAGE pixels, before padding to the config's shapes."""
    boxes: np.ndarray  # [n, 4]
    scores: np.ndarray  # [n]
    labels: np.ndarray  # [n] int32 category ids (class index + 1; 0 = none)
    masks: np.ndarray | None = None  # [n, M, M] over each row's box
    keypoints: np.ndarray | None = None  # [n, K, 2]
    keypoint_scores: np.ndarray | None = None  # [n, K]


class UltralyticsModel(BatchedModel[UltralyticsParameters]):
    """Any of the three heads, by the config's `task`."""

    parameters_class = UltralyticsParameters

    def initialize(self, args: dict) -> None:
        # Triton's Python backend passes the model folder as `model_repository`.
        self.model_dir = Path(args.get("model_repository", "."))
        super().initialize(args)

    def load(self, params: UltralyticsParameters, settings, device) -> WeightsInfo:
        path = Path(params.onnx_file)
        path = verified_file(path if path.is_absolute() else self.model_dir / path, params.sha256)
        names = list(custom_categories(params.names).values())
        self.layout: UltralyticsLayout = read_layout(path, task=params.task, family=params.family, names=names)
        if self.layout.batch_size not in (None, 1):
            raise ValueError(f"{self.model_name}: the graph's batch is fixed at {self.layout.batch_size}; "
                             "export it with batch 1 or a dynamic batch")
        self.session = open_onnx(path, params.num_threads, device.index or 0 if device.type == "cuda" else None)
        self.params_ = params
        self.size = self.input_dims(IMAGE)[0]
        self.rows = self.output_dims(SCORES)[0]
        self.mask_size = self.output_dims(MASKS)[1] if self.head.name == "promptable_masks" else 0
        if self.head.name == "keypoints":
            assert self.layout.kpt_shape is not None
            k = self.output_dims(KEYPOINTS)[1]
            if k != self.layout.kpt_shape[0]:
                raise ValueError(f"{self.model_name}: KEYPOINTS has {k} keypoints, the export {self.layout.kpt_shape[0]}")
        return WeightsInfo(kind=CUSTOM, source=f"{path.name} (sha256 {params.sha256[:12]})",
                           architecture=f"ultralytics {self.layout.family} {self.layout.task} export",
                           sha256=params.sha256, license=params.license)

    # -- the graph --------------------------------------------------------------
    def _run(self, images: np.ndarray) -> list[dict[str, np.ndarray]]:
        """Raw outputs per image (batch axis removed), the whole batch in one call when the
        graph's batch axis is dynamic."""
        names = [o.name for o in self.session.get_outputs()]
        x = to_input(images, self.layout)
        if self.layout.dynamic_batch:
            outs = self.session.run(names, {self.layout.input_name: x})
            return [{n: o[i] for n, o in zip(names, outs, strict=True)} for i in range(len(images))]
        return [{n: o[0] for n, o in zip(names, self.session.run(names, {self.layout.input_name: x[i:i + 1]}),
                                         strict=True)} for i in range(len(images))]

    def _answer(self, det: Detections, geometry, rows: np.ndarray | None = None) -> Answer:
        """Detections in graph-input pixels -> rows in IMAGE pixels (`rows`: which ones)."""
        idx = np.arange(len(det)) if rows is None else rows
        boxes = boxes_to_source(det.boxes[idx], geometry).astype(np.float32)
        masks = kpts = kpt_scores = None
        if det.masks is not None:
            masks = np.zeros((len(idx), self.mask_size, self.mask_size), np.float32)
            for r, i in enumerate(idx):
                m = det.masks[i]
                masks[r] = box_grid(m.probabilities, det.boxes[i] - [m.left, m.top, m.left, m.top], self.mask_size)
        if det.keypoints is not None:
            kpts = points_to_source(det.keypoints[idx], geometry).astype(np.float32)
            kpt_scores = (det.keypoint_scores[idx] if det.keypoint_scores is not None
                          else np.repeat(det.scores[idx, None], kpts.shape[1], axis=1)).astype(np.float32)
        return Answer(boxes, det.scores[idx].astype(np.float32), (det.class_ids[idx] + 1).astype(np.int32),
                      masks, kpts, kpt_scores)

    def _prompted(self, det: Detections, geometry, prompts: np.ndarray, labels: np.ndarray | None) -> Answer:
        """Row k: the instance overlapping prompt k most (of its category when given)."""
        found = self._answer(det, geometry)
        k = len(prompts)
        out = Answer(prompts.astype(np.float32), np.zeros(k, np.float32),
                     (labels if labels is not None else np.zeros(k)).astype(np.int32),
                     np.zeros((k, self.mask_size, self.mask_size), np.float32) if found.masks is not None else None,
                     np.zeros((k, *found.keypoints.shape[1:]), np.float32) if found.keypoints is not None else None,
                     np.zeros((k, *found.keypoint_scores.shape[1:]), np.float32)
                     if found.keypoint_scores is not None else None)
        for p, box in enumerate(prompts):
            if not len(found.scores):
                break
            overlap = iou_one_to_many(box, found.boxes)
            if labels is not None and labels[p] > 0:
                overlap = np.where(found.labels == labels[p], overlap, 0)
            j = int(np.argmax(overlap))
            if overlap[j] <= 0:
                continue
            out.boxes[p], out.scores[p], out.labels[p] = found.boxes[j], found.scores[j], found.labels[j]
            for mine, theirs in ((out.masks, found.masks), (out.keypoints, found.keypoints),
                                 (out.keypoint_scores, found.keypoint_scores)):
                if mine is not None and theirs is not None:
                    mine[p] = theirs[j]
        return out

    def infer(self, inputs):
        images = inputs[IMAGE.name]
        fitted = [fit_to_input(image, self.layout) for image in images]
        raw = self._run(np.stack([f.pixels for f in fitted]))
        answers = []
        for i, (fit, outputs) in enumerate(zip(fitted, raw, strict=True)):
            det = decode(self.layout, outputs, score_floor=self.params_.box_score_floor, iou=self.params_.nms_iou,
                         max_det=self.rows)
            count = int(inputs[PROMPT_COUNT.name][i].reshape(-1)[0]) if PROMPT_COUNT.name in inputs else 0
            if count > 0:
                prompts = np.clip(inputs[PROMPT_BOXES.name][i, :count].astype(np.float32), 0, self.size)
                labels = inputs[PROMPT_LABELS.name][i, :count] if PROMPT_LABELS.name in inputs else None
                answers.append(self._prompted(det, fit.geometry, prompts, labels))
            else:
                answers.append(self._answer(det, fit.geometry))
        n = self.rows
        out = {BOXES.name: np.stack([pad_rows(a.boxes, n) for a in answers]),
               SCORES.name: np.stack([pad_rows(a.scores, n) for a in answers]),
               LABELS.name: np.stack([pad_rows(a.labels, n) for a in answers]),
               COUNT.name: np.array([[min(n, len(a.scores))] for a in answers], np.int32)}
        if self.head.name == "promptable_masks":
            out[MASKS.name] = np.stack([pad_rows(a.masks, n) for a in answers if a.masks is not None])
        if self.head.name == "keypoints":
            out[KEYPOINTS.name] = np.stack([pad_rows(a.keypoints, n) for a in answers if a.keypoints is not None])
            out[KEYPOINT_SCORES.name] = np.stack([pad_rows(a.keypoint_scores, n) for a in answers
                                                  if a.keypoint_scores is not None])
        return out
