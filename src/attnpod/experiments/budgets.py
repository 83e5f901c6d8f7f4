"""The frame every budget experiment shares: a budget split across layers ∝ scores, the rules' names, random
and permuted splits, each distinct split evaluated once, and the result every experiment stores.

A budget (heads kept, cache keys) is split into per-layer integer counts ∝ a rule's per-layer scores
(:func:`allocate`); a rule is judged against uniform counts, against random Dirichlet splits (a picture
of chance) and against its own counts given to other layers (its permutation null,
:func:`permuted_allocations`). The experiments on top: head pruning (:mod:`.pruning`), the character
models' KV cache (:mod:`.kvcache`) and a real model's (:mod:`.llmcache`); the verdicts on whether a split
helps are :func:`attnpod.claims.allocation_verdict`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..claims import experiment_verdicts
from ..errors import CorruptFile
from ..readings import top_scale_indices
from ..store import check_arrays, load_npz, save_npz, unverified, write_verified

# ----------------------------------------------------------------------------- the rules' names
# A rule's name is what a result file stores in its ``rules`` list and what a chapter prints: chapters and
# verdicts pick rules by these constants, never by their text.

UNIFORM_SCORES = "uniform"  # equal scores: equal counts


def h_star_rule(epsilon: float) -> str:
    """The rule that splits ∝ each layer's effective rank H*(ε)."""
    return f"∝ H*({epsilon:g})"


H_STAR = h_star_rule(0.1)  # the primary rule: ∝ H*(0.1)
INVERSE_H_STAR = "∝ 1/H*(0.1)"  # its mirror: the fewer modes, the more budget
T_SPEC = "∝ T_spec"  # ∝ the spectral concentration index
PRIMARY_RULES = (H_STAR, INVERSE_H_STAR)  # the analysis's rules: their permutation null is always run


def top_scale_rule(name: str) -> str:
    """The rule that splits ∝ each layer's top dominant lag scale under reading ``name``."""
    return f"∝ top scale ({name})"


# A split within this L1 distance of uniform's, Σ|k_l − B| / (L·B), tests nothing: "equivalent" would hold by
# construction, so its verdict is withheld ("not tested"). 10 %: a tenth of the keys moved between layers.
FLAT = 0.10


@dataclass(frozen=True)
class Primary:
    """An experiment's primary comparison: its ``rules``, the ``uniform`` rule they are set against, the
    ``baselines`` a "useful" rule must not lose to, and what is allocated (the verdicts' wording)."""

    rules: tuple
    uniform: str
    baselines: tuple
    what: str

    flat: float = 0.0  # splits within this L1 distance of uniform are not tested

    def verdicts(self, result, rules=None) -> dict:
        """:func:`attnpod.claims.experiment_verdicts` of ``rules`` (default: the primary ones) in ``result``,
        against the baselines it holds."""
        rules = [r for r in (self.rules if rules is None else rules) if r in result.rules]
        return experiment_verdicts(result, rules, self.uniform, [b for b in self.baselines if b in result.rules],
                                   self.what, self.flat)


# head pruning's published baselines (Michel, Levy & Neubig 2019) and its oracle
IMPORTANCE = "∝ importance"  # a layer's total importance (Michel's)
CUT_TO_ONE = "∝ cut-to-one loss"  # the loss increase when the layer alone keeps one head
MICHEL_ONE_SHOT, MICHEL_ITERATIVE, ORACLE = "Michel one-shot", "Michel iterative", "greedy oracle"


def guided(rules) -> list[str]:
    """The rules of ``rules`` that split ∝ a per-layer score (the ``∝ …`` rules), in their order."""
    return [r for r in rules if r.startswith("∝ ")]


# ----------------------------------------------------------------------------- splitting a budget

