"""KV-cache budgets on a real language model: SmolLM2-135M (beyond the paper).

The character models' cache chapter (:mod:`attnpod.experiments.kvcache`) asks whether the
attention-field analysis tells a layer how much cache it needs; here the same
question is put to a real model with grouped-query attention: 30 layers, 9 query
heads sharing 3 key/value heads per layer. A cache holds keys and values, so a budget
is per key/value head, and a selection rule's scores are pooled over the query heads
that share it.

The setting is a served prompt: a window of T tokens whose first half, the prompt,
is prefilled with full attention; the cache is then cut to budget and the second half
is decoded, each query attending to the keys the cache holds, its own included. Only
that second half is scored. Layer l keeps at most ``k_l`` keys per key/value head.

Selection, per key/value head (``s`` = :data:`N_SINKS` first tokens, the sinks):

* ``recent``: the last ``k`` tokens, no sinks (the reference without protection);
* ``streaming`` (StreamingLLM): the sinks and the last ``k − s`` tokens;
* ``h2o`` (H2O): the sinks, the ``r = ⌈(k − s)/2⌉`` most recent tokens, and at most
  ``k − s − r`` heavy hitters by accumulated attention (summed over the prompt's rows
  and every decoded row since, over the query heads of the group). A token leaving the
  recent window becomes a candidate; while candidates outnumber their places, the one
  with the least accumulated attention is evicted for good;
* ``snapkv`` (SnapKV-style): the sinks, the ``r`` most recent tokens, and the
  ``k − s − r`` prompt tokens that the prompt's last :data:`OBSERVATION` queries attend to
  most (summed over them and the group's query heads, smoothed by an average over
  :data:`POOL` neighbouring positions), chosen once at the end of the prompt.

Ada-KV's pooling (``pooled``): the heavy-hitter places of a layer's key/value heads
are one pool; eviction takes the least-scored candidate of the whole layer, so a head
that needs more keys gets them from one that needs fewer.

:func:`cache_attention` is registered with the ``transformers`` attention interface;
inside :func:`cache_plan` every layer masks its scores to what its cache holds, so one
forward pass of a window is exact. :func:`decode_literal` decodes token by token with
a real cache of rotated keys and values per head, written independently of the masks;
the tests and the chapter hold the two together.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config import check_counts
from ..errors import CorruptFile, ParameterError
from ..store import artifact_dir, artifact_lock, reused
from .budgets import (FLAT, PRIMARY_RULES, BudgetResult, Evaluations, Primary, Rederived, allocate, null_orders,
                      random_splits, rederive, rule_nulls, rule_scores)
from .cache_rules import (ADAKV, ENTROPY, FORMER_NAMES, H2O_SINKS, N_SINKS, PYRAMID, RECENT, SNAPKV, STREAMING,
                          h2o_places, pyramid_scores, scored)
from ..pretrained import LENGTH, SMOLLM2, Tokenised, analyse_pretrained, load_pretrained
from ..shipped import MissingCheckpoint, result_misfit, shipped_result
from ..claims import reproduces, simulation_matches

OBSERVATION = 16  # SnapKV's observation window: the prompt's last queries
POOL = 7  # SnapKV's smoothing of the votes over neighbouring positions
SELECTIONS = ("recent", "streaming", "h2o", "snapkv")
SELECTION_LABELS = {"recent": RECENT, "streaming": STREAMING, "h2o": H2O_SINKS, "snapkv": SNAPKV}
ATTENTION = "attnpod_cache"  # the name registered with transformers' attention interface


@dataclass(frozen=True)
class CachePlan:
    """What every layer's cache keeps: ``selection`` (one of :data:`SELECTIONS`), ``budgets[l]`` keys per
    key/value head of layer l, ``pooled`` heavy-hitter places across a layer's heads (Ada-KV), the
    ``prompt`` length prefilled in full, and the ``sinks`` kept. ``selection`` None: the full cache."""

    selection: str | None
    budgets: tuple = ()
    prompt: int = 0
    pooled: bool = False
    sinks: int = N_SINKS

    def split(self, k: int) -> tuple[int, int, int]:
        """(sinks, recent places, heavy places) of a budget of ``k`` keys under this plan's selection."""
        if self.selection == "recent":
            return 0, k, 0
        if self.selection == "streaming":
            return self.sinks, k - self.sinks, 0
        return (self.sinks, *h2o_places(k, self.sinks))


def check_plan(plan: CachePlan, n_layer: int, length: int) -> CachePlan:
    """The plan, or a one-line :class:`~attnpod.errors.ParameterError` saying what is wrong with it."""
    if plan.selection is None:
        return plan
    if plan.selection not in SELECTIONS:
        raise ParameterError(f"unknown cache selection {plan.selection!r}; choose one of {SELECTIONS}")
    budgets = np.asarray(plan.budgets)
    if budgets.shape != (n_layer,) or not np.issubdtype(budgets.dtype, np.integer):
        raise ParameterError(f"a cache plan needs one integer budget per layer ({n_layer}), got {plan.budgets!r}")
    if not 0 < plan.prompt < length:
        raise ParameterError(f"the prompt must be 1 to {length - 1} tokens of the {length}-token window, "
                             f"got {plan.prompt}")
    if plan.selection == "snapkv" and plan.prompt <= OBSERVATION:
        raise ParameterError(f"SnapKV's observation window of {OBSERVATION} needs a longer prompt than {plan.prompt}")
    floor = 1 if plan.selection == "recent" else plan.sinks + 1
    if budgets.min() < floor or budgets.max() > length:
        what = "the sinks and the query's own key" if floor > 1 else "the query's own key"
        raise ParameterError(f"cache budgets must hold {what}: {floor} to {length} keys per head, got "
                             f"{int(budgets.min())} to {int(budgets.max())}"
                             + (f" (below the sink count {plan.sinks} + 1)" if budgets.min() < floor > 1 else ""))
    return plan


# ----------------------------------------------------------------------------- which keys a cache holds

