"""The book's named results: what a chapter shows, computed from a :class:`~attnpod.study.Study`.

Each figure of the book is a recipe in :data:`FIGURES`, by name; ``python -m attnpod
figure NAME`` draws the same recipe, so the command line's figure is the book's.
Naming the figures imports no matplotlib (a command that does not draw starts
without it); drawing one does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .config import ParameterError

if TYPE_CHECKING:
    from .kvcache import CacheResult
    from .study import Study

CACHE_SELECTION_RULES = ("recent window", "StreamingLLM", "H2O")


def cache_allocation_rules(result: CacheResult) -> list[str]:
    """The allocation rules of a cache experiment (H2O selection), uniform first."""
    return ["H2O"] + [r for r, s in zip(result.rules, result.selections) if s == "h2o" and r != "H2O"]


# ----------------------------------------------------------------------------- the book's figures, by name

def theorem1_check(study: "Study", r_max: int = 40):
    """Theorem 1 on BASE, layer 2, at its top scale, by an independent computation.

    The explicit windowed snapshot matrix, a plain POD, and the mean squared error of
    the reconstruction with r = 0…r_max modes. Returns (POD result, errors, layer, a*).
    """
    from .lag import gaussian_lag_window, to_lag
    from .pod import pod

    base = study.analysis("base")
    l = min(1, study.profile.n_layer - 1)
    a = base.scales[base.dominant[l, 0]]
    L = to_lag(study.fields("base")[:, l])  # L[n, i, tau]
    X = (L * gaussian_lag_window(study.profile.block_size, a)).reshape(len(L), -1).astype(np.float64)
    explicit = pod(X, n_modes=r_max)
    errors = [np.mean(np.sum((X - explicit.reconstruct(r)) ** 2, axis=1)) for r in range(min(r_max, len(explicit.modes)) + 1)]
    return explicit, errors, l, a


def _theorem1(study: "Study"):
    from .figures import plot_theorem1

    explicit, errors, l, a = theorem1_check(study)
    return plot_theorem1(explicit.eigenvalues, errors, label=f"(BASE, layer {l + 1}, a* = {a:.1f})")


def _coherency(study: "Study"):
    from .analysis import nearest_scale_index
    from .figures import plot_coherency
    from .wavelet import cross_coherency, paper_scales

    scales = paper_scales()
    a = scales[nearest_scale_index(scales, 4.0)]
    layers = [l for l in (0, 2, 5) if l < study.profile.n_layer]
    return plot_coherency({(v, l): cross_coherency(study.fields(v)[:, l], a) for v in ("base", "ega1")
                           for l in layers}, a)


class _Figures:
    """:mod:`attnpod.figures`, imported at the first drawing: naming the figures needs no matplotlib."""

    def __getattr__(self, name):
        from . import figures

        return getattr(figures, name)


def _recipes() -> dict:
    """Every figure's recipe by name: recipe(study) -> Figure."""
    from .analysis import lag_statistics
    from .lag import to_lag
    from .study import CACHE_MODELS
    from .wavelet import paper_scales

    f = _Figures()

    def modes(variant, title):
        return lambda s: f.plot_pod_modes(s.analysis(variant), layers=[l for l in (1, 3, 5) if l < s.profile.n_layer],
                                          title=title)

    return {
        "loss_curves": lambda s: f.plot_loss_curves({v: s.trained(v).history for v in s.models}),
        "fields": lambda s: f.plot_fields({v: s.fields(v)[0] for v in s.models}, max_len=64),
        "lag_fields": lambda s: f.plot_fields({v: to_lag(s.fields(v)[0]) for v in s.models}, lag=True, max_len=64),
        "lag_profiles": lambda s: f.plot_lag_profiles({v: lag_statistics(s.fields(v)).mean_profile for v in s.models}),
        "morlet": lambda s: f.plot_morlet(paper_scales()),
        "scalograms": lambda s: f.plot_scalogram_grid(s.analyses()),
        "scale_energy": lambda s: f.plot_scale_energy(s.analyses()),
        "rectified_energy": lambda s: f.plot_scale_energy(s.analyses(), rectified=True),
        "fluctuation_scalograms": lambda s: f.plot_scalogram_grid(s.analyses(), fluctuations=True),
        "fluctuation_energy": lambda s: f.plot_scale_energy(s.analyses(), fluctuations=True),
        "lag_windows": lambda s: f.plot_lag_windows(
            s.profile.block_size, s.analysis("base").dominant_scales[min(1, s.profile.n_layer - 1)],
            title="windows at BASE layer 2's dominant scales"),
        "spectra": lambda s: f.plot_eigenvalue_spectra(s.analyses()),
        "modes_ega": modes("ega1", "EGA-1"),
        "modes_base": modes("base", "BASE"),
        "theorem1": _theorem1,
        "power_law_fits": lambda s: f.plot_power_law_fits(s.analyses()),
        "rank_by_scale": lambda s: f.plot_rank_by_scale(s.analyses(), eps_index=0),
        "coherency": _coherency,
        "pruning_curves": lambda s: f.plot_budget_curves(
            {s.label(v): s.pruning(v, oracle=v == "base") for v in s.models}),
        "cache_selection": lambda s: f.plot_budget_curves(
            {s.label(v): s.kv_cache(v) for v in CACHE_MODELS}, rules=CACHE_SELECTION_RULES,
            xlabel="mean cache keys per layer", fewer_right=False, band_label="random splits"),
        "cache_allocation": lambda s: f.plot_budget_curves(
            {s.label(v): s.kv_cache(v) for v in CACHE_MODELS}, rules=cache_allocation_rules(s.kv_cache("base")),
            xlabel="mean cache keys per layer", fewer_right=False, band_label="random splits"),
        "attention_sinks": lambda s: f.plot_sinks(
            {s.label(v): s.kv_cache(v).sinks for v in CACHE_MODELS}, s.kv_cache("base").sink_uniform),
    }


