"""Settings shared by every gRPC process. Each process defines exactly one subclass
(its own defaults); all read env vars with the PRELABEL_ prefix."""
from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from prelabel.core.limits import MAX_IMAGE_BYTES
from services.common.requests import MAX_LABELS_LIMIT


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRELABEL_", extra="ignore")

    grpc_host: str = "127.0.0.1"
    """Address the gRPC server binds to (0.0.0.0 in a pod)."""

    grpc_port: int = 0
    """gRPC port; each process sets its default (router 50051, detection 50052,
    segmentation 50053, keypoints 50054). 0 picks a free port."""

    metrics_host: str = "127.0.0.1"
    """Address of the Prometheus /metrics endpoint."""

    metrics_port: int | None = None
    """Port of the Prometheus /metrics endpoint; None disables it, 0 picks a free port."""

    triton_url: str = "127.0.0.1:8001"
    """Triton gRPC endpoint, host:port."""

    require_pretrained: bool = False
    """Production: refuse to start when a model reports random weights."""

    max_image_bytes: int = MAX_IMAGE_BYTES
    """Largest encoded image accepted, 20 MiB (INVALID_ARGUMENT above it)."""

    max_image_pixels: int = 36_000_000
    """Largest width*height accepted, checked from the header before decoding
    (decompression bombs). Peers use 16.8 to 75 MP."""

    max_decode_pixels_in_flight: int = 72_000_000
    """Source pixels this process decodes at once, across requests (two images at the
    pixel cap); more wait for those in flight. Each costs ~8 bytes a pixel at its peak, so
    this bounds decode memory (~600 MB) inside the service pods' 2 GiB."""

    inline_decode_max_bytes: int = 16 * 1024
    """Images up to this size are decoded on the event loop (a worker-thread hop costs
    more than their decode); larger ones in a worker thread."""

    max_request_fields_bytes: int = 256 * 1024
    """Room for a request's fields other than the image (prompts, review policy, ids)
    in the derived receive limit, 256 KiB."""

    grpc_max_receive_bytes: int | None = None
    """gRPC receive limit per message, checked after decompression; a larger message
    gets RESOURCE_EXHAUSTED from gRPC itself, with no retry hint (a size error, not
    overload). None: max_image_bytes + max_request_fields_bytes (20 MiB + 256 KiB by
    default), so nothing much larger than an acceptable image is ever buffered."""

    grpc_max_send_bytes: int = 32 * 1024 * 1024
    """Largest response this process sends (and the router accepts from a service),
    32 MiB: masks and polygons of a large image can exceed the request's size."""

    accept_compressed_requests: bool = False
    """Accept gzip/deflate-compressed requests. Off: such calls end UNIMPLEMENTED before
    anything is decompressed. Images are compressed already, so request compression
    saves little and lets a few KB on the wire cost megabytes (a compression bomb)."""

    max_prompts: int = MAX_LABELS_LIMIT
    """Prompts one request may carry (segmentation, keypoints): as many as the labels a
    request may ask for, so a cascade of one image's detections fits. More than a model's
    prompt rows go to it in several inferences."""

    image_state_max_bytes: int = 0
    """Bound of the per-image state a Triton-backed service keeps between requests on the
    same image (services.common.image_state: decoded, letterboxed inputs; later, image
    embeddings), least recently used evicted first. 0 disables it (nothing hashed or held):
    the default of a process whose requests rarely repeat an image; a process that expects
    repeats sets its own default (keypoints: 64 MiB)."""

    max_in_flight: int = 64
    """Admission control, counted in images: a unary call is one, a stream one per image
    it has in flight (an idle stream none). Beyond this, RESOURCE_EXHAUSTED."""

    max_receiving_bytes: int = 192 * 1024 * 1024
    """Memory for requests being received and parsed (unary requests; on the router also
    each image of a PreLabelStream). No size is known before gRPC reads a message, so each
    read reserves the worst case, the receive limit x 3 copies (~61 MiB: gRPC's buffer,
    Python's bytes, the parsed message), before the message is read, and gives it back
    once parsed (max_in_flight_image_bytes then counts the image); a call that finds no
    room waits (HTTP/2 flow control holds its bytes back) up to receive_wait_s, then
    RESOURCE_EXHAUSTED with a retry hint. 192 MiB: three received at once
    (services.common.receive_budget)."""

    receive_wait_s: float = 5.0
    """How long a unary call waits for room in max_receiving_bytes (at most its deadline)
    before RESOURCE_EXHAUSTED with a retry hint."""

    max_in_flight_image_bytes: int = 384 * 1024 * 1024
    """Encoded image bytes held by the calls in flight (services.common.image_bytes): a
    model service counts each request's image until the call ends (a click session's start
    while it is prepared), the router the image
    plus three copies per task it fans out to. A call beyond gets RESOURCE_EXHAUSTED with a
    retry hint (a call alone always runs). With max_receiving_bytes and the decode budget,
    each process stays inside its pod's memory limit at the caps (64 calls of 20 MiB at
    once: tests/reliability/test_router_memory.py, test_service_memory.py)."""

    keepalive_time_s: float = 60.0
    """HTTP/2 keepalive: the server pings a connection that has been silent this long."""

    keepalive_timeout_s: float = 20.0
    """A keepalive ping unanswered for this long closes the connection and cancels its
    calls (a vanished peer frees its slots and buffers)."""

    retry_after_ms: int = 200
    """Retry hint sent with RESOURCE_EXHAUSTED (trailing metadata `retry-after-ms`)."""

    default_timeout_s: float = 30.0
    """Deadline applied when a caller sets none (no hop runs without a deadline)."""

    min_time_left_s: float = 0.01
    """Reject with DEADLINE_EXCEEDED when less than this is left of the deadline."""

    shutdown_grace_s: float = 10.0
    """On SIGTERM: health goes NOT_SERVING, then in-flight requests get this long."""

    startup_timeout_s: float = 600.0
    """How long to wait for dependencies (Triton models) at start-up."""

    health_poll_s: float = 1.0
    """How often readiness re-checks dependencies."""

    tls_cert_file: Path | None = None
    """Server certificate chain (PEM). With tls_key_file, the gRPC port serves TLS only."""

    tls_key_file: Path | None = None
    """Server private key (PEM)."""

    tls_client_ca_file: Path | None = None
    """CA bundle (PEM) for client certificates: when set, clients must present a
    certificate signed by it (mutual TLS)."""

    auth_tokens: dict[str, list[str]] = {}
    """Bearer tokens and the methods each may call ("*" for all), e.g.
    {"annotator-token": ["PreLabel", "Detect"], "bulk-token": ["*"]}. Empty: no
    token required (development; rely on NetworkPolicies)."""

    review_policy_file: Path | None = None
    """Review-policy file (JSON or YAML, written by `prelabel calibrate`) whose bands
    replace the built-in 0.85 / 0.30 for requests that set none. A bad file stops
    start-up; the file is re-read when it changes, and a bad new version is refused
    (the old policy stays, logged and counted in prelabel_review_policy_reloads_total)."""

    review_policy_reload_s: float = 5.0
    """How often, at most, the policy file is checked for changes (on the next request)."""

    @property
    def receive_limit_bytes(self) -> int:
        """The gRPC receive limit in effect (grpc_max_receive_bytes or the derived one)."""
        if self.grpc_max_receive_bytes is not None:
            return self.grpc_max_receive_bytes
        return self.max_image_bytes + self.max_request_fields_bytes
