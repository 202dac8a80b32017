"""Review-policy files: read, validate, write, and serve one with reloads.

A policy file (JSON, or YAML when its name ends in .yaml/.yml) holds two keys:

    review_policy:   the prelabel.v1.ReviewPolicy message, proto3 JSON mapping
                     (default_band / by_category / include_rejected; camelCase works too)
    provenance:      free-form mapping: where the policy came from (`prelabel calibrate`
                     writes data, date, models and versions, and the per-class evidence)

Anything else, an unknown field inside review_policy, or a band out of range is refused
with PolicyFileError naming the file and the field. A process names its file in settings
(`review_policy_file`); `ServedPolicy` re-reads it when it changes, checked at most every
`review_policy_reload_s` on the next request, and keeps the old policy when the new file
is bad.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from prelabel.v1 import common_pb2

from services.common.errors import InvalidArgument
from services.common.review import ReviewPolicy, policy_from_proto, policy_to_proto, resolve

log = logging.getLogger(__name__)

POLICY_KEY, PROVENANCE_KEY = "review_policy", "provenance"
SOURCE_DEFAULT = "built-in defaults"


class PolicyFileError(ValueError):
    """A policy file that cannot be served (unreadable, malformed, out of range)."""


@dataclass(frozen=True)
class PolicyFile:
    policy: ReviewPolicy
    provenance: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def id(self) -> str:
        return self.policy.id


def _is_yaml(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith((".yaml", ".yml"))


def parse_policy(doc: Any, where: str = "policy file") -> PolicyFile:
    """Validate a loaded document (dict) as a policy file."""
    if not isinstance(doc, dict):
        raise PolicyFileError(f"{where}: expected a mapping with '{POLICY_KEY}', got {type(doc).__name__}")
    unknown = sorted(set(doc) - {POLICY_KEY, PROVENANCE_KEY})
    if unknown:
        raise PolicyFileError(f"{where}: unknown key(s) {unknown}; expected '{POLICY_KEY}' and '{PROVENANCE_KEY}'")
    if POLICY_KEY not in doc:
        raise PolicyFileError(f"{where}: missing '{POLICY_KEY}'")
    provenance = doc.get(PROVENANCE_KEY) or {}
    if not isinstance(provenance, dict):
        raise PolicyFileError(f"{where}: '{PROVENANCE_KEY}' must be a mapping")
    pb = common_pb2.ReviewPolicy()
    try:
        json_format.ParseDict(doc[POLICY_KEY], pb)
    except json_format.ParseError as exc:
        raise PolicyFileError(f"{where}: {POLICY_KEY}: {exc}") from None
    try:
        policy = policy_from_proto(pb, POLICY_KEY)
    except InvalidArgument as exc:
        raise PolicyFileError(f"{where}: {exc.message}") from None
    return PolicyFile(policy=policy, provenance=provenance)


def load_policy_file(path: str | os.PathLike) -> PolicyFile:
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyFileError(f"{where}: cannot read: {exc}") from None
    try:
        if _is_yaml(path):
            import yaml  # only needed for YAML files

            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text)
    except Exception as exc:  # noqa: BLE001 -- any parser error is the file's fault
        raise PolicyFileError(f"{where}: not valid {'YAML' if _is_yaml(path) else 'JSON'}: {exc}") from None
    loaded = parse_policy(doc, where)
    return PolicyFile(policy=loaded.policy, provenance=loaded.provenance, path=where)


def policy_document(policy: ReviewPolicy, provenance: dict[str, Any]) -> dict[str, Any]:
    """The file content for a policy (bands at the float32 precision they are served with)."""
    def band(b) -> dict:
        return {"accept_at": round(float(b.accept_at), 6), "reject_below": round(float(b.reject_below), 6)}

    body: dict[str, Any] = {"default_band": band(policy.default),
                            "by_category": {name: band(b) for name, b in sorted(policy.by_category.items())}}
    if policy.include_rejected:
        body["include_rejected"] = True
    served = parse_policy({POLICY_KEY: body}).policy  # the id of what servers will load
    return {POLICY_KEY: body, PROVENANCE_KEY: {"policy_id": served.id, **provenance}}


def write_policy_file(path: str | os.PathLike, policy: ReviewPolicy, provenance: dict[str, Any]) -> PolicyFile:
    """Write atomically (temp file + rename) and read it back through the loader, so a
    written file is always one the servers accept."""
    doc = policy_document(policy, provenance)
    if _is_yaml(path):
        import yaml

        text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    else:
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return load_policy_file(path)


class ServedPolicy:
    """The policy a process serves: built-in defaults, or its policy file, reloaded when
    the file changes. One per process (servicer); cheap to consult on every request."""

    def __init__(self, path: str | os.PathLike | None = None, reload_s: float = 5.0, metrics=None):
        self.path = str(path) if path else None
        self.reload_s = reload_s
        self.metrics = metrics
        self._checked = time.monotonic()
        self._stamp: tuple | None = None
        self.current = PolicyFile(policy=ReviewPolicy())
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
