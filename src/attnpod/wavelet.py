"""Morlet continuous wavelet transform, ensemble scalograms, dominant scales, coherency (SPEC section 4).

ψ(t) = π^(−1/4) e^{iω₀t} e^{−t²/2}, ω₀ = 5, computed in the Fourier domain with
Torrence & Compo's normalisation ψ̂_a(ω) = √(2πa) π^(−1/4) e^{−(aω−ω₀)²/2} H(ω)
(unit energy at every scale), the signal zero-padded to at least twice its length.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from .lag import as_numpy, lag_major

OMEGA0 = 5.0


def paper_scales() -> np.ndarray:
    """The 20 scales a_k = 2^{x_k}, x = linspace(1, 6, 20): 2.00 … 64.00 tokens."""
    return 2.0 ** np.linspace(1.0, 6.0, 20)


# Windows longer than this get a scale grid that reaches T/2 (the paper's 2–64 stays the paper's reading).
PAPER_GRID_MAX_T = 128


def scale_grid(T: int) -> np.ndarray:
    """The scale grid for windows of ``T`` tokens: the paper's 2–64 (:func:`paper_scales`) for T ≤ 128, else
    log-spaced from 2 to T/2 no coarser than the paper's step (5/19 of an octave): 24 scales, 2–128, for T = 256."""
    if T <= PAPER_GRID_MAX_T:
        return paper_scales()
    octaves = np.log2(T / 2) - 1
    return 2.0 ** np.linspace(1.0, np.log2(T / 2), int(np.ceil(octaves * 19 / 5)) + 1)


def fourier_period(scales, omega0: float = OMEGA0) -> np.ndarray:
    """Fourier period of the Morlet wavelet at scale a: 4πa / (ω₀ + √(2 + ω₀²)) ≈ 1.2325 a for ω₀ = 5."""
    return 4 * np.pi * np.asarray(scales, dtype=np.float64) / (omega0 + np.sqrt(2 + omega0**2))


def padded_length(L: int) -> int:
    """The FFT length: the next power of two ≥ 2L."""
    return 1 << int(np.ceil(np.log2(2 * L)))


def morlet_fourier(scales, n: int, omega0: float = OMEGA0) -> np.ndarray:
    """ψ̂_a(ω_k) on the FFT grid of length n (unit sample spacing): shape (S, n), real."""
    omega = 2 * np.pi * np.fft.fftfreq(n)
    a = np.atleast_1d(np.asarray(scales, dtype=np.float64))[:, None]
    return np.sqrt(2 * np.pi * a) * np.pi**-0.25 * np.exp(-((a * omega - omega0) ** 2) / 2) * (omega > 0)


def morlet_cwt(x, scales, omega0: float = OMEGA0) -> np.ndarray:
    """CWT of real ``x[..., L]`` at each scale: complex ``W[..., S, L]``.

    W_a(τ) = Σ_k x̂_k ψ̂_a*(ω_k) e^{iω_k τ} (Torrence & Compo eq. 4), zero padding to ≥ 2L.
    """
    x = as_numpy(x, np.float64)
    L = x.shape[-1]
    n = padded_length(L)
    spectrum = np.fft.fft(x, n=n)[..., None, :]  # (..., 1, n)
    return np.fft.ifft(spectrum * morlet_fourier(scales, n, omega0), axis=-1)[..., :L]  # ψ̂ real: ψ̂* = ψ̂


def cwt_matrix(scales, L: int, omega0: float = OMEGA0) -> np.ndarray:
    """The CWT as a linear map: ``K[a, t, tau]`` with W_a(τ) = Σ_t x[t] K[a, t, τ]."""
    n = padded_length(L)
    h = np.fft.ifft(morlet_fourier(scales, n, omega0), axis=-1)  # (S, n) impulse response
    t = np.arange(L)
    return h[:, (t[None, :] - t[:, None]) % n]  # (S, t, tau)


def second_moment(X, chunk: int = 1 << 16) -> np.ndarray:
    """R[t, t'] = mean over columns m of X[t, m]·X[t', m] for profiles stored as columns of ``X[L, M]``.

    Float32 products within a chunk of columns, float64 across chunks.
    """
    X = torch.as_tensor(as_numpy(X, np.float32))
    L, M = X.shape
    moment = torch.zeros(L, L, dtype=torch.float64)
    for m0 in range(0, M, chunk):
        x = X[:, m0:m0 + chunk]
        moment += (x @ x.T).double()
    return moment.numpy() / M


