"""The bulk labelling loop behind `prelabel annotate`: stream images to the router with a
bounded window, journal every finished image, retry what failed for a passing reason.

Why the streaming RPC: the router serves PreLabelStream at bulk priority, so Triton serves
annotators' unary PreLabel calls first, and it reads a new image only when it has room, so
the router sets the pace. The window (`--concurrency`) bounds how many images are read and
outstanding at once, so memory stays flat; it is halved whenever an image fails with
DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED (the suite is overloaded) and grows back by one
after as many successes in a row (AIMD).

Failures, per image, by the status table (prelabel.core.status):
- every failed task (or the call itself) says INVALID_ARGUMENT / OUT_OF_RANGE (a bad
  image) or RESOURCE_EXHAUSTED without a retry hint (a size limit, not overload), the file
  cannot be read, or it is larger than the limit: *rejected*, journaled, never tried again;
- UNAVAILABLE (from a task, the call, the stream, or a router that cannot be reached): the
  suite or a part of it is down (Triton restarting, a rollout). The image waits, its
  attempts untouched, and the whole run backs off through a circuit (prelabel.circuit):
  one probe image at a time until the suite answers again, then the window grows back from
  one image as after overload. After `patience_s` down without a success, the run gives up
  and reports what is left as failures;
- any other task error (DEADLINE_EXCEEDED, INTERNAL, ...): tried again after a backoff,
  up to `attempts` times in this run, then reported as a *failure* and left unjournaled,
  so the next run tries it again;
- the codes the table says stop a run (UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED:
  no request of this run can succeed), for an image or for the stream: the run ends at
  once (`Tally.stopped` says why); the images in flight are finished, nothing else is sent.
A stream that breaks, stalls or ends early costs nothing already answered: the images it
still had outstanding are retried each over its own unary PreLabel call (so an image that
breaks the stream is isolated and gets its own status), the rest go on a new stream after
a backoff. After `max_stream_breaks` breaks in a row without progress (not counting those
that say the suite is down), the run gives up and reports what is left as failures.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace

import grpc

from prelabel.circuit import Circuit
from prelabel.core.limits import MAX_IMAGE_BYTES, MAX_IMAGE_ID_BYTES
from prelabel.core.status import Action, error_action, task_action, task_code
from prelabel.inputs import InputImage
from prelabel.journal import Journal
from prelabel.sdk import TASK_NAMES, PreLabelClient, StreamStalled
from prelabel.v1 import common_pb2, prelabel_pb2

log = logging.getLogger(__name__)

#: File errors that make an image unreadable for good (others, e.g. EIO, are retried).
PERMANENT_ERRNOS = frozenset({errno.ENOENT, errno.EACCES, errno.EISDIR, errno.ENOTDIR, errno.ELOOP})

OK, REJECTED, RETRY, STOP = "ok", "rejected", "retry", "stop"


@dataclass(frozen=True)
class Outcome:
    kind: str  # OK / REJECTED / RETRY / STOP
    reason: str = ""
    response: prelabel_pb2.PreLabelResponse | None = None
    overload: bool = False  # RETRY because the suite is overloaded
    unavailable: bool = False  # RETRY because the suite (or a part of it) is down


@dataclass(frozen=True)
class Failure:
    """An image this run could not label (transient: the next run tries it again)."""

    image_id: str
    path: str
    reason: str
    attempts: int


@dataclass
class BulkOptions:
    tasks: list[prelabel_pb2.Task]
    window: int = 8
    score_threshold: float | None = None
    cascade: bool = False
    include_polygons: bool = False
    #: Review policy sent with every image (`--review-policy FILE`); None: the router's.
    review_policy: common_pb2.ReviewPolicy | None = None
    #: Unary deadline per image; a stream with images outstanding that stays silent for
    #: `stall_timeout_s` (derived from it) is abandoned.
    timeout_s: float = 120.0
    #: Attempts per image in one run for transient failures.
    attempts: int = 5
    max_image_bytes: int = MAX_IMAGE_BYTES
    connect_timeout_s: float = 30.0
    max_stream_breaks: int = 5
    #: Per-image retry backoff: retry_backoff_s * 2^(attempt-1), at most max_backoff_s.
    retry_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    #: Backoff before a new stream after a break: reconnect_backoff_s * 2^breaks, <= 10 s.
    reconnect_backoff_s: float = 0.25
    #: How long the run holds its images while the suite answers UNAVAILABLE before it
    #: gives up on them; probes while down: every probe_interval_s, doubling, at most
    #: max_probe_interval_s apart.
    patience_s: float = 600.0
    probe_interval_s: float = 1.0
    max_probe_interval_s: float = 5.0

    #: Silence (no response while images are outstanding) after which a stream is
    #: abandoned; default 1.5 x timeout_s + 5 s, longer than the router's own per-image
    #: deadline, so a slow image comes back as DEADLINE_EXCEEDED rather than a stall.
    stall_timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.stall_timeout_s is None:
            self.stall_timeout_s = self.timeout_s * 1.5 + 5.0

    def request_options(self) -> dict:
        return {"score_threshold": self.score_threshold, "cascade": self.cascade,
                "include_polygons": self.include_polygons, "review_policy": self.review_policy}


def classify(response: prelabel_pb2.PreLabelResponse) -> Outcome:
    """OK when every task succeeded; REJECTED when every failed task failed for a reason
    the image cannot outgrow; RETRY otherwise."""
    failed = [(r, action) for r in response.task_results if (action := task_action(r)) is not Action.DONE]
    if not failed:
        if not (response.image_size.width and response.image_size.height):
            return Outcome(RETRY, "response without image_size")
        return Outcome(OK, response=response)
    reason = "; ".join(f"{TASK_NAMES.get(r.task, r.task)}: {task_code(r).name}: {r.message}"
                       for r, _ in failed)
    return _outcome([action for _, action in failed], reason)


def classify_error(exc: grpc.aio.AioRpcError) -> Outcome:
    """A failed call's outcome. RESOURCE_EXHAUSTED is overload only when it carries the
    suite's retry hint; without one it is a size limit (a message over gRPC's receive
    limit, trailers over the metadata limit), which no retry can change."""
    code = exc.code()
    reason = f"{code.name}: {exc.details()}"
    action = error_action(exc)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and action is Action.REJECT:
        reason += " (a size limit: no retry hint)"
    return _outcome([action], reason)


def _outcome(actions: list[Action], reason: str) -> Outcome:
    """STOP when any failure says no request can succeed; REJECTED when every failure is
    the image's own; RETRY otherwise, overloaded when any failure says so."""
    if any(a is Action.STOP for a in actions):
        return Outcome(STOP, reason)
    kind = REJECTED if all(a is Action.REJECT for a in actions) else RETRY
    return Outcome(kind, reason, overload=any(a is Action.BACKOFF for a in actions),
                   unavailable=any(a is Action.WAIT for a in actions))


