"""Scale-selective POD (SPEC section 5) and the whole analysis of an ensemble of attention fields.

The maths only: :mod:`attnpod.pipeline` runs it on a trained model and caches it.

The Gaussian lag window w_a(τ) = exp(−τ²/(2a²)) depends on the lag only, so the
centred Gram matrix at scale a is a weighted sum of per-lag Grams,

    C^a = (1/N) Σ_τ w_a(τ)² G_τ,   G_τ[n, m] = Σ_i L̃_n[i, τ] L̃_m[i, τ],

with L̃ the centred lag fields. Every scale then costs about one POD.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import CorruptFile, FieldInputError, NonFiniteError
from .store import check_arrays, load_npz, save_npz
from .lag import as_numpy, attention_reach, gaussian_lag_window, lag_major, to_lag
from .pod import (EPSILONS, bootstrap_resamples, effective_rank, half_ensembles, one_linalg_pool, resample_weights,
                  white_noise_rank,
                  resampled_eigenvalues, resampled_total_variance, sorted_eigh, spectral_concentration)
from .wavelet import (OMEGA0, dominant_scale_indices, paper_scales, rectified_dominant_scale_indices, scale_grid,
                      scalogram_from_moments, second_moment, snapshot_scale_energy)

MAY_BE_NAN = ("spectral_concentration",)  # NaN marks a degenerate spectrum (SPEC 5.6); no other array may hold one


CAUSAL_TOL = 1e-6  # largest attention allowed above the diagonal of a field


def check_field_shape(fields) -> None:
    """``fields[n, l, i, j]``: four axes, square maps, T ≥ 2 (lags to analyse), N ≥ 2 snapshots."""
    shape = tuple(getattr(fields, "shape", ()))
    if len(shape) != 4 or shape[-1] != shape[-2]:
        raise FieldInputError(f"fields must be fields[n, l, i, j] with square (T, T) maps, got shape {shape}")
    if shape[-1] < 2:
        raise FieldInputError(f"fields of T = {shape[-1]} token have no lags to analyse: T must be at least 2")
    if shape[0] < 2:
        raise FieldInputError(f"an ensemble needs at least 2 snapshots, got N = {shape[0]}")


def check_causal(layer: np.ndarray, where: str) -> None:
    """``layer[n, i, j]`` must be zero above the diagonal (decoder attention): a clear error if not."""
    T = layer.shape[-1]
    above = np.max([np.abs(layer[:, i, i + 1:]).max() for i in range(T - 1)])  # row by row: no copy of the layer
    if not above <= CAUSAL_TOL:
        raise FieldInputError(f"{where} is not causal: {above:.2g} of attention above the diagonal (the analysis is "
                              f"for decoder attention; a bidirectional model does not fit)")


def _valid_rows(T: int, lag_start: int, orientation: str) -> slice:
    """Rows i that can be non-zero at lags ≥ lag_start: i ≥ τ (causal) or i < T − τ (published)."""
    return slice(lag_start, T) if orientation == "causal" else slice(0, T - lag_start)


def windowed_grams(lag_fields: np.ndarray, scales, orientation: str = "causal", chunk: int = 8,
                   device=None) -> np.ndarray:
    """Centred Gram matrices C^a[n, m] of the windowed snapshots for every scale: (S, N, N) float64.

    ``lag_fields[tau, n, i]`` (lag-major, see :func:`attnpod.lag.lag_major`) must already
    be centred over n. Per-lag Grams are formed ``chunk`` lags at a time (float32
    products, each summed over at most T rows) and combined with the squared windows,
    on ``device`` (default: the CPU).
    """
    T, N, _ = lag_fields.shape
    w2 = torch.from_numpy(gaussian_lag_window(T, scales) ** 2).float().to(device)  # (S, T)
    X = torch.from_numpy(np.ascontiguousarray(lag_fields, dtype=np.float32)).to(device)
    C = torch.zeros(len(w2), N * N, dtype=torch.float32, device=device)
    for t0 in range(0, T, chunk):
        t1 = min(T, t0 + chunk)
        block = X[t0:t1, :, _valid_rows(T, t0, orientation)]  # (tc, N, R)
        G = torch.bmm(block, block.transpose(1, 2))  # (tc, N, N) per-lag Grams
        C.addmm_(w2[:, t0:t1], G.reshape(t1 - t0, N * N))
    return (C.double() / N).reshape(-1, N, N).cpu().numpy()


@dataclass
class ScaleSelectivePOD:
    """POD of the windowed ensemble at each scale.

    eigenvalues[s, k] (descending); modes[s, k, i, tau] in lag coordinates
    (``from_lag`` gives the T×T form); ``orientation`` as in :func:`attnpod.lag.to_lag`.
    """

    scales: np.ndarray
    eigenvalues: np.ndarray
    modes: np.ndarray
    orientation: str = "causal"

    @property
    def energy_fraction(self) -> np.ndarray:
        """Each mode's share of its scale's energy, λ_k / Σλ (0 where a scale has none): like ``eigenvalues``."""
        total = self.eigenvalues.sum(axis=-1, keepdims=True)
        return np.divide(self.eigenvalues, total, out=np.zeros_like(self.eigenvalues), where=total > 0)


def _pod_from_grams(Lc: np.ndarray, C: np.ndarray, scales, n_modes: int, mode_scale_index,
                    device=None) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues at every scale, and modes (lag coordinates) at the scale indices ``mode_scale_index``."""
    T, N, _ = Lc.shape
    mode_scale_index = list(mode_scale_index)
    others = [s for s in range(len(C)) if s not in mode_scale_index]
    eigenvalues = np.zeros((len(C), N))
    if others:
        lam = torch.linalg.eigvalsh(torch.from_numpy(C[others]).to(device)).cpu().numpy()
        eigenvalues[others] = np.clip(lam[:, ::-1], 0, None)
    r = min(n_modes, N)
    modes = np.zeros((len(mode_scale_index), r, T, T), dtype=np.float32)
    X = torch.from_numpy(Lc)  # (tau, n, i)
    w = gaussian_lag_window(T, np.asarray(scales)[mode_scale_index])  # (M, T)
    for m, s in enumerate(mode_scale_index):
        lam, V = sorted_eigh(C[s], device)
        eigenvalues[s] = lam
        keep = int(np.sum(lam[:r] > 1e-12))
        # φ_k = Ũ_cᵀ v_k / √(Nλ_k) with Ũ the windowed snapshots: project, then window along τ
        proj = torch.matmul(torch.from_numpy(V[:, :keep].T.astype(np.float32).copy()), X).numpy()  # (tau, k, i)
        phi = proj.transpose(1, 2, 0) / np.sqrt(N * lam[:keep])[:, None, None]  # (k, i, tau)
        modes[m, :keep] = phi * w[m]
    return eigenvalues, modes


