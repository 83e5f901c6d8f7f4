"""The paper's claims as functions: a measurement, a criterion stated with its threshold, a verdict.

Each function takes the numbers a chapter measured (per layer, per model, and
where they exist their replicates ``[..., b]``) and returns a :class:`Verdict`.
Replicates are bootstrap resamples of the snapshots for means over snapshots (scale
energies, Σλ), and half-ensembles for the shape of a spectrum (H*(ε), 𝒯_spec,
λ₁/Σλ), whose intervals speak of an ensemble of N/2 (:func:`half_interval`). With
replicates, the verdict is also computed on every replicate and ``stability`` is the
share that agrees with the full-sample verdict. The thresholds are module constants,
each with the reason it has the value it has (see also the method page).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from .estimators import (LEVEL, Halves, _bootstrap_means, between_within, correlation_p_value, interval,
                         rank_correlation, replicate_interval, stack_halves)
from .readings import READINGS, layer_values, shape_halves, top_scale_indices
from .readings import replicates as reading_replicates

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
# Layers "differ" at a fixed N when the permutation p-value of their between- against within-layer F is below this.
DIFFER_P = 0.05
# Theorem 1 is an identity; float64 sums over ≤ 1000 terms agree to ~1e-13, so 1e-8 is failure, not rounding.
THEOREM_TOL = 1e-8
# A gate "leaks" if past logits move by more than 100× float32 rounding of logits (≈1e-6).
LEAK_TOL = 1e-4
# The published lag reading "selects nothing" if eigenvalues agree across scales to float rounding.
SCALE_SPREAD_TOL = 1e-6
# CONV-L4 "equals BASE" if interior attention agrees to float32 rounding of probabilities.
CONV_TOL = 1e-5
# The cache's mask simulation "matches" a literal cached decode if logits agree to 100× float32 rounding.
SIMULATION_TOL = 1e-4
# A shipped experiment "reproduces" if the same weights on the same windows give the same losses to
# within 1e-3 nats: float32 rounding across CPUs moves a mean loss by ~1e-6; a different mask, split or
# window moves it by 1e-2 or more.
REPRODUCE_TOL = 1e-3
# A loss difference nobody would act on, in nats per token (character): 0.02 nats is a 2 % change in
# perplexity, a third of EGA-1's gain over BASE at the laptop profile and far below what separates the
# selection rules of the cache. Allocation rules within ±EQUIVALENCE_MARGIN of uniform are "equivalent".
EQUIVALENCE_MARGIN = 0.02
# An allocation rule is "informative" if it beats this share of the permutations of its own layer counts.
PERMUTATION_SHARE = 0.95


@dataclass(frozen=True)
class Verdict:
    """One claim under one reading: what was measured, the rule, the verdict, and how stable it is."""

    claim: str
    measurement: str
    criterion: str
    verdict: str
    stability: float | None = None  # share of the replicates with the same verdict
    basis: str = "resamples"  # what the replicates are: resamples, half-ensembles (N/2)
    detectable: float | None = None  # an experiment's smallest difference detected with 80 % power
    outcome: str | None = None  # an allocation verdict's outcome (better, equivalent, …) without its tier
    brief: str | None = None  # the measurement in a few words, for a table of many verdicts

    def __str__(self) -> str:
        if self.stability is None:
            return self.verdict
        return f"{self.verdict} ({self.stability:.0%} of {self.basis})"


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


HALF_BASIS = "half-ensembles of N/2"


def index_separates_layers(index, halves: Halves | None = None) -> Verdict:
    """𝒯_spec separates layers: spread across layers ≥ 2× spread across models.

    ``index[l, m]``; ``halves``: its values ``[l, m, h]`` on half-ensembles. Spreads are
    mean standard deviations (NaN, a degenerate spectrum, ignored).
    """
    def spreads(x):
        return np.nanmean(np.nanstd(x, axis=0)), np.nanmean(np.nanstd(x, axis=1))

    def ratio(x):
        layers, models = spreads(x)
        return layers / models

    def judge(x):
        return "yes" if ratio(x) >= SEPARATION_FACTOR else "not clearly"

    index = np.asarray(index, dtype=float)
    if index.shape[1] < 2:  # one model: no spread across models to compare with
        return _separates_within(index[:, 0], halves)
    layers, models = spreads(index)
    text = f"spread across layers {layers:.3f}, across models {models:.3f}; ratio {layers / models:.2f}"
    replicates = []
    if halves is not None:
        text += f" ({halves.of(ratio).text()})"
        replicates = halves.verdicts(judge)
    verdict = judge(index)
    return Verdict("𝒯_spec separates layers by complexity", text,
                   f"spread across layers ≥ {SEPARATION_FACTOR:g}× spread across models", verdict,
                   _stability(verdict, replicates), HALF_BASIS)


def _separates_within(index, halves: Halves | None) -> Verdict:
    """One model's 𝒯_spec separates its layers when the spread across layers is at least
    :data:`SEPARATION_FACTOR` times the spread within a layer: the standard deviation of the statistic over
    half-ensembles, scaled to N by 1/√2 (a statistic of N/2 snapshots varies √2 times more). Without
    half-ensembles there is nothing to compare with: "not applicable"."""
    claim = "𝒯_spec separates layers by complexity"
    criterion = (f"one model: spread across layers ≥ {SEPARATION_FACTOR:g}× the spread within a layer "
                 f"(half-ensembles, scaled to N by 1/√2)")
    layers = float(np.nanstd(index))
    if halves is None or np.asarray(halves.values).shape[-1] < 2:
        return Verdict(claim, f"spread across layers {layers:.3f}; one model and no replicates", criterion,
                       "not applicable")
    values = np.asarray(halves.values, dtype=float).reshape(len(index), -1)
    within = float(np.nanmean(np.nanstd(values, axis=-1))) / np.sqrt(2)
    ratio = layers / within if within > 0 else float("inf")
    verdict = "yes" if ratio >= SEPARATION_FACTOR else "not clearly"
    replicates = ["yes" if np.nanstd(values[:, h]) / max(within, 1e-300) >= SEPARATION_FACTOR else "not clearly"
                  for h in range(values.shape[-1])]
    return Verdict(claim, f"spread across layers {layers:.3f}, within a layer {within:.3f}; ratio {ratio:.2f}",
                   criterion, verdict, _stability(verdict, replicates), HALF_BASIS)


def layers_apart(values, group, replicates=None, what: str = "value", basis: str = "resamples") -> Verdict:
    """Do the layers of ``group`` (bool, (L,)) stand apart from the others: every one of them above every other
    layer ("apart, above"), or below ("apart, below"), else "not apart"?

    ``values[l]``; ``replicates[l, b]`` the same on replicates (bootstrap resamples or half-ensembles, named
    by ``basis``), whose verdicts give the share. The measurement adds the AUC, the share of (group, other) pairs in which the
    group's layer is the larger (ties half).
    """
    v, g = np.asarray(values, dtype=float), np.asarray(group, dtype=bool)

    def judge(x):
        inside, outside = x[g], x[~g]
        return "apart, above" if inside.min() > outside.max() else "apart, below" if inside.max() < outside.min() \
            else "not apart"

    inside, outside = v[g], v[~g]
    auc = float(np.mean([(a > b) + 0.5 * (a == b) for a in inside for b in outside]))
    verdict = judge(v)
    shares = [] if replicates is None else [judge(np.asarray(replicates, float)[:, b])
                                            for b in range(np.asarray(replicates).shape[-1])]
    text = (f"{what}: these layers {inside.min():.3g}–{inside.max():.3g}, the others {outside.min():.3g}–"
            f"{outside.max():.3g}; AUC {auc:.2f}")
    return Verdict(f"the {int(g.sum())} layers stand apart from the other {int((~g).sum())}", text,
                   "every one of them above (or below) every other layer", verdict,
                   _stability(verdict, shares) if shares else None, basis)


def layer1_degenerate(first_share, degenerate=None, halves: Halves | None = None) -> Verdict:
    """Layer 1 has a near-degenerate spectrum: its first mode holds ≥ 50 % of the energy, or no fit exists.

    ``first_share[l, m]`` (λ₁/Σλ at the top scale); ``degenerate[l, m]`` True where 𝒯_spec could
    not be fitted; ``halves``: the share ``[l, m, h]`` on half-ensembles.
    """
    share = np.asarray(first_share, dtype=float)
    flags = np.zeros(share.shape, dtype=bool) if degenerate is None else np.asarray(degenerate, dtype=bool)

    def judge(s):
        return "agree" if flags[0].any() or (s[0] >= DEGENERATE_SHARE).any() else "disagree"

    verdict = judge(share)
    text = f"layer 1 first-mode share {share[0].mean():.1%}, other layers {share[1:].mean():.1%}"
    replicates = []
    if halves is not None:
        text += f" (layer 1 {halves.of(lambda s: s[0].mean()).text('{:.1%}')})"
        replicates = halves.verdicts(judge)
    return Verdict("layer 1 has a near-degenerate spectrum", text,
                   f"some model's layer 1 has λ₁/Σλ ≥ {DEGENERATE_SHARE:.0%} or too few eigenvalues to fit",
                   verdict, _stability(verdict, replicates), HALF_BASIS)


def ega_raises_energy(energy_base, energy_ega, boot_base=None, boot_ega=None) -> Verdict:
    """EGA raises spectral energy across layers: Σλ at a common scale per layer, EGA-1 > BASE in every layer.

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
                   "EGA-1's total windowed variance above BASE's, at BASE's top scale, in every layer (interval "
                   "excluding 0 where resamples exist): agree; in none: disagree; else partly", verdict)


