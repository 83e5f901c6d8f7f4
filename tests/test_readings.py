"""The scale readings beyond Torrence–Compo power: the published pipeline, the rectified spectrum,
per-snapshot energies and the snapshot bootstrap."""
import numpy as np
import pytest

from attnpod.analysis import analyse_fields, resampled_fluctuation_energy
from attnpod.lag import lag_major, to_lag
from attnpod.pod import bootstrap_resamples, half_ensembles, pod, resampled_eigenvalues, resampled_total_variance
from attnpod.wavelet import (dominant_scale_indices, exponential_peak_scale, morlet_cwt, paper_scales,
                             published_reading_kernels, rectified_scale_energy, scale_energy, scalogram,
                             snapshot_scale_energy)


def causal_fields(N=10, T=16, seed=0, diagonal=1.0, last=None):
    """Random causal row-stochastic fields; ``diagonal`` is added to the self-attention logits
    (``last`` instead for the last query, if given)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(N, T, T)) + diagonal * np.eye(T)
    if last is not None:
        logits[:, -1, -1] += last - diagonal
    logits[:, np.triu(np.ones((T, T), dtype=bool), 1)] = -np.inf
    A = np.exp(logits - logits.max(-1, keepdims=True))
    return A / A.sum(-1, keepdims=True)


# --- the published code, restated in our own words (paper4_pod/pod_analysis.py) -----------------------------

def published_cwt(x, scales, omega0=5.0):
    """The published FFT Morlet: padding to 2N, ψ̂ = √(2πa)·exp(−(2πfa − ω₀)²/2) on f > 0 (no π^(−1/4)),
    product with the conjugate, inverse FFT, first N samples."""
    n = len(x)
    spectrum = np.fft.fft(x, n=2 * n)
    f = np.fft.fftfreq(2 * n)
    out = []
    for a in scales:
        psi = np.sqrt(2 * np.pi * a) * np.exp(-((2 * np.pi * f * a - omega0) ** 2) / 2) * (f > 0)
        out.append(np.fft.ifft(spectrum * np.conj(psi))[:n])
    return np.array(out)


def published_scalogram(A, scales):
    """Per query b the profile A[b, min(b+s, T−1)], s = 0…T−1; power summed over b, divided by T."""
    T = len(A)
    total = np.zeros((len(scales), T))
    for b in range(T):
        profile = np.array([A[b, min(b + s, T - 1)] for s in range(T)])
        total += np.abs(published_cwt(profile, scales)) ** 2
    return total / T


def test_our_published_reading_equals_the_published_code_up_to_a_constant():
    A = causal_fields(N=5, T=16)
    scales = paper_scales()
    theirs = np.mean([published_scalogram(a, scales) for a in A], axis=0)
    ours = scalogram(A, scales, orientation="published")
    np.testing.assert_allclose(theirs, np.sqrt(np.pi) * ours, rtol=1e-6, atol=1e-12)  # their ψ lacks π^(−1/4)
    np.testing.assert_array_equal(dominant_scale_indices(theirs, 4), dominant_scale_indices(ours, 4))


def test_published_scale_energy_is_diagonal_mass_and_corner():
    """E(a) = (⟨Σ_{b<T−1} A_bb²⟩·spike(a) + ⟨A_{T−1,T−1}²⟩·box(a)) / T, exactly, for causal fields."""
    T, scales = 32, paper_scales()
    A = causal_fields(N=6, T=T, diagonal=1.5)
    d = A[:, np.arange(T), np.arange(T)] ** 2
    spike, box = published_reading_kernels(T, scales)
    predicted = (d[:, :-1].sum(-1).mean() * spike + d[:, -1].mean() * box) / T
    np.testing.assert_allclose(scale_energy(scalogram(A, scales, orientation="published")), predicted, rtol=1e-6)


@pytest.mark.parametrize("T", [128, 256])  # at T = 64 the scales reach T and the padded FFT wraps
def test_the_diagonal_against_the_last_query_decides_fine_or_coarse(T):
    """Under the published reading the top scale is argmax_a ρ·spike(a) + box(a), ρ = diagonal mass / corner:
    strong self-attention with a weak last query reads fine, the reverse reads coarse."""
    scales = paper_scales()

    def top(A):
        return scales[dominant_scale_indices(scalogram(A, scales, "published"), 1)[0]]

    assert top(causal_fields(N=4, T=T, diagonal=8.0, last=-8.0)) <= 7
    assert top(causal_fields(N=4, T=T, diagonal=-8.0, last=8.0)) >= 20


@pytest.mark.parametrize("ell", [3.0, 4.0, 6.0, 8.0])
def test_rectified_energy_of_an_exponential_profile_peaks_where_the_closed_form_says(ell):
    """x(τ) = e^{−τ/ℓ}: E(a)/a peaks at a* from the exact integral, ≈ ω₀ℓ; TC power E(a) keeps growing."""
    T = 2048
    scales = np.geomspace(2.0, 120.0, 300)
    x = np.exp(-np.arange(T) / ell)
    S = np.abs(morlet_cwt(x, scales)) ** 2
    peak = scales[np.argmax(rectified_scale_energy(S, scales))]
    assert peak == pytest.approx(exponential_peak_scale(ell), rel=0.06)
    assert exponential_peak_scale(ell) == pytest.approx(5.0 * ell, rel=0.04)
    assert np.argmax(scale_energy(S)) > np.argmax(rectified_scale_energy(S, scales))


def test_snapshot_energies_average_to_the_ensemble_scale_energy():
    A = causal_fields(N=7, T=16)
    scales = paper_scales()
    e = snapshot_scale_energy(lag_major(A), scales)
    np.testing.assert_allclose(e.mean(0), scale_energy(scalogram(A, scales)), rtol=1e-5)
    direct = (np.abs(morlet_cwt(to_lag(A[3]), scales)) ** 2).sum(-1).mean(0)  # CWT of each profile
    np.testing.assert_allclose(e[3], direct, rtol=1e-5)


def test_resampled_fluctuation_energy_equals_the_energy_of_the_recentred_resample():
    A = causal_fields(N=9, T=16)
    scales = np.array([2.0, 4.0, 8.0])
    L = lag_major(A)  # (tau, n, i)
    resamples = bootstrap_resamples(9, 4, seed=2)
    boot = resampled_fluctuation_energy(L, snapshot_scale_energy(L, scales), resamples, scales)
    for b, idx in enumerate(resamples):
        X = L[:, idx]
        direct = snapshot_scale_energy(X - X.mean(1, keepdims=True), scales).mean(0)  # centred on its own mean
        np.testing.assert_allclose(boot[b], direct, rtol=1e-4, atol=1e-7)
    everyone = resampled_fluctuation_energy(L, snapshot_scale_energy(L, scales), np.arange(9)[None], scales)[0]
    np.testing.assert_allclose(everyone, scale_energy(scalogram(A - A.mean(0), scales)), rtol=1e-4)


@pytest.mark.parametrize("halves", [False, True])
def test_resampled_eigenvalues_equal_pod_of_the_resampled_snapshots(halves):
    """Bootstrap resamples (with repeats) and half-ensembles (N/2, without): the POD of those snapshots."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(12, 30))
    Xc = X - X.mean(0)
    resamples = half_ensembles(12, 5, seed=3) if halves else bootstrap_resamples(12, 5, seed=3)
    boot = resampled_eigenvalues(Xc @ Xc.T / 12, resamples)
    assert boot.shape == resamples.shape
    total = resampled_total_variance(Xc @ Xc.T / 12, resamples)
    for b, idx in enumerate(resamples):
        reference = pod(X[idx]).eigenvalues
        np.testing.assert_allclose(boot[b], reference, atol=1e-5 * reference[0])  # float32 eigensolver
        assert total[b] == pytest.approx(reference.sum(), rel=1e-9)
    assert not np.allclose(boot[0], boot[1])