def scalogram_from_moments(moment: np.ndarray, scales, omega0: float = OMEGA0) -> np.ndarray:
    """S(a, τ) = ⟨|W_a(τ)|²⟩ = Σ_{t,t'} R[t,t'] K[a,t,τ] K̄[a,t',τ] from the profiles' second moment R.

    In the Fourier domain of the padded grid (n points): with R̂[k,k'] = Σ_{t,t'} R[t,t'] e^{−iω_k t} e^{iω_k' t'},
    ⟨|W_a(τ)|²⟩ = n⁻² Σ_{k,k'} ψ̂_a(ω_k) R̂[k,k'] ψ̂_a(ω_k') e^{i(ω_k − ω_k')τ}, so the sums of ψ̂_a R̂ ψ̂_a along
    its diagonals k − k' = d and one inverse FFT give S(a, ·). Only frequencies where ψ̂_a is not negligible
    (above 10⁻¹² of its peak) enter: O(n²) a scale, where the matrix form costs O(L³).
    """
    moment = np.asarray(moment, dtype=np.float64)
    L = moment.shape[0]
    n = padded_length(L)
    padded = np.zeros((n, n))
    padded[:L, :L] = moment
    Rhat = np.fft.ifft(np.fft.fft(padded, axis=0), axis=1) * n  # R̂[k, k']
    psi = morlet_fourier(scales, n, omega0)  # (S, n), real
    out = np.empty((len(psi), L))
    for a, w in enumerate(psi):
        k = np.flatnonzero(w > w.max() * 1e-12)
        block = (w[k, None] * w[None, k]) * Rhat[np.ix_(k, k)]
        d = ((k[:, None] - k[None, :]) % n).ravel()
        diagonal = (np.bincount(d, weights=block.real.ravel(), minlength=n)
                    + 1j * np.bincount(d, weights=block.imag.ravel(), minlength=n))
        out[a] = np.fft.ifft(diagonal)[:L].real / n
    return out


def scalogram(fields, scales=None, orientation: str = "causal", omega0: float = OMEGA0) -> np.ndarray:
    """Ensemble scalogram ``S[a, tau]`` of head-averaged fields ``fields[N, T, T]``.

    S(a, τ) = mean_n (1/T) Σ_i |W_{n,i}(a, τ)|², W_{n,i} the CWT of lag profile i of
    snapshot n. Computed exactly through the profiles' second moment (one T×T
    matrix), so the cost does not grow with the number of scales.
    ``orientation="published"`` reads the published code's clamped upper triangle.
    """
    scales = paper_scales() if scales is None else scales
    reading = "published_clamped" if orientation == "published" else orientation
    profiles = lag_major(fields, reading)  # profiles[tau, n, i]
    return scalogram_from_moments(second_moment(profiles.reshape(len(profiles), -1)), scales, omega0)


def scale_energy(S) -> np.ndarray:
    """E(a) = Σ_τ S(a, τ)."""
    return np.asarray(S).sum(axis=-1)


def dominant_scale_indices(S, k: int = 4) -> np.ndarray:
    """Indices of the k largest E(a), largest first."""
    return np.argsort(-scale_energy(S), kind="stable")[..., :k]


def dominant_scales(S, scales, k: int = 4) -> np.ndarray:
    """The k scales a with the largest scale energy E(a), largest energy first."""
    return np.asarray(scales)[dominant_scale_indices(S, k)]


def cross_coherency(fields, scale: float, omega0: float = OMEGA0, chunk: int = 32) -> np.ndarray:
    """γ[i, j] at one scale for ``fields[N, T, T]`` (SPEC section 4, paper Fig. 3).

    For each snapshot and query row i, W_i(a, ·) is the CWT of A[i, ·] along the key index;
    γ_ij = |⟨W_i(a,i) W̄_i(a,j)⟩| / √(⟨|W_i(a,i)|²⟩⟨|W_i(a,j)|²⟩), means over snapshots, clipped to [0, 1].
    """
    fields = as_numpy(fields)
    N, T, _ = fields.shape
    n = padded_length(T)
    psi = morlet_fourier([scale], n, omega0)[0]
    diag = np.arange(T)
    cross = np.zeros((T, T), dtype=np.complex128)
    auto = np.zeros((T, T))
    for n0 in range(0, N, chunk):
        W = np.fft.ifft(np.fft.fft(fields[n0:n0 + chunk].astype(np.float64), n=n) * psi, axis=-1)[..., :T]
        w_ii = W[:, diag, diag]  # (chunk, T)
        cross += np.einsum("ni,nij->ij", w_ii, W.conj())
        auto += (np.abs(W) ** 2).sum(0)
    auto_ii = auto[diag, diag]
    denom = np.sqrt(auto_ii[:, None] * auto)
    gamma = np.divide(np.abs(cross), denom, out=np.zeros((T, T)), where=denom > 0)
    return np.clip(gamma, 0.0, 1.0)


def rectified_scale_energy(S, scales) -> np.ndarray:
    """E(a)/a: the scale energy rectified for the Torrence–Compo bias towards large scales.

    Liu, Liang & Weisberg (2007): with unit-energy wavelets a sinusoid of fixed
    amplitude shows power ∝ a, so dividing by a makes equal amplitudes equal.
    For a one-sided exponential lag profile e^{−τ/ℓ} (narrow-band limit) E(a) ≈
    ℓ²/(1 + ω₀²ℓ²/a²) grows monotonically with a, while E(a)/a peaks at a* = ω₀ℓ.
    """
    return scale_energy(S) / np.asarray(scales, dtype=np.float64)


