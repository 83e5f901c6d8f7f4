"""Figures of the book, one function each, returning a matplotlib Figure.

Layers are numbered 1…L on every axis and title, as in the paper.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .analysis import FieldAnalysis, mode_lag_profiles
from .config import model_label
from .lag import gaussian_lag_window
from .pod import power_law_fit
from .wavelet import fourier_period, morlet_fourier, padded_length, scale_energy
from .claims import COARSE, FINE

FIGURE_DPI = 150  # the book's PNGs: tick labels stay legible where the column shrinks a figure


def _subplots(nrows: int = 1, ncols: int = 1, figsize=None, **kwargs):
    """A pyplot figure, closed at once: shown where a notebook displays or glues it, not again at cell end."""
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, layout="constrained", dpi=FIGURE_DPI, **kwargs)
    plt.close(fig)
    return fig, axes


def _scale_axis(ax, label: str = "scale a (tokens)"):
    """Log axis of scales with plain tick labels at powers of two."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(label)


COLORS = {"base": "C0", "ega1": "C1", "ega_morlet": "C2", "conv_l4": "C3", "ega1_causal": "C4", "ega_morlet_causal": "C5"}




def plot_loss_curves(histories: dict, smooth: int = 20):
    """Training loss (smoothed per step) and the periodic train/val evaluations of each model."""
    fig, ax = _subplots(figsize=(7.5, 4))
    for variant, h in histories.items():
        c = COLORS.get(variant)
        curve = np.asarray(h.curve)
        k = max(1, min(smooth, len(curve) // 5))
        smoothed = np.convolve(curve, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(k, len(curve) + 1), smoothed, color=c, alpha=0.35, lw=1)
        ax.plot(h.step, h.val, "o-", color=c, label=f"{model_label(variant)} (val)")
        ax.plot(h.step, h.train, "s--", color=c, ms=3, lw=1)
    ax.set(xlabel="optimiser step", ylabel="cross-entropy (nats / char)",
           title="Loss: thin = training batches (smoothed), dashed = train eval, solid = validation eval")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_fields(fields_by_model: dict, layers=None, lag: bool = False, max_len: int | None = None):
    """Example attention fields A^(l) (or lag fields L^(l)) of one snapshot: models × layers."""
    models = list(fields_by_model)
    n_layer = next(iter(fields_by_model.values())).shape[0]
    layers = list(range(n_layer)) if layers is None else list(layers)
    fig, axes = _subplots(len(models), len(layers), figsize=(1.9 * len(layers), 1.9 * len(models) + 0.4),
                          squeeze=False)
    for r, variant in enumerate(models):
        for c, l in enumerate(layers):
            A = np.asarray(fields_by_model[variant][l])
            if max_len:
                A = A[:max_len, :max_len]
            ax = axes[r, c]
            im = ax.imshow(np.sqrt(A), cmap="magma", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(f"layer {l + 1}", fontsize=9)
            if c == 0:
                ax.set_ylabel(f"{model_label(variant)}\nquery i", fontsize=8)
            if r == len(models) - 1:
                ax.set_xlabel("lag τ" if lag else "key j", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.6, label="√A (probability)")
    return fig


def plot_lag_profiles(profiles_by_model: dict, max_lag: int = 64, log: bool = True):
    """Mean lag profile per layer: one panel per model, one line per layer."""
    models = list(profiles_by_model)
    fig, axes = _subplots(1, len(models), figsize=(3.2 * len(models), 3.2), sharey=True, squeeze=False)
    for ax, variant in zip(axes[0], models):
        prof = np.asarray(profiles_by_model[variant])
        cmap = plt.get_cmap("viridis", len(prof))
        for l, p in enumerate(prof):
            ax.plot(np.arange(min(max_lag, len(p))), p[:max_lag], color=cmap(l), label=f"layer {l + 1}")
        ax.set(xlabel="lag τ (tokens)", title=model_label(variant))
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("mean attention at lag τ")
    axes[0, -1].legend(fontsize=7)
    return fig


def plot_morlet(scales, omega0: float = 5.0, n: int = 256):
    """The Morlet wavelet in time at three scales, and its Fourier-domain filters at every scale."""
    fig, (ax1, ax2) = _subplots(1, 2, figsize=(10, 3.4))
    t = np.arange(-n // 2, n // 2)
    for a in (2.0, 8.0, 32.0):
        psi = np.pi**-0.25 * np.exp(1j * omega0 * t / a - (t / a) ** 2 / 2) / np.sqrt(a)
        ax1.plot(t, psi.real, label=f"a = {a:g} (period {fourier_period(a):.1f})")
    ax1.set(xlim=(-80, 80), xlabel="t (tokens)", ylabel="Re ψ(t/a)/√a", title="Morlet wavelet, ω₀ = 5")
    ax1.legend(fontsize=8)
    m = padded_length(n)
    freq = np.fft.fftfreq(m)
    keep = (freq > 0) & (freq < 0.5)
    psi_hat = morlet_fourier(scales, m, omega0)
    cmap = plt.get_cmap("viridis", len(scales))
    for s, a in enumerate(scales):
        ax2.plot(1 / freq[keep], psi_hat[s, keep], color=cmap(s))
    for s in (0, len(scales) // 2, len(scales) - 1):
        ax2.axvline(fourier_period(scales[s]), color=cmap(s), ls=":", lw=1)
    ax2.set(xscale="log", xlabel="period (tokens)", ylabel="ψ̂_a(ω)", title="filters of the 20 scales (dotted: 1.2325·a)")
    return fig


def plot_scalogram_grid(analyses: dict, fluctuations: bool = False):
    """Fig. 1: ensemble scalograms log₁₀ S(a, τ)/max for each model (rows) and layer (columns).

    ``fluctuations=True`` draws the scalograms of the centred fields (what POD decomposes).
    """
    models = list(analyses)
    first = next(iter(analyses.values()))
    n_layer, _, T = first.scalogram.shape
    fig, axes = _subplots(len(models), n_layer, figsize=(1.8 * n_layer + 1, 1.7 * len(models) + 0.6),
                          sharex=True, sharey=True, squeeze=False)
    log_a = np.log2(first.scales)
    for r, variant in enumerate(models):
        res = analyses[variant]
        for l in range(n_layer):
            S = (res.fluctuation_scalogram if fluctuations else res.scalogram)[l]
            top = (res.fluctuation_dominant_index if fluctuations else res.dominant_index)[l, 0]
            ax = axes[r, l]
            im = ax.imshow(np.log10(S / S.max() + 1e-6), aspect="auto", origin="lower", cmap="viridis",
                           extent=[0, T, log_a[0], log_a[-1]], vmin=-4, vmax=0)
            ax.axhline(log_a[top], color="w", lw=0.8, ls="--")
            if r == 0:
                ax.set_title(f"layer {l + 1}", fontsize=9)
            if l == 0:
                ax.set_ylabel(f"{model_label(variant)}\nscale a (tokens)", fontsize=8)
            if r == len(models) - 1:
                ax.set_xlabel("lag τ (tokens)", fontsize=8)
    # the scale axis is log₂ a underneath; its ticks say the scale in tokens (2, 4, …, 64)
    powers = np.arange(np.ceil(log_a[0]), np.floor(log_a[-1]) + 1)
    axes[0, 0].set_yticks(powers, [f"{2 ** p:g}" for p in powers])
    fig.colorbar(im, ax=axes, shrink=0.7, label="log₁₀ S(a,τ)/max")
    return fig


def plot_lag_windows(T: int, scales, title: str = ""):
    """The Gaussian lag windows w_a(τ) = exp(−τ²/2a²) at the given scales."""
    fig, ax = _subplots(figsize=(6, 3))
    for a, w in zip(scales, gaussian_lag_window(T, scales)):
        ax.plot(np.arange(T), w, label=f"a* = {a:.1f}")
    ax.set(xlabel="lag τ = i − j (tokens)", ylabel="w(τ)", title=title)
    ax.legend()
    return fig


def plot_scale_energy(analyses: dict, fluctuations: bool = False, rectified: bool = False):
    """E(a) = Σ_τ S(a, τ) (or the rectified E(a)/a), normalised per layer: one panel per model, one line per layer."""
    models = list(analyses)
    fig, axes = _subplots(1, len(models), figsize=(3.2 * len(models), 3.2), sharey=True, squeeze=False)
    for ax, variant in zip(axes[0], models):
        res = analyses[variant]
        E = (res.fluctuation_scalogram if fluctuations else res.scalogram).sum(-1)
        if rectified:
            E = E / res.scales
        cmap = plt.get_cmap("viridis", len(E))
        for l, e in enumerate(E):
            ax.plot(res.scales, e / e.max(), "o-", ms=3, color=cmap(l), label=f"layer {l + 1}")
        ax.set(yscale="log", title=model_label(variant))
        _scale_axis(ax)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("(E(a)/a) / max" if rectified else "E(a) / max E")
    axes[0, -1].legend(fontsize=7)
    return fig


def plot_eigenvalue_spectra(analyses: dict, n: int = 60):
    """Energy fractions λ_k/Σλ at each layer's top dominant scale, log–log."""
    models = list(analyses)
    fig, axes = _subplots(1, len(models), figsize=(3.2 * len(models), 3.2), sharey=True, squeeze=False)
    for ax, variant in zip(axes[0], models):
        lam = analyses[variant].top_eigenvalues
        cmap = plt.get_cmap("viridis", len(lam))
        for l, e in enumerate(lam):
            frac = e / e.sum() if e.sum() > 0 else e
            k = np.arange(1, min(n, len(e)) + 1)
            ax.plot(k, frac[: len(k)], color=cmap(l), label=f"layer {l + 1}")
        ax.set(xscale="log", yscale="log", xlabel="mode k", title=model_label(variant))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("λ_k / Σλ (top scale)")
    axes[0, -1].legend(fontsize=7)
    return fig


def plot_pod_modes(result: FieldAnalysis, layers=(1, 3, 5), n_modes: int = 3, max_lag: int = 64, title: str = ""):
    """Fig. 2: lag profiles φ_k(τ) of the first modes at the top dominant scale, titled with energy fractions."""
    fig, axes = _subplots(len(layers), n_modes, figsize=(3.0 * n_modes, 2.2 * len(layers)), squeeze=False,
                          sharex=True)
    for r, l in enumerate(layers):
        a_idx = result.dominant_index[l, 0]
        lam = result.eigenvalues[l, a_idx]
        frac = lam / lam.sum() if lam.sum() > 0 else lam
        prof = mode_lag_profiles(result.modes[l, 0])
        for k in range(n_modes):
            ax = axes[r, k]
            if k < len(prof):
                p = prof[k, :max_lag]
                ax.plot(np.arange(len(p)), p, color=f"C{k}")
                ax.axvline(np.argmax(np.abs(p)), color="r", lw=0.8, ls=":")
            ax.axhline(0, color="k", lw=0.5)
            ax.set_title(f"layer {l + 1}, a* = {result.scales[a_idx]:.1f}: mode {k + 1} ({100 * frac[k]:.1f} %)", fontsize=8)
            if r == len(layers) - 1:
                ax.set_xlabel("lag τ (tokens)")
            if k == 0:
                ax.set_ylabel("φ_k(τ)")
    if title:
        fig.suptitle(title)
    return fig


def plot_theorem1(eigenvalues, errors, r_max: int = 40, label: str = ""):
    """Theorem 1: measured reconstruction error with r modes against the eigenvalue tail sum."""
    lam = np.asarray(eigenvalues)
    r = np.arange(len(errors))
    tail = np.array([lam[k:].sum() for k in r])
    fig, ax = _subplots(figsize=(5.5, 3.5))
    ax.plot(r, tail, "-", lw=3, alpha=0.4, label="Σ_{k>r} λ_k (tail sum)")
    ax.plot(r, errors, "k.", label="measured mean squared error")
    ax.set(xlabel="number of modes r", ylabel="error", yscale="log", title=f"Theorem 1 {label}".strip())
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def plot_power_law_fits(analyses: dict, k_fit: int = 30):
    """log λ_k against log k with the least-squares line behind 𝒯_spec = 1/β, every layer."""
    models = list(analyses)
    n_layer = next(iter(analyses.values())).dominant_index.shape[0]
    fig, axes = _subplots(len(models), n_layer, figsize=(1.9 * n_layer + 0.5, 1.8 * len(models) + 0.5),
                          sharex=True, squeeze=False)
    for r, variant in enumerate(models):
        lams = analyses[variant].top_eigenvalues
        for l in range(n_layer):
            ax = axes[r, l]
            lam = lams[l][:k_fit]
            k = np.arange(1, len(lam) + 1)
            ok = lam > 1e-12
            ax.loglog(k[ok], lam[ok], ".", ms=4, color=COLORS.get(variant))
            fit = power_law_fit(lams[l], k_fit)
            if fit.usable:
                ax.loglog(fit.k, np.exp(fit.intercept) * fit.k ** -fit.beta, "k-", lw=0.8)
                ax.set_title(f"L{l + 1}: β={fit.beta:.2f}", fontsize=8)
            else:
                ax.set_title(f"L{l + 1}: degenerate", fontsize=8)
            if l == 0:
                ax.set_ylabel(f"{model_label(variant)}\nλ_k", fontsize=8)
            if r == len(models) - 1:
                ax.set_xlabel("k", fontsize=8)
    return fig


def plot_rank_by_scale(analyses: dict, eps_index: int = 0):
    """H*(ε) at every scale, one line per layer, one panel per model."""
    models = list(analyses)
    fig, axes = _subplots(1, len(models), figsize=(3.2 * len(models), 3.2), sharey=True, squeeze=False)
    for ax, variant in zip(axes[0], models):
        res = analyses[variant]
        ranks = res.rank_by_scale[:, eps_index]
        cmap = plt.get_cmap("viridis", len(ranks))
        for l, h in enumerate(ranks):
            ax.plot(res.scales, h, "o-", ms=3, color=cmap(l), label=f"layer {l + 1}")
        ax.set(title=model_label(variant))
        _scale_axis(ax)
        ax.grid(alpha=0.3)
    eps = next(iter(analyses.values())).epsilons[eps_index]
    axes[0, 0].set_ylabel(f"H*(ε = {eps:g})")
    axes[0, -1].legend(fontsize=7)
    return fig


def causal_only(gamma) -> np.ma.MaskedArray:
    """γ[i, j] with the future keys j > i masked: a causal query gives them no attention, and whatever the
    wavelet's spread puts there is not a coherence between two attended keys."""
    gamma = np.asarray(gamma, dtype=float)
    return np.ma.masked_array(gamma, mask=np.triu(np.ones(gamma.shape, dtype=bool), k=1))


def plot_coherency(maps: dict, scale: float):
    """Fig. 3: cross-coherency γ_ij(a) maps; ``maps[(variant, layer)] = gamma``. The future keys (j > i)
    are masked, drawn in light grey, not painted with a coherence (:func:`causal_only`)."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad="#d9d9d9")
    keys = list(maps)
    variants = list(dict.fromkeys(v for v, _ in keys))
    layers = list(dict.fromkeys(l for _, l in keys))
    fig, axes = _subplots(len(variants), len(layers), figsize=(2.6 * len(layers) + 0.8, 2.5 * len(variants)),
                          squeeze=False)
    for r, v in enumerate(variants):
        for c, l in enumerate(layers):
            ax = axes[r, c]
            im = ax.imshow(causal_only(maps[(v, l)]), cmap=cmap, vmin=0, vmax=1, origin="upper")
            ax.set_title(f"{model_label(v)}, layer {l + 1}", fontsize=8)
            ax.set_xlabel("key j", fontsize=8)
            ax.set_ylabel("query i", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.7, label=f"|γ_ij(a = {scale:.1f})| (grey: future keys, masked)")
    return fig


def plot_budget_curves(results: dict, rules=None, xlabel: str = "heads kept", fewer_right: bool = True,
                       band_label: str = "random counts", unit: str = "char"):
    """Loss increase against the budget, one panel per model, one line per rule; random splits as a band.

    ``results[label]`` is a :class:`attnpod.experiments.pruning.PruningResult` or :class:`attnpod.experiments.kvcache.CacheResult`
    (``budgets``, ``rules``, ``increase(rule)``, ``random_losses``, ``baseline``); the band spans the
    5–95 % range of the random draws, the dashed line is their median. ``fewer_right``: the budget axis
    decreases to the right (pruning), else it is logarithmic and increasing.
    """
    labels = list(results)
    fig, axes = _subplots(1, len(labels), figsize=(3.6 * len(labels), 3.6), sharey=True, squeeze=False)
    for ax, label in zip(axes[0], labels):
        res = results[label]
        kept = res.budgets
        U = res.random_losses.shape[-1]  # the random draws may be scored on the first U windows only
        random_inc = (res.random_losses - res.baseline[:U]).mean(-1)  # (draws, K)
        lo, hi = np.percentile(random_inc, [5, 95], axis=0)
        ax.fill_between(kept, lo, hi, color="0.8", label=f"{band_label} (5–95 %)")
        ax.plot(kept, np.median(random_inc, axis=0), "--", color="0.4", lw=1, label=f"{band_label}, median")
        for i, rule in enumerate(rules or res.rules):
            if rule in res.rules:
                ax.plot(kept, res.increase(rule), "o-", ms=3, lw=1.2, color=f"C{i}", label=rule)
        ax.set(title=label, xlabel=xlabel)
        ax.set_yscale("symlog", linthresh=1e-2)
        if fewer_right:
            ax.invert_xaxis()
        else:
            ax.set_xscale("log", base=2)
            ax.set_xticks(kept, [str(b) for b in kept])
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"validation loss increase (nats / {unit})")
    axes[0, -1].legend(fontsize=7)
    return fig


def plot_permutation_null(results: dict, rule, uniform: str, xlabel: str = "heads kept", unit: str = "char"):
    """Does the analysis choose the right layers? Per budget, the loss increase of ``rule`` against every
    permutation of its own per-layer counts (grey dots) and against ``uniform`` (line); one panel per model.

    ``results[label]``: a :class:`attnpod.experiments.pruning.PruningResult` or :class:`attnpod.experiments.kvcache.CacheResult`
    whose permutation null of ``rule`` was run; ``rule`` may instead name each panel's rule, ``rule[label]``.
    """
    per_panel = isinstance(rule, dict)
    rule_of = rule.get if per_panel else (lambda label: rule)
    labels = [k for k, r in results.items() if r.null(rule_of(k)) is not None]
    fig, axes = _subplots(1, max(len(labels), 1), figsize=(3.6 * max(len(labels), 1), 3.4), squeeze=False)
    for ax, label in zip(axes[0], labels):
        res, rule = results[label], rule_of(label)
        U = res.null(rule).shape[-1]  # the null is scored on the first U windows: so is everything here

        def increase(losses):
            return (losses[..., :U] - res.baseline[:U]).mean(-1)

        null = increase(res.null(rule))  # (K, P), NaN rows where fewer orders exist
        positions = np.arange(len(res.budgets))
        for k in positions:
            values = null[k][~np.isnan(null[k])]
            jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(len(values))
            ax.plot(k + jitter, values, "o", ms=2.5, color="0.6", label="its counts, permuted" if k == 0 else None)
        ax.plot(positions, increase(res.loss(uniform)), "-", color="k", lw=1, label=uniform)
        ax.plot(positions, increase(res.loss(rule)), "D", ms=5, color="C3", label=rule)
        ax.set_xticks(positions, [str(b) for b in res.budgets])  # in the experiment's order of budgets
        ax.set(title=label, xlabel=xlabel)  # a linear axis per model: the null is read against its own rule
        ax.grid(alpha=0.3)
        if ax is axes[0, -1] or per_panel:
            ax.legend(fontsize=7)  # one legend, or one per panel where each panel has its own rule
    axes[0, 0].set_ylabel(f"loss increase (nats / {unit})")
    return fig


def plot_sinks(sinks: dict, uniform: float):
    """Attention on token 0 per layer, one bar group per model; the line is what uniform causal attention gives."""
    labels = list(sinks)
    n_layer = len(next(iter(sinks.values())))
    fig, ax = _subplots(figsize=(6 if n_layer <= 8 else 8, 3))
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        ax.bar(np.arange(n_layer) + i * width, sinks[label], width, label=label)
    ax.axhline(uniform, color="k", ls="--", lw=1, label="uniform attention")
    names = [f"layer {l + 1}" for l in range(n_layer)] if n_layer <= 8 else [str(l + 1) for l in range(n_layer)]
    ax.set(xticks=np.arange(n_layer) + 0.4 - width / 2, xticklabels=names, ylabel="attention on token 0",
           yscale="log", xlabel="" if n_layer <= 8 else "layer")
    ax.legend(fontsize=7)
    return fig


def plot_rank_against_n(sizes, means, ratios, noise, line: float = 1.5):
    """H*(0.1) per layer against the ensemble size (``means[s, l]``; darker lines deeper layers) with the white-noise
    ceiling ``noise[s]`` dashed, and the max/min ratio across layers ``ratios[s]`` with the claim's ``line``."""
    fig, axes = _subplots(1, 2, figsize=(8, 3.2))
    colours = plt.cm.viridis(np.linspace(0.9, 0.1, means.shape[1]))
    for l in range(means.shape[1]):
        axes[0].plot(sizes, means[:, l], "-", color=colours[l], lw=1)
    axes[0].plot(sizes, noise, "k--", lw=1, label="white noise")
    axes[0].set(xscale="log", yscale="log", xlabel="ensemble size N", ylabel="H*(0.1)", title="every layer")
    axes[0].legend(fontsize=7)
    axes[1].plot(sizes, ratios, "o-", color="C3")
    axes[1].axhline(line, color="k", ls=":", lw=1, label=f"the claim's line, {line:g}")
    axes[1].set(xscale="log", xlabel="ensemble size N", ylabel="max / min H*(0.1) across layers", title="the ratio")
    axes[1].legend(fontsize=7)
    ticks = [t for t in (10, 20, 50, 100, 200, 500, 1000) if means.min() / 1.5 <= t <= max(means.max(), noise.max()) * 1.5]
    axes[0].set_yticks(ticks, [str(t) for t in ticks])
    for ax in axes:
        ax.minorticks_off()
        ax.set_xticks(sizes, [str(int(n)) for n in sizes])
        ax.grid(alpha=0.3)
    return fig


def plot_head_maps(rank, importance, title: str = ""):
    """Per-head effective rank H*(0.10) next to per-head importance, layers (rows) by heads (columns)."""
    fig, axes = _subplots(1, 2, figsize=(8, 3.4))
    for ax, values, name, cmap in ((axes[0], rank, "per-head H*(0.10)", "viridis"),
                                   (axes[1], importance, "importance (Michel, per layer ℓ2)", "magma")):
        im = ax.imshow(values, cmap=cmap, aspect="auto")
        ax.set(title=name, xlabel="head", ylabel="layer", xticks=range(values.shape[1]), yticks=range(values.shape[0]),
               yticklabels=[str(l + 1) for l in range(values.shape[0])])
        ax.title.set_fontsize(9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


# From Okabe & Ito's palette: agree (sky blue) and disagree (vermilion) stay far apart under protanopia,
# deuteranopia and tritanopia, where red against green does not; each cell also says its word
VERDICT_COLOURS = {"agree": "#56B4E9", "partly": "#F0E442", "disagree": "#D55E00", "seed-dependent": "#CC79A7"}
OTHER_VERDICT = "#d9d9d9"  # any other word (not applicable, void, …)


def plot_verdict_grid(verdicts):
    """The verdict matrix as a picture: readings (rows) by claims (columns), each cell coloured by its
    verdict (agree, partly, disagree, seed-dependent; grey for any other reading) and labelled with it.

    ``verdicts``: a DataFrame of verdict strings, claims (rows) by readings (columns), as
    :func:`attnpod.claims.verdict_matrix` returns it.
    """
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    grid = verdicts.T  # readings (rows) by claims (columns)
    # the verdict's word: "agree (97% of resamples)", "agree in 5 of 5 seeds", "seed-dependent: agree in 3 ..."
    words = [[str(v).split(" (")[0].split(":")[0].split(" in ")[0] for v in row] for row in grid.values]
    colours = np.array([[to_rgb(VERDICT_COLOURS.get(w, OTHER_VERDICT)) for w in row] for row in words])
    lines = max(str(t).count(";") + str(t).count(" (") + 1 for t in grid.values.ravel())
    fig, ax = _subplots(figsize=(1.9 * grid.shape[1] + 3.5, (0.3 + 0.17 * lines) * grid.shape[0] + 1.8))
    ax.imshow(colours, aspect="auto")
    for r, row in enumerate(grid.values):
        for c, text in enumerate(row):
            ax.text(c, r, "\n".join(_wrap(part, 26) for part in str(text).replace(" (", "\n(").split("; ")),
                    ha="center", va="center", fontsize=6.5)
    ax.set_xticks(range(grid.shape[1]), [_wrap(str(c).replace("𝒯", "T"), 22) for c in grid.columns],
                  fontsize=7)  # matplotlib's fonts have no 𝒯
    ax.set_yticks(range(grid.shape[0]), grid.index, fontsize=7)
    ax.xaxis.tick_top()
    ax.legend(handles=[Patch(color=c, label=w) for w, c in VERDICT_COLOURS.items()]
              + [Patch(color=OTHER_VERDICT, label="other")], loc="upper center", bbox_to_anchor=(0.5, -0.02),
              ncol=5, fontsize=7, frameon=False)
    return fig


def plot_seed_spread(measurements, statistics=None):
    """The spread over training seeds of per-layer numbers: one panel per statistic, layers along x, one
    dot per seed for each model (side by side) and a bar at the mean; the top scales on a log axis with
    the scale claim's thresholds (a = 7 and 20) dotted.

    ``measurements``: the long table of :func:`attnpod.book.seed_measurements` (columns statistic,
    model, layer, seed, value).
    """
    statistics = list(statistics or dict.fromkeys(measurements["statistic"]))
    models = list(dict.fromkeys(measurements["model"]))
    ncols = min(4, len(statistics))
    nrows = -(-len(statistics) // ncols)
    fig, axes = _subplots(nrows, ncols, figsize=(3.4 * ncols, 2.8 * nrows), squeeze=False)
    width = 0.7 / max(len(models), 1)
    for ax, name in zip(axes.ravel(), statistics):
        part = measurements[measurements["statistic"] == name]
        for m, model in enumerate(models):
            rows = part[part["model"] == model]
            for layer, group in rows.groupby("layer"):
                x = layer + (m - (len(models) - 1) / 2) * width
                ax.plot(np.full(len(group), x), group["value"], "o", ms=3, alpha=0.7, color=f"C{m}",
                        label=model if layer == rows["layer"].min() else None)
                ax.plot([x - width / 2, x + width / 2], [group["value"].mean()] * 2, "-", color=f"C{m}", lw=1.5)
        if name.startswith("top scale"):
            from matplotlib.ticker import NullFormatter

            ax.set_yscale("log")
            lo, hi = part["value"].min(), part["value"].max()
            ax.set_ylim(min(lo, FINE) / 1.3, max(hi, COARSE) * 1.3)  # both thresholds always in view
            ax.set_yticks([t for t in (1, 2, 3, 5, 7, 10, 20, 30, 50, 100, 200, 500)
                           if min(lo, FINE) / 1.3 <= t <= max(hi, COARSE) * 1.3])
            ax.yaxis.set_major_formatter("{x:g}")
            ax.yaxis.set_minor_formatter(NullFormatter())
            for level in (FINE, COARSE):  # the claim's "fine" and "coarse" thresholds
                ax.axhline(level, color="0.5", lw=0.8, ls=":")
        ax.set(title=name.replace("𝒯", "T"), xlabel="layer")  # matplotlib's fonts have no 𝒯
        ax.set_xticks(sorted(part["layer"].unique()))
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(statistics):]:
        ax.axis("off")
    seeds = sorted(measurements["seed"].unique())
    axes[0, 0].legend(fontsize=6, title=f"seeds {', '.join(map(str, seeds))}", title_fontsize=6)
    return fig


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(str(text), width))


def plot_layer_panels(table, panels: dict, log_scales: bool = True):
    """Per-layer numbers of one model, one panel per entry of ``panels`` ({title: [columns of table]}),
    layers along x; a panel of top scales is on a log axis with the scale claim's thresholds (a = 7, 20)."""
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = _subplots(nrows, ncols, figsize=(4.2 * ncols, 2.9 * nrows), squeeze=False)
    layers = np.asarray(table.index)
    for ax, (title, columns) in zip(axes.ravel(), panels.items()):
        for k, column in enumerate(columns):
            ax.plot(layers, table[column], "o-", ms=3, lw=1, color=f"C{k}",
                    label=column.replace("top scale, ", "").replace("𝒯", "T"))
        if log_scales and title.startswith("top scale"):
            ax.set_yscale("log")
            for level in (FINE, COARSE):
                ax.axhline(level, color="0.5", lw=0.8, ls=":")
        ax.set(title=title.replace("𝒯", "T"), xlabel="layer")
        ax.grid(alpha=0.3)
        if len(columns) > 1:
            ax.legend(fontsize=7)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    return fig


def plot_scale_map(scalogram, scales, title: str = ""):
    """Each layer's scale energy (rows: layers, columns: scales), normalised to its largest value, and
    each layer's top scale marked."""
    energy = scale_energy(np.asarray(scalogram, dtype=float))  # (L, scales): E(a), as the dominant scales use
    energy = energy / np.maximum(energy.max(-1, keepdims=True), 1e-300)
    fig, ax = _subplots(figsize=(6.5, 0.18 * len(energy) + 1.5))
    im = ax.imshow(energy, aspect="auto", origin="lower", cmap="viridis",
                   extent=(-0.5, len(scales) - 0.5, 0.5, len(energy) + 0.5))
    ax.plot(energy.argmax(-1), np.arange(1, len(energy) + 1), "w.", ms=5)
    ticks = np.arange(0, len(scales), max(1, len(scales) // 8))
    ax.set_xticks(ticks, [f"{scales[t]:.3g}" for t in ticks])
    ax.set(xlabel="scale a", ylabel="layer", title=title)
    fig.colorbar(im, ax=ax, label="energy / its largest")
    return fig


def plot_recovery(recovery, labels: dict):
    """The bench as pictures: left, the share of draws in which each reading (column) recovers each planted
    case (row: case, noise η, N), white 0 to dark 1; right, what each reading says of the windows case's three
    layers (no noise, the largest N) against the planted widths.

    ``recovery``: :class:`attnpod.bench.Recovery`; ``labels``: reading key -> display text."""
    import pandas as pd

    frame = pd.DataFrame(recovery.rows)
    share = frame.groupby(["case", "noise", "N", "reading"], sort=False)["recovered"].mean().unstack("reading")
    share = share[[r for r in labels if r in share.columns]]
    fig, (ax, bx) = _subplots(1, 2, figsize=(11, 0.22 * len(share) + 2.6), width_ratios=[1.4, 1])
    ax.imshow(share.to_numpy(float), aspect="auto", cmap="Greens", vmin=0, vmax=1)
    ax.set_xticks(range(share.shape[1]), [_wrap(labels[r], 18) for r in share.columns], fontsize=7, rotation=90)
    ax.set_yticks(range(len(share)), [f"{c}, η = {n:g}, N = {m}" for c, n, m in share.index], fontsize=7)
    ax.set_title("share of draws recovering the planted answer", fontsize=9)
    sizes = sorted(frame["N"].unique())
    widths = None
    for r in share.columns:
        values, widths = recovery.example("windows", 0.0, sizes[-1], r)
        bx.plot(range(len(values)), values, "o-", label=_wrap(labels[r], 30))
    bx.plot(range(len(widths)), widths, "k--", lw=2, label="planted width W")
    bx.set_xticks(range(len(widths)), [f"W = {w:g}" if w < recovery.T else "whole past" for w in widths])
    bx.set_yscale("log")
    bx.set_ylabel("what the reading says (tokens)")
    bx.set_title(f"sliding windows against the whole past (T = {recovery.T})", fontsize=9)
    bx.legend(fontsize=6, loc="upper left")
    return fig
