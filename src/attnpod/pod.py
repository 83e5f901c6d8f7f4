"""Proper orthogonal decomposition by the method of snapshots, and what its spectrum says (SPEC section 5).

C = X_c X_cᵀ / N (N×N), eigenvalues λ_k descending (negatives clipped to 0),
modes φ_k = X_cᵀ v_k / √(N λ_k). Theorem 1: the mean squared error of the best
rank-r reconstruction is Σ_{k>r} λ_k.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .lag import as_numpy

EPSILONS = (0.10, 0.05, 0.01)


@dataclass
class PODResult:
    """eigenvalues[N] (descending, ≥ 0), modes[r, D] (orthonormal rows), coefficients[N, r], mean[D]."""

    eigenvalues: np.ndarray
    modes: np.ndarray
    coefficients: np.ndarray
    mean: np.ndarray

    @property
    def energy_fraction(self) -> np.ndarray:
        """λ_k / Σ_j λ_j."""
        total = self.eigenvalues.sum()
        return self.eigenvalues / total if total > 0 else np.zeros_like(self.eigenvalues)

    def reconstruct(self, r: int) -> np.ndarray:
        """Snapshots rebuilt from the mean and the first r modes: (N, D)."""
        return self.mean + self.coefficients[:, :r] @ self.modes[:r]


@contextmanager
def one_linalg_pool():
    """Heavy linear algebra runs in torch's thread pool; numpy's BLAS (OpenBLAS) gets one thread meanwhile.

    Two multi-threaded pools in one process fight on a small machine: with 2
    threads each, one 1000×1000 ``eigh`` took 0.12–16 s instead of a steady 0.19 s.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def sorted_eigh(C: np.ndarray, device=None):
    """Eigenvalues of a symmetric matrix in descending order, negatives clipped to 0, and the eigenvectors (float64, torch)."""
    lam, V = torch.linalg.eigh(torch.as_tensor(np.asarray(C, dtype=np.float64)).to(device))
    return np.clip(lam.cpu().numpy()[::-1], 0, None), V.cpu().numpy()[:, ::-1]


@one_linalg_pool()
def pod(X, center: bool = True, n_modes: int | None = None) -> PODResult:
    """POD of snapshots ``X[N, D]`` by the method of snapshots.

    ``n_modes``: how many modes to form (default: every mode with λ_k > 1e-12·λ_1).
    """
    X = as_numpy(X, np.float64)
    if X.ndim != 2:
        raise ValueError(f"snapshots must be a 2-d array X[N, D], got shape {X.shape}")
    N = X.shape[0]
    mean = X.mean(axis=0) if center else np.zeros(X.shape[1])
    Xc = X - mean
    lam, V = sorted_eigh(Xc @ Xc.T / N)
    usable = int(np.sum(lam > 1e-12 * max(lam[0], np.finfo(float).tiny)))
    r = usable if n_modes is None else min(n_modes, usable)
    modes = (V[:, :r].T @ Xc) / np.sqrt(N * lam[:r])[:, None]  # φ_k = X_cᵀ v_k / √(N λ_k)
    return PODResult(eigenvalues=lam, modes=modes, coefficients=Xc @ modes.T, mean=mean)


def effective_rank(eigenvalues, eps: float, published: bool = False) -> int:
    """H*(ε) = min{ n : Σ_{k>n} λ_k / Σ_k λ_k ≤ ε }.

    ``published=True`` reproduces the published code, which returns one more
    (capped at the number of eigenvalues; SPEC section 6.2).
    """
    lam = np.clip(as_numpy(eigenvalues, np.float64), 0, None)
    total = lam.sum()
    tails = np.append(np.cumsum(lam[::-1])[::-1], 0.0)  # tails[n] = Σ_{k>n} λ_k, n = 0…N
    n = int(np.argmax(tails <= eps * total))
    return min(n + 1, len(lam)) if published else n


