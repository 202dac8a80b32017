"""A bare grpc.aio echo server (bytes in, a small reply out): the transport floor the
payload comparison measures Detect against. `python -m bench.echo --port N`."""
from __future__ import annotations

import argparse
import asyncio
import signal

import grpc

METHOD = "/bench.Echo/Echo"
REPLY = b"ok" * 8  # 16 bytes, about the size of a small DetectResponse header
MAX_MESSAGE = 32 * 1024 * 1024  # same transport limit as the services


async def _echo(request: bytes, context) -> bytes:
    return REPLY


async def serve(host: str, port: int) -> None:
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.so_reuseport", 0),
    ])
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)})
    server.add_generic_rpc_handlers((handler,))
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise SystemExit(f"cannot bind {host}:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
