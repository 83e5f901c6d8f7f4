import numpy as np
import pytest
import pywt

from attnpod.lag import to_lag
from attnpod.wavelet import (OMEGA0, cross_coherency, dominant_scales, fourier_period, morlet_cwt,
                             paper_scales, scale_energy, scalogram)


def test_paper_scales():
    a = paper_scales()
    assert len(a) == 20 and a[0] == pytest.approx(2.0) and a[-1] == pytest.approx(64.0)
    np.testing.assert_allclose(np.diff(np.log2(a)), 5 / 19)
    assert fourier_period(1.0) == pytest.approx(1.2325, abs=1e-4)


@pytest.mark.parametrize("period", [6.0, 12.0, 25.0])
def test_pure_tone_peaks_at_the_predicted_scale(period):
    t = np.arange(512)
    x = np.cos(2 * np.pi * t / period)
    scales = np.geomspace(1.5, 60, 400)
    W = morlet_cwt(x, scales)
    power = (np.abs(W[:, 128:-128]) ** 2).mean(axis=1)
    predicted = period / fourier_period(1.0)
    assert scales[np.argmax(power)] == pytest.approx(predicted, rel=0.03)


def test_unit_energy_normalisation_gives_flat_white_noise_spectrum():
    """Torrence & Compo: E|W_a|² = σ² at every scale for white noise."""
    x = np.random.default_rng(0).standard_normal((200, 512))
    scales = paper_scales()[:16]  # scales whose support fits well inside 512 samples
    power = (np.abs(morlet_cwt(x, scales)[..., 128:-128]) ** 2).mean(axis=(0, 2))
    np.testing.assert_allclose(power, 1.0, rtol=0.1)


def test_matches_pywavelets_complex_morlet_up_to_one_constant():
    """pywt's cmor2.0-(ω0/2π) is the same wavelet with another constant; it differentiates an
    integrated wavelet, which damps scale a by the finite difference's gain |2 sin(ω/2)|/ω at ω = ω0/a."""
    rng = np.random.default_rng(1)
    x = np.convolve(rng.standard_normal(600), np.ones(3) / 3, mode="same")
    scales = np.array([4.0, 6.0, 9.0, 14.0, 20.0])
    ours = morlet_cwt(x, scales)
    theirs, _ = pywt.cwt(x, scales, f"cmor2.0-{OMEGA0 / (2 * np.pi)}", method="fft")
    omega = OMEGA0 / scales
    gain = np.abs(2 * np.sin(omega / 2)) / omega
    middle = slice(150, 450)
    ratios = [np.linalg.norm(ours[s, middle]) / np.linalg.norm(theirs[s, middle]) * gain[s] for s in range(len(scales))]
    np.testing.assert_allclose(ratios, ratios[0], rtol=0.02)
    # the same shape up to that constant (conjugation convention aside)
    for s in range(len(scales)):
        a, b = ours[s, middle], theirs[s, middle]
        corr = max(abs(np.vdot(a, b)), abs(np.vdot(a, b.conj()))) / (np.linalg.norm(a) * np.linalg.norm(b))
        assert corr > 0.99


def test_scalogram_equals_direct_transform_of_every_lag_profile():
    rng = np.random.default_rng(2)
    A = np.tril(rng.random((6, 20, 20)))
    A /= A.sum(-1, keepdims=True)
    scales = paper_scales()[:8]
    direct = (np.abs(morlet_cwt(to_lag(A), scales)) ** 2).mean(axis=(0, 1))  # (S, T)
    np.testing.assert_allclose(scalogram(A, scales), direct, rtol=1e-5, atol=1e-12)  # float32 products


def test_dominant_scales_pick_largest_energy():
    S = np.array([[1.0, 1.0], [5.0, 0.0], [0.0, 3.0], [2.0, 2.5]])
    np.testing.assert_array_equal(scale_energy(S), [2.0, 5.0, 3.0, 4.5])
    np.testing.assert_array_equal(dominant_scales(S, np.array([2.0, 4.0, 8.0, 16.0]), k=2), [4.0, 16.0])


def test_cross_coherency_against_direct_definition():
    rng = np.random.default_rng(3)
    A = rng.random((5, 12, 12))
    scale = 4.0
    W = morlet_cwt(A, [scale])[..., 0, :]  # (N, i, j): CWT of each row along j
    i = np.arange(12)
    cross = np.abs(np.mean(W[:, i, i][:, :, None] * W.conj(), axis=0))
    expected = cross / np.sqrt(np.mean(np.abs(W[:, i, i]) ** 2, 0)[:, None] * np.mean(np.abs(W) ** 2, 0))
    gamma = cross_coherency(A, scale)
    np.testing.assert_allclose(gamma, np.clip(expected, 0, 1), rtol=1e-10)
    np.testing.assert_allclose(np.diag(gamma), 1.0)
    assert gamma.min() >= 0 and gamma.max() <= 1
