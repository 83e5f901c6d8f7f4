"""Lag coordinates of attention fields (SPEC section 3).

``L[..., i, tau] = A[..., i, i - tau]`` for 0 ≤ τ ≤ i, else 0: row i of L is the
lag profile of query i. The published analysis reads the upper triangle
``A[i, i + τ]`` instead (SPEC section 6.1), which is zero for a causal model;
it stays available as ``orientation="published"``.
"""

from __future__ import annotations

import numpy as np

ORIENTATIONS = ("causal", "published", "published_clamped")


def as_numpy(x, dtype=None) -> np.ndarray:
    """A numpy view of an array or torch tensor (moved to the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _lag_index(T: int, orientation: str):
    i = np.arange(T)[:, None]
    tau = np.arange(T)[None, :]
    if orientation == "causal":
        j = i - tau
        return i, np.clip(j, 0, None), j >= 0
    if orientation == "published":  # the published POD window: A[b, b + s] for b + s < T
        j = i + tau
        return i, np.clip(j, None, T - 1), j < T
    if orientation == "published_clamped":  # the published scalogram: A[b, min(b + s, T - 1)]
        return i, np.minimum(i + tau, T - 1), np.ones((T, T), dtype=bool)
    raise ValueError(f"unknown orientation {orientation!r}; choose one of {ORIENTATIONS}")


def to_lag(A, orientation: str = "causal") -> np.ndarray:
    """``A[..., T, T] -> L[..., i, tau]`` with ``L[..., i, tau] = A[..., i, i - tau]`` (τ ≤ i), else 0."""
    A = as_numpy(A)
    i, j, valid = _lag_index(A.shape[-1], orientation)
    return np.where(valid, A[..., i, j], 0).astype(A.dtype, copy=False)


def lag_major(A, orientation: str = "causal") -> np.ndarray:
    """Lag fields of ``A[N, T, T]`` laid out lag-first: ``X[tau, n, i] = L[n, i, tau]`` (float32).

    Built from the diagonals of A (lag τ is the diagonal at offset −τ), which is
    the layout per-lag computations want.
    """
    A = as_numpy(A)
    N, T, _ = A.shape
    if orientation == "published_clamped":
        return np.ascontiguousarray(to_lag(A, orientation).transpose(2, 0, 1), dtype=np.float32)
    if orientation not in ORIENTATIONS:
        raise ValueError(f"unknown orientation {orientation!r}; choose one of {ORIENTATIONS}")
    X = np.zeros((T, N, T), dtype=np.float32)
    for tau in range(T):
        if orientation == "causal":
            X[tau, :, tau:] = np.diagonal(A, offset=-tau, axis1=1, axis2=2)
        else:
            X[tau, :, : T - tau] = np.diagonal(A, offset=tau, axis1=1, axis2=2)
    return X


def from_lag(L) -> np.ndarray:
    """Inverse of :func:`to_lag` on the causal part: ``A[..., i, j] = L[..., i, i - j]`` (j ≤ i), else 0."""
    L = as_numpy(L)
    T = L.shape[-1]
    i = np.arange(T)[:, None]
    tau = i - np.arange(T)[None, :]
    return np.where(tau >= 0, L[..., i, np.clip(tau, 0, None)], 0).astype(L.dtype, copy=False)


def gaussian_lag_window(T: int, a) -> np.ndarray:
    """w_a(τ) = exp(−τ²/(2a²)) for τ = 0…T−1; shape (T,), or (S, T) for an array of scales."""
    tau = np.arange(T, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    return np.exp(-tau**2 / (2.0 * a[..., None] ** 2))


# ----------------------------------------------------------------------------- how far attention reaches (range)

SPAN_EPSILON = 0.1  # the span holds 1 − ε of a row's attention, sink excluded (pre-registered on the bench)
SINK_FLOOR = 1e-6  # a row with less attention than this off the first token is all sink: it has no span


def _off_sink(lag_fields) -> tuple[np.ndarray, np.ndarray]:
    """Each row's lag profile without its first token (τ = i) and that profile's mass: (P[n, i, tau], mass[n, i])."""
    P = np.array(as_numpy(lag_fields), dtype=np.float64)  # (N, i, tau), a copy
    T = P.shape[-1]
    P[:, np.arange(T), np.arange(T)] = 0.0  # lag τ = i is key 0: the sink, reported on its own
    return P, P.sum(-1)


def _count_to_mass(cumulative: np.ndarray, epsilon: float) -> np.ndarray:
    """How many entries a cumulative share needs to reach 1 − ε (a hair of tolerance for exact shares)."""
    return (cumulative < 1.0 - epsilon - 1e-9).sum(-1) + 1


def _row_mean(values: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """Mean over the rows i ≥ 1 that hold attention off the sink (every row counts once): (N,)."""
    valid = mass[:, 1:] > SINK_FLOOR
    values = np.where(valid, values[:, 1:], 0.0).sum(-1)
    return values / np.maximum(valid.sum(-1), 1)


def _span(P, mass, epsilon):
    share = np.cumsum(P, -1) / np.maximum(mass, 1e-300)[..., None]
    return _row_mean(_count_to_mass(share, epsilon).astype(np.float64), mass)


def _keys(P, mass, epsilon):
    share = np.cumsum(-np.sort(-P, axis=-1), -1) / np.maximum(mass, 1e-300)[..., None]
    return _row_mean(_count_to_mass(share, epsilon).astype(np.float64), mass)


def attention_span(lag_fields, epsilon: float = SPAN_EPSILON) -> np.ndarray:
    """The row-balanced span of each snapshot: the fewest *nearest* keys (lags 0, 1, …) holding 1 − ε of a query
    row's attention off the first token, averaged over the rows i ≥ 1: ``span[n]`` in tokens.

    ``lag_fields[n, i, tau]`` (:func:`to_lag`). A sliding window of W keys gives about (1 − ε)·W whatever its
    weights' shape inside it; attention over the whole past about (1 − ε)·T/2. Rows with nothing off the
    sink are left out (:data:`SINK_FLOOR`).
    """
    return _span(*_off_sink(lag_fields), epsilon)


def attention_keys(lag_fields, epsilon: float = SPAN_EPSILON) -> np.ndarray:
    """The row-balanced key count of each snapshot: the fewest keys, *wherever they lie*, holding 1 − ε of a
    query row's attention off the first token, averaged over the rows i ≥ 1: ``keys[n]``. (ZigZagKV's
    layer-minimal budget is this per row; it measures concentration, not range: one far key counts 1.)"""
    return _keys(*_off_sink(lag_fields), epsilon)


def attention_reach(lag_fields, epsilon: float = SPAN_EPSILON) -> tuple[np.ndarray, np.ndarray]:
    """:func:`attention_span` and :func:`attention_keys` of the same fields from one copy of them off the sink."""
    P, mass = _off_sink(lag_fields)
    return _span(P, mass, epsilon), _keys(P, mass, epsilon)
