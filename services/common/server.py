"""gRPC server bootstrap shared by every process: interceptors, health (per service
name), reflection, /metrics, readiness that follows dependencies, graceful shutdown."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from services.common.image_bytes import ImageBytesBudget
from services.common.interceptors import (
    Admission,
    AdmissionInterceptor,
    AuthInterceptor,
    ErrorInterceptor,
    ImageBytesInterceptor,
    MetricsInterceptor,
    ReceiveBudgetInterceptor,
)
from services.common.metrics import Metrics
from services.common.receive_budget import ReceiveBudget
from services.common.settings import ServiceSettings

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

ReadyCheck = Callable[[], Awaitable[bool]]

#: Health service name that stays SERVING while the process is alive (liveness
#: probes): "" and the API names follow readiness, and a pod must not be restarted
#: just because Triton is down.
LIVENESS = "liveness"


class DrainingHealthServicer(HealthServicer):
    """grpc.health.v1 whose Watch streams end once they have sent NOT_SERVING during
    shutdown: an open watch (client-side health checking, a mesh) must not hold
    `server.stop(grace)` for the whole grace period.

    Every watcher of a service name waits on one shared condition. The reference
    servicer drops that condition when *any* watcher leaves, so the others wait on an
    orphan and never hear of a change again (nor of the shutdown); here the condition
    goes only with the last watcher of its name."""

    def __init__(self) -> None:
        super().__init__()
        self._watcher_counts: collections.Counter[str] = collections.Counter()

    async def Watch(self, request, context):
        service = request.service
        condition = self._server_watchers[service]
        self._watcher_counts[service] += 1
        last = None
        try:
            async with condition:
                while True:
                    status = self._server_status.get(
                        service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
                    if status != last:
                        await context.write(health_pb2.HealthCheckResponse(status=status))
                        last = status
                    if self._gracefully_shutting_down:
                        return
                    await condition.wait()
        finally:
            self._watcher_counts[service] -= 1
            if self._watcher_counts[service] <= 0:
                del self._watcher_counts[service]
                self._server_watchers.pop(service, None)


class GrpcApp:
    """One aio gRPC server with the suite's standard parts.

    Health starts NOT_SERVING; `run()` awaits `startup()` (dependencies, warm-up),
    then turns SERVING and keeps following `ready_check()`. On SIGTERM/SIGINT:
    NOT_SERVING first, then `server.stop(grace)`, then `shutdown()` callbacks.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        metrics: Metrics,
        service_names: Iterable[str],
        register: Callable[[grpc.aio.Server], None],
        *,
        ready_check: ReadyCheck | None = None,
        startup: Callable[[], Awaitable[None]] | None = None,
        shutdown: Callable[[], Awaitable[None]] | None = None,
        components: Iterable[str] = (),
        component_check: Callable[[], Awaitable[dict[str, bool]]] | None = None,
        per_item_streams: Iterable[str] = (),
        admission: Admission | None = None,
        draining: Callable[[], None] | None = None,
        receive_budget: ReceiveBudget | None = None,
        image_bytes: ImageBytesBudget | None = None,
    ):
        self.settings = settings
        self.metrics = metrics
        self.service_names = list(service_names)
        self.ready_check = ready_check
        # Extra health names, one per dependency (the router's services), each SERVING
        # while that dependency is; read after every ready_check.
        self.components = list(components)
        self.component_check = component_check
        self._startup = startup
        self._shutdown = shutdown
        self.health = DrainingHealthServicer()
        # Shared with the servicer of a per-item stream, which admits each image itself.
        self.admission = admission or Admission(settings.max_in_flight, settings.retry_after_ms)
        # Called when shutdown begins, before the grace: open streams stop taking new items.
        self._draining = draining
        interceptors = [MetricsInterceptor(metrics), ErrorInterceptor(settings.retry_after_ms, per_item_streams)]
        if settings.auth_tokens:
            interceptors.append(AuthInterceptor(settings.auth_tokens))
        interceptors.append(AdmissionInterceptor(self.admission, per_item_streams))
        # Every process reads big requests a few at a time; the router passes its own budget
        # (its PreLabelStream reads under it too). Inner: calls refused on metadata never reserve.
        self.receive_budget = receive_budget or ReceiveBudget.for_settings(settings)
        interceptors.append(ReceiveBudgetInterceptor(self.receive_budget, settings.default_timeout_s))
        if image_bytes is not None:  # innermost: holds the parsed request's image (a model service)
            interceptors.append(ImageBytesInterceptor(image_bytes))
        self.server = grpc.aio.server(
            interceptors=interceptors,
            options=server_options(settings),
        )
        register(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*self.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME],
            self.server,
        )
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._stopping = asyncio.Event()
        self._serving = False
        self._watch_task: asyncio.Task | None = None

    async def set_serving(self, serving: bool) -> None:
        self._serving = serving
        status = SERVING if serving else NOT_SERVING
        for name in ("", *self.service_names):
            await self.health.set(name, status)
        if not serving:
            for name in self.components:
                await self.health.set(name, NOT_SERVING)

    async def _follow_components(self) -> None:
        if self.component_check is None or self._stopping.is_set():
            return
        for name, up in (await self.component_check()).items():
            await self.health.set(name, SERVING if up else NOT_SERVING)

    async def start(self) -> int:
        await self.health.set(LIVENESS, SERVING)
        await self.set_serving(False)
        s = self.settings
        address = f"{s.grpc_host}:{s.grpc_port}"
        credentials = server_credentials(s)
        if credentials is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, credentials)
        if self.port == 0:
            raise RuntimeError(f"cannot bind gRPC port {s.grpc_host}:{s.grpc_port}")
        await self.server.start()
        if s.metrics_port is not None:
            self.metrics_port = self.metrics.serve_http(s.metrics_host, s.metrics_port)
        log.info("%s listening on %s:%d (metrics port %s)", self.metrics.service, s.grpc_host,
                 self.port, self.metrics_port)
        return self.port

    async def _watch_readiness(self) -> None:
        """Follow dependencies: NOT_SERVING while Triton (or a model) is down, SERVING again
        when it is back. Probes stay cheap: one readiness RPC per poll."""
        while not self._stopping.is_set():
            ok = await self.ready_check() if self.ready_check else True
            if ok != self._serving and not self._stopping.is_set():
                log.warning("%s readiness -> %s", self.metrics.service, "SERVING" if ok else "NOT_SERVING")
                await self.set_serving(ok)
            await self._follow_components()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.health_poll_s)

    async def run(self, install_signal_handlers: bool = True) -> None:
        """Start, become ready, serve until stop() or a signal."""
        if self.port is None:
            await self.start()
        if install_signal_handlers:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stopping.set)
        try:
            if self._startup is not None:
                startup = asyncio.ensure_future(self._startup())
                stop = asyncio.ensure_future(self._stopping.wait())
                done, _ = await asyncio.wait({startup, stop}, return_when=asyncio.FIRST_COMPLETED)
                if startup not in done:
                    startup.cancel()
                else:
                    stop.cancel()
                    startup.result()  # re-raise start-up failures
            if not self._stopping.is_set():
                await self.set_serving(True)
                log.info("%s ready", self.metrics.service)
                self._watch_task = asyncio.create_task(self._watch_readiness())
                await self._stopping.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    async def stop(self) -> None:
        """Graceful: NOT_SERVING, drain in-flight RPCs for the grace period, close clients."""
        self._stopping.set()
        await self.set_serving(False)
        await self.health.enter_graceful_shutdown()  # also ends open Watch streams
        if self._draining is not None:
            self._draining()
        grace = self.settings.shutdown_grace_s
        log.info("%s stopping: draining for up to %.1fs", self.metrics.service, grace)
        await self.server.stop(grace)
        if self._watch_task is not None:
            await self._watch_task
            self._watch_task = None
        if self._shutdown is not None:
            await self._shutdown()
            self._shutdown = None


