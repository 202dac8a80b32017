"""Review-queue order: unsure labels or contradicting models first."""
import json

from prelabel.formats.review_queue import FILE_NAME, ReviewQueueWriter
from prelabel.v1 import common_pb2, prelabel_pb2


def response(uncertainty, disagreement, needs_review=0):
    return prelabel_pb2.PreLabelResponse(uncertainty=common_pb2.ImageUncertainty(
        score=uncertainty, disagreement=disagreement, needs_review_count=needs_review, min_margin=0.1,
        review_policy_id="sha256:0123456789abcdef"))


def test_review_queue_puts_confident_but_contradicting_image_first_when_models_disagree(tmp_path):
    writer = ReviewQueueWriter(tmp_path)
    for number, (name, r) in enumerate([("calm.jpg", response(0.1, 0.0)),
                                        ("unsure.jpg", response(0.6, 0.0, needs_review=2)),
                                        ("contradicting.jpg", response(0.2, 0.8)),
                                        ("both.jpg", response(0.6, 0.6, needs_review=1))]):
        writer.add(number, name, name, r)
    writer.close()
    queue = [json.loads(line) for line in (tmp_path / FILE_NAME).read_text().splitlines()]
    assert [q["image_id"] for q in queue] == ["contradicting.jpg", "unsure.jpg", "both.jpg", "calm.jpg"]
    assert queue[0]["priority"] == 0.8 and queue[0]["disagreement"] == 0.8
    assert queue[0]["review_policy_id"] == "sha256:0123456789abcdef"
