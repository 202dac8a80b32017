"""The status table (prelabel.core.status): what every code means for a caller, the status
of every kind of exception, and the same status after a real gRPC hop (the ErrorInterceptor
on a loopback server, its failure relayed as the router relays a service's)."""
from __future__ import annotations

import contextlib

import grpc
import pytest
from google.rpc import code_pb2, status_pb2

from prelabel.core.errors import (
    DeadlineExceeded,
    InvalidArgument,
    PermissionDenied,
    PrelabelError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from prelabel.core.status import (
    INTERNAL_MESSAGE,
    MAX_DESCRIPTION_BYTES,
    MAX_FIELD_BYTES,
    MAX_MESSAGE_BYTES,
    OK,
    RETRY_AFTER_KEY,
    TABLE,
    Action,
    FieldViolation,
    Status,
    action_for,
    code_from_value,
    error_action,
    retry_hint_ms,
    status_of,
    task_action,
)
from prelabel.v1 import prelabel_pb2
from services.common.interceptors import ErrorInterceptor

pytestmark = pytest.mark.timeout(30)

C = grpc.StatusCode
#: The table written out once more, as the behaviour callers rely on.
ACTIONS = {
    C.OK: Action.DONE,
    C.CANCELLED: Action.RETRY,
    C.UNKNOWN: Action.RETRY,
    C.INVALID_ARGUMENT: Action.REJECT,
    C.DEADLINE_EXCEEDED: Action.BACKOFF,
    C.NOT_FOUND: Action.RETRY,
    C.ALREADY_EXISTS: Action.RETRY,
    C.PERMISSION_DENIED: Action.STOP,
    C.RESOURCE_EXHAUSTED: Action.BACKOFF,  # with the retry hint; a size limit without it
    C.FAILED_PRECONDITION: Action.RETRY,
    C.ABORTED: Action.RETRY,
    C.OUT_OF_RANGE: Action.REJECT,
    C.UNIMPLEMENTED: Action.STOP,
    C.INTERNAL: Action.RETRY,
    C.UNAVAILABLE: Action.WAIT,
    C.DATA_LOSS: Action.RETRY,
    C.UNAUTHENTICATED: Action.STOP,
}
RELAYED = {C.INVALID_ARGUMENT, C.DEADLINE_EXCEEDED, C.RESOURCE_EXHAUSTED, C.UNAVAILABLE}


def test_table_has_one_row_for_every_grpc_code():
    assert set(TABLE) == set(grpc.StatusCode) == set(ACTIONS)


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_action_for_code_when_the_status_carries_a_retry_hint(code):
    assert action_for(code, retry_hint=True) is ACTIONS[code]


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_action_for_code_when_the_status_carries_no_retry_hint(code):
    expected = Action.REJECT if code == C.RESOURCE_EXHAUSTED else ACTIONS[code]
    assert action_for(code) is expected


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_code_from_value_matches_grpc_and_google_rpc_code(code):
    value = code.value[0]
    assert code_from_value(value) is code
    assert code_pb2.Code.Name(value) == code.name  # TaskResult.status is a google.rpc.Code


def test_code_from_value_is_unknown_when_grpc_has_no_such_code():
    assert code_from_value(99) is C.UNKNOWN


@pytest.mark.parametrize("exc,code", [
    (InvalidArgument("image.data", "empty"), C.INVALID_ARGUMENT),
    (Unavailable("triton down"), C.UNAVAILABLE),
    (ResourceExhausted("busy"), C.RESOURCE_EXHAUSTED),
    (DeadlineExceeded("late"), C.DEADLINE_EXCEEDED),
    (Unauthenticated("no token"), C.UNAUTHENTICATED),
    (PermissionDenied("not this method"), C.PERMISSION_DENIED),
    (PrelabelError("a domain error of no kind"), C.INTERNAL),
], ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v.name)
def test_status_of_domain_error_is_its_class_code_and_message(exc, code):
    status = status_of(exc)
    assert (status.code, status.message) == (code, exc.message)
    assert type(exc).code is code


def test_status_of_invalid_argument_names_the_field():
    status = status_of(InvalidArgument("image.data", "empty"))
    assert status.violations == (FieldViolation("image.data", "empty"),)
    assert status.retry_after_ms == 0


def test_status_of_resource_exhausted_carries_its_own_hint_else_the_default():
    assert status_of(ResourceExhausted("busy", retry_after_ms=250), retry_after_ms=999).retry_after_ms == 250
    assert status_of(ResourceExhausted("busy", retry_after_ms=0), retry_after_ms=999).retry_after_ms == 999
    assert status_of(ResourceExhausted("busy")).action is Action.BACKOFF


def test_status_of_unexpected_exception_is_internal_without_its_text():
    status = status_of(KeyError("secret path /etc/x"))
    assert (status.code, status.message) == (C.INTERNAL, INTERNAL_MESSAGE)


def test_status_of_bounds_every_echoed_value():
    status = status_of(InvalidArgument("f" * 5000, "é€" * 2000))
    (violation,) = status.violations
    assert len(status.message.encode()) <= MAX_MESSAGE_BYTES
    assert len(violation.field.encode()) <= MAX_FIELD_BYTES
    assert len(violation.description.encode()) <= MAX_DESCRIPTION_BYTES
    assert status.message.endswith("bytes)")  # the cut says the original size


def test_to_grpc_drops_details_when_they_would_pass_the_limit():
    def details(status: Status) -> list:
        trailers = dict(status.to_grpc().trailing_metadata)
        return list(status_pb2.Status.FromString(trailers["grpc-status-details-bin"]).details)

    many = tuple(FieldViolation("f" * 100, "d" * 300) for _ in range(10))
    assert details(Status.build(C.INVALID_ARGUMENT, "bad", many)) == []
    assert len(details(Status.build(C.INVALID_ARGUMENT, "bad", many[:1]))) == 1


def test_task_result_carries_the_code_and_its_name():
    result = Status.build(C.RESOURCE_EXHAUSTED, "busy", retry_after_ms=200).task_result(
        prelabel_pb2.TASK_DETECT, latency_ms=3.0)
    assert (result.status, result.code, result.message, result.retry_after_ms) == (
        code_pb2.RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED", "busy", 200)
    assert task_action(result) is Action.BACKOFF
    ok = OK.task_result(prelabel_pb2.TASK_SEGMENT)
    assert (ok.status, ok.code, task_action(ok)) == (code_pb2.OK, "OK", Action.DONE)


def test_retry_hint_ms_reads_the_metadata_key():
    assert retry_hint_ms(((RETRY_AFTER_KEY, "150"),)) == 150
    assert retry_hint_ms((("other", "1"),)) == retry_hint_ms(None) == retry_hint_ms(((RETRY_AFTER_KEY, "x"),)) == 0


# ------------------------------------------------------------------ over a real hop

@contextlib.asynccontextmanager
async def failing_server(exc: BaseException, max_receive_bytes: int = 4 * 1024 * 1024):
    """A loopback server whose one method raises `exc` behind the ErrorInterceptor."""
    async def fail(request: bytes, context) -> bytes:
        raise exc

    server = grpc.aio.server(interceptors=[ErrorInterceptor(retry_after_ms=300)],
                             options=[("grpc.max_receive_message_length", max_receive_bytes)])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "test.Failing", {"Call": grpc.unary_unary_rpc_method_handler(fail)})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel.unary_unary("/test.Failing/Call")
    finally:
        await server.stop(0)


async def failure(exc: BaseException, request: bytes = b"x", **kw) -> grpc.aio.AioRpcError:
    async with failing_server(exc, **kw) as call:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(request, timeout=10)
    return caught.value


async def test_relayed_invalid_argument_keeps_the_services_field_violation():
    err = await failure(InvalidArgument("review_policy.by_category[x]", "accept_at must be in [0, 1]"))
    assert err.code() == C.INVALID_ARGUMENT
    relayed = status_of(err)
    assert relayed.code == C.INVALID_ARGUMENT
    assert relayed.violations == (FieldViolation("review_policy.by_category[x]", "accept_at must be in [0, 1]"),)
    assert relayed.message == err.details()
    assert error_action(err) is Action.REJECT


async def test_relayed_overload_keeps_the_services_retry_hint():
    err = await failure(ResourceExhausted("busy", retry_after_ms=250))
    assert retry_hint_ms(err.trailing_metadata()) == 250
    assert error_action(err) is Action.BACKOFF
    relayed = status_of(err)
    assert (relayed.code, relayed.retry_after_ms, relayed.action) == (C.RESOURCE_EXHAUSTED, 250, Action.BACKOFF)


async def test_relayed_size_limit_stays_without_retry_hint():
    # gRPC's own receive limit: RESOURCE_EXHAUSTED with no hint, which no retry changes.
    err = await failure(Unavailable("never reached"), request=b"x" * 2048, max_receive_bytes=1024)
    assert err.code() == C.RESOURCE_EXHAUSTED
    assert error_action(err) is Action.REJECT
    relayed = status_of(err)
    assert (relayed.code, relayed.retry_after_ms, relayed.action) == (C.RESOURCE_EXHAUSTED, 0, Action.REJECT)


@pytest.mark.parametrize("exc", [Unavailable("triton down"), DeadlineExceeded("late")],
                         ids=lambda e: type(e).__name__)
async def test_relayed_code_passes_as_it_is_when_the_table_says_so(exc):
    err = await failure(exc)
    assert err.code() in RELAYED
    relayed = status_of(err)
    assert (relayed.code, relayed.message) == (err.code(), exc.message)


@pytest.mark.parametrize("exc,code,message", [
    (Unauthenticated("unknown token"), C.UNAUTHENTICATED, "unknown token"),
    (PermissionDenied("token may not call Detect"), C.PERMISSION_DENIED, "token may not call Detect"),
    (KeyError("secret"), C.INTERNAL, INTERNAL_MESSAGE),
], ids=["UNAUTHENTICATED", "PERMISSION_DENIED", "INTERNAL"])
async def test_relayed_code_becomes_unavailable_naming_it_when_the_caller_cannot_act_on_it(exc, code, message):
    err = await failure(exc)
    assert (err.code(), err.details()) == (code, message)
    relayed = status_of(err)
    assert (relayed.code, relayed.message) == (C.UNAVAILABLE, f"{code.name}: {message}")
    assert code not in RELAYED


def test_task_action_reads_the_code_name_when_an_older_router_left_status_unset():
    from prelabel.core.status import task_code
    old = prelabel_pb2.TaskResult(task=prelabel_pb2.TASK_DETECT, code="INVALID_ARGUMENT", message="bad")
    assert task_code(old) == grpc.StatusCode.INVALID_ARGUMENT
    assert task_action(old) == Action.REJECT
    assert task_code(prelabel_pb2.TaskResult(code="OK")) == grpc.StatusCode.OK
    assert task_code(prelabel_pb2.TaskResult()) == grpc.StatusCode.OK
