"""Review routing (auto-accept / needs-review / reject) and the per-image
uncertainty score for active learning. Plain functions over plain values."""
from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from prelabel.core.errors import InvalidArgument
from prelabel.core.labels import FACE
from prelabel.v1 import common_pb2

DEFAULT_ACCEPT_AT = 0.85
DEFAULT_REJECT_BELOW = 0.30
#: Faces are auto-accepted only from here under the built-in policy (BUILT_IN_POLICY).
FACE_ACCEPT_AT = 0.95

AUTO_ACCEPT = common_pb2.REVIEW_DECISION_AUTO_ACCEPT
NEEDS_REVIEW = common_pb2.REVIEW_DECISION_NEEDS_REVIEW
REJECT = common_pb2.REVIEW_DECISION_REJECT

#: Each decision's name in every output, metric and policy file.
DECISION_NAMES: dict[int, str] = {common_pb2.REVIEW_DECISION_UNSPECIFIED: "unspecified", AUTO_ACCEPT: "auto_accept",
                  NEEDS_REVIEW: "needs_review", REJECT: "reject"}


def decision_name(decision: int) -> str:
    return DECISION_NAMES.get(decision, "unspecified")


@dataclass(frozen=True)
class Band:
    accept_at: float = DEFAULT_ACCEPT_AT
    reject_below: float = DEFAULT_REJECT_BELOW

    def decide(self, score: float) -> common_pb2.ReviewDecision:
        if score >= self.accept_at:
            return AUTO_ACCEPT
        if score < self.reject_below:
            return REJECT
        return NEEDS_REVIEW

    def margin(self, score: float) -> float:
        """Distance of `score` to the nearest band edge (how close it came to
        being routed differently)."""
        return min(abs(score - self.accept_at), abs(score - self.reject_below))


@dataclass(frozen=True)
class ReviewPolicy:
    default: Band = Band()
    by_category: dict[str, Band] = field(default_factory=dict)
    include_rejected: bool = False

    def band(self, category_name: str) -> Band:
        return self.by_category.get(category_name, self.default)

    @cached_property
    def id(self) -> str:
        """Identity of the bands (what decides every label): "sha256:" + 16 hex digits of
        their canonical JSON. Equal bands give equal ids wherever they were loaded (a
        policy file, a per-request policy, the router forwarding its policy), values
        taken at float32 as on the wire. `include_rejected` is not part of it."""
        canon = {"default": _canon(self.default),
                 "by_category": {name: _canon(b) for name, b in sorted(self.by_category.items())}}
        digest = hashlib.sha256(json.dumps(canon, sort_keys=True, separators=(",", ":")).encode())
        return "sha256:" + digest.hexdigest()[:16]


#: What a process serves without a policy file: the default band for every category, and
#: a stricter one per task where the default is known to be too lax, until `prelabel
#: calibrate` measures one. Bands are per category; each entry here is the one category of
#: one task. faces ("face"): MTCNN scores a false face (a motorcycle's brake disc) at 0.87.
BUILT_IN_POLICY = ReviewPolicy(by_category={FACE: Band(accept_at=FACE_ACCEPT_AT)})


def _float32(v: float) -> float:
    return struct.unpack("f", struct.pack("f", v))[0]


def _canon(band: Band) -> list[float]:
    # At float32, as every band is once it has been on the wire.
    return [round(_float32(band.accept_at), 6), round(_float32(band.reject_below), 6)]


def sets_bands(pb: common_pb2.ReviewPolicy) -> bool:
    """Whether a (per-request) policy message sets any band, not just include_rejected."""
    return pb.HasField("default_band") or len(pb.by_category) > 0


def resolve(pb: common_pb2.ReviewPolicy, served: ReviewPolicy,
            field_name: str = "review_policy") -> ReviewPolicy:
    """The policy a request runs under. A request that sets any band replaces the served
    bands (its unset band fields take the served default band); one that only sets
    include_rejected keeps the served bands."""
    if sets_bands(pb):
        return policy_from_proto(pb, field_name, base=served.default)
    return ReviewPolicy(default=served.default, by_category=served.by_category,
                        include_rejected=pb.include_rejected)


def policy_to_proto(policy: ReviewPolicy) -> common_pb2.ReviewPolicy:
    """Every band spelled out, so a service receiving it decides exactly as the sender."""
    def band(b: Band) -> common_pb2.ReviewBand:
        return common_pb2.ReviewBand(accept_at=b.accept_at, reject_below=b.reject_below)
    return common_pb2.ReviewPolicy(
        default_band=band(policy.default),
        by_category={name: band(b) for name, b in policy.by_category.items()},
        include_rejected=policy.include_rejected)


def _band_from_proto(pb: common_pb2.ReviewBand, base: Band, field_name: str) -> Band:
    accept = pb.accept_at if pb.HasField("accept_at") else base.accept_at
    reject = pb.reject_below if pb.HasField("reject_below") else base.reject_below
    for name, value in (("accept_at", accept), ("reject_below", reject)):
        if not (0.0 <= value <= 1.0) or math.isnan(value):
            raise InvalidArgument(f"{field_name}.{name}", f"must be in [0, 1], got {value:.6g}")
    if reject > accept:
        raise InvalidArgument(field_name, f"reject_below ({reject:.6g}) is above accept_at ({accept:.6g})")
    return Band(accept_at=accept, reject_below=reject)


def policy_from_proto(pb: common_pb2.ReviewPolicy, field_name: str = "review_policy",
                      base: Band = Band()) -> ReviewPolicy:
    """Validated policy; unset band fields take `base` (the built-in defaults unless a
    policy file is served), unset per-category fields the resolved default band."""
    default = _band_from_proto(pb.default_band, base, f"{field_name}.default_band")
    by_category = {
        name: _band_from_proto(band, default, f"{field_name}.by_category[{name}]")
        for name, band in pb.by_category.items()
    }
    return ReviewPolicy(default=default, by_category=by_category, include_rejected=pb.include_rejected)


def binary_entropy(p: float) -> float:
    """H(p) in bits: 1 at p=0.5, 0 at p in {0, 1}."""
    p = min(max(p, 0.0), 1.0)
    if p in (0.0, 1.0):
        return 0.0
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


@dataclass(frozen=True)
class Uncertainty:
    score: float = 0.0
    needs_review_count: int = 0
    min_margin: float = 1.0
    review_policy_id: str = ""

    def to_proto(self) -> common_pb2.ImageUncertainty:
        return common_pb2.ImageUncertainty(
            score=self.score, needs_review_count=self.needs_review_count, min_margin=self.min_margin,
            review_policy_id=self.review_policy_id,
        )


def image_uncertainty(labels: Iterable[tuple[float, Band]], policy_id: str = "") -> Uncertainty:
    """Uncertainty of an image from its labels' (score, band) pairs; `policy_id` names
    the policy those bands came from."""
    score, review, margin = 0.0, 0, 1.0
    for s, band in labels:
        score = max(score, binary_entropy(s))
        margin = min(margin, band.margin(s))
        review += band.decide(s) == NEEDS_REVIEW
    return Uncertainty(score=score, needs_review_count=review, min_margin=margin, review_policy_id=policy_id)
