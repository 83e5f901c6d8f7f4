"""KV-cache budgets: does the attention-field analysis tell a layer how much cache it needs? (beyond the paper)

Decoding runs token by token inside the model's context of T tokens. Layer l keeps
a cache of at most k_l keys and values per head: query i attends to at most k_l
keys, its own included. Budgets are equal in total, Σ_l k_l = L·B; rules differ in
which keys a layer keeps (*selection*) and in how the total is split across layers
(*allocation*).

Selection, per head:

* ``recent``: the last k tokens (a sliding window);
* ``streaming`` (StreamingLLM, Xiao et al. 2023): the first ``min(4, k−1)`` tokens,
  the attention sinks, plus the most recent ones;
* ``h2o`` (Zhang et al. 2023): ⌈k/2⌉ recent tokens plus at most ⌊k/2⌋ heavy hitters.
  A token that leaves the recent window becomes a candidate; when there are more
  candidates than places, the one with the least attention accumulated so far is
  evicted for good. The accumulated attention is the attention the cache actually
  gave (queries see only cached keys), so eviction depends on earlier evictions.

The simulation is exact, not an approximation: one forward pass with, per layer,
head and query, a mask of the keys the cache holds. The H2O mask of query i
depends only on the rows before it in the same layer, whose logits are known once
the previous layer is done, so it is built row by row (:func:`h2o_keep`).
:func:`decode_cached` is an independent, literal token-by-token decoder with a real
cache; the tests hold the two together.

Only causal models can be decoded token by token: BASE, and EGA with the causal
gate. The published EGA gate normalises over the whole window (future tokens), and
CONV-L4's lag multiplier depends on the window length, so for them a prefix has no
well-defined attention (errata chapter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..config import check_counts
from ..errors import ParameterError
from ..models import weights_digest
from .budgets import (H_STAR, PRIMARY_RULES, UNIFORM_SCORES, BudgetResult, Evaluations, Primary, Rederived, allocate,
                      guided, null_orders, permuted_allocations, random_splits, rederive, rule_nulls, top_scale_rule)
from .cache_rules import H2O, N_SINKS, PYRAMID_H2O, RECENT, STREAMING, h2o_places, pyramid_scores, scored

CACHE_BUDGETS = (8, 16, 32, 64)  # mean keys per layer at T = 256 (scaled to other T by cache_budgets)
SELECTIONS = ("recent", "streaming", "h2o")
SELECTION_LABELS = {"recent": RECENT, "streaming": STREAMING, "h2o": H2O}


def decodable(config) -> bool:
    """Whether a prefix of the window has a well-defined attention (token-by-token decoding)."""
    return config.decodable


def check_decodable(model) -> None:
    """A one-line :class:`~attnpod.errors.ParameterError` if ``model`` cannot decode token by token."""
    if not decodable(model.config):
        why = ("CONV-L4's lag multiplier depends on the window length" if model.config.spec.score == "lag_mix"
               else "the published EGA gate normalises over future tokens; use the causal gate")
        raise ParameterError(f"{model.config.variant} cannot be decoded token by token: {why}")


def cache_budgets(block_size: int) -> list[int]:
    """The issue's budgets B ∈ {8, 16, 32, 64} at T = 256, scaled to ``block_size`` (at least 2 keys)."""
    return [max(2, round(b * block_size / 256)) for b in CACHE_BUDGETS]


# ----------------------------------------------------------------------------- allocation across layers

def allocate_cache(scores, budget: int, block_size: int) -> np.ndarray:
    """Keys per layer ∝ ``scores`` with Σ k_l = L·``budget``, each 1 ≤ k_l ≤ T (largest remainders)."""
    return allocate(scores, len(scores) * int(budget), 1, block_size)


def scale_window(top_scales, block_size: int) -> np.ndarray:
    """The scale-selective window: each layer keeps a recent window as long as its dominant lag scale."""
    return np.clip(np.rint(np.asarray(top_scales, dtype=float)), 1, block_size).astype(int)