def _softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over keys in float32, or in float64 for a float64 model (as exact as the tests need)."""
    return F.softmax(logits, -1, dtype=torch.promote_types(logits.dtype, torch.float32))


def _causal(T: int, device=None) -> torch.Tensor:
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def keep_mask(logits: torch.Tensor, k: int, plan: CachePlan, prompt: "PromptScores | None" = None,
              window: int | None = None) -> torch.Tensor:
    """The keys each query sees, (B, G, R, T), for causal ``logits[B, G, g, R, T]`` of G key/value heads with
    g query heads each (−inf where a query may not look), a budget of ``k`` keys per key/value head. The R
    query rows are the window's last R positions: all T of them, or (with ``prompt``, what the prompt's rows
    gave the selection in a shared prefill) the decoded ones only, R = T − ``plan.prompt``. In a layer with a
    sliding ``window`` (Gemma's local layers) a key that has left the window is dropped from the cache, as a
    sliding cache drops it, and its place goes to the keys the selection keeps (H2O's heavy hitters, the
    StreamingLLM window): no layer is charged for keys it can no longer see. SnapKV's choice at the prompt's end
    is not refilled."""
    B, G, g, R, T = logits.shape
    if prompt is None:
        if R < T:
            raise ValueError("a decode pass without its prompt's rows needs their scores (PromptScores)")
        if plan.selection in ("h2o", "snapkv"):
            prompt = PromptScores.of(_softmax(logits[..., :plan.prompt, :plan.prompt]))
    return _keep(logits.shape, lambda r: logits[..., r, :], k, plan, prompt, logits.device, window)


def _gone(i: torch.Tensor, sinks: int, window: int | None) -> torch.Tensor | int:
    """How many of the sinks have left a sliding ``window`` at query positions ``i`` (0 without one)."""
    return 0 if not window else (i - window + 1).clamp(0, sinks)


def _keep(shape, row, k: int, plan: CachePlan, prompt, device, window: int | None = None) -> torch.Tensor:
    """:func:`keep_mask` for logits of ``shape`` whose query row r's logits[B, G, g, T] ``row(r)`` gives."""
    B, G, g, R, T = shape
    pos = torch.arange(T, device=device)
    i, j = pos[T - R:, None], pos[None, :]
    sinks, recent, heavy = plan.split(int(k))
    prefill = i < plan.prompt
    if plan.selection in ("recent", "streaming"):
        rule = (j < sinks) | (j > i - recent - _gone(i, sinks, window))  # a sink's place, once gone, is recent
        visible = (j <= i) & (j > i - window) if window else j <= i
        return (visible & (prefill | rule)).expand(B, G, R, T)
    if plan.selection == "snapkv":
        candidates = ((pos >= sinks) & (pos <= plan.prompt - recent)).expand(B, G, T)
        chosen = _top(F.pad(prompt.votes, (0, T - plan.prompt)), candidates, heavy, plan.pooled)  # at the prompt's end
        return (j <= i) & (prefill | (j < sinks) | (j > i - recent) | chosen[:, :, None, :])
    if window and T - 1 >= window:
        return _h2o_keep_sliding(shape, row, plan, sinks, recent, heavy, F.pad(prompt.received, (0, T - plan.prompt)),
                                 device, window)
    return _h2o_keep(shape, row, plan, sinks, recent, heavy, F.pad(prompt.received, (0, T - plan.prompt)), device)


@dataclass(frozen=True)
class PromptScores:
    """What a layer's prompt rows give the selection rules, from a prefill shared by every plan: the attention
    each prompt key ``received`` (B, G, P) summed over the prompt's rows and the group's query heads (H2O's
    start), and SnapKV's smoothed ``votes`` (B, G, P) of the prompt's last :data:`OBSERVATION` rows."""

    received: torch.Tensor
    votes: torch.Tensor

    @classmethod
    def of(cls, probabilities: torch.Tensor) -> "PromptScores":
        """From the prompt's attention ``probabilities[B, G, g, P, P]``."""
        return cls(probabilities.double().sum((2, 3)), snapkv_votes(probabilities[..., -OBSERVATION:, :]))


def _top(scores: torch.Tensor, candidates: torch.Tensor, places: int, pooled: bool) -> torch.Tensor:
    """The ``places`` best-scored ``candidates`` (B, G, T) per head, or per layer when ``pooled``."""
    B, G, T = scores.shape
    flat = (lambda t: t.reshape(B, 1, G * T)) if pooled else (lambda t: t)
    n = places * (G if pooled else 1)
    masked = flat(scores.masked_fill(~candidates, -math.inf))
    chosen = torch.zeros_like(masked, dtype=torch.bool)
    if n > 0:
        chosen.scatter_(-1, masked.topk(min(n, masked.shape[-1]), -1).indices, True)
    return chosen.reshape(B, G, T) & candidates


def _h2o_rows(shape, row, plan, acc, device, evict) -> torch.Tensor:
    """The row loop of both H2O variants: from the prompt's end, ``evict(i, alive, acc)`` cuts the keys alive
    (B, G, T) for row i, which then sees them, and the attention they receive is added to their scores ``acc``."""
    B, G, g, R, T = shape
    first = T - R
    pos = torch.arange(T, device=device)
    keep = (pos[None, :] <= pos[first:, None]).expand(B, G, R, T).clone()
    alive = torch.ones(B, G, T, dtype=torch.bool, device=device)
    acc = acc.clone()
    for i in range(max(plan.prompt, first), T):
        evict(i, alive, acc)
        visible = alive[..., :i + 1]
        keep[:, :, i - first, :i + 1] = visible
        logits = row(i - first)[..., :i + 1].masked_fill(~visible[:, :, None], -math.inf)
        acc[..., :i + 1] += _softmax(logits).double().sum(2)
    return keep


def _h2o_keep(shape, row, plan, sinks, recent, heavy, acc, device) -> torch.Tensor:
    """H2O's keys for the last R query rows of logits of ``shape`` (B, G, g, R, T), row r's given by ``row(r)``,
    from the attention ``acc`` (B, G, T) each key received in the prompt's rows: row by row from the prompt's
    end, evicting the least-scored candidates (per head, or from the layer's pool when ``plan.pooled``).

    Candidates are the keys past the sinks and before the recent window; every head holds as many (a pool, as
    many in all), so the count is kept here and the excess evicted without reading it back from the tensors."""
    B, G = shape[:2]
    heads = G if plan.pooled else 1  # the heads that share a pool of places
    count = heads * max(0, max(plan.prompt, shape[4] - shape[3]) - recent - sinks)  # alive before the first row

    def evict(i, alive, acc):
        nonlocal count
        last = i - recent  # the newest candidate
        if last >= sinks:
            count += heads
        if count > heavy * heads:
            span = last + 1 - sinks
            scores = acc[..., sinks:last + 1].masked_fill(~alive[..., sinks:last + 1], math.inf)
            victims = scores.reshape(B, G // heads, heads * span).topk(count - heavy * heads, -1, largest=False)
            flat = alive[..., sinks:last + 1].clone().reshape(B, G // heads, heads * span)
            flat.scatter_(-1, victims.indices, False)
            alive[..., sinks:last + 1] = flat.reshape(B, G, span)
            count = heavy * heads

    return _h2o_rows(shape, row, plan, acc, device, evict)


def _h2o_keep_sliding(shape, row, plan, sinks, recent, heavy, acc, device, window: int) -> torch.Tensor:
    """:func:`_h2o_keep` in a layer with a sliding ``window``: at row i the keys before i − window + 1 have left
    it and are dropped; the candidates are the keys inside it past the sinks and before the recent window, and
    they may hold the heavy places and the places of the sinks that have gone. A key leaving may have been alive
    in some heads and not in others, so each pool's count is read from the tensors."""
    B, G = shape[:2]
    heads = G if plan.pooled else 1

    def evict(i, alive, acc):
        lo = max(0, i - window + 1)  # the oldest key still in the window
        alive[..., :lo] = False
        start, last = max(sinks, lo), i - recent
        if last < start:
            return
        span = last + 1 - start
        pools = alive[..., start:last + 1].reshape(B, G // heads, heads * span)
        excess = pools.sum(-1) - (heavy + min(lo, sinks)) * heads
        if (excess > 0).any():
            scores = acc[..., start:last + 1].reshape(B, G // heads, heads * span).masked_fill(~pools, math.inf)
            order = scores.argsort(dim=-1, stable=True)  # the least attended first, the dead last
            victims = torch.zeros_like(pools)
            victims.scatter_(-1, order, torch.arange(heads * span, device=device) < excess[..., None])
            alive[..., start:last + 1] = (pools & ~victims).reshape(B, G, span)

    return _h2o_rows(shape, row, plan, acc, device, evict)


def snapkv_votes(probabilities: torch.Tensor) -> torch.Tensor:
    """SnapKV's votes from the observation queries' attention ``probabilities[B, G, g, w, T]``: summed over
    them and the group's query heads, then averaged over :data:`POOL` neighbouring keys; (B, G, T)."""
    votes = probabilities.double().sum((2, 3))
    B, G, T = votes.shape
    smooth = F.avg_pool1d(votes.reshape(B * G, 1, T), POOL, stride=1, padding=POOL // 2, count_include_pad=False)
    return smooth.reshape(B, G, T)


# ----------------------------------------------------------------------------- the attention function

_PLAN: contextvars.ContextVar = contextvars.ContextVar("attnpod_cache_plan", default=None)
_WATCH: contextvars.ContextVar = contextvars.ContextVar("attnpod_cache_watch", default=None)


def grouped_logits(module, query: torch.Tensor, key: torch.Tensor, scaling: float) -> torch.Tensor:
    """Causal scores ``[B, G, g, R, T]`` of the query heads grouped by the key/value head they share, for the R
    queries at the window's last positions (all T, or the decoded rows after a cached prompt); a layer with a
    ``sliding_window`` (Gemma's local layers) sees only that many keys back, its own included. One batched
    product per key/value head, masked in place: at long context these are the largest tensors of a pass."""
    B, H, R, d = query.shape
    G, T = key.shape[1], key.shape[2]
    logits = torch.matmul(query.reshape(B, G, (H // G) * R, d), key.transpose(-1, -2)).view(B, G, H // G, R, T)
    logits.mul_(scaling)
    pos = torch.arange(T, device=query.device)
    i, j = pos[T - R:, None], pos[None, :]
    visible = j <= i
    window = getattr(module, "sliding_window", None)
    if window:
        visible = visible & (j > i - window)
    return logits.masked_fill_(~visible, -math.inf)


def _softmax_(logits: torch.Tensor) -> torch.Tensor:
    """:func:`_softmax` in place, for float32 and float64 logits (else a new tensor)."""
    if logits.dtype not in (torch.float32, torch.float64):
        return _softmax(logits)
    logits.sub_(logits.amax(-1, keepdim=True)).exp_()
    return logits.div_(logits.sum(-1, keepdim=True))


def cache_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Attention whose scores are masked to what each layer's cache holds under the active :class:`CachePlan`
    (the full causal attention without one). Windows must be unpadded: ``attention_mask`` is not read. Inside
    :func:`watching`, the watcher sees each layer's attention, and a decode pass after a shared prefill reads
    the prompt's scores from it (:class:`PromptScores`)."""
    plan, watch = _PLAN.get(), _WATCH.get()
    B, H, R, d = query.shape
    G = key.shape[1]
    layer = module.layer_idx
    prompt = None if watch is None else watch.prompt(layer)
    logits = grouped_logits(module, query, key, scaling)
    if plan is not None and plan.selection is not None:
        keep = keep_mask(logits, plan.budgets[layer], plan, prompt, getattr(module, "sliding_window", None))
        logits.masked_fill_(~keep[:, :, None], -math.inf)
    p = _softmax_(logits)
    if watch is not None:
        watch.saw(layer, p)
    out = torch.matmul(p.view(B, G, -1, p.shape[-1]).to(value.dtype), value)  # (B, G, g·R, d)
    return out.view(B, H, R, d).transpose(1, 2).contiguous(), None


@contextlib.contextmanager
def watching(watcher):
    """Run :func:`cache_attention` with ``watcher``: its ``saw(layer, probabilities[B, G, g, R, T])`` is called in
    every layer, and its ``prompt(layer)`` gives a decode pass its prompt's :class:`PromptScores` (or None)."""
    token = _WATCH.set(watcher)
    try:
        yield watcher
    finally:
        _WATCH.reset(token)


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, cache_attention)


@contextlib.contextmanager
def cache_plan(model, plan: CachePlan, length: int):
    """Run ``model`` (a ``transformers`` causal LM) with every layer's cache under ``plan``; its own attention
    comes back on exit."""
    check_plan(plan, model.config.num_hidden_layers, length)
    _register()
    before = model.config._attn_implementation
    model.set_attn_implementation(ATTENTION)
    token = _PLAN.set(plan)
    try:
        yield model
    finally:
        _PLAN.reset(token)
        model.set_attn_implementation(before)


# ----------------------------------------------------------------------------- a literal decoder


@dataclass(eq=False)
class _Entry:
    pos: int
    key: torch.Tensor  # (d,), rotated at its position, as a real cache holds it
    value: torch.Tensor
    acc: float = 0.0  # attention received, summed over the group's query heads (H2O)
    votes: float = 0.0  # attention from the observation window (SnapKV)
    chosen: bool = False


def _evict(heads: list, i: int, k: int, plan: CachePlan, window: int | None = None) -> None:
    """Cut every head's cache of one layer, in place, so that query ``i`` sees at most ``k`` keys per head
    (the layer's pool of heavy places when ``plan.pooled``). With a sliding ``window`` the caches hold only its keys
    (:func:`decode_literal` drops the others), and the places of the sinks that have left it go to the selection
    (:func:`keep_mask`)."""
    sinks, recent, heavy = plan.split(k)
    gone = min(max(0, i - window + 1), sinks) if window else 0
    recent += gone if plan.selection == "streaming" else 0
    fixed = lambda e: e.pos < sinks or e.pos > i - recent  # noqa: E731: never candidates
    if plan.selection in ("recent", "streaming"):
        for h, cache in enumerate(heads):
            heads[h] = [e for e in cache if fixed(e)]
        return
    places = (heavy + (gone if plan.selection == "h2o" else 0)) * (len(heads) if plan.pooled else 1)
    if plan.selection == "snapkv":
        if i == plan.prompt:  # choose once, by the smoothed votes of the prompt's keys
            for cache in heads:
                prompt = [e for e in cache if e.pos < plan.prompt]
                votes = torch.tensor([e.votes for e in prompt], dtype=torch.float64)
                smooth = F.avg_pool1d(votes[None, None], POOL, 1, POOL // 2, count_include_pad=False)[0, 0]
                for e, v in zip(prompt, smooth.tolist()):
                    e.votes = v
            for pool in _pools(heads, fixed, plan.pooled):
                for _, e in sorted(pool, key=lambda he: -he[1].votes)[:places]:
                    e.chosen = True
        for h, cache in enumerate(heads):
            heads[h] = [e for e in cache if fixed(e) or e.chosen]
        return
    for pool in _pools(heads, fixed, plan.pooled):
        while len(pool) > places:
            h, victim = min(pool, key=lambda he: he[1].acc)
            pool.remove((h, victim))
            heads[h] = [e for e in heads[h] if e is not victim]


def _pools(heads: list, fixed, pooled: bool) -> list:
    """The candidates for the heavy places, as (head, entry): one pool per head, or one for the layer."""
    pools = [[(h, e) for e in cache if not fixed(e)] for h, cache in enumerate(heads)]
    return [[he for pool in pools for he in pool]] if pooled else pools


class _Architecture:
    """What a literal decoder needs of a ``transformers`` decoder beyond its attention: Llama's (SmolLM2) or
    Gemma 3's (q/k norms, four norms per block, a rotary embedding per layer type, sliding-window layers)."""

    def __init__(self, model):
        cfg = model.config
        self.body, self.cfg = model.model, cfg
        self.gemma = hasattr(self.body.layers[0], "pre_feedforward_layernorm")
        self.H, self.G = cfg.num_attention_heads, cfg.num_key_value_heads
        self.d = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.H
        if self.gemma:
            from transformers.models.gemma3.modeling_gemma3 import apply_rotary_pos_emb
        else:
            from transformers.models.llama.modeling_llama import apply_rotary_pos_emb
        self.rotate = apply_rotary_pos_emb

    def rotary(self, h: torch.Tensor, i: int) -> list:
        """Each layer's (cos, sin) at position ``i``."""
        position = torch.tensor([[i]])
        if not self.gemma:
            return [self.body.rotary_emb(h, position)] * len(self.body.layers)
        by_type = {t: self.body.rotary_emb(h, position, t) for t in set(self.cfg.layer_types)}
        return [by_type[t] for t in self.cfg.layer_types]

    def window(self, layer) -> int | None:
        return getattr(layer.self_attn, "sliding_window", None) if self.gemma else None

    def qkv(self, layer, z: torch.Tensor, cos_sin) -> tuple:
        attn = layer.self_attn
        q = attn.q_proj(z).view(1, 1, self.H, self.d).transpose(1, 2)
        k = attn.k_proj(z).view(1, 1, self.G, self.d).transpose(1, 2)
        v = attn.v_proj(z).view(1, 1, self.G, self.d).transpose(1, 2)
        if self.gemma:
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = self.rotate(q, k, *cos_sin)
        return q, k, v

    def block(self, layer, h: torch.Tensor, attend) -> torch.Tensor:
        """The residual block around ``attend(normed input) → attention output before o_proj``."""
        attn = layer.self_attn
        if not self.gemma:
            h = h + attn.o_proj(attend(layer.input_layernorm(h)))
            return h + layer.mlp(layer.post_attention_layernorm(h))
        h = h + layer.post_attention_layernorm(attn.o_proj(attend(layer.input_layernorm(h))))
        return h + layer.post_feedforward_layernorm(layer.mlp(layer.pre_feedforward_layernorm(h)))


@torch.inference_mode()
def decode_literal(model, window: torch.Tensor, plan: CachePlan) -> torch.Tensor:
    """Logits (T, V) of one ``window`` (T,) decoded token by token with a real cache of rotated keys and
    values per layer and key/value head, cut to ``plan`` from the end of the prompt on (a sliding-window
    layer's cache also drops the keys that leave its window). Uses the model's weights and modules
    (embedding, norms, projections, rotary embedding, MLP) but none of its attention."""
    T = len(window)
    cfg = model.config
    check_plan(plan, cfg.num_hidden_layers, T)
    arch = _Architecture(model)
    body, G, g = arch.body, arch.G, arch.H // arch.G
    caches = [[[] for _ in range(G)] for _ in range(cfg.num_hidden_layers)]
    out = []
    for i in range(T):
        h = body.embed_tokens(window[i].reshape(1, 1))
        rotary = arch.rotary(h, i)
        for l, layer in enumerate(body.layers):
            heads, sliding = caches[l], arch.window(layer)

            def attend(z, l=l, layer=layer, heads=heads, sliding=sliding):
                q, k, v = arch.qkv(layer, z, rotary[l])
                for kv in range(G):
                    heads[kv].append(_Entry(i, k[0, kv, 0], v[0, kv, 0]))
                if sliding:  # a sliding cache holds its window, whatever the plan
                    lo = max(0, i - sliding + 1)
                    for kv in range(G):
                        heads[kv] = [e for e in heads[kv] if e.pos >= lo]
                if plan.selection is not None and i >= plan.prompt:
                    _evict(heads, i, int(plan.budgets[l]), plan, sliding)
                outputs = []
                for kv, cache in enumerate(heads):
                    keys = torch.stack([e.key for e in cache])
                    values = torch.stack([e.value for e in cache])
                    scores = q[0, kv * g:(kv + 1) * g, 0] @ keys.T * layer.self_attn.scaling
                    p = _softmax(scores).to(values.dtype)  # (g, S)
                    outputs.append(p @ values)
                    for e, a in zip(cache, p.sum(0).tolist()):
                        e.acc += a
                        if plan.prompt - OBSERVATION <= i < plan.prompt:
                            e.votes += a
                return torch.cat(outputs).reshape(1, 1, arch.H * arch.d)

            h = arch.block(layer, h, attend)
        out.append(model.lm_head(body.norm(h))[0, 0])
    return torch.stack(out)


# ----------------------------------------------------------------------------- evaluation

@torch.inference_mode()
def window_losses(model, windows: torch.Tensor, plan: CachePlan, batch_size: int = 16) -> np.ndarray:
    """Mean NLL (nats per token) over the decoded half of each window, (N,), under ``plan``: ``windows[n]``
    holds T + 1 tokens, the first T read and the last T predicted."""
    x, y = windows[:, :-1], windows[:, 1:]
    T = x.shape[1]
    part = scored(T)
    out = []
    with cache_plan(model, plan, T):
        for a in range(0, len(x), batch_size):
            logits = model(input_ids=x[a:a + batch_size]).logits[:, part].float()
            nll = F.cross_entropy(logits.transpose(1, 2), y[a:a + batch_size, part], reduction="none")
            out.append(nll.mean(-1).double().numpy())
    return np.concatenate(out)


def budget_fractions(length: int) -> list[int]:
    """The mean budgets per key/value head: 1/2, 1/4, 1/8 and 1/16 of the ``length``-token context."""
    return [length // f for f in BUDGET_SHARES]


def check_budgets(budgets, length: int, sinks: int = N_SINKS) -> list[int]:
    """Mean budgets as integers, or a one-line :class:`~attnpod.errors.ParameterError`: each must leave room for
    the sinks, a recent key and a heavy hitter, and fit the decoded context."""
    out = []
    if not len(budgets):
        raise ParameterError("the cache experiment needs at least one budget")
    for b in budgets:
        if isinstance(b, bool) or not float(b).is_integer():
            raise ParameterError(f"cache budgets are whole numbers of keys, got {b!r}")
        if not sinks + 2 <= int(b) <= length // 2:
            raise ParameterError(f"a mean cache budget of {b} keys is outside {sinks + 2}…{length // 2}: it must hold "
                                 f"the {sinks} sinks, a recent key and a heavy hitter, and at most the prompt")
        out.append(int(b))
    return out


def allocate_budget(scores, budget: int, length: int, sinks: int = N_SINKS) -> np.ndarray:
    """Keys per key/value head and layer ∝ ``scores``, Σ k_l = L·``budget``, each in [sinks + 2, T]."""
    return allocate(scores, len(scores) * int(budget), sinks + 2, length)


BUDGET_SHARES = (2, 4, 8, 16)  # budgets: the context over these
UNIFORM = SELECTION_LABELS["h2o"]  # H2O + sinks with equal budgets: the allocation rules' reference
NULL_RULES = PRIMARY_RULES  # the primary rules: their permutation null is run


def layer_scores(analysis) -> dict[str, np.ndarray]:
    """The analysis-guided rules' per-layer scores from the real model's causal analysis of *training-split*
    windows: ∝ H*(0.1), ∝ 1/H*(0.1), and ∝ the layer's normalised attention entropy (static: not LAVa, whose signal is per prompt),
    averaged over its heads."""
    scores = rule_scores(analysis)
    entropy = np.asarray(analysis.meta["statistics"]["normalised_entropy"], dtype=float).mean(-1)
    return {r: scores[r] for r in NULL_RULES} | {ENTROPY: entropy}


@dataclass
class RealCacheResult(BudgetResult):
    """NLL of every cache rule at every mean budget, per validation window, on the real model.

    losses[r, k, w] for ``rules[r]`` (``selections[r]``, heavy places ``pooled[r]`` per layer) at
    ``budgets[k]`` keys per key/value head on average, with keys per layer allocations[r, k, l];
    baseline[w] with the full cache. random_losses[d, k, u] of random splits random_allocations[d, k, l]
    (H2O + sinks) and the permutation null of ``null_rules[q]``, null_losses[q, k, p, u] of
    null_allocations[q, k, p, l] (NaN rows pad budgets with fewer orders), both on the first U windows;
    sinks[l]: each layer's attention on token 0 (training windows).
    """

    budgets: np.ndarray
    rules: list
    selections: list
    pooled: list
    losses: np.ndarray
    allocations: np.ndarray
    baseline: np.ndarray
    random_allocations: np.ndarray
    random_losses: np.ndarray
    null_rules: list
    null_allocations: np.ndarray
    null_losses: np.ndarray
    sinks: np.ndarray
    meta: dict

    SHAPES = {"budgets": ("K",), "losses": ("R", "K", "W"), "allocations": ("R", "K", "L"), "baseline": ("W",),
              "random_allocations": ("D", "K", "L"), "random_losses": ("D", "K", "U"),
              "null_allocations": ("Q", "K", "P", "L"), "null_losses": ("Q", "K", "P", "U"), "sinks": ("L",)}
    LISTS = ("rules", "selections", "pooled", "null_rules")
    PER_RULE = ("selections", "pooled")
    MAY_BE_NAN = ("null_allocations", "null_losses")
    WHAT = "real-model cache result"

    def same_as(self, rule: str, other: str) -> np.ndarray:
        """Per budget, whether ``rule`` does exactly what ``other`` does: the same plan, or the very same loss on
        every window (a plan that is the other's on this model: Ada-KV's pooling where each layer has one
        key/value head, as Gemma's do), (K,)."""
        return super().same_as(rule, other) | (self.loss(rule) == self.loss(other)).all(-1)

    @classmethod
    def load(cls, path):
        """The stored result (:meth:`CacheResult.load`), its rules under today's names (:data:`FORMER_NAMES`)."""
        result = super().load(path)
        renamed = lambda names: [FORMER_NAMES.get(n, n) for n in names]  # noqa: E731
        result.rules, result.null_rules = renamed(result.rules), renamed(result.null_rules)
        for key in ("scores", "decode_gaps"):  # the meta's dicts keyed by rule
            if key in result.meta:
                result.meta[key] = {FORMER_NAMES.get(r, r): v for r, v in result.meta[key].items()}
        return result


def run(model, windows: torch.Tensor, scores: dict, budgets, n_random: int = 50, n_perm: int = 19,
                   null_windows: int = 8, seed: int = 0, batch_size: int = 16, progress: bool = True,
                   memo_path=None, null_rules=NULL_RULES) -> RealCacheResult:
    """Every rule at every mean budget on ``windows`` (N, T + 1) of the real model.

    Selection rules split the budget equally across layers. Allocation rules keep H2O +
    sinks and split L·B: PyramidKV's schedule, ∝ each of ``scores`` (per layer, from
    training windows: :func:`layer_scores`), and Ada-KV's pooling of a layer's heads at
    equal layer budgets. ``n_random`` Dirichlet splits and the permutation null of each of
    ``null_rules`` (``n_perm`` distinct reorderings per budget) are scored on the first
    ``null_windows`` windows. Evaluations are kept in ``memo_path`` as they finish.
    """
    L, T = model.config.num_hidden_layers, windows.shape[1] - 1
    budgets = check_budgets(budgets, T)
    prompt = scored(T).start
    uniform = [np.full(L, b) for b in budgets]
    rules, selections, pooled, allocations = [], [], [], []

    def add(rule, selection, alloc, pool=False):
        rules.append(rule)
        selections.append(selection)
        pooled.append(pool)
        allocations.append(np.array(alloc))

    for selection in SELECTIONS:
        add(SELECTION_LABELS[selection], selection, uniform)
    add(PYRAMID, "h2o", [allocate_budget(pyramid_scores(L, b), b, T) for b in budgets])
    for rule, s in scores.items():
        add(rule, "h2o", [allocate_budget(s, b, T) for b in budgets])
    add(ADAKV, "h2o", uniform, True)
    random_allocations = random_splits(lambda s, b: allocate_budget(s, b, T), budgets, L, n_random, seed)
    null_rules = [r for r in null_rules if r in rules]
    null_allocations = rule_nulls([allocations[rules.index(r)] for r in null_rules], n_perm, seed, len(budgets), L)
    orders = null_orders(null_allocations)
    U = min(int(null_windows), len(windows))
    evaluations = Evaluations(1 + len(rules) * len(budgets) + n_random * len(budgets) + len(orders),
                              "cache evaluations (real model)", progress, memo_path)

    def evaluate(selection, alloc, pool=False, n=len(windows)):
        key = ",".join(str(int(a)) for a in alloc) if alloc is not None else ""
        plan = CachePlan(selection, () if alloc is None else tuple(int(a) for a in alloc), prompt, pool)
        return evaluations(selection, int(pool), key, n, compute=lambda: window_losses(model, windows[:n], plan,
                                                                                        batch_size))

    baseline = evaluate(None, None)
    losses = np.array([[evaluate(s, a, p) for a in allocs] for s, p, allocs in zip(selections, pooled, allocations)])
    random_losses = np.array([[evaluate("h2o", a, n=U) for a in draw] for draw in random_allocations]).reshape(
        n_random, len(budgets), U)
    null_losses = np.full((*null_allocations.shape[:3], U), np.nan)
    for q, k, p in orders:
        null_losses[q, k, p] = evaluate("h2o", null_allocations[q, k, p], n=U)
    evaluations.close()
    return RealCacheResult(np.array(budgets), rules, selections, pooled, losses, np.array(allocations), baseline,
                           random_allocations, random_losses, null_rules, null_allocations, null_losses,
                           np.zeros(L), {})


# ----------------------------------------------------------------------------- the experiment, cached and shipped

RESULT_KIND = "real_kv_cache"  # its kind among the shipped results
FORMAT = 1


def settings(spec=None, n_windows: int = 32, null_windows: int = 8, n_random: int = 50, n_perm: int = 19,
             train_windows: int = 64, seed: int = 42, budgets=None, null_rules=(PYRAMID, *NULL_RULES)) -> dict:
    """Everything the real model's cache experiment depends on: its validation windows (``n_windows``, the
    first ``null_windows`` for the random band and the permutation nulls), the rules' training windows, the
    budgets (default: :func:`budget_fractions`), the rules whose layer order gets a permutation null
    (PyramidKV's too: its claim is its order) and the rules' constants."""
    spec = SMOLLM2 if spec is None else spec
    budgets = budget_fractions(LENGTH) if budgets is None else check_budgets(budgets, LENGTH)
    check_counts({"n_windows": 2, "n_random": 0, "n_perm": 0, "train_windows": 2, "seed": 0}, n_windows=n_windows,
                 null_windows=null_windows, n_random=n_random, n_perm=n_perm, train_windows=train_windows, seed=seed)
    return {"gguf_sha256": spec.sha256, "n_windows": n_windows, "null_windows": min(null_windows, n_windows),
            "n_random": n_random, "n_perm": n_perm, "train_windows": train_windows, "length": LENGTH, "seed": seed,
            "budgets": budgets, "prompt": LENGTH // 2, "sinks": N_SINKS, "observation": OBSERVATION, "pool": POOL,
            "null_rules": list(null_rules), "format": FORMAT}


def training_analysis(text: str, settings: dict, spec=None, progress: bool = True):
    """The causal analysis of the real model's *training-split* windows, from which the rules' budgets come."""
    return analyse_pretrained(text, SMOLLM2 if spec is None else spec, settings["train_windows"], settings["length"],
                              settings["seed"], n_boot=0, n_half=0, progress=progress, split="train")["causal"]


def validation_windows(tokenised, settings: dict) -> torch.Tensor:
    """The experiment's validation windows, (N, T + 1): T tokens read and the last T predicted."""
    return tokenised.windows(settings["n_windows"], settings["length"] + 1, "val", settings["seed"])


def experiment_file(settings: dict, spec=None):
    """Where the store keeps the experiment's result for these settings."""
    return artifact_dir("kv_cache", (SMOLLM2 if spec is None else spec).key, settings) / "result.npz"


def checked_result(path, chosen: dict, listed: str) -> RealCacheResult:
    """The result at ``path``, or :class:`~attnpod.errors.CorruptFile` where it is not what ``listed`` says: made
    with the ``chosen`` settings (:func:`attnpod.shipped.result_misfit`: stored settings, budgets, random splits,
    windows)."""
    result = RealCacheResult.load(path)
    problem = result_misfit(result, chosen, chosen["n_windows"])
    if problem:
        raise CorruptFile(f"{path}: {problem}, but {listed} for these settings")
    return result


def shipped_grid(kind: str, spec, chosen: dict, folder=None, shipped_only: bool = False) -> RealCacheResult | None:
    """The verified shipped grid of ``kind`` for these settings in ``folder`` (default: the laptop book's), marked
    "shipped"; None where there is none and neither ``folder`` nor ``shipped_only`` asked for one; with
    ``shipped_only`` a missing one is a one-line :class:`~attnpod.shipped.MissingCheckpoint`."""
    if folder is None and not shipped_only:
        return None
    try:
        path = shipped_result("laptop", kind, spec.key, chosen, folder=folder, option=spec.option)
        return checked_result(path, chosen, "the manifest lists it").came_from("shipped", path)
    except MissingCheckpoint:
        if shipped_only:
            raise
    return None


def cache_experiment(text: str, chosen: dict | None = None, spec=None, shipped_folder=None, shipped_only=False,
                     progress: bool = True, batch_size: int = 16) -> RealCacheResult:
    """The real model's cache experiment (:func:`run`) with the ``chosen`` settings (default: :func:`settings`):
    the result shipped in ``shipped_folder`` if there, else the store's, else computed (about 53 minutes on
    2 CPU cores) and stored; its ``source`` and ``path`` say which. ``shipped_only``: a missing shipped
    result is a one-line :class:`~attnpod.shipped.MissingCheckpoint`, nothing computed."""
    spec = SMOLLM2 if spec is None else spec
    chosen = settings(spec) if chosen is None else chosen
    shipped = shipped_grid(RESULT_KIND, spec, chosen, shipped_folder, shipped_only)
    if shipped is not None:
        return shipped
    path = experiment_file(chosen, spec)
    with artifact_lock(path):
        result = reused(path, lambda p: checked_result(p, chosen, "the store keeps it"))
        if result is not None:
            return result.came_from("cached", path)
        analysis = training_analysis(text, chosen, spec, progress)
        scores = layer_scores(analysis)
        model, tokenizer = load_pretrained(spec)
        windows = validation_windows(Tokenised.of(text, tokenizer), chosen)
        result = run(model, windows, scores, chosen["budgets"], chosen["n_random"], chosen["n_perm"],
                     chosen["null_windows"], chosen["seed"], batch_size, progress,
                     memo_path=path.with_name("evaluations.npz"), null_rules=chosen["null_rules"])
        result.sinks = np.asarray(analysis.meta["statistics"]["sink"], dtype=float).mean(-1)
        result.meta = {**chosen, "scores": {r: np.asarray(s, dtype=float).tolist() for r, s in scores.items()},
                       "model": spec.label}
        result.save(path)
    return result.came_from("computed", path)


# ----------------------------------------------------------------------------- verdicts, cost, reproduction

SELECTION_RULES = tuple(SELECTION_LABELS.values())
ALLOCATION_RULES = (PYRAMID, *NULL_RULES, ENTROPY, ADAKV)
# The strongest baselines at each budget: the best of these (lowest mean loss) is what a rule must not lose to.
BASELINES = (SELECTION_LABELS["streaming"], SELECTION_LABELS["snapkv"], PYRAMID, ENTROPY, ADAKV)
PRIMARY = Primary(ALLOCATION_RULES, UNIFORM, BASELINES, "the real model's KV-cache budget", flat=FLAT)


def verdicts(result: RealCacheResult, rules=None) -> dict:
    """Each allocation rule's verdict against uniform H2O + sinks (:func:`attnpod.claims.allocation_verdict`):
    the analysis's rules (:data:`NULL_RULES`) with their permutation null, the published baselines without one;
    every rule against the best of :data:`BASELINES` at each budget."""
    return PRIMARY.verdicts(result, rules)


def rederived(result: RealCacheResult) -> Rederived:
    """Each split of the real-model grid that its stored scores define, made again with today's code
    (:func:`attnpod.experiments.budgets.rederive`): the equal splits (every selection rule, Ada-KV),
    PyramidKV's schedule and the rules whose scores the result stores."""
    L, T = result.allocations.shape[-1], int(result.meta["length"])
    scores = {r: np.ones(L) for r in (*SELECTION_RULES, ADAKV)} | {PYRAMID: lambda b: pyramid_scores(L, b)}
    scores |= result.meta["scores"]
    return rederive(result, lambda w, b: allocate_budget(w, b, T), scores)


KV_BYTES = 2  # a served cache holds float16 keys and values


def cache_cost(result: RealCacheResult, rule: str, k: int, config) -> dict:
    """What ``rule`` costs at budget index ``k`` per decoded token of the real model (``config``: its
    ``transformers`` config): attention FLOPs over the cached keys (q·k and p·v, 4 d per key and query head),
    the cache's keys and values (float16), and the selection's own bookkeeping: H2O's float32 scores (one per
    held key and key/value head), its operations per token (adding the group's query heads' attention to each
    held key's score, and comparing the candidates to evict the least); SnapKV's one-off votes at the prompt's
    end (the observation window's attention summed, then smoothed); none for a recent window or StreamingLLM."""
    H, G, T = config.num_attention_heads, config.num_key_value_heads, int(result.meta.get("length", 256))
    d = config.hidden_size // H
    r = result.rules.index(rule)
    counts = result.allocations[r, k]
    plan = CachePlan(result.selections[r], tuple(int(c) for c in counts), T // 2, result.pooled[r])
    heavy = sum(plan.split(int(c))[2] for c in counts)
    held = int(counts.sum())  # keys per key/value head, summed over layers: the cache is full when scored
    selection = plan.selection
    return {"attention FLOPs / token": 4 * H * d * held,
            "KV cache (KiB)": 2 * G * d * held * KV_BYTES / 1024,
            "selection scores (KiB)": G * held * 4 / 1024 if selection == "h2o" else 0.0,
            "selection ops / token": (H * held + G * heavy) if selection == "h2o" else 0,
            "one-off ops at the prompt's end": (OBSERVATION * H * (T // 2) + POOL * G * (T // 2)) * len(counts)
            if selection == "snapkv" else 0}


def cost_table(result: RealCacheResult, k: int, config, rules=None):
    """What each of ``rules`` (default: every selection and allocation rule) costs at budget index ``k``
    (:func:`cache_cost`), with its NLL increase: rules (rows) by costs."""
    import pandas as pd

    rules = (*SELECTION_RULES, *ALLOCATION_RULES) if rules is None else rules
    table = pd.DataFrame({rule: cache_cost(result, rule, k, config) for rule in rules}).T
    table["NLL +"] = [f"{result.increase(r)[k]:.3f}" for r in table.index]
    return table


def check_plans(length: int, budget: int, n_layer: int, which: str = "all") -> dict:
    """The plans the literal decoder checks at a uniform ``budget``: the full cache and, with ``which`` "all",
    every selection rule and Ada-KV's pooling; with "h2o", uniform H2O + sinks only."""
    plans = {"full cache": CachePlan(None)}
    plans |= {SELECTION_LABELS[s]: CachePlan(s, (budget,) * n_layer, length // 2) for s in SELECTIONS}
    plans[ADAKV] = CachePlan("h2o", (budget,) * n_layer, length // 2, pooled=True)
    if which == "h2o":
        plans = {k: plans[k] for k in ("full cache", UNIFORM)}
    elif which != "all":
        raise ParameterError(f"the decode check runs 'all' plans or 'h2o' only, not {which!r}")
    return plans


def decode_gap(model, x: torch.Tensor, plan: CachePlan) -> float:
    """The largest |Δ logit| between the masked forward pass under ``plan`` and the literal decoder
    (:func:`decode_literal`), over the windows ``x`` (N, T)."""
    T = x.shape[1]
    with torch.no_grad(), cache_plan(model, plan, T):
        simulated = model(input_ids=x).logits
    return max(float((decode_literal(model, x[w], plan) - simulated[w]).abs().max()) for w in range(len(x)))


DECODE_CHECK_TOKENS = {"smoke": 128}  # tokens a profile's literal decode check takes of each window (else all)


def decode_check_inputs(windows: torch.Tensor, n_windows: int, tokens: int, profile: str) -> torch.Tensor:
    """The inputs of a decode check: the first ``tokens`` inputs (0: :data:`DECODE_CHECK_TOKENS` of the
    ``profile``, else the whole window) of the first ``n_windows`` of ``windows`` (N, T + 1). The cache is
    causal, so a prefix decodes as the window's start does: a shorter check is the check of a shorter window
    of the same text (its first half prefilled, :func:`check_plans`)."""
    check_counts({"tokens": 0}, n_windows=n_windows, tokens=tokens)
    length = windows.shape[1] - 1
    tokens = min(tokens or DECODE_CHECK_TOKENS.get(profile, length), length)
    return windows[:n_windows, :-1][:, :tokens]


def decode_check(model, x: torch.Tensor, budget: int, which: str = "all", float64: bool = True):
    """The mask simulation against the literal decoder on the windows ``x`` at a uniform ``budget``
    (:func:`check_plans`), in float32, and with ``float64`` the full cache and uniform H2O + sinks again in
    float64, where rounding cannot hide a difference (the model is returned to float32). Returns the gaps
    ``{(plan, dtype): max |Δ logit|}`` and the verdict (:func:`attnpod.claims.simulation_matches`) on H2O +
    sinks in the finest precision, against the full cache's own gap as the floor."""
    check_counts({}, windows=len(x))
    plans = check_plans(x.shape[1], budget, model.config.num_hidden_layers, which)
    gaps = {(name, "float32"): decode_gap(model, x, plan) for name, plan in plans.items()}
    if float64:
        model.double()
        try:
            for name in ("full cache", UNIFORM):
                gaps[(name, "float64")] = decode_gap(model, x, plans[name])
        finally:
            model.float()
    dtype = "float64" if float64 else "float32"
    return gaps, simulation_matches(gaps[(UNIFORM, dtype)], floor=gaps[("full cache", dtype)])


def uniform_sink(length: int) -> float:
    """The attention uniform causal attention gives token 0, averaged over the queries i ≥ 1 of a window:
    the mean of 1/(i + 1), what :class:`attnpod.fields.LayerStatistics`' ``sink`` is compared with."""
    return float(np.mean(1.0 / (np.arange(1, length) + 1)))


@torch.inference_mode()
def logit_scale(model, x: torch.Tensor) -> float:
    """The largest |logit| of the full model on the windows ``x``: the scale a decode check's gaps compare with."""
    return float(model(input_ids=x).logits.abs().max())


def kv_bytes_per_token(config) -> int:
    """Bytes of float16 keys and values one token of context takes in the full cache, over all layers."""
    d = config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * config.num_key_value_heads * d * KV_BYTES


def reproduce(result: RealCacheResult, model, windows: torch.Tensor, rules, k: int, n_windows: int,
              batch_size: int = 16):
    """Recompute ``rules`` at budget index ``k`` and the full cache on the first ``n_windows`` of the
    experiment's ``windows``, against the stored losses: a table and :func:`attnpod.claims.reproduces`."""
    import pandas as pd

    check_counts({}, n_windows=n_windows)
    T = windows.shape[1] - 1
    rows = {}
    fresh = window_losses(model, windows[:n_windows], CachePlan(None), batch_size)
    rows["full cache"] = float(np.abs(fresh - result.baseline[:n_windows]).max())
    for rule in rules:
        r = result.rules.index(rule)
        plan = CachePlan(result.selections[r], tuple(int(c) for c in result.allocations[r, k]), T // 2, result.pooled[r])
        fresh = window_losses(model, windows[:n_windows], plan, batch_size)
        rows[f"{rule}, B = {int(result.budgets[k])}"] = float(np.abs(fresh - result.losses[r, k, :n_windows]).max())
    table = pd.Series(rows, name="max |Δ loss|").to_frame()
    return table, reproduces(max(rows.values()))