#: grpc.compression_enabled_algorithms_bitset with only bit 0 (identity) set.
IDENTITY_ONLY = 1


def server_options(settings: ServiceSettings) -> list[tuple[str, int]]:
    options = [
        ("grpc.max_receive_message_length", settings.receive_limit_bytes),
        ("grpc.max_send_message_length", settings.grpc_max_send_bytes),
        ("grpc.so_reuseport", 0),
        # Ping a connection that has been silent this long, and close it (cancelling its
        # calls) when the ping goes unanswered: a vanished peer frees what it held.
        ("grpc.keepalive_time_ms", int(settings.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # No bandwidth-delay probing: it grows every stream's receive window to megabytes,
        # so a call refused on its metadata (no token, admission full) still had its
        # request buffered that far (128 such 20 MB calls: up to +500 MB). A stream whose
        # message is being read is granted the message's size anyway.
        ("grpc.http2.bdp_probe", 0),
    ]
    if not settings.accept_compressed_requests:
        options.append(("grpc.compression_enabled_algorithms_bitset", IDENTITY_ONLY))
    return options


def server_credentials(settings: ServiceSettings) -> grpc.ServerCredentials | None:
    """TLS when a certificate and key are configured; mutual TLS when a client CA is too."""
    if settings.tls_cert_file is None and settings.tls_key_file is None:
        if settings.tls_client_ca_file is not None:
            raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
        return None
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise ValueError("TLS needs both tls_cert_file and tls_key_file")
    ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )
