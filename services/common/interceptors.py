"""Server interceptors: metrics around every RPC, errors -> gRPC status (by the one
table, prelabel.core.status), and admission control. Health and reflection RPCs pass
through untouched."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Iterator

import grpc
from google.protobuf.message import DecodeError

from prelabel.core.errors import (
    DeadlineExceeded,
    InvalidArgument,
    PermissionDenied,
    PrelabelError,
    ResourceExhausted,
    Unauthenticated,
)
from prelabel.core.status import EXPECTED_ERRORS, code_from_value, status_of
from services.common.image_bytes import ImageBytesBudget
from services.common.metrics import Metrics
from services.common.receive_budget import ReceiveBudget

log = logging.getLogger(__name__)

PASS_THROUGH_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def _is_probe(method: str) -> bool:
    return method.startswith(PASS_THROUGH_PREFIXES)


def _wrap(handler: grpc.RpcMethodHandler, method: str, around_unary, around_stream) -> grpc.RpcMethodHandler:
    """Rebuild `handler` with its behaviour wrapped (unary responses by
    `around_unary`, streamed responses by `around_stream`)."""
    kw = dict(request_deserializer=handler.request_deserializer,
              response_serializer=handler.response_serializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(around_unary(handler.unary_unary, method), **kw)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(around_unary(handler.stream_unary, method), **kw)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(around_stream(handler.unary_stream, method), **kw)
    return grpc.stream_stream_rpc_method_handler(around_stream(handler.stream_stream, method), **kw)


def _refusing(handler: grpc.RpcMethodHandler, error: PrelabelError) -> grpc.RpcMethodHandler:
    """A handler that answers `error` without reading the request. It takes a request
    stream whatever the method's kind: gRPC reads (buffers and parses) a unary request
    whole before its handler runs, a stream only as it is iterated."""
    async def refuse(requests, context):
        raise error

    async def refuse_streaming(requests, context):
        raise error
        yield  # makes it an async generator, as a streaming handler must be

    kw = dict(request_deserializer=handler.request_deserializer,
              response_serializer=handler.response_serializer)
    if handler.unary_unary or handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse, **kw)
    return grpc.stream_stream_rpc_method_handler(refuse_streaming, **kw)


class _WrappingInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or _is_probe(method):
            return handler
        return _wrap(handler, method, self.around_unary, self.around_stream)

    def around_unary(self, behavior, method):
        raise NotImplementedError

    def around_stream(self, behavior, method):
        raise NotImplementedError


class MetricsInterceptor(_WrappingInterceptor):
    """Counts, times and tracks in-flight RPCs; reads the final code from the context
    after the handler (and the error interceptor) finished."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def _start(self, method):
        name = method.rsplit("/", 1)[-1]
        self.metrics.in_flight.labels(self.metrics.service, name).inc()
        return name, time.perf_counter()

    def _finish(self, name, start, context, code=None):
        m = self.metrics
        m.in_flight.labels(m.service, name).dec()
        m.latency.labels(m.service, name).observe(time.perf_counter() - start)
        if code is None:
            code = context.code() or grpc.StatusCode.OK
        if isinstance(code, int):
            code = code_from_value(code)
        m.requests.labels(m.service, name, code.name).inc()

    def around_unary(self, behavior, method):
        async def wrapped(request, context):
            name, start = self._start(method)
            code = None
            try:
                return await behavior(request, context)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                self._finish(name, start, context, code)
        return wrapped

    def around_stream(self, behavior, method):
        async def wrapped(request, context):
            name, start = self._start(method)
            code = None
            try:
                async for response in behavior(request, context):
                    yield response
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                self._finish(name, start, context, code)
        return wrapped


class MalformedRequest:
    """Stands in for a request message whose bytes did not parse."""

    def __init__(self, type_name: str):
        self.type_name = type_name


def _safe_deserializer(deserialize):
    if deserialize is None:
        return None

    def parse(data: bytes):
        try:
            return deserialize(data)
        except DecodeError:
            return MalformedRequest(getattr(deserialize, "__qualname__", "request").split(".")[0])
    return parse


def reject_malformed(request):
    """INVALID_ARGUMENT for a message whose bytes did not parse (the MalformedRequest
    stand-in); for servicers that read with `context.read()` rather than the iterator."""
    if isinstance(request, MalformedRequest):
        raise InvalidArgument("request", f"malformed {request.type_name}: not a valid protobuf message")


async def next_message(context):
    """A stream's next request message, None at its end; INVALID_ARGUMENT when its bytes
    did not parse. For servicers that read with `context.read()`: gRPC's request iterator
    keeps the message it gave out referenced while it waits for the next, which in an idle
    stream (an annotator thinking between clicks) is its last 20 MB image."""
    message = await context.read()
    if message is grpc.aio.EOF:
        return None
    reject_malformed(message)
    return message