def centred_lag_fields(fields, orientation: str = "causal") -> tuple[np.ndarray, np.ndarray]:
    """Lag-major fields ``X[tau, n, i]`` (float32) and their copy centred over the snapshots n."""
    X = torch.from_numpy(lag_major(as_numpy(fields, np.float32), orientation))
    mean = X.sum(dim=1, keepdim=True, dtype=torch.float64).div_(X.shape[1]).float()
    return X.numpy(), (X - mean).numpy()


@one_linalg_pool()
def scale_selective_pod(fields, scales, n_modes: int = 3, orientation: str = "causal") -> ScaleSelectivePOD:
    """Scale-selective POD of ``fields[N, T, T]`` at each scale a*.

    Ã[i, j] = A[i, j]·exp(−(i−j)²/(2a*²)) on the causal part; snapshots vec(Ã_n),
    centred; method of snapshots. ``orientation="published"`` windows the upper
    triangle A[i, i+s] as the published code does (degenerate for causal fields).
    """
    if orientation not in ("causal", "published"):
        raise ValueError(f"orientation must be 'causal' or 'published', got {orientation!r}")
    scales = np.atleast_1d(np.asarray(scales, dtype=np.float64))
    _, Lc = centred_lag_fields(fields, orientation)
    C = windowed_grams(Lc, scales, orientation)
    eigenvalues, modes = _pod_from_grams(Lc, C, scales, n_modes, range(len(scales)))
    return ScaleSelectivePOD(scales, eigenvalues, modes, orientation)


def mode_lag_profiles(modes) -> np.ndarray:
    """φ_k(τ): each lag-coordinate mode ``modes[..., i, tau]`` averaged over the rows where lag τ exists (i ≥ τ)."""
    modes = as_numpy(modes)
    T = modes.shape[-1]
    return modes.sum(axis=-2) / (T - np.arange(T))


