"""The paper's claims as functions: a measurement, a criterion stated with its threshold, a verdict.

Each function takes the numbers a chapter measured (per layer, per model, and
where they exist their bootstrap replicates ``[..., b]`` or seeds) and returns a
:class:`Verdict`. With replicates, the verdict is also computed on every replicate
and ``stability`` is the share that agrees with the full-sample verdict; the
measurement carries a 95 % percentile interval. The thresholds are module
constants, each with the reason it has the value it has (see also the method page).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The paper's own numbers: "fine (a ≤ 7 tokens)", "coarse (a ≥ 20 tokens)".
FINE, COARSE = 7.0, 20.0
# "Early" and "later" layers: the paper names no split; we take the first two and the last two of six.
N_EDGE_LAYERS = 2
# A layer index "separates layers" if it varies at least this much more across layers than across models.
SEPARATION_FACTOR = 2.0
# "Near-degenerate": a first POD mode with at least half the energy (or too few eigenvalues to fit).
DEGENERATE_SHARE = 0.5
# "Non-uniform" ranks: the largest layer needs at least 1.5× the modes of the smallest, in every model.
NONUNIFORM_RATIO = 1.5
# Theorem 1 is an identity; float64 sums over ≤ 1000 terms agree to ~1e-13, so 1e-8 is failure, not rounding.
THEOREM_TOL = 1e-8
# A gate "leaks" if past logits move by more than 100× float32 rounding of logits (≈1e-6).
LEAK_TOL = 1e-4
# The published lag reading "selects nothing" if eigenvalues agree across scales to float rounding.
SCALE_SPREAD_TOL = 1e-6
# CONV-L4 "equals BASE" if interior attention agrees to float32 rounding of probabilities.
CONV_TOL = 1e-5
LEVEL = 0.95


@dataclass(frozen=True)
class Verdict:
    """One claim under one reading: what was measured, the rule, the verdict, and how stable it is."""

    claim: str
    measurement: str
    criterion: str
    verdict: str
    stability: float | None = None  # share of bootstrap replicates (or seeds) with the same verdict

    def __str__(self) -> str:
        if self.stability is None:
            return self.verdict
        return f"{self.verdict} ({self.stability:.0%} of resamples)"


def interval(samples, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` percentile interval of ``samples`` along the last axis."""
    lo, hi = np.nanpercentile(np.asarray(samples, dtype=float), [50 * (1 - level), 50 * (1 + level)], axis=-1)
    return lo, hi


def _stability(verdict: str, replicate_verdicts) -> float | None:
    replicate_verdicts = list(replicate_verdicts)
    return None if not replicate_verdicts else float(np.mean([v == verdict for v in replicate_verdicts]))


def _agreement(early_hits: np.ndarray, late_hits: np.ndarray) -> str:
    if early_hits.all() and late_hits.all():
        return "agree"
    if not early_hits.any() or not late_hits.any():
        return "disagree"
    return "partly"


def scale_contrast(top_scales, boot=None, reading: str = "ours") -> Verdict:
    """Early layers fine (a ≤ 7), later layers coarse (a ≥ 20).

    ``top_scales[m, l]``: each model's top dominant scale per layer; ``boot[m, l, b]`` its
    bootstrap replicates. Agree if every (model, early layer) is fine and every (model,
    late layer) coarse; disagree if no early pair is fine or no late pair coarse; else partly.
    """
    top = np.asarray(top_scales, dtype=float)
    early, late = slice(0, N_EDGE_LAYERS), slice(top.shape[1] - N_EDGE_LAYERS, top.shape[1])

    def judge(t):
        return _agreement(t[:, early] <= FINE, t[:, late] >= COARSE)

    verdict = judge(top)
    n_early, n_late = top[:, early].size, top[:, late].size
    text = f"fine early {int((top[:, early] <= FINE).sum())}/{n_early}, coarse late {int((top[:, late] >= COARSE).sum())}/{n_late}"
    replicates = []
    if boot is not None:
        boot = np.asarray(boot, dtype=float)
        replicates = [judge(boot[..., b]) for b in range(boot.shape[-1])]
        fine = (boot[:, early] <= FINE).sum(axis=(0, 1))
        coarse = (boot[:, late] >= COARSE).sum(axis=(0, 1))
        (f0, f1), (c0, c1) = interval(fine), interval(coarse)
        text += f" (95 % CI {f0:.0f}–{f1:.0f} and {c0:.0f}–{c1:.0f})"
    return Verdict(f"early layers fine (a ≤ {FINE:g}), later layers coarse (a ≥ {COARSE:g}) [{reading}]", text,
                   f"every (model, layer 1–{N_EDGE_LAYERS}) top scale ≤ {FINE:g} and every (model, last "
                   f"{N_EDGE_LAYERS} layers) top scale ≥ {COARSE:g}: agree; none of either: disagree; else partly",
                   verdict, _stability(verdict, replicates))