# ----------------------------------------------------------------------------- which keys a cache holds

def _grid(T: int, device=None):
    pos = torch.arange(T, device=device)
    return pos[:, None], pos[None, :]  # query i (T, 1), key j (1, T)


def recent_keep(k, T: int) -> torch.Tensor:
    """Recent window: query i sees keys i−k+1 … i. ``k`` per example (N,); returns (N, 1, T, T)."""
    k = torch.as_tensor(k).reshape(-1, 1, 1)
    i, j = _grid(T, k.device)
    return ((j <= i) & (j > i - k))[:, None]


def streaming_keep(k, T: int, sinks: int = N_SINKS) -> torch.Tensor:
    """StreamingLLM: the first s = min(``sinks``, k−1) keys plus the k−s most recent; (N, 1, T, T)."""
    k = torch.as_tensor(k).reshape(-1, 1, 1)
    s = torch.clamp(k - 1, max=sinks)
    i, j = _grid(T, k.device)
    return ((j <= i) & ((j < s) | (j > i - (k - s))))[:, None]


def h2o_keep(logits: torch.Tensor, k, sinks: int = 0) -> torch.Tensor:
    """H2O's cache, per head, for causal ``logits[N, H, T, T]`` (−inf above the diagonal): (N, H, T, T).

    Query i sees the first ``sinks`` keys (sink protection; none in H2O itself), its
    r = ⌈(k − sinks)/2⌉ most recent keys and the heavy hitters kept so far (at most
    k − sinks − r). After row i, each key's accumulated attention grows by the attention
    row i gave it; the key leaving the recent window joins the candidates (unless a
    sink), and while they outnumber their places the one with the least accumulated
    attention is evicted.
    """
    N, H, T, _ = logits.shape
    k = torch.as_tensor(k, device=logits.device).reshape(-1)
    recent, heavy_places = h2o_places(k, sinks)
    heavy_places = heavy_places[:, None]  # (N, 1)
    pos = torch.arange(T, device=logits.device)
    acc = torch.zeros(N, H, T, dtype=torch.float64, device=logits.device)
    heavy = torch.zeros(N, H, T, dtype=torch.bool, device=logits.device)
    keep = torch.zeros(N, H, T, T, dtype=torch.bool, device=logits.device)
    for i in range(T):
        n = i + 1  # keys 0…i; later keys play no part yet
        window = (pos[:n] > i - recent[:, None]) | (pos[:n] < sinks)  # (N, n)
        row = heavy[..., :n] | window[:, None]
        keep[:, :, i, :n] = row
        acc[..., :n] += F.softmax(logits[:, :, i, :n].masked_fill(~row, float("-inf")).float(), dim=-1)
        leaving = (pos[:n] == (i - recent + 1)[:, None]) & (pos[:n] >= sinks)  # the key leaving the recent window
        heavy[..., :n] |= leaving[:, None]
        over = heavy[..., :n].sum(-1) > heavy_places  # (N, H): at most one too many
        victim = acc[..., :n].masked_fill(~heavy[..., :n], math.inf).argmin(-1, keepdim=True)
        heavy.scatter_(-1, victim, heavy.gather(-1, victim) & ~over[..., None])
    return keep


def selector(selection: str, budgets: torch.Tensor, sinks: int = 0):
    """``select(l, logits)`` for :meth:`attnpod.models.GPT.forward_explicit`: ``budgets[N, L]`` keys per layer;
    ``sinks``: the first keys H2O always keeps (sink protection)."""
    if selection not in SELECTIONS:
        raise ParameterError(f"unknown cache selection {selection!r}; choose one of {SELECTIONS}")

    def select(l, logits):
        k = budgets[:, l].to(logits.device)
        T = logits.shape[-1]
        if selection == "h2o":
            return h2o_keep(logits, k, sinks)
        return recent_keep(k, T) if selection == "recent" else streaming_keep(k, T)

    return select


# ----------------------------------------------------------------------------- evaluation

