"""Overload: admission control sheds the excess with RESOURCE_EXHAUSTED (fast, with a
retry hint) and loses nothing; Triton's own queue-full UNAVAILABLE reaches callers as
RESOURCE_EXHAUSTED too."""
from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import time
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from tritonclient.utils import InferenceServerException

from prelabel.core.errors import ResourceExhausted
from prelabel.core.status import RETRY_AFTER_KEY, status_of
from prelabel.v1 import common_pb2, detection_pb2, detection_pb2_grpc
from services.common.triton_client import translate_error
from services.embedded_triton.launcher import EmbeddedTriton
from services.embedded_triton.settings import REPO_ROOT, TritonSettings
from tests.reliability import corpus
from tests.reliability.conftest import detection_app, detection_process, percentile, triton_inference_count
from tests.reliability.report import figure
from tests.waiting import until

MAX_IN_FLIGHT = 4
KNEE_SECONDS = 4.0
OVERLOAD_SECONDS = 15.0
OVERLOAD_FACTOR = 2.0
REQUEST_DEADLINE_S = 30.0  # generous: other test runs share these 2 cores
REJECTION_P99_LIMIT_MS = 50.0
ADMITTED_P99_TARGET_RATIO = 1.3  # docs/reliability.md
ADMITTED_P99_LIMIT_RATIO = 3.0  # what we assert on a shared 2-core runner

# What Triton 2.x answers when a model's dynamic-batching queue is full (captured from
# the real tritonserver of this repo, see test_detect_answers_resource_exhausted_when_
# triton_queue_is_full below): gRPC status UNAVAILABLE and this text.
TRITON_QUEUE_FULL_STATUS = "StatusCode.UNAVAILABLE"
TRITON_QUEUE_FULL_MESSAGE = "[request id: <id_unknown>] Exceeds maximum queue size"


@dataclass
class Outcome:
    code: grpc.StatusCode
    seconds: float
    retry_after_ms: str | None = None
    retry_info: bool = False


def photo_request() -> detection_pb2.DetectRequest:
    data = corpus.encode(corpus.sample_photo((320, 240)), "JPEG", quality=90)
    return detection_pb2.DetectRequest(image=common_pb2.Image(data=data), model="coco_detector")


async def detect_once(stub, request, timeout_s: float = REQUEST_DEADLINE_S) -> Outcome:
    start = time.perf_counter()
    try:
        await stub.Detect(request, timeout=timeout_s)
        return Outcome(grpc.StatusCode.OK, time.perf_counter() - start)
    except grpc.aio.AioRpcError as err:
        seconds = time.perf_counter() - start
        metadata = dict(err.trailing_metadata() or ())
        status = rpc_status.from_call(err)
        retry_info = bool(status) and any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
        return Outcome(err.code(), seconds, metadata.get(RETRY_AFTER_KEY), retry_info)


async def closed_loop(stub, request, concurrency: int, seconds: float) -> list[Outcome]:
    """`concurrency` callers, each sending its next request when the last one returns."""
    end = time.perf_counter() + seconds
    outcomes: list[Outcome] = []

    async def caller():
        while time.perf_counter() < end:
            outcomes.append(await detect_once(stub, request))

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return outcomes


async def open_loop(stub, request, rate_per_s: float, seconds: float) -> tuple[int, list[Outcome], int]:
    """Send at a fixed rate whatever happens to earlier requests (how real load arrives).
    Returns (sent, outcomes, still pending after every deadline passed)."""
    start = time.perf_counter()
    tasks = []
    n = 0
    while (due := start + n / rate_per_s) < start + seconds:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(detect_once(stub, request)))
        n += 1
    done, pending = await asyncio.wait(tasks, timeout=REQUEST_DEADLINE_S + 5)
    for task in pending:
        task.cancel()
    return len(tasks), [t.result() for t in done], len(pending)


async def measure_knee(stub, request) -> tuple[float, float]:
    """(requests/s, p99 seconds) of the successful requests of a closed loop with
    max_in_flight callers: the most the service sustains without shedding."""
    start = time.perf_counter()
    outcomes = await closed_loop(stub, request, MAX_IN_FLIGHT, KNEE_SECONDS)
    ok = [o.seconds for o in outcomes if o.code == grpc.StatusCode.OK]
    assert ok, f"nothing succeeded at the knee: {[o.code.name for o in outcomes]}"
    assert count(outcomes, grpc.StatusCode.RESOURCE_EXHAUSTED) == 0, "the knee itself was shed"
    return len(ok) / (time.perf_counter() - start), percentile(ok, 99)


def count(outcomes, code) -> int:
    return sum(o.code == code for o in outcomes)