@dataclass
class PowerLawFit:
    """log λ_k = c − β log k over the usable k (λ_k > 1e-12, k ≤ K)."""

    beta: float
    intercept: float
    k: np.ndarray

    @property
    def usable(self) -> bool:
        """Whether the fit rests on at least three eigenvalues."""
        return len(self.k) >= 3


def white_noise_eigenvalues(N: int, D: int, seed: int = 0) -> np.ndarray:
    """The POD eigenvalues (descending, N of them) of N centred snapshots of isotropic Gaussian noise in D
    dimensions: a draw of the spectrum that no structure at all gives.

    Centring N i.i.d. Gaussian snapshots leaves N − 1 independent ones (Helmert's rotation) and a zero, and
    the nonzero eigenvalues of their N−1 by N−1 Gram are those of a Wishart(D, I) matrix, drawn here by
    Bartlett's decomposition (chi-square diagonal, normal below it) in O(N²) draws, whatever D is.
    """
    if not (N >= 2 and D >= 1):
        raise ValueError(f"white noise needs N >= 2 snapshots and D >= 1 dimensions, got N={N}, D={D}")
    rng = np.random.default_rng(seed)
    n = N - 1
    if D >= n:  # Bartlett: the Gram is L Lᵀ, L lower triangular, L_ii² ~ χ²(D − i), L_ij ~ N(0, 1) below
        lower = np.tril(rng.standard_normal((n, n)), k=-1)
        lower[np.diag_indices(n)] = np.sqrt(rng.chisquare(D - np.arange(n)))
    else:  # fewer dimensions than snapshots: the Gram has rank D, drawn directly
        lower = rng.standard_normal((n, D))
    lam = np.clip(np.linalg.eigvalsh(lower @ lower.T)[::-1], 0, None) / n
    return np.append(lam, 0.0)


def white_noise_rank(N: int, D: int, eps: float = 0.1, seed: int = 0) -> int:
    """H*(ε) of isotropic white noise at the same N snapshots and D dimensions (:func:`white_noise_eigenvalues`):
    the ceiling a field's H* approaches when its fluctuations have no structure. With D ≫ N the spectrum is
    nearly flat and the ceiling nears ⌈(1 − ε)(N − 1)⌉."""
    return effective_rank(white_noise_eigenvalues(N, D, seed), eps)


def power_law_fit(eigenvalues, k_fit: int = 30) -> PowerLawFit:
    """Least-squares fit of log λ_k against log k over k = 1…min(k_fit, N), λ_k > 1e-12."""
    lam = as_numpy(eigenvalues, np.float64)[:k_fit]
    k = np.arange(1, len(lam) + 1)[lam > 1e-12]
    if len(k) < 3:
        return PowerLawFit(np.nan, np.nan, k)
    slope, intercept = np.polyfit(np.log(k), np.log(lam[k - 1]), 1)
    return PowerLawFit(-slope, intercept, k)


def spectral_concentration(eigenvalues, k_fit: int = 30, published: bool = False) -> float:
    """𝒯_spec = 1/β with β = max(β, 0.01) from :func:`power_law_fit`.

    NaN when fewer than 3 eigenvalues exceed 1e-12; ``published=True`` returns the
    published code's silent 1.0 there instead (SPEC section 6.6).
    """
    fit = power_law_fit(eigenvalues, k_fit)
    if not fit.usable:
        return 1.0 if published else float("nan")
    return 1.0 / max(fit.beta, 0.01)


