"""The status table: what each gRPC status code means, and the one mapping from an
exception to the status a caller receives.

Servers (the error interceptor, the router's task results) call `status_of`: a domain
error is answered with the code its class carries (prelabel.core.errors), a downstream
service's failure (grpc.aio.AioRpcError) is relayed by the table's `relayed` column, and
any other exception is a bug: INTERNAL with a generic message.

Clients (the bulk loop) call `action_for` (or `task_action` / `error_action`): what a
code means for the caller -- done, reject the image for good, retry it, retry it and
send less (overload), wait for the suite to come back, or stop the whole run.
"""
from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from prelabel.core.errors import InvalidArgument, PrelabelError, ResourceExhausted
from prelabel.v1 import prelabel_pb2

#: Trailing metadata (milliseconds) sent with RESOURCE_EXHAUSTED when the server is
#: overloaded, beside google.rpc.RetryInfo. Without it RESOURCE_EXHAUSTED is a size
#: limit (gRPC's own message or metadata limits), which no retry changes.
RETRY_AFTER_KEY = "retry-after-ms"

# Error trailers travel as metadata, which gRPC caps (8 KiB soft, 16 KiB hard): past
# that the caller sees RESOURCE_EXHAUSTED instead of our status. The message goes out
# percent-encoded (up to 3 bytes per byte) and again inside the base64 details, so each
# echoed value is cut to a few hundred UTF-8 bytes: worst case ~3.5 KiB of trailers.
MAX_MESSAGE_BYTES = 512
MAX_FIELD_BYTES = 128
MAX_DESCRIPTION_BYTES = 384
MAX_DETAILS_BYTES = 2048  # serialized google.rpc.Status; details are dropped above it

#: What a caller is told about an exception that is not a domain error (a bug): the
#: traceback goes to the server log, not to the caller.
INTERNAL_MESSAGE = "internal error (see server log)"
#: Exceptions whose status says what went wrong; any other exception is a bug.
EXPECTED_ERRORS = (PrelabelError, grpc.aio.AioRpcError)


class Action(enum.Enum):
    """What a status code means for the caller that received it."""

    DONE = "done"
    REJECT = "reject"  # the request (the image) itself is at fault: never retry it
    RETRY = "retry"  # a passing failure: retry after a backoff
    BACKOFF = "backoff"  # the suite is overloaded: retry after a backoff, and send less
    WAIT = "wait"  # the suite (or a part of it) is down: hold requests until it is back
    STOP = "stop"  # no request can succeed (credentials, a method the server lacks): stop the run


@dataclass(frozen=True)
class Meaning:
    """One row of the table."""

    action: Action
    #: The router passes a downstream service's status with this code on as it is;
    #: any other code becomes UNAVAILABLE (the service could not serve), its name in
    #: the message.
    relayed: bool = False
    #: The action instead when the status carries no retry hint (None: the same).
    unhinted: Action | None = None


_C = grpc.StatusCode
TABLE: dict[grpc.StatusCode, Meaning] = {
    _C.OK: Meaning(Action.DONE),
    _C.CANCELLED: Meaning(Action.RETRY),
    _C.UNKNOWN: Meaning(Action.RETRY),
    _C.INVALID_ARGUMENT: Meaning(Action.REJECT, relayed=True),
    _C.DEADLINE_EXCEEDED: Meaning(Action.BACKOFF, relayed=True),
    _C.NOT_FOUND: Meaning(Action.RETRY),
    _C.ALREADY_EXISTS: Meaning(Action.RETRY),
    _C.PERMISSION_DENIED: Meaning(Action.STOP),
    # Overload carries a retry hint; without one it is a size limit.
    _C.RESOURCE_EXHAUSTED: Meaning(Action.BACKOFF, relayed=True, unhinted=Action.REJECT),
    _C.FAILED_PRECONDITION: Meaning(Action.RETRY),
    _C.ABORTED: Meaning(Action.RETRY),
    _C.OUT_OF_RANGE: Meaning(Action.REJECT),
    _C.UNIMPLEMENTED: Meaning(Action.STOP),
    _C.INTERNAL: Meaning(Action.RETRY),
    _C.UNAVAILABLE: Meaning(Action.WAIT, relayed=True),
    _C.DATA_LOSS: Meaning(Action.RETRY),
    _C.UNAUTHENTICATED: Meaning(Action.STOP),
}
_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def code_from_value(value: int) -> grpc.StatusCode:
    """The grpc.StatusCode of a google.rpc.Code value (UNKNOWN for a value gRPC lacks)."""
    return _BY_VALUE.get(value, grpc.StatusCode.UNKNOWN)


def action_for(code: grpc.StatusCode, retry_hint: bool = False) -> Action:
    meaning = TABLE[code]
    if meaning.unhinted is not None and not retry_hint:
        return meaning.unhinted
    return meaning.action


def task_code(result: prelabel_pb2.TaskResult) -> grpc.StatusCode:
    """A task result's code. A router older than the `status` field leaves it 0 (OK) and
    names the code in `code` only: read the name then, so its failures are not taken for
    successes."""
    if result.status == 0 and result.code not in ("", "OK"):
        return getattr(grpc.StatusCode, result.code, grpc.StatusCode.UNKNOWN)
    return code_from_value(result.status)