def ranks_non_uniform(ranks, halves: Halves | None = None) -> Verdict:
    """Effective ranks differ across layers: max/min H*(0.10) ≥ 1.5 in every model.

    ``ranks[m, l]``; ``halves``: the ranks ``[m, l, h]`` on half-ensembles.
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
    if halves is not None:
        replicates = halves.verdicts(judge)
        text += f" (the smallest {halves.of(lambda r: ratios(r).min()).text('{:.1f}')})"
    verdict = judge(ranks)
    return Verdict("effective ranks are non-uniform across layers", text,
                   f"max/min H*(0.10) ≥ {NONUNIFORM_RATIO:g} in every model: agree; in some: partly; none: disagree",
                   verdict, _stability(verdict, replicates), HALF_BASIS)


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


def reproduces(max_loss_difference: float) -> Verdict:
    """A shipped experiment's result, a stated subset recomputed here on the same weights and windows."""
    ok = max_loss_difference <= REPRODUCE_TOL
    return Verdict("the shipped experiment reproduces here", f"largest |Δ loss| {max_loss_difference:.1e} nats",
                   f"≤ {REPRODUCE_TOL:g} nats", "reproduces" if ok else "does not reproduce")


def simulation_matches(max_logit_difference: float, floor: float | None = None) -> Verdict:
    """The KV-cache mask simulation equals a literal token-by-token decode with a real, evicting cache.

    ``floor``: the same comparison with the full cache, where nothing is evicted and only rounding
    differs (a real model's library may round inside, e.g. a float32 norm in a float64 model); a
    difference within 10× that floor is rounding too."""
    tolerance = SIMULATION_TOL if floor is None else max(SIMULATION_TOL, 10 * floor)
    rule = (f"a difference above {SIMULATION_TOL:g} (100× float32 rounding of a logit) fails" if floor is None else
            f"a difference above {tolerance:.1e} (the larger of {SIMULATION_TOL:g} and 10× the full cache's "
            f"{floor:.1e}, rounding alone) fails")
    return Verdict("the cache simulation equals a literal cached decode",
                   f"logits differ by up to {max_logit_difference:.1e}", rule,
                   "passes" if max_logit_difference <= tolerance else "fails")