def allocate(scores, budget: int, lo: int = 1, hi: int | None = None) -> np.ndarray:
    """Integer counts ∝ ``scores`` that sum exactly to ``budget``, each in [lo, hi] (largest remainders); ``hi`` may
    be one cap per item.

    Quotas q_i = clip(λ·s_i, lo, hi) with λ found by bisection so that Σ q_i = B
    (plain proportional quotas B·s_i/Σs when no bound binds); then Hamilton's
    method: every item gets ⌊q_i⌋ and the largest remainders one more each.
    All-zero scores share equally.
    """
    scores = np.clip(np.asarray(scores, dtype=float), 0, None)
    n = len(scores)
    hi = np.broadcast_to(np.asarray(budget if hi is None else hi), (n,))
    if not n * lo <= budget <= hi.sum() or hi.min() < lo:
        bound = int(hi[0]) if (hi == hi[0]).all() else f"per-item caps up to {int(hi.max())}"
        raise ValueError(f"budget {budget} cannot be split into {n} counts in [{lo}, {bound}]")
    if scores.sum() <= 0:
        scores = np.ones(n)
    low, high = 0.0, hi.max() / scores[scores > 0].min()
    for _ in range(200):  # Σ clip(λ s, lo, hi) is continuous and non-decreasing in λ
        lam = 0.5 * (low + high)
        low, high = (lam, high) if np.clip(lam * scores, lo, hi).sum() < budget else (low, lam)
    quota = np.clip(high * scores, lo, hi)
    counts = np.floor(quota + 1e-9).astype(int)
    for i in np.argsort(-(quota - counts), kind="stable"):
        if counts.sum() >= budget:
            break
        if counts[i] < hi[i]:
            counts[i] += 1
    # Where the scored items all sit at hi, the rest of the budget cannot follow the scores: it goes
    # to the unscored items (tied), one each in turn, so that the counts always sum to the budget.
    order = np.argsort(-scores, kind="stable")
    while counts.sum() < budget:
        for i in order:
            if counts.sum() < budget and counts[i] < hi[i]:
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
    scores = {UNIFORM_SCORES: np.ones(len(rank))}
    scores |= {h_star_rule(e): rank[:, i] for i, e in enumerate(analysis.epsilons)}
    scores[INVERSE_H_STAR] = 1.0 / np.maximum(rank[:, 0], 1.0)
    scores[T_SPEC] = np.nan_to_num(index, nan=np.nanmean(index) if np.isfinite(index).any() else 1.0)
    return scores


def top_scales(analysis) -> dict[str, np.ndarray]:
    """Each layer's top dominant lag scale under Torrence–Compo power ("TC") and rectified power."""
    return {name: analysis.scales[top_scale_indices(analysis, reading)] for name, reading in
            (("TC", "tc"), ("rectified", "rectified"))}


# ----------------------------------------------------------------------------- provenance: splits made again

@dataclass(frozen=True)
class Rederived:
    """A stored result's splits made again from their stored scores with today's code: how many of the
    ``total`` (rule, budget) splits come out the same, and which do not."""

    agree: int
    total: int
    differ: tuple = ()  # (rule, budget) pairs whose stored counts today's code does not give

    def __add__(self, other: "Rederived") -> "Rederived":
        return Rederived(self.agree + other.agree, self.total + other.total, self.differ + other.differ)

    def __str__(self) -> str:
        return f"{self.agree} of {self.total} splits made again from their stored scores agree" + (
            f"; differ: {', '.join(f'{r} at {b}' for r, b in self.differ[:5])}" if self.differ else "")


def rederive(result: "BudgetResult", split, scores: dict) -> Rederived:
    """Every split of ``result`` whose rule has scores in ``scores`` (a rule name to per-layer scores, or to a
    function of the budget giving them), made again by ``split(scores, budget)`` and compared with the stored
    counts. A change in how a split is made shows here, where re-scoring the stored splits cannot see it."""
    agree, differ = 0, []
    for rule, given in scores.items():
        if rule not in result.rules:
            continue
        stored = result.counts(rule)
        for k, b in enumerate(result.budgets):
            weights = given(int(b)) if callable(given) else given
            if np.array_equal(stored[k], split(np.asarray(weights, dtype=float), int(b))):
                agree += 1
            else:
                differ.append((rule, int(b)))
    return Rederived(agree, agree + len(differ), tuple(differ))


# ----------------------------------------------------------------------------- the grid every experiment runs