# ----------------------------------------------------------------------------- whole-model analysis

@dataclass
class FieldAnalysis:
    """Everything the paper computes for one model, per layer l (0-based arrays; layers are 1…L in the book).

    scalogram[l, s, tau]; dominant_index[l, d] (scale indices, largest energy first);
    fluctuation_scalogram[l, s, tau] and fluctuation_dominant_index[l, d]: the same for the
    centred fields L − ⟨L⟩ (the part POD decomposes; beyond the paper);
    eigenvalues[l, s, k] at every scale; modes[l, d, k, i, tau] at the dominant scales;
    spectral_concentration[l] and effective_rank[l, e] on the top dominant scale;
    rank_by_scale[l, e, s] = H*(ε_e) at every scale.

    For the readings and the uncertainty (beyond the paper): published_scalogram[l, s, tau]
    is the published code's reading A[b, min(b+s, T−1)]; diagonal_mass[l] = ⟨Σ_{b<T−1} A[b,b]²⟩
    and corner[l] = ⟨A[T−1,T−1]²⟩ explain it (:func:`attnpod.wavelet.published_reading_kernels`);
    snapshot_energy[l, n, s] is each snapshot's scale energy (E(a) is its mean over n);
    resamples[b, n] are bootstrap resamples of the snapshots, for the means over snapshots:
    boot_fluctuation_energy[l, b, s] is each resample's fluctuation scale energy, the
    resample centred on its own mean (:func:`resampled_fluctuation_energy`), and
    boot_total_variance[l, b, s] its Σλ at every scale. The spectrum's
    shape is replicated on halves[h, m], random halves of the snapshots without
    replacement (:func:`attnpod.pod.half_ensembles`): half_eigenvalues[l, h, m] are the
    POD eigenvalues of each half at the top dominant scale, an ensemble of N/2.
    """

    scales: np.ndarray
    epsilons: np.ndarray
    scalogram: np.ndarray
    dominant_index: np.ndarray
    fluctuation_scalogram: np.ndarray
    fluctuation_dominant_index: np.ndarray
    eigenvalues: np.ndarray
    modes: np.ndarray
    spectral_concentration: np.ndarray
    effective_rank: np.ndarray
    rank_by_scale: np.ndarray
    published_scalogram: np.ndarray
    diagonal_mass: np.ndarray
    corner: np.ndarray
    snapshot_energy: np.ndarray
    resamples: np.ndarray
    boot_fluctuation_energy: np.ndarray
    boot_total_variance: np.ndarray
    halves: np.ndarray
    half_eigenvalues: np.ndarray
    attention_span: np.ndarray
    attention_keys: np.ndarray
    orientation: str = "causal"
    meta: dict = field(default_factory=dict)

    @property
    def dominant_scales(self) -> np.ndarray:
        """Each layer's dominant scales in tokens, by Torrence–Compo power of the raw field: (L, d)."""
        return self.scales[self.dominant_index]

    @property
    def fluctuation_dominant_scales(self) -> np.ndarray:
        """Each layer's dominant scales in tokens, by Torrence–Compo power of the fluctuation field: (L, d)."""
        return self.scales[self.fluctuation_dominant_index]

    @property
    def rectified_dominant_scales(self) -> np.ndarray:
        """Dominant scales by the rectified energy E(a)/a (Liu, Liang & Weisberg 2007): (L, d)."""
        return self.scales[rectified_dominant_scale_indices(self.scalogram, self.scales, self.dominant_index.shape[1])]

    @property
    def fluctuation_rectified_dominant_scales(self) -> np.ndarray:
        """Each layer's dominant scales in tokens, by the rectified energy E(a)/a of the fluctuation field: (L, d)."""
        return self.scales[rectified_dominant_scale_indices(self.fluctuation_scalogram, self.scales,
                                                            self.dominant_index.shape[1])]

    @property
    def published_dominant_scales(self) -> np.ndarray:
        """Dominant scales of the published pipeline's scalogram: (L, d)."""
        return self.scales[dominant_scale_indices(self.published_scalogram, self.dominant_index.shape[1])]

    @property
    def top_eigenvalues(self) -> np.ndarray:
        """Eigenvalues at each layer's top dominant scale: (L, N)."""
        return self.eigenvalues[np.arange(len(self.dominant_index)), self.dominant_index[:, 0]]

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the analysis by field name (what is stored)."""
        return {k: v for k, v in self.__dict__.items() if isinstance(v, np.ndarray)}

    def is_finite(self) -> bool:
        """No NaN or inf anywhere, except NaN in :data:`MAY_BE_NAN` (a degenerate spectrum's flag)."""
        return all(np.isfinite(v).all() if k not in MAY_BE_NAN else not np.isinf(v).any()
                   for k, v in self.arrays().items() if v.dtype.kind == "f")

    # Axes of every array: L layers, S scales, T lags (rows i too), E thresholds ε, D dominant scales,
    # K modes, N snapshots, B resamples, H half-ensembles of M = N // 2 snapshots.
    SHAPES = {"scales": ("S",), "epsilons": ("E",), "scalogram": ("L", "S", "T"), "dominant_index": ("L", "D"),
              "fluctuation_scalogram": ("L", "S", "T"), "fluctuation_dominant_index": ("L", "D"),
              "eigenvalues": ("L", "S", "N"), "modes": ("L", "D", "K", "T", "T"), "spectral_concentration": ("L",),
              "effective_rank": ("L", "E"), "rank_by_scale": ("L", "E", "S"), "published_scalogram": ("L", "S", "T"),
              "diagonal_mass": ("L",), "corner": ("L",), "snapshot_energy": ("L", "N", "S"), "resamples": ("B", "N"),
              "boot_fluctuation_energy": ("L", "B", "S"), "boot_total_variance": ("L", "B", "S"), "halves": ("H", "M"),
              "half_eigenvalues": ("L", "H", "M"), "attention_span": ("L", "N"), "attention_keys": ("L", "N")}

    def save(self, path: Path) -> None:
        """Write as ``.npz`` with a verified sidecar; a result with NaN or inf is refused."""
        if not self.is_finite():
            raise NonFiniteError(f"the analysis for {path} holds NaN or infinite values; not saved")
        save_npz(path, {"orientation": self.orientation, "meta": self.meta}, self.arrays())

    @classmethod
    def load(cls, path: Path) -> "FieldAnalysis":
        """The analysis stored at ``path``, checked (every array, its shape and finiteness), or :class:`CorruptFile`."""
        meta, arrays = load_npz(path)
        if not {"orientation", "meta"} <= set(meta):
            raise CorruptFile(f"{path}: its meta lacks the orientation")
        check_arrays(path, arrays, cls.SHAPES, may_be_nan=MAY_BE_NAN)
        return cls(**arrays, orientation=meta["orientation"], meta=meta["meta"])


@one_linalg_pool()
def analyse_fields(fields, scales=None, n_dominant: int = 4, n_modes: int = 3, orientation: str = "causal",
                   epsilons=EPSILONS, omega0: float = OMEGA0, n_boot: int = 1000, n_half: int = 200,
                   boot_seed: int = 0, progress: bool = True, device=None) -> FieldAnalysis:
    """Ensemble scalogram, dominant scales, scale-selective POD at all scales, 𝒯_spec and H*(ε) for each layer,
    the published reading; ``n_boot`` bootstrap resamples of the snapshots for the scale energies and Σλ,
    and ``n_half`` half-ensembles for the spectrum's shape (both seeded by ``boot_seed``).

    ``fields[n, l, i, j]`` head-averaged (a memory map is fine: one layer is read at a time).
    ``device``: where the Grams, eigensolvers and scale energies run (default: the CPU).
    ``scales`` default: :func:`attnpod.wavelet.scale_grid` of the window length (up to T/2 for T > 128);
    the published orientation keeps the paper's 2–64 (:func:`attnpod.wavelet.paper_scales`).
    """
    check_field_shape(fields)
    N, n_layer, T = fields.shape[0], fields.shape[1], fields.shape[-1]
    if scales is None:
        scales = scale_grid(T) if orientation == "causal" else paper_scales()
    scales = np.asarray(scales, dtype=np.float64)
    epsilons = np.asarray(epsilons, dtype=np.float64)
    resamples = bootstrap_resamples(N, n_boot, boot_seed)
    halves = half_ensembles(N, n_half if N >= 4 else 0, boot_seed + 1)  # a half of 2 still has a centred spectrum
    out = {k: [] for k in ("scalogram", "dominant_index", "fluctuation_scalogram", "fluctuation_dominant_index", "eigenvalues",
                           "modes", "spectral_concentration", "effective_rank", "rank_by_scale", "published_scalogram",
                           "diagonal_mass", "corner", "snapshot_energy", "boot_fluctuation_energy",
                           "boot_total_variance", "half_eigenvalues", "attention_span", "attention_keys")}
    for l in tqdm(range(n_layer), desc="analysis (layers)", disable=not progress):
        layer = np.ascontiguousarray(fields[:, l], dtype=np.float32)
        check_causal(layer, f"layer {l + 1}'s fields")
        L, Lc = centred_lag_fields(layer, orientation)
        span, keys = reach(layer)
        out["attention_span"].append(span)
        out["attention_keys"].append(keys)
        published = lag_major(layer, "published_clamped")
        profiles = L if orientation == "causal" else published
        S = scalogram_from_moments(second_moment(profiles.reshape(T, -1)), scales, omega0)
        dominant = dominant_scale_indices(S, n_dominant)
        S_fluct = scalogram_from_moments(second_moment(Lc.reshape(T, -1)), scales, omega0)
        out["published_scalogram"].append(scalogram_from_moments(second_moment(published.reshape(T, -1)), scales, omega0))
        out["snapshot_energy"].append(snapshot_scale_energy(profiles, scales, omega0, device=device))
        out["boot_fluctuation_energy"].append(resampled_fluctuation_energy(profiles, out["snapshot_energy"][-1],
                                                                           resamples, scales, omega0, device))
        diagonal = layer[:, np.arange(T), np.arange(T)].astype(np.float64) ** 2  # (N, T): A[b, b]²
        out["diagonal_mass"].append(diagonal[:, :-1].sum(-1).mean())
        out["corner"].append(diagonal[:, -1].mean())
        del layer, L, profiles, published
        C = windowed_grams(Lc, scales, orientation, device=device)
        eigenvalues, modes = _pod_from_grams(Lc, C, scales, n_modes, dominant, device)
        out["boot_total_variance"].append(resampled_total_variance(C, resamples))
        out["half_eigenvalues"].append(resampled_eigenvalues(C[dominant[0]], halves, device=device))
        top = eigenvalues[dominant[0]]
        out["scalogram"].append(S)
        out["dominant_index"].append(dominant)
        out["fluctuation_scalogram"].append(S_fluct)
        out["fluctuation_dominant_index"].append(dominant_scale_indices(S_fluct, n_dominant))
        out["eigenvalues"].append(eigenvalues)
        out["modes"].append(modes)
        out["spectral_concentration"].append(spectral_concentration(top))
        out["effective_rank"].append([effective_rank(top, e) for e in epsilons])
        out["rank_by_scale"].append([[effective_rank(lam, e) for lam in eigenvalues] for e in epsilons])
    arrays = {k: np.asarray(v) for k, v in out.items()}
    return FieldAnalysis(scales=scales, epsilons=epsilons, orientation=orientation, resamples=resamples,
                         halves=halves, **arrays)


def reach(layer, chunk: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """:func:`attnpod.lag.attention_span` and :func:`attnpod.lag.attention_keys` of ``layer[n, i, j]`` (causal
    lag coordinates whatever the analysis's orientation: range is a property of the attention), ``chunk``
    snapshots at a time: two arrays (N,)."""
    parts = [attention_reach(to_lag(layer[n0:n0 + chunk])) for n0 in range(0, len(layer), chunk)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def resampled_fluctuation_energy(lag_fields, snapshot_energy, resamples, scales, omega0: float = OMEGA0,
                                 device=None) -> np.ndarray:
    """Scale energy of the fluctuations of each bootstrap resample, centred on its own mean: (B, S).

    The wavelet transform is linear, so for weights w_n summing to 1 and the mean
    x̄ = Σ w_n x_n, Σ w_n e[x_n − x̄] = Σ w_n e[x_n] − e[x̄]: the per-snapshot energies
    ``snapshot_energy[n, s]`` of ``lag_fields[tau, n, i]`` and one transform per resample
    mean, no snapshot transformed again.
    """
    T, N, I = lag_fields.shape
    w = resample_weights(resamples, N)
    X = torch.as_tensor(as_numpy(lag_fields, np.float32)).permute(1, 0, 2).reshape(N, T * I)
    means = (torch.from_numpy(w.astype(np.float32)) @ X).reshape(len(w), T, I).permute(1, 0, 2)  # (tau, b, i)
    return w @ snapshot_energy - snapshot_scale_energy(means, scales, omega0, device=device)


# ----------------------------------------------------------------------------- descriptive statistics of the fields

@dataclass
class LagStatistics:
    """Per layer: mean lag profile p[l, tau] (over snapshots and the queries where lag τ exists),
    mean look-back E[τ] (over snapshots and queries i ≥ 1), and the attention share on the first token."""

    mean_profile: np.ndarray
    mean_lag: np.ndarray
    first_token_share: np.ndarray


def lag_statistics(fields) -> LagStatistics:
    """Descriptive statistics of ``fields[n, l, i, j]``, one layer at a time (memory maps welcome)."""
    n_layer, T = fields.shape[1], fields.shape[-1]
    tau = np.arange(T)
    profile, look_back, sink = [], [], []
    for l in range(n_layer):
        L = to_lag(np.asarray(fields[:, l], dtype=np.float32))  # (N, i, tau)
        profile.append(L.sum(axis=(0, 1), dtype=np.float64) / (len(L) * (T - tau)))
        look_back.append(float((L[:, 1:] @ tau).mean()))
        sink.append(float(np.asarray(fields[:, l, 1:, 0]).mean()))
    return LagStatistics(np.asarray(profile), np.asarray(look_back), np.asarray(sink))


def nearest_scale_index(scales, a: float) -> int:
    """Index of the scale closest to ``a`` on a log axis."""
    return int(np.argmin(np.abs(np.log(np.asarray(scales) / a))))


def bootstrap_statistics(result: FieldAnalysis) -> dict[str, np.ndarray]:
    """The per-layer means over snapshots recomputed on every bootstrap resample: arrays ``[l, b]``.

    The top dominant scale under Torrence–Compo power (``top_scale``) and rectified
    (``rectified_top_scale``), from the resampled mean of the per-snapshot energies, and
    the same for the fluctuations (``fluctuation_top_scale``,
    ``rectified_fluctuation_top_scale``); the total windowed variance Σλ at the layer's
    top scale (``energy``) and at every scale (``energy_by_scale[l, b, s]``). The
    spectrum's shape is in :func:`half_statistics`.
    """
    w = resample_weights(result.resamples, result.resamples.shape[1])
    energy = np.einsum("bn,lns->lbs", w, result.snapshot_energy)
    fluct = result.boot_fluctuation_energy  # (L, B, S)
    return {
        "top_scale": result.scales[np.argmax(energy, axis=-1)],
        "rectified_top_scale": result.scales[np.argmax(energy / result.scales, axis=-1)],
        "fluctuation_top_scale": result.scales[np.argmax(fluct, axis=-1)],
        "rectified_fluctuation_top_scale": result.scales[np.argmax(fluct / result.scales, axis=-1)],
        "energy": result.boot_total_variance[np.arange(len(fluct)), :, result.dominant_index[:, 0]],
        "energy_by_scale": result.boot_total_variance,
    }


def spectrum_shape(eigenvalues, epsilons=EPSILONS) -> dict[str, np.ndarray]:
    """The shape statistics of spectra ``eigenvalues[..., k]``: 𝒯_spec, H*(ε) (``[..., e]``) and λ₁/Σλ."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    flat = lam.reshape(-1, lam.shape[-1])
    total = flat.sum(-1)
    return {
        "spectral_concentration": np.array([spectral_concentration(x) for x in flat]).reshape(lam.shape[:-1]),
        "effective_rank": np.array([[effective_rank(x, e) for e in epsilons] for x in flat]).reshape(
            *lam.shape[:-1], len(epsilons)),
        "first_share": np.divide(flat[:, 0], total, out=np.zeros_like(total), where=total > 0).reshape(lam.shape[:-1]),
    }


def white_noise_ceiling(result: FieldAnalysis, eps: float = 0.1, n_snapshots: int | None = None) -> int:
    """H*(ε) of isotropic white noise at the analysis' N snapshots (or ``n_snapshots``, N // 2 for the
    half-ensembles) and D = T(T + 1)/2 dimensions, the entries a causal T-token field has
    (:func:`attnpod.pod.white_noise_rank`): the ceiling a layer's H* nears when its fluctuations have no
    structure, printed beside H* so that a high H* is read against it."""
    T = result.scalogram.shape[-1]
    return white_noise_rank(n_snapshots or result.attention_span.shape[1], T * (T + 1) // 2, eps)


def half_statistics(result: FieldAnalysis) -> dict[str, np.ndarray]:
    """The spectrum's shape at the layer's top scale on every half-ensemble (N/2 snapshots): arrays ``[l, h]``
    (``effective_rank``: ``[l, e, h]``), each a replicate of the statistic at ensemble size N/2.

    𝒯_spec, H*(ε) and the first-mode share λ₁/Σλ (:func:`spectrum_shape`).
    """
    shape = spectrum_shape(result.half_eigenvalues, result.epsilons)
    shape["effective_rank"] = np.moveaxis(shape["effective_rank"], -1, 1)
    return shape


READOUTS = ("top_scale", "h_star", "t_spec", "sink")  # a LayerReadout's per-layer values


@dataclass
class LayerReadout:
    """What the real model's rulings read of each layer, without the rest of the analysis: the top scale
    (tokens; Torrence–Compo power of the raw field), H*(0.1) and 𝒯_spec at it, the attention on token 0
    (queries i ≥ 1), and H*(0.1) at that scale on the subsets of each size (index arrays ``[d, m]``,
    re-centred on their own mean: :func:`attnpod.pod.resampled_eigenvalues`): ``size_rank[s]`` is ``[d, l]``."""

    top_scale: np.ndarray
    h_star: np.ndarray
    t_spec: np.ndarray
    sink: np.ndarray
    size_rank: list


def without_sink(layer: np.ndarray) -> np.ndarray:
    """Fields ``layer[n, i, j]`` with the first key removed: column 0 set to 0 and each row renormalised to
    sum to 1 over the keys left (query 0, which sees only key 0, is left with none: a zero row)."""
    out = np.array(layer, dtype=np.float32, copy=True)
    out[:, :, 0] = 0.0
    mass = out.sum(-1, keepdims=True)
    np.divide(out, mass, out=out, where=mass > 0)
    return out


@one_linalg_pool()
def layer_readout(fields, subsets=(), eps: float = 0.1, ablate_sink: bool = False, scales=None,
                  progress: bool = False) -> LayerReadout:
    """:class:`LayerReadout` of causal ``fields[n, l, i, j]`` (one layer in memory at a time); ``subsets`` a
    list of index arrays ``[d, m]`` (one size each); ``ablate_sink``: each layer :func:`without_sink` first.
    Reads what :func:`analyse_fields` reads (its top scale, its H* and 𝒯_spec at it) at one scale's Gram."""
    check_field_shape(fields)
    n_layer, T = fields.shape[1], fields.shape[-1]
    scales = scale_grid(T) if scales is None else np.asarray(scales, dtype=np.float64)
    subsets = [np.asarray(s) for s in subsets]
    out = {k: [] for k in ("top_scale", "h_star", "t_spec", "sink", "size_rank")}
    for l in tqdm(range(n_layer), desc="readout (layers)", disable=not progress):
        layer = np.ascontiguousarray(fields[:, l], dtype=np.float32)
        check_causal(layer, f"layer {l + 1}'s fields")
        if ablate_sink:
            layer = without_sink(layer)
        out["sink"].append(float(layer[:, 1:, 0].mean()))
        L, Lc = centred_lag_fields(layer, "causal")
        top = int(dominant_scale_indices(scalogram_from_moments(second_moment(L.reshape(T, -1)), scales, OMEGA0), 1)[0])
        C = windowed_grams(Lc, scales[[top]], "causal")[0]
        lam = np.clip(np.linalg.eigvalsh(C)[::-1], 0, None)
        out["top_scale"].append(scales[top])
        out["h_star"].append(effective_rank(lam, eps))
        out["t_spec"].append(spectral_concentration(lam))
        out["size_rank"].append([[effective_rank(x, eps) for x in resampled_eigenvalues(C, s)] for s in subsets])
    per_layer = out.pop("size_rank")
    size_rank = [np.asarray([ranks[s] for ranks in per_layer], dtype=float).T for s in range(len(subsets))]
    return LayerReadout(**{k: np.asarray(v, dtype=float) for k, v in out.items()}, size_rank=size_rank)
