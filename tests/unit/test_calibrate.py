"""Calibration on synthetic drafts whose precision curve is known exactly: scores
uniform on [0, 1], a draft with score s right with probability p(s)."""
import numpy as np
import pytest

from prelabel.core.review import BUILT_IN_POLICY, Band
from prelabel.quality.bounds import CLOPPER_PEARSON, WILSON, clopper_pearson_lower, clopper_pearson_upper, wilson_lower
from prelabel.quality.calibrate import Settings, calibrate, calibrate_class

TARGET, CONFIDENCE = 0.98, 0.95


def drafts(rng, n, power):
    """Scores ~ U(0, 1), right with probability s ** power."""
    scores = rng.random(n)
    return scores, rng.random(n) < scores ** power


def precision_above(t, power):
    """True precision of drafts scoring >= t when p(s) = s ** power: mean of p over [t, 1]."""
    return (1 - t ** (power + 1)) / ((power + 1) * (1 - t))


def precision_below(r, power):
    return r ** power / (power + 1)


def best_threshold(power, target=TARGET):
    grid = np.linspace(0, 0.999, 10000)
    return grid[np.argmax([precision_above(t, power) >= target for t in grid])]


def test_bounds_match_exact_values_when_known():
    # Reference values: scipy.stats.beta.ppf(0.05, k, n - k + 1) and its upper counterpart.
    assert clopper_pearson_lower(98, 100, 0.95) == pytest.approx(0.938381, abs=1e-6)
    assert clopper_pearson_lower(10, 10, 0.95) == pytest.approx(0.741134, abs=1e-6)
    assert clopper_pearson_upper(0, 10, 0.95) == pytest.approx(0.258866, abs=1e-6)
    assert clopper_pearson_lower(1900, 2000, 0.95) == pytest.approx(0.941230, abs=1e-5)
    assert wilson_lower(98, 100, 0.95) == pytest.approx(0.941352, abs=1e-5)
    assert wilson_lower(98, 100, 0.95) > clopper_pearson_lower(98, 100, 0.95)  # Wilson is tighter


@pytest.mark.parametrize("bound", [CLOPPER_PEARSON, WILSON])
def test_calibrate_class_meets_target_on_held_out_split_when_precision_curve_is_known(bound):
    power, seeds = 0.1, range(30)
    settings = Settings(target_precision=TARGET, confidence=CONFIDENCE, min_support=200, bound=bound)
    true_ok = held_out_ok = 0
    chosen = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        result = calibrate_class("detect", "car", *drafts(rng, 8000, power), settings)
        held_scores, held_correct = drafts(rng, 50_000, power)
        accepted = held_scores >= result.accept_at
        # accept_at 1.0 (nothing accepted) is safe, but costs the median check below.
        true_ok += result.accept_at == 1.0 or precision_above(result.accept_at, power) >= TARGET
        held_out_ok += not accepted.any() or held_correct[accepted].mean() >= TARGET
        chosen.append(result.accept_at)
    # Holds at the stated confidence (a little slack for 30 seeds) ...
    assert true_ok >= 27, chosen
    assert held_out_ok >= 27, chosen
    # ... without giving away the effort it is meant to save: close to the best threshold.
    assert np.median(chosen) <= best_threshold(power) + 0.15, chosen


def test_calibrate_class_rejects_only_where_drafts_are_rarely_right_when_curve_is_known():
    power = 3.0  # p(s) = s^3: drafts below r are right r^3/4 of the time
    settings = Settings(target_precision=0.9, confidence=CONFIDENCE, reject_max_precision=0.05)
    chosen = []
    for seed in range(20):
        result = calibrate_class("detect", "dog", *drafts(np.random.default_rng(seed), 4000, power), settings)
        chosen.append(result.reject_below)
    assert sum(precision_below(r, power) <= 0.05 for r in chosen) >= 18, chosen
    assert min(chosen) > 0.35, chosen  # found, and well above nothing (limit: 0.585)


def test_calibrate_keeps_default_band_and_lists_class_when_support_is_below_minimum():
    rng = np.random.default_rng(0)
    samples = {("detect", "car"): drafts(rng, 3000, 0.1), ("detect", "giraffe"): drafts(rng, 50, 0.1)}
    result = calibrate(samples, Settings(target_precision=0.95, min_support=200, default=Band(0.85, 0.3)))
    assert "giraffe" in result.fallback and "support 50 < min_support 200" in result.fallback["giraffe"]
    assert result.policy.band("giraffe") == Band(0.85, 0.3)
    assert "car" in result.policy.by_category and result.policy.band("car").accept_at < 0.85


def test_calibrate_keeps_the_stricter_built_in_face_band_when_faces_lack_support():
    rng = np.random.default_rng(0)
    samples = {("faces", "face"): drafts(rng, 50, 0.1)}
    result = calibrate(samples, Settings(min_support=200, default=Band(0.85, 0.3)))
    assert "face" in result.fallback
    assert result.policy.band("face") == BUILT_IN_POLICY.band("face") != Band(0.85, 0.3)


def test_calibrate_gives_shared_category_the_strictest_band_when_tasks_differ():
    rng = np.random.default_rng(1)
    samples = {("detect", "person"): drafts(rng, 4000, 0.1),      # precise: low accept_at
               ("keypoints", "person"): drafts(rng, 4000, 1.0)}   # much less precise
    result = calibrate(samples, Settings(target_precision=0.9))
    per_task = {r.task: r for r in result.per_task}
    assert per_task["keypoints"].accept_at > per_task["detect"].accept_at
    assert result.policy.band("person").accept_at == per_task["keypoints"].accept_at


def test_calibrate_class_accepts_nothing_when_target_is_unreachable():
    rng = np.random.default_rng(2)
    scores = rng.random(2000)
    result = calibrate_class("detect", "cup", scores, rng.random(2000) < 0.5, Settings())
    assert result.accept_at == 1.0 and "no threshold reaches" in result.note
