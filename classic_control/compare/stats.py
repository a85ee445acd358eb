"""Across-seed statistics: IQM, percentile-bootstrap confidence intervals, steps-to-threshold.

Pure numpy functions over small arrays (one value per seed), so they can be
checked against hand-computed values. The IQM is the 25%-trimmed mean
(Agarwal et al., 2021): sort, drop ``floor(n / 4)`` values at each end,
average the rest. Confidence intervals are percentile bootstraps over
seeds with a fixed generator seed, so a report is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

N_BOOT = 10_000
CI_LEVEL = 0.95


def mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: mean of the values left after trimming 25% from each end."""
    x = np.sort(np.asarray(x, dtype=np.float64), axis=axis)
    n = x.shape[axis]
    cut = int(0.25 * n)
    return np.mean(np.take(x, np.arange(cut, n - cut), axis=axis), axis=axis)


def bootstrap_ci(
    values: Sequence[float],
    stat: Callable[..., np.ndarray] = mean,
    *,
    n_boot: int = N_BOOT,
    level: float = CI_LEVEL,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(statistic, low, high)``: the statistic and its percentile-bootstrap interval.

    Resamples the seeds with replacement ``n_boot`` times. With one value
    the interval is that value; with none, all three are NaN.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    point = float(stat(x))
    if x.size == 1:
        return (point, point, point)
    rng = np.random.default_rng(seed)
    samples = x[rng.integers(0, x.size, size=(n_boot, x.size))]
    boot = stat(samples, axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    return (point, float(low), float(high))


def steps_to_threshold(
    steps: Sequence[int], returns: Sequence[float], threshold: float
) -> int | None:
    """Env steps of the first evaluation whose mean return reached ``threshold`` (None: never)."""
    for s, r in zip(steps, returns):
        if r >= threshold:
            return int(s)
    return None


def censored_median(values: Sequence[int | None]) -> float | None:
    """Median over all seeds, counting a seed that never reached the threshold as infinite.

    Returns None when that median is infinite (half or more of the seeds
    never reached it), so a median is never computed from the successes alone.
    """
    if not values:
        return None
    x = np.array([math.inf if v is None else float(v) for v in values])
    m = float(np.median(x))
    return None if math.isinf(m) or math.isnan(m) else m


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a success fraction k / n (sane at 0/n and n/n)."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def curve_band(
    matrix: np.ndarray, stat: Callable[..., np.ndarray] = mean, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Statistic and bootstrap CI at every column of a (seeds, points) matrix (NaN: missing)."""
    cols = [bootstrap_ci(c[~np.isnan(c)], stat, n_boot=2000, seed=seed) for c in matrix.T]
    point, low, high = (np.array(v) for v in zip(*cols)) if cols else (np.array([]),) * 3
    return point, low, high
