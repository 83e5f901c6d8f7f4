"""Head pruning at equal budgets: does H*(ε) tell a layer how many heads it needs? (beyond the paper)

A head mask ξ[l, h] ∈ {0, 1} multiplies head h of layer l before the output
projection (:meth:`attnpod.models.GPT.forward`). Rules only differ in how many
heads each layer keeps; within a layer the heads with the largest importance
(Michel, Levy & Neubig 2019) are kept. The metric is the increase in validation
loss (nats per character) on fixed batches, without fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..config import check_counts
from ..data import Corpus, disjoint_batches
from ..models import weights_digest
from .budgets import (CUT_TO_ONE, H_STAR, IMPORTANCE, MICHEL_ITERATIVE, MICHEL_ONE_SHOT, ORACLE, UNIFORM_SCORES,
                      BudgetResult, Evaluations, Primary, Rederived, allocate, guided, null_orders, random_splits,
                      rederive, rule_nulls)

UNIFORM = UNIFORM_SCORES  # equal heads per layer: the allocation rules' reference
BUDGETS = (40, 32, 24, 16, 12, 8)  # heads kept of the paper model's 48; scaled to other sizes by head_budgets


def head_budgets(n_layer: int, n_head: int) -> list[int]:
    """The paper's budgets (40 … 8 of 48 heads) scaled to L·H heads, at least one head per layer."""
    total = n_layer * n_head
    return sorted({max(n_layer, round(b * total / 48)) for b in BUDGETS}, reverse=True)


