"""Per-image state (services.common.image_state): the byte bound, LRU order, oversize
entries, one computation for concurrent misses, failures and cancellation, thread
safety, metrics; and the prepared images services.common.preprocess keeps there."""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from PIL import Image

from services.common.image_state import ImageStateCache, StateKey, image_digest, image_digest_async
from services.common.metrics import Metrics
from services.common.preprocess import letterbox_kind, prepare_image, prepare_image_async
from services.common.settings import ServiceSettings
from tests.photos import encode, photo_bytes
from tests.waiting import until

pytestmark = pytest.mark.timeout(60)

KIND = "letterbox:512x512"
SERVICE = "keypoints"


def key(n: int, kind: str = KIND) -> StateKey:
    return StateKey(image_digest(n.to_bytes(4, "big")), kind)


def sample(metrics: Metrics, name: str, kind: str = KIND) -> float:
    value = metrics.registry.get_sample_value(name, {"service": SERVICE, "kind": kind})
    return 0.0 if value is None else value


def counts(metrics: Metrics, kind: str = KIND) -> tuple[float, float, float]:
    """(hits, misses, evictions)."""
    return tuple(sample(metrics, f"prelabel_image_state_{n}_total", kind)
                 for n in ("hits", "misses", "evictions"))


def image(n: int) -> bytes:
    """A distinct small PNG per n."""
    pixels = np.full((24, 32, 3), n % 251, dtype=np.uint8)
    pixels[0, 0] = (n // 251, 0, 0)
    return encode(Image.fromarray(pixels), "PNG")


def test_image_digest_is_sha256_of_the_bytes_when_called():
    assert image_digest(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


async def test_image_digest_async_matches_image_digest_when_large_or_small():
    large = b"x" * 100_000
    assert await image_digest_async(large, inline_max_bytes=1024) == image_digest(large)
    assert await image_digest_async(b"y", inline_max_bytes=1024) == image_digest(b"y")


async def test_cache_stays_within_max_bytes_when_200_distinct_images_are_prepared():
    metrics = Metrics(SERVICE)
    entry_bytes = 512 * 512 * 3
    cache = ImageStateCache(max_bytes=5 * entry_bytes + entry_bytes // 2, metrics=metrics)
    settings = ServiceSettings()
    for n in range(200):
        prepared = await prepare_image_async(image(n), (512, 512), settings, cache)
        assert prepared.nbytes == entry_bytes
        assert cache.bytes_held <= cache.max_bytes
        assert sample(metrics, "prelabel_image_state_bytes") == cache.bytes_held
    assert len(cache) == 5 and cache.bytes_held == 5 * entry_bytes
    assert counts(metrics) == (0, 200, 195)
    # The five most recent are the ones held.
    for n in range(195, 200):
        assert StateKey(image_digest(image(n)), KIND) in cache


def test_cache_evicts_least_recently_used_first_when_full():
    metrics = Metrics(SERVICE)
    cache = ImageStateCache(max_bytes=300, metrics=metrics)
    for n in range(3):
        assert cache.put(key(n), f"value {n}", 100)
    assert cache.get(key(0)) == "value 0"  # 0 is now the most recently used: 1 goes first
    assert cache.put(key(3), "value 3", 100)
    assert key(1) not in cache
    assert all(key(n) in cache for n in (0, 2, 3))
    assert cache.put(key(4), "value 4", 150)  # needs two entries' room: 2, then 0
    assert [n for n in range(5) if key(n) in cache] == [3, 4]
    assert cache.bytes_held == 250
    assert counts(metrics) == (1, 0, 3)


def test_cache_replaces_a_key_without_counting_it_twice_when_put_again():
    cache = ImageStateCache(max_bytes=300)
    cache.put(key(0), "old", 200)
    cache.put(key(0), "new", 250)
    assert cache.get(key(0)) == "new" and cache.bytes_held == 250 and len(cache) == 1


def test_cache_refuses_an_entry_larger_than_the_bound_without_evicting_anything():
    metrics = Metrics(SERVICE)
    cache = ImageStateCache(max_bytes=1000, metrics=metrics)
    cache.put(key(0), "small", 600)
    assert not cache.put(key(1), "too large", 1001)
    assert key(1) not in cache and key(0) in cache and cache.bytes_held == 600
    assert counts(metrics) == (0, 0, 0)


async def test_get_or_compute_computes_again_when_the_value_exceeds_the_bound():
    cache = ImageStateCache(max_bytes=1000)
    calls = []

    async def compute():
        calls.append(1)
        return np.zeros(2000, dtype=np.uint8)

    for _ in range(2):
        value = await cache.get_or_compute(key(0), compute, size_of=lambda a: a.nbytes)
        assert value.nbytes == 2000
    assert len(calls) == 2 and len(cache) == 0


async def test_get_or_compute_runs_once_when_misses_for_one_key_are_concurrent():
    metrics = Metrics(SERVICE)
    cache = ImageStateCache(max_bytes=10_000, metrics=metrics)
    release = asyncio.Event()
    calls = []

    async def compute():
        calls.append(1)
        await release.wait()
        return np.arange(10)

    waiters = [asyncio.ensure_future(cache.get_or_compute(key(0), compute, size_of=lambda a: a.nbytes))
               for _ in range(8)]
    other = asyncio.ensure_future(cache.get_or_compute(key(1), compute, size_of=lambda a: a.nbytes))
    # Every caller has asked once the two computations run (they are scheduled after them).
    await until(lambda: len(calls) == 2)
    assert counts(metrics) == (7, 2, 0)
    release.set()
    values = await asyncio.gather(*waiters)
    assert all(v is values[0] for v in values)
    assert (await other) is not values[0]
    # Held now: a later request is a plain hit.
    assert await cache.get_or_compute(key(0), compute, size_of=lambda a: a.nbytes) is values[0]
    assert len(calls) == 2 and counts(metrics) == (8, 2, 0)


async def test_get_or_compute_gives_every_waiter_the_error_and_caches_nothing_when_compute_fails():
    cache = ImageStateCache(max_bytes=10_000)
    release = asyncio.Event()
    calls = []

    async def failing():
        calls.append(1)
        await release.wait()
        raise ValueError("bad image")

    waiters = [asyncio.ensure_future(cache.get_or_compute(key(0), failing, size_of=len)) for _ in range(3)]
    await until(lambda: calls)
    release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results) and len(calls) == 1
    assert len(cache) == 0

    async def working():
        return b"ok"

    assert await cache.get_or_compute(key(0), working, size_of=len) == b"ok"  # tried again
    assert key(0) in cache


async def test_get_or_compute_still_serves_the_others_when_the_first_caller_is_cancelled():
    cache = ImageStateCache(max_bytes=10_000)
    release = asyncio.Event()
    calls = []

    async def compute():
        calls.append(1)
        await release.wait()
        return b"value"

    first = asyncio.ensure_future(cache.get_or_compute(key(0), compute, size_of=len))
    second = asyncio.ensure_future(cache.get_or_compute(key(0), compute, size_of=len))
    await until(lambda: calls)  # both callers are waiting on the computation
    first.cancel()
    release.set()
    assert await second == b"value"
    assert first.cancelled()
    assert key(0) in cache


async def test_cache_holds_and_counts_nothing_when_max_bytes_is_zero():
    metrics = Metrics(SERVICE)
    cache = ImageStateCache(max_bytes=0, metrics=metrics)
    calls = []

    async def compute():
        calls.append(1)
        return b"value"

    for _ in range(2):
        assert await cache.get_or_compute(key(0), compute, size_of=len) == b"value"
    assert not cache.put(key(0), b"value", 5)
    assert len(calls) == 2 and len(cache) == 0
    assert counts(metrics) == (0, 0, 0)


def test_cache_keeps_its_byte_count_exact_when_threads_put_and_get_at_once():
    metrics = Metrics(SERVICE)
    cache = ImageStateCache(max_bytes=50 * 100, metrics=metrics)
    start = threading.Barrier(8)

    def worker(t: int) -> None:
        start.wait()
        for n in range(300):
            cache.put(key(t * 1000 + n, kind=f"kind{t % 2}"), n, 100)
            cache.get(key(t * 1000 + n // 2, kind=f"kind{t % 2}"))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 50 and cache.bytes_held == 5000
    held = sample(metrics, "prelabel_image_state_bytes", "kind0") + sample(metrics, "prelabel_image_state_bytes", "kind1")
    assert held == 5000
    evictions = sum(counts(metrics, f"kind{k}")[2] for k in (0, 1))
    assert evictions == 8 * 300 - 50


async def test_prepare_image_async_prepares_once_when_two_requests_carry_the_same_image():
    metrics = Metrics(SERVICE)
    cache = ImageStateCache(max_bytes=64 * 1024 * 1024, metrics=metrics)
    settings = ServiceSettings()
    data = photo_bytes("astronaut.png")  # 791 KB: prepared in a worker thread
    first, second = await asyncio.gather(prepare_image_async(data, (512, 512), settings, cache),
                                         prepare_image_async(data, (512, 512), settings, cache))
    assert first is second
    assert counts(metrics) == (1, 1, 0)
    uncached = prepare_image(data, (512, 512), settings)
    assert np.array_equal(first.tensor, uncached.tensor) and first.letterbox == uncached.letterbox
    # Another input size is another entry.
    other = await prepare_image_async(data, (640, 640), settings, cache)
    assert other.tensor.shape == (1, 640, 640, 3)
    assert counts(metrics, letterbox_kind((640, 640))) == (0, 1, 0)


def test_prepared_tensor_is_read_only_when_prepared():
    prepared = prepare_image(image(1), (64, 64), ServiceSettings())
    with pytest.raises(ValueError, match="read-only"):
        prepared.tensor[0, 0, 0, 0] = 1
