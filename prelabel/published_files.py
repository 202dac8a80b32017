"""The one HTTP client of `prelabel models pull`: published weights files (torchvision's, Meta's
SAM checkpoints) from the catalog's fixed URLs, or an operator's --base-url; never a URL that
arrives in a request (tests/integration/test_security.py lists the modules allowed one)."""
from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path


class DownloadError(OSError):
    """A file could not be fetched (the message says why: the URL error's reason)."""


def download(url: str, dest: Path, timeout_s: float) -> None:
    """`url` into `dest`, streamed; DownloadError when it cannot be fetched."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, dest.open("wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except urllib.error.URLError as exc:
        raise DownloadError(str(exc.reason)) from None
