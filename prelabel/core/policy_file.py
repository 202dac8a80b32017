"""Review-policy files: read, validate, write (shared by the CLI and the servers).

A policy file (JSON, or YAML when its name ends in .yaml/.yml) holds two keys:

    review_policy:   the prelabel.v1.ReviewPolicy message, proto3 JSON mapping
                     (default_band / by_category / include_rejected; camelCase works too)
    provenance:      free-form mapping: where the policy came from (`prelabel calibrate`
                     writes data, date, models and versions, and the per-class evidence)

Anything else, an unknown field inside review_policy, or a band out of range is refused
with PolicyFileError naming the file and the field. Serving one (with reloads) is the
server's business: services.common.served_policy.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from prelabel.core.errors import InvalidArgument
from prelabel.core.review import ReviewPolicy, policy_from_proto
from prelabel.v1 import common_pb2

POLICY_KEY, PROVENANCE_KEY = "review_policy", "provenance"


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