# ----------------------------------------------------------------------------- what a low H* means (real model)

# A layer whose queries (i ≥ 1) put at least this share of their attention on token 0 is sink-dominated.
SINK_SHARE = 0.5


def layer_kinds(h_star, sink, top_scales) -> list[str]:
    """What each layer's attention is, from its H*(0.1), its attention on token 0 and its top scale:
    "sink" (sink ≥ :data:`SINK_SHARE`), else "coarse" (top scale ≥ COARSE), "fine" (≤ FINE), or "middle"."""
    kinds = []
    for h, s, a in zip(np.asarray(h_star), np.asarray(sink), np.asarray(top_scales)):
        kinds.append("sink" if s >= SINK_SHARE else "coarse" if a >= COARSE else "fine" if a <= FINE else "middle")
    return kinds


def low_rank_explained(h_star, sink, top_scales, n_sample: int = 20000, edge=None, head_sink=None) -> Verdict:
    """Does a low H*(0.1) in the deep layers mean a coarse linguistic scale, or sink collapse?

    Deep layers: the last half. Low H*: at or below the median over all layers. Each
    such layer is a sink, coarse, fine or middle (:func:`layer_kinds`); the verdict is
    "sinks" or "coarse scale" where that kind is more than half of them, else "mixed".
    The measurement adds the Spearman correlation of H* with the sink share over all
    layers and its permutation p-value (a negative correlation: the more sink, the fewer modes), and with
    ``edge`` (bool, (L,)) how many of the low layers have their top scale at the scale grid's edge, where a
    "coarse" reading is weakest, and with ``head_sink[l, h]`` (each head's attention on token 0) how many of
    the low layers' heads are sinks, against the other layers'.
    """
    h, s, a = (np.asarray(x, dtype=float) for x in (h_star, sink, top_scales))
    L = len(h)
    deep = np.arange(L) >= L // 2
    low = deep & (h <= np.median(h))
    kinds = layer_kinds(h[low], s[low], a[low])
    counts = {k: kinds.count(k) for k in ("sink", "coarse", "fine", "middle")}
    n = int(low.sum())
    verdict = ("sinks" if counts["sink"] > n / 2 else "coarse scale" if counts["coarse"] > n / 2 else "mixed")
    rho, p = rank_correlation(h, s), correlation_p_value(h, s, n_sample)
    layers = ", ".join(str(l + 1) for l in np.flatnonzero(low))
    at_edge = "" if edge is None else f" ({int(np.asarray(edge, bool)[low].sum())} of them at the scale grid's edge)"
    heads = ""
    if head_sink is not None:  # per head: a layer's average can hide heads that are sinks
        per_head = np.asarray(head_sink, dtype=float) >= SINK_SHARE
        heads = (f"; sink heads {int(per_head[low].sum())} of {per_head[low].size} in these layers, "
                 f"{int(per_head[~low].sum())} of {per_head[~low].size} in the others")
    text = (f"{n} deep layers with low H* ({layers}): " + ", ".join(f"{k} {c}" for k, c in counts.items() if c)
            + at_edge + heads + f"; Spearman(H*, sink) over {L} layers {rho:+.2f} (p = {p:.3f})")
    return Verdict("a low H* in a deep layer is a coarse scale, not a sink", text,
                   f"deep = layers {L // 2 + 1}–{L}; low = H*(0.1) at or below the median; a layer is a sink if "
                   f"≥ {SINK_SHARE:.0%} of its attention is on token 0, else coarse if its top scale ≥ {COARSE:g}; "
                   f"the verdict is the kind of more than half of them, else mixed", verdict)


ENSEMBLE_BASIS = "disjoint ensembles of N"


def ranks_differ(h_star, sizes=None, size_rank=None, n_perm: int = 4999) -> Verdict:
    """Effective ranks differ across layers, ruled at a fixed N: ``h_star[k, l]`` on K disjoint ensembles of the
    same N. The layers differ if the variance of their means exceeds what the ensembles' spread explains (one-way
    F, permutation p < :data:`DIFFER_P`, :func:`attnpod.estimators.between_within`). Not against the paper's 1.5
    line: max/min grows with N. With ``size_rank[k, s, d, l]`` at ``sizes[s]``, the measurement adds the max/min
    ratio of the layer means at each N."""
    h = np.asarray(h_star, dtype=float)
    K, L = h.shape
    F_stat, p = between_within(h.T, n_perm)
    means = h.mean(0)
    text = (f"F = {F_stat:.1f} between {L} layers against {K} disjoint ensembles, permutation p = {p:.4f}; "
            f"max/min of the layer means {means.max() / max(means.min(), 1):.2f}")
    if size_rank is not None:
        ratios = size_ratios(size_rank)
        text += "; max/min against N: " + ", ".join(f"{int(n)}: {r:.2f}" for n, r in zip(sizes, ratios))
    verdict = "agree" if p < DIFFER_P else "disagree"
    return Verdict("effective ranks are non-uniform across layers", text,
                   f"at a fixed N, the layers' H*(0.1) differ beyond the spread between disjoint ensembles "
                   f"(permutation p < {DIFFER_P:g}): agree; else disagree", verdict, None, ENSEMBLE_BASIS,
                   brief=f"F = {F_stat:.1f}, p = {p:.4f}")


def on_every_model(verdicts: dict) -> Verdict:
    """One claim's ``verdicts`` (a model's name to its :class:`Verdict`, each "agree" or "disagree") over the
    models: agree on all, disagree on none, else partly; the measurement lists each model's in brief."""
    words = [v.verdict for v in verdicts.values()]
    first = next(iter(verdicts.values()))
    verdict = "agree" if all(w == "agree" for w in words) else "disagree" if "agree" not in words else "partly"
    return Verdict(first.claim, "; ".join(f"{m}: {v.brief or v.verdict}" for m, v in verdicts.items()),
                   f"{first.criterion}, on every model", verdict, None, first.basis)


