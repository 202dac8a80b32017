"""Thin gRPC adapter: unary PreLabel (interactive) and flow-controlled PreLabelStream (bulk)."""
from __future__ import annotations

import asyncio
import logging

import grpc

from prelabel.core.errors import InvalidArgument, PrelabelError, Unavailable
from prelabel.core.review import ReviewPolicy
from prelabel.core.status import status_of
from prelabel.v1 import common_pb2, prelabel_pb2, prelabel_pb2_grpc
from services.common.image_bytes import ImageBytesBudget
from services.common.interceptors import Admission, MalformedRequest, time_left
from services.common.metrics import Metrics
from services.common.receive_budget import ReceiveBudget
from services.common.served_policy import ServedPolicy
from services.router.downstream import Downstream
from services.router.fanout import prelabel
from services.router.plan import ALL_TASKS
from services.router.settings import RouterSettings

log = logging.getLogger(__name__)


class PreLabelerServicer(prelabel_pb2_grpc.PreLabelerServicer):
    def __init__(self, settings: RouterSettings, downstream: Downstream, metrics: Metrics,
                 admission: Admission, receive_budget: ReceiveBudget):
        self.settings, self.down, self.metrics = settings, downstream, metrics
        self.admission = admission  # the server's: each stream image takes a slot of it
        self.receive_budget = receive_budget  # the server's: each stream image is read under it
        self.image_bytes = ImageBytesBudget(settings.max_in_flight_image_bytes, settings.retry_after_ms)
        self.draining = asyncio.Event()
        self.policy = ServedPolicy.from_settings(settings, metrics)

    def served_policy(self) -> ReviewPolicy:
        """The policy a request without bands of its own runs under (plan.plan resolves
        the request's against it once, and forwards the result to the services)."""
        self.policy.maybe_reload()
        return self.policy.current.policy

    async def PreLabel(self, request, context):
        s = self.settings
        return await prelabel(request, self.down, self.metrics, served_policy=self.served_policy(),
                              timeout_s=time_left(context, s.default_timeout_s, s.min_time_left_s),
                              priority=common_pb2.PRIORITY_INTERACTIVE, min_time_left_s=s.min_time_left_s,
                              merge_margin_s=s.merge_margin_s, max_image_bytes=s.max_image_bytes,
                              image_bytes=self.image_bytes)

    def drain(self) -> None:
        """Shutdown began: open streams read no new image, finish those in flight, then
        end UNAVAILABLE so that their clients send the rest to another replica."""
        self.draining.set()

    async def PreLabelStream(self, request_iterator, context):  # noqa: ARG002 (read with context.read)
        """At most `stream_window` images in flight: the next request is read only
        after a result has been handed to gRPC, so memory stays bounded whatever the
        reader's speed. Per-image failures come back as task results, never end the stream.
        Each image in flight holds an admission slot (an idle stream holds none), and each
        is read under the receive budget (a reservation taken before the read, given back
        once parsed). A stream ends UNAVAILABLE once nothing is in flight when it has been
        idle for `stream_idle_timeout_s`, or for `stream_yield_idle_s` while its pending
        read holds room other calls wait for, or when shutdown begins."""
        s = self.settings
        loop = asyncio.get_running_loop()
        window = asyncio.Semaphore(s.stream_window)
        done: asyncio.Queue = asyncio.Queue()
        pending: set[asyncio.Task] = set()
        open_items = 0  # read and not yet written back
        holding_room = False  # a read is pending under a receive reservation

        async def one(request, index: int) -> prelabel_pb2.PreLabelResponse:
            try:
                if isinstance(request, MalformedRequest):
                    raise InvalidArgument("request", f"message {index} of the stream is not a valid "
                                                     f"{request.type_name}; the stream goes on")
                if not request.image.image_id:
                    raise InvalidArgument("image.image_id", f"required on PreLabelStream (message {index})")
                timeout = min(s.stream_item_timeout_s, time_left(context, s.stream_item_timeout_s))
                with self.admission.slot():
                    return await prelabel(request, self.down, self.metrics, served_policy=self.served_policy(),
                                          timeout_s=timeout,
                                          priority=common_pb2.PRIORITY_BULK, min_time_left_s=s.min_time_left_s,
                                          merge_margin_s=s.merge_margin_s, max_image_bytes=s.max_image_bytes,
                                          raise_when_all_failed=False, image_bytes=self.image_bytes)
            except PrelabelError as exc:
                return failed_response(request, exc)

        def on_done(t: asyncio.Task) -> None:
            pending.discard(t)
            done.put_nowait(t)

        async def read() -> bool:
            """True when the client finished sending; False when shutdown stopped the reading."""
            nonlocal open_items, holding_room
            index = 0
            while True:
                await window.acquire()
                if self.draining.is_set():
                    window.release()
                    return False
                async with self.receive_budget.receiving(None):  # waits; the stream's deadline bounds it
                    holding_room = True
                    try:
                        # context.read(), not the request iterator: gRPC's iterator keeps the
                        # message it gave out referenced while it waits for the next, so each
                        # open stream would hold its last image (32 streams: 1.1 GB).
                        request = await context.read()
                    finally:
                        holding_room = False
                if request is grpc.aio.EOF:
                    return True
                if self.draining.is_set():  # not started: the client sends it again elsewhere
                    window.release()
                    return False
                open_items += 1
                task = asyncio.create_task(one(request, index))
                pending.add(task)
                task.add_done_callback(on_done)
                index += 1
                del request, task  # the task holds the image while it runs, not this frame

        def idle_check_s(idle_s: float) -> float:
            """How long to wait before the next idle check (nothing in flight): a fraction
            of `stream_yield_idle_s`, since room may be held and calls begin to wait for
            it at any moment."""
            return max(min(s.stream_idle_timeout_s - idle_s, s.stream_yield_idle_s / 4), 0.0)

        def check_idle(idle_s: float) -> None:
            if idle_s >= s.stream_idle_timeout_s:
                raise Unavailable(f"stream idle for {s.stream_idle_timeout_s:g} s with no image in "
                                  "flight; open a new stream when there is work")
            if holding_room and self.receive_budget.waiting and idle_s >= s.stream_yield_idle_s:
                raise Unavailable(f"stream sent no image for {idle_s:.1f} s with none in flight while other "
                                  "calls waited to send theirs; open a new stream when there is work")

        reader = asyncio.create_task(read())
        draining = asyncio.create_task(self.draining.wait())
        last_active = loop.time()
        try:
            while open_items or not (reader.done() or draining.done()):
                getter = asyncio.ensure_future(done.get())
                waiting = {getter} | {f for f in (reader, draining) if not f.done()}
                idle_left = None if open_items else idle_check_s(loop.time() - last_active)
                ready, _ = await asyncio.wait(waiting, timeout=idle_left, return_when=asyncio.FIRST_COMPLETED)
                if getter not in ready:
                    getter.cancel()
                    if reader in ready:
                        reader.result()  # surface a broken request stream
                    elif not ready:
                        check_idle(loop.time() - last_active)
                    continue
                result = getter.result().result()
                yield result
                window.release()
                open_items -= 1
                last_active = loop.time()
            if not (reader.done() and reader.result()):
                raise Unavailable("the router is shutting down: every image read has been answered; "
                                  "send the rest again (another replica)")
        finally:
            reader.cancel()
            draining.cancel()
            for task in pending:
                task.cancel()


def failed_response(request, exc: PrelabelError) -> prelabel_pb2.PreLabelResponse:
    """One stream item that failed as a whole: every task it asked for carries the status."""
    status = status_of(exc)
    if isinstance(request, MalformedRequest):  # no id to echo: the message says its index
        request = prelabel_pb2.PreLabelRequest()
    tasks = list(dict.fromkeys(request.tasks)) or list(ALL_TASKS)
    return prelabel_pb2.PreLabelResponse(
        image_id=request.image.image_id,
        task_results=[status.task_result(t) for t in tasks],
    )
