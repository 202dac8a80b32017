from __future__ import annotations

from pathlib import Path

from services.common.settings import ServiceSettings


class RouterSettings(ServiceSettings):
    """Router process settings (env prefix PRELABEL_)."""

    grpc_port: int = 50051
    metrics_port: int | None = 9091

    detection_addr: str = "127.0.0.1:50052"
    """Detection service, host:port."""

    segmentation_addr: str = "127.0.0.1:50053"
    """Segmentation service, host:port."""

    keypoints_addr: str = "127.0.0.1:50054"
    """Keypoint service, host:port."""

    max_click_sessions: int = 8
    """ClickSessions the router forwards at once; more get RESOURCE_EXHAUSTED with a retry
    hint before anything of theirs is read. Each open session may be receiving and
    forwarding an image at any moment (~65 MB for a 20 MiB one: gRPC's buffer, the parsed
    message, the downstream send), and a session is idle between clicks by nature, so it
    cannot wait its turn in max_receiving_bytes the way a bulk stream's read does. 8 of
    them with the budgets above: 1.14-1.23 GB with every kind of 20 MB call at once,
    inside the router pod's 1.5 GiB (tests/reliability/test_router_memory.py); raise the
    pod limit ~65 MB per session added. SegmentClick (one call per click) needs no session."""

    stream_window: int = 8
    """PreLabelStream: images in flight per stream. The router reads the next image
    only when one of these has been written back, so a slow reader slows the sender
    (gRPC flow control) instead of growing the router's memory."""

    stream_item_timeout_s: float = 120.0
    """PreLabelStream: deadline of each image's fan-out (bounded by the stream's)."""

    stream_yield_idle_s: float = 2.0
    """PreLabelStream: a stream waiting for its next image holds a share of
    max_receiving_bytes (the image may come at any moment). With nothing in flight and no
    image for this long while other calls wait for that room, it ends UNAVAILABLE (the
    client opens a new one when it has work), so idle streams cannot lock out the
    calls that have images to send; below receive_wait_s, which those calls wait."""

    stream_idle_timeout_s: float = 300.0
    """PreLabelStream: a stream with no image in flight that sends none for this long ends
    UNAVAILABLE (the client opens a new one when it has work): an abandoned stream must
    not live forever."""

    merge_margin_s: float = 0.1
    """Kept back from each downstream call's deadline (at most a fifth of a short
    deadline) so that, when a service hangs, its task ends DEADLINE_EXCEEDED while the
    router still has time to reply with the tasks that finished."""

    downstream_ca_file: Path | None = None
    """CA (PEM) that signed the services' certificates: calls them over TLS when set."""

    downstream_cert_file: Path | None = None
    """Router's client certificate (PEM) for services that require mutual TLS."""

    downstream_key_file: Path | None = None
    """Private key (PEM) of downstream_cert_file."""

    downstream_token: str | None = None
    """Bearer token the router presents to the services (their auth_tokens)."""
