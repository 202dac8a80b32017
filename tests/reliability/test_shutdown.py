"""SIGTERM drains: `python -m services.detection` as a real process turns health
NOT_SERVING first, finishes every request it admitted before the signal, refuses new
ones, and exits 0 within its grace period."""
from __future__ import annotations

import asyncio
import signal
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from prelabel.v1 import common_pb2, detection_pb2, detection_pb2_grpc
from tests.reliability import corpus
from tests.reliability.conftest import HEALTH_NOT_SERVING, HEALTH_SERVING, detection_process
from tests.reliability.report import figure

pytestmark = [pytest.mark.integration]

# Long enough for a batch of coco_detector inferences on a loaded 2-core runner (seen:
# 4 s a batch while other test runs competed); the pod's own grace must be longer.
GRACE_S = 30.0
CONCURRENT = 6
EXIT_SLACK_S = 3.0  # interpreter teardown after the drain


def photo_request(i: int) -> detection_pb2.DetectRequest:
    data = corpus.encode(corpus.sample_photo((320, 240)), "JPEG", quality=90)
    return detection_pb2.DetectRequest(image=common_pb2.Image(data=data, image_id=f"r{i}"), model="coco_detector")


@pytest.mark.timeout(200)
async def test_detection_process_drains_admitted_requests_and_exits_zero_when_sigterm_arrives(
        triton, tmp_path, record):
    async with detection_process(triton.grpc_url, tmp_path, PRELABEL_SHUTDOWN_GRACE_S=GRACE_S,
                                 PRELABEL_MODELS='["coco_detector"]',
                                 PRELABEL_DEFAULT_MODEL="coco_detector") as proc:
        in_flight = lambda: proc.metric("prelabel_rpc_in_flight", method="Detect")  # noqa: E731
        finished = lambda: proc.metric("prelabel_rpc_requests_total", method="Detect")  # noqa: E731
        async with grpc.aio.insecure_channel(proc.address) as channel:
            stub = detection_pb2_grpc.DetectorStub(channel)
            health = health_pb2_grpc.HealthStub(channel)

            # Watch (a streaming RPC already open) sees NOT_SERVING even while the server
            # refuses new calls; Check could not.
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
            first = await watch.read()
            assert first.status == HEALTH_SERVING

            async def detect(i):
                try:
                    reply = await stub.Detect(photo_request(i), timeout=60)
                    return grpc.StatusCode.OK, time.perf_counter(), reply.image_id
                except grpc.aio.AioRpcError as err:
                    return err.code(), time.perf_counter(), err.details()

            requests = [asyncio.create_task(detect(i)) for i in range(CONCURRENT)]
            # Admitted = the server has them (in flight or done); some must still run.
            deadline = time.perf_counter() + 30
            while await asyncio.to_thread(lambda: in_flight() + finished()) < CONCURRENT:
                assert time.perf_counter() < deadline, "requests never reached the server"
                await asyncio.sleep(0.01)
            running_at_signal = await asyncio.to_thread(in_flight)

            signalled_at = time.perf_counter()
            proc.process.send_signal(signal.SIGTERM)

            update = await asyncio.wait_for(watch.read(), timeout=5)
            not_serving_at = time.perf_counter()
            watch.cancel()  # an open Watch would otherwise hold the drain for the whole grace
            assert update.status == HEALTH_NOT_SERVING

            try:  # a new request after the signal is refused, not queued
                await stub.Detect(photo_request(-1), timeout=5)
                new_after_signal = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as err:
                new_after_signal = err.code()

            results = await asyncio.gather(*requests)
        exit_code = await asyncio.to_thread(proc.process.wait, GRACE_S + 30)
        exited_at = time.perf_counter()

    codes = [code for code, _, _ in results]
    completed_after_not_serving = sum(at > not_serving_at for _, at, _ in results)
    exit_s = exited_at - signalled_at
    record("shutdown",
           admitted_before_sigterm=figure(CONCURRENT, "requests"),
           in_flight_at_sigterm=figure(running_at_signal, "requests"),
           succeeded=figure(codes.count(grpc.StatusCode.OK), "requests", f"= {CONCURRENT}",
                            codes.count(grpc.StatusCode.OK) == CONCURRENT),
           not_serving_after_sigterm_ms=figure((not_serving_at - signalled_at) * 1000, "ms"),
           new_request_after_sigterm=figure(new_after_signal.name, note="refused, not queued"),
           exit_code=figure(exit_code, "", "0", exit_code == 0),
           exit_after_sigterm_s=figure(exit_s, "s", f"< grace {GRACE_S:.0f}", exit_s < GRACE_S))

    assert running_at_signal > 0, "every request finished before SIGTERM: nothing was drained"
    assert codes == [grpc.StatusCode.OK] * CONCURRENT, "\n".join(map(str, results)) + proc.log_tail()
    assert completed_after_not_serving > 0, "health went NOT_SERVING only after the drain"
    assert new_after_signal == grpc.StatusCode.UNAVAILABLE, new_after_signal
    assert exit_code == 0, proc.log_tail()
    assert exit_s < GRACE_S + EXIT_SLACK_S, proc.log_tail()