@torch.inference_mode()
def window_losses(model, x, y, selection: str | None = None, budgets=None, chunk: int = 64,
                  sinks: int = 0) -> np.ndarray:
    """Mean NLL (nats per character) over the scored positions of each window, (N,).

    ``budgets`` keys per layer, (L,) for every window or (N, L); ``selection`` None:
    the full cache (the baseline); ``sinks``: the first keys H2O always keeps.
    """
    model.eval()
    device = next(model.parameters()).device
    N, T = x.shape
    part = scored(T)
    if selection is not None:
        check_decodable(model)
        budgets = torch.as_tensor(np.broadcast_to(np.asarray(budgets), (N, model.config.n_layer)).copy())
    out = []
    for a in range(0, N, chunk):
        xb = x[a:a + chunk].to(device)
        if selection is None:
            logits, _ = model(xb)
        else:
            logits, _ = model.forward_explicit(xb, select=selector(selection, budgets[a:a + chunk], sinks),
                                               maps=False)
        ce = F.cross_entropy(logits[:, part].transpose(1, 2).float(), y[a:a + chunk, part].to(device),
                             reduction="none")
        out.append(ce.mean(-1).cpu().numpy())
    return np.concatenate(out)


@torch.inference_mode()
def sink_mass(model, x) -> tuple[np.ndarray, float]:
    """Attention on token 0 per layer (mean over windows, heads and scored queries), and what
    uniform causal attention would give it there (the mean of 1/(i+1))."""
    A = model.attention_maps(x)  # (N, L, H, T, T)
    part = scored(x.shape[1])
    mass = A[..., part, 0].double().mean(dim=(0, 2, 3)).cpu().numpy()
    uniform = float(np.mean(1.0 / (np.arange(x.shape[1])[part] + 1)))
    return mass, uniform


def cache_cost(budgets, n_embd: int, n_head: int, block_size: int, selection: str, bytes_per_value: int = 4) -> dict:
    """Per generated token at the scored positions: attention FLOPs (q·k and p·v over the cached keys,
    mean over positions), the cache's keys and values in bytes (at the largest position), and the
    selection's own bookkeeping: H2O's accumulated attention in bytes, and its operations per token
    (adding each head's attention row to the scores, and finding the least-scored candidate to evict:
    2 H Σ_l k_l); a recent window or StreamingLLM keeps no scores and evicts by position."""
    budgets = np.asarray(budgets)
    positions = np.arange(block_size)[scored(block_size)]
    held = np.minimum(budgets[None, :], positions[:, None] + 1)  # keys each layer attends to, (P, L)
    h2o = selection == "h2o"
    return {"attention FLOPs / token": float(4 * n_embd * held.sum(1).mean()),
            "KV cache (KiB)": float(2 * n_embd * held[-1].sum() * bytes_per_value / 1024),
            "selection scores (KiB)": float(n_head * held[-1].sum() * 8 / 1024) if h2o else 0.0,
            "selection ops / token": float(2 * n_head * held.sum(1).mean()) if h2o else 0.0}


def cost_table(result: CacheResult, k: int, profile):
    """What every rule of ``result`` costs at budget index ``k`` (:func:`cache_cost`, with its NLL increase),
    and the full cache: rules (rows) by costs, as text."""
    import pandas as pd

    rows = {}
    for rule in result.rules:
        cost = cache_cost(result.counts(rule)[k], profile.n_embd, profile.n_head, profile.block_size,
                          result.selections[result.rules.index(rule)])
        rows[rule] = {n: f"{c:,.1f}" for n, c in cost.items()} | {"NLL +": f"{result.increase(rule)[k]:.3f}"}
    full = full_cost(profile)
    rows["full cache"] = {n: f"{c:,.1f}" for n, c in full.items()} | {"NLL +": "0"}
    return pd.DataFrame(rows).T


def full_cost(profile) -> dict:
    """:func:`cache_cost` of the full cache (every key kept) at the profile's sizes."""
    return cache_cost(np.full(profile.n_layer, profile.block_size), profile.n_embd, profile.n_head,
                      profile.block_size, "recent")


