"""Review bands from corrected data: per class, the lowest `accept_at` whose
auto-accepted drafts reach a target precision at a stated confidence, and a
`reject_below` under which drafts were almost never right.

Method (per task and class, from drafts matched to the corrected labels):

- accept_at: thresholds t on a fixed grid (GRID_STEP) are tested from high to low; at each,
  the drafts scoring >= t must have a one-sided lower confidence bound on their precision
  (Clopper-Pearson, or Wilson) >= the target. Testing starts at the highest t with
  START_FACTOR times the fewest drafts whose bound could reach the target (there the
  test has power; the start depends only on how many drafts score above t, never on
  whether they were right), and stops at the first t that fails:
  a fixed-sequence test, so the chosen t holds at the stated confidence even though many
  thresholds were looked at. The answer is the last t that passed; if none passed, 1.0
  (nothing is auto-accepted but a score of exactly 1).
- reject_below: thresholds r tested from low to high; the drafts scoring < r must have an
  upper confidence bound on their precision <= `reject_max_precision`. The answer is the
  last r that passed, never above accept_at; if none passed, the default.
- A class whose drafts are fewer than `min_support` keeps the default band and is listed.
- A category shared by several tasks (person: detect, segment, keypoints) gets the
  strictest band: the highest accept_at and the lowest reject_below of its tasks with
  enough support, since one band applies to all of them.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from prelabel.core.review import BUILT_IN_POLICY, Band, ReviewPolicy
from prelabel.quality.bounds import CLOPPER_PEARSON, lower_bound, min_n_to_reach, upper_bound

GRID_STEP = 0.005
#: Testing starts at the highest threshold with START_FACTOR x the fewest drafts whose
#: bound could reach the target (or half the class's drafts, when fewer).
START_FACTOR = 4


@dataclass(frozen=True)
class Settings:
    target_precision: float = 0.98
    confidence: float = 0.95
    min_support: int = 200
    bound: str = CLOPPER_PEARSON
    reject_max_precision: float = 0.05
    default: Band = Band()


@dataclass
class ClassResult:
    """The evidence behind one (task, category) band."""

    task: str
    category: str
    support: int  # drafts matched against truth (correct or not)
    correct: int
    accept_at: float | None = None
    accepted: int = 0  # drafts at or above accept_at
    accepted_precision: float | None = None  # point estimate
    precision_lower_bound: float | None = None
    reject_below: float | None = None
    rejected: int = 0
    rejected_precision_upper_bound: float | None = None
    note: str = ""

    def to_dict(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class Calibration:
    policy: ReviewPolicy
    per_task: list[ClassResult] = field(default_factory=list)
    fallback: dict[str, str] = field(default_factory=dict)  # category -> why it kept the default


def _grid() -> np.ndarray:
    return np.round(np.arange(0.0, 1.0 + GRID_STEP / 2, GRID_STEP), 6)


def choose_accept_at(scores: np.ndarray, correct: np.ndarray, s: Settings) -> tuple[float | None, int, float | None]:
    """(accept_at, drafts accepted, lower bound) by the fixed-sequence test; accept_at None
    when no threshold passes."""
    order = np.sort(scores)
    correct_sorted = correct[np.argsort(scores, kind="stable")]
    # Drafts and correct drafts at or above each threshold, from the sorted arrays.
    cum_correct = np.concatenate([[0], np.cumsum(correct_sorted[::-1])])
    need = min_n_to_reach(s.target_precision, s.confidence)
    # Start where the bound has power; the start depends on counts only, never on
    # correctness, so the fixed-sequence test stays valid.
    need = max(need, min(START_FACTOR * need, len(scores) // 2))
    chosen: tuple[float | None, int, float | None] = (None, 0, None)
    for t in _grid()[::-1]:
        n = len(order) - int(np.searchsorted(order, t, side="left"))
        if n < need:
            continue
        k = int(cum_correct[n])
        lb = lower_bound(k, n, s.confidence, s.bound)
        if lb < s.target_precision:
            break
        chosen = (float(t), n, lb)
    return chosen


def choose_reject_below(scores: np.ndarray, correct: np.ndarray, s: Settings,
                        ceiling: float) -> tuple[float | None, int, float | None]:
    """(reject_below, drafts below it, upper bound on their precision); None when no
    threshold passes."""
    order = np.argsort(scores, kind="stable")
    sorted_scores, cum_correct = scores[order], np.concatenate([[0], np.cumsum(correct[order])])
    alpha = 1.0 - s.confidence
    need = max(1, math.ceil(math.log(alpha) / math.log(1.0 - s.reject_max_precision))) \
        if s.reject_max_precision > 0 else 10**9
    need = max(need, min(START_FACTOR * need, len(scores) // 2))
    chosen: tuple[float | None, int, float | None] = (None, 0, None)
    for r in _grid():
        if r > ceiling:
            break
        n = int(np.searchsorted(sorted_scores, r, side="left"))
        if n < need:
            continue
        ub = upper_bound(int(cum_correct[n]), n, s.confidence, s.bound)
        if ub > s.reject_max_precision:
            break
        chosen = (float(r), n, ub)
    return chosen


def calibrate_class(task: str, category: str, scores, correct, s: Settings) -> ClassResult:
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    res = ClassResult(task=task, category=category, support=len(scores), correct=int(correct.sum()))
    if res.support < s.min_support:
        res.note = f"support {res.support} < min_support {s.min_support}: default band kept"
        return res
    accept_at, accepted, lb = choose_accept_at(scores, correct, s)
    if accept_at is None:
        accept_at, accepted = 1.0, int((scores >= 1.0).sum())
        res.note = (f"no threshold reaches precision {s.target_precision} at confidence {s.confidence}: "
                    "accept_at 1.0 (only scores of exactly 1 are auto-accepted)")
    res.accept_at, res.accepted, res.precision_lower_bound = accept_at, accepted, lb
    if accepted:
        res.accepted_precision = float(correct[scores >= accept_at].mean())
    reject_below, rejected, ub = choose_reject_below(scores, correct, s, ceiling=accept_at)
    if reject_below is None:
        reject_below = min(s.default.reject_below, accept_at)
        rejected = int((scores < reject_below).sum())
        res.note = (res.note + "; " if res.note else "") + (
            f"no evidence that drafts below any threshold are right at most {s.reject_max_precision} "
            f"of the time: reject_below {reject_below:g} (default)")
    res.reject_below, res.rejected, res.rejected_precision_upper_bound = reject_below, rejected, ub
    return res


def calibrate(samples: dict[tuple[str, str], tuple[Any, Any]], s: Settings) -> Calibration:
    """`samples`: (task, category) -> (scores, correct) of the drafts matched against truth."""
    per_task = [calibrate_class(task, cat, *samples[(task, cat)], s) for task, cat in sorted(samples)]
    by_category: dict[str, Band] = {}
    fallback: dict[str, str] = {}
    for cat in sorted({c for _, c in samples}):
        usable = [r for r in per_task if r.category == cat and r.accept_at is not None]
        if not usable:
            fallback[cat] = "; ".join(f"{r.task}: {r.note}" for r in per_task if r.category == cat)
            if cat in BUILT_IN_POLICY.by_category:  # a stricter built-in band (faces) stays
                by_category[cat] = BUILT_IN_POLICY.by_category[cat]
            continue
        # calibrate_class sets both edges, or neither (support below min_support)
        by_category[cat] = Band(accept_at=max(r.accept_at for r in usable if r.accept_at is not None),
                                reject_below=min(r.reject_below for r in usable if r.reject_below is not None))
    return Calibration(policy=ReviewPolicy(default=s.default, by_category=by_category),
                       per_task=per_task, fallback=fallback)
