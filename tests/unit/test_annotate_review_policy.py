"""`prelabel annotate --review-policy FILE`: the file's policy goes with every image."""
from __future__ import annotations

import json

import pytest

from prelabel.annotate import EXIT_OK, EXIT_USAGE
from prelabel.core.policy_file import load_policy_file
from prelabel.core.review import policy_from_proto
from tests.unit.annotate_runs import annotate, photos
from tests.unit.prelabeler_double import PreLabelerDouble, serve

pytestmark = pytest.mark.timeout(60)


class RecordingDouble(PreLabelerDouble):
    def __init__(self):
        super().__init__()
        self.policy_ids: list[str] = []

    def _answer(self, request):
        self.policy_ids.append(policy_from_proto(request.review_policy).id)
        return super()._answer(request)


async def test_annotate_sends_file_policy_with_every_image_when_review_policy_given(tmp_path):
    folder = photos(tmp_path / "in", ["a.jpg", "b.jpg"])
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"review_policy": {"by_category": {"person": {"accept_at": 0.6}}}}))
    double = RecordingDouble()
    async with serve(double) as address:
        code, log = await annotate(str(folder), "--out", str(tmp_path / "out"), "--router", address,
                                   "--tasks", "detect", "--review-policy", str(policy))
    assert code == EXIT_OK, log
    assert double.policy_ids == [load_policy_file(policy).id] * 2
    params = json.loads((tmp_path / "out" / "params.json").read_text())
    assert params["review_policy_id"] == load_policy_file(policy).id  # a resume with another policy is refused


async def test_annotate_exits_2_naming_the_field_when_review_policy_file_is_bad(tmp_path):
    folder = photos(tmp_path / "in", ["a.jpg"])
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"review_policy": {"default_band": {"reject_below": -1}}}))
    code, log = await annotate(str(folder), "--out", str(tmp_path / "out"), "--router", "127.0.0.1:1",
                               "--review-policy", str(policy))
    assert code == EXIT_USAGE and "review_policy.default_band.reject_below" in log, log