async def _checked_stream(requests):
    async for request in requests:
        reject_malformed(request)
        yield request


class ErrorInterceptor(_WrappingInterceptor):
    """Exceptions -> status by the one table (prelabel.core.status): domain errors by
    their class, a downstream call's failure relayed, anything else INTERNAL with a
    generic message (the traceback goes to the log, not to the caller). Requests whose
    bytes do not parse become INVALID_ARGUMENT instead of gRPC's UNKNOWN."""

    def __init__(self, retry_after_ms: int = 200, per_item_streams: Iterable[str] = ()):
        self.retry_after_ms = retry_after_ms
        # Streaming methods (full names) that answer a malformed message as one failed
        # item (they receive the MalformedRequest stand-in) instead of ending the stream.
        self.per_item_streams = frozenset(per_item_streams)

    async def intercept_service(self, continuation, handler_call_details):
        handler = await super().intercept_service(continuation, handler_call_details)
        if handler is None or _is_probe(handler_call_details.method):
            return handler
        return handler._replace(request_deserializer=_safe_deserializer(handler.request_deserializer))

    def _status(self, exc: BaseException, method: str) -> grpc.Status:
        """The status to abort with, once out of the `except` block: gRPC keeps the abort's
        exception in a reference cycle with the call, and one raised while handling `exc`
        would chain it, with the frames of its traceback and the parsed request they hold
        (a 20 MB image), until the cyclic GC runs. Router, 32 concurrent 20 MB calls most
        refused at the image-bytes budget: 1,041 MB peak chained, 606 MB not. (A handler
        that takes its request whole would still hold it in these wrappers' frames; unary
        calls take theirs through the receive budget, as a stream, in every process.)"""
        if not isinstance(exc, EXPECTED_ERRORS):
            log.exception("unhandled error in %s", method, exc_info=exc)
        return status_of(exc, self.retry_after_ms).to_grpc()

    def around_unary(self, behavior, method):
        async def wrapped(request, context):
            try:
                if hasattr(request, "__aiter__") and method not in self.per_item_streams:
                    request = _checked_stream(request)
                reject_malformed(request)
                return await behavior(request, context)
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:
                status = self._status(exc, method)
            await context.abort_with_status(status)  # outside the except block: see _status
        return wrapped

    def around_stream(self, behavior, method):
        async def wrapped(request, context):
            try:
                if hasattr(request, "__aiter__") and method not in self.per_item_streams:
                    request = _checked_stream(request)
                reject_malformed(request)
                async for response in behavior(request, context):
                    yield response
                return
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:
                status = self._status(exc, method)
            await context.abort_with_status(status)  # outside the except block: see _status
        return wrapped


class Admission:
    """Bounded in-flight work, counted in images: a unary call is one, a stream holds one
    per image it has in flight (none while idle). Beyond `max_in_flight` the work is
    refused at once with RESOURCE_EXHAUSTED and a retry hint instead of queueing."""

    def __init__(self, max_in_flight: int, retry_after_ms: int):
        self.max_in_flight = max_in_flight
        self.retry_after_ms = retry_after_ms
        self.in_flight = 0

    def refusal(self) -> ResourceExhausted | None:
        """The error to answer new work with now, None when there is room."""
        if self.in_flight < self.max_in_flight:
            return None
        return ResourceExhausted(f"server busy: {self.in_flight} images in flight (limit {self.max_in_flight})",
                                 retry_after_ms=self.retry_after_ms)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        error = self.refusal()
        if error is not None:
            raise error
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


class AdmissionInterceptor(_WrappingInterceptor):
    """Admission (above) per call, except for the streams in `per_item_streams`: those
    take a slot per image themselves, so an idle stream holds none. A call that arrives
    with no room is refused on its metadata, before its request is read."""

    def __init__(self, admission: Admission, per_item_streams: Iterable[str] = ()):
        self.admission = admission
        self.per_item_streams = frozenset(per_item_streams)

    async def intercept_service(self, continuation, handler_call_details):
        handler = await super().intercept_service(continuation, handler_call_details)
        method = handler_call_details.method
        if handler is None or _is_probe(method) or method in self.per_item_streams:
            return handler
        error = self.admission.refusal()
        return handler if error is None else _refusing(handler, error)

    def around_unary(self, behavior, method):
        async def wrapped(request, context):
            with self.admission.slot():
                return await behavior(request, context)
        return wrapped

    def around_stream(self, behavior, method):
        if method in self.per_item_streams:
            return behavior

        async def wrapped(request, context):
            with self.admission.slot():
                async for response in behavior(request, context):
                    yield response
        return wrapped


