"""The `model_version` ls-backend reports: a function of what decides a project's drafts --
each asked task's served model (its provenance: name, Triton version, architecture, weights
and their SHA-256), the router's review bands (their policy id), the project's labeling
config (its names and labels) and the settings that change what is returned (score
threshold, review filter, masks as polygons or brush) -- never of the process, or of which
labels the last task happened to get.

Why: Label Studio 1.23 (ml/models.py, MLBackend.predict_tasks) calls /setup before every
batch of predictions, takes the model_version it answers, sends /predict only the tasks
holding no prediction of that version, and stores every answer as one more prediction. A
version that changed when the backend restarted had Label Studio ask again for every task
already predicted and store a second prediction of each.

The backend learns the version from the router's answers: each task's TaskResult carries
its model's provenance whether or not it found anything, so a small blank image (the
probe) tells the served models before any task is predicted, and every prediction tells
them again (a redeployed model changes the version with its first answer).
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

from google.protobuf import json_format
from PIL import Image

from prelabel.core.tasks import by_enum
from prelabel.formats.common import model_tag
from prelabel.ls_backend.project import Project
from prelabel.ls_backend.settings import LsBackendSettings
from prelabel.v1 import prelabel_pb2

#: A version learned this long ago is learned again (a probe) at the next /setup, so a
#: model redeployed while nothing is predicted still changes it; predictions renew it.
MAX_AGE_S = 60.0
PROBE_IMAGE_ID = "ls-backend-served-models"


@dataclass(frozen=True)
class Asked:
    """What a project asks of the router: its version is learned per Asked."""

    tasks: tuple[str, ...]
    masks: str  # polygon | brush
    #: Digest of the parsed labeling config: its tag names and label values are written into
    #: every region, so renaming a label makes other drafts (Label Studio should ask again).
    config: str

    @classmethod
    def of(cls, project: Project) -> Asked:
        return cls(tuple(project.tasks), project.masks, hashlib.sha256(repr(project).encode()).hexdigest()[:12])


@functools.cache
def probe_image() -> bytes:
    """A small grey PNG: every task answers it (with no labels) and names its model."""
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(out, "PNG")
    return out.getvalue()


def drafts_version(response: prelabel_pb2.PreLabelResponse, asked: Asked, settings: LsBackendSettings) -> str:
    """The version of the drafts `response`'s models give under `settings`: the models
    (`name@version`, sorted) and a digest of everything that decides the drafts. The
    response must hold a successful TaskResult of every asked task."""
    models = {by_enum(r.task).name: json_format.MessageToDict(r.provenance) for r in response.task_results}
    identity = {
        "models": models,
        "review_policy": response.uncertainty.review_policy_id,
        "score_threshold": settings.score_threshold,
        "outputs_review": sorted(settings.outputs_review),
        "masks": asked.masks,
        "labeling_config": asked.config,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    tags = sorted({model_tag(r.provenance) for r in response.task_results})
    return f"{','.join(tags)} #{digest}"


class _Learned(NamedTuple):
    version: str
    at: float  # monotonic seconds


class Versions:
    """The version last learned for each Asked, and when (thread-safe)."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._learned: dict[Asked, _Learned] = {}

    def learned(self, asked: Asked, version: str) -> None:
        with self._lock:
            self._learned[asked] = _Learned(version, self._clock())

    def fresh(self, asked: Asked) -> str | None:
        """The version learned for `asked` less than MAX_AGE_S ago."""
        with self._lock:
            learned = self._learned.get(asked)
        return learned.version if learned is not None and self._clock() - learned.at < MAX_AGE_S else None

    def last(self, asked: Asked) -> str | None:
        """The version learned for `asked`, however long ago."""
        with self._lock:
            learned = self._learned.get(asked)
        return learned.version if learned is not None else None

    def all(self) -> list[str]:
        with self._lock:
            return sorted({learned.version for learned in self._learned.values()})
