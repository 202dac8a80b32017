"""One stand-in for the three model services that records the size of every request the
router forwards and answers an empty reply after a delay.

A test double on purpose: these tests measure the router (what it forwards, how many
images it has in flight, how it ends a stream), which needs bytes on the wire and model
latency we observe and control exactly; the real services are exercised through the
router elsewhere (tests/integration/test_router.py)."""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from prelabel.v1 import detection_pb2, keypoints_pb2, segmentation_pb2
from services.common.settings import ServiceSettings

SERVICES = (detection_pb2.DESCRIPTOR.services_by_name["Detector"],
            segmentation_pb2.DESCRIPTOR.services_by_name["Segmenter"],
            keypoints_pb2.DESCRIPTOR.services_by_name["KeypointDetector"])


@dataclass
class Received:
    delay_s: float
    sizes: list[int] = field(default_factory=list)  # bytes of each request, in arrival order
    in_flight: int = 0
    max_in_flight: int = 0

    async def answer(self, request: bytes, context) -> bytes:
        self.sizes.append(len(request))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        return b""  # the empty message: a valid reply of every method

    async def answer_each(self, requests, context):
        """A bidirectional stream (ClickSession): one empty reply per message."""
        async for request in requests:
            yield await self.answer(request, context)


@contextlib.asynccontextmanager
async def recording_services(delay_s: float = 0.0):
    """One server on 127.0.0.1 answering all three services, with a real service's
    receive limit; yields (address, Received)."""
    received = Received(delay_s)
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", ServiceSettings().receive_limit_bytes)])
    for service in SERVICES:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, {
            method.name: grpc.stream_stream_rpc_method_handler(received.answer_each)
            if method.client_streaming else grpc.unary_unary_rpc_method_handler(received.answer)
            for method in service.methods}),))
    health = HealthServicer()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", received
    finally:
        await server.stop(0)