def read_image(image: InputImage, max_bytes: int) -> bytes | Outcome:
    """The image's bytes, or the Outcome that ends it without a call."""
    try:
        id_bytes = len(image.image_id.encode("utf-8"))
    except UnicodeEncodeError:  # a file name that is not UTF-8 (surrogate escapes)
        return Outcome(REJECTED, "file name is not valid UTF-8, which an image id must be: rename the file")
    if id_bytes > MAX_IMAGE_ID_BYTES:
        return Outcome(REJECTED, f"image id is longer than {MAX_IMAGE_ID_BYTES} bytes")
    try:
        with open(image.path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        kind = REJECTED if exc.errno in PERMANENT_ERRNOS else RETRY
        return Outcome(kind, f"unreadable: {exc.strerror or exc}")
    if len(data) > max_bytes:
        return Outcome(REJECTED, f"file is larger than {max_bytes} bytes")
    return data


@dataclass
class Tally:
    ok: int = 0
    rejected: int = 0
    failures: dict[str, Failure] = field(default_factory=dict)
    #: Why the run stopped early because no request could succeed (a STOP code), or None.
    stopped: str | None = None


class BulkRunner:
    """Labels images through `client`, journaling each finished one."""

    def __init__(self, client: PreLabelClient, journal: Journal, options: BulkOptions,
                 on_done: Callable[[str], None] = lambda kind: None):
        self.client = client
        self.journal = journal
        self.options = options
        self.on_done = on_done  # called once per image that leaves the run (ok/rejected/failed)
        self.tally = Tally()
        self._queue: deque[InputImage] = deque()
        self._suspects: deque[InputImage] = deque()
        self._attempts: dict[str, int] = {}
        self._delayed = 0
        self._changed = asyncio.Event()
        self._stopping = False
        self._last_error = ""
        # Images allowed in flight now: halved on overload, +1 after that many successes
        # in a row, never above options.window (AIMD, as TCP does).
        self.limit = options.window
        self._successes = 0
        self.circuit = Circuit(options.patience_s, options.probe_interval_s, options.max_probe_interval_s)
        self._gave_up: str | None = None  # why the run ended before its images did (patience)

    def stop(self) -> None:
        """Take no new image; the images already sent are still finished."""
        self._stopping = True
        self._changed.set()

    # ------------------------------------------------------------------ outcomes

    def _finish(self, image: InputImage, outcome: Outcome) -> None:
        was_probe = self.circuit.answered(image.image_id)
        if outcome.kind == OK:
            assert outcome.response is not None  # classify() sets it on every OK
            if self.circuit.up():
                log.warning("the suite answers again: resuming with 1 image in flight")
                self.limit, self._successes = 1, 0
            self.journal.append_ok(image.image_id, image.path, outcome.response)
            self.tally.ok += 1
            self._successes += 1
            if self._successes >= self.limit and self.limit < self.options.window:
                self.limit += 1
                self._successes = 0
            self.on_done(OK)
            return
        if outcome.kind == REJECTED:
            log.warning("rejected %s: %s", image.image_id, outcome.reason)
            self.journal.append_rejected(image.image_id, image.path, outcome.reason)
            self.tally.rejected += 1
            self.on_done(REJECTED)
            return
        if outcome.kind == STOP:
            self._stop_run(outcome.reason)
        if outcome.unavailable and not self._stopping:
            if self._suite_down(outcome.reason, was_probe):
                self._queue.appendleft(image)  # waits for the suite, its attempts untouched
                self._changed.set()
                return
            outcome = replace(outcome, reason=f"not labelled: {self._gave_up}")
        if outcome.overload and self.limit > 1:
            self.limit //= 2
            self._successes = 0
            log.info("overloaded: window now %d images", self.limit)
        attempts = self._attempts.get(image.image_id, 0) + 1
        self._attempts[image.image_id] = attempts
        if attempts >= self.options.attempts or self._stopping:
            log.warning("failed %s after %d attempts: %s", image.image_id, attempts, outcome.reason)
            self.tally.failures[image.image_id] = Failure(image.image_id, image.path, outcome.reason, attempts)
            self.on_done("failed")
            return
        delay = min(self.options.retry_backoff_s * 2 ** (attempts - 1), self.options.max_backoff_s)
        log.info("retrying %s in %.1fs (attempt %d): %s", image.image_id, delay, attempts + 1, outcome.reason)
        self._delayed += 1
        asyncio.get_running_loop().call_later(delay, self._requeue, image)

    def _stop_run(self, reason: str) -> None:
        """A STOP code: no request of this run can succeed (credentials, permissions)."""
        if self.tally.stopped is None:
            log.error("stopping the run: %s", reason)
            self.tally.stopped = reason
        self.stop()

    def _suite_down(self, reason: str, probe_failed: bool) -> bool:
        """UNAVAILABLE: open the circuit (or back off its probes). False, and the run
        ends, once the suite has been down longer than the run's patience."""
        opening = not self.circuit.open
        if self.circuit.down(probe_failed):
            if opening:
                log.warning("the suite is unavailable (%s): holding the images, probing with one "
                            "until it answers (patience %gs)", reason, self.options.patience_s)
            elif probe_failed:
                log.info("the suite is still unavailable after %.0fs (%s)", self.circuit.down_for_s(), reason)
            return True
        if self._gave_up is None:
            self._gave_up = (f"the suite was unavailable for over {self.options.patience_s:g}s "
                             f"(the run's patience; last: {reason})")
            log.error("giving up: %s", self._gave_up)
        self.stop()
        return False

    def _send_delay(self, in_flight: int) -> float | None:
        """0: an image may go now; > 0: one may go after that long (the suite is down: one
        probe at a time); None: not before an answer (the window is full)."""
        if not self.circuit.open:
            return 0.0 if in_flight < self.limit else None
        return None if in_flight else self.circuit.probe_delay()

    def _requeue(self, image: InputImage) -> None:
        self._delayed -= 1
        self._queue.append(image)
        self._changed.set()

    # ------------------------------------------------------------------ calls

    async def _unary(self, image: InputImage) -> None:
        data = await asyncio.to_thread(read_image, image, self.options.max_image_bytes)
        if isinstance(data, Outcome):
            self._finish(image, data)
            return
        try:
            response = await self.client.prelabel(
                data, image.image_id, self.options.tasks, timeout_s=self.options.timeout_s,
                **self.options.request_options())
        except grpc.aio.AioRpcError as exc:
            self._finish(image, classify_error(exc))
            return
        self._finish(image, classify(response))

    async def _stream_session(self, inflight: dict[str, InputImage]) -> None:
        """One stream over the queue; returns when the queue is drained and every image
        answered. `inflight` is filled with the images sent and not yet answered."""

        async def items() -> AsyncIterator[tuple[str, bytes]]:
            while not self._stopping:
                delay = self._send_delay(len(inflight)) if self._queue else None
                if delay == 0.0:
                    image = self._queue.popleft()
                    try:
                        data = await asyncio.to_thread(read_image, image, self.options.max_image_bytes)
                    except BaseException:  # the stream went away while reading: keep the image
                        self._queue.appendleft(image)
                        raise
                    if isinstance(data, Outcome):
                        self._finish(image, data)
                        continue
                    if self.circuit.open:
                        self.circuit.probe_sent(image.image_id)
                    inflight[image.image_id] = image
                    yield image.image_id, data
                elif inflight or self._delayed or self._queue:
                    self._changed.clear()
                    with contextlib.suppress(asyncio.TimeoutError):  # the next probe is due
                        await asyncio.wait_for(self._changed.wait(), delay)
                else:
                    return

        await self.client.wait_ready(self.options.connect_timeout_s)
        responses = self.client.stream(
            items(), self.options.tasks, window=self.options.window,
            idle_timeout_s=self.options.stall_timeout_s, **self.options.request_options())
        async with contextlib.aclosing(responses):
            async for response in responses:
                image = inflight.pop(response.image_id, None)
                if image is None:
                    log.warning("ignoring a response for %r, which was not outstanding", response.image_id)
                    continue
                self._finish(image, classify(response))
                self._changed.set()

    async def _isolate_suspects(self) -> None:
        """Label the images a broken stream left outstanding, each over its own call."""
        suspects = list(self._suspects)  # at most one window's worth
        self._suspects.clear()
        await asyncio.gather(*(self._unary(image) for image in suspects))

    async def run(self, images: list[InputImage]) -> Tally:
        self._queue.extend(images)
        breaks = 0
        while (self._queue or self._suspects or self._delayed) and not self._stopping:
            done_before = self.tally.ok + self.tally.rejected
            if self._suspects:
                await self._isolate_suspects()
            if not (self._queue or self._delayed) or self._stopping:
                continue
            inflight: dict[str, InputImage] = {}
            try:
                await self._stream_session(inflight)
                if inflight:
                    raise StreamStalled(f"stream ended with {len(inflight)} images unanswered")
            except (grpc.aio.AioRpcError, StreamStalled, asyncio.TimeoutError) as exc:
                self._last_error = _describe(exc)
                action = error_action(exc) if isinstance(exc, grpc.aio.AioRpcError) else None
                if action is Action.STOP:
                    self._suspects.extend(inflight.values())
                    self._stop_run(self._last_error)
                    break
                if action is Action.WAIT or isinstance(exc, asyncio.TimeoutError):  # the router is down
                    self._suspects.extend(inflight.values())
                    if not self._suite_down(self._last_error, probe_failed=True):
                        break
                    await asyncio.sleep(self.circuit.probe_delay() or 0.0)
                    continue
                log.warning("stream broke (%s); the %d images it had outstanding go over unary calls",
                            self._last_error, len(inflight))
                self._suspects.extend(inflight.values())
                progressed = self.tally.ok + self.tally.rejected > done_before
                breaks = 0 if progressed else breaks + 1
                if breaks >= self.options.max_stream_breaks:
                    await self._isolate_suspects()  # they were sent once; give them their own try
                    break
                await asyncio.sleep(min(self.options.reconnect_backoff_s * 2 ** breaks, 10.0))
        self._give_up_on_rest()
        return self.tally

    def _give_up_on_rest(self) -> None:
        if self.tally.stopped is not None:
            reason = f"not labelled: run stopped ({self.tally.stopped})"
        elif self._gave_up is not None:
            reason = f"not labelled: {self._gave_up}"
        else:
            reason = "not labelled: " + ("run interrupted" if self._stopping else f"router unavailable ({self._last_error})")
        # Delayed retries still pending when we stop are left for the next run too; they are
        # in no list here, which is fine: anything unjournaled is simply done next time.
        for image in [*self._suspects, *self._queue]:
            self.tally.failures[image.image_id] = Failure(
                image.image_id, image.path, reason, self._attempts.get(image.image_id, 0))
        self._suspects.clear()
        self._queue.clear()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    if isinstance(exc, asyncio.TimeoutError):
        return "router not reachable"
    return str(exc)