def size_ratios(size_rank) -> np.ndarray:
    """max/min over layers of the mean H* (over ensembles and draws) at each size: ``size_rank[k, s, d, l]`` → (S,)."""
    means = np.asarray(size_rank, dtype=float).mean((0, 2))  # (S, L)
    return means.max(-1) / np.maximum(means.min(-1), 1)


def replicated(verdict_of, *per_ensemble, basis: str = "disjoint ensembles", **fixed) -> Verdict:
    """``verdict_of`` (a claim function of per-layer arrays, and of ``fixed`` keywords) on the replicates' means,
    with the share of the K replicates (``per_ensemble`` arrays ``[k, l]``; by default disjoint ensembles of N)
    whose own verdict agrees: a verdict that says how often it holds up on other data."""
    arrays = [np.asarray(a, dtype=float) for a in per_ensemble]
    main = verdict_of(*(a.mean(0) for a in arrays), **fixed)
    own = [verdict_of(*(a[k] for a in arrays), **fixed).verdict for k in range(len(arrays[0]))]
    return Verdict(main.claim, main.measurement + f"; on the mean of {len(own)} {basis}",
                   main.criterion, main.verdict, _stability(main.verdict, own), basis)


def sink_correlations(h_star, sink, n_sample: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Spearman's ρ of ``h_star[k, l]`` with ``sink[k, l]`` over the layers on each replicate k, and its
    permutation p: ``(rho, p)``, each (K,)."""
    h, s = np.asarray(h_star, dtype=float), np.asarray(sink, dtype=float)
    return (np.array([rank_correlation(a, b) for a, b in zip(h, s)]),
            np.array([correlation_p_value(a, b, n_sample) for a, b in zip(h, s)]))


def sinks_add_modes(h_star, sink, n_sample: int = 4000, alpha: float = 0.05) -> Verdict:
    """Do sink-heavy layers have more POD modes? :func:`sink_correlations` on K disjoint ensembles: "more modes"
    where ρ > 0 at p < ``alpha`` on every ensemble, "fewer modes" where ρ < 0 so on every one, else "not on every
    ensemble"."""
    rho, p = sink_correlations(h_star, sink, n_sample)
    more, fewer = (rho > 0) & (p < alpha), (rho < 0) & (p < alpha)
    verdict = "more modes" if more.all() else "fewer modes" if fewer.all() else "not on every ensemble"
    own = ["more modes" if m else "fewer modes" if f else "neither" for m, f in zip(more, fewer)]
    return Verdict("sink-heavy layers have more POD modes", f"Spearman ρ(H*(0.1), attention on token 0) "
                   f"{rho.min():+.2f} to {rho.max():+.2f} over {len(rho)} disjoint ensembles, p ≤ {p.max():.3f}",
                   f"ρ of the same sign at p < {alpha:g} on every disjoint ensemble", verdict,
                   _stability(verdict, own), ENSEMBLE_BASIS)


def paired_change(plain, changed, level: float = LEVEL):
    """Per layer, the mean change ``changed[k, l] − plain[k, l]`` over K paired ensembles and its Student-t
    interval: ``(mean, lo, hi)``, each (L,), and the layers whose interval excludes 0 (bool, (L,))."""
    mean, lo, hi = replicate_interval((np.asarray(changed, float) - np.asarray(plain, float)).T, level)
    return mean, lo, hi, (lo > 0) | (hi < 0)


def within_spread(values_k, changed_r) -> dict:
    """How far a perturbation moves a per-layer statistic against the ensembles' own spread: ``values_k[k, l]`` on
    K disjoint ensembles (the first the perturbed one's), ``changed_r[r, l]`` under R perturbations of the first.
    Returns the median and largest |change| over layers (the largest over perturbations), the median standard
    deviation across ensembles, and the layers whose perturbed values leave the range the ensembles span."""
    v, c = np.asarray(values_k, float), np.asarray(changed_r, float)
    change = np.abs(c - v[0]).max(0)
    outside = ((c < v.min(0)) | (c > v.max(0))).any(0)
    return {"median change": float(np.median(change)), "largest change": float(change.max()),
            "ensembles' spread (median sd)": float(np.median(v.std(0, ddof=1))),
            "layers outside the ensembles' range": int(outside.sum())}


# ----------------------------------------------------------------------------- one verdict per claim and reading

def reading_verdicts(analyses: dict, reading: str = "tc", ega: str = "ega1", base: str = "base") -> dict[str, Verdict]:
    """The paper's scale and spectrum claims under one reading, from the analyses of several models.

    The POD numbers (𝒯_spec, λ₁ share, H*(0.10)) are taken at each layer's top scale under
    that reading; Σλ, EGA-1 against BASE, at BASE's top scale (a common window: a wider
    lag window keeps more variance). Replicates enter where they exist: bootstrap
    resamples for the top scale under every reading and for Σλ; half-ensembles for the
    shape of the spectrum where they lie at the reading's top scale (Torrence–Compo
    power; the published pipeline, given the analyses made with
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
    resampled = all(len(r.resamples) > 0 for r in analyses.values())  # none for extra training seeds
    boot = {m: bootstrap_statistics(r) for m, r in analyses.items()} if resampled else {}  # top scales and Σλ, resampled
    shape_replicates = reading in ("tc", "published") and all(len(r.halves) >= 2 for r in analyses.values())

    def stack(f):
        return np.array([f(m) for m in models])

    shapes = {m: shape_halves(r) for m, r in analyses.items()} if shape_replicates else {}

    def halves(statistic, axis, pick=lambda x: x):
        if not shape_replicates:
            return None
        parts = [shapes[m][statistic] for m in models]
        return stack_halves([Halves(pick(p.values), p.halves, p.N) for p in parts], axis)

    top_scales = stack(lambda m: layer_values(analyses[m], reading))  # (M, L), tokens
    index = stack(lambda m: [spectral_concentration(x) for x in lam[m]]).T  # (L, M)
    share = stack(lambda m: lam[m][:, 0] / np.maximum(lam[m].sum(-1), 1e-300)).T
    ranks = stack(lambda m: [effective_rank(x, 0.10) for x in lam[m]])
    out = {
        "scale": scale_contrast(top_scales, stack(lambda m: reading_replicates(analyses[m], reading, boot[m]))
                                if resampled else None, READINGS[reading]),
        "separates": index_separates_layers(index, halves("spectral_concentration", 1)),
        "layer1": layer1_degenerate(share, np.isnan(index), halves("first_share", 1)),
        "ranks": ranks_non_uniform(ranks, halves("effective_rank", 0, lambda v: v[:, 0])),
    }
    if ega in analyses and base in analyses:
        common = tops[base]  # BASE's top scale, layer by layer
        layers = np.arange(len(common))
        energy = {m: analyses[m].eigenvalues[layers, common].sum(-1) for m in (base, ega)}
        replicates = {m: boot[m]["energy_by_scale"][layers, :, common] if resampled else None
                      for m in (base, ega)}  # (L, B)
        out["ega_energy"] = ega_raises_energy(energy[base], energy[ega], replicates[base], replicates[ega])
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


def with_half_intervals(values, halves: Halves, fmt: str = "{:.3f}", index=None, columns=None,
                        na: str = "degenerate"):
    """A table of ``value | mean [lo, hi]`` strings: ``values[r, c]`` on all N snapshots, then the statistic's
    expected value at N/2 with its 95 % interval, from the half-ensembles ``halves.values[r, c, h]``. Where the
    statistic is the same on every half, the interval would have zero width and claim a certainty the halves do
    not have (D ≫ N: H* pinned at its ceiling): the cell says so instead of printing one."""
    import pandas as pd

    values = np.asarray(values, dtype=float)
    mean, lo, hi = halves.interval()
    spread = np.nanmax(halves.values, axis=-1) - np.nanmin(halves.values, axis=-1)

    def cell(v, m, a, b, s):
        if np.isnan(v):
            return na
        if s == 0:  # every half gives the same value (an integer statistic at its ceiling, D ≫ N): no interval
            return f"{fmt.format(v)} | {fmt.format(m)} on every half: no interval"
        return f"{fmt.format(v)} | {fmt.format(m)} [{fmt.format(a)}, {fmt.format(b)}]"

    cells = [[cell(*c) for c in zip(*row)] for row in zip(values, mean, lo, hi, spread)]
    return pd.DataFrame(cells, index=index, columns=columns)


# ----------------------------------------------------------------------------- head allocation (beyond the paper)

OUTCOMES = ("better", "equivalent", "worse", "inconclusive")
Z_POWER = 0.8416  # the normal quantile of 80 % power


@dataclass(frozen=True)
class Comparison:
    """A rule against a reference on the same windows: the mean paired difference (rule − reference, lower is
    better) with its 95 % and 90 % bootstrap intervals, and what they show against the equivalence margin."""

    mean: float
    lo: float
    hi: float
    lo90: float
    hi90: float
    margin: float
    detectable: float  # the smallest true difference this many windows detects with 80 % power (two-sided 5 %)

    @property
    def outcome(self) -> str:
        """equivalent (TOST: the 90 % interval inside ±margin), else better or worse (the 95 % interval
        excludes 0), else inconclusive: too few windows to tell."""
        if -self.margin < self.lo90 and self.hi90 < self.margin:
            return "equivalent"
        if self.hi < 0:
            return "better"
        if self.lo > 0:
            return "worse"
        return "inconclusive"

    @property
    def not_worse(self) -> bool:
        """Non-inferiority: the 95 % interval's upper end below the margin."""
        return self.hi < self.margin

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.lo:+.3f}, {self.hi:+.3f}]"


