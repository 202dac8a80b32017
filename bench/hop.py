"""`python -m bench.hop`: the added latency per hop alone, in about a minute, for
isolating a regression: run it in two checkouts on the same machine, one after the other
(twice each, alternating), and compare.

Starts what `make bench` starts for its hop comparison (the real tritonserver with
bench_identity, the detection service as its own process), then alternates blocks of
sequential calls: Detect with the tiny JPEG through the service, and the same model called
with the prepared tensor through bare tritonclient. Prints the p50 of each and the difference.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench import images
from bench.cli import IDENTITY, image_size
from bench.clients import Clients, detect_request
from bench.load import Call
from bench.servers import Stack
from services.common.preprocess import prepare_image
from services.common.settings import ServiceSettings


async def measure(stack: Stack, rounds: int, calls: int) -> dict[str, float]:
    tiny = images.tiny_jpeg()
    tensor = prepare_image(tiny.data, image_size(IDENTITY), ServiceSettings()).tensor
    async with Clients(stack.detection_address, stack.triton_url, stack.echo_address) as c:
        bare = c.bare_triton(IDENTITY, await c.outputs_of(IDENTITY))
        request = detect_request(tiny.data, IDENTITY)
        for _ in range(50):  # warm both paths (first calls allocate and connect)
            await c.detect(request)
            await bare(tensor)
        samples: dict[str, list[float]] = {"suite": [], "bare": []}
        paths: tuple[tuple[str, Call, object], ...] = (("suite", c.detect, request), ("bare", bare, tensor))
        for _ in range(rounds):
            for name, call, arg in paths:
                for _ in range(calls):
                    started = time.perf_counter()
                    await call(arg)
                    samples[name].append(time.perf_counter() - started)
    p50 = {name: statistics.median(v) * 1e3 for name, v in samples.items()}
    return {"suite_p50_ms": p50["suite"], "bare_p50_ms": p50["bare"], "added_ms": p50["suite"] - p50["bare"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="alternating blocks per variant")
    parser.add_argument("--calls", type=int, default=150, help="sequential calls per block")
    args = parser.parse_args(argv)
    with Stack(triton_models=[IDENTITY], service_models=[IDENTITY], echo=False) as stack:
        result = asyncio.run(measure(stack, args.rounds, args.calls))
    print(f"suite p50 {result['suite_p50_ms']:.2f} ms, bare tritonclient p50 {result['bare_p50_ms']:.2f} ms, "
          f"added per hop {result['added_ms']:.2f} ms")


if __name__ == "__main__":
    main()
