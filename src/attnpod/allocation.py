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


def distinct_orders(counts, n: int, seed: int = 0) -> np.ndarray:
    """Up to ``n`` distinct reorderings of ``counts`` across layers, other than ``counts`` itself: (P, L).

    The permutation null of an allocation rule: its own layer budgets, their
    non-uniformity kept, given to random layers. All of them when there are at most
    ``n`` (equal counts make fewer than L! orders), else ``n`` sampled without repeats.
    """
    from itertools import permutations
    from math import factorial

    counts = np.asarray(counts)
    own = tuple(counts.tolist())
    if factorial(len(counts)) <= 5040:  # up to 7 layers: enumerate
        orders = sorted(set(permutations(own)) - {own})
        rng = np.random.default_rng(seed)
        if len(orders) > n:
            orders = [orders[i] for i in np.sort(rng.choice(len(orders), n, replace=False))]
        return np.array(orders, dtype=counts.dtype).reshape(-1, len(counts))
    rng, seen = np.random.default_rng(seed), set()
    for _ in range(100 * n):
        order = tuple(rng.permutation(counts).tolist())
        if order != own:
            seen.add(order)
        if len(seen) >= n:
            break
    return np.array(sorted(seen), dtype=counts.dtype).reshape(-1, len(counts))


def permuted_allocations(counts, n: int, seed: int = 0) -> np.ndarray:
    """The permutation null of a rule's counts ``counts[k, l]`` at each budget k: up to ``n`` distinct
    reorderings each (:func:`distinct_orders`), as ``orders[k, p, l]`` (float; NaN rows pad budgets with fewer)."""
    per_budget = [distinct_orders(c, n, seed + k) for k, c in enumerate(np.asarray(counts))]
    out = np.full((len(per_budget), max([len(o) for o in per_budget] + [0]), np.shape(counts)[-1]), np.nan)
    for k, orders in enumerate(per_budget):
        out[k, :len(orders)] = orders
    return out


def stack_nulls(nulls: list, n_budgets: int, n_layers: int) -> np.ndarray:
    """Several rules' :func:`permuted_allocations` as one array ``[q, k, p, l]``, NaN-padded to the most orders."""
    P = max([n.shape[1] for n in nulls] + [0])
    out = np.full((len(nulls), n_budgets, P, n_layers), np.nan)
    for q, n in enumerate(nulls):
        out[q, :, :n.shape[1]] = n
    return out


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
    from .readings import top_scale_indices

    return {name: analysis.scales[top_scale_indices(analysis, reading)] for name, reading in
            (("TC", "tc"), ("rectified", "rectified"))}
