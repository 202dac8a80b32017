"""Face detector with real weights: MTCNN from the facenet-pytorch wheel.

Input  IMAGE     uint8 [B, S, S, 3]  letterboxed RGB.
Output BOXES     fp32 [B, N, 4]   model-input pixels     SCORES fp32 [B, N]
       LANDMARKS fp32 [B, N, 5, 2] (left eye, right eye, nose, mouth left, mouth right)
       COUNT     int32 [B, 1]
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from services.modelkit.contract import BOXES, COUNT, IMAGE, LANDMARKS, SCORES
from services.modelkit.parameters import ModelParameters, require
from services.modelkit.triton_base import BatchedModel, pad_rows
from services.modelkit.weights import PRETRAINED, WeightsInfo

#: The MTCNN stages' weight files inside the facenet-pytorch wheel, in the order hashed.
STAGE_FILES = ("pnet.pt", "rnet.pt", "onet.pt")
LICENSE = "MIT (facenet-pytorch)"


def mtcnn_weights_sha256(data_dir: Path) -> str:
    """One digest of the three stage files, as served: sha256 of their bytes in
    STAGE_FILES order (each file's length first, so no two layouts hash alike)."""
    digest = hashlib.sha256()
    for name in STAGE_FILES:
        data = (data_dir / name).read_bytes()
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


@dataclass(frozen=True, kw_only=True)
class MtcnnParameters(ModelParameters):
    min_face_size: int = 20
    """Smallest face MTCNN looks for, in model-input pixels."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.min_face_size >= 1, "min_face_size", self.min_face_size, "must be >= 1")


class FaceDetector(BatchedModel[MtcnnParameters]):
    """`face_detector` head."""

    parameters_class = MtcnnParameters

    def load(self, params: MtcnnParameters, settings, device):
        import facenet_pytorch
        from facenet_pytorch import MTCNN

        self.max_faces = self.output_dims(SCORES)[0]
        # The weights ship inside the wheel (pnet/rnet/onet .pt files, MIT licence).
        self.mtcnn = MTCNN(
            keep_all=True,
            device=device,
            min_face_size=params.min_face_size,
            select_largest=False,
        )
        self.mtcnn.eval()
        version = metadata.version("facenet-pytorch")
        digest = mtcnn_weights_sha256(Path(facenet_pytorch.__file__).parent / "data")
        return WeightsInfo(kind=PRETRAINED, source=f"facenet-pytorch {version} (MTCNN) sha256:{digest[:12]}",
                           architecture="mtcnn", sha256=digest, license=LICENSE)

    def infer(self, inputs):
        images = torch.from_numpy(inputs[IMAGE.name]).to(self.device)
        boxes_b, probs_b, landmarks_b = self.mtcnn.detect(images, landmarks=True)
        n = self.max_faces
        boxes, scores, landmarks, counts = [], [], [], []
        for box, prob, marks in zip(boxes_b, probs_b, landmarks_b, strict=False):
            if box is None:
                box, prob, marks = np.zeros((0, 4)), np.zeros((0,)), np.zeros((0, 5, 2))
            order = np.argsort(-np.asarray(prob, dtype=np.float32))
            boxes.append(pad_rows(np.asarray(box, np.float32)[order], n))
            scores.append(pad_rows(np.asarray(prob, np.float32)[order], n))
            landmarks.append(pad_rows(np.asarray(marks, np.float32)[order], n))
            counts.append([min(n, len(order))])
        return {
            BOXES.name: np.stack(boxes),
            SCORES.name: np.stack(scores),
            LANDMARKS.name: np.stack(landmarks),
            COUNT.name: np.asarray(counts, dtype=np.int32),
        }
