"""The SDK against a loopback PreLabeler double that injects faults: the retry policy, the
stream window, stall detection; plus the plain-dict helpers."""
from __future__ import annotations

import asyncio
import shutil
import subprocess

import grpc
import pytest

from prelabel.sdk import (
    PreLabelClient,
    StreamStalled,
    SyncPreLabelClient,
    bearer_metadata,
    parse_tasks,
    response_to_dict,
)
from prelabel.v1 import common_pb2, prelabel_pb2, segmentation_pb2, segmentation_pb2_grpc
from tests.unit.prelabeler_double import PreLabelerDouble, serve

pytestmark = pytest.mark.timeout(60)

#: Larger than gRPC's default per-call retry buffer (256 KiB): retries must still happen.
BIG_IMAGE = b"\xff" * (1024 * 1024)


async def test_prelabel_retries_unavailable_when_image_exceeds_default_retry_buffer():
    double = PreLabelerDouble(unary_failures=2)
    async with serve(double) as address, PreLabelClient(address, timeout_s=10) as client:
        response = await client.prelabel(BIG_IMAGE, "a", ["detect"])
    assert response.image_id == "a"
    assert double.unary_attempts["a"] == 3


async def failed_prelabel(double: PreLabelerDouble, **client_options) -> grpc.aio.AioRpcError:
    """The error that one call for image "a" ends with, after the retries the policy allows."""
    async with serve(double) as address, PreLabelClient(address, timeout_s=10, **client_options) as client:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.prelabel(b"x", "a")
    return info.value


async def test_prelabel_fails_once_when_status_is_invalid_argument():
    double = PreLabelerDouble(unary_failures=1, unary_code=grpc.StatusCode.INVALID_ARGUMENT)
    assert (await failed_prelabel(double)).code() == grpc.StatusCode.INVALID_ARGUMENT
    assert double.unary_attempts["a"] == 1


async def test_prelabel_stops_at_max_attempts_when_router_stays_unavailable():
    double = PreLabelerDouble(unary_failures=10**6)
    assert (await failed_prelabel(double, max_attempts=3)).code() == grpc.StatusCode.UNAVAILABLE
    assert double.unary_attempts["a"] == 3


async def test_prelabel_throttles_retries_when_most_calls_fail():
    # Token bucket of 10, -1 per failure: after ~5 failed calls retries stop altogether,
    # so 20 calls cost far fewer than 20 * 4 attempts.
    double = PreLabelerDouble(unary_failures=10**6)
    async with serve(double) as address, PreLabelClient(address, timeout_s=10) as client:
        for i in range(20):
            with pytest.raises(grpc.aio.AioRpcError):
                await client.prelabel(b"x", f"img-{i}")
    attempts = sum(double.unary_attempts.values())
    assert attempts < 20 * 1.5, attempts
    assert all(double.unary_attempts[f"img-{i}"] == 1 for i in range(10, 20))


async def test_stream_keeps_at_most_window_images_outstanding_when_router_is_slow():
    double = PreLabelerDouble(delay_s=0.01)
    taken = 0

    async def items():
        nonlocal taken
        for i in range(30):
            taken += 1
            yield f"img-{i}", b"x"

    seen = []
    async with serve(double) as address, PreLabelClient(address) as client:
        async for response in client.stream(items(), ["detect"], window=4):
            seen.append(response.image_id)
            assert taken - len(seen) <= 4  # never read more than the window ahead
    assert sorted(seen) == sorted(f"img-{i}" for i in range(30))
    assert 2 <= double.max_outstanding <= 4


async def test_stream_raises_stalled_when_router_stops_answering():
    double = PreLabelerDouble(stall=True)
    async with serve(double) as address, PreLabelClient(address) as client:
        started = asyncio.get_running_loop().time()
        with pytest.raises(StreamStalled):
            async for _ in client.stream([("a", b"x")], window=2, idle_timeout_s=0.5):
                pass
        assert asyncio.get_running_loop().time() - started < 5


async def test_stream_raises_rpc_error_when_stream_breaks():
    double = PreLabelerDouble(break_stream_after=2)
    got = []
    async with serve(double) as address, PreLabelClient(address) as client:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for response in client.stream([(f"i{k}", b"x") for k in range(5)], window=1):
                got.append(response.image_id)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert got == ["i0", "i1"]


async def test_sync_client_returns_response_when_router_answers():
    double = PreLabelerDouble(unary_failures=1)
    async with serve(double) as address:
        with SyncPreLabelClient(address, timeout_s=10) as client:
            response = await asyncio.to_thread(client.prelabel, b"x", "a", "detect,faces")
    assert [r.task for r in response.task_results] == [prelabel_pb2.TASK_DETECT, prelabel_pb2.TASK_FACES]
    assert double.unary_attempts["a"] == 2


