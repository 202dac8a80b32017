"""Triton errors become domain errors by the gRPC status code tritonclient reports. The
exceptions are built as tritonclient builds them from a failed call (its own
get_error_grpc / get_cancelled_error, over a grpc.aio.AioRpcError with the code and text
tritonserver sends): dead stubs, full queues and unloaded models cannot be produced on
demand without a Triton; a Triton that is not there can, and is tested for real."""
from __future__ import annotations

import grpc
import numpy as np
import pytest
from tritonclient.grpc._utils import get_cancelled_error, get_error_grpc

from prelabel.core.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from services.common.triton_client import TritonClient, translate_error, triton_code
from services.embedded_triton.launcher import free_port

pytestmark = pytest.mark.timeout(30)

C = grpc.StatusCode


def triton_error(code: grpc.StatusCode, text: str):
    return get_error_grpc(grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), text))


@pytest.mark.parametrize("code,text,kind,says", [
    (C.UNAVAILABLE, "[request id: <id_unknown>] Exceeds maximum queue size", ResourceExhausted, "queue is full"),
    (C.UNAVAILABLE, "failed to connect to all addresses", Unavailable, "Triton unavailable"),
    (C.INTERNAL, "Failed to process the request(s) for model 'x', message: Stub process 'x_0_0' is not healthy.",
     Unavailable, "Triton error INTERNAL"),
    (C.NOT_FOUND, "Request for unknown model: 'x' is not found", Unavailable, "model not loaded"),
    (C.DEADLINE_EXCEEDED, "Deadline Exceeded", DeadlineExceeded, "deadline exceeded"),
    (C.INVALID_ARGUMENT, "unexpected shape for input 'IMAGE'", Unavailable, "Triton error INVALID_ARGUMENT"),
    # Texts that used to steer the old substring rules: the code decides, not the words.
    (C.INTERNAL, "Exceeds maximum queue size of the log ring", Unavailable, "Triton error INTERNAL"),
    (C.UNAVAILABLE, "Request timeout expired in queue", Unavailable, "Triton unavailable"),
], ids=lambda v: v.name if isinstance(v, grpc.StatusCode) else None)
def test_translate_error_by_status_code(code, text, kind, says):
    error = translate_error(triton_error(code, text), "x")
    assert type(error) is kind
    assert says in error.message and error.message.startswith("x: ")


def test_translate_error_gives_a_retry_hint_when_triton_queue_is_full():
    error = translate_error(triton_error(C.UNAVAILABLE, "[request id: 7] Exceeds maximum queue size"), "x")
    assert isinstance(error, ResourceExhausted) and error.retry_after_ms > 0


def test_translate_error_gives_deadline_exceeded_when_the_call_was_cancelled():
    error = translate_error(get_cancelled_error(), "x")
    assert isinstance(error, DeadlineExceeded) and "cancelled" in error.message


def test_triton_code_reads_tritonclients_status():
    assert triton_code(triton_error(C.NOT_FOUND, "")) is C.NOT_FOUND
    assert triton_code(get_cancelled_error()) is C.CANCELLED


async def test_infer_raises_unavailable_when_no_triton_listens():
    client = TritonClient(f"127.0.0.1:{free_port()}")
    try:
        with pytest.raises(Unavailable) as caught:
            await client.infer("coco_detector", {"IMAGE": np.zeros((1, 2, 2, 3), np.uint8)}, timeout_s=5)
    finally:
        await client.close()
    assert "Triton unavailable" in caught.value.message