def _read_in(handler: grpc.RpcMethodHandler, budget: ReceiveBudget, read_timeout_s: float,
             ) -> grpc.RpcMethodHandler:
    """`handler` (one request message) taking its request as a stream, read once a
    reservation in `budget` is held: gRPC reads a unary request before its handler runs, a
    stream's messages only as they are iterated, so the handler decides when the bytes come.
    The read is bounded (the deadline, else `read_timeout_s`): a caller that never sends its
    message must not hold a reservation and an admission slot for ever."""
    async def one_request(requests, context):
        async with budget.receiving(time_left(context, budget.wait_s)):  # bounded by the deadline
            messages = aiter(requests)
            try:
                async with asyncio.timeout(time_left(context, read_timeout_s)):
                    request = await anext(messages, None)
                    # Read on to the end of the (one-message) stream: gRPC's reader holds
                    # the last message it gave out until it has read the end.
                    extra = await anext(messages, None)
            except TimeoutError:
                raise DeadlineExceeded(f"request not received within {read_timeout_s:g} s") from None
        if request is None or extra is not None:
            raise InvalidArgument("request", "a call of this method sends exactly one request message")
        return request

    async def unary(requests, context):
        return await handler.unary_unary(await one_request(requests, context), context)

    async def streaming(requests, context):
        async for response in handler.unary_stream(await one_request(requests, context), context):
            yield response

    kw = dict(request_deserializer=handler.request_deserializer,
              response_serializer=handler.response_serializer)
    if handler.unary_unary:
        return grpc.stream_unary_rpc_method_handler(unary, **kw)
    return grpc.stream_stream_rpc_method_handler(streaming, **kw)


class ReceiveBudgetInterceptor(grpc.aio.ServerInterceptor):
    """Calls with one request message reserve room in the receive budget
    (services.common.receive_budget) before gRPC reads the message, and give it back once
    it is parsed. Innermost: auth and admission refuse on metadata first, and such a call
    neither waits nor reserves; an admitted call holds its admission slot while it waits
    and is read (so waiting calls stay bounded too). Streamed requests are read by their
    servicers, message by message: the router's PreLabelStream reserves before each read
    itself (and gives its room up when idle while others wait); ClickSessions, idle
    between clicks by nature, are bounded in number instead."""

    def __init__(self, budget: ReceiveBudget, read_timeout_s: float):
        self.budget = budget
        self.read_timeout_s = read_timeout_s

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or _is_probe(handler_call_details.method) or handler.request_streaming:
            return handler
        return _read_in(handler, self.budget, self.read_timeout_s)


class ImageBytesInterceptor(_WrappingInterceptor):
    """A model service's unary calls hold their request's image bytes in `budget`
    (services.common.image_bytes) from the moment the request is parsed until the call
    ends: a request waiting for the decode budget keeps its 20 MB. Innermost, under the
    receive budget's read, so it sees the parsed request. A stream's servicer holds what
    it reads itself (a click session's start while it is prepared)."""

    def __init__(self, budget: ImageBytesBudget):
        self.budget = budget

    def around_unary(self, behavior, method):
        async def wrapped(request, context):
            image = getattr(request, "image", None)
            with self.budget.hold(len(image.data) if image is not None else 0):
                return await behavior(request, context)
        return wrapped

    def around_stream(self, behavior, method):
        return behavior


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Bearer-token authentication (`authorization: Bearer <token>` metadata) with
    per-token method permissions, decided on the call's metadata: a refused call's request
    is never read. Health and reflection stay open for probes."""

    def __init__(self, tokens: dict[str, list[str]]):
        self.tokens = tokens

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or _is_probe(method):
            return handler
        try:
            self.check(handler_call_details.invocation_metadata or (), method)
        except PrelabelError as error:
            return _refusing(handler, error)
        return handler

    def check(self, metadata, method: str) -> None:
        headers = [value for key, value in metadata if key == "authorization"]
        if len(headers) > 1:  # which one a proxy or a server reads differs: none is trusted
            raise Unauthenticated("more than one 'authorization' header")
        scheme, _, token = (headers[0] if headers else "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("missing bearer token (metadata 'authorization: Bearer <token>')")
        allowed = self.tokens.get(token)
        if allowed is None:
            raise Unauthenticated("unknown token")
        name = method.rsplit("/", 1)[-1]
        if not any(rule in ("*", name, method) for rule in allowed):
            raise PermissionDenied(f"token may not call {name}")


def time_left(context: grpc.aio.ServicerContext, default_s: float, minimum_s: float = 0.0) -> float:
    """Seconds left of the caller's deadline (`default_s` when the caller set none).
    Raises DeadlineExceeded when less than `minimum_s` is left: better to say so now
    than to start work that cannot finish."""
    remaining = context.time_remaining()
    left = default_s if remaining is None else min(remaining, default_s)
    if left < minimum_s:
        raise DeadlineExceeded(f"only {left * 1000:.0f} ms left of the deadline")
    return left
