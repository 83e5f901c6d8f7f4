"""Estimators: intervals for the numbers the book prints, from bootstrap resamples, half-ensembles and
paired windows, and rank correlations with their permutation p-values.

They say how uncertain a number is; what a number means for a claim is decided in :mod:`attnpod.claims`.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

LEVEL = 0.95  # the intervals' coverage


def interval(samples, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` percentile interval of ``samples`` along the last axis."""
    lo, hi = np.nanpercentile(np.asarray(samples, dtype=float), [50 * (1 - level), 50 * (1 + level)], axis=-1)
    return lo, hi


def half_interval(values, halves, N: int, level: float = LEVEL):
    """Mean and ``level`` interval of a statistic's expected value at ensemble size N/2, from its values on
    half-ensembles: ``values[..., h]`` on the halves ``halves[h, m]`` (indices of N snapshots).

    The mean over halves estimates it without bias (a U-statistic); its standard error is
    the infinitesimal jackknife for subsamples without replacement (Wager, Hastie & Efron
    2014, V_IJ-U), N(N−1)/(N−m)² Σ_n Cov_h(N_hn, t_h)², less its Monte Carlo bias
    N p(1−p) Var_h(t)/B with p = m/N, read as a normal interval. The halves' own
    percentiles would not do: a half's spread exceeds the mean's for a statistic like
    H*(ε), and an integer statistic's percentiles collapse to one value. Returns
    ``(mean, lo, hi)``, each of shape ``values.shape[:-1]``.
    """
    t = np.asarray(values, dtype=float)
    halves = np.asarray(halves)
    B, m = halves.shape
    if t.shape[-1] != B or B < 2:
        raise ValueError(f"need the statistic on each of ≥ 2 halves, got {t.shape[-1]} values for {B} halves")
    inclusion = np.zeros((B, N))
    np.put_along_axis(inclusion, halves.astype(np.int64), 1.0, axis=1)
    mean = np.nanmean(t, axis=-1)
    dev = np.nan_to_num(t - mean[..., None])
    cov = dev @ (inclusion - inclusion.mean(0)) / B  # [..., n]
    p = m / N
    variance = N * (N - 1) / (N - m) ** 2 * ((cov ** 2).sum(-1) - N * p * (1 - p) * (dev ** 2).mean(-1) / B)
    half_width = NormalDist().inv_cdf(0.5 + level / 2) * np.sqrt(np.maximum(variance, 0.0))
    return mean, mean - half_width, mean + half_width


@dataclass(frozen=True)
class Halves:
    """A statistic of the spectrum's shape on half-ensembles: ``values[..., h]`` on ``halves[h, m]`` of N snapshots."""

    values: np.ndarray
    halves: np.ndarray
    N: int

    def __len__(self) -> int:
        return len(self.halves)

    def of(self, f) -> "Halves":
        """``f`` of each half's values (a number per half, or an array): the derived statistic's halves."""
        values = np.asarray(self.values, dtype=float)
        return Halves(np.stack([f(values[..., h]) for h in range(len(self))], axis=-1), self.halves, self.N)

    def verdicts(self, judge) -> list[str]:
        """``judge`` of each half's values: the verdict on every half-ensemble."""
        values = np.asarray(self.values, dtype=float)
        return [judge(values[..., h]) for h in range(len(self))]

    def interval(self, level: float = LEVEL):
        """``(mean, lo, hi)`` of the expected value at N/2 (:func:`half_interval`)."""
        return half_interval(self.values, self.halves, self.N, level)

    def text(self, fmt: str = "{:.2f}") -> str:
        """"at N/2 = m: mean [lo, hi]" for a scalar statistic."""
        mean, lo, hi = (float(x) for x in self.interval())
        return f"at N/2 = {self.halves.shape[1]}: {fmt.format(mean)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def stack_halves(parts: list[Halves], axis: int = 0) -> Halves:
    """Several models' :class:`Halves` of one statistic (the same halves: the same windows), stacked on ``axis``."""
    for p in parts[1:]:
        if p.N != parts[0].N or not np.array_equal(p.halves, parts[0].halves):
            raise ValueError("the models' half-ensembles differ: their statistics cannot be compared half by half")
    return Halves(np.stack([p.values for p in parts], axis), parts[0].halves, parts[0].N)


def paired_interval(differences, n_boot: int = 2000, seed: int = 0, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean of paired per-batch differences ``d[b]`` and its bootstrap interval over batches."""
    d = np.asarray(differences, dtype=float)
    lo, hi = interval(_bootstrap_means(d, n_boot, seed), level)
    return float(d.mean()), float(lo), float(hi)


def _bootstrap_means(d: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """The means of ``n_boot`` resamples of the windows' paired differences ``d[w]`` (seeded)."""
    return d[np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))].mean(-1)


def rank_correlation(a, b) -> float:
    """Spearman's ρ: the Pearson correlation of the ranks (ties share their mean rank)."""
    import pandas as pd

    ra, rb = (pd.Series(np.asarray(x, dtype=float)).rank().to_numpy() for x in (a, b))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def correlation_p_value(a, b, n_sample: int = 20000, seed: int = 0) -> float:
    """Two-sided permutation p-value of Spearman's ρ between ``a`` and ``b``: the share of orders of ``b``
    whose |ρ| reaches the observed one (exact over all orders up to 8 items, else ``n_sample`` sampled)."""
    from itertools import permutations
    from math import factorial

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    observed = rank_correlation(a, b)
    if np.isnan(observed):
        return float("nan")
    if factorial(len(b)) <= 40320:
        orders = np.array(list(permutations(range(len(b)))))
    else:
        rng = np.random.default_rng(seed)
        orders = np.array([rng.permutation(len(b)) for _ in range(n_sample)])
    rhos = np.array([rank_correlation(a, b[o]) for o in orders])
    return float(np.mean(np.abs(rhos) >= abs(observed) - 1e-12))
