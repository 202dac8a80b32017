"""Domain errors. Servicers and task heads raise these; one interceptor
(services.common.interceptors) maps them to gRPC status codes."""
from __future__ import annotations


class PrelabelError(Exception):
    """Base class; `message` is safe to show to callers."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(PrelabelError):
    """Bad request: INVALID_ARGUMENT with a google.rpc.BadRequest field violation."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Unavailable(PrelabelError):
    """A dependency (Triton, a downstream service) cannot serve now: UNAVAILABLE."""


class ResourceExhausted(PrelabelError):
    """Overloaded: RESOURCE_EXHAUSTED with a retry hint in trailing metadata."""

    def __init__(self, message: str, retry_after_ms: int = 100):
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class DeadlineExceeded(PrelabelError):
    """Too little time left for the work: DEADLINE_EXCEEDED."""


class Unauthenticated(PrelabelError):
    """No valid credentials: UNAUTHENTICATED."""


class PermissionDenied(PrelabelError):
    """Valid credentials that do not allow this method: PERMISSION_DENIED."""