def compare(differences, margin: float = EQUIVALENCE_MARGIN, n_boot: int = 2000, seed: int = 0) -> Comparison:
    """:class:`Comparison` of paired per-window differences ``d[w]`` (rule − reference), bootstrap over windows."""
    d = np.asarray(differences, dtype=float)
    means = _bootstrap_means(d, n_boot, seed)
    (lo, hi), (lo90, hi90) = interval(means, LEVEL), interval(means, 0.90)
    detectable = (NormalDist().inv_cdf(0.5 + LEVEL / 2) + Z_POWER) * float(means.std())
    return Comparison(float(d.mean()), float(lo), float(hi), float(lo90), float(hi90), margin, detectable)


def permutation_share(rule_loss: float, permuted_losses) -> float:
    """The share of its permutations (mean losses) that the rule's order beats: higher loss than the rule's."""
    permuted = np.asarray(permuted_losses, dtype=float)
    permuted = permuted[~np.isnan(permuted)]
    return float(np.mean(permuted > rule_loss)) if permuted.size else float("nan")


def null_binds(n_orders: int, share: float = PERMUTATION_SHARE) -> bool:
    """Whether a permutation null of ``n_orders`` orders can reject at all: a rule beating every one of them
    must clear ``share`` with the rule itself counted, (P + 1 − 1)/(P + 1) ≥ share."""
    return n_orders / (n_orders + 1) >= share


@dataclass(frozen=True)
class BudgetVerdict:
    """One rule at one budget: against uniform, its permutation null, and the best baseline."""

    budget: int
    uniform: Comparison
    permutation: float | None  # share of its permutations the rule beats (None: not run)
    n_orders: int
    baseline: Comparison | None  # rule − best baseline (None: no baseline)

    @property
    def null_ran(self) -> bool:
        return self.permutation is not None and self.n_orders > 0

    @property
    def tier(self) -> str:
        """"useful": better than uniform, beats ≥ 95 % of its permutations, and not worse than the best baseline;
        "informative": the first two; "" otherwise; "null not run" when no permutations were scored."""
        if self.uniform.outcome != "better":
            return ""
        if not self.null_ran:
            return "null not run"
        if not (null_binds(self.n_orders) and self.permutation >= PERMUTATION_SHARE):
            return ""
        return "useful" if self.baseline is not None and self.baseline.not_worse else "informative"


