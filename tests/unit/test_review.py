import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prelabel.core.errors import InvalidArgument
from prelabel.core.review import (
    AUTO_ACCEPT,
    NEEDS_REVIEW,
    REJECT,
    Band,
    binary_entropy,
    image_uncertainty,
    policy_from_proto,
)
from prelabel.v1 import common_pb2


def test_band_decide_routes_by_thresholds_when_default_band():
    band = Band()
    assert band.decide(0.9) == AUTO_ACCEPT
    assert band.decide(0.85) == AUTO_ACCEPT
    assert band.decide(0.5) == NEEDS_REVIEW
    assert band.decide(0.29) == REJECT


def test_policy_from_proto_uses_per_category_band_when_given():
    pb = common_pb2.ReviewPolicy(
        default_band=common_pb2.ReviewBand(accept_at=0.7),
        by_category={"person": common_pb2.ReviewBand(accept_at=0.95, reject_below=0.5)},
    )
    policy = policy_from_proto(pb)
    assert policy.band("cat").accept_at == pytest.approx(0.7)  # float32 on the wire
    assert policy.band("cat").reject_below == pytest.approx(0.30)
    assert policy.band("person").decide(0.9) == NEEDS_REVIEW
    assert policy.band("person").decide(0.4) == REJECT


@pytest.mark.parametrize("band", [
    common_pb2.ReviewBand(accept_at=1.5),
    common_pb2.ReviewBand(reject_below=-0.1),
    common_pb2.ReviewBand(accept_at=0.2, reject_below=0.6),
    common_pb2.ReviewBand(accept_at=float("nan")),
])
def test_policy_from_proto_rejects_band_when_out_of_range(band):
    with pytest.raises(InvalidArgument) as err:
        policy_from_proto(common_pb2.ReviewPolicy(default_band=band))
    assert err.value.field.startswith("review_policy.default_band")


@given(st.floats(0, 1))
def test_binary_entropy_is_symmetric_and_bounded_when_probability(p):
    h = binary_entropy(p)
    assert 0 <= h <= 1
    assert math.isclose(h, binary_entropy(1 - p), abs_tol=1e-9)


def test_image_uncertainty_is_highest_when_a_label_sits_at_one_half():
    band = Band()
    confident = image_uncertainty([(0.99, band), (0.02, band)])
    unsure = image_uncertainty([(0.99, band), (0.5, band)])
    assert unsure.score == pytest.approx(1.0)
    assert confident.score < 0.2
    assert unsure.needs_review_count == 1 and confident.needs_review_count == 0
    assert unsure.min_margin == pytest.approx(0.14)  # 0.99 is 0.14 above accept_at


def test_image_uncertainty_is_zero_when_no_labels():
    u = image_uncertainty([])
    assert (u.score, u.needs_review_count, u.min_margin) == (0.0, 0, 1.0)
