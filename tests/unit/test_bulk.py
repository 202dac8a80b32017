"""The bulk loop of `prelabel annotate` under faults the real router cannot be made to
produce on demand (loopback PreLabeler double), and its outcome classification."""
from __future__ import annotations

import grpc
import pytest

from prelabel.bulk import (
    OK,
    REJECTED,
    RETRY,
    BulkOptions,
    BulkRunner,
    classify,
    read_image,
)
from prelabel.inputs import InputImage
from prelabel.journal import STATUS_OK, STATUS_REJECTED, Journal
from prelabel.sdk import PreLabelClient, parse_tasks
from prelabel.v1 import prelabel_pb2
from services.embedded_triton.launcher import free_port
from tests.unit.prelabeler_double import PreLabelerDouble, answer, serve

pytestmark = pytest.mark.timeout(60)

TASKS = parse_tasks("detect,faces")


def images(tmp_path, n=10, names=None):
    out = []
    for name in names or [f"img-{i}.jpg" for i in range(n)]:
        (tmp_path / name).write_bytes(b"jpeg bytes of " + name.encode())
        out.append(InputImage(name, str(tmp_path / name)))
    return out


def options(**kw):
    defaults = {"tasks": TASKS, "window": 3, "timeout_s": 5, "attempts": 3, "connect_timeout_s": 2,
                "retry_backoff_s": 0.01, "max_backoff_s": 0.05, "reconnect_backoff_s": 0.01,
                "probe_interval_s": 0.01, "max_probe_interval_s": 0.05}
    return BulkOptions(**{**defaults, **kw})


def journal_lines(path):
    return [line for line in path.read_bytes().splitlines()]


async def run(address, tmp_path, todo, **kw):
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        async with PreLabelClient(address) as client:
            tally = await BulkRunner(client, journal, options(**kw)).run(todo)
    return tally, Journal(path)


async def test_bulk_runner_labels_every_image_once_when_streams_keep_breaking(tmp_path):
    double = PreLabelerDouble(break_stream_after=2)
    todo = images(tmp_path / "", 12)
    async with serve(double) as address:
        tally, journal = await run(address, tmp_path, todo)
    assert tally.ok == 12 and not tally.failures
    assert {e.status for e in journal.index.values()} == {STATUS_OK}
    assert len(journal.index) == len(journal_lines(tmp_path / "journal.jsonl")) == 12  # no image twice
    assert double.streams >= 3
    # Images that were outstanding when a stream broke went over the unary call.
    assert double.unary_attempts


async def test_bulk_runner_finishes_outstanding_images_over_unary_when_stream_stalls(tmp_path):
    double = PreLabelerDouble(stall=True)
    todo = images(tmp_path, 5)
    async with serve(double) as address:
        tally, journal = await run(address, tmp_path, todo, window=2, stall_timeout_s=0.3,
                                   max_stream_breaks=3)
    # Each stream stalls on its first image; the window's images are labelled over unary
    # calls, so every stream makes progress until all are done.
    assert tally.ok == 5 and not tally.failures
    assert sum(double.unary_attempts.values()) == 5
    assert len(journal.index) == 5


async def test_bulk_runner_halves_window_when_router_reports_overload(tmp_path, caplog):
    double = PreLabelerDouble(overloaded_answers=2, delay_s=0.01)
    todo = images(tmp_path, 20)
    caplog.set_level("INFO", logger="prelabel.bulk")
    async with serve(double) as address:
        tally, journal = await run(address, tmp_path, todo, window=4)
    assert tally.ok == 20 and not tally.failures
    shrunk = [r.getMessage() for r in caplog.records if r.getMessage().startswith("overloaded")]
    assert shrunk == ["overloaded: window now 2 images", "overloaded: window now 1 images"]
    assert len(journal.index) == 20


async def test_bulk_runner_rejects_image_when_every_task_says_invalid_argument(tmp_path):
    double = PreLabelerDouble(task_code_for={"bad": grpc.StatusCode.INVALID_ARGUMENT})
    todo = images(tmp_path, names=["ok-1.jpg", "bad.jpg", "ok-2.jpg"])
    async with serve(double) as address:
        tally, journal = await run(address, tmp_path, todo)
    assert (tally.ok, tally.rejected) == (2, 1)
    assert journal.index["bad.jpg"].status == STATUS_REJECTED
    assert "INVALID_ARGUMENT" in journal.read("bad.jpg")["reason"]
    assert double.stream_received["bad.jpg"] == 1  # never tried again


