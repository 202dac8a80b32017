"""The shared request path (services.common.task) against the real embedded Triton: a
service whose settings name a model of the wrong contract head refuses to start, naming
the model and both heads, instead of failing at its first request."""
from __future__ import annotations

import asyncio

import pytest

from services.common.metrics import Metrics
from services.common.startup import check_model_heads
from services.common.triton_client import TritonClient
from services.keypoints.app import build_app as build_keypoints
from services.keypoints.settings import KeypointSettings
from services.segmentation.app import build_app as build_segmentation
from services.segmentation.settings import SegmentationSettings

pytestmark = pytest.mark.integration


async def test_check_model_heads_names_model_and_heads_when_a_detector_is_set_as_keypoint_model(triton):
    client = TritonClient(triton.grpc_url)
    try:
        await check_model_heads(client, {"keypointer": frozenset({"keypoints"}),
                                         "face_detector": frozenset({"face_detector"})})
        with pytest.raises(RuntimeError) as err:
            await check_model_heads(client, {"coco_detector": frozenset({"keypoints"})})
    finally:
        await client.close()
    message = str(err.value)
    assert "coco_detector" in message and "detector contract head" in message and "keypoints" in message


@pytest.mark.parametrize("build,settings", [
    (build_keypoints, lambda url: KeypointSettings(triton_url=url, person_keypoint_model="coco_detector",
                                                   grpc_port=0, metrics_port=None)),
    (build_segmentation, lambda url: SegmentationSettings(triton_url=url, segmentation_model="keypointer",
                                                          grpc_port=0, metrics_port=None)),
])
async def test_service_refuses_to_start_when_its_model_implements_another_head(triton, build, settings):
    app = build(settings(triton.grpc_url), Metrics("heads"))
    await app.start()
    with pytest.raises(RuntimeError, match="contract head"):
        await asyncio.wait_for(app.run(install_signal_handlers=False), 60)
