"""Domain errors. Servicers and task heads raise these; each class carries the gRPC
status code it is answered with (prelabel.core.status maps them, and every other
exception, to a status in one place)."""
from __future__ import annotations

from typing import ClassVar

import grpc


class PrelabelError(Exception):
    """Base class; `message` is safe to show to callers. INTERNAL unless a subclass
    says otherwise."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(PrelabelError):
    """Bad request: INVALID_ARGUMENT with a google.rpc.BadRequest field violation."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Unavailable(PrelabelError):
    """A dependency (Triton, a downstream service) cannot serve now: UNAVAILABLE."""

    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(PrelabelError):
    """Overloaded: RESOURCE_EXHAUSTED with a retry hint in trailing metadata."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_ms: int = 100):
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class DeadlineExceeded(PrelabelError):
    """Too little time left for the work: DEADLINE_EXCEEDED."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(PrelabelError):
    """No valid credentials: UNAUTHENTICATED."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(PrelabelError):
    """Valid credentials that do not allow this method: PERMISSION_DENIED."""

    code = grpc.StatusCode.PERMISSION_DENIED
