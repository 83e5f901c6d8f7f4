import numpy as np
import pytest

from attnpod.pod import effective_rank, pod, power_law_fit, spectral_concentration


@pytest.fixture
def snapshots():
    rng = np.random.default_rng(0)
    return rng.standard_normal((30, 8)) @ rng.standard_normal((8, 50)) + rng.standard_normal(50)


def test_eigenvalues_are_squared_singular_values_over_n(snapshots):
    result = pod(snapshots)
    centred = snapshots - snapshots.mean(0)
    sv = np.linalg.svd(centred, compute_uv=False)
    expected = np.zeros(30)
    expected[: len(sv)] = sv**2 / 30
    np.testing.assert_allclose(result.eigenvalues, expected, atol=1e-10)
    assert np.all(np.diff(result.eigenvalues) <= 1e-12) and np.all(result.eigenvalues >= 0)


def test_modes_are_orthonormal_and_match_svd(snapshots):
    result = pod(snapshots)
    assert result.modes.shape == (8, 50)  # rank 8 after centring
    np.testing.assert_allclose(result.modes @ result.modes.T, np.eye(8), atol=1e-10)
    _, _, Vt = np.linalg.svd(snapshots - snapshots.mean(0), full_matrices=False)
    np.testing.assert_allclose(np.abs(np.sum(result.modes * Vt[:8], axis=1)), 1.0, atol=1e-8)


def test_theorem_1_reconstruction_error_is_the_tail_sum(snapshots):
    result = pod(snapshots)
    for r in range(0, 9):
        error = np.mean(np.sum((snapshots - result.reconstruct(r)) ** 2, axis=1))
        assert error == pytest.approx(result.eigenvalues[r:].sum(), rel=1e-9, abs=1e-9)


def test_uncentred_and_mode_count():
    X = np.random.default_rng(1).standard_normal((10, 4))
    result = pod(X, center=False, n_modes=2)
    np.testing.assert_allclose(result.eigenvalues[:4], np.linalg.svd(X, compute_uv=False) ** 2 / 10)
    assert result.modes.shape == (2, 4) and np.all(result.mean == 0)


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.3])
def test_spectral_concentration_is_one_over_beta_for_power_laws(beta):
    lam = np.arange(1, 101, dtype=float) ** -beta
    assert spectral_concentration(lam) == pytest.approx(1 / beta, rel=1e-10)
    assert power_law_fit(lam).k.tolist() == list(range(1, 31))


def test_spectral_concentration_flags_degenerate_spectra():
    degenerate = np.array([1.0, 0.5, 1e-13, 0.0, 0.0])
    assert np.isnan(spectral_concentration(degenerate))
    assert spectral_concentration(degenerate, published=True) == 1.0  # the published silent fallback
    assert spectral_concentration(np.ones(10)) == pytest.approx(100.0)  # flat: β clamped at 0.01


def test_effective_rank_hand_worked():
    lam = np.array([4, 2, 1, 1]) / 8  # tails after n = 0…4: 1, 1/2, 1/4, 1/8, 0
    assert effective_rank(lam, 0.5) == 1
    assert effective_rank(lam, 0.25) == 2
    assert effective_rank(lam, 0.125) == 3
    assert effective_rank(lam, 0.1) == 4
    assert effective_rank(lam * 7.0, 0.3) == 2  # scale-free


def test_effective_rank_published_returns_one_more():
    lam = np.array([4, 2, 1, 1]) / 8
    assert effective_rank(lam, 0.25, published=True) == 3
    assert effective_rank(lam, 0.1, published=True) == 4  # capped at the number of eigenvalues


def test_analysis_linear_algebra_runs_with_one_blas_pool(monkeypatch):
    """While the analysis runs, numpy's BLAS has one thread, so it cannot fight torch's pool."""
    from threadpoolctl import threadpool_info

    import attnpod.analysis as analysis

    seen = []
    original = analysis.windowed_grams

    def spy(*args, **kwargs):
        seen.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
        return original(*args, **kwargs)

    monkeypatch.setattr(analysis, "windowed_grams", spy)
    A = np.tril(np.random.default_rng(0).random((6, 8, 8)))
    analysis.scale_selective_pod(A / A.sum(-1, keepdims=True), [2.0, 4.0])
    assert seen and set(seen) == {1}


@pytest.mark.parametrize("N, D", [(30, 50), (40, 12), (25, 2000)])
def test_white_noise_spectrum_matches_centred_gaussian_snapshots(N, D):
    """Bartlett's Wishart draw gives the spectrum of N centred Gaussian snapshots in D dimensions: the mean
    eigenvalues over 200 draws agree with a direct simulation (SVD of the centred data) to 5 %, and so the
    noise H*(0.1) agrees to one mode; N − 1 modes at most, D at most."""
    import numpy as np

    from attnpod.pod import effective_rank, white_noise_eigenvalues, white_noise_rank

    rng = np.random.default_rng(5)
    direct, drawn = [], []
    for s in range(200):
        X = rng.standard_normal((N, D))
        X -= X.mean(0)
        lam = np.sort(np.linalg.eigvalsh(X @ X.T))[::-1] / (N - 1)
        direct.append(np.clip(lam, 0, None))
        drawn.append(white_noise_eigenvalues(N, D, seed=s))
    direct, drawn = np.mean(direct, 0), np.mean(drawn, 0)
    top = min(N - 1, D)
    np.testing.assert_allclose(drawn[:top], direct[:top], rtol=0.05)
    assert abs(effective_rank(drawn, 0.1) - effective_rank(direct, 0.1)) <= 1
    assert white_noise_rank(N, D) <= min(N - 1, D)


def test_white_noise_rank_nears_the_flat_spectrum_when_dimensions_dwarf_snapshots():
    """D ≫ N: the spectrum is flat to √(N/D), so H*(0.1) is within 2 % of N of ⌈0.9 (N − 1)⌉."""
    import math

    from attnpod.pod import white_noise_rank

    for N in (50, 200):
        assert abs(white_noise_rank(N, 10**6) - math.ceil(0.9 * (N - 1))) <= max(1, 0.02 * N)