def random_splits(split, budgets, n_layer: int, n_random: int, seed: int = 0) -> np.ndarray:
    """``n_random`` random splits of each budget, ``[d, k, l]``: ``split(w, b)`` of Dirichlet(1, …, 1) weights
    w, a fresh draw per split (seeded). A picture of chance, not the test."""
    rng = np.random.default_rng(seed)
    return np.array([[split(rng.dirichlet(np.ones(n_layer)), b) for b in budgets]
                     for _ in range(n_random)]).reshape(n_random, len(budgets), n_layer)


def null_orders(nulls: np.ndarray) -> list[tuple[int, int, int]]:
    """The (rule, budget, order) indices of a :func:`stack_nulls` array that hold an order (not padding)."""
    return list(zip(*np.nonzero(~np.isnan(nulls[..., 0]))))


def rule_nulls(splits: list, n_perm: int, seed: int, n_budgets: int, n_layer: int) -> np.ndarray:
    """The permutation null of each rule's ``splits[q][k, l]``: ``[q, k, p, l]`` (:func:`permuted_allocations`,
    NaN-padded)."""
    return stack_nulls([permuted_allocations(s, n_perm, seed) for s in splits], n_budgets, n_layer)


class Evaluations:
    """Each distinct evaluation once: ``evaluations(*key, compute=f)`` returns the per-window losses stored
    under ``key`` (its parts joined by "|"), computing ``f()`` the first time; a progress bar counts every
    request. With ``path`` the evaluations are kept on disk after each one, with a SHA-256 sidecar, so a
    killed run resumes where it stopped; a kept file that is damaged (its sidecar does not match, it cannot
    be read, or it holds anything but finite losses) is reported and the evaluations start again."""

    def __init__(self, total: int = 0, desc: str = "evaluations", progress: bool = True, path=None):
        from tqdm.auto import tqdm

        self.path = None if path is None else Path(path)
        self.done: dict = {} if self.path is None else kept_evaluations(self.path)
        self.bar = tqdm(total=total, desc=desc, disable=not progress)

    def __call__(self, *key, compute) -> np.ndarray:
        self.bar.update()
        name = "|".join(str(k) for k in key)
        if name not in self.done:
            self.done[name] = np.asarray(compute(), dtype=float)
            if self.path is not None:
                def write(tmp):
                    with open(tmp, "wb") as fh:
                        np.savez(fh, **self.done)

                write_verified(self.path, write)
        return self.done[name]

    def has(self, *key) -> bool:
        """Whether the evaluation stored under ``key`` is done (kept, or computed in this run)."""
        return "|".join(str(k) for k in key) in self.done

    def close(self) -> None:
        """Close the progress bar."""
        self.bar.close()


def kept_evaluations(path: Path) -> dict:
    """The evaluations kept at ``path`` by :class:`Evaluations`, or {} (with a warning where a file was there
    but cannot be trusted: no sidecar or one that does not match, unreadable, or not finite 1-D losses)."""
    import warnings
    import zipfile

    path = Path(path)
    if not path.exists():
        return {}
    why = unverified(path)
    done = {}
    if why is None:
        try:
            with np.load(path, allow_pickle=False) as data:
                done = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            why = f"it cannot be read ({type(err).__name__})"
    if why is None and not all(v.dtype.kind == "f" and v.ndim == 1 and np.isfinite(v).all() for v in done.values()):
        why = "it holds something other than finite losses"
    if why is not None:
        warnings.warn(f"{path}: {why}; its evaluations are made again", RuntimeWarning, stacklevel=3)
        return {}
    return done


# ----------------------------------------------------------------------------- the result every experiment stores

