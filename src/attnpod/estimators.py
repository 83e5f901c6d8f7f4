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
    import pandas as pd

    # reordering b reorders its ranks: every order's ρ is one product of the standardised ranks
    ra, rb = (pd.Series(x).rank().to_numpy() for x in (a, b))
    za, zb = (ra - ra.mean()) / ra.std(), (rb - rb.mean()) / rb.std()
    rhos = zb[orders] @ za / len(za)
    return float(np.mean(np.abs(rhos) >= abs(observed) - 1e-12))


def student_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom: its density integrated numerically
    (Simpson's rule on the CDF's substitution t = tan θ, smooth on a finite range) and inverted by bisection."""
    from math import gamma, pi, sqrt

    if not 0 < p < 1 or df < 1:
        raise ValueError(f"need 0 < p < 1 and df ≥ 1, got p = {p}, df = {df}")
    c = gamma((df + 1) / 2) / (sqrt(df * pi) * gamma(df / 2))

    def cdf(t: float) -> float:  # P(T ≤ t) = 1/2 + ∫_0^atan(t) f(tan θ) sec²θ dθ
        theta = np.linspace(0.0, np.arctan(t), 2001)
        x = np.tan(theta)
        y = c * (1 + x * x / df) ** (-(df + 1) / 2) * (1 + x * x)
        h = theta[1] - theta[0]
        return 0.5 + h / 3 * (y[0] + y[-1] + 4 * y[1:-1:2].sum() + 2 * y[2:-1:2].sum())

    lo, hi = -1e3, 1e3
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def replicate_interval(values, level: float = LEVEL):
    """Mean of a statistic over K independent replicates ``values[..., k]`` (disjoint ensembles of the same N)
    and the Student-t ``level`` interval of its expected value at that N: ``(mean, lo, hi)``."""
    v = np.asarray(values, dtype=float)
    K = v.shape[-1]
    if K < 2:
        raise ValueError(f"an interval over replicates needs at least 2 of them, got {K}")
    mean = v.mean(-1)
    half = student_quantile(0.5 + level / 2, K - 1) * v.std(-1, ddof=1) / np.sqrt(K)
    return mean, mean - half, mean + half


def between_within(values, n_perm: int = 4999, seed: int = 0) -> tuple[float, float]:
    """Do groups differ beyond their replicates' spread? ``values[g, k]``: group g's statistic on replicate k
    (the same K replicates for every group, e.g. layers on disjoint ensembles). Returns the one-way ANOVA F
    (variance of the group means × K over the mean within-group variance) and its permutation p-value, the
    group labels shuffled within each replicate (what the replicates share stays shared)."""
    v = np.asarray(values, dtype=float)
    G, K = v.shape
    if G < 2 or K < 2:
        raise ValueError(f"need at least 2 groups of at least 2 replicates, got {G} × {K}")

    def f_of(x):
        within = x.var(-1, ddof=1).mean(-1)
        between = K * x.mean(-1).var(-1, ddof=1)
        return np.divide(between, within, out=np.full(np.shape(within), np.inf), where=within > 0)

    observed = float(f_of(v))
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((n_perm, G, K)), axis=1)  # a shuffle of the groups per replicate
    permuted = f_of(np.take_along_axis(np.broadcast_to(v, (n_perm, G, K)), order, axis=1))
    return observed, float((1 + np.sum(permuted >= observed - 1e-12)) / (n_perm + 1))