async def test_bulk_runner_reports_failure_after_attempts_when_a_task_keeps_failing(tmp_path):
    double = PreLabelerDouble(task_code_for={"flaky": grpc.StatusCode.INTERNAL})
    todo = images(tmp_path, names=["ok.jpg", "flaky.jpg"])
    async with serve(double) as address:
        tally, journal = await run(address, tmp_path, todo, attempts=3)
    assert tally.ok == 1 and list(tally.failures) == ["flaky.jpg"]
    assert tally.failures["flaky.jpg"].attempts == 3
    assert double.stream_received["flaky.jpg"] == 3
    assert "flaky.jpg" not in journal.index  # left for the next run


async def test_bulk_runner_holds_image_without_spending_attempts_when_a_task_stays_unavailable(tmp_path):
    double = PreLabelerDouble(task_code_for={"down": grpc.StatusCode.UNAVAILABLE})
    todo = images(tmp_path, names=["ok.jpg", "down.jpg"])
    async with serve(double) as address:
        tally, journal = await run(address, tmp_path, todo, attempts=3, patience_s=0.5)
    assert tally.ok == 1 and list(tally.failures) == ["down.jpg"]
    assert double.stream_received["down.jpg"] > 3  # probed past its attempts, one at a time
    assert double.max_outstanding <= 3
    assert "the suite was unavailable for over 0.5s" in tally.failures["down.jpg"].reason
    assert "down.jpg" not in journal.index


async def test_bulk_runner_reports_every_image_when_router_is_unreachable(tmp_path):
    todo = images(tmp_path, 4)
    tally, journal = await run(f"127.0.0.1:{free_port()}", tmp_path, todo,
                               connect_timeout_s=0.3, max_stream_breaks=2, patience_s=1.0)
    assert sorted(tally.failures) == sorted(im.image_id for im in todo)
    assert all("the suite was unavailable for over 1s" in f.reason for f in tally.failures.values())
    assert not journal.index


async def test_bulk_runner_rejects_image_without_a_call_when_file_is_missing(tmp_path):
    double = PreLabelerDouble()
    todo = images(tmp_path, 2) + [InputImage("gone.jpg", str(tmp_path / "gone.jpg"))]
    async with serve(double) as address:
        tally, journal = await run(address, tmp_path, todo)
    assert (tally.ok, tally.rejected) == (2, 1)
    assert "unreadable" in journal.read("gone.jpg")["reason"]
    assert "gone.jpg" not in double.stream_received


def test_classify_retries_when_failed_tasks_mix_permanent_and_passing_codes():
    request = prelabel_pb2.PreLabelRequest(tasks=TASKS)
    request.image.image_id = "a"
    assert classify(answer(request)).kind == OK
    assert classify(answer(request, grpc.StatusCode.INVALID_ARGUMENT)).kind == REJECTED
    mixed = answer(request)
    mixed.task_results[0].status = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    mixed.task_results[1].status = grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert classify(mixed).kind == RETRY
    sizeless = answer(request)
    sizeless.ClearField("image_size")
    assert classify(sizeless).kind == RETRY


def test_classify_reads_the_status_code_not_its_name():
    request = prelabel_pb2.PreLabelRequest(tasks=TASKS)
    failed = answer(request)
    failed.task_results[0].status = grpc.StatusCode.UNAVAILABLE.value[0]  # the name still says "OK"
    outcome = classify(failed)
    assert outcome.kind == RETRY and "UNAVAILABLE" in outcome.reason


def test_classify_backs_off_when_a_task_is_overloaded_and_rejects_when_it_hit_a_size_limit():
    request = prelabel_pb2.PreLabelRequest(tasks=TASKS)
    overloaded = answer(request, grpc.StatusCode.RESOURCE_EXHAUSTED)
    for result in overloaded.task_results:
        result.retry_after_ms = 200
    outcome = classify(overloaded)
    assert outcome.kind == RETRY and outcome.overload
    size_limit = answer(request, grpc.StatusCode.RESOURCE_EXHAUSTED)  # no retry hint
    outcome = classify(size_limit)
    assert outcome.kind == REJECTED and not outcome.overload


def test_read_image_rejects_when_file_is_over_the_limit(tmp_path):
    (tmp_path / "big.jpg").write_bytes(b"x" * 11)
    outcome = read_image(InputImage("big.jpg", str(tmp_path / "big.jpg")), max_bytes=10)
    assert outcome.kind == REJECTED
    assert read_image(InputImage("big.jpg", str(tmp_path / "big.jpg")), max_bytes=11) == b"x" * 11
    assert read_image(InputImage("x" * 513, str(tmp_path / "big.jpg")), max_bytes=11).kind == REJECTED