def allocation_verdict(losses, uniform, budgets, permuted=None, best_baseline=None, rule: str = "∝ H*",
                       what: str = "head allocation", margin: float = EQUIVALENCE_MARGIN, same_as_uniform=None,
                       distances=None, flat: float = 0.0) -> Verdict:
    """One allocation rule's verdict over the budgets: better, equivalent, worse or inconclusive, with its tier.

    ``losses[k, w]``, ``uniform[k, w]``: per budget k and window w. ``permuted[k]``: the
    losses ``[p, u]`` of the rule's own counts reordered across layers, on the first u ≤ w
    windows (NaN rows: padding), against which the rule's loss on those windows is ranked;
    ``best_baseline[k, w]``: the best baseline's losses. At each budget the paired
    difference from uniform is one of the four outcomes (:class:`Comparison`); the rule's
    verdict is the outcome at more than half the budgets, else "mixed" (it depends on the budget). Its tier
    (:class:`BudgetVerdict`) is the one reached at more than half the budgets. Budgets
    where ``same_as_uniform[k]`` (the rule splits exactly as uniform) are left out: they
    test nothing; if all are, the verdict says so. So are budgets where the split's L1 distance from
    uniform, ``distances[k]``, is below ``flat``: there "equivalent" would hold by construction, and the
    verdict is "not tested: split within x % of uniform".
    """
    same = np.zeros(len(budgets), dtype=bool) if same_as_uniform is None else np.asarray(same_as_uniform, dtype=bool)
    near = (np.zeros(len(budgets), dtype=bool) if distances is None
            else (np.asarray(distances, dtype=float) < flat) & ~same)
    closest = "" if not near.any() else f"within {np.asarray(distances)[near].max():.1%} of uniform"
    per_budget = []
    for k, b in enumerate(budgets):
        if same[k] or near[k]:
            continue
        null = None if permuted is None else np.asarray(permuted[k], dtype=float)
        valid = None if null is None else null[~np.isnan(null).all(-1)]
        shared = slice(None) if null is None else slice(0, null.shape[-1])  # the null's windows: the first ones
        mean_loss = float(np.mean(np.asarray(losses[k])[shared]))
        per_budget.append(BudgetVerdict(
            int(b), compare(np.asarray(losses[k]) - uniform[k], margin, seed=k),
            None if valid is None else permutation_share(mean_loss, valid.mean(-1)),
            0 if valid is None else len(valid),
            None if best_baseline is None else compare(np.asarray(losses[k]) - best_baseline[k], margin, seed=50 + k)))
    criterion = (f"per budget, the paired difference from uniform: equivalent if its 90 % interval lies within "
                 f"±{margin:g} nats (TOST), else better or worse if its 95 % interval excludes 0, else inconclusive; "
                 f"the verdict is the outcome at more than half the budgets where the rule differs from uniform, "
                 f"else mixed. "
                 f"Informative: better and beating {PERMUTATION_SHARE:.0%} of the permutations of its own layer "
                 f"counts; useful: also not worse than the best baseline (95 % upper end below +{margin:g}); "
                 f"a tier is read at the budgets where the null ran, and names them if that is not all")
    skipped = f"; the same split as uniform at {', '.join(str(b) for b, s in zip(budgets, same) if s)}" if same.any() else ""
    if near.any():
        skipped += f"; not tested at {', '.join(str(b) for b, n in zip(budgets, near) if n)}: split {closest}"
        criterion += f". Not tested where the split's L1 distance from uniform is below {flat:.0%}"
    if not per_budget and near.any():  # what the windows would have detected, had the split differed
        detectable = max(compare(np.asarray(losses[k]) - uniform[k], margin, seed=k).detectable
                         for k in np.flatnonzero(near))
        return Verdict(f"{rule} guides {what}", skipped.lstrip("; "), criterion, f"not tested: split {closest}",
                       detectable=detectable, outcome="not tested")
    if not per_budget:
        return Verdict(f"{rule} guides {what}", "splits exactly as uniform at every budget", criterion,
                       "identical to uniform", outcome="identical to uniform")
    n = len(per_budget)
    counts = {o: sum(v.uniform.outcome == o for v in per_budget) for o in OUTCOMES}
    majority = [o for o in OUTCOMES if counts[o] > n / 2]
    outcome = majority[0] if majority else "mixed"  # no outcome at most budgets: it depends on the budget
    ran = [v for v in per_budget if v.null_ran]  # the tier is read where the null ran: all budgets, or some
    tiers = [v.tier for v in ran]
    tier = ("useful" if tiers.count("useful") > len(ran) / 2 else
            "informative" if tiers.count("useful") + tiers.count("informative") > len(ran) / 2 else
            "null not run" if outcome == "better" and not ran else "")
    if tier and ran and len(ran) < n:  # a null run at some budgets speaks for those only
        tier += f" at {', '.join(str(v.budget) for v in ran)}"
    text = "; ".join(f"{v.budget}: {v.uniform.outcome} {v.uniform}" + (f", beats {v.permutation:.0%} of "
                     f"{v.n_orders} orders" if v.null_ran else "")
                     for v in per_budget) + skipped
    detectable = max(v.uniform.detectable for v in per_budget)
    criterion += f". Smallest detectable difference (80 % power): {detectable:.3f} nats"
    return Verdict(f"{rule} guides {what}", text, criterion, f"{outcome}, {tier}" if tier else outcome,
                   detectable=detectable, outcome=outcome)


def best_of(result, rules) -> np.ndarray:
    """Per budget, the losses ``[k, w]`` of whichever of ``rules`` has the lowest mean loss there."""
    losses = np.stack([result.loss(r) for r in rules])  # (rules, K, W)
    best = losses.mean(-1).argmin(0)
    return losses[best, np.arange(losses.shape[1])]