def bootstrap_resamples(N: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """Indices ``resamples[b, n]`` of ``n_boot`` bootstrap resamples of N snapshots (with replacement, seeded).

    Valid for means over snapshots (the scale energies E(a), the total variance Σλ), not
    for the shape of a spectrum: a resample holds about 63 % distinct snapshots, so its
    Gram has rank ≤ 0.63 N and H*(ε), 𝒯_spec and λ₁/Σλ shift by more than their spread
    (:func:`half_ensembles` replicates those).
    """
    return np.random.default_rng(seed).integers(0, N, size=(n_boot, N)).astype(np.int32)


def half_ensembles(N: int, n_half: int, seed: int = 0) -> np.ndarray:
    """Indices ``halves[h, n]`` of ``n_half`` random halves of N snapshots (N // 2 each, without replacement).

    A statistic of the spectrum's shape computed on each half is a replicate of that
    statistic *at ensemble size N/2*: the halves' mean estimates its expected value at
    N/2 (a U-statistic, unbiased for it), and since a half leaves out half the data, the
    spread of the halves about their mean matches the sampling spread of that mean
    (half-sampling, McCarthy 1969). Their percentile interval is an interval for the
    statistic's expected value at N/2, not at N: H*(ε) grows with N.
    """
    rng = np.random.default_rng(seed)
    return np.array([rng.permutation(N)[:N // 2] for _ in range(n_half)], dtype=np.int32).reshape(n_half, N // 2)


def resample_weights(resamples: np.ndarray, N: int) -> np.ndarray:
    """How often each of N snapshots is drawn in each resample, over the resample's size: weights[b, n], rows
    summing to 1."""
    counts = np.zeros((len(resamples), N))
    for b, r in enumerate(resamples):
        counts[b] = np.bincount(r, minlength=N)
    return counts / max(np.shape(resamples)[-1], 1)


def resampled_total_variance(C: np.ndarray, resamples: np.ndarray) -> np.ndarray:
    """Σλ of each resample from centred Grams ``C[..., n, m] = X_c X_cᵀ / N``, without an eigensolver: (B, ...).

    With w_n the share of resample b drawing snapshot n, the resample's variance about
    its own mean is N (Σ_n w_n C_nn − wᵀ C w) (the trace of :func:`resampled_eigenvalues`' matrix).
    """
    C = np.asarray(C, dtype=np.float64)
    N = C.shape[-1]
    w = resample_weights(resamples, N)
    diagonal = np.diagonal(C, axis1=-2, axis2=-1)  # (..., N)
    quadratic = ((w @ C) * w).sum(-1)  # (..., B)
    return np.moveaxis(N * (diagonal @ w.T - quadratic), -1, 0)


@one_linalg_pool()
def resampled_eigenvalues(C: np.ndarray, resamples: np.ndarray, chunk: int = 16, device=None) -> np.ndarray:
    """POD eigenvalues of each resample from one centred Gram ``C = X_c X_cᵀ / N``: (B, n), descending.

    A resample's n snapshots are rows ``resamples[b]`` of X (with or without repeats:
    bootstrap resamples or :func:`half_ensembles`); re-centred on the resample's own mean
    its Gram is J·G_b·J/n with G_b = N·C[idx][:, idx] and J = I − 11ᵀ/n (centring on
    any common mean first changes nothing), so no
    snapshot is read again. J·G·J is formed from row and column means (O(n²));
    the eigensolver runs in float32, whose error (~1e-7 λ₁) is far below the
    spread of the distribution it estimates.
    """
    N, n = len(C), resamples.shape[1]
    Ct = torch.as_tensor(np.asarray(C, dtype=np.float64) * (N / n)).to(device)
    out = np.empty((len(resamples), n))
    for b0 in range(0, len(resamples), chunk):
        idx = torch.as_tensor(resamples[b0:b0 + chunk], dtype=torch.long, device=device)
        G = Ct[idx[:, :, None], idx[:, None, :]]  # (c, n, n) = the resampled rows' Gram over n
        rows = G.mean(-1, keepdim=True)
        centred = G - rows - rows.transpose(1, 2) + rows.mean(-2, keepdim=True)  # J G J
        lam = torch.linalg.eigvalsh(centred.float()).double()
        out[b0:b0 + len(idx)] = np.clip(lam.cpu().numpy()[:, ::-1], 0, None)
    return out