def theorem1(errors, tails) -> Verdict:
    """Theorem 1: the mean squared error of the best rank-r reconstruction equals Σ_{k>r} λ_k."""
    errors, tails = np.asarray(errors, dtype=float), np.asarray(tails, dtype=float)
    gap = float(np.max(np.abs(errors - tails)) / tails[0])
    return Verdict("Theorem 1: the error left by r modes is the tail sum", f"largest gap {gap:.1e} of the energy",
                   f"gap < {THEOREM_TOL:g} of the total energy", "holds" if gap < THEOREM_TOL else "fails")


def index_separates_layers(index, boot=None) -> Verdict:
    """𝒯_spec separates layers: spread across layers ≥ 2× spread across models.

    ``index[l, m]``; ``boot[l, m, b]``. Spreads are mean standard deviations (NaN, a
    degenerate spectrum, ignored).
    """
    def spreads(x):
        return np.nanmean(np.nanstd(x, axis=0)), np.nanmean(np.nanstd(x, axis=1))

    def judge(x):
        layers, models = spreads(x)
        return "yes" if layers >= SEPARATION_FACTOR * models else "not clearly"

    index = np.asarray(index, dtype=float)
    layers, models = spreads(index)
    text = f"spread across layers {layers:.3f}, across models {models:.3f}"
    replicates = []
    if boot is not None:
        boot = np.asarray(boot, dtype=float)
        ratio = [np.divide(*spreads(boot[..., b])) for b in range(boot.shape[-1])]
        lo, hi = interval(ratio)
        text += f"; ratio {layers / models:.2f} (95 % CI {lo:.2f}–{hi:.2f})"
        replicates = [judge(boot[..., b]) for b in range(boot.shape[-1])]
    verdict = judge(index)
    return Verdict("𝒯_spec separates layers by complexity", text,
                   f"spread across layers ≥ {SEPARATION_FACTOR:g}× spread across models", verdict,
                   _stability(verdict, replicates))


def layer1_degenerate(first_share, degenerate=None, boot=None) -> Verdict:
    """Layer 1 has a near-degenerate spectrum: its first mode holds ≥ 50 % of the energy, or no fit exists.

    ``first_share[l, m]`` (λ₁/Σλ at the top scale); ``degenerate[l, m]`` True where 𝒯_spec could
    not be fitted; ``boot[l, m, b]`` replicates of the share.
    """
    share = np.asarray(first_share, dtype=float)
    flags = np.zeros(share.shape, dtype=bool) if degenerate is None else np.asarray(degenerate, dtype=bool)

    def judge(s):
        return "agree" if flags[0].any() or (s[0] >= DEGENERATE_SHARE).any() else "disagree"

    verdict = judge(share)
    text = f"layer 1 first-mode share {share[0].mean():.1%}, other layers {share[1:].mean():.1%}"
    replicates = []
    if boot is not None:
        boot = np.asarray(boot, dtype=float)
        lo, hi = interval(boot[0].mean(0))
        text += f" (95 % CI {lo:.1%}–{hi:.1%})"
        replicates = [judge(boot[..., b]) for b in range(boot.shape[-1])]
    return Verdict("layer 1 has a near-degenerate spectrum", text,
                   f"some model's layer 1 has λ₁/Σλ ≥ {DEGENERATE_SHARE:.0%} or too few eigenvalues to fit",
                   verdict, _stability(verdict, replicates))