# ----------------------------------------------------------------------------- a literal decoder

@dataclass
class _Entry:
    pos: int
    key: torch.Tensor
    value: torch.Tensor
    bias: float
    acc: float = 0.0


def _evict(cache: list, i: int, k: int, selection: str, sinks: int = 0) -> list:
    """The entries a head keeps after step i, so that query i+1 sees them and itself (at most k keys);
    H2O keeps the first ``sinks`` tokens too."""
    nxt = i + 1
    if selection == "recent":
        return [e for e in cache if e.pos > nxt - k]
    if selection == "streaming":
        s = min(N_SINKS, k - 1)
        return [e for e in cache if e.pos < s or e.pos > nxt - (k - s)]
    recent, places = h2o_places(k, sinks)
    window = [e for e in cache if e.pos > nxt - recent or e.pos < sinks]
    heavy = [e for e in cache if sinks <= e.pos <= nxt - recent]
    while len(heavy) > places:
        heavy.remove(min(heavy, key=lambda e: e.acc))
    return heavy + window


@torch.inference_mode()
def decode_cached(model, idx, budgets, selection: str, sinks: int = 0) -> torch.Tensor:
    """Logits (T, V) of one window ``idx`` (T,), decoded token by token with a real KV cache.

    Each layer and head keeps a list of cached (key, value, gate bias) entries and
    evicts by ``selection`` after every step; ``budgets[l]`` keys per layer. Written
    independently of the mask simulation to check it.
    """
    check_decodable(model)
    model.eval()
    cfg = model.config
    hs = cfg.n_embd // cfg.n_head
    caches = [[[] for _ in range(cfg.n_head)] for _ in range(cfg.n_layer)]
    state, out = [], []
    for i in range(len(idx)):

        def attend(l, q, k, v, bias):  # every head of layer l: cache token i, attend, evict
            heads = []
            for head, cache in enumerate(caches[l]):
                cache.append(_Entry(i, k[head], v[head], float(bias[head])))
                logits = torch.stack([q[head] @ e.key / math.sqrt(hs) + e.bias for e in cache])
                p = F.softmax(logits.float(), dim=0)
                heads.append(sum(pe * e.value for pe, e in zip(p, cache)))
                for pe, e in zip(p.tolist(), cache):
                    e.acc += pe
                caches[l][head] = _evict(cache, i, int(budgets[l]), selection, sinks)
            return torch.stack(heads)  # (H, hs)

        out.append(model.decode_step(int(idx[i]), i, attend, state))
    return torch.stack(out)


def decode_check(model, x, budget: int, n_windows: int = 1) -> dict:
    """The mask simulation against the literal decoder (:func:`decode_cached`) for every selection rule at
    a uniform ``budget`` keys per layer, on the first ``n_windows`` windows of ``x``: the largest
    |Δ logit| per selection label."""
    device = next(model.parameters()).device
    T = x.shape[1]
    alloc = allocate_cache(np.ones(model.config.n_layer), budget, T)
    gaps = {}
    for selection in SELECTIONS:
        select = selector(selection, torch.as_tensor(np.tile(alloc, (n_windows, 1))))
        with torch.no_grad():
            simulated, _ = model.forward_explicit(x[:n_windows].to(device), select=select)
        gaps[SELECTION_LABELS[selection]] = max(
            float((decode_cached(model, x[w].to(device), alloc, selection).cpu() - simulated[w].cpu()).abs().max())
            for w in range(n_windows))
    return gaps


# ----------------------------------------------------------------------------- the experiment