@pytest.fixture(scope="module")
async def limited_detection(triton, tmp_path_factory):
    async with detection_process(
        triton.grpc_url, tmp_path_factory.mktemp("overload"),
        PRELABEL_MAX_IN_FLIGHT=MAX_IN_FLIGHT, PRELABEL_MODELS='["coco_detector"]',
        PRELABEL_DEFAULT_MODEL="coco_detector", PRELABEL_RETRY_AFTER_MS=250,
    ) as proc:
        yield proc


@pytest.mark.integration
@pytest.mark.timeout(240)
async def test_detect_answers_every_request_and_sheds_excess_fast_when_offered_twice_sustainable_load(
        limited_detection, record):
    request = photo_request()
    async with grpc.aio.insecure_channel(limited_detection.address) as channel:
        stub = detection_pb2_grpc.DetectorStub(channel)
        await closed_loop(stub, request, MAX_IN_FLIGHT, 1.0)  # warm caches and batching

        # The knee: throughput with exactly max_in_flight callers (nothing to shed).
        knee_rps, knee_p99 = await measure_knee(stub, request)
        def server_count(code):
            return limited_detection.metric("prelabel_rpc_requests_total", method="Detect", code=code)

        before = {c: server_count(c) for c in ("OK", "RESOURCE_EXHAUSTED")}
        rate = OVERLOAD_FACTOR * knee_rps
        sent, outcomes, hung = await open_loop(stub, request, rate, OVERLOAD_SECONDS)
        # The service counts a call just after answering it: wait until it has counted
        # every OK and RESOURCE_EXHAUSTED the callers got (bounded; a shortfall shows below).
        answered = sum(o.code in (grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED) for o in outcomes)
        with contextlib.suppress(TimeoutError):
            await until(lambda: sum(server_count(c) - before[c] for c in before) >= answered, timeout_s=5,
                        poll_s=0.05)
        server = {c: server_count(c) - before[c] for c in before}
        # Measured again after: the reference p99 is the worse of the two, so load that
        # other processes put on the machine meanwhile does not count against us.
        _, knee_p99_after = await measure_knee(stub, request)
        knee_p99 = max(knee_p99, knee_p99_after)

    ok = [o for o in outcomes if o.code == grpc.StatusCode.OK]
    shed = [o for o in outcomes if o.code == grpc.StatusCode.RESOURCE_EXHAUSTED]
    late = count(outcomes, grpc.StatusCode.DEADLINE_EXCEEDED)
    other = [o.code.name for o in outcomes if o.code not in (
        grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED)]
    shed_p99_ms = percentile([o.seconds for o in shed], 99) * 1000
    admitted_p99 = percentile([o.seconds for o in ok], 99)
    ratio = admitted_p99 / knee_p99
    record("overload",
           max_in_flight=figure(MAX_IN_FLIGHT, "requests"),
           knee_rps=figure(knee_rps, "req/s", note=f"closed loop, {MAX_IN_FLIGHT} callers, coco_detector on CPU"),
           knee_p99_ms=figure(knee_p99 * 1000, "ms"),
           offered_rps=figure(rate, "req/s", f"{OVERLOAD_FACTOR:.0f}x knee"),
           duration_s=figure(OVERLOAD_SECONDS, "s", "60 (shortened for CI)"),
           sent=figure(sent, "requests"),
           answered=figure(len(outcomes), "requests", "= sent", len(outcomes) == sent and not hung),
           ok=figure(len(ok), "requests"),
           resource_exhausted=figure(len(shed), "requests"),
           deadline_exceeded=figure(late, "requests"),
           other_codes=figure(len(other), "requests", "0", not other),
           hung=figure(hung, "requests", "0", hung == 0),
           rejection_p99_ms=figure(shed_p99_ms, "ms", f"< {REJECTION_P99_LIMIT_MS:.0f}",
                                   shed_p99_ms < REJECTION_P99_LIMIT_MS),
           admitted_p99_ms=figure(admitted_p99 * 1000, "ms"),
           admitted_p99_vs_knee=figure(ratio, "x", f"<= {ADMITTED_P99_TARGET_RATIO}",
                                       ratio <= ADMITTED_P99_TARGET_RATIO),
           server_counted=figure(server["OK"] + server["RESOURCE_EXHAUSTED"], "requests", "= sent",
                                 server["OK"] + server["RESOURCE_EXHAUSTED"] + late >= sent,
                                 note="OK + RESOURCE_EXHAUSTED in the service's own metrics"))

    assert hung == 0, f"{hung} requests never answered"
    assert sent == len(ok) + len(shed) + late + len(other)
    assert not other, f"unexpected codes: {other}"
    assert shed, "2x the sustainable load shed nothing: admission control did not engage"
    assert all(o.retry_after_ms == "250" for o in shed), {o.retry_after_ms for o in shed}
    assert all(o.retry_info for o in shed), "RESOURCE_EXHAUSTED without a google.rpc.RetryInfo"
    assert shed_p99_ms < REJECTION_P99_LIMIT_MS
    # Server-side counts agree with the client's: nothing lost in between.
    # (A call that missed its deadline at the client may still count OK at the server.)
    assert server["RESOURCE_EXHAUSTED"] == len(shed), (server, len(shed))
    assert len(ok) <= server["OK"] <= len(ok) + late, (server, len(ok), late)
    assert ratio <= ADMITTED_P99_LIMIT_RATIO, f"admitted p99 {admitted_p99:.3f}s vs knee {knee_p99:.3f}s"


