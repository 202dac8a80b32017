"""A PreLabeler test double on loopback, for faults the real router cannot be made to
produce on demand (UNAVAILABLE on the n-th call, a stream that breaks or stalls). Its
answers are real `prelabel_pb2` messages; the real router is tested in tests/integration."""
from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Sequence

import grpc

from prelabel.v1 import common_pb2, prelabel_pb2, prelabel_pb2_grpc


def answer(request: prelabel_pb2.PreLabelRequest,
           code: grpc.StatusCode = grpc.StatusCode.OK) -> prelabel_pb2.PreLabelResponse:
    """Every requested task with `code`, as the router writes it (the code and its name)."""
    ok = code == grpc.StatusCode.OK
    response = prelabel_pb2.PreLabelResponse(
        image_id=request.image.image_id, image_size=common_pb2.ImageSize(width=4, height=3))
    for task in request.tasks:
        response.task_results.add(task=task, status=code.value[0], code=code.name,
                                  message="" if ok else "injected")
        if task == prelabel_pb2.TASK_DETECT and ok:
            response.detections.add(score=0.5).box.x_max = 2
    return response


class PreLabelerDouble(prelabel_pb2_grpc.PreLabelerServicer):
    def __init__(self, *, unary_failures: int = 0, unary_code=grpc.StatusCode.UNAVAILABLE,
                 break_stream_after: int = 0, stall: bool = False, delay_s: float = 0.0,
                 task_code_for: dict[str, grpc.StatusCode] | None = None, overloaded_answers: int = 0):
        self.unary_failures = unary_failures
        self.unary_code = unary_code
        self.break_stream_after = break_stream_after  # answers per stream, then UNAVAILABLE
        self.stall = stall
        self.delay_s = delay_s
        self.task_code_for = task_code_for or {}  # image id substring -> task status code
        self.overloaded_answers = overloaded_answers  # first N answers: DEADLINE_EXCEEDED
        self.answers = 0
        self.unary_attempts: Counter[str] = Counter()
        self.stream_received: Counter[str] = Counter()
        self.streams = 0
        self.max_outstanding = 0

    def _answer(self, request):
        self.answers += 1
        if self.answers <= self.overloaded_answers:
            return answer(request, grpc.StatusCode.DEADLINE_EXCEEDED)
        code = next((c for key, c in self.task_code_for.items() if key in request.image.image_id),
                    grpc.StatusCode.OK)
        return answer(request, code)

    async def PreLabel(self, request, context):
        self.unary_attempts[request.image.image_id] += 1
        if sum(self.unary_attempts.values()) <= self.unary_failures:
            await context.abort(self.unary_code, "injected")
        response = self._answer(request)
        invalid = grpc.StatusCode.INVALID_ARGUMENT.value[0]
        if all(r.status == invalid for r in response.task_results) and response.task_results:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "image.data: injected")
        return response

    async def PreLabelStream(self, request_iterator, context):
        self.streams += 1
        pending: asyncio.Queue = asyncio.Queue()
        received = sent = 0

        async def read():
            nonlocal received
            async for request in request_iterator:
                received += 1
                self.stream_received[request.image.image_id] += 1
                self.max_outstanding = max(self.max_outstanding, received - sent)
                await pending.put(request)
            await pending.put(None)

        reader = asyncio.create_task(read())
        try:
            while (request := await pending.get()) is not None:
                if self.stall:
                    await asyncio.sleep(3600)
                if self.break_stream_after and sent == self.break_stream_after:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "injected stream break")
                await asyncio.sleep(self.delay_s)
                sent += 1
                yield self._answer(request)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


@contextlib.asynccontextmanager
async def serve(double: PreLabelerDouble, credentials: grpc.ServerCredentials | None = None,
                servicers: Sequence[Callable[[grpc.aio.Server], None]] = ()):
    """`double` on a loopback port (and what each of `servicers` adds to the server)."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    prelabel_pb2_grpc.add_PreLabelerServicer_to_server(double, server)
    for add in servicers:
        add(server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)