@dataclass
class CacheResult(BudgetResult):
    """NLL of every cache rule at every mean budget B, per evaluation window.

    losses[r, k, b] for ``rules[r]`` at ``budgets[k]`` on window b, with keys per layer
    allocations[r, k, l] and selection ``selections[r]``; random_losses[d, k, b] and
    random_allocations[d, k, l] for random splits (H2O selection); baseline[b] with the
    full cache; window_* for the scale-selective windows (their own budgets), with
    window_uniform[w, b] a uniform recent window of the same total; sinks[l]: the
    attention on token 0, sink_uniform: what uniform attention would give it. The
    permutation null of the rules ``null_rules[q]``: null_allocations[q, k, p, l], the
    rule's split reordered across layers, and null_losses[q, k, p, u] on the first U of
    the windows (NaN rows where a budget has fewer distinct orders).
    """

    budgets: np.ndarray
    rules: list
    selections: list
    losses: np.ndarray
    allocations: np.ndarray
    random_losses: np.ndarray
    random_allocations: np.ndarray
    baseline: np.ndarray
    window_rules: list
    window_allocations: np.ndarray
    window_losses: np.ndarray
    window_uniform: np.ndarray
    sinks: np.ndarray
    sink_uniform: float
    null_rules: list = field(default_factory=list)
    null_allocations: np.ndarray = None
    null_losses: np.ndarray = None
    meta: dict = field(default_factory=dict)

    # Axes: R rules, K budgets, W windows, D random draws, L layers, V scale-selective windows, Q rules with
    # a permutation null, P orders.
    SHAPES = {"budgets": ("K",), "losses": ("R", "K", "W"), "allocations": ("R", "K", "L"),
              "random_losses": ("D", "K", "W"), "random_allocations": ("D", "K", "L"), "baseline": ("W",),
              "window_allocations": ("V", "L"), "window_losses": ("V", "W"), "window_uniform": ("V", "W"),
              "sinks": ("L",), "null_allocations": ("Q", "K", "P", "L"), "null_losses": ("Q", "K", "P", "U")}
    LISTS = ("rules", "selections", "window_rules", "null_rules")
    NUMBERS = ("sink_uniform",)
    PER_RULE = ("selections",)
    SIZES = {"R": "rules", "V": "window_rules", "Q": "null_rules"}
    MAY_BE_NAN = ("null_allocations", "null_losses")
    WHAT = "cache result"

    def __post_init__(self):
        if self.null_allocations is None:  # no permutation null run
            K, L = self.allocations.shape[1:]
            self.null_allocations = np.zeros((0, K, 0, L))
            self.null_losses = np.zeros((0, K, 0, len(self.baseline)))


UNIFORM = SELECTION_LABELS["h2o"]  # H2O with equal budgets: the allocation rules' reference
PYRAMID = PYRAMID_H2O  # PyramidKV's budgets across layers; its own selection differs
NULL_RULES = PRIMARY_RULES  # the primary rules: their permutation null is always run
SELECTION_RULES = tuple(SELECTION_LABELS[s] for s in SELECTIONS)
PRIMARY = Primary((H_STAR, PYRAMID), UNIFORM, (PYRAMID, *SELECTION_RULES), "the KV-cache budget")
FORMAT = 2  # the result file's layout
MINIMUMS = {"n_random": 0, "n_perm": 0, "n_windows": 2}  # the least each count may be (the rest: 1)


def settings(model, profile, n_random: int = 10, n_windows: int = 64, n_perm: int = 19, null_windows: int = 32) -> dict:
    """Everything a cache result depends on but the rules' scores and top scales: the weights (their
    SHA-256), the budgets scaled to the context (:func:`cache_budgets`), the random splits, the
    ``n_windows`` validation windows (the first ``null_windows`` for the permutation nulls), the null's
    ``n_perm`` orders per budget and the profile's seed. A model that cannot decode token by token is a
    one-line :class:`~attnpod.errors.ParameterError`."""
    check_counts(MINIMUMS, n_random=n_random, n_windows=n_windows, n_perm=n_perm, null_windows=null_windows)
    check_decodable(model)
    return {"weights_sha256": weights_digest(model), "budgets": cache_budgets(profile.block_size),
            "n_random": n_random, "n_windows": n_windows, "n_perm": n_perm, "null_windows": null_windows,
            "seed": profile.seed, "format": FORMAT}