@pytest.mark.timeout(120)
async def test_detection_process_exits_zero_when_sigterm_arrives_while_idle(triton, tmp_path):
    async with detection_process(triton.grpc_url, tmp_path, PRELABEL_MODELS='["coco_detector"]',
                                 PRELABEL_DEFAULT_MODEL="coco_detector") as proc:
        start = time.perf_counter()
        proc.process.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(proc.process.wait, 30)
        assert exit_code == 0, proc.log_tail()
        assert time.perf_counter() - start < 5, "an idle server must not wait out the grace period"
    assert proc.process.returncode == 0


WATCH_GRACE_S = 4.0


@pytest.mark.timeout(120)
async def test_detection_process_exits_before_grace_when_a_health_watch_is_open(triton, tmp_path, record):
    async with detection_process(triton.grpc_url, tmp_path, PRELABEL_SHUTDOWN_GRACE_S=WATCH_GRACE_S,
                                 PRELABEL_MODELS='["coco_detector"]',
                                 PRELABEL_DEFAULT_MODEL="coco_detector") as proc, \
            grpc.aio.insecure_channel(proc.address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == HEALTH_SERVING
        start = time.perf_counter()
        proc.process.send_signal(signal.SIGTERM)
        assert (await asyncio.wait_for(watch.read(), 5)).status == HEALTH_NOT_SERVING
        exit_code = await asyncio.to_thread(proc.process.wait, WATCH_GRACE_S + 30)
        exit_s = time.perf_counter() - start
    record("shutdown", idle_exit_with_open_watch_s=figure(exit_s, "s", f"well under grace {WATCH_GRACE_S:.0f}",
                                                          exit_s < WATCH_GRACE_S / 2))
    assert exit_code == 0
    assert exit_s < WATCH_GRACE_S / 2, f"exit took {exit_s:.1f}s with grace {WATCH_GRACE_S}s"


@pytest.mark.timeout(120)
async def test_detection_process_keeps_updating_a_watch_when_another_watch_of_the_same_name_leaves(
        triton, tmp_path, record):
    """Two watchers of "" share one condition; the first one leaving must not orphan the
    second (it would hear of no change again, and hold SIGTERM for the whole grace)."""
    async with detection_process(triton.grpc_url, tmp_path, PRELABEL_SHUTDOWN_GRACE_S=WATCH_GRACE_S,
                                 PRELABEL_MODELS='["coco_detector"]',
                                 PRELABEL_DEFAULT_MODEL="coco_detector") as proc, \
            grpc.aio.insecure_channel(proc.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        leaving = health.Watch(health_pb2.HealthCheckRequest(service=""))
        staying = health.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await leaving.read()).status == HEALTH_SERVING
        assert (await staying.read()).status == HEALTH_SERVING
        leaving.cancel()
        # The server has seen the cancellation once a fresh call on the channel completes
        # after it (calls on one channel are handled in order of arrival per connection).
        await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        start = time.perf_counter()
        proc.process.send_signal(signal.SIGTERM)
        update = await asyncio.wait_for(staying.read(), 5)
        exit_code = await asyncio.to_thread(proc.process.wait, WATCH_GRACE_S + 30)
        exit_s = time.perf_counter() - start
    record("shutdown", exit_after_one_of_two_watches_left_s=figure(
        exit_s, "s", f"well under grace {WATCH_GRACE_S:.0f}", exit_s < WATCH_GRACE_S / 2))
    assert update.status == HEALTH_NOT_SERVING
    assert exit_code == 0
    assert exit_s < WATCH_GRACE_S / 2, f"exit took {exit_s:.1f}s with grace {WATCH_GRACE_S}s"
