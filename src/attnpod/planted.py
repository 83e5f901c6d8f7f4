"""Ensembles of attention fields with a known answer: the method's bench (beyond the paper).

Each generator returns ``fields[n, l, i, j]``: causal (zero above the diagonal), row-stochastic
(every row sums to 1) and non-negative, like a decoder's head-averaged attention, with one
property planted layer by layer:

- :func:`exponential_lags`: a one-sided exponential lag profile exp(−τ/ℓ) of planted length ℓ;
- :func:`offsets`: attention on a planted lag d (a bump of width one token, e.g. a previous-token head at d = 1);
- :func:`windows`: attention inside a sliding window of W keys (zero beyond it), or over the whole past;
- :func:`sinks`: a planted share m of every query's attention on the first token, the rest local and alike
  (its noise too: η mixes only the attention off the first token);
- :func:`centred_rank`: snapshots A_n = M + Σ_{k ≤ r} c_nk B_k, so the centred ensemble has rank exactly r.

Inside its support a row's weights carry a lognormal texture drawn per snapshot, so the ensemble
varies as real attention does. ``noise`` η mixes every row with a random causal row (softmax of
Gaussian logits over the whole past): A ← (1 − η)·A + η·R, from none (0) to strong (about 0.5).
The answer is planted in the signal part; noise blurs it, as it would on a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEXTURE = 0.5  # σ of the lognormal texture of a row's weights inside its support
WHOLE = 0  # a window "width" meaning the whole causal past


@dataclass(frozen=True)
class Planted:
    """An ensemble with its planted answer: ``fields[n, l, i, j]`` and ``answer[l]``.

    ``kind``: what the answer is. "range" (a length in tokens: the farther, the larger), "sink" (the
    share on the first token; the range of the rest is the same in every layer) or "rank" (the centred
    rank r). ``case`` names the generator; ``noise`` is η.
    """

    case: str
    kind: str
    fields: np.ndarray
    answer: np.ndarray
    noise: float

    @property
    def T(self) -> int:
        """The window length of the planted fields."""
        return self.fields.shape[-1]


def _check(T: int, N: int, noise: float, values, what: str) -> None:
    if not (isinstance(T, (int, np.integer)) and T >= 4):
        raise ValueError(f"T must be an integer of at least 4, got {T!r}")
    if not (isinstance(N, (int, np.integer)) and N >= 2):
        raise ValueError(f"N must be an integer of at least 2, got {N!r}")
    if not 0.0 <= noise < 1.0:
        raise ValueError(f"noise must lie in [0, 1), got {noise!r}")
    if len(values) < 2:
        raise ValueError(f"plant at least two layers' {what}, got {list(values)!r}")


def _lags(T: int) -> np.ndarray:
    """τ[i, j] = i − j, the lag of key j from query i (negative above the diagonal)."""
    i = np.arange(T)
    return i[:, None] - i[None, :]


def _rows(weights: np.ndarray) -> np.ndarray:
    """Weights ``w[..., i, j]`` ≥ 0 (zero above the diagonal) scaled to rows summing to one, float64."""
    return weights / weights.sum(-1, keepdims=True)


def _texture(rng, N: int, T: int) -> np.ndarray:
    """Lognormal weights (N, T, T) with median one: the snapshot-to-snapshot variation inside a support."""
    return np.exp(TEXTURE * rng.standard_normal((N, T, T)))


def _noise_rows(rng, N: int, T: int) -> np.ndarray:
    """Random causal rows (N, T, T): softmax of standard normal logits over j ≤ i."""
    logits = np.where(_lags(T) >= 0, rng.standard_normal((N, T, T)), -np.inf)
    return _rows(np.exp(logits - logits.max(-1, keepdims=True)))


def _ensemble(case: str, kind: str, profiles, answer, T: int, N: int, noise: float, seed: int,
              textured: bool = True) -> Planted:
    """Stack layers made from each layer's lag weights ``profiles[l](tau) -> w[i, j]``, textured, rows
    normalised, noise mixed in."""
    rng = np.random.default_rng(seed)
    causal = _lags(T) >= 0
    layers = []
    for profile in profiles:
        w = np.where(causal, profile(np.clip(_lags(T), 0, None)), 0.0)  # (T, T)
        A = _rows(w[None] * (_texture(rng, N, T) if textured else 1.0))
        if noise:
            A = (1 - noise) * A + noise * _noise_rows(rng, N, T)
        layers.append(A)
    fields = np.stack(layers, axis=1).astype(np.float32)  # (N, L, T, T)
    return Planted(case, kind, fields, np.asarray(answer, dtype=float), float(noise))


def exponential_lags(lengths=(2, 8, 32), T: int = 64, N: int = 32, noise: float = 0.0, seed: int = 0) -> Planted:
    """Layer l attends with a one-sided exponential lag profile exp(−τ/ℓ_l): ``answer`` = ℓ (tokens)."""
    _check(T, N, noise, lengths, "lengths")
    return _ensemble("exponential lags", "range", [lambda tau, ell=ell: np.exp(-tau / ell) for ell in lengths],
                     lengths, T, N, noise, seed)


def offsets(lags=(1, 4, 16), T: int = 64, N: int = 32, noise: float = 0.0, seed: int = 0) -> Planted:
    """Layer l attends to the key d_l tokens back (a Gaussian bump of width one token over a floor of 10⁻³);
    a query with fewer than d keys before it looks as far back as it can (the first token), as a
    previous-token head does at the start of a text. ``answer`` = d (tokens)."""
    _check(T, N, noise, lags, "lags")
    i = np.arange(T)[:, None]
    return _ensemble("offsets", "range",
                     [lambda tau, d=d: np.exp(-((tau - np.minimum(d, i)) ** 2) / 2.0) + 1e-3 for d in lags],
                     lags, T, N, noise, seed)


def windows(widths=(4, 16, WHOLE), T: int = 64, N: int = 32, noise: float = 0.0, seed: int = 0) -> Planted:
    """Layer l attends inside a sliding window of the W_l nearest keys (lags 0 … W − 1), exactly zero beyond it;
    ``WHOLE`` (0) attends over the whole causal past. ``answer`` = W (T for the whole past)."""
    _check(T, N, noise, widths, "widths")
    if any(not (isinstance(w, (int, np.integer)) and 0 <= w <= T) for w in widths):
        raise ValueError(f"widths must be integers in 1…T, or WHOLE (0), got {list(widths)!r}")
    reach = [w if w else T for w in widths]
    return _ensemble("windows", "range", [lambda tau, W=W: (tau < W).astype(float) for W in reach],
                     reach, T, N, noise, seed)


def sinks(masses=(0.0, 0.3, 0.6), length: float = 4.0, T: int = 64, N: int = 32, noise: float = 0.0,
          seed: int = 0) -> Planted:
    """Every query i ≥ 1 puts a share m_l of its attention on the first token and spreads the rest with the same
    exponential lag profile of length ``length`` over keys 1 … i in every layer: ``answer`` = m."""
    _check(T, N, noise, masses, "masses")
    if any(not 0.0 <= m < 1.0 for m in masses):
        raise ValueError(f"sink masses must lie in [0, 1), got {list(masses)!r}")
    rng = np.random.default_rng(seed + 1)
    local = _ensemble("sinks", "sink", [lambda tau: np.exp(-tau / length)], [0.0], T, N, 0.0, seed).fields[:, 0]
    local = local.astype(np.float64)
    local[:, 1:, 0] = 0.0  # the local part never touches the first token ...
    local[:, 1:] = _rows(local[:, 1:])
    layers = []
    for m in masses:
        rest = local
        if noise:  # noise in the attention off the sink only: what is left is alike in every layer
            R = _noise_rows(rng, N, T)
            R[:, 1:, 0] = 0.0
            R[:, 1:] = _rows(R[:, 1:])
            rest = (1 - noise) * local + noise * R
        A = rest * (1 - m)
        A[:, 1:, 0] += m  # ... which holds exactly the planted share
        A[:, 0, 0] = 1.0
        layers.append(A)
    return Planted("sinks", "sink", np.stack(layers, axis=1).astype(np.float32), np.asarray(masses, float),
                   float(noise))


def centred_rank(ranks=(1, 3, 8), T: int = 64, N: int = 32, noise: float = 0.0, seed: int = 0,
                 length: float = 8.0) -> Planted:
    """Layer l's snapshots are A_n = M ⊙ (1 + Σ_{k ≤ r_l} c_nk Z_k): M a causal exponential field (length
    ``length``), Z_k random causal patterns with zero M-weighted row means and |Z_k| ≤ 1, c_nk uniform in
    ±0.9/r. Rows keep summing to one and stay positive, and the centred ensemble has rank exactly r
    (for N > r). ``answer`` = r."""
    _check(T, N, noise, ranks, "ranks")
    if any(not (isinstance(r, (int, np.integer)) and 1 <= r < N) for r in ranks):
        raise ValueError(f"ranks must be integers in 1…N−1, got {list(ranks)!r}")
    rng = np.random.default_rng(seed)
    causal = _lags(T) >= 0
    M = _rows(np.where(causal, np.exp(-np.clip(_lags(T), 0, None) / length), 0.0))  # (T, T)
    layers = []
    for r in ranks:
        Z = np.where(causal, rng.standard_normal((r, T, T)), 0.0)
        Z -= (M * Z).sum(-1, keepdims=True) * causal  # Σ_j M_ij Z_ij = 0 on every row: rows keep their sum
        Z /= np.abs(Z).max(axis=(1, 2), keepdims=True)
        c = rng.uniform(-0.9 / r, 0.9 / r, (N, r))
        A = M * (1 + np.einsum("nk,kij->nij", c, Z))
        if noise:
            A = (1 - noise) * A + noise * _noise_rows(rng, N, T)
        layers.append(A)
    return Planted("centred rank", "rank", np.stack(layers, axis=1).astype(np.float32), np.asarray(ranks, float),
                   float(noise))


GENERATORS = {"exponential lags": exponential_lags, "offsets": offsets, "windows": windows, "sinks": sinks,
              "centred rank": centred_rank}
