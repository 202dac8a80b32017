"""The review policy a process serves: built-in defaults (review.BUILT_IN_POLICY), or its policy file
(prelabel.core.policy_file), re-read when it changes -- checked at most every
`review_policy_reload_s` on the next request -- keeping the old policy when the new file
is bad."""
from __future__ import annotations

import logging
import os
import time

from prelabel.core.policy_file import PolicyFile, PolicyFileError, load_policy_file
from prelabel.core.review import BUILT_IN_POLICY, policy_to_proto, resolve

log = logging.getLogger(__name__)

SOURCE_DEFAULT = "built-in defaults"


class ServedPolicy:
    """The policy a process serves: built-in defaults, or its policy file, reloaded when
    the file changes. One per process (servicer); cheap to consult on every request."""

    def __init__(self, path: str | os.PathLike | None = None, reload_s: float = 5.0, metrics=None):
        self.path = str(path) if path else None
        self.reload_s = reload_s
        self.metrics = metrics
        self._checked = time.monotonic()
        self._stamp: tuple | None = None
        self.current = PolicyFile(policy=BUILT_IN_POLICY)
        if self.path:
            self._stamp = self._file_stamp()
            self.current = load_policy_file(self.path)  # a bad file stops start-up here
            log.info("review policy %s loaded from %s", self.current.id, self.path)
        self._report(None, self.current)

    @classmethod
    def from_settings(cls, settings, metrics=None) -> ServedPolicy:
        return cls(settings.review_policy_file, settings.review_policy_reload_s, metrics)

    @property
    def source(self) -> str:
        return self.path or SOURCE_DEFAULT

    def _file_stamp(self) -> tuple | None:
        assert self.path is not None  # only called with a policy file
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _report(self, old: PolicyFile | None, new: PolicyFile) -> None:
        if self.metrics is None:
            return
        gauge = self.metrics.review_policy
        if old is not None:
            gauge.labels(self.metrics.service, old.id, self.source).set(0)
        gauge.labels(self.metrics.service, new.id, self.source).set(1)

    def maybe_reload(self) -> None:
        """Re-read the file if it changed since the last look (at most every reload_s)."""
        if not self.path or time.monotonic() - self._checked < self.reload_s:
            return
        self._checked = time.monotonic()
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            new = load_policy_file(self.path)
        except PolicyFileError as exc:
            log.error("review policy reload refused, still serving %s: %s", self.current.id, exc)
            if self.metrics is not None:
                self.metrics.review_policy_reloads.labels(self.metrics.service, "refused").inc()
            return
        old, self.current = self.current, new
        if self.metrics is not None:
            self.metrics.review_policy_reloads.labels(self.metrics.service, "ok").inc()
        if new.id != old.id:
            self._report(old, new)
            log.info("review policy %s replaced %s (%s)", new.id, old.id, self.path)

    def apply(self, request):
        """`request` (any message with a `review_policy` field) with its effective policy
        spelled out: the served one unless the request sets bands of its own. Raises
        InvalidArgument for a bad per-request policy."""
        self.maybe_reload()
        effective = resolve(request.review_policy, self.current.policy)
        request.review_policy.CopyFrom(policy_to_proto(effective))
        return request