def experiment_verdicts(result, rules, uniform: str, baselines, what: str, flat: float = 0.0) -> dict[str, Verdict]:
    """:func:`allocation_verdict` of each of ``rules`` in a head-pruning or cache experiment's ``result``
    (:class:`attnpod.experiments.budgets.BudgetResult`): against the ``uniform`` rule, with the permutation
    null where it was run, and the best of ``baselines`` at each budget; budgets where a rule does exactly
    what uniform does (``result.same_as``), or that select as uniform does with splits within ``flat`` L1 distance
    of its split, are left out."""
    reference, best = result.loss(uniform), best_of(result, baselines)
    return {r: allocation_verdict(result.loss(r), reference, result.budgets, result.null(r), best, r, what,
                                  same_as_uniform=result.same_as(r, uniform), flat=flat,
                                  distances=l1_distances(result.counts(r), result.counts(uniform))
                                  if flat and result.selects_as(r, uniform) else None)
            for r in rules}


def l1_distances(counts, reference) -> np.ndarray:
    """Per budget, Σ_l |k_l − r_l| / Σ_l r_l of a split ``counts[k, l]`` from a ``reference[k, l]`` (0: the same)."""
    counts, reference = np.asarray(counts, dtype=float), np.asarray(reference, dtype=float)
    return np.abs(counts - reference).sum(-1) / reference.sum(-1)


# Training seeds: a claim's book-level verdict is the one it reaches in at least this share of the seeds
# (4 of 5; 3 of 3); with fewer than MIN_SEEDS seeds, a verdict gives its count and is not called robust.
ROBUST_SHARE = 0.8
MIN_SEEDS = 3


# ----------------------------------------------------------------------------- what the verdicts' words mean

# Every word a verdict on the findings page begins with, in plain words. A verdict's text is the word, then
# what it rests on in brackets: "(97% of resamples)" is the share of bootstrap resamples of the snapshots
# that give the same word, "(… of half-ensembles of N/2)" the same over disjoint half-ensembles,
# "in 4 of 5 seeds" the training seeds that reach it.
VERDICT_WORDS = {
    "agree": "the measurement meets the paper's claim in full",
    "partly": "it meets the claim in part (for the scale claim: some early layers fine and some late ones coarse, "
              "not all)",
    "disagree": "it does not meet it (for the scale claim: no early layer fine, or no late layer coarse)",
    "not tested": "the rule's split is so close to uniform's that equivalence would hold by construction: no verdict",
    "yes": "the layers differ by more than the line (2× the spread across models, or within a layer)",
    "not clearly": "the layers differ, but by less than that line",
    "holds": "an identity the code must satisfy, true to rounding",
    "fails": "that identity does not hold",
    "leaks": "changing only future tokens moves past logits: the gate is not causal",
    "causal": "future tokens leave past logits unchanged",
    "void on causal models": "the published lag reading gives every scale the same answer on a causal model, "
                             "so it cannot select a scale (errata chapter)",
    "scale-dependent": "the published reading does change with the scale",
    "equal logits, different attention": "CONV-L4's logits equal BASE's, but its attention does not",
    "equal": "CONV-L4 equals BASE away from the edges",
    "causal gate keeps": "the share of EGA-1's gain over BASE that a causal gate keeps",
    "improves": "EGA-1's validation loss is below BASE's",
    "no gain": "it is not",
    "equivalent": "a budget rule's NLL is within ±0.02 nats of uniform's (its 90 % interval inside the margin)",
    "better": "lower NLL than uniform, the interval below 0; a tier may follow (the next three words)",
    "informative": "tier: better, and beating 95 % of the reorderings of its own split across layers",
    "useful": "tier: informative, and not worse than the best baseline rule",
    "null not run": "tier: better, but no reordering of its split was scored, so the order is untested",
    "worse": "higher NLL than uniform, the interval above 0",
    "inconclusive": "the interval straddles the margin: too few windows to tell",
    "mixed": "no single answer at most budgets (or, for low-H* layers, no majority kind)",
    "identical to uniform": "the rule's split is uniform's, so there is nothing to test",
    "seed-dependent": "fewer than 4 in 5 training seeds reach the same word; the seeds are listed",
    "sinks": "most low-H* layers put their attention on the first token",
    "coarse scale": "most low-H* layers peak at a coarse scale",
    "more modes": "on every disjoint ensemble, the layers with more attention on token 0 have more POD modes "
                  "(Spearman ρ > 0 at p < 0.05)",
    "fewer modes": "on every disjoint ensemble, they have fewer",
    "not on every ensemble": "the sign or the significance of that correlation changes between ensembles",
    "apart": "the reading puts Gemma's three global layers outside the sliding-window layers' range",
    "not apart": "it does not",
    "sees": "the reading recovered every planted answer of that kind on the bench",
    "blind": "it missed at least one",
    "no": "the bench's answer to the question asked, in its own words after the colon",
}


def legend_word(text) -> str | None:
    """The :data:`VERDICT_WORDS` entry a verdict's text begins with (the longest one), or None."""
    text = str(text).strip()
    found = [w for w in VERDICT_WORDS if text == w or text.startswith((w + " ", w + ",", w + ":", w + " ("))]
    return max(found, key=len) if found else None


def legend_table():
    """:data:`VERDICT_WORDS` as a two-column table (the findings page's key)."""
    import pandas as pd

    return pd.DataFrame({"means": VERDICT_WORDS}).rename_axis("verdict")



def verdict_phrase(verdict) -> str:
    """A verdict without its replicate share: the word and its tier ("better, informative")."""
    text = verdict.verdict if isinstance(verdict, Verdict) else str(verdict)
    return text.split(" (")[0].strip()


