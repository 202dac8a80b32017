"""The append-only journal of a bulk run: one JSON line per finished image.

Format (`DIR/journal.jsonl`, UTF-8, one object per line, `\\n`-terminated):

    {"v": 1, "image_id": "...", "status": "ok", "response": {PreLabelResponse as proto JSON}}
    {"v": 1, "image_id": "...", "status": "rejected", "reason": "INVALID_ARGUMENT: ..."}

plus `path` (the file read) and `finished_at` (UTC, ISO 8601). `ok` holds the image's full
result (`google.protobuf.json_format`, proto field names); `rejected` marks an image that can
never be labelled (bad image, unreadable file), so a restart does not try it again.

Commit rule: a record counts iff its line is complete (ends with a newline) and parses.
Every record is written with one `write` call and flushed to the OS at once, so a killed
process (SIGKILL at any point) loses at most the record being written: on open, a torn last
line (no newline) is cut off before anything is appended, and any other line that does not
parse is skipped. Records are fsync'd in small batches (every `sync_every` records or
`sync_interval_s` seconds, and on close), which bounds what a power loss can take back; work
taken back is simply done again. An image id may appear more than once (e.g. after a crash
between a write and its fsync on some file systems); readers take the last record.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from google.protobuf import json_format

from prelabel.v1 import prelabel_pb2

log = logging.getLogger(__name__)

JOURNAL_VERSION = 1
STATUS_OK = "ok"
STATUS_REJECTED = "rejected"
_STATUSES = (STATUS_OK, STATUS_REJECTED)


@dataclass(frozen=True)
class Entry:
    """Where the last record of an image lies in the journal, and its status."""

    offset: int
    status: str


@dataclass
class Recovery:
    """What opening the journal found."""

    records: int = 0
    corrupt_lines: int = 0
    torn_tail_bytes: int = 0


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("image_id"), str)
        or record.get("status") not in _STATUSES
        or (record["status"] == STATUS_OK and not isinstance(record.get("response"), dict))
    ):
        return None
    return record


def fsync_dir(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """Open (creating or recovering) the journal at `path`; append records; look up the
    last record of each image."""

    def __init__(self, path: str | os.PathLike, *, sync_every: int = 16, sync_interval_s: float = 1.0):
        self.path = os.fspath(path)
        self.sync_every = sync_every
        self.sync_interval_s = sync_interval_s
        self.index: dict[str, Entry] = {}
        self.recovery = Recovery()
        created = not os.path.exists(self.path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        if created:
            fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        self._end = self._recover()
        self._unsynced = 0
        self._last_sync = time.monotonic()

    # ------------------------------------------------------------------ reading

    def _recover(self) -> int:
        """Index every committed record; cut off a torn last line. Returns the end offset."""
        offset = 0
        with open(self.path, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    self.recovery.torn_tail_bytes = len(line)
                    break
                record = _parse(line)
                if record is None:
                    self.recovery.corrupt_lines += 1
                else:
                    self.recovery.records += 1
                    self.index[record["image_id"]] = Entry(offset, record["status"])
                offset += len(line)
        if self.recovery.torn_tail_bytes:
            log.warning("journal %s: ignoring a torn last record (%d bytes)", self.path,
                        self.recovery.torn_tail_bytes)
            os.ftruncate(self._fd, offset)
            os.fsync(self._fd)
        if self.recovery.corrupt_lines:
            log.warning("journal %s: skipped %d unreadable lines", self.path, self.recovery.corrupt_lines)
        return offset

    def done_ids(self) -> set[str]:
        return set(self.index)

    def read(self, image_id: str) -> dict[str, Any]:
        """The last committed record of `image_id` (KeyError when none)."""
        entry = self.index[image_id]
        with open(self.path, "rb") as fh:
            fh.seek(entry.offset)
            record = _parse(fh.readline())
        if record is None or record["image_id"] != image_id:
            raise RuntimeError(f"journal {self.path} changed under us at offset {entry.offset}")
        return record

    def records(self, image_ids: list[str]) -> Iterator[dict[str, Any]]:
        """The last records of `image_ids` that have one, in that order, one file handle."""
        with open(self.path, "rb") as fh:
            for image_id in image_ids:
                entry = self.index.get(image_id)
                if entry is None:
                    continue
                fh.seek(entry.offset)
                record = _parse(fh.readline())
                if record is None or record["image_id"] != image_id:
                    raise RuntimeError(f"journal {self.path} changed under us at offset {entry.offset}")
                yield record

    # ------------------------------------------------------------------ writing

    def append(self, record: dict[str, Any]) -> None:
        """Append one record (must carry image_id and status); durable per the batch rule."""
        if not isinstance(record.get("image_id"), str) or record.get("status") not in _STATUSES:
            raise ValueError(f"not a valid journal record: keys {sorted(record)}")
        record = {"v": JOURNAL_VERSION, **record}
        data = (json_text(record, separators=(",", ":")) + "\n").encode("utf-8")
        start = self._end
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except BaseException:
            # Never leave a torn line for the next record to be glued onto.
            os.ftruncate(self._fd, start)
            raise
        self._end = start + len(data)
        self.index[record["image_id"]] = Entry(start, record["status"])
        self._unsynced += 1
        if self._unsynced >= self.sync_every or time.monotonic() - self._last_sync >= self.sync_interval_s:
            self.sync()

    def append_ok(self, image_id: str, path: str, response: prelabel_pb2.PreLabelResponse) -> None:
        self.append({
            "image_id": image_id,
            "status": STATUS_OK,
            "path": path,
            "finished_at": _now(),
            "response": json_format.MessageToDict(response, preserving_proto_field_name=True),
        })

    def append_rejected(self, image_id: str, path: str, reason: str) -> None:
        self.append({
            "image_id": image_id, "status": STATUS_REJECTED, "path": path,
            "finished_at": _now(), "reason": reason,
        })

    def sync(self) -> None:
        if self._unsynced:
            os.fsync(self._fd)
            self._unsynced = 0
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def json_text(value: Any, **dumps_options: Any) -> str:
    """JSON with non-ASCII text as it is, unless some string is not UTF-8 (a file name's
    surrogate escapes, see prelabel.inputs): then all of it \\u-escaped, which stays valid
    UTF-8 and reads back (json.loads) as the same string."""
    text = json.dumps(value, ensure_ascii=False, **dumps_options)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, **dumps_options)
    return text


def response_of(record: dict[str, Any]) -> prelabel_pb2.PreLabelResponse:
    """The PreLabelResponse stored in an `ok` record."""
    return json_format.ParseDict(record["response"], prelabel_pb2.PreLabelResponse(), ignore_unknown_fields=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
