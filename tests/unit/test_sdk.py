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
from prelabel.v1 import prelabel_pb2
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
