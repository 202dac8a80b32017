"""Client SDK for the router's `prelabel.v1.PreLabeler` service.

    async with PreLabelClient("127.0.0.1:50051") as client:
        response = await client.prelabel(data, "img-1", ["detect", "segment"])
        masks = await client.segment_click(click_request)       # Segmenter.SegmentClick
        async for response in client.stream(items, ["detect"], window=8):
            ...

    with SyncPreLabelClient("127.0.0.1:50051") as client:      # e.g. a web backend
        labels = response_to_dict(client.prelabel(data, "img-1"))
        masks = client.segment_click(click_request)             # Segmenter.SegmentClick

Unary calls are retried by gRPC itself (service config): UNAVAILABLE only, at most
`max_attempts` attempts with exponential backoff, under retry throttling (retries stop
when more than half of recent calls failed), so an outage never multiplies the load.
Streams are not retried by gRPC (a stream that has answered cannot be replayed); bulk
callers resume them, as the `prelabel annotate` command does.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Any, ClassVar

import grpc

from prelabel.core import tasks as tasks_registry
from prelabel.core.review import decision_name
from prelabel.core.tasks import LabelKind
from prelabel.v1 import common_pb2, prelabel_pb2, prelabel_pb2_grpc, segmentation_pb2, segmentation_pb2_grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"
#: Largest message sent or received: images up to the router's limit (20 MiB by default), and replies
#: with many masks.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

#: Task name -> enum value and back, from the task registry (prelabel.core.tasks).
TASKS: dict[str, prelabel_pb2.Task] = {t.name: t.enum for t in tasks_registry.TASKS}
TASK_NAMES: dict[int, str] = {t.enum: t.name for t in tasks_registry.TASKS}

#: A task as a caller names it: its name ("detect") or its prelabel.v1.Task value.
TaskRef = str | int


class StreamStalled(Exception):
    """No response on a stream for `idle_timeout_s` while images were outstanding."""


def parse_tasks(tasks: str | Iterable[TaskRef] | None) -> list[prelabel_pb2.Task]:
    """Task enum values from names ("detect,segment" or ["detect", ...]) or enum values;
    None or empty means all four."""
    every = [t.enum for t in tasks_registry.TASKS]
    if tasks is None:
        return every
    if isinstance(tasks, str):
        tasks = [t for t in (p.strip() for p in tasks.split(",")) if t]
    out: list[prelabel_pb2.Task] = []
    for task in tasks:
        try:
            spec = tasks_registry.by_name(task) if isinstance(task, str) else tasks_registry.by_enum(int(task))
        except KeyError:
            raise ValueError(f"unknown task {task!r}; choose from {', '.join(tasks_registry.TASK_NAMES)}") from None
        if spec.enum not in out:
            out.append(spec.enum)
    return out or every


def service_config(
    *,
    max_attempts: int = 4,
    initial_backoff_s: float = 0.1,
    max_backoff_s: float = 2.0,
    backoff_multiplier: float = 2.0,
    throttle_max_tokens: int = 10,
    throttle_token_ratio: float = 0.1,
) -> str:
    """gRPC service config: retry PreLabel on UNAVAILABLE only, bounded and throttled.

    Throttling (gRFC A6): each failure costs a token, each success returns
    `throttle_token_ratio`; retries stop while tokens <= max_tokens / 2.
    """
    return json.dumps({
        "methodConfig": [{
            "name": [{"service": "prelabel.v1.PreLabeler", "method": "PreLabel"}],
            "retryPolicy": {
                "maxAttempts": max_attempts,
                "initialBackoff": f"{initial_backoff_s}s",
                "maxBackoff": f"{max_backoff_s}s",
                "backoffMultiplier": backoff_multiplier,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }],
        "retryThrottling": {"maxTokens": throttle_max_tokens, "tokenRatio": throttle_token_ratio},
    })


def channel_options(max_attempts: int = 4, extra: Sequence[tuple[str, Any]] = ()) -> list[tuple[str, Any]]:
    return [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", service_config(max_attempts=max_attempts)),
        # A call is retried only while its request fits the retry buffer (default 256 KiB,
        # smaller than most photos): keep whole images replayable.
        ("grpc.per_rpc_retry_buffer_size", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        *extra,
    ]


def open_channel(address: str, *, aio: bool, tls: bool = False, root_certificates: bytes | None = None,
                 private_key: bytes | None = None, certificate_chain: bytes | None = None,
                 max_attempts: int = 4, options: Sequence[tuple[str, Any]] = ()):
    """A grpc.aio (aio=True) or blocking channel with the retry policy and size limits."""
    api = grpc.aio if aio else grpc
    opts = channel_options(max_attempts, options)
    if not tls:
        return api.insecure_channel(address, options=opts)
    creds = grpc.ssl_channel_credentials(
        root_certificates=root_certificates, private_key=private_key, certificate_chain=certificate_chain)
    return api.secure_channel(address, creds, options=opts)


def build_request(
    image_bytes: bytes,
    image_id: str = "",
    tasks: str | Iterable[TaskRef] | None = None,
    *,
    score_threshold: float | None = None,
    category_names: Sequence[str] = (),
    max_labels: int = 0,
    cascade: bool = False,
    include_polygons: bool = False,
    review_policy: common_pb2.ReviewPolicy | None = None,
) -> prelabel_pb2.PreLabelRequest:
    request = prelabel_pb2.PreLabelRequest(
        image=common_pb2.Image(data=image_bytes, image_id=image_id),
        tasks=parse_tasks(tasks),
        category_names=list(category_names),
        max_labels=max_labels,
        cascade=cascade,
        include_polygons=include_polygons,
    )
    if score_threshold is not None:
        request.score_threshold = score_threshold
    if review_policy is not None:
        request.review_policy.CopyFrom(review_policy)
    return request


def bearer_metadata(token: str) -> tuple[tuple[str, str]]:
    """The `authorization: Bearer <token>` metadata of the router's token auth
    (PRELABEL_AUTH_TOKENS). ValueError for a token a header cannot carry; the message
    never repeats the token."""
    if not token or not token.isascii() or not token.isprintable() or " " in token:
        raise ValueError("a token must be non-empty printable ASCII without spaces")
    return (("authorization", f"Bearer {token}"),)


class _ClientBase:
    """What both clients share: one channel (retry policy, size limits, TLS), the router's
    stub, and the default deadline and metadata of every call."""

    #: grpc.aio channel (True) or blocking channel (False).
    _aio: ClassVar[bool]

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout_s: float = 60.0,
        tls: bool = False,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        token: str | None = None,
        max_attempts: int = 4,
        options: Sequence[tuple[str, Any]] = (),
    ):
        self.address = address
        self.timeout_s = timeout_s
        self.metadata = tuple(metadata) + (bearer_metadata(token) if token is not None else ())
        self.channel = open_channel(
            address, aio=self._aio, tls=tls, root_certificates=root_certificates, private_key=private_key,
            certificate_chain=certificate_chain, max_attempts=max_attempts, options=options)
        self.stub = prelabel_pb2_grpc.PreLabelerStub(self.channel)
        #: The router's interactive segmentation (Segmenter.SegmentClick, ClickSession).
        self.segmenter = segmentation_pb2_grpc.SegmenterStub(self.channel)

    def _call_options(self, timeout_s: float | None) -> dict[str, Any]:
        """The deadline (`timeout_s`, else the client's) and metadata of one call."""
        return {"timeout": timeout_s or self.timeout_s, "metadata": self.metadata}


class PreLabelClient(_ClientBase):
    """asyncio client. `tls=True` uses the system roots unless `root_certificates` is
    given; `private_key` + `certificate_chain` add a client certificate (mTLS).
    `metadata` is sent with every call; `token` adds `authorization: Bearer <token>` to it."""

    _aio = True

    async def wait_ready(self, timeout_s: float) -> None:
        """Wait until the channel is connected; asyncio.TimeoutError after `timeout_s`."""
        await asyncio.wait_for(self.channel.channel_ready(), timeout_s)

    async def prelabel(
        self,
        image_bytes: bytes,
        image_id: str = "",
        tasks: str | Iterable[TaskRef] | None = None,
        *,
        timeout_s: float | None = None,
        **request_options: Any,
    ) -> prelabel_pb2.PreLabelResponse:
        """One image, all requested tasks (None: all four). `request_options` are the
        keyword arguments of `build_request`. Raises grpc.aio.AioRpcError."""
        request = build_request(image_bytes, image_id, tasks, **request_options)
        return await self.stub.PreLabel(request, **self._call_options(timeout_s))

    async def segment_click(self, request: segmentation_pb2.ClickRequest, *,
                            timeout_s: float | None = None) -> segmentation_pb2.ClickResponse:
        """One click prompt on an image (Segmenter.SegmentClick through the router): the
        candidate masks, best first. Raises grpc.aio.AioRpcError."""
        return await self.segmenter.SegmentClick(request, **self._call_options(timeout_s))

    async def stream(
        self,
        items: AsyncIterable[tuple[str, bytes]] | Iterable[tuple[str, bytes]],
        tasks: str | Iterable[TaskRef] | None = None,
        *,
        window: int = 8,
        idle_timeout_s: float | None = None,
        **request_options: Any,
    ) -> AsyncGenerator[prelabel_pb2.PreLabelResponse, None]:
        """Label `(image_id, bytes)` items over one bidi stream; responses come in
        completion order (match them by image_id).

        At most `window` images are outstanding: the next item is taken from `items` (and
        so read, if it is lazy) only when a response has freed a slot, so memory stays
        flat however long the input. `idle_timeout_s`: raise StreamStalled when images are
        outstanding and no response came for that long. Raises grpc.aio.AioRpcError when
        the stream fails; breaking out of the loop cancels the stream.
        """
        if window < 1:
            raise ValueError("window must be >= 1")
        parsed_tasks = parse_tasks(tasks)
        call = self.stub.PreLabelStream(metadata=self.metadata)
        slots = asyncio.Semaphore(window)
        outstanding = 0

        async def send() -> None:
            nonlocal outstanding
            iterator = (items if isinstance(items, AsyncIterable) else _aiter(items)).__aiter__()
            while True:
                await slots.acquire()  # before taking an item: at most `window` are held
                try:
                    image_id, data = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                request = build_request(data, image_id, parsed_tasks, **request_options)
                outstanding += 1
                try:
                    await call.write(request)
                except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    return  # the stream ended; the read side reports its status
            try:
                await call.done_writing()
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                return

        sender = asyncio.create_task(send())
        read: asyncio.Future | None = None
        try:
            while True:
                if read is None:
                    read = asyncio.ensure_future(call.read())
                waiters = {read} if sender.done() else {read, sender}
                done, _ = await asyncio.wait(waiters, timeout=idle_timeout_s,
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    if outstanding:
                        raise StreamStalled(
                            f"no response for {idle_timeout_s}s with {outstanding} images outstanding")
                    continue
                if sender in done and (error := sender.exception()) is not None:
                    raise error  # the items iterator failed
                if read not in done:
                    continue
                response, read = read.result(), None
                if response is grpc.aio.EOF:
                    # The router may end the stream with an error status after its last
                    # message; read() returns EOF either way.
                    code = await call.code()
                    if code != grpc.StatusCode.OK:
                        raise grpc.aio.AioRpcError(code, await call.initial_metadata(),
                                                   await call.trailing_metadata(), await call.details())
                    break
                outstanding -= 1
                slots.release()
                yield response
        finally:
            sender.cancel()
            if read is not None:
                read.cancel()
            call.cancel()
            # Return only once the sender has handled its cancellation: `items` is not left
            # running (e.g. halfway through taking an item) after the stream is over.
            await asyncio.wait([sender])

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> PreLabelClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


async def _aiter(items: Iterable[tuple[str, bytes]]) -> AsyncIterator[tuple[str, bytes]]:
    for item in items:
        yield item


class SyncPreLabelClient(_ClientBase):
    """Blocking client for code without an event loop (e.g. a Django or Flask backend of
    an annotation tool). Same options and retry policy as PreLabelClient; thread-safe."""

    _aio = False

    def prelabel(
        self,
        image_bytes: bytes,
        image_id: str = "",
        tasks: str | Iterable[TaskRef] | None = None,
        *,
        timeout_s: float | None = None,
        **request_options: Any,
    ) -> prelabel_pb2.PreLabelResponse:
        """As PreLabelClient.prelabel; raises grpc.RpcError."""
        request = build_request(image_bytes, image_id, tasks, **request_options)
        return self.stub.PreLabel(request, **self._call_options(timeout_s))

    def segment_click(self, request: segmentation_pb2.ClickRequest, *,
                      timeout_s: float | None = None) -> segmentation_pb2.ClickResponse:
        """As PreLabelClient.segment_click; raises grpc.RpcError."""
        return self.segmenter.SegmentClick(request, **self._call_options(timeout_s))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> SyncPreLabelClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------- plain dicts

WEIGHTS_NAMES = {
    common_pb2.WEIGHTS_UNSPECIFIED: "unspecified",
    common_pb2.WEIGHTS_PRETRAINED: "pretrained",
    common_pb2.WEIGHTS_CUSTOM: "custom",
    common_pb2.WEIGHTS_RANDOM: "random",
}


def detection_to_dict(detection: common_pb2.Detection, task: str) -> dict[str, Any]:
    b, p = detection.box, detection.provenance
    return {
        "task": task,
        "category": detection.category.name,
        "category_id": detection.category.id,
        "score": detection.score,
        "review": decision_name(detection.review),
        "box": [b.x_min, b.y_min, b.x_max, b.y_max],
        "model": {"name": p.model_name, "version": p.model_version, "architecture": p.architecture,
                  "weights": WEIGHTS_NAMES.get(p.weights, "unspecified"), "weights_source": p.weights_source},
    }


def _keypoints(instance) -> list[dict[str, Any]]:
    return [{"name": k.name, "x": k.x, "y": k.y, "score": k.score, "visibility": k.visibility}
            for k in instance.keypoints]


def _label_to_dict(task: tasks_registry.TaskSpec, label) -> dict[str, Any]:
    out = detection_to_dict(task.detection(label), task.name)
    if task.kind is LabelKind.MASK:
        out["mask"] = {"size": list(label.mask.size), "counts": label.mask.counts.decode("ascii")}
        out["area"] = label.area
        out["mask_quality"] = label.mask_quality
        out["polygons"] = [list(p.points) for p in label.polygons]
    elif task.kind is LabelKind.KEYPOINTS:
        out["keypoints"] = _keypoints(label)
    return out


def response_to_dict(response: prelabel_pb2.PreLabelResponse) -> dict[str, Any]:
    """A PreLabelResponse as plain JSON-ready dicts: one flat `labels` list (box as
    [x_min, y_min, x_max, y_max] pixels; masks as COCO RLE with `counts` a str; keypoints
    with COCO visibility), the image's uncertainty (with the id of the review policy that
    decided it and, from the router, the tasks' disagreement) and each task's outcome."""
    labels = [_label_to_dict(task, label) for task in tasks_registry.TASKS for label in task.labels(response)]
    u = response.uncertainty
    return {
        "image_id": response.image_id,
        "width": response.image_size.width,
        "height": response.image_size.height,
        "labels": labels,
        "uncertainty": {"score": u.score, "needs_review_count": u.needs_review_count,
                        "min_margin": u.min_margin, "review_policy_id": u.review_policy_id,
                        "disagreement": u.disagreement},
        "task_results": [{"task": TASK_NAMES.get(r.task, str(r.task)), "code": r.code, "message": r.message,
                          "latency_ms": r.latency_ms} for r in response.task_results],
        "keypoint_schemas": [{"name": s.name, "keypoint_names": list(s.keypoint_names),
                              "skeleton": list(s.skeleton)} for s in response.keypoint_schemas],
    }