def rederived(result: CacheResult, block_size: int) -> Rederived:
    """Each split of a cache result that its stored scores define, made again with today's code
    (:func:`attnpod.experiments.budgets.rederive`): the selection rules' equal splits, PyramidKV's schedule,
    the analysis-guided rules and the top-scale rules, at the context ``block_size``."""
    L = result.allocations.shape[-1]
    scores = {SELECTION_LABELS[s]: np.ones(L) for s in SELECTIONS} | {PYRAMID: lambda b: pyramid_scores(L, b)}
    scores |= {r: v for r, v in result.meta["scores"].items() if r != UNIFORM_SCORES}
    scores |= {top_scale_rule(n): v for n, v in result.meta.get("top_scales", {}).items()}
    return rederive(result, lambda w, b: allocate_cache(w, b, block_size), scores)


def allocation_rules(result: CacheResult) -> list[str]:
    """The allocation rules of a cache experiment (H2O selection), uniform first."""
    return [UNIFORM] + [r for r, s in zip(result.rules, result.selections) if s == "h2o" and r != UNIFORM]


def verdicts(result: CacheResult, rules=None) -> dict:
    """The verdict of each of ``rules`` (default: every rule that splits ∝ a score) against uniform H2O,
    with its permutation null where run and against the best of PyramidKV and the selection rules
    (:func:`attnpod.claims.experiment_verdicts`)."""
    return PRIMARY.verdicts(result, guided(result.rules) if rules is None else rules)


def run(model, x, y, layer_scores: dict, top_scales: dict, budgets, n_random: int = 50,
                         seed: int = 0, chunk: int = 64, progress: bool = True, n_perm: int = 19,
                         null_rules=NULL_RULES, null_windows: int | None = None) -> CacheResult:
    """Every selection and allocation rule at every mean budget, on windows ``x``, ``y`` (N, T).

    Selection rules (recent, StreamingLLM, H2O) split the budget equally. Allocation
    rules keep H2O and split L·B ∝ ``layer_scores[rule]`` per layer, plus PyramidKV's
    schedule and ``n_random`` Dirichlet draws (a picture of chance, not the test).
    ``top_scales[name]`` (per-layer dominant lag scales) give a rule ∝ the scale and a
    scale-selective window each. Each of ``null_rules`` gets its permutation null:
    ``n_perm`` distinct reorderings of its split per budget
    (:func:`attnpod.experiments.budgets.permuted_allocations`), scored on the first
    ``null_windows`` windows (default: all); the rule is judged against them on the same
    windows. The ranking of splits by mean NLL on shared windows is steadier than
    either mean, so fewer windows serve the null than the comparison with uniform.
    """
    check_decodable(model)
    L, T = model.config.n_layer, x.shape[1]
    budgets = [int(b) for b in budgets]

    def split(scores, b):
        return allocate_cache(scores, b, T)

    rules, selections, allocations = [], [], []

    def add(rule, selection, alloc):
        rules.append(rule)
        selections.append(selection)
        allocations.append(np.array(alloc))

    for selection in SELECTIONS:
        add(SELECTION_LABELS[selection], selection, [split(np.ones(L), b) for b in budgets])
    add(PYRAMID, "h2o", [split(pyramid_scores(L, b), b) for b in budgets])
    for rule, scores in layer_scores.items():
        if rule != UNIFORM_SCORES:
            add(rule, "h2o", [split(scores, b) for b in budgets])
    for name, scales in top_scales.items():
        add(top_scale_rule(name), "h2o", [split(scales, b) for b in budgets])
    random_allocations = random_splits(split, budgets, L, n_random, seed)
    windows = {f"scale window ({name})": scale_window(s, T) for name, s in top_scales.items()}
    null_rules = [r for r in null_rules if r in rules]
    null_allocations = rule_nulls([allocations[rules.index(r)] for r in null_rules], n_perm, seed, len(budgets), L)
    orders = null_orders(null_allocations)
    U = len(x) if null_windows is None else min(int(null_windows), len(x))
    # rules often choose the same split: each (selection, split, windows) is evaluated once
    evaluations = Evaluations(1 + len(rules) * len(budgets) + n_random * len(budgets) + 2 * len(windows) + len(orders),
                              "cache evaluations", progress)

    def evaluate(selection, alloc, n=len(x)):
        key = "full" if alloc is None else ",".join(str(int(a)) for a in alloc)
        return evaluations(selection, key, n, compute=lambda: window_losses(model, x[:n], y[:n], selection, alloc, chunk))

    baseline = evaluate(None, None)
    losses = np.array([[evaluate(s, a) for a in allocs] for s, allocs in zip(selections, allocations)])
    random_losses = np.array([[evaluate("h2o", a) for a in draw] for draw in random_allocations]).reshape(
        n_random, len(budgets), len(baseline))  # (0, K, W) without draws
    window_losses_ = np.array([evaluate("recent", a) for a in windows.values()]).reshape(len(windows), -1)
    window_uniform = np.array([evaluate("recent", allocate(np.ones(L), int(a.sum()), 1, T))
                               for a in windows.values()]).reshape(len(windows), -1)
    null_losses = np.full((*null_allocations.shape[:3], U), np.nan)
    for q, k, p in orders:
        null_losses[q, k, p] = evaluate("h2o", null_allocations[q, k, p].astype(int), U)
    evaluations.close()
    sinks, sink_uniform = sink_mass(model, x[:chunk])
    return CacheResult(np.array(budgets), rules, selections, losses, np.array(allocations), random_losses,
                       random_allocations, baseline, list(windows),
                       np.array(list(windows.values())).reshape(len(windows), L), window_losses_, window_uniform,
                       sinks, sink_uniform, null_rules, null_allocations, null_losses)


