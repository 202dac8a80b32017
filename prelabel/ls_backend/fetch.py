"""Fetch a task's image: only from Label Studio itself or an allow-listed prefix, never
following redirects, with a byte cap (no SSRF, no memory blow-up through task data)."""
from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

from prelabel.ls_backend.settings import LsBackendSettings


class FetchError(Exception):
    """The image cannot be fetched (refused URL, HTTP error, too large)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise FetchError(f"redirect to {newurl!r} refused")


_OPENER = urllib.request.build_opener(_NoRedirect)


def resolve(url: str, settings: LsBackendSettings) -> tuple[str, dict[str, str]]:
    """The absolute URL to fetch and its headers; FetchError when not allowed."""
    base = settings.label_studio_url.rstrip("/") + "/"
    absolute = urllib.parse.urljoin(base, url)
    parsed = urllib.parse.urlsplit(absolute)
    if parsed.scheme not in ("http", "https") or "@" in parsed.netloc:
        raise FetchError(f"URL {url!r} refused: only http(s) without credentials")
    if absolute.startswith(base):
        headers = {}
        if settings.label_studio_token:
            headers["Authorization"] = f"{settings.label_studio_token_scheme} {settings.label_studio_token}"
        return absolute, headers  # the token goes to Label Studio only
    if any(absolute.startswith(prefix) for prefix in settings.allowed_url_prefixes if prefix.endswith("/")):
        return absolute, {}
    raise FetchError(f"URL {url!r} is not under Label Studio or an allowed prefix")


def fetch_image(url: str, settings: LsBackendSettings) -> bytes:
    absolute, headers = resolve(url, settings)
    request = urllib.request.Request(absolute, headers=headers)
    cap = settings.max_image_bytes
    try:
        with _OPENER.open(request, timeout=settings.fetch_timeout_s) as reply:
            length = reply.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > cap:
                raise FetchError(f"image of {length} bytes is over the cap of {cap}")
            data = reply.read(cap + 1)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"HTTP {exc.code} for {absolute}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"cannot fetch {absolute}: {exc}") from None
    if len(data) > cap:
        raise FetchError(f"image is over the cap of {cap} bytes")
    return data
