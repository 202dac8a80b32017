"""Closed-loop load with a measurement window, and A/B(/C...) interleaving.

A segment keeps `concurrency` requests in flight: the system warms up for `warm_s`,
then every request *completing* inside the next `window_s` counts (throughput =
completions / window, latency = that request's wall time); then no new request is
issued and the in-flight ones are drained uncounted. Variants of one comparison run
as alternating segments: round 0 A B, round 1 B A, ... so drift hits each alike.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# One request: a payload in, the result discarded. The payload is Any, not object: each
# variant's call takes its own kind (a DetectRequest, a tensor, bytes) and gets only
# its own payloads, while one comparison's variants share a list.
Call = Callable[[Any], Awaitable[object]]


@dataclass
class Segment:
    completed: int
    window_s: float
    latencies_s: list[float]
    errors: int
    first_error: str = ""
    wall_s: float = 0.0  # the whole segment: warm-up, window and drain
    client_cpu_s: float = 0.0  # CPU time of this (load generator) process in the segment
    probe_cpu_s: dict[str, float] = field(default_factory=dict)  # CPU time of watched processes
    stage_s: dict[str, tuple[float, float]] = field(default_factory=dict)  # service stage: (sum s, count)
    cancelled: int = 0  # requests still in flight after the drain limit (cancelled, not counted)

    @property
    def throughput(self) -> float:
        return self.completed / self.window_s if self.window_s > 0 else 0.0


@dataclass
class Variant:
    name: str
    call: Call
    payloads: Sequence[object]
    segments: list[Segment] = field(default_factory=list)

    @property
    def latencies_s(self) -> list[float]:
        return [x for s in self.segments for x in s.latencies_s]

    @property
    def throughput(self) -> float:
        window = sum(s.window_s for s in self.segments)
        return sum(s.completed for s in self.segments) / window if window else 0.0

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.segments)

    def summary(self) -> dict:
        lat = sorted(self.latencies_s)
        first_error = next((s.first_error for s in self.segments if s.first_error), "")
        out = {
            "requests": len(lat),
            "errors": self.errors,
            "throughput_rps": self.throughput,
            "p50_ms": percentile(lat, 50) * 1e3,
            "p95_ms": percentile(lat, 95) * 1e3,
            "p99_ms": percentile(lat, 99) * 1e3,
            "mean_ms": (sum(lat) / len(lat) * 1e3) if lat else math.nan,
            "per_round_throughput_rps": [s.throughput for s in self.segments],
            "per_round_p50_ms": [percentile(sorted(s.latencies_s), 50) * 1e3 for s in self.segments],
            # Cores busy during the segments (1.0 = one core): a load generator near 1.0 is
            # itself the bottleneck (one Python process, one GIL).
            "client_cpu_cores": _cores(self.segments, lambda s: s.client_cpu_s),
        }
        for name in sorted({k for s in self.segments for k in s.probe_cpu_s}):
            out[f"{name}_cpu_cores"] = _cores(self.segments, lambda s, n=name: s.probe_cpu_s.get(n, 0.0))
        stages = {}
        for name in sorted({k for s in self.segments for k in s.stage_s}):
            total = sum(s.stage_s.get(name, (0.0, 0.0))[0] for s in self.segments)
            count = sum(s.stage_s.get(name, (0.0, 0.0))[1] for s in self.segments)
            if count:
                stages[name] = total / count * 1e3
        if stages:
            # Mean time per stage inside the service (prelabel_stage_seconds), this variant only.
            out["service_stage_ms"] = stages
        cancelled = sum(s.cancelled for s in self.segments)
        if cancelled:
            out["cancelled_after_drain_limit"] = cancelled
        if first_error:
            out["first_error"] = first_error
        return out


def _cores(segments: Sequence[Segment], cpu_of) -> float:
    wall = sum(s.wall_s for s in segments)
    return sum(cpu_of(s) for s in segments) / wall if wall else math.nan


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile of an already sorted sequence (NaN if empty)."""
    if not sorted_values:
        return math.nan
    if len(sorted_values) == 1:
        return sorted_values[0]
    k = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


