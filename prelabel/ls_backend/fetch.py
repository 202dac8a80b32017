"""Every HTTP request the backend makes: a task's image (only from Label Studio itself or an
allow-listed prefix, never following redirects, with a byte cap: no SSRF, no memory
blow-up through task data) and, to Label Studio, the token exchange and token check.

Requests to Label Studio carry the token's header (tokens.py); a 401 drops the cached
access token and the request is sent once more with a fresh one."""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import NamedTuple

from prelabel.ls_backend.settings import LsBackendSettings
from prelabel.ls_backend.tokens import LabelStudioToken

_DETAIL_CHARS = 200


class FetchError(Exception):
    """A request failed. `status` is what the backend answers Label Studio with: 502 Label
    Studio or the image host refused or failed, 504 it did not answer in time, 422 this
    backend's own rules refuse the URL or the image."""

    def __init__(self, message: str, status: int = 502):
        super().__init__(message)
        self.status = status


class _Unauthorized(FetchError):
    """HTTP 401: the token was refused (the caller may exchange it and try once more)."""


class Source(NamedTuple):
    url: str  # absolute
    label_studio: bool  # under label_studio_url: gets the token


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise FetchError(f"redirect to {newurl!r} refused", 422)


_OPENER = urllib.request.build_opener(_NoRedirect)


def _label_studio_base(settings: LsBackendSettings) -> str:
    return settings.label_studio_url.rstrip("/") + "/"


def resolve(url: str, settings: LsBackendSettings) -> Source:
    """Where to fetch a task's image from; FetchError (422) when not allowed."""
    base = _label_studio_base(settings)
    absolute = urllib.parse.urljoin(base, url)
    parsed = urllib.parse.urlsplit(absolute)
    if parsed.scheme not in ("http", "https") or "@" in parsed.netloc:
        raise FetchError(f"URL {url!r} refused: only http(s) without credentials", 422)
    if absolute.startswith(base):
        return Source(absolute, True)  # the token goes to Label Studio only
    if any(absolute.startswith(prefix) for prefix in settings.allowed_url_prefixes if prefix.endswith("/")):
        return Source(absolute, False)
    raise FetchError(f"URL {url!r} is not under Label Studio or an allowed prefix", 422)


def _shown(source: Source) -> str:
    """The URL as error messages show it: Label Studio's whole (the query names the file),
    another host's without its query (it may hold a signature)."""
    if source.label_studio:
        return source.url
    return urllib.parse.urlsplit(source.url)._replace(query="", fragment="").geturl()


def _detail(exc: urllib.error.HTTPError) -> str:
    """Label Studio's own explanation of an error answer ({"detail": ...}), if any."""
    try:
        body = json.loads(exc.read(64 * 1024) or b"{}")
    except (ValueError, OSError):
        return ""
    detail = body.get("detail") if isinstance(body, dict) else None
    return f": {str(detail)[:_DETAIL_CHARS]}" if detail else ""


def _open(source: Source, settings: LsBackendSettings, cap: int, *, authorization: str | None = None,
          json_body: dict | None = None) -> bytes:
    headers = {"Authorization": authorization} if authorization else {}
    data = None
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(source.url, data=data, headers=headers)
    shown = _shown(source)
    try:
        with _OPENER.open(request, timeout=settings.fetch_timeout_s) as reply:
            length = reply.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > cap:
                raise FetchError(f"{shown}: {length} bytes, over the cap of {cap}", 422)
            body = reply.read(cap + 1)
    except urllib.error.HTTPError as exc:
        error = _Unauthorized if exc.code == 401 else FetchError
        raise error(f"HTTP {exc.code} from {shown}{_detail(exc)}") from None
    except TimeoutError:
        raise FetchError(f"{shown}: no answer within {settings.fetch_timeout_s:g} s", 504) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise FetchError(f"{shown}: no answer within {settings.fetch_timeout_s:g} s", 504) from None
        raise FetchError(f"cannot reach {shown}: {exc.reason}") from None
    except OSError as exc:
        raise FetchError(f"cannot read {shown}: {exc}") from None
    if len(body) > cap:
        raise FetchError(f"{shown}: over the cap of {cap} bytes", 422)
    return body


def _from_label_studio(source: Source, settings: LsBackendSettings, token: LabelStudioToken | None,
                       cap: int) -> bytes:
    if token is None:
        return _open(source, settings, cap)
    header = token.header()
    try:
        return _open(source, settings, cap, authorization=header)
    except _Unauthorized as exc:
        if not token.personal:
            raise FetchError(f"Label Studio refused the {token.kind}: {exc}") from None
        token.rejected(header)  # expired early, or Label Studio restarted with a new key
    try:
        return _open(source, settings, cap, authorization=token.header())
    except _Unauthorized as exc:
        raise FetchError(f"Label Studio refused the {token.kind}: {exc}") from None


def exchange_token(settings: LsBackendSettings, personal_access_token: str) -> str:
    """An access token for the PAT (Label Studio's `POST /api/token/refresh/`)."""
    source = Source(_label_studio_base(settings) + "api/token/refresh/", True)
    try:
        body = _open(source, settings, 64 * 1024, json_body={"refresh": personal_access_token})
    except _Unauthorized as exc:
        raise FetchError(f"Label Studio refused the personal access token: {exc}") from None
    try:
        access = json.loads(body)["access"]
    except (ValueError, KeyError, TypeError):
        raise FetchError("Label Studio's /api/token/refresh/ answered without an access token") from None
    if not isinstance(access, str) or not access:
        raise FetchError("Label Studio's /api/token/refresh/ answered without an access token")
    return access


def check_token(settings: LsBackendSettings, token: LabelStudioToken) -> None:
    """FetchError unless Label Studio accepts the token (`GET /api/current-user/whoami`)."""
    _from_label_studio(Source(_label_studio_base(settings) + "api/current-user/whoami", True),
                       settings, token, 64 * 1024)


def fetch_image(url: str, settings: LsBackendSettings, token: LabelStudioToken | None = None) -> bytes:
    source = resolve(url, settings)
    if source.label_studio:
        return _from_label_studio(source, settings, token, settings.max_image_bytes)
    return _open(source, settings, settings.max_image_bytes)