def rectified_dominant_scale_indices(S, scales, k: int = 4) -> np.ndarray:
    """Indices of the k largest rectified energies E(a)/a, largest first."""
    return np.argsort(-rectified_scale_energy(S, scales), kind="stable")[..., :k]


def exponential_peak_scale(ell: float, omega0: float = OMEGA0) -> float:
    """Scale where the rectified energy of x(τ) = e^{−τ/ℓ}, τ ≥ 0, peaks, from the exact integral.

    E(a)/a ∝ ∫₀^∞ e^{−(u−ω₀)²} · r/(r² + u²) du with r = a/ℓ (Parseval on the
    one-sided exponential, |x̂(ω)|² = ℓ²/(1 + ω²ℓ²)); maximised over r on a fine
    grid. Its narrow-band limit is r* = ω₀, so a* ≈ ω₀ℓ.
    """
    u = np.linspace(0.0, omega0 + 10.0, 20001)
    weight = np.exp(-(u - omega0) ** 2)
    r = np.linspace(0.5 * omega0, 1.5 * omega0, 4001)[:, None]
    value = np.trapezoid(weight * r / (r**2 + u**2), u, axis=-1)
    return float(r[np.argmax(value), 0] * ell)


def published_reading_kernels(T: int, scales, omega0: float = OMEGA0) -> tuple[np.ndarray, np.ndarray]:
    """Scale energies of the two signals the published lag reading makes of a causal field.

    Row b < T−1 of the published reading A[b, min(b+s, T−1)] is the spike
    A[b, b]·δ_s (the upper triangle is masked); the last row is the constant
    A[T−1, T−1]. Returns ``spike[a] = Σ_{τ<T} |W_a[δ](τ)|²`` and ``box[a] =
    Σ_{τ<T} |W_a[1](τ)|²`` (unit height), so the published ensemble scale energy is

        E(a) = ( ⟨Σ_{b<T−1} A[b,b]²⟩ · spike[a] + ⟨A[T−1,T−1]²⟩ · box[a] ) / T.

    ``spike`` falls with a (half a unit-energy wavelet cut at the edge, plus an
    edge term ∝ 1/a); ``box`` grows with a (a step's response grows with the
    wavelet's width): the diagonal mass votes fine, the last query's
    self-attention votes coarse.
    """
    signals = np.zeros((2, T))
    signals[0, 0] = 1.0
    signals[1] = 1.0
    W = morlet_cwt(signals, scales, omega0)  # (2, S, T)
    spike, box = (np.abs(W) ** 2).sum(-1)
    return spike, box


def scale_energy_matrices(scales, L: int, omega0: float = OMEGA0) -> np.ndarray:
    """P[a, t, t'] = Re Σ_τ K[a,t,τ] K̄[a,t',τ], so that Σ_τ |W_a(τ)|² = xᵀ P_a x for a real profile x: (S, L, L).

    Computed once per grid, length and ω₀ in a process (read-only): as Re K Kᴴ = K_r K_rᵀ + K_i K_iᵀ, two real
    matrix products a scale (at L = 1024 an element-wise sum over τ took minutes)."""
    return _scale_energy_matrices(tuple(np.atleast_1d(np.asarray(scales, dtype=np.float64)).tolist()), int(L),
                                  float(omega0))


@functools.lru_cache(maxsize=4)
def _scale_energy_matrices(scales: tuple, L: int, omega0: float) -> np.ndarray:
    K = cwt_matrix(np.array(scales), L, omega0)  # (S, t, tau)
    P = np.empty((len(scales), L, L))
    for a, k in enumerate(K):
        P[a] = k.real @ k.real.T + k.imag @ k.imag.T
    P.flags.writeable = False
    return P


def snapshot_scale_energy(lag_fields, scales, omega0: float = OMEGA0, chunk: int = 64, device=None) -> np.ndarray:
    """Per-snapshot scale energy e[n, a] = (1/T) Σ_i Σ_τ |W_{n,i}(a, τ)|², so that E(a) = mean_n e[n, a]: (N, S).

    ``lag_fields[tau, n, i]`` (lag-major). Through the snapshot's second moment
    R_n[t, t'] = Σ_i L[t, n, i] L[t', n, i]: e[n, a] = Σ_{t,t'} R_n[t,t'] P_a[t,t'] / T
    (:func:`scale_energy_matrices`), so the cost does not grow with the number of scales.
    """
    X = torch.as_tensor(as_numpy(lag_fields, np.float32)).to(device)  # (tau, n, i)
    T, N, I = X.shape
    P = scale_energy_matrices(scales, T, omega0).reshape(len(np.atleast_1d(scales)), -1)
    P = torch.from_numpy(np.ascontiguousarray(P.T)).to(device)  # (T², S), a writable copy of the cached matrices
    out = np.empty((N, P.shape[1]))
    for n0 in range(0, N, chunk):
        x = X[:, n0:n0 + chunk].permute(1, 0, 2)  # (c, tau, i)
        R = torch.bmm(x, x.transpose(1, 2)).reshape(len(x), -1).double()  # (c, T²)
        out[n0:n0 + len(x)] = (R @ P).cpu().numpy() / I
    return out