def test_analysis_carries_every_reading():
    A = np.stack([causal_fields(seed=1), causal_fields(seed=2, diagonal=3.0)], axis=1)  # (N, L=2, T, T)
    scales = np.array([2.0, 3.0, 5.0, 8.0, 12.0])
    result = analyse_fields(A, scales, n_dominant=3, n_boot=4, progress=False)
    assert result.published_dominant_scales.shape == result.rectified_dominant_scales.shape == (2, 3)
    for l in range(2):
        np.testing.assert_allclose(result.published_scalogram[l], scalogram(A[:, l], scales, "published"), rtol=1e-6)
        np.testing.assert_allclose(result.snapshot_energy[l].mean(0), scale_energy(result.scalogram[l]), rtol=1e-5)
    assert result.resamples.shape == (4, 10) and result.boot_total_variance.shape == (2, 4, 5)
    assert result.boot_fluctuation_energy.shape == (2, 4, 5)
    assert result.halves.shape == (200, 5) and result.half_eigenvalues.shape == (2, 200, 5)
    no_boot = analyse_fields(A, scales, n_dominant=3, n_boot=0, n_half=0, progress=False)  # the per-head analyses
    assert no_boot.boot_fluctuation_energy.shape == (2, 0, 5) and no_boot.half_eigenvalues.shape == (2, 0, 5)
    np.testing.assert_allclose(result.rectified_dominant_scales[:, 0],
                               scales[np.argmax(scale_energy(result.scalogram) / scales, axis=1)])
