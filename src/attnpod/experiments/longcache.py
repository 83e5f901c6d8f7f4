"""KV budgets at long context on a real model: where a budget matters, against the controls that could beat H*.

The 256-token grid (:mod:`.llmcache`) splits budgets that hardly differ from uniform; here a
window is :data:`LENGTH` tokens, its first half (the prompt) prefilled with full attention,
the cache then cut to a mean budget of 1/2 to 1/16 of the prompt per key/value head, and the
second half decoded and scored. Selection is H2O + sinks for every allocation rule
(:mod:`.llmcache`'s masks, exact for one forward pass); the prefill is computed once per batch
of windows and shared by every plan (:func:`decode_losses`), which halves the work.

Allocation rules (each a split of L·B keys across layers, :func:`split_budget`):

* uniform; PyramidKV's schedule; Ada-KV's pooling of a layer's heads at equal layer budgets;
* ∝ H*(0.1) and ∝ 1/H*(0.1), with H* from the causal analysis of :data:`H_STAR_WINDOWS`
  training windows of 256 tokens: the N of chapter 13's analysis, so that H* is not the flat
  46–53 of 64 the 256-token grid read;
* the **ZigZagKV** layer-minimal budget: per layer, the fewest keys that hold 1 − ε of a
  query's attention (ε = :data:`ZIGZAG_EPSILON`), averaged over the query heads and the
  decoded rows of :data:`CALIBRATION_WINDOWS` training windows at this length: the same
  "how many keys does a layer need" read from raw attention, without POD;
* ∝ the layer's mean normalised row entropy on the same calibration windows (a static
  rule: it is not LAVa, whose signal is per prompt);
* random Dirichlet splits; the permutation null of each rule whose split is at least
  :data:`FLAT` from uniform at the null's budgets.

No rule is charged for keys that do not exist: a layer holds at most P + 1 keys (the keys at
the first decoded position P), the excess going to the other layers, so every rule holds the
same number of keys at every scored position.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from ..claims import l1_distances, reproduces
from ..config import check_counts
from ..errors import ParameterError
from ..store import artifact_dir, artifact_lock, reused
from .budgets import (FLAT, H_STAR, INVERSE_H_STAR, Evaluations, Primary, Rederived, allocate, null_orders, random_splits,
                      rederive, rule_nulls, rule_scores)
from .cache_rules import ADAKV, ENTROPY, N_SINKS, PYRAMID, pyramid_scores, scored
from .llmcache import (SELECTION_LABELS, UNIFORM, CachePlan, PromptScores, RealCacheResult, cache_plan,
                       checked_result, decode_literal, shipped_grid, watching)
from ..pretrained import GEMMA3, SMOLLM2, Tokenised, analyse_pretrained, load_pretrained

LENGTH = 1024  # tokens per window: the first half prefilled, the second decoded and scored
BUDGET_SHARES = (2, 4, 8, 16)  # mean budgets: the prompt over these
H_STAR_WINDOWS, H_STAR_LENGTH = 200, 256  # H*'s training windows: chapter 13's N and length
CALIBRATION_WINDOWS = 16  # training windows at LENGTH for the ZigZagKV and entropy rules
ZIGZAG_EPSILON = 0.1  # ZigZagKV: the attention mass a layer's minimal budget may leave out
ZIGZAG = "ZigZagKV layer-minimal budget"
ROW_ENTROPY = ENTROPY  # ∝ the layer's mean normalised row entropy: a static rule, not LAVa
ALLOCATION_RULES = (PYRAMID, H_STAR, INVERSE_H_STAR, ZIGZAG, ROW_ENTROPY, ADAKV)
NULL_CANDIDATES = (PYRAMID, H_STAR, INVERSE_H_STAR, ZIGZAG)  # rules whose layer order is the claim
SELECTIONS = ("streaming", "snapkv")  # selection baselines beside H2O + sinks (equal layer budgets)
BASELINES = (SELECTION_LABELS["streaming"], SELECTION_LABELS["snapkv"], PYRAMID, ROW_ENTROPY, ADAKV)


def budgets_of(length: int = LENGTH) -> list[int]:
    """The mean budgets per key/value head: 1/2 to 1/16 of the ``length``-token window's prompt."""
    return [length // 2 // s for s in BUDGET_SHARES]


def split_budget(scores, budget: int, length: int, sinks: int = N_SINKS, windows=None) -> np.ndarray:
    """Keys per key/value head and layer ∝ ``scores``, Σ k_l = L·``budget``, each in [sinks + 2, P + 1]: no layer
    holds more keys than exist at the first decoded position P = ``length``/2, so every split holds L·B keys at
    every scored position. ``windows[l]`` (None or a layer's sliding window, :func:`layer_windows`) caps a
    sliding layer at its window too: it can never see more keys than that."""
    caps = np.full(len(scores), length // 2 + 1)
    if windows is not None:
        caps = np.minimum(caps, [w if w else caps[0] for w in windows])
    return allocate(scores, len(scores) * int(budget), sinks + 2, caps)


def layer_windows(model) -> list:
    """Each layer's sliding window (Gemma's local layers), or None where it attends to every earlier key."""
    return [getattr(layer.self_attn, "sliding_window", None) for layer in model.model.layers]


def architecture_split(windows, budget: int, length: int, sinks: int = N_SINKS) -> np.ndarray:
    """The known answer of a model with sliding-window layers: each sliding layer holds min(B, its window) keys,
    the rest of L·B goes to the global layers (each capped at P + 1; what they cannot hold goes back). Where no
    sliding layer's share reaches its window it is the uniform split: the architecture then asks for nothing else."""
    L, P = len(windows), length // 2
    caps = np.array([min(int(budget), w, P + 1) if w else P + 1 for w in windows])
    return allocate(np.ones(L), L * int(budget), sinks + 2, caps)


def l1_distance(counts, reference) -> float:
    """Σ_l |k_l − r_l| / Σ_l r_l: how far a split is from a reference split (0: the same)."""
    return float(l1_distances(counts, reference))


# ----------------------------------------------------------------------------- calibration: what raw attention says

def minimal_keys(probabilities: torch.Tensor, epsilon: float) -> torch.Tensor:
    """The fewest keys holding at least 1 − ``epsilon`` of each row's attention ``probabilities[..., T]``."""
    ordered = probabilities.sort(-1, descending=True).values.double().cumsum(-1)
    return (ordered < 1 - epsilon - 1e-12).sum(-1) + 1  # a row that reaches 1 − ε exactly stops there


class Calibration:
    """A watcher (:func:`attnpod.experiments.llmcache.watching`) that averages, per layer, over the query heads and
    the decoded rows (the second half) of full-attention windows: ZigZagKV's minimal keys at ``epsilon``, the
    normalised row entropy (entropy / log of the keys a row sees) and the attention on token 0."""

    def __init__(self, n_layer: int, epsilon: float = ZIGZAG_EPSILON):
        self.epsilon = epsilon
        self.sums = np.zeros((3, n_layer))
        self.rows = np.zeros(n_layer)

    def prompt(self, layer: int):
        return None

    def saw(self, layer: int, p: torch.Tensor) -> None:
        T = p.shape[-1]
        rows = p[..., T // 2:, :].double()  # (B, G, g, R, T), rows at positions T/2 … T − 1
        seen = torch.arange(T // 2, T, dtype=torch.float64) + 1  # keys each row sees (the causal ones)
        entropy = -(rows * torch.log(rows.clamp_min(1e-300))).sum(-1) / torch.log(seen)
        self.sums[:, layer] += [float(minimal_keys(rows, self.epsilon).double().sum()), float(entropy.sum()),
                                float(rows[..., 0].sum())]
        self.rows[layer] += rows[..., 0].numel()

    def means(self) -> dict:
        """{"minimal keys", "row entropy", "sink"}: per layer, (L,)."""
        m = self.sums / self.rows
        return {"minimal keys": m[0], "row entropy": m[1], "sink": m[2]}


@torch.inference_mode()
def calibrate(model, windows: torch.Tensor, epsilon: float = ZIGZAG_EPSILON, batch_size: int = 2,
              progress: bool = True) -> dict:
    """:class:`Calibration`'s per-layer means over ``windows`` (N, T) with full attention."""
    from tqdm.auto import tqdm

    watcher = Calibration(model.config.num_hidden_layers, epsilon)
    T = windows.shape[1]
    with cache_plan(model, CachePlan(None), T), watching(watcher):
        for a in tqdm(range(0, len(windows), batch_size), desc="calibration windows", disable=not progress):
            model(input_ids=windows[a:a + batch_size])
    return watcher.means()


def layer_scores(analysis, calibration: dict) -> dict[str, np.ndarray]:
    """The rules' per-layer scores: ∝ H*(0.1) and ∝ 1/H*(0.1) from the training ``analysis``, ZigZagKV's minimal
    keys and the row entropy from the ``calibration`` (:func:`calibrate`)."""
    scores = rule_scores(analysis)
    return {H_STAR: scores[H_STAR], INVERSE_H_STAR: scores[INVERSE_H_STAR],
            ZIGZAG: np.asarray(calibration["minimal keys"], dtype=float),
            ROW_ENTROPY: np.asarray(calibration["row entropy"], dtype=float)}


# ----------------------------------------------------------------------------- a prefill shared by every plan

class _Prefill:
    """A watcher that keeps each layer's :class:`~attnpod.experiments.llmcache.PromptScores` from the prefill."""

    def __init__(self):
        self.scores: dict = {}

    def prompt(self, layer: int):
        return None

    def saw(self, layer: int, p: torch.Tensor) -> None:
        self.scores[layer] = PromptScores.of(p)


class _Prompted:
    """A watcher that gives a decode pass its prompt's scores."""

    def __init__(self, scores: dict):
        self.scores = scores

    def prompt(self, layer: int):
        return self.scores[layer]

    def saw(self, layer: int, p: torch.Tensor) -> None:
        pass


@torch.inference_mode()
def decode_logits(model, x: torch.Tensor, plans: dict):
    """For windows ``x`` (B, T): the logits (B, T − P, V) of the decoded half under each of ``plans`` (a name to a
    :class:`~attnpod.experiments.llmcache.CachePlan`, all with the prompt P = T/2), the prefill computed once
    and shared; yields (name, logits)."""
    from transformers import DynamicCache

    T = x.shape[1]
    P = T // 2
    watcher = _Prefill()
    with cache_plan(model, CachePlan(None), T), watching(watcher):
        # a plain cache: every layer keeps all its keys (a sliding-window layer's own cache would drop the old ones;
        # the attention function masks them instead, so that positions stay those of the window)
        past = model(input_ids=x[:, :P], cache=DynamicCache(), use_cache=True).cache
    prompted = _Prompted(watcher.scores)
    for name, plan in plans.items():
        if plan.selection is not None and plan.prompt != P:
            raise ParameterError(f"a shared prefill of {P} tokens cannot serve a plan with a prompt of {plan.prompt}")
        with cache_plan(model, plan, T), watching(prompted):
            yield name, model(input_ids=x[:, P:], cache=copy.deepcopy(past), use_cache=True).logits


def nll(logits: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Mean NLL (nats per token) per window of ``logits`` (B, R, V) against ``targets`` (B, R)."""
    return F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none").mean(-1).double().numpy()


def decode_losses(model, windows: torch.Tensor, plans: dict, evaluations: Evaluations, batch_size: int = 8) -> dict:
    """Per plan (a name to (plan, n): scored on the first n ``windows``, (N, T + 1)), the NLL of the decoded half
    per window, (n,): batch by batch, the prefill shared, each (plan, batch) kept by ``evaluations`` as it ends."""
    x, y = windows[:, :-1], windows[:, 1:]
    part = scored(x.shape[1])
    out = {name: [] for name in plans}
    for a in range(0, len(x), batch_size):
        ends = {name: min(a + batch_size, n) for name, (_, n) in plans.items() if n > a}
        keys = {name: (name, f"{a}:{end}") for name, end in ends.items()}

        def kept(name, logits=None):
            return evaluations(*keys[name], compute=lambda: nll(logits[:ends[name] - a], y[a:ends[name], part]))

        todo = {name: plans[name][0] for name in ends if not evaluations.has(*keys[name])}
        if todo:
            for name, logits in decode_logits(model, x[a:max(ends.values())], todo):
                out[name].append(kept(name, logits))
        for name in ends:
            if name not in todo:
                out[name].append(kept(name))
    return {name: np.concatenate(v) for name, v in out.items()}


def plan_name(selection, counts, pooled: bool = False) -> str:
    """An evaluation's key: its selection, pooling and per-layer counts."""
    return f"{selection}|{int(pooled)}|" + ",".join(str(int(c)) for c in np.atleast_1d(counts))


# ----------------------------------------------------------------------------- the grid

def run(model, windows: torch.Tensor, scores: dict, budgets, n_random: int, n_perm: int, null_budgets, null_windows: int,
        seed: int = 0, batch_size: int = 8, progress: bool = True, memo_path=None,
        null_rules=NULL_CANDIDATES) -> RealCacheResult:
    """Every rule at every mean budget on ``windows`` (N, T + 1): the selection baselines (:data:`SELECTIONS`) and
    uniform H2O + sinks at equal budgets, each allocation rule (:data:`ALLOCATION_RULES`; ``scores`` from
    :func:`layer_scores`), ``n_random`` Dirichlet splits and the permutation null (``n_perm`` orders) at
    ``null_budgets`` of each of ``null_rules`` whose split is at least :data:`FLAT` from uniform there (a flat
    split's verdict is withheld: its null would test nothing), those on the first ``null_windows`` windows."""
    L, T = model.config.num_hidden_layers, windows.shape[1] - 1
    P = T // 2
    sliding = layer_windows(model)
    split = lambda s, b: split_budget(s, b, T, windows=sliding)  # noqa: E731
    uniform = [np.full(L, b) for b in budgets]
    rules, selections, pooled, allocations = [], [], [], []

    def add(rule, selection, alloc, pool=False):
        rules.append(rule)
        selections.append(selection)
        pooled.append(pool)
        allocations.append(np.array(alloc))

    add(UNIFORM, "h2o", uniform)
    for selection in SELECTIONS:
        add(SELECTION_LABELS[selection], selection, uniform)
    add(PYRAMID, "h2o", [split(pyramid_scores(L, b), b) for b in budgets])
    for rule in (H_STAR, INVERSE_H_STAR, ZIGZAG, ROW_ENTROPY):
        add(rule, "h2o", [split(scores[rule], b) for b in budgets])
    add(ADAKV, "h2o", uniform, True)
    random_allocations = random_splits(split, budgets, L, n_random, seed)
    null_rules = list(null_rules)
    nulls = rule_nulls([allocations[rules.index(r)] for r in null_rules], n_perm, seed, len(budgets), L)
    for q, rule in enumerate(null_rules):
        for k, b in enumerate(budgets):
            if b not in null_budgets or l1_distance(allocations[rules.index(rule)][k], uniform[k]) < FLAT:
                nulls[q, k] = np.nan
    U = min(int(null_windows), len(windows))
    N = len(windows)
    plans = {"full": (CachePlan(None), N)}
    for s, p, allocs in zip(selections, pooled, allocations):
        for a in allocs:
            plans.setdefault(plan_name(s, a, p), (CachePlan(s, tuple(int(c) for c in a), P, p), N))
    extra = [a for draw in random_allocations for a in draw] + [nulls[o] for o in null_orders(nulls)]
    for a in extra:
        name = plan_name("h2o", a)
        if name not in plans:
            plans[name] = (CachePlan("h2o", tuple(int(c) for c in a), P), U)
    batches = -(-N // batch_size)
    total = sum(-(-n // batch_size) for _, n in plans.values())
    evaluations = Evaluations(total, f"long-context cache evaluations ({len(plans)} plans, {batches} batches)",
                              progress, memo_path)
    losses = decode_losses(model, windows, plans, evaluations, batch_size)
    evaluations.close()
    at = lambda name, n=None: losses[name][:n]  # noqa: E731
    loss_grid = np.array([[at(plan_name(s, a, p)) for a in allocs] for s, p, allocs in zip(selections, pooled, allocations)])
    random_losses = np.array([[at(plan_name("h2o", a), U) for a in draw] for draw in random_allocations]).reshape(
        n_random, len(budgets), U)
    null_losses = np.full((*nulls.shape[:3], U), np.nan)
    for q, k, p in null_orders(nulls):
        null_losses[q, k, p] = at(plan_name("h2o", nulls[q, k, p]), U)
    return RealCacheResult(np.array(budgets), rules, selections, pooled, loss_grid, np.array(allocations),
                           at("full"), random_allocations, random_losses, null_rules, nulls, null_losses,
                           np.zeros(L), {})


# ----------------------------------------------------------------------------- the literal check at this length

CHECKED = (UNIFORM, SELECTION_LABELS["streaming"], SELECTION_LABELS["snapkv"], ADAKV, PYRAMID)
FLOOR_TOKENS = 256  # the full cache's literal decode (the rounding floor) on the window's first tokens


def check_plans(result: RealCacheResult, k: int) -> dict:
    """The plans the literal decoder checks at budget index ``k``: each selection and Ada-KV at equal budgets, and
    PyramidKV's uneven split (the analysis-driven splits differ from these in their counts only)."""
    P = int(result.meta.get("length", LENGTH)) // 2
    plans = {}
    for rule in CHECKED:
        r = result.rules.index(rule)
        plans[rule] = CachePlan(result.selections[r], tuple(int(c) for c in result.allocations[r, k]), P,
                                result.pooled[r])
    return plans


def decode_check(model, window: torch.Tensor, plans: dict, progress: bool = True) -> dict:
    """The largest |Δ logit| over the decoded half of one ``window`` (T,) between the shared-prefill simulation
    (:func:`decode_logits`) and the literal decoder (:func:`attnpod.experiments.llmcache.decode_literal`), per plan;
    "full cache": the rounding floor, the full cache's literal decode against one forward pass on the window's
    first :data:`FLOOR_TOKENS` tokens (a literal full cache at the whole length is quadratic in Python)."""
    from tqdm.auto import tqdm

    P = len(window) // 2
    simulated = dict(decode_logits(model, window[None], plans))
    short = window[:min(FLOOR_TOKENS, len(window))]
    with torch.inference_mode(), cache_plan(model, CachePlan(None), len(short)):
        full = model(input_ids=short[None]).logits[0]
    gaps = {"full cache": float((decode_literal(model, short, CachePlan(None)) - full).abs().max())}
    for name, plan in tqdm(plans.items(), desc="literal decodes", disable=not progress):
        gaps[name] = float((decode_literal(model, window, plan)[P:] - simulated[name][0]).abs().max())
    return gaps


# ----------------------------------------------------------------------------- the experiment, cached and shipped

RESULT_KIND = "real_kv_long"
FORMAT = 1


DESIGNS = {  # per model, what differs from :func:`settings`' defaults: Gemma's 262k-token head makes a window's
    # decode 4.5 to 10 s per plan on 2 cores (SmolLM2: about 0.9 s), so its grid takes fewer windows. ZigZagKV beat
    # uniform at every budget of Gemma's first grid (run without its null, and with 9 orders: too few to bind),
    # so the second grid runs its permutation null too, with SmolLM2's 19 orders: is it the layer order that helps?
    GEMMA3.key: {"n_windows": 16, "null_windows": 8,
                 "null_rules": [PYRAMID, H_STAR, INVERSE_H_STAR, ZIGZAG]},
}


def settings(spec=None, n_windows: int | None = None, null_windows: int | None = None, n_random: int = 2,
             n_perm: int | None = None, null_budgets=None, null_rules=None, calibration_windows: int = CALIBRATION_WINDOWS,
             seed: int = 42, length: int = LENGTH, budgets=None, check_budget: int | None = None,
             h_star_windows: int = H_STAR_WINDOWS) -> dict:
    """Everything the long-context grid depends on: ``n_windows`` validation windows of ``length`` + 1 tokens
    (the first ``null_windows`` for the random splits and nulls; defaults per model in :data:`DESIGNS`, else 32,
    16 and ``n_perm`` 19 orders), the budgets (default :func:`budgets_of`), the
    permutation null's budgets (default: 1/8 of the prompt) and rules, the calibration, H*'s analysis and the
    literal check's budget (default: the smallest)."""
    spec = SMOLLM2 if spec is None else spec
    design = {"n_windows": 32, "null_windows": 16, "n_perm": 19,
              "null_rules": (PYRAMID, H_STAR, INVERSE_H_STAR)} | DESIGNS.get(spec.key, {})
    n_windows = design["n_windows"] if n_windows is None else n_windows
    null_rules = design["null_rules"] if null_rules is None else null_rules
    null_windows = design["null_windows"] if null_windows is None else null_windows
    n_perm = design["n_perm"] if n_perm is None else n_perm
    budgets = budgets_of(length) if budgets is None else [int(b) for b in budgets]
    null_budgets = [length // 16] if null_budgets is None else [int(b) for b in null_budgets]
    check_counts({"n_windows": 2, "null_windows": 2, "n_random": 0, "n_perm": 0, "calibration_windows": 1,
                  "seed": 0, "length": 32}, n_windows=n_windows, null_windows=null_windows, n_random=n_random,
                 n_perm=n_perm, calibration_windows=calibration_windows, seed=seed, length=length)
    for b in budgets:
        if not N_SINKS + 2 <= b <= length // 2:
            raise ParameterError(f"a mean budget of {b} keys is outside {N_SINKS + 2}…{length // 2} (the prompt)")
    if not set(null_rules) <= set(NULL_CANDIDATES):
        raise ParameterError(f"the permutation null is run for rules among {NULL_CANDIDATES}, not {null_rules}")
    if not set(null_budgets) <= set(budgets):
        raise ParameterError(f"the null's budgets {null_budgets} must be among the budgets {budgets}")
    return {"gguf_sha256": spec.sha256, "n_windows": n_windows, "null_windows": min(null_windows, n_windows),
            "n_random": n_random, "n_perm": n_perm, "null_budgets": null_budgets, "null_rules": list(null_rules), "length": length, "seed": seed,
            "budgets": budgets, "prompt": length // 2, "sinks": N_SINKS, "calibration_windows": calibration_windows,
            "zigzag_epsilon": ZIGZAG_EPSILON, "h_star_windows": h_star_windows, "h_star_length": H_STAR_LENGTH,
            "flat": FLAT, "check_budget": min(budgets) if check_budget is None else int(check_budget),
            "format": FORMAT}


def windows_of(tokenised: Tokenised, chosen: dict, split: str, n: int, bos: int | None = None) -> torch.Tensor:
    """``n`` disjoint windows of ``length`` + 1 tokens of the ``split``, seeded; a model that expects it (Gemma)
    gets its ``bos`` token first."""
    return tokenised.windows(n, chosen["length"] + 1, split, chosen["seed"], bos)


def experiment_file(chosen: dict, spec=None):
    """Where the store keeps the grid for these settings."""
    return artifact_dir("kv_cache", (SMOLLM2 if spec is None else spec).key + "-long", chosen) / "result.npz"


LOGIT_BYTES = 2 ** 31  # a batch's decoded logits (float32) stay within this


def batch_size_of(model, length: int, largest: int = 8) -> int:
    """Windows per batch: at most ``largest``, and few enough that a batch's decoded logits fit :data:`LOGIT_BYTES`
    (SmolLM2: 8 at 1024 tokens; Gemma, with 262,144 tokens in its vocabulary: 4)."""
    return int(np.clip(LOGIT_BYTES // (length // 2 * model.config.vocab_size * 4), 1, largest))


def long_experiment(text: str, chosen: dict | None = None, spec=None, shipped_folder=None, shipped_only=False,
                    progress: bool = True, batch_size: int | None = None) -> RealCacheResult:
    """The long-context grid (:func:`run`) with the ``chosen`` settings: shipped, else the store's, else computed
    (kept as it goes: a rerun resumes) and stored, with its calibration, its rules' scores and the literal check in
    its ``meta``."""
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
        analysis = analyse_pretrained(text, spec, chosen["h_star_windows"], chosen["h_star_length"], chosen["seed"],
                                      n_boot=0, n_half=0, progress=progress, split="train")["causal"]
        model, tokenizer = load_pretrained(spec)
        tokens = Tokenised.of(text, tokenizer)
        bos = tokenizer.bos_token_id if spec.bos else None
        calibration = calibrate(model, windows_of(tokens, chosen, "train", chosen["calibration_windows"], bos)[:, :-1],
                                progress=progress)
        scores = layer_scores(analysis, calibration)
        windows = windows_of(tokens, chosen, "val", chosen["n_windows"], bos)
        batch_size = batch_size_of(model, chosen["length"]) if batch_size is None else batch_size
        result = run(model, windows, scores, chosen["budgets"], chosen["n_random"], chosen["n_perm"],
                     chosen["null_budgets"], chosen["null_windows"], chosen["seed"], batch_size, progress,
                     memo_path=path.with_name("evaluations.npz"), null_rules=chosen["null_rules"])
        result.sinks = np.asarray(calibration["sink"], dtype=float)
        result.meta = {**chosen, "scores": {r: np.asarray(s, dtype=float).tolist() for r, s in scores.items()},
                       "model": spec.label}
        if any(layer_windows(model)):
            result.meta["windows"] = layer_windows(model)
        k = chosen["budgets"].index(chosen["check_budget"])
        result.meta["decode_gaps"] = decode_check(model, windows[0, :-1], check_plans(result, k), progress)
        result.save(path)
    return result.came_from("computed", path)


# ----------------------------------------------------------------------------- verdicts and reproduction

PRIMARY = Primary(ALLOCATION_RULES, UNIFORM, BASELINES, "the real model's KV-cache budget at long context", flat=FLAT)


def verdicts(result: RealCacheResult, rules=None) -> dict:
    """Each allocation rule's verdict against uniform H2O + sinks (:func:`attnpod.claims.allocation_verdict`), with
    its permutation null where it was run, against the best of :data:`BASELINES`; a split within :data:`FLAT` of
    uniform at a budget is not tested there."""
    return PRIMARY.verdicts(result, rules)


def distances(result: RealCacheResult, reference=UNIFORM):
    """Each rule's L1 distance (:func:`l1_distance`) per budget from ``reference``: a rule of the grid (its own row
    left out) or a split per budget, (K, L) (:func:`architecture_splits`); rules (rows) by budgets."""
    import pandas as pd

    named = isinstance(reference, str)
    splits = result.counts(reference) if named else np.asarray(reference)
    rules = [r for r in result.rules if not (named and r == reference)]
    return pd.DataFrame({int(b): [l1_distance(result.counts(r)[k], splits[k]) for r in rules]
                         for k, b in enumerate(result.budgets)}, index=pd.Index(rules, name="rule"))


def architecture_splits(result: RealCacheResult):
    """The architecture-aware split (:func:`architecture_split`) at each of the grid's budgets, (K, L), for a model
    with sliding-window layers (recorded in its ``meta``); None for one without."""
    windows = result.meta.get("windows")
    if not windows:
        return None
    T = int(result.meta["length"])
    return np.array([architecture_split(windows, int(b), T) for b in result.budgets])


def rederived(result: RealCacheResult) -> Rederived:
    """Each split of the grid that its stored scores define, made again with today's code (:func:`split_budget`)."""
    L, T = result.allocations.shape[-1], int(result.meta["length"])
    scores = {r: np.ones(L) for r in (UNIFORM, *(SELECTION_LABELS[s] for s in SELECTIONS), ADAKV)}
    scores |= {PYRAMID: lambda b: pyramid_scores(L, b)} | result.meta["scores"]
    windows = result.meta.get("windows")  # a model with sliding-window layers records them
    return rederive(result, lambda w, b: split_budget(w, b, T, windows=windows), scores)


def reproduce(result: RealCacheResult, model, windows: torch.Tensor, rules, k: int, n_windows: int,
              batch_size: int = 8):
    """Recompute ``rules`` at budget index ``k`` and the full cache on the first ``n_windows`` of the grid's
    ``windows`` (shared prefill), against the stored losses: a table and :func:`attnpod.claims.reproduces`."""
    import pandas as pd

    check_counts({}, n_windows=n_windows)
    P = int(result.meta["length"]) // 2
    plans = {"full cache": (CachePlan(None), n_windows)}
    stored = {"full cache": result.baseline}
    for rule in rules:
        r = result.rules.index(rule)
        name = f"{rule}, B = {int(result.budgets[k])}"
        plans[name] = (CachePlan(result.selections[r], tuple(int(c) for c in result.allocations[r, k]), P,
                                 result.pooled[r]), n_windows)
        stored[name] = result.losses[r, k]
    fresh = decode_losses(model, windows[:n_windows], plans, Evaluations(0, "", False), batch_size)
    rows = {name: float(np.abs(fresh[name] - stored[name][:n_windows]).max()) for name in plans}
    return pd.Series(rows, name="max |Δ loss|").to_frame(), reproduces(max(rows.values()))