class BudgetResult:
    """What every budget experiment's result holds and how it is stored; each experiment's result class is a
    dataclass of these fields and its own (named by :attr:`SHAPES`).

    losses[r, k, w] of ``rules[r]`` at ``budgets[k]`` on evaluation window w; baseline[w] with the full model
    or cache; random_losses[d, k, u] of random splits; the permutation null of ``null_rules[q]`` (its losses
    in the array :attr:`NULL` names, [q, k, p, u], NaN rows where a budget has fewer distinct orders). Stored
    as one ``.npz``: the arrays, and as meta the lists :attr:`LISTS`, the numbers :attr:`NUMBERS` and ``meta``.
    """

    SHAPES: dict = {}
    LISTS = ("rules", "null_rules")
    NUMBERS: tuple = ()
    PER_RULE: tuple = ()  # lists with one entry per rule
    SIZES = {"R": "rules", "Q": "null_rules"}  # axis sizes fixed by a list's length
    NULL = "null_losses"
    MAY_BE_NAN: tuple = ()
    WHAT = "budget experiment's result"
    source = ""  # where this result came from: "shipped", "cached" or "computed" (not stored in the file)
    path = None  # the file it was read from or stored in

    def came_from(self, source: str, path) -> "BudgetResult":
        """This result, marked with its provenance: ``source`` and the file at ``path``."""
        self.source, self.path = source, Path(path)
        return self

    def loss(self, rule: str) -> np.ndarray:
        """The losses of ``rule`` at each budget and window: (K, W)."""
        return self.losses[self.rules.index(rule)]

    def increase(self, rule: str) -> np.ndarray:
        """Mean loss increase over the full model or cache at each budget: (K,)."""
        return (self.loss(rule) - self.baseline).mean(-1)

    def counts(self, rule: str) -> np.ndarray:
        """What ``rule`` gives each layer at each budget (heads, or keys per head): (K, L)."""
        return self.allocations[self.rules.index(rule)]

    def null(self, rule: str) -> np.ndarray | None:
        """The permutation null's losses ``[k, p, u]`` of ``rule`` (its own split reordered across layers), if run."""
        return getattr(self, self.NULL)[self.null_rules.index(rule)] if rule in self.null_rules else None

    def selects_as(self, rule: str, other: str) -> bool:
        """Whether ``rule`` has the same entry as ``other`` in every per-rule list (such as the selection and the
        pooling): the two then differ in their counts only."""
        a, b = self.rules.index(rule), self.rules.index(other)
        return all(getattr(self, k)[a] == getattr(self, k)[b] for k in self.PER_RULE)

    def same_as(self, rule: str, other: str) -> np.ndarray:
        """Per budget, whether ``rule`` does exactly what ``other`` does (the same counts, and the same entry in
        every per-rule list, such as the selection): (K,)."""
        return (self.counts(rule) == self.counts(other)).all(-1) & self.selects_as(rule, other)

    def random_median(self) -> np.ndarray:
        """Per budget and window, the median loss over the random splits: (K, U)."""
        return np.median(self.random_losses, axis=0)

    def save(self, path: Path) -> None:
        """Store the result at ``path`` (:func:`attnpod.store.save_npz`)."""
        arrays = {k: v for k, v in self.__dict__.items() if isinstance(v, np.ndarray)}
        save_npz(path, {k: getattr(self, k) for k in (*self.LISTS, *self.NUMBERS, "meta")}, arrays)

    @classmethod
    def load(cls, path: Path):
        """The result stored at ``path``, checked (its meta, every array, its shape and finiteness), or
        :class:`~attnpod.errors.CorruptFile`."""
        meta, arrays = load_npz(path)
        if (set(meta) != {*cls.LISTS, *cls.NUMBERS, "meta"} or not isinstance(meta["meta"], dict)
                or not all(isinstance(meta[k], list) for k in cls.LISTS)
                or not all(isinstance(meta[k], (int, float)) and not isinstance(meta[k], bool) for k in cls.NUMBERS)
                or not all(isinstance(r, str) for r in (*meta["rules"], *meta["null_rules"]))):
            raise CorruptFile(f"{path}: its meta is not a {cls.WHAT}")
        R = len(meta["rules"])
        for k in cls.PER_RULE:
            if len(meta[k]) != R:
                raise CorruptFile(f"{path}: {R} rules but {len(meta[k])} {k}")
        check_arrays(path, arrays, cls.SHAPES, {axis: len(meta[k]) for axis, k in cls.SIZES.items()},
                     may_be_nan=cls.MAY_BE_NAN)
        return cls(**arrays, **meta)
