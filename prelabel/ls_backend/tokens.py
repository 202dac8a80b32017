"""The token the backend shows Label Studio (read from the token itself, no setting):

- a personal access token (PAT, what Label Studio 1.23 issues by default) is a JWT refresh
  token: exchanged through `POST /api/token/refresh/` for an access token of ~5 minutes,
  sent as `Bearer <access>`, cached and exchanged again shortly before it expires and once
  after Label Studio answers 401;
- a token that is not a JWT is a legacy API token, sent as `Token <key>` (Label Studio
  refuses it unless the organisation enables legacy tokens);
- any other JWT (an access token pasted instead of the PAT) is refused at start: it would
  stop working within minutes.

The JWT payload is read without verifying its signature: the token is Label Studio's, only
Label Studio can verify it, and the backend needs nothing from it but its lifetime.
"""
from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Exchange again this long before the access token expires (at most a fifth of its
#: lifetime): a request in flight and some clock drift fit in it.
REFRESH_MARGIN_S = 30.0


class TokenError(ValueError):
    """The configured token cannot be used (said at start, before Label Studio is asked)."""


def jwt_claims(token: str) -> dict | None:
    """The payload of a JWT (not verified), or None when `token` is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def lifetime_s(claims: dict | None, now: float) -> float:
    """Seconds an access token is valid from when it was issued: `exp - iat` (both Label
    Studio's clock, so no skew), else `exp` against this machine's clock; 0 when unknown."""
    if claims is None or not isinstance(claims.get("exp"), (int, float)):
        return 0.0
    issued = claims.get("iat")
    return float(claims["exp"] - (issued if isinstance(issued, (int, float)) else now))


@dataclass(frozen=True)
class _Access:
    header: str
    refresh_at: float  # monotonic


class LabelStudioToken:
    """The Authorization header for Label Studio; thread-safe (one exchange at a time).

    `exchange(pat) -> access token` is the HTTP call (fetch.exchange_token); raises on refusal."""

    def __init__(self, token: str, exchange: Callable[[str], str],
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time):
        token = token.strip()
        claims = jwt_claims(token)
        if claims is not None and claims.get("token_type") != "refresh":
            raise TokenError(f"the Label Studio token is a JWT of type {claims.get('token_type')!r}; give the "
                             "personal access token (a refresh token) from Account & Settings")
        self.personal = claims is not None
        self._token = token
        self._exchange = exchange
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._access: _Access | None = None
        self.exchanges = 0  # access tokens obtained (tests, logs)

    @property
    def kind(self) -> str:
        return "personal access token" if self.personal else "legacy token"

    def header(self) -> str:
        if not self.personal:
            return f"Token {self._token}"
        with self._lock:
            if self._access is None or self._clock() >= self._access.refresh_at:
                sent_at = self._clock()
                access = self._exchange(self._token)
                self.exchanges += 1
                lifetime = lifetime_s(jwt_claims(access), self._wall_clock())
                margin = min(REFRESH_MARGIN_S, lifetime / 5)
                self._access = _Access(f"Bearer {access}", sent_at + lifetime - margin)
            return self._access.header

    def rejected(self, header: str) -> None:
        """Label Studio answered 401 to `header`: the next header() exchanges the PAT again
        (unless another request already did)."""
        with self._lock:
            if self._access is not None and self._access.header == header:
                self._access = None
