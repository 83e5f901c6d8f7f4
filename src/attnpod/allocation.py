"""Apportionment: a budget (heads, cache keys) split into per-layer integer counts ∝ scores.

Used by head pruning (:mod:`attnpod.heads`), the KV cache (:mod:`attnpod.kvcache`)
and the chapters; the verdicts on whether a split helps are in :mod:`attnpod.claims`.
"""

from __future__ import annotations

import numpy as np


def allocate(scores, budget: int, lo: int = 1, hi: int | None = None) -> np.ndarray:
    """Integer counts ∝ ``scores`` that sum exactly to ``budget``, each in [lo, hi] (largest remainders).

    Quotas q_i = clip(λ·s_i, lo, hi) with λ found by bisection so that Σ q_i = B
    (plain proportional quotas B·s_i/Σs when no bound binds); then Hamilton's
    method: every item gets ⌊q_i⌋ and the largest remainders one more each.
    All-zero scores share equally.
    """
    scores = np.clip(np.asarray(scores, dtype=float), 0, None)
    n = len(scores)
    hi = budget if hi is None else hi
    if not n * lo <= budget <= n * hi:
        raise ValueError(f"budget {budget} cannot be split into {n} counts in [{lo}, {hi}]")
    if scores.sum() <= 0:
        scores = np.ones(n)
    low, high = 0.0, hi / scores[scores > 0].min()
    for _ in range(200):  # Σ clip(λ s, lo, hi) is continuous and non-decreasing in λ
        lam = 0.5 * (low + high)
        low, high = (lam, high) if np.clip(lam * scores, lo, hi).sum() < budget else (low, lam)
    quota = np.clip(high * scores, lo, hi)
    counts = np.floor(quota + 1e-9).astype(int)
    for i in np.argsort(-(quota - counts), kind="stable"):
        if counts.sum() >= budget:
            break
        if counts[i] < hi:
            counts[i] += 1
    # Where the scored items all sit at hi, the rest of the budget cannot follow the scores: it goes
    # to the unscored items (tied), one each in turn, so that the counts always sum to the budget.
    order = np.argsort(-scores, kind="stable")
    while counts.sum() < budget:
        for i in order:
            if counts.sum() < budget and counts[i] < hi:
                counts[i] += 1
    return counts


def rule_scores(analysis) -> dict[str, np.ndarray]:
    """Per-layer scores of each analysis-guided allocation rule, from an analysis (of training-split
    snapshots: the rules must not see the windows they are judged on). ``uniform``; ∝ H*(ε) at each ε;
    ∝ 1/H*(0.1); ∝ 𝒯_spec (a degenerate layer's NaN replaced by the mean)."""
    rank = analysis.effective_rank.astype(float)  # [l, e]
    index = analysis.spectral_concentration
    scores = {"uniform": np.ones(len(rank))}
    scores |= {f"∝ H*({e:g})": rank[:, i] for i, e in enumerate(analysis.epsilons)}
    scores["∝ 1/H*(0.1)"] = 1.0 / np.maximum(rank[:, 0], 1.0)
    scores["∝ T_spec"] = np.nan_to_num(index, nan=np.nanmean(index) if np.isfinite(index).any() else 1.0)
    return scores


def top_scales(analysis) -> dict[str, np.ndarray]:
    """Each layer's top dominant lag scale under Torrence–Compo power ("TC") and rectified power."""
    from .claims import top_scale_indices

    return {name: analysis.scales[top_scale_indices(analysis, reading)] for name, reading in
            (("TC", "tc"), ("rectified", "rectified"))}