class SegmenterDouble(segmentation_pb2_grpc.SegmenterServicer):
    """SegmentClick on loopback, recording what each call carried (image id, metadata,
    seconds left to its deadline): the router's answers need the real segmentation service
    over Triton, which tests/tools/test_labelstudio.py drives through the sync client."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], float]] = []

    async def SegmentClick(self, request, context):
        self.calls.append((request.image.image_id, dict(context.invocation_metadata()), context.time_remaining()))
        reply = segmentation_pb2.ClickResponse(image_id=request.image.image_id,
                                               image_size=common_pb2.ImageSize(width=4, height=3))
        reply.candidates.add().instance.mask_quality = 0.75
        return reply


async def test_segment_click_is_the_same_call_when_made_by_the_async_or_the_sync_client():
    segmenter = SegmenterDouble()

    def add(server):
        segmentation_pb2_grpc.add_SegmenterServicer_to_server(segmenter, server)

    def request(image_id: str) -> segmentation_pb2.ClickRequest:
        return segmentation_pb2.ClickRequest(image=common_pb2.Image(data=b"x", image_id=image_id), prompt=(
            segmentation_pb2.ClickPrompt(points=[segmentation_pb2.PointPrompt(x=1, y=1)])))

    options = {"timeout_s": 20, "token": "t-1", "metadata": [("x-trace", "7")]}
    async with serve(PreLabelerDouble(), servicers=[add]) as address:
        async with PreLabelClient(address, **options) as client:
            replies = [await client.segment_click(request("async")),
                       await client.segment_click(request("async, 5 s"), timeout_s=5)]
        with SyncPreLabelClient(address, **options) as sync:
            replies += [await asyncio.to_thread(sync.segment_click, request("sync")),
                        await asyncio.to_thread(sync.segment_click, request("sync, 5 s"), timeout_s=5)]
    assert [r.image_id for r in replies] == ["async", "async, 5 s", "sync", "sync, 5 s"]
    assert all(r.candidates[0].instance.mask_quality == 0.75 for r in replies)
    for image_id, metadata, left_s in segmenter.calls:
        assert (metadata["authorization"], metadata["x-trace"]) == ("Bearer t-1", "7"), image_id
        deadline_s = 5 if image_id.endswith("5 s") else 20  # as sent (gRPC rounds it up a little)
        assert deadline_s - 2 < left_s < deadline_s + 0.5, (image_id, left_s)


@pytest.fixture
def self_signed(tmp_path) -> tuple[bytes, bytes]:
    """(key, certificate) PEM for 127.0.0.1, made by the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", tmp_path / "key.pem", "-out", tmp_path / "cert.pem", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return (tmp_path / "key.pem").read_bytes(), (tmp_path / "cert.pem").read_bytes()


async def test_client_connects_over_tls_when_given_the_server_root(self_signed):
    key, cert = self_signed
    credentials = grpc.ssl_server_credentials([(key, cert)])
    async with serve(PreLabelerDouble(), credentials) as address:
        async with PreLabelClient(address, tls=True, root_certificates=cert, timeout_s=10) as client:
            assert (await client.prelabel(b"x", "a")).image_id == "a"
        async with PreLabelClient(address, timeout_s=2, max_attempts=1) as plaintext:
            with pytest.raises(grpc.aio.AioRpcError):
                await plaintext.prelabel(b"x", "a")


def test_client_sends_bearer_metadata_when_given_a_token_and_refuses_one_a_header_cannot_carry():
    client = SyncPreLabelClient("127.0.0.1:1", token="bulk-1", metadata=[("x-trace", "7")])
    assert client.metadata == (("x-trace", "7"), ("authorization", "Bearer bulk-1"))
    client.close()
    for bad in ("", "two words", "line\n", "caf\u00e9"):
        with pytest.raises(ValueError) as err:
            bearer_metadata(bad)
        assert bad not in str(err.value) or not bad


def test_parse_tasks_raises_when_name_is_unknown():
    assert parse_tasks("faces, detect,faces") == [prelabel_pb2.TASK_FACES, prelabel_pb2.TASK_DETECT]
    assert len(parse_tasks(None)) == 4
    with pytest.raises(ValueError):
        parse_tasks("detect,pose")


def test_response_to_dict_flattens_labels_when_every_task_has_one():
    from tests.unit.test_formats import make_response

    d = response_to_dict(make_response("img-1"))
    assert d["image_id"] == "img-1" and (d["width"], d["height"]) == (640, 480)
    assert [lb["task"] for lb in d["labels"]] == ["detect", "detect", "segment", "keypoints", "faces"]
    person = d["labels"][0]
    assert person["box"] == [100.0, 50.0, 300.0, 450.0] and person["review"] == "needs_review"
    assert person["model"]["weights"] == "pretrained"
    mask = d["labels"][2]["mask"]
    assert mask["size"] == [480, 640] and isinstance(mask["counts"], str)
    assert d["labels"][3]["keypoints"][1] == {"name": "left_eye", "x": 201.0, "y": 101.0,
                                              "score": pytest.approx(0.3), "visibility": 1}
    assert d["uncertainty"]["needs_review_count"] == 1


def test_response_to_dict_keeps_policy_id_and_disagreement_when_router_sets_them():
    from tests.unit.test_formats import make_response

    response = make_response("img-1")
    response.uncertainty.review_policy_id = "sha256:0123456789abcdef"
    response.uncertainty.disagreement = 0.25
    u = response_to_dict(response)["uncertainty"]
    assert u["review_policy_id"] == "sha256:0123456789abcdef"
    assert u["disagreement"] == pytest.approx(0.25)