# What each figure shows, by name: the command line lists them without importing torch or matplotlib.
FIGURES = {
    "loss_curves": "training and validation loss (chapter 01)",
    "fields": "example attention fields (02)",
    "lag_fields": "example lag fields (02)",
    "lag_profiles": "mean lag profiles (02)",
    "morlet": "the Morlet wavelet and its filters (03)",
    "scalograms": "Figure 1: ensemble scalograms (03)",
    "scale_energy": "scale energy E(a) (03)",
    "rectified_energy": "rectified scale energy E(a)/a (03)",
    "fluctuation_scalograms": "scalograms of the fluctuations (03)",
    "fluctuation_energy": "scale energy of the fluctuations (03)",
    "lag_windows": "Gaussian lag windows (04)",
    "spectra": "POD eigenvalue spectra (04)",
    "modes_ega": "Figure 2: POD mode lag profiles, EGA-1 (04)",
    "modes_base": "POD mode lag profiles, BASE (04)",
    "theorem1": "Theorem 1 on our ensemble (04)",
    "power_law_fits": "power-law fits behind T_spec (05)",
    "rank_by_scale": "H*(0.10) across scales (06)",
    "coherency": "Figure 3: cross-coherency maps (07)",
    "pruning_curves": "head pruning curves (09)",
    "cache_selection": "KV cache: token selection rules (10)",
    "cache_allocation": "KV cache: budget allocation rules, H2O (10)",
    "attention_sinks": "attention on token 0 per layer (10)",
}


def figure(study: Study, name: str):
    """The book's figure ``name`` (a key of :data:`FIGURES`) for this study, from its cached artifacts."""
    if name not in FIGURES:
        raise ParameterError(f"unknown figure {name!r}; choose one of {sorted(FIGURES)}")
    return _recipes()[name](study)