# --------------------------------------------------------------- Triton's own queue
def test_translate_error_gives_resource_exhausted_when_triton_reports_queue_full():
    # A test double of the exception only: this is the exception tritonclient raises for
    # a gRPC error (status and message from the wire), with the exact text the real
    # tritonserver sends (captured in the integration test below). The unit test keeps
    # the mapping checked in `make test-unit`, without starting Triton.
    exc = InferenceServerException(msg=TRITON_QUEUE_FULL_MESSAGE, status=TRITON_QUEUE_FULL_STATUS,
                                   debug_details=f"UNAVAILABLE:{TRITON_QUEUE_FULL_MESSAGE}")
    error = translate_error(exc, "coco_detector")
    assert isinstance(error, ResourceExhausted)
    assert error.retry_after_ms > 0
    status = status_of(error).to_grpc()
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (RETRY_AFTER_KEY, str(error.retry_after_ms)) in status.trailing_metadata


@pytest.fixture(scope="module")
def triton_queue_of_one(tmp_path_factory):
    """A second tritonserver serving a copy of coco_detector whose queue holds 1 request."""
    repo = tmp_path_factory.mktemp("queue1-repo")
    shutil.copytree(REPO_ROOT / "model_repository" / "coco_detector", repo / "coco_detector",
                    ignore=shutil.ignore_patterns("configs", "__pycache__"))
    config = repo / "coco_detector" / "config.pbtxt"
    text, n = re.subn(r"max_queue_size: \d+", "max_queue_size: 1", config.read_text())
    assert n == 1, "coco_detector's config has no max_queue_size to shrink"
    config.write_text(text)
    log_path = tmp_path_factory.mktemp("queue1-log") / "tritonserver.log"
    server = EmbeddedTriton(TritonSettings(grpc_port=0, http_port=0, metrics_port=0, model_repository=repo,
                                           models=["coco_detector"]), log_path=log_path)
    server.start()
    yield server
    server.stop()


@pytest.mark.integration
@pytest.mark.timeout(150)
async def test_detect_answers_resource_exhausted_when_triton_queue_is_full(triton_queue_of_one, record):
    burst = 24
    async with detection_app(triton_queue_of_one.grpc_url, models=["coco_detector"],
                             default_model="coco_detector", max_in_flight=64) as (_, address):
        url = triton_queue_of_one.grpc_url
        before = {o: triton_inference_count(url, "coco_detector", (o,)) for o in ("success", "fail")}
        async with grpc.aio.insecure_channel(address) as channel:
            stub = detection_pb2_grpc.DetectorStub(channel)
            outcomes = await asyncio.gather(*(detect_once(stub, photo_request(), 60) for _ in range(burst)))
        ok = count(outcomes, grpc.StatusCode.OK)
        for _ in range(30):  # Triton updates its statistics just after it answers
            after = {o: triton_inference_count(url, "coco_detector", (o,)) for o in ("success", "fail")}
            if after["success"] - before["success"] >= ok:
                break
            await asyncio.sleep(0.1)
    executed, failed = (after[o] - before[o] for o in ("success", "fail"))

    shed = count(outcomes, grpc.StatusCode.RESOURCE_EXHAUSTED)
    record("triton_queue", burst=figure(burst, "requests", note="max_queue_size 1, one instance"),
           ok=figure(ok, "requests"), resource_exhausted=figure(shed, "requests"),
           triton_executed=figure(executed, "inferences", "= ok", executed == ok),
           triton_failed=figure(failed, "requests", note="Triton's own count of refused requests"))
    assert ok + shed == burst, [o.code.name for o in outcomes]
    assert ok >= 1 and shed >= 1, (ok, shed)
    rejected = [o for o in outcomes if o.code == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert all(o.retry_info and o.retry_after_ms for o in rejected)
    # Triton rejects exactly the overflow: what it executed is what the callers got.
    assert executed == ok, (executed, ok)