def ega_raises_energy(energy_base, energy_ega, boot_base=None, boot_ega=None) -> Verdict:
    """EGA raises spectral energy across layers: Σλ at the top scale, EGA-1 > BASE in every layer.

    With paired replicates (the same resamples of the same windows for both models), a
    layer counts as raised only if the 95 % interval of the difference lies above 0.
    """
    base, ega = np.asarray(energy_base, dtype=float), np.asarray(energy_ega, dtype=float)
    raised = ega > base
    text = f"EGA-1 above BASE in {int(raised.sum())} of {len(base)} layers"
    if boot_base is not None and boot_ega is not None:
        lo, _ = interval(np.asarray(boot_ega) - np.asarray(boot_base))
        raised = lo > 0
        text += f"; with the 95 % interval above 0 in {int(raised.sum())}"
    verdict = "agree" if raised.all() else "disagree" if not raised.any() else "partly"
    return Verdict("EGA raises spectral energy across layers", text,
                   "EGA-1's total windowed variance above BASE's in every layer (interval excluding 0 where "
                   "resamples exist): agree; in none: disagree; else partly", verdict)


def ranks_non_uniform(ranks, boot=None) -> Verdict:
    """Effective ranks differ across layers: max/min H*(0.10) ≥ 1.5 in every model.

    ``ranks[m, l]``; ``boot[m, l, b]``.
    """
    def ratios(r):
        r = np.asarray(r, dtype=float)
        return r.max(axis=1) / np.maximum(r.min(axis=1), 1)

    def judge(r):
        q = ratios(r)
        return "agree" if (q >= NONUNIFORM_RATIO).all() else "partly" if (q >= NONUNIFORM_RATIO).any() else "disagree"

    ranks = np.asarray(ranks)
    q = ratios(ranks)
    text = f"max/min H*(0.10) per model {q.min():.1f}–{q.max():.1f}"
    replicates = []
    if boot is not None:
        boot = np.asarray(boot)
        replicates = [judge(boot[..., b]) for b in range(boot.shape[-1])]
        lo, _ = interval(np.stack([ratios(boot[..., b]) for b in range(boot.shape[-1])], axis=-1).min(0))
        text += f" (95 % CI lower end of the smallest: {lo:.1f})"
    verdict = judge(ranks)
    return Verdict("effective ranks are non-uniform across layers", text,
                   f"max/min H*(0.10) ≥ {NONUNIFORM_RATIO:g} in every model: agree; in some: partly; none: disagree",
                   verdict, _stability(verdict, replicates))


def ega_gain_kept(val_base: float, val_ega: float, val_causal: float) -> Verdict:
    """How much of EGA-1's validation gain over BASE a causal gate keeps (the rest came from the future)."""
    gain, causal = val_ega - val_base, val_causal - val_base
    if gain >= 0:
        return Verdict("EGA-1 improves on BASE", f"EGA-1 − BASE {gain:+.4f}", "EGA-1 − BASE < 0", "no gain to explain")
    return Verdict("EGA-1 improves on BASE", f"published gate {gain:+.4f}, causal gate {causal:+.4f}",
                   "share of the gain a causal gate keeps", f"causal gate keeps {causal / gain:.0%} of the gain")


def gate_leaks(max_logit_change: float) -> Verdict:
    """EGA's published gate is causal: past logits must not move when only future tokens change."""
    return Verdict("EGA's published gate is causal", f"past logits move by up to {max_logit_change:.3g}",
                   f"a move above {LEAK_TOL:g} (100× float32 rounding) is a leak",
                   "leaks" if max_logit_change > LEAK_TOL else "causal")


def published_selects_scales(spread: float) -> Verdict:
    """The published lag reading's scale-selective POD selects scales: eigenvalues must differ across scales."""
    return Verdict("scale-selective POD selects scales (published lag reading)",
                   f"eigenvalues differ across scales by {spread:.1e} of λ₁",
                   f"a spread below {SCALE_SPREAD_TOL:g} (float rounding) means nothing is selected",
                   "void on causal models" if spread < SCALE_SPREAD_TOL else "scale-dependent")