def task_action(result: prelabel_pb2.TaskResult) -> Action:
    """What a router's task result means for its caller."""
    return action_for(task_code(result), result.retry_after_ms > 0)


def error_action(exc: grpc.aio.AioRpcError) -> Action:
    """What a failed call means for its caller."""
    return action_for(exc.code(), retry_hint_ms(exc.trailing_metadata()) > 0)


def retry_hint_ms(metadata: Iterable[tuple[str, str | bytes]] | None) -> int:
    """The server's retry hint in `metadata` (trailing metadata), 0 when there is none."""
    for key, value in metadata or ():
        if key == RETRY_AFTER_KEY:
            try:
                return max(int(value), 0)
            except ValueError:
                return 0
    return 0


def bounded(text: str, limit_bytes: int) -> str:
    """`text` cut to at most `limit_bytes` UTF-8 bytes (on a character boundary), with
    the original size said at the cut."""
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= limit_bytes:
        return text
    suffix = f"... ({len(raw)} bytes)"
    return raw[:limit_bytes - len(suffix)].decode("utf-8", errors="ignore") + suffix


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass(frozen=True)
class Status:
    """What a caller receives: a code, a message and the details that go with it (field
    violations with INVALID_ARGUMENT, a retry hint with RESOURCE_EXHAUSTED). Built by
    `status_of` (or `Status.build`), every echoed value is cut to the bounds above."""

    code: grpc.StatusCode
    message: str = ""
    violations: tuple[FieldViolation, ...] = ()
    retry_after_ms: int = 0  # > 0: the server was overloaded; retry after this long

    @classmethod
    def build(cls, code: grpc.StatusCode, message: str, violations: Iterable[FieldViolation] = (),
                retry_after_ms: int = 0) -> Status:
        return cls(code, bounded(message, MAX_MESSAGE_BYTES),
                   tuple(FieldViolation(bounded(v.field, MAX_FIELD_BYTES),
                                        bounded(v.description, MAX_DESCRIPTION_BYTES)) for v in violations),
                   retry_after_ms)

    @property
    def action(self) -> Action:
        return action_for(self.code, self.retry_after_ms > 0)

    def to_grpc(self) -> grpc.Status:
        """For `context.abort_with_status`: the google.rpc.Status (BadRequest, RetryInfo)
        in the trailers, and the retry hint as metadata too."""
        details = []
        if self.violations:
            details.append(_pack(error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in self.violations])))
        extra: tuple[tuple[str, str], ...] = ()
        if self.retry_after_ms > 0:
            ms = self.retry_after_ms
            delay = duration_pb2.Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)
            details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
            extra = ((RETRY_AFTER_KEY, str(ms)),)
        proto = status_pb2.Status(code=self.code.value[0], message=self.message, details=details)
        if proto.ByteSize() > MAX_DETAILS_BYTES:
            del proto.details[:]
        status = rpc_status.to_status(proto)
        return _GrpcStatus(status.code, status.details, tuple(status.trailing_metadata) + extra)

    def task_result(self, task: prelabel_pb2.Task, latency_ms: float = 0.0) -> prelabel_pb2.TaskResult:
        """A router's TaskResult with this status (the code and its name)."""
        return prelabel_pb2.TaskResult(task=task, status=self.code.value[0], code=self.code.name,
                                       message=self.message, retry_after_ms=self.retry_after_ms,
                                       latency_ms=latency_ms)


OK = Status(grpc.StatusCode.OK)


def status_of(exc: BaseException, retry_after_ms: int = 0) -> Status:
    """The status a caller receives for `exc`. `retry_after_ms`: the hint sent with a
    ResourceExhausted that names none."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return _relayed(exc)
    if isinstance(exc, PrelabelError):
        violations = [FieldViolation(exc.field, exc.reason)] if isinstance(exc, InvalidArgument) else []
        hint = (exc.retry_after_ms or retry_after_ms) if isinstance(exc, ResourceExhausted) else 0
        return Status.build(exc.code, exc.message, violations, hint)
    return Status(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


def _relayed(exc: grpc.aio.AioRpcError) -> Status:
    """A downstream service's failure, as the router answers it: the codes its caller can
    act on pass with their details (field violations, retry hint); any other means the
    service could not serve."""
    code, message = exc.code(), exc.details() or ""
    if not TABLE[code].relayed:
        return Status.build(grpc.StatusCode.UNAVAILABLE, f"{code.name}: {message}")
    violations: list[FieldViolation] = []
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        # Every INVALID_ARGUMENT answered names a field; "request" when the service named none.
        violations = _field_violations(exc) or [FieldViolation("request", message)]
    hint = retry_hint_ms(exc.trailing_metadata()) if code == grpc.StatusCode.RESOURCE_EXHAUSTED else 0
    return Status.build(code, message, violations, hint)


def _field_violations(exc: grpc.aio.AioRpcError) -> list[FieldViolation]:
    try:
        status = rpc_status.from_call(exc)
    except ValueError:  # details that do not match the call's status: not ours to trust
        return []
    violations = []
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
    return violations


class _GrpcStatus(grpc.Status):
    def __init__(self, code, details, trailing_metadata):
        self.code, self.details, self.trailing_metadata = code, details, trailing_metadata


def _pack(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
