"""Settings of `prelabel ls-backend` (environment variables, prefix `PRELABEL_LS_`)."""
from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from prelabel.core.limits import MAX_IMAGE_BYTES
from prelabel.formats.common import DEFAULT_OUTPUTS_REVIEW, REVIEW_CHOICES


class LsBackendSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRELABEL_LS_", extra="ignore")

    #: Listen address and port of the HTTP server (Label Studio connects to it).
    host: str = "127.0.0.1"
    port: int = Field(default=9090, ge=0, le=65535)  # 0: any free port (tests)
    #: The prelabel router.
    router: str = "127.0.0.1:50051"
    #: Deadline of one router call, seconds.
    timeout_s: float = Field(default=30.0, gt=0)
    #: TLS to the router (system roots unless ca_file) and a bearer token it accepts.
    router_tls: bool = False
    router_ca_file: str | None = None
    router_token: str | None = None
    #: Base URL of Label Studio: relative image URLs (`/data/local-files/?d=...`,
    #: `/data/upload/...`) are fetched from it, with `label_studio_token`.
    label_studio_url: str = "http://127.0.0.1:8080"
    #: Label Studio token, sent only to label_studio_url (never logged): a personal access
    #: token (Account & Settings -> Personal Access Token; Label Studio 1.23's default),
    #: exchanged for short-lived access tokens, or a legacy API token where the organisation
    #: still enables those. Which one is read from the token itself (tokens.py). Unset: no
    #: token (images from allowed_url_prefixes only, or a Label Studio serving them openly).
    label_studio_token: SecretStr | None = None
    #: URL prefixes images may be fetched from besides label_studio_url (e.g. a bucket's
    #: pre-signed URL host `https://bucket.s3.amazonaws.com/`). Anything else is refused:
    #: no SSRF through task data.
    allowed_url_prefixes: list[str] = []
    #: Largest image fetched, bytes; larger ones are refused without reading them whole.
    max_image_bytes: int = Field(default=MAX_IMAGE_BYTES, gt=0)
    #: Seconds to fetch one image.
    fetch_timeout_s: float = Field(default=15.0, gt=0)
    #: Regions below this score are not returned.
    score_threshold: float = Field(default=0.0, ge=0, le=1)
    #: The review decisions whose drafts are returned, comma-separated, as `prelabel annotate
    #: --outputs-review` (formats.common.output_labels): by default no rejected draft, even
    #: when the router's review policy has include_rejected.
    outputs_review: Annotated[tuple[str, ...], NoDecode] = DEFAULT_OUTPUTS_REVIEW
    #: Largest request body accepted (a /predict with many tasks), bytes.
    max_request_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    #: Tasks per /predict call served at most (Label Studio batches "retrieve predictions").
    max_tasks_per_request: int = Field(default=64, ge=1)
    #: Basic auth Label Studio must present (its ML backend connection's basic auth);
    #: unset: no auth (bind to a private address). /health and /metrics stay open for probes.
    basic_auth_user: str | None = None
    basic_auth_password: str | None = None
    #: After SIGTERM: stop accepting, then wait at most this long for requests in flight
    #: (the suite-wide PRELABEL_SHUTDOWN_GRACE_S when set, as the k8s ConfigMap does).
    shutdown_grace_s: float = Field(default=10.0, ge=0, validation_alias=AliasChoices(
        "PRELABEL_LS_SHUTDOWN_GRACE_S", "PRELABEL_SHUTDOWN_GRACE_S", "shutdown_grace_s"))

    @field_validator("outputs_review", mode="before")
    @classmethod
    def _review_names(cls, value: object) -> object:
        names = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(names, (list, tuple)):
            return names  # pydantic says what is wrong with it
        bad = [n for n in names if n not in REVIEW_CHOICES]
        if bad or not names:
            raise ValueError(f"choose from {','.join(REVIEW_CHOICES)} (got {value!r})")
        return tuple(dict.fromkeys(names))