def verdict_word(verdict) -> str:
    """What a claim's verdict says, without its replicate share or tier: "agree", "worse", ..."""
    return verdict_phrase(verdict).partition(",")[0].strip()


def verdict_tier(verdict) -> str:
    """What a verdict adds to its word after a comma: an allocation verdict's tier ("better, informative":
    "informative"), a side ("apart, above": "above"); "" where it adds nothing."""
    return verdict_phrase(verdict).partition(",")[2].strip()


@dataclass(frozen=True)
class SeedVerdict:
    """One claim judged on several training seeds: each seed's verdict, and the book's.

    ``verdict`` is the verdict reached in at least :data:`ROBUST_SHARE` of the seeds, or
    "seed-dependent"; ``robust`` is False where fewer than :data:`MIN_SEEDS` seeds exist.
    """

    claim: str
    per_seed: dict  # seed -> that seed's verdict (its word)
    verdict: str
    count: int  # seeds that reach the book-level verdict (the most common one where seed-dependent)
    robust: bool
    tiers: dict = field(default_factory=dict)  # seed -> what its verdict adds to the word (verdict_tier), if anything

    def qualified(self, word: str) -> tuple[str, str]:
        """``word`` with the tiers of the seeds that reach it, and a note: ("better, informative", "") where all
        of them add the same, ("better", "informative in 3") where some do, else (word, "")."""
        tiers = [self.tiers.get(s, "") for s in self.seeds_with(word)]
        if tiers and tiers[0] and tiers.count(tiers[0]) == len(tiers):
            return f"{word}, {tiers[0]}", ""
        return word, ", ".join(f"{t} in {tiers.count(t)}" for t in dict.fromkeys(tiers) if t)

    @property
    def n(self) -> int:
        """How many seeds were judged."""
        return len(self.per_seed)

    def seeds_with(self, word: str) -> list:
        """The seeds whose verdict is ``word``."""
        return [s for s, v in self.per_seed.items() if v == word]

    def __str__(self) -> str:
        n, plural = self.n, "s" if self.n != 1 else ""
        def noted(text, note):
            return f"{text} ({note})" if note else text

        if self.verdict != "seed-dependent":
            phrase, note = self.qualified(self.verdict)
            text = noted(f"{phrase} in {self.count} of {n} seed{plural}", note)
            return text if self.robust else f"{text} (too few seeds to call robust)"
        words = sorted(set(self.per_seed.values()), key=lambda w: (-len(self.seeds_with(w)), w))
        return "seed-dependent: " + "; ".join(
            f"{noted(*self.qualified(w))} in {len(self.seeds_with(w))} of {n} ({', '.join(map(str, self.seeds_with(w)))})"
            for w in words)


def across_seeds(per_seed: dict, claim: str = "") -> SeedVerdict:
    """The book-level verdict of one claim from its verdict on each training seed (``{seed: Verdict or
    text}``): the verdict that holds in at least :data:`ROBUST_SHARE` of them ("disagree in 5 of 5
    seeds"), else "seed-dependent", with which seeds go which way. Fewer than :data:`MIN_SEEDS` seeds:
    the verdict that all of them reach, with its count, never called robust."""
    if not per_seed:
        raise ValueError("a verdict across seeds needs at least one seed")
    words = {s: verdict_word(v) for s, v in per_seed.items()}
    values = list(words.values())
    top = max(dict.fromkeys(values), key=values.count)
    k, n = values.count(top), len(values)
    robust = n >= MIN_SEEDS
    holds = k >= ROBUST_SHARE * n - 1e-9 if robust else k == n
    tiers = {s: verdict_tier(v) for s, v in per_seed.items()}
    return SeedVerdict(claim, words, top if holds else "seed-dependent", k, robust, tiers)


def ega_gain_across_seeds(gains: dict) -> SeedVerdict:
    """"EGA-1 improves on BASE" seed by seed, from ``{seed: val(EGA-1) − val(BASE)}``: "improves" where the
    difference is negative, else "no gain"."""
    return across_seeds({s: "improves" if g < 0 else "no gain" for s, g in gains.items()}, "EGA-1 improves on BASE")


def seed_matrix(columns: dict[str, dict[int, dict[str, Verdict]]]):
    """Claims (rows) by readings (columns), each cell the verdict across seeds (:func:`across_seeds`):
    ``columns[reading][seed][claim]`` as :func:`reading_verdicts` returns per seed. Returns the
    DataFrame of texts and the dict of :class:`SeedVerdict` cells."""
    import pandas as pd

    cells = {}
    for name, by_seed in columns.items():
        claims = [k for k in CLAIM_ROWS if all(k in col for col in by_seed.values())]
        cells[name] = {k: across_seeds({s: col[k] for s, col in by_seed.items()}, CLAIM_ROWS[k]) for k in claims}
    table = pd.DataFrame({name: {CLAIM_ROWS[k]: str(v) for k, v in col.items()} for name, col in cells.items()})
    return table.loc[[CLAIM_ROWS[k] for k in CLAIM_ROWS if CLAIM_ROWS[k] in table.index]], cells


def outcome_of(verdict: Verdict) -> str:
    """The outcome of an :func:`allocation_verdict` (its verdict without the tier)."""
    if verdict.outcome is None:
        raise ValueError(f"{verdict.claim!r} is not an allocation verdict: it has no outcome")
    return verdict.outcome


def across_models(verdicts) -> str:
    """The book-level reading of one rule's allocation verdicts on several models: the outcome on more than
    half of them with the count, e.g. "worse (3 of 4 models)", else "no majority" with every count."""
    outcomes = [outcome_of(v) for v in verdicts]
    counts = {o: outcomes.count(o) for o in dict.fromkeys(outcomes)}  # every outcome met, mixed included
    for o, n in counts.items():
        if n > len(outcomes) / 2:
            return f"{o} ({n} of {len(outcomes)} models)"
    return "no majority (" + ", ".join(f"{o} {n}" for o, n in counts.items()) + f" of {len(outcomes)} models)"