def conv_equals_base(interior_difference: float) -> Verdict:
    """CONV-L4 equals BASE away from the edges: with BASE's weights, interior attention must agree."""
    return Verdict("CONV-L4 equals BASE away from the edges",
                   f"layer-1 interior probabilities differ by {interior_difference:.1e}",
                   f"agreement to {CONV_TOL:g} (float32 rounding of probabilities)",
                   "equal" if interior_difference <= CONV_TOL else "equal logits, different attention")


# ----------------------------------------------------------------------------- one verdict per claim and reading

READINGS = {
    "tc": "Torrence–Compo power, raw fields",
    "rectified": "rectified power E(a)/a, raw fields",
    "tc_fluct": "Torrence–Compo power, fluctuations",
    "rectified_fluct": "rectified power, fluctuations",
    "published": "published pipeline (A[b, b+s], its POD)",
}


def top_scale_indices(result, reading: str) -> np.ndarray:
    """Each layer's top dominant scale index under ``reading`` (a key of :data:`READINGS`): (L,)."""
    from .wavelet import dominant_scale_indices, rectified_dominant_scale_indices

    S = {"tc": result.scalogram, "rectified": result.scalogram, "tc_fluct": result.fluctuation_scalogram,
         "rectified_fluct": result.fluctuation_scalogram, "published": result.published_scalogram}[reading]
    if reading.startswith("rectified"):
        return np.array([rectified_dominant_scale_indices(s, result.scales, 1)[0] for s in S])
    return np.array([dominant_scale_indices(s, 1)[0] for s in S])


def reading_verdicts(analyses: dict, reading: str = "tc", ega: str = "ega1", base: str = "base") -> dict[str, Verdict]:
    """The paper's scale and spectrum claims under one reading, from the analyses of several models.

    The POD numbers (𝒯_spec, λ₁ share, Σλ, H*(0.10)) are taken at each layer's top scale
    under that reading. Bootstrap replicates enter where they exist: the top scale under
    every reading, and the POD numbers where the resampled eigenvalues lie at the reading's
    top scale (Torrence–Compo power; the published pipeline, given the analyses made with
    ``orientation="published"``, whose top scale is the published one).
    """
    from .analysis import bootstrap_statistics
    from .pod import effective_rank, spectral_concentration

    models = list(analyses)
    published = all(r.orientation == "published" for r in analyses.values())
    if reading == "published" and not published:
        raise ValueError("the published reading needs the analyses made with orientation='published'")
    tops = {m: top_scale_indices(r, reading) for m, r in analyses.items()}
    lam = {m: r.eigenvalues[np.arange(len(tops[m])), tops[m]] for m, r in analyses.items()}  # (L, N)
    boot = {m: bootstrap_statistics(r) for m, r in analyses.items()}
    key = {"tc": "top_scale", "rectified": "rectified_top_scale", "tc_fluct": "fluctuation_top_scale",
           "rectified_fluct": "rectified_fluctuation_top_scale", "published": "top_scale"}[reading]
    pod_boot = reading in ("tc", "published")

    def stack(f):
        return np.array([f(m) for m in models])

    top_scales = stack(lambda m: analyses[m].scales[tops[m]])  # (M, L)
    index = stack(lambda m: [spectral_concentration(x) for x in lam[m]]).T  # (L, M)
    share = stack(lambda m: lam[m][:, 0] / np.maximum(lam[m].sum(-1), 1e-300)).T
    ranks = stack(lambda m: [effective_rank(x, 0.10) for x in lam[m]])
    out = {
        "scale": scale_contrast(top_scales, stack(lambda m: boot[m][key]), READINGS[reading]),
        "separates": index_separates_layers(index, np.stack([boot[m]["spectral_concentration"] for m in models], 1)
                                            if pod_boot else None),
        "layer1": layer1_degenerate(share, np.isnan(index), np.stack([boot[m]["first_share"] for m in models], 1)
                                    if pod_boot else None),
        "ranks": ranks_non_uniform(ranks, stack(lambda m: boot[m]["effective_rank"][:, 0]) if pod_boot else None),
    }
    if ega in analyses and base in analyses:
        energy = {m: lam[m].sum(-1) for m in (base, ega)}
        out["ega_energy"] = ega_raises_energy(energy[base], energy[ega],
                                              boot[base]["energy"] if pod_boot else None,
                                              boot[ega]["energy"] if pod_boot else None)
    return out


