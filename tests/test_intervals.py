"""Do the intervals cover? The shape statistics of a spectrum on a synthetic ensemble whose truth is known.

iid Gaussian snapshots of D = 1000 dimensions with population spectrum ∝ 1/k, N = 200
(the case of issue 21). The half-ensemble interval speaks of the statistic's expected
value at N/2, so that value is estimated from many further independent ensembles of
N/2; over independent draws of the N snapshots the 95 % interval must contain it at
close to its nominal rate. The snapshot bootstrap's percentile interval, the book's
former one, must be seen to fail on the same case (the test can fail).
"""
import numpy as np
import pytest

from attnpod.analysis import spectrum_shape
from attnpod.estimators import half_interval, interval
from attnpod.pod import bootstrap_resamples, half_ensembles, resampled_eigenvalues

N, D = 200, 1000
SD = np.sqrt(1.0 / np.arange(1, D + 1))
STATISTICS = {"H*(0.10)": lambda s: s["effective_rank"][..., 0], "T_spec": lambda s: s["spectral_concentration"],
              "first-mode share": lambda s: s["first_share"]}


def gram(rng, n):
    X = rng.standard_normal((n, D)) * SD
    Xc = X - X.mean(0)
    return Xc @ Xc.T / n


def shape_of(C):
    return spectrum_shape(np.clip(np.linalg.eigvalsh(C)[::-1], 0, None)[None])


@pytest.fixture(scope="module")
def truth():
    """Each statistic's expected value at N/2 and at N, from 600 and 150 independent ensembles."""
    rng = np.random.default_rng(1)
    half = [shape_of(gram(rng, N // 2)) for _ in range(600)]
    full = [shape_of(gram(rng, N)) for _ in range(150)]
    return ({k: float(np.mean([f(s) for s in half])) for k, f in STATISTICS.items()},
            {k: float(np.mean([f(s) for s in full])) for k, f in STATISTICS.items()})


@pytest.mark.slow
def test_half_ensemble_intervals_cover_the_value_at_half_size(truth):
    at_half, _ = truth
    rng = np.random.default_rng(2)
    draws, hits = 160, {k: 0 for k in STATISTICS}
    for d in range(draws):
        halves = half_ensembles(N, 300, seed=d)
        shape = spectrum_shape(resampled_eigenvalues(gram(rng, N), halves))  # [h, ...]
        for k, f in STATISTICS.items():
            _, lo, hi = half_interval(f(shape), halves, N)
            hits[k] += bool(lo <= at_half[k] <= hi)
    coverage = {k: n / draws for k, n in hits.items()}
    assert all(0.88 <= c <= 0.99 for c in coverage.values()), coverage


def test_the_snapshot_bootstrap_misses_the_full_sample_value(truth):
    """Resampling with replacement leaves ~63 % distinct snapshots: H*(0.10)'s interval lies far below."""
    _, at_full = truth
    rng = np.random.default_rng(3)
    hits = 0
    for d in range(12):
        C = gram(rng, N)
        boot = spectrum_shape(resampled_eigenvalues(C, bootstrap_resamples(N, 100, seed=d)))["effective_rank"][:, 0]
        lo, hi = interval(boot)
        hits += bool(lo <= at_full["H*(0.10)"] <= hi)
        assert hi < shape_of(C)["effective_rank"][0, 0]  # below the very value it is meant to surround
    assert hits == 0


def test_half_interval_of_a_mean_matches_its_standard_error():
    """For a mean, the halves' interval is mean ± 1.96 σ/√N (the U-statistic is the full mean)."""
    rng = np.random.default_rng(4)
    x = rng.normal(3.0, 2.0, 400)
    halves = half_ensembles(400, 4000, seed=5)
    mean, lo, hi = half_interval(x[halves].mean(-1), halves, 400)
    assert mean == pytest.approx(x.mean(), abs=0.02)
    assert (hi - lo) / 2 == pytest.approx(1.96 * x.std() / np.sqrt(400), rel=0.1)
    with pytest.raises(ValueError, match="halves"):
        half_interval(x[:3], halves, 400)


def test_half_ensembles_are_halves_without_repeats():
    h = half_ensembles(11, 7, seed=0)
    assert h.shape == (7, 5) and all(len(set(r)) == 5 for r in h) and h.max() < 11
    np.testing.assert_array_equal(h, half_ensembles(11, 7, seed=0))


def test_with_lognormal_snapshot_scales_the_half_interval_under_covers():
    """Heterogeneous snapshots (a lognormal scale per snapshot) are a regime where the interval is known to fall
    short of 95 %: this records by how much, so that the book's caveat stays true (and a fix shows here)."""
    rng = np.random.default_rng(6)
    n_dim, n_snap = 300, 120

    def gram_of(n):
        X = rng.standard_normal((n, n_dim)) * np.sqrt(1.0 / np.arange(1, n_dim + 1)) * np.exp(rng.normal(size=(n, 1)))
        Xc = X - X.mean(0)
        return Xc @ Xc.T / n

    rank = lambda C: spectrum_shape(np.clip(np.linalg.eigvalsh(C)[::-1], 0, None)[None])["effective_rank"][0, 0]  # noqa: E731
    truth = np.mean([rank(gram_of(n_snap // 2)) for _ in range(300)])
    hits = 0
    for d in range(80):
        halves = half_ensembles(n_snap, 200, seed=d)
        values = spectrum_shape(resampled_eigenvalues(gram_of(n_snap), halves))["effective_rank"][:, 0]
        _, lo, hi = half_interval(values, halves, n_snap)
        hits += bool(lo <= truth <= hi)
    assert 0.7 <= hits / 80 <= 0.94  # measured 0.86 (0.975 with equal scales, the same design)


def test_when_every_half_gives_the_same_rank_the_table_prints_no_interval():
    """D ≫ N: H*(0.10) of isotropic noise at N/2 is pinned near its ceiling on every half; a zero-width interval
    would claim certainty, so the cell says there is none."""
    from attnpod.claims import with_half_intervals
    from attnpod.estimators import Halves

    rng = np.random.default_rng(7)
    X = rng.standard_normal((40, 5000))
    Xc = X - X.mean(0)
    halves = half_ensembles(40, 30, seed=0)
    ranks = spectrum_shape(resampled_eigenvalues(Xc @ Xc.T / 40, halves))["effective_rank"][:, 0]
    assert np.ptp(ranks) == 0  # the regime: the same on every half
    _, lo, hi = half_interval(ranks, halves, 40)
    assert hi - lo == pytest.approx(0, abs=1e-9)
    cell = with_half_intervals([[17.0]], Halves(ranks[None, None], halves, 40), "{:.0f}").iloc[0, 0]
    assert "no interval" in cell and "[" not in cell
    varied = Halves(np.arange(30.0)[None, None], halves, 40)
    assert "[" in with_half_intervals([[17.0]], varied, "{:.0f}").iloc[0, 0]