def evaluation_batches(corpus: Corpus, n_batches: int, batch_size: int, block_size: int, split: str = "val",
                       seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed windows ``(x[B, T], y[B, T])`` of a split, the same for every rule, no two overlapping
    (:func:`attnpod.data.disjoint_batches`: windows that share tokens are not independent units)."""
    x, y = disjoint_batches(corpus.split(split), n_batches * batch_size, block_size, seed)
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]


@torch.inference_mode()
def batch_losses(model, batches, mask=None, chunk: int = 64) -> np.ndarray:
    """Mean cross-entropy of each window of ``batches`` with head mask ``mask[l, h]`` (None: every head).

    Returns one loss per window, (Σ batch sizes,): the windows are the units the
    paired bootstrap resamples. Windows run ``chunk`` at a time.
    """
    model.eval()
    device = next(model.parameters()).device
    mask = None if mask is None else torch.as_tensor(mask, dtype=torch.float32, device=device)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    out = []
    for i in range(0, len(x), chunk):
        logits, _ = model(x[i:i + chunk].to(device), head_mask=mask)
        ce = F.cross_entropy(logits.transpose(1, 2).float(), y[i:i + chunk].to(device), reduction="none")
        out.append(ce.mean(-1).cpu().numpy())
    return np.concatenate(out)


def head_importance(model, batches, mask=None, normalise: bool = True) -> np.ndarray:
    """Michel et al.'s importance I[l, h] = E_x |∂L(x)/∂ξ_lh| at ξ = ``mask`` (all ones by default).

    The derivative is taken per example x (one window), not per batch, and
    averaged; ``normalise`` divides each layer by its ℓ2 norm, as they do.
    """
    model.eval()
    L, H = model.config.n_layer, model.config.n_head
    device = next(model.parameters()).device
    base = torch.ones(L, H, device=device) if mask is None else torch.as_tensor(mask, dtype=torch.float32, device=device)
    total, count = torch.zeros(L, H, dtype=torch.float64, device=device), 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        xi = base.expand(len(x), L, H).clone().requires_grad_(True)  # one ξ per example
        logits, _ = model(x, head_mask=xi)
        per_example = F.cross_entropy(logits.transpose(1, 2).float(), y, reduction="none").mean(-1)  # (B,)
        (grad,) = torch.autograd.grad(per_example.sum(), xi)
        total += grad.abs().sum(0).double()
        count += len(x)
    importance = (total / count).cpu().numpy()
    return normalised(importance) if normalise else importance


def normalised(importance) -> np.ndarray:
    """Importance divided by each layer's ℓ2 norm (Michel et al.)."""
    importance = np.asarray(importance)
    return importance / np.maximum(np.linalg.norm(importance, axis=-1, keepdims=True), 1e-30)


def keep_by_importance(counts, importance) -> np.ndarray:
    """The mask that keeps, in each layer l, the ``counts[l]`` heads of largest ``importance[l]``: (L, H)."""
    importance = np.asarray(importance)
    mask = np.zeros_like(importance, dtype=np.float32)
    for l, k in enumerate(counts):
        mask[l, np.argsort(-importance[l], kind="stable")[:int(k)]] = 1.0
    return mask


def _prune_to(mask, target: int, score) -> np.ndarray:
    """Remove heads of lowest ``score(mask)[l, h]`` one at a time until ``target`` remain (never a layer's last)."""
    mask = mask.copy()
    while mask.sum() > target:
        s = np.where(mask > 0, score(mask), np.inf)
        s[mask.sum(1) <= 1] = np.inf  # every layer keeps one head
        mask[np.unravel_index(np.argmin(s), s.shape)] = 0.0
    return mask


def michel_iterative(model, batches, budgets, step: float = 0.1, progress: bool = False) -> dict[int, np.ndarray]:
    """Michel et al.'s global iterative pruning: remove the ``step`` share of all heads with the lowest
    importance, re-score with the mask on, repeat; the mask at each budget (heads kept)."""
    L, H = model.config.n_layer, model.config.n_head
    per_step = max(1, round(step * L * H))
    mask, out = np.ones((L, H), dtype=np.float32), {}
    for target in tqdm(sorted(budgets, reverse=True), desc="Michel pruning", disable=not progress):
        while mask.sum() > target:
            importance = head_importance(model, batches, mask)
            mask = _prune_to(mask, max(target, int(mask.sum()) - per_step), lambda m: importance)
        out[target] = mask.copy()
    return out


def greedy_oracle(model, batches, budgets, progress: bool = False) -> dict[int, np.ndarray]:
    """Remove, one at a time, the head whose removal raises the measured loss least; the mask at each budget."""
    L, H = model.config.n_layer, model.config.n_head

    def removal_loss(mask):
        out = np.full((L, H), np.inf)
        for l, h in zip(*np.nonzero(mask)):
            if mask[l].sum() > 1:
                trial = mask.copy()
                trial[l, h] = 0.0
                out[l, h] = batch_losses(model, batches, trial).mean()
        return out

    mask, out = np.ones((L, H), dtype=np.float32), {}
    for target in tqdm(sorted(budgets, reverse=True), desc="greedy oracle", disable=not progress):
        mask = _prune_to(mask, target, removal_loss)
        out[target] = mask.copy()
    return out


def michel_one_shot(importance, budgets) -> dict[int, np.ndarray]:
    """Michel et al.'s one-shot pruning: the heads of lowest importance (scored once, on the full model)
    removed until the budget is met, every layer keeping one; the mask at each budget."""
    one = np.ones_like(np.asarray(importance), dtype=np.float32)
    return {b: _prune_to(one, b, lambda m: importance) for b in budgets}


def allocation_baselines(model, score_batches, importance_raw) -> dict[str, np.ndarray]:
    """Per-layer scores of the allocation-only baselines, from the scoring (training) windows: a layer's
    total importance (Michel's, not normalised), and the loss increase when it alone is cut to its most
    important head."""
    full = batch_losses(model, score_batches).mean()
    cut = [batch_losses(model, score_batches, cut_to_one_mask(importance_raw, l)).mean() - full
           for l in range(model.config.n_layer)]
    return {IMPORTANCE: importance_raw.sum(1), CUT_TO_ONE: np.maximum(np.array(cut), 0.0)}


def cut_to_one_mask(importance, layer: int) -> np.ndarray:
    """Every head kept, except in ``layer``, which keeps only its most important one: (L, H)."""
    mask = np.ones(np.shape(importance), dtype=np.float32)
    mask[layer] = keep_by_importance([1], np.asarray(importance)[layer:layer + 1])[0]
    return mask


@dataclass
class PruningResult(BudgetResult):
    """Validation loss of every rule at every budget, per evaluation window.

    losses[r, k, b] for rule ``rules[r]`` at ``budgets[k]`` on window b; masks[r, k, l, h];
    random_losses[d, k, b] for random per-layer counts (draw d); baseline[b] with every
    head; importance[l, h] (Michel, normalised per layer); cut_to_one[l, b]: the loss when
    layer l alone is cut to its most important head. The permutation null of the rules
    ``null_rules[q]``: null_counts[q, k, p, l], its own counts reordered across layers,
    and null_losses[q, k, p, b] (NaN rows where a budget has fewer distinct orders).
    """

    budgets: np.ndarray
    rules: list
    losses: np.ndarray
    masks: np.ndarray
    random_losses: np.ndarray
    baseline: np.ndarray
    importance: np.ndarray
    cut_to_one: np.ndarray
    null_rules: list = field(default_factory=list)
    null_counts: np.ndarray = None
    null_losses: np.ndarray = None
    meta: dict = field(default_factory=dict)

    # Axes: R rules, K budgets, W evaluation batches, D random draws, L layers, H heads, Q rules with a
    # permutation null, P orders.
    SHAPES = {"budgets": ("K",), "losses": ("R", "K", "W"), "masks": ("R", "K", "L", "H"),
              "random_losses": ("D", "K", "W"), "baseline": ("W",), "importance": ("L", "H"), "cut_to_one": ("L", "W"),
              "null_counts": ("Q", "K", "P", "L"), "null_losses": ("Q", "K", "P", "W")}
    MAY_BE_NAN = ("null_counts", "null_losses")
    WHAT = "head-pruning result"

    def __post_init__(self):
        if self.null_counts is None:  # no permutation null run
            K, L = len(self.budgets), self.importance.shape[0]
            self.null_counts, self.null_losses = np.zeros((0, K, 0, L)), np.zeros((0, K, 0, len(self.baseline)))

    def counts(self, rule: str) -> np.ndarray:
        """Heads kept per layer at each budget: (K, L)."""
        return self.masks[self.rules.index(rule)].sum(-1).astype(int)


def rederived(result: PruningResult) -> Rederived:
    """Each analysis-guided split of a pruning result made again from the scores it stores
    (:func:`attnpod.experiments.budgets.rederive`): heads per layer ∝ the scores, 1 to H each."""
    H = result.masks.shape[-1]
    return rederive(result, lambda scores, b: allocate(scores, b, 1, H), result.meta["scores"])


NULL_RULES = (H_STAR,)  # the primary rule: its permutation null is always run
PRIMARY = Primary(NULL_RULES, UNIFORM, (MICHEL_ITERATIVE,), "head allocation")
BASELINE_RULES = (IMPORTANCE, CUT_TO_ONE, MICHEL_ONE_SHOT, MICHEL_ITERATIVE)  # the published rules, no analysis


def analysis_rules(result: PruningResult) -> list[str]:
    """The rules of ``result`` that split ∝ a score from the attention-field analysis (not the baselines')."""
    return [r for r in guided(result.rules) if r not in BASELINE_RULES]
FORMAT = 2  # the result file's layout


ZERO_ALLOWED = {"n_random": 0, "n_perm": 0}  # the counts that may be 0 (no random splits, no permutation null)


def settings(model, profile, n_random: int = 10, oracle: bool = False, n_eval: int = 4, n_score: int = 4,
             n_oracle: int = 1, n_perm: int = 19) -> dict:
    """Everything a pruning result depends on but the rules' scores: the weights (their SHA-256), the
    budgets scaled to the model (:func:`head_budgets`), the random draws, whether the greedy oracle runs,
    the batches (``n_eval`` judged on, ``n_score`` training batches for importance, ``n_oracle`` for the
    oracle), the permutation null's ``n_perm`` orders per budget, the profile's batch shape and seed. A
    bad count is a one-line :class:`~attnpod.errors.ParameterError`."""
    check_counts(ZERO_ALLOWED, n_random=n_random, n_eval=n_eval, n_score=n_score, n_oracle=n_oracle, n_perm=n_perm)
    return {"weights_sha256": weights_digest(model), "budgets": head_budgets(profile.n_layer, profile.n_head),
            "n_random": n_random, "oracle": oracle, "n_eval": n_eval, "n_score": n_score, "n_oracle": n_oracle,
            "n_perm": n_perm, "batch": [profile.batch_size, profile.block_size], "seed": profile.seed,
            "format": FORMAT}


def verdicts(result: PruningResult, rules=None) -> dict:
    """The verdict of each of ``rules`` (default: :data:`PRIMARY`'s) against uniform counts, with its
    permutation null and against Michel's iterative pruning (:func:`attnpod.claims.experiment_verdicts`)."""
    return PRIMARY.verdicts(result, rules)


def run(model, eval_batches, score_batches, layer_scores: dict, budgets, n_random: int = 50,
                oracle_batches=None, seed: int = 0, progress: bool = True, n_perm: int = 19,
                null_rules=NULL_RULES) -> PruningResult:
    """Every allocation rule at every budget, evaluated on ``eval_batches``.

    ``layer_scores[rule]`` gives per-layer scores; the rule's counts are
    :func:`attnpod.experiments.budgets.allocate` of them (1 ≤ count ≤ H, summing to the budget).
    Added always: the allocation-only baselines (:func:`allocation_baselines`), Michel's
    one-shot and iterative pruning, and random counts (``n_random`` Dirichlet draws,
    seeded: a picture of chance, not the test). The greedy oracle when
    ``oracle_batches`` is given: its own validation windows, never the evaluation
    ones. The permutation null of each of ``null_rules``: ``n_perm`` distinct orders
    of its counts per budget (:func:`attnpod.experiments.budgets.permuted_allocations`).
    Importance is measured on ``score_batches`` (training windows).
    """
    L, H = model.config.n_layer, model.config.n_head
    raw = head_importance(model, score_batches, normalise=False)  # one pass over the scoring windows
    importance = normalised(raw)
    budgets = [int(b) for b in budgets]

    def split(scores, b):
        return allocate(scores, b, 1, H)

    scores = dict(layer_scores) | allocation_baselines(model, score_batches, raw)
    masks = {rule: {b: keep_by_importance(split(s, b), importance) for b in budgets} for rule, s in scores.items()}
    masks[MICHEL_ONE_SHOT] = michel_one_shot(importance, budgets)
    masks[MICHEL_ITERATIVE] = michel_iterative(model, score_batches, budgets, progress=progress)
    if oracle_batches is not None:
        masks[ORACLE] = greedy_oracle(model, oracle_batches, budgets, progress=progress)
    rules = list(masks)
    null_rules = [r for r in null_rules if r in scores]
    null_counts = rule_nulls([[split(scores[r], b) for b in budgets] for r in null_rules], n_perm, seed,
                             len(budgets), L)
    random_masks = [[keep_by_importance(c, importance) for c in draw]
                    for draw in random_splits(split, budgets, L, n_random, seed)]
    orders = null_orders(null_counts)
    # rules and random draws often pick the same mask: each is evaluated once
    evaluations = Evaluations(len(rules) * len(budgets) + n_random * len(budgets) + len(orders) + L + 1,
                              "pruning evaluations", progress)

    def evaluate(mask):
        key = "full" if mask is None else ",".join(str(int(m)) for m in np.asarray(mask).ravel())
        return evaluations(key, compute=lambda: batch_losses(model, eval_batches, mask))

    baseline = evaluate(None)
    losses = np.array([[evaluate(masks[r][b]) for b in budgets] for r in rules])
    random_losses = np.array([[evaluate(m) for m in draw] for draw in random_masks]).reshape(
        n_random, len(budgets), len(baseline))  # (0, K, W) without draws
    null_losses = np.full((*null_counts.shape[:3], len(baseline)), np.nan)
    for q, k, p in orders:
        null_losses[q, k, p] = evaluate(keep_by_importance(null_counts[q, k, p].astype(int), importance))
    cut = [evaluate(cut_to_one_mask(importance, l)) for l in range(L)]
    evaluations.close()
    return PruningResult(np.array(budgets), rules, losses, np.array([[masks[r][b] for b in budgets] for r in rules]),
                         random_losses, baseline, importance, np.array(cut), null_rules, null_counts, null_losses)