CLAIM_ROWS = {"scale": "early layers fine (a ≤ 7), later layers coarse (a ≥ 20)",
              "separates": "𝒯_spec separates layers",
              "layer1": "layer 1 near-degenerate",
              "ega_energy": "EGA raises spectral energy",
              "ranks": "effective ranks non-uniform"}


def verdict_matrix(columns: dict[str, dict[str, Verdict]]):
    """Claims (rows) by readings (columns): the verdict, with its bootstrap stability; and the measurements.

    ``columns[name][claim]`` as returned by :func:`reading_verdicts`. Returns two DataFrames.
    """
    import pandas as pd

    verdicts = pd.DataFrame({name: {CLAIM_ROWS[k]: str(v) for k, v in col.items()} for name, col in columns.items()})
    measurements = pd.DataFrame({name: {CLAIM_ROWS[k]: v.measurement for k, v in col.items()}
                                 for name, col in columns.items()})
    order = [CLAIM_ROWS[k] for k in CLAIM_ROWS if CLAIM_ROWS[k] in verdicts.index]
    return verdicts.loc[order], measurements.loc[order]


def with_intervals(values, boot, fmt: str = "{:.3f}", index=None, columns=None, na: str = "degenerate"):
    """A table of ``value [lo, hi]`` strings: ``values[r, c]`` with the 95 % interval of ``boot[r, c, b]``."""
    import pandas as pd

    values = np.asarray(values, dtype=float)
    lo, hi = interval(boot)
    cells = [[na if np.isnan(v) else f"{fmt.format(v)} [{fmt.format(a)}, {fmt.format(b)}]"
              for v, a, b in zip(*row)] for row in zip(values, lo, hi)]
    return pd.DataFrame(cells, index=index, columns=columns)


# ----------------------------------------------------------------------------- head allocation (beyond the paper)

def paired_interval(differences, n_boot: int = 2000, seed: int = 0, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean of paired per-batch differences ``d[b]`` and its bootstrap interval over batches."""
    d = np.asarray(differences, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))
    lo, hi = interval(d[idx].mean(-1), level)
    return float(d.mean()), float(lo), float(hi)


def rank_correlation(a, b) -> float:
    """Spearman's ρ: the Pearson correlation of the ranks (ties share their mean rank)."""
    import pandas as pd

    ra, rb = (pd.Series(np.asarray(x, dtype=float)).rank().to_numpy() for x in (a, b))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def allocation_guides(losses, uniform, random_median, budgets, rule: str = "∝ H*",
                      what: str = "head allocation") -> Verdict:
    """An allocation rule guides a budget (heads, or KV cache) if, at most budgets, it loses less than a
    uniform split and than the random-split median, with both paired intervals (over evaluation
    batches or windows) below 0.

    ``losses[k, b]``, ``uniform[k, b]``, ``random_median[k, b]``: loss per budget k and batch b.
    """
    better = []
    for k in range(len(budgets)):
        _, _, hi_u = paired_interval(np.asarray(losses[k]) - uniform[k], seed=k)
        _, _, hi_r = paired_interval(np.asarray(losses[k]) - random_median[k], seed=100 + k)
        better.append(hi_u < 0 and hi_r < 0)
    n = int(np.sum(better))
    verdict = "holds" if n > len(budgets) / 2 else "does not hold"
    return Verdict(f"{rule} guides {what}", f"better than uniform and the random median at {n} of "
                   f"{len(budgets)} budgets ({', '.join(str(b) for b, ok in zip(budgets, better) if ok) or 'none'})",
                   "at more than half the budgets: loss below uniform's and below the random median, both paired "
                   "95 % intervals excluding 0", verdict)


def across_models(verdicts) -> str:
    """The book-level reading of one rule's verdicts on several models: "holds" on more than half of them,
    else "does not hold", with the count, e.g. "does not hold (1 of 4 models)"."""
    n_hold = sum(v.verdict == "holds" for v in verdicts)
    return f"{'holds' if n_hold > len(verdicts) / 2 else 'does not hold'} ({n_hold} of {len(verdicts)} models)"
