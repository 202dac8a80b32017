"""Policy files: validation, writing, and what a served policy does to requests."""
import json

import pytest

from prelabel.core.policy_file import PolicyFileError, load_policy_file, write_policy_file
from prelabel.core.review import AUTO_ACCEPT, BUILT_IN_POLICY, NEEDS_REVIEW, Band, ReviewPolicy, policy_from_proto
from prelabel.v1 import common_pb2, detection_pb2
from services.common.metrics import Metrics
from services.common.served_policy import ServedPolicy

pytestmark = pytest.mark.timeout(30)

GOOD = {"review_policy": {"default_band": {"accept_at": 0.9, "reject_below": 0.2},
                          "by_category": {"person": {"accept_at": 0.7}}},
        "provenance": {"created_by": "hand"}}


def write(path, doc):
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_load_policy_file_reads_json_and_yaml_alike_when_same_bands(tmp_path):
    import yaml

    a = load_policy_file(write(tmp_path / "p.json", GOOD))
    b = load_policy_file(write(tmp_path / "p.yaml", yaml.safe_dump(
        {"review_policy": {"defaultBand": {"acceptAt": 0.9, "rejectBelow": 0.2},
                           "byCategory": {"person": {"acceptAt": 0.7}}}})))
    assert a.id == b.id and a.id.startswith("sha256:")
    assert a.policy.band("person").accept_at == pytest.approx(0.7)
    assert a.policy.band("person").reject_below == pytest.approx(0.2)  # unset: the file's default band
    assert a.provenance == {"created_by": "hand"}


@pytest.mark.parametrize("doc, says", [
    ({"review_policy": {"default_band": {"accept_at": 1.5}}}, "review_policy.default_band.accept_at"),
    ({"review_policy": {"by_category": {"car": {"accept_at": 0.2, "reject_below": 0.5}}}}, "by_category[car]"),
    ({"review_policy": {"default_band": {"accept": 0.5}}}, "accept"),
    ({"review_policy": {}, "bands": {}}, "unknown key"),
    ({"provenance": {}}, "missing 'review_policy'"),
    ("review_policy: [unclosed", "not valid JSON"),
])
def test_load_policy_file_refuses_with_path_and_field_when_file_is_bad(tmp_path, doc, says):
    path = write(tmp_path / "bad.json", doc)
    with pytest.raises(PolicyFileError) as err:
        load_policy_file(path)
    assert str(path) in str(err.value) and says in str(err.value)


def test_write_policy_file_round_trips_with_its_id_when_bands_are_float64(tmp_path):
    policy = ReviewPolicy(default=Band(0.85, 0.3), by_category={"car": Band(0.612345678, 0.1)})
    written = write_policy_file(tmp_path / "p.yaml", policy, {"created_by": "test"})
    assert written.provenance["policy_id"] == written.id == load_policy_file(tmp_path / "p.yaml").id
    assert written.policy.band("car").accept_at == pytest.approx(0.612346, abs=1e-6)


def test_served_policy_fills_requests_that_set_no_band_when_file_served(tmp_path):
    served = ServedPolicy(write(tmp_path / "p.json", GOOD))
    request = detection_pb2.DetectRequest(review_policy=common_pb2.ReviewPolicy(include_rejected=True))
    policy = policy_from_proto(served.apply(request).review_policy)
    # What a service receiving the forwarded request decides with is the file's policy.
    assert policy.id == served.current.id
    assert policy.include_rejected and policy.band("person").accept_at == pytest.approx(0.7)


def test_served_policy_lets_request_bands_override_when_request_sets_them(tmp_path):
    served = ServedPolicy(write(tmp_path / "p.json", GOOD))
    request = detection_pb2.DetectRequest(review_policy=common_pb2.ReviewPolicy(
        by_category={"dog": common_pb2.ReviewBand(accept_at=0.5)}))
    policy = policy_from_proto(served.apply(request).review_policy)
    assert policy.id != served.current.id
    assert policy.band("dog").accept_at == pytest.approx(0.5)
    assert policy.band("person").accept_at == pytest.approx(0.9)  # the file's per-class bands do not apply
    assert policy.band("dog").reject_below == pytest.approx(0.2)  # unset: the served default band


def test_served_policy_reloads_and_keeps_old_when_new_file_is_bad(tmp_path):
    path = write(tmp_path / "p.json", GOOD)
    metrics = Metrics("test")
    served = ServedPolicy(path, reload_s=0.0, metrics=metrics)
    first = served.current.id
    write(path, {"review_policy": {"default_band": {"accept_at": 0.6}}})
    served.maybe_reload()
    second = served.current.id
    assert second != first
    write(path, "{not json")
    served.maybe_reload()
    assert served.current.id == second
    value = metrics.registry.get_sample_value
    assert value("prelabel_review_policy_info", {"service": "test", "policy_id": first, "source": str(path)}) == 0
    assert value("prelabel_review_policy_info", {"service": "test", "policy_id": second, "source": str(path)}) == 1
    assert value("prelabel_review_policy_reloads_total", {"service": "test", "outcome": "ok"}) == 1
    assert value("prelabel_review_policy_reloads_total", {"service": "test", "outcome": "refused"}) == 1


def test_served_policy_serves_built_in_defaults_when_no_file():
    served = ServedPolicy(None)
    assert served.current.id == BUILT_IN_POLICY.id and served.source == "built-in defaults"


def test_served_policy_is_stricter_for_faces_when_no_file():
    # MTCNN's false face on a brake disc scored 0.87: reviewed, while an object at 0.87 is accepted.
    request = detection_pb2.DetectRequest()
    policy = policy_from_proto(ServedPolicy(None).apply(request).review_policy)
    assert policy.id == BUILT_IN_POLICY.id
    assert policy.band("face").decide(0.87) == NEEDS_REVIEW and policy.band("face").decide(0.95) == AUTO_ACCEPT
    assert policy.band("person").decide(0.87) == AUTO_ACCEPT


def test_policy_id_is_the_same_when_bands_went_through_the_wire_as_float32():
    from prelabel.core.review import policy_to_proto

    # 0.6123454999 rounds to 0.612345 at float64 but to 0.612346 at float32.
    policy = ReviewPolicy(default=Band(0.6123454999, 0.3), by_category={"car": Band(0.7000004999, 0.1)})
    assert policy_from_proto(policy_to_proto(policy)).id == policy.id
    assert ReviewPolicy(default=Band(0.9, 0.3)).id != policy.id
