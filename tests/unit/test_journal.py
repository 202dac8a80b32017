"""The bulk journal: committed records survive crashes, torn tails are cut off."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from prelabel.journal import STATUS_OK, STATUS_REJECTED, Journal, response_of
from prelabel.v1 import common_pb2, prelabel_pb2

pytestmark = pytest.mark.timeout(60)


def response(image_id: str, counts: bytes = b"PPYo0") -> prelabel_pb2.PreLabelResponse:
    r = prelabel_pb2.PreLabelResponse(image_id=image_id, image_size=common_pb2.ImageSize(width=4, height=3))
    inst = r.masks.add()
    inst.detection.box.x_max = 2.5
    inst.detection.score = 0.75
    inst.mask.size.extend([3, 4])
    inst.mask.counts = counts
    return r


def write(path, n: int, start: int = 0) -> None:
    with Journal(path) as journal:
        for i in range(start, start + n):
            journal.append_ok(f"img-{i}", f"/data/img-{i}.jpg", response(f"img-{i}"))


def test_journal_ignores_torn_last_line_when_writer_died_mid_record(tmp_path):
    path = tmp_path / "journal.jsonl"
    write(path, 3)
    intact = path.stat().st_size
    with open(path, "ab") as fh:
        fh.write(b'{"v":1,"image_id":"img-3","status":"ok","response":{"image_id":"im')
    journal = Journal(path)
    assert journal.done_ids() == {"img-0", "img-1", "img-2"}
    assert journal.recovery.torn_tail_bytes > 0
    assert path.stat().st_size == intact  # cut off before anything is appended
    journal.append_ok("img-3", "/data/img-3.jpg", response("img-3"))
    journal.close()
    reopened = Journal(path)
    assert reopened.done_ids() == {f"img-{i}" for i in range(4)}
    assert reopened.recovery.corrupt_lines == 0 and reopened.recovery.torn_tail_bytes == 0
    assert response_of(reopened.read("img-3")) == response("img-3")


def test_journal_ignores_complete_json_when_its_newline_is_missing(tmp_path):
    path = tmp_path / "journal.jsonl"
    write(path, 1)
    with open(path, "ab") as fh:  # a whole record but no newline: not committed
        fh.write(json.dumps({"v": 1, "image_id": "img-9", "status": "rejected", "reason": "x"}).encode())
    assert Journal(path).done_ids() == {"img-0"}


def test_journal_skips_line_when_a_middle_line_is_garbage(tmp_path):
    path = tmp_path / "journal.jsonl"
    write(path, 1)
    with open(path, "ab") as fh:
        fh.write(b"\0\0\0\0\n")  # e.g. zero-filled block after a crash
        fh.write(b'{"v":1,"image_id":"img-x","status":"weird"}\n')
    write(path, 1, start=1)
    journal = Journal(path)
    assert journal.done_ids() == {"img-0", "img-1"}
    assert journal.recovery.corrupt_lines == 2


def test_journal_returns_last_record_when_an_image_is_journaled_twice(tmp_path):
    path = tmp_path / "journal.jsonl"
    with Journal(path) as journal:
        journal.append_rejected("a", "/a.jpg", "UNAVAILABLE")
        journal.append_ok("a", "/a.jpg", response("a", b"first"))
        journal.append_ok("a", "/a.jpg", response("a", b"second"))
    journal = Journal(path)
    assert journal.index["a"].status == STATUS_OK
    assert response_of(journal.read("a")).masks[0].mask.counts == b"second"
    assert [r["image_id"] for r in journal.records(["a", "missing"])] == ["a"]


def test_journal_round_trips_response_when_record_is_ok(tmp_path):
    path = tmp_path / "journal.jsonl"
    original = response("a", counts=bytes(range(33, 127)))
    with Journal(path) as journal:
        journal.append_ok("a", "/a.jpg", original)
        journal.append_rejected("b", "/b.jpg", "INVALID_ARGUMENT: image.data: not an image")
    journal = Journal(path)
    assert response_of(journal.read("a")) == original
    assert journal.read("b")["status"] == STATUS_REJECTED
    assert journal.read("b")["reason"].startswith("INVALID_ARGUMENT")


def test_journal_append_raises_when_record_has_no_valid_status(tmp_path):
    with Journal(tmp_path / "journal.jsonl") as journal, pytest.raises(ValueError):
        journal.append({"image_id": "a", "status": "done"})


WRITER = textwrap.dedent("""
    import sys
    from prelabel.journal import Journal
    from prelabel.v1 import prelabel_pb2
    journal = Journal(sys.argv[1], sync_every=1000, sync_interval_s=1000)
    payload = b"x" * 200_000  # big records: a kill is likely to land inside a write
    print("ready", flush=True)
    i = 0
    while True:
        r = prelabel_pb2.PreLabelResponse(image_id=str(i))
        r.masks.add().mask.counts = payload
        journal.append_ok(f"img-{i}", "p", r)
        i += 1
""")


@pytest.mark.parametrize("delay_s", [0.3, 0.55, 0.8])
def test_journal_keeps_every_committed_record_when_writer_is_sigkilled(tmp_path, delay_s):
    path = tmp_path / "journal.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(delay_s)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    journal = Journal(path)
    n = len(journal.index)
    assert n > 0
    assert journal.done_ids() == {f"img-{i}" for i in range(n)}  # a prefix, no hole
    assert journal.recovery.corrupt_lines == 0
    for record in journal.records([f"img-{i}" for i in range(n)]):
        assert len(response_of(record).masks[0].mask.counts) == 200_000
    assert path.read_bytes().endswith(b"\n")  # a torn tail, if any, was cut off


def test_journal_reads_back_a_name_that_is_not_utf8_when_reopened(tmp_path):
    image_id = os.fsdecode(b"caf\xe9.jpg")  # a surrogate escape
    with Journal(tmp_path / "j.jsonl") as journal:
        journal.append_rejected(image_id, image_id, "file name is not valid UTF-8")
        journal.append_rejected("café.jpg", "café.jpg", "bad image")
    raw = (tmp_path / "j.jsonl").read_bytes()
    raw.decode("utf-8")  # the file stays UTF-8
    assert "café".encode() in raw  # valid names are written as they are
    reopened = Journal(tmp_path / "j.jsonl")
    assert set(reopened.index) == {image_id, "café.jpg"}
    assert reopened.read(image_id)["path"] == image_id