# ----------------------------------------------------------------------------- sink protection

SINK_PROTECTED = (UNIFORM, PYRAMID, H_STAR)  # chapter 10's primary comparison, with the sinks kept


def protected_sinks(budget: int) -> int:
    """How many first tokens sink protection keeps at a mean budget of ``budget`` keys per layer: the
    real model's :data:`N_SINKS`, but at most a quarter of the budget (these models' budgets start at 4)."""
    return max(1, min(N_SINKS, int(budget) // 4))


def sink_protected_losses(model, x, y, scores, budgets, chunk: int = 64, n_perm: int = 19,
                          null_windows: int = 32, seed: int = 0) -> tuple[dict, dict, np.ndarray]:
    """Uniform H2O, PyramidKV's schedule and ∝ ``scores`` (per layer), each with sink protection
    (:func:`protected_sinks`; every layer keeps at least the sinks and its own key), at each mean budget:
    ``losses[rule][k, w]`` on windows ``x``, ``y`` and ``allocations[rule][k, l]``; and the permutation
    null of ∝ ``scores``, ``null[k, p, u]`` for ``n_perm`` reorderings of its split on the first
    ``null_windows`` windows (NaN rows where a budget has fewer distinct orders)."""
    L, T = model.config.n_layer, x.shape[1]
    losses, allocations = {}, {}
    for rule in SINK_PROTECTED:
        splits = []
        for b in budgets:
            s = protected_sinks(b)
            weights = np.ones(L) if rule == UNIFORM else pyramid_scores(L, b) if rule == PYRAMID else scores
            splits.append(allocate(weights, L * int(b), s + 1, T))
        allocations[rule] = np.array(splits)
        losses[rule] = np.array([window_losses(model, x, y, "h2o", a, chunk, protected_sinks(b))
                                 for a, b in zip(splits, budgets)])
    orders = permuted_allocations(allocations[SINK_PROTECTED[-1]], n_perm, seed)  # (K, P, L)
    U = min(int(null_windows), len(x))
    null = np.full((*orders.shape[:2], U), np.nan)
    for k, p in zip(*np.nonzero(~np.isnan(orders[..., 0]))):
        null[k, p] = window_losses(model, x[:U], y[:U], "h2o", orders[k, p].astype(int), chunk,
                                   protected_sinks(budgets[k]))
    return losses, allocations, null
