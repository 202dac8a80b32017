"""Channels to the three model services (by the registry's service names; each task's
route calls its service on them), and the router's readiness."""
from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.router.settings import RouterSettings


class Downstream:
    def __init__(self, settings: RouterSettings):
        # What a service receives: the services' receive limit (the same derived setting).
        # A forwarded request over it is refused before the call (Route.run) as a size
        # error; gRPC's own send-limit error would read as RESOURCE_EXHAUSTED (overload).
        self.max_request_bytes = settings.receive_limit_bytes
        # The services' replies (masks, polygons) may be larger than the requests.
        options = [
            ("grpc.max_send_message_length", self.max_request_bytes),
            ("grpc.max_receive_message_length", settings.grpc_max_send_bytes),
        ]
        # Sent on every call when the services require a token (plain metadata, so it
        # also works without TLS inside a NetworkPolicy-protected pod network).
        self.metadata = (("authorization", f"Bearer {settings.downstream_token}"),) \
            if settings.downstream_token else ()
        credentials = channel_credentials(settings)
        self.channels = {
            name: (grpc.aio.insecure_channel(addr, options=options) if credentials is None
                   else grpc.aio.secure_channel(addr, credentials, options=options))
            for name, addr in (("detection", settings.detection_addr),
                               ("segmentation", settings.segmentation_addr),
                               ("keypoints", settings.keypoints_addr))
        }
        self.last_serving: dict[str, bool] = {name: False for name in self.channels}

    async def is_serving(self, name: str, timeout_s: float = 2.0) -> bool:
        """One health Check of service `name` ("detection", "segmentation", "keypoints")."""
        try:
            reply = await health_pb2_grpc.HealthStub(self.channels[name]).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
            return reply.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.aio.AioRpcError:
            return False

    async def serving(self) -> dict[str, bool]:
        names = list(self.channels)
        results = await asyncio.gather(*(self.is_serving(n) for n in names))
        self.last_serving = dict(zip(names, results, strict=False))
        return self.last_serving

    async def any_serving(self) -> bool:
        """Ready while at least one service answers: partial results beat none. Each
        service's own state is published under its name (`components`)."""
        return any((await self.serving()).values())

    async def components(self) -> dict[str, bool]:
        """What the last readiness poll found, per service (health names of the router)."""
        return dict(self.last_serving)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.channels.values()))


def channel_credentials(settings: RouterSettings) -> grpc.ChannelCredentials | None:
    """TLS, optionally with a client certificate (mutual TLS)."""
    tls = None
    if settings.downstream_ca_file is not None:
        tls = grpc.ssl_channel_credentials(
            root_certificates=settings.downstream_ca_file.read_bytes(),
            private_key=settings.downstream_key_file.read_bytes() if settings.downstream_key_file else None,
            certificate_chain=settings.downstream_cert_file.read_bytes() if settings.downstream_cert_file else None,
        )
    return tls