async def run_segment(call: Call, payloads: Sequence[object], *, concurrency: int, warm_s: float,
                      window_s: float, drain_s: float | None = None, max_errors: int = 20) -> Segment:
    """One segment. Requests in flight when the window closes are drained, not counted.
    They are not cancelled early: Triton keeps executing a cancelled request that is
    already batched, and that work would leak into the next segment (the other
    variant). Only a drain longer than `drain_s` (default: max(60 s, 4 windows)) is cut
    short, and the segment says so (`cancelled`)."""
    loop = asyncio.get_running_loop()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    start = loop.time()
    window_start, window_end = start + warm_s, start + warm_s + window_s
    latencies: list[float] = []
    errors = 0
    first_error = ""
    stop = asyncio.Event()

    async def worker(k: int) -> None:
        nonlocal errors, first_error
        i = k
        while not stop.is_set() and loop.time() < window_end:
            t0 = time.perf_counter()
            try:
                await call(payloads[i % len(payloads)])
            except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {str(exc)[:300]}"
                if errors >= max_errors:
                    stop.set()
                await asyncio.sleep(0.01)
                continue
            done = loop.time()
            if window_start <= done <= window_end:
                latencies.append(time.perf_counter() - t0)
            i += concurrency

    tasks = [asyncio.ensure_future(worker(k)) for k in range(concurrency)]
    drain = max(60.0, 4 * window_s) if drain_s is None else drain_s
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, window_end - loop.time()) + drain)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    return Segment(completed=len(latencies), window_s=window_s, latencies_s=latencies, errors=errors,
                   first_error=first_error, wall_s=time.perf_counter() - wall0,
                   client_cpu_s=time.process_time() - cpu0, cancelled=len(pending))


Probes = dict[str, Callable[[], float]]
#: Processes whose CPU time every segment records ({name: cumulative CPU seconds}).
PROBES: Probes = {}
#: Reads the service's stage histograms ({stage: (sum s, count)}); None: not recorded.
STAGES: Callable[[], dict[str, tuple[float, float]]] | None = None


def _stage_delta(before: dict, after: dict) -> dict[str, tuple[float, float]]:
    out = {}
    for stage, (s1, c1) in after.items():
        s0, c0 = before.get(stage, (0.0, 0.0))
        if c1 > c0:
            out[stage] = (s1 - s0, c1 - c0)
    return out


async def interleave(variants: list[Variant], *, rounds: int, concurrency: int, warm_s: float,
                     window_s: float, max_s: float | None = None, drain_s: float | None = None,
                     on_round: Callable[[int], None] | None = None) -> list[Variant]:
    """Run up to `rounds` rounds; the variant order rotates every round (A B C, B C A,
    ...), and reverses on odd rounds for two variants (A B, B A). With `max_s`, no
    round starts that would likely end after it (at least one round always runs)."""
    n = len(variants)
    started = time.monotonic()
    for r in range(rounds):
        if r and max_s is not None:
            elapsed = time.monotonic() - started
            if elapsed + elapsed / r > max_s:
                break
        order = variants[r % n:] + variants[: r % n] if n > 2 else (variants if r % 2 == 0 else variants[::-1])
        for v in order:
            before = {name: probe() for name, probe in PROBES.items()}
            stages_before = STAGES() if STAGES is not None else {}
            seg = await run_segment(v.call, v.payloads, concurrency=concurrency, warm_s=warm_s,
                                    window_s=window_s, drain_s=drain_s)
            seg.probe_cpu_s = {name: probe() - before[name] for name, probe in PROBES.items()}
            if STAGES is not None:
                seg.stage_s = _stage_delta(stages_before, STAGES())
            v.segments.append(seg)
        if on_round is not None:
            on_round(r)
    return variants
