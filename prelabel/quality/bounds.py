"""One-sided binomial confidence bounds on a proportion (precision = k correct of n).

Clopper-Pearson is exact (never below its nominal coverage); Wilson is tighter and
nearly exact from n ~ 30. Both computed with numpy only (no scipy): Clopper-Pearson
by bisection on the binomial tail, which is monotone in p.
"""
from __future__ import annotations

import math

import numpy as np

CLOPPER_PEARSON = "clopper-pearson"
WILSON = "wilson"
BOUNDS = (CLOPPER_PEARSON, WILSON)


def _log_comb(n: int) -> np.ndarray:
    """log C(n, k) for k = 0..n, from cumulative log factorials."""
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])
    return log_fact[n] - log_fact - log_fact[::-1]


def _upper_tail(k: int, n: int, p: float, log_comb: np.ndarray) -> float:
    """P(X >= k) for X ~ Binomial(n, p), 0 < p < 1."""
    ks = np.arange(k, n + 1, dtype=np.float64)
    logs = log_comb[k:] + ks * math.log(p) + (n - ks) * math.log1p(-p)
    top = logs.max()
    return float(min(1.0, math.exp(top) * np.exp(logs - top).sum()))


def _bisect(f, lo: float = 0.0, hi: float = 1.0, iters: int = 60) -> float:
    """Root of an increasing function on [lo, hi]."""
    for _ in range(iters):
        mid = (lo + hi) / 2
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson_lower(k: int, n: int, confidence: float) -> float:
    """Largest p with P(X >= k | p) <= 1 - confidence: the exact one-sided lower bound."""
    if n == 0 or k == 0:
        return 0.0
    alpha = 1.0 - confidence
    if k == n:
        return alpha ** (1.0 / n)
    log_comb = _log_comb(n)
    return _bisect(lambda p: _upper_tail(k, n, min(max(p, 1e-300), 1 - 1e-16), log_comb) - alpha)


def clopper_pearson_upper(k: int, n: int, confidence: float) -> float:
    if n == 0:
        return 1.0
    return 1.0 - clopper_pearson_lower(n - k, n, confidence)


def _z(confidence: float) -> float:
    # Inverse of the standard normal CDF by bisection on erf (no scipy).
    return _bisect(lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2))) - confidence, -10.0, 10.0)


def wilson_lower(k: int, n: int, confidence: float) -> float:
    if n == 0:
        return 0.0
    z = _z(confidence)
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def wilson_upper(k: int, n: int, confidence: float) -> float:
    if n == 0:
        return 1.0
    return 1.0 - wilson_lower(n - k, n, confidence)


def lower_bound(k: int, n: int, confidence: float, method: str = CLOPPER_PEARSON) -> float:
    return clopper_pearson_lower(k, n, confidence) if method == CLOPPER_PEARSON else wilson_lower(k, n, confidence)


def upper_bound(k: int, n: int, confidence: float, method: str = CLOPPER_PEARSON) -> float:
    return clopper_pearson_upper(k, n, confidence) if method == CLOPPER_PEARSON else wilson_upper(k, n, confidence)


def min_n_to_reach(target: float, confidence: float) -> int:
    """Fewest samples whose lower bound can reach `target` (all of them correct):
    alpha^(1/n) >= target."""
    return max(1, math.ceil(math.log(1.0 - confidence) / math.log(target))) if target < 1 else 10**9
