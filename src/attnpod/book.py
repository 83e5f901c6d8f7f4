"""The book's named results: what a chapter shows, computed from a :class:`~attnpod.study.Study`.

Each figure of the book is a recipe in :data:`FIGURES`, by name; ``python -m attnpod
figure NAME`` draws the same recipe, so the command line's figure is the book's.
Naming the figures imports no matplotlib (a command that does not draw starts
without it); drawing one does.

The command line's parser reads :data:`FIGURES` from here, so this module imports
nothing at its top that needs torch or matplotlib: the stages that do (the study, the
experiments, the real models, the figures) are imported inside the functions that use
them. Their names (the rules', the readings') come from the torch-free modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .config import check_counts
from .errors import ParameterError
from . import estimators, readings
from .experiments.budgets import H_STAR, INVERSE_H_STAR, UNIFORM_SCORES
from .experiments.cache_rules import H2O, PYRAMID_H2O
from .readings import CHOSEN, READINGS

if TYPE_CHECKING:
    from .study import Study

# ----------------------------------------------------------------------------- the book's figures, by name

def theorem1_check(study: "Study", r_max: int = 40):
    """Theorem 1 on BASE, layer 2, at its top scale, by an independent computation.

    The explicit windowed snapshot matrix, a plain POD, and the mean squared error of
    the reconstruction with r = 0…r_max modes. Returns (POD result, errors, layer, a*).
    """
    from .lag import gaussian_lag_window, to_lag
    from .pod import pod

    base = study.analysis("base")
    l = min(1, study.profile.n_layer - 1)
    a = base.scales[base.dominant_index[l, 0]]
    L = to_lag(study.fields("base")[:, l])  # L[n, i, tau]
    X = (L * gaussian_lag_window(study.profile.block_size, a)).reshape(len(L), -1).astype(np.float64)
    explicit = pod(X, n_modes=r_max)
    errors = [np.mean(np.sum((X - explicit.reconstruct(r)) ** 2, axis=1)) for r in range(min(r_max, len(explicit.modes)) + 1)]
    return explicit, errors, l, a


# ----------------------------------------------------------------------------- named results of the chapters

def coherency_maps(study: "Study", a: float = 4.0, models=("base", "ega1"), layers=(0, 2, 5)):
    """Chapter 07: cross-coherency maps ``maps[(variant, l)][i, j]`` at the paper scale nearest ``a``, for the
    given layers that exist; returns (maps, the scale used)."""
    from .analysis import nearest_scale_index
    from .wavelet import cross_coherency, paper_scales

    scales = paper_scales()
    a = scales[nearest_scale_index(scales, a)]
    return {(v, l): cross_coherency(study.fields(v)[:, l], a) for v in models for l in layers
            if l < study.profile.n_layer}, a


def future_leak(model, windows, vocab_size: int, seed: int = 0) -> tuple[float, float]:
    """Chapter 08: the largest |Δ logit| and the mean KL at positions < T/2 when only positions ≥ T/2 change
    (random tokens, seeded): zero for a causal model."""
    import torch

    T = windows.shape[1]
    changed = windows.clone()
    gen = torch.Generator().manual_seed(seed)
    changed[:, T // 2:] = torch.randint(vocab_size, changed[:, T // 2:].shape, generator=gen)
    model = model.cpu().eval()
    with torch.no_grad():
        a, b = model(windows)[0][:, : T // 2], model(changed)[0][:, : T // 2]
    kl = torch.nn.functional.kl_div(b.log_softmax(-1), a.log_softmax(-1), log_target=True, reduction="none").sum(-1)
    return (a - b).abs().max().item(), kl.mean().item()


def conv_twin(base, conv):
    """Chapter 08: a CONV-L4 model with BASE's trained weights and CONV-L4's own lag logits (they never train),
    so that the two differ only in the lag arithmetic."""
    from .models import GPT

    twin = GPT(conv.config)
    state = base.state_dict() | {k: v for k, v in conv.state_dict().items() if "lag_logits" in k}
    twin.load_state_dict(state, strict=True)
    return twin.eval()


OUR_READINGS = ("tc", "rectified", "tc_fluct", "rectified_fluct")  # the wavelet readings of our orientation
BOOK_READINGS = (*OUR_READINGS, CHOSEN)  # ... and the reading of range chosen on the bench


def column_labels(suffix: str = "") -> dict[str, str]:
    """The verdict matrix's column label of each reading (:data:`BOOK_READINGS` and the published pipeline)."""
    labels = {r: f"{READINGS[r]}{suffix}" for r in BOOK_READINGS}
    return labels | {"published": f"published pipeline{suffix}"}


def reading_columns(study: "Study") -> dict:
    """The paper's claims under every reading, ``{reading: {claim: Verdict}}``: our readings and the
    published pipeline on the validation windows, ours on whole-file windows."""
    from . import claims

    columns = claim_columns(study.analyses(), study.analyses("published"), "; validation")
    whole_file = study.on_split("all").analyses()
    for r, label in column_labels("; whole file").items():
        if r != "published":
            columns[label] = claims.reading_verdicts(whole_file, r)
    return columns


def claim_columns(analyses: dict, published: dict, suffix: str = "") -> dict:
    """The paper's claims under our readings (:data:`BOOK_READINGS`) of ``analyses`` and the published
    pipeline's reading of ``published`` (the same models analysed with orientation="published"):
    ``{label: {claim: Verdict}}``, labelled by :func:`column_labels`."""
    from . import claims

    return {label: claims.reading_verdicts(published if r == "published" else analyses, r)
            for r, label in column_labels(suffix).items()}


# ----------------------------------------------------------------------------- the method against known answers

# The bench's sizes per book profile: the window length, ensemble sizes and draws (noise levels: bench's).
_FULL_BENCH = {"T": 64, "sizes": (32, 128), "draws": 3}
BENCH_SETTINGS = {"smoke": {"T": 64, "sizes": (32,), "draws": 1}, "laptop": _FULL_BENCH, "paper": _FULL_BENCH}
SIGHT = {True: "sees", False: "blind"}


def known_answers(profile: str, progress: bool = True):
    """The bench (:func:`attnpod.bench.known_answers`) at the profile's sizes (:data:`BENCH_SETTINGS`), cached."""
    from .bench import known_answers as run

    if profile not in BENCH_SETTINGS:
        raise ParameterError(f"unknown profile {profile!r}; choose one of {sorted(BENCH_SETTINGS)}")
    return run(**BENCH_SETTINGS[profile], progress=progress)


def sight(recovery, reading: str) -> str:
    """What the bench says ``reading`` can see, in a few words: "range: sees; rank: blind; not fooled by sinks"."""
    seen = recovery.can_see()[reading]
    sinks = "not fooled by sinks" if seen.get("sink") else "fooled by sinks"
    return f"range: {SIGHT[seen['range']]}; rank: {SIGHT[seen['rank']]}; {sinks}"


def sight_table(recovery, suffixes=("",)):
    """Each verdict-matrix column (:func:`column_labels` for every suffix) with what the bench says its reading
    can see: a DataFrame indexed by column label."""
    import pandas as pd

    rows = {label: sight(recovery, r) for suffix in suffixes for r, label in column_labels(suffix).items()}
    return pd.Series(rows, name="what the bench says the reading can see").to_frame()


def blind_marked(verdicts, recovery, suffixes=("",)):
    """The verdict table (claims × columns) with the scale claim's cell marked "(blind to range on the bench)"
    under every reading that fails the bench's range cases: such a verdict says nothing of the claim."""
    from .claims import CLAIM_ROWS

    marked = verdicts.copy()
    for suffix in suffixes:
        for r, label in column_labels(suffix).items():
            if label in marked.columns and not recovery.sees(r, "range"):
                marked.loc[CLAIM_ROWS["scale"], label] += " (blind to range on the bench)"
    return marked


def verdict_matrices(study: "Study"):
    """Chapter 11: the paper's claims (rows) under every reading (columns), and what each verdict rests on."""
    from . import claims

    return claims.verdict_matrix(reading_columns(study))


def seed_verdict_matrix(study: "Study"):
    """Chapter 11: every cell of the verdict matrix judged on each of the study's training seeds
    (:attr:`Study.seeds`), as "disagree in 5 of 5 seeds" or "seed-dependent: ..."
    (:func:`attnpod.claims.across_seeds`). Returns the table and the cells."""
    from . import claims

    per_seed = {s: reading_columns(study.seed_study(s)) for s in study.seeds}
    columns = next(iter(per_seed.values()))
    return claims.seed_matrix({r: {s: cols[r] for s, cols in per_seed.items()} for r in columns})


def seed_losses(study: "Study", causal: bool = False):
    """Each seed's final validation loss (seeds by models): the four models, and with ``causal`` the
    causal-gate EGA-1 too, EGA-1's gain over BASE and the share of it the causal gate keeps."""
    import pandas as pd

    models = (*study.models, "ega1_causal") if causal else study.models
    rows = {}
    for s in study.seeds:
        val = {v: study.seed_study(s).trained(v).history.val[-1] for v in models}
        rows[s] = {study.label(v): val[v] for v in models}
        if causal:
            gain, kept = val["ega1"] - val["base"], val["ega1_causal"] - val["base"]
            rows[s] |= {"EGA-1 − BASE": gain, "causal EGA-1 − BASE": kept,
                        "share kept by the causal gate": kept / gain if gain < 0 else float("nan")}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("seed")


def with_spread(table, fmt: str = "{:.4f}"):
    """``table`` (seeds by columns) formatted, with a last row "mean ± sd" over the seeds."""
    import pandas as pd

    cells = table.map(lambda x: fmt.format(x))
    spread = {c: fmt.format(table[c].mean()) + (f" ± {fmt.format(table[c].std(ddof=1))}" if len(table) > 1 else "")
              for c in table.columns}
    return pd.concat([cells, pd.DataFrame([spread], index=[f"mean ± sd ({len(table)} seeds)"])])


def shipped_comparison(study: "Study"):
    """Chapter 01: the models trained here against the shipped ones of the same seed and settings, the
    evidence that the shipped models are what this code trains: final validation loss (the training
    record) and the loss on the fixed check windows (the weights themselves), with their differences.
    Models without a shipped twin get an empty row."""
    import copy

    import pandas as pd

    from .config import parse_model_name
    from .shipped import check_loss, shipped_entry, shipped_root

    folder = shipped_root(study.profile.name, folder=study.shipped_folder or None)
    rows = {}
    for v in study.models:
        entry = shipped_entry(study.profile, *parse_model_name(v), study.corpus.vocab_size, folder)
        t = study.trained(v)
        weights = copy.deepcopy(t.model)  # check_loss moves a model to the CPU: not the study's own
        here = {"val loss, trained here": t.history.val[-1], "check loss, trained here": check_loss(weights, study.corpus)}
        if entry is None:
            rows[study.label(v)] = here
            continue
        rows[study.label(v)] = here | {
            "val loss, shipped": entry["val_loss"], "check loss, shipped": entry["check"]["val_loss"],
            "Δ val loss": here["val loss, trained here"] - entry["val_loss"],
            "Δ check loss": here["check loss, trained here"] - entry["check"]["val_loss"],
            "shipped from": f"{entry['device']}, torch {entry['torch']}, {entry['date'][:10]}"}
    return pd.DataFrame.from_dict(rows, orient="index")


# The per-layer numbers whose spread over seeds the book shows: the top scale under each reading, and
# the shape of the spectrum at the Torrence–Compo top scale.
SEED_STATISTICS = {"top scale, TC": "tc", "top scale, rectified": "rectified",
                   "top scale, TC fluct.": "tc_fluct", "top scale, rectified fluct.": "rectified_fluct",
                   "𝒯_spec": None, "H*(0.10)": None, "first-mode share": None}


def seed_measurements(study: "Study"):
    """Every seed's per-layer numbers (:data:`SEED_STATISTICS`, plus the published pipeline's top scale),
    one row per (statistic, model, layer, seed), on the validation snapshots."""
    import pandas as pd

    from . import claims
    from .pod import effective_rank, spectral_concentration

    rows = []
    for s in study.seeds:
        st = study.seed_study(s)
        for v in study.models:
            result, published = st.analysis(v), st.analysis(v, orientation="published")
            layers = np.arange(result.eigenvalues.shape[0])
            lam = result.eigenvalues[layers, claims.top_scale_indices(result, "tc")]  # (L, N)
            values = {name: result.scales[claims.top_scale_indices(result, r)]
                      for name, r in SEED_STATISTICS.items() if r}
            values["top scale, published"] = published.scales[claims.top_scale_indices(published, "published")]
            values["𝒯_spec"] = np.array([spectral_concentration(x) for x in lam])
            values["H*(0.10)"] = np.array([effective_rank(x, 0.10) for x in lam], dtype=float)
            values["first-mode share"] = lam[:, 0] / np.maximum(lam.sum(-1), 1e-300)
            rows += [{"statistic": name, "model": study.label(v), "layer": l + 1, "seed": s, "value": float(x)}
                     for name, vals in values.items() for l, x in enumerate(vals)]
    return pd.DataFrame(rows)


def seed_spread(frame, fmt: str = "{:.3g}"):
    """A table of "mean ± sd" over seeds: rows (statistic, model), columns layers, from
    :func:`seed_measurements` (or any frame with statistic, model, layer, seed and value)."""
    grouped = frame.groupby(["statistic", "model", "layer"], sort=False)["value"]
    cells = grouped.agg(lambda x: fmt.format(x.mean()) + (" ± " + fmt.format(x.std(ddof=1)) if len(x) > 1 else ""))
    return cells.unstack("layer").rename(columns=lambda l: f"layer {l}")


def adapter_comparison(study: "Study", n_windows: int = 0) -> dict:
    """Chapter 12: BASE converted to a ``transformers`` GPT-2, its fields through the HuggingFace adapter
    against our own, and both analyses. ``n_windows`` (0: the profile's N) validation windows."""
    from . import adapters
    from .analysis import analyse_fields
    from .data import sample_windows
    from .fields import collect_fields

    P = study.profile
    base = study.trained("base").model.cpu()
    hf_model = adapters.to_hf_gpt2(base)  # a transformers GPT2LMHeadModel with BASE's weights
    windows = sample_windows(study.corpus, n_windows or P.n_snapshots, P.block_size, "val", seed=P.seed)
    theirs = adapters.hf_fields(hf_model, windows, progress=False)  # through transformers, output_attentions=True
    ours = collect_fields(base, windows, progress=False)             # through our own model
    return {"theirs": theirs, "ours": ours, "result_hf": analyse_fields(theirs, n_boot=0, n_half=0, progress=False),
            "result_ours": analyse_fields(ours, n_boot=0, n_half=0, progress=False)}


def pruning_results(study: "Study", n_random: int = 10, oracle_models=("base",), eval_batches: int = 4,
                    oracle_batches: int = 1, n_perm: int = 19, models=None) -> dict:
    """Chapter 09: every head-allocation rule on every model (:meth:`~attnpod.study.Study.pruning`), cached."""
    return {v: study.pruning(v, n_random=n_random, oracle=v in oracle_models, n_eval=eval_batches,
                             n_oracle=oracle_batches, n_perm=n_perm) for v in (models or study.models)}


def head_rank_maps(study: "Study", variant: str = "base", **options) -> tuple[np.ndarray, np.ndarray]:
    """Chapter 09: per-head H*(0.10) from training-split snapshots and per-head importance, both (L, H)."""
    P = study.profile
    per_head = study.analysis(variant, split="train", heads="all", n_boot=0, n_half=0)
    rank = per_head.effective_rank[:, 0].reshape(P.n_layer, P.n_head)
    return rank, pruning_results(study, **options)[variant].importance


def cache_results(study: "Study", n_random: int = 10, n_windows: int = 64, models=None, n_perm: int = 19,
                  null_windows: int = 32) -> dict:
    """Chapter 10: every KV-cache rule on the models that decode token by token, cached."""
    from .study import CACHE_MODELS

    return {v: study.kv_cache(v, n_random=n_random, n_windows=n_windows, n_perm=n_perm, null_windows=null_windows)
            for v in (models or CACHE_MODELS)}


def sink_protection(study: "Study", results: dict, n_windows: int = 64, null_windows: int = 32) -> tuple:
    """Chapter 10's primary comparison again with sink protection (:func:`attnpod.experiments.kvcache.sink_protected_losses`),
    on each model of ``results`` (its cache result brings the rules' scores): the verdicts of PyramidKV's
    schedule and of ∝ H*(0.1) (with its permutation null on the first ``null_windows`` windows) against
    uniform H2O, all keeping the sinks, and per model the paired NLL difference that keeping them makes to
    uniform H2O at each budget."""
    from . import claims
    from .experiments import kvcache

    PYRAMID, UNIFORM = kvcache.PYRAMID, kvcache.UNIFORM
    x, y = study.cache_windows(n_windows)
    verdicts, effect = {}, {}
    for v, r in results.items():
        losses, allocations, null = kvcache.sink_protected_losses(study.trained(v).model, x, y,
                                                          r.meta["scores"][H_STAR], r.budgets,
                                                          null_windows=null_windows, seed=study.profile.seed)
        for rule in (PYRAMID, H_STAR):
            same = (allocations[rule] == allocations[UNIFORM]).all(-1)
            baseline, permuted = (losses[PYRAMID], null) if rule != PYRAMID else (None, None)
            verdicts[(study.label(v), rule)] = claims.allocation_verdict(
                losses[rule], losses[UNIFORM], r.budgets, permuted, baseline, rule, "the KV-cache budget (sinks kept)",
                same_as_uniform=same)
        effect[study.label(v)] = {f"B = {int(b)}": str(claims.compare(losses[UNIFORM][k] - r.loss(UNIFORM)[k], seed=k))
                                  for k, b in enumerate(r.budgets)}
    return verdicts, effect


# Chapters 09 and 10 on a profile's other training seeds (Study.seed_study): the primary comparisons with their
# permutation nulls, read from the results `python -m attnpod experiments --seed S` ships; the greedy oracle and
# the band of random splits stay on the book's own seed.
EXTRA_SEED_EXPERIMENTS = {"pruning": {"n_random": 0, "oracle_models": ()}, "kv_cache": {"n_random": 0}}


def experiment_options(study: "Study", kind: str, **chosen) -> dict:
    """The options of experiment ``kind`` ("pruning" or "kv_cache") for this study's seed: the chapter's
    ``chosen`` ones, with :data:`EXTRA_SEED_EXPERIMENTS` on any seed but the profile's first."""
    from .study import BOOK_SEEDS

    own = BOOK_SEEDS.get(study.profile.name, (42,))[0]
    return {**chosen, **(EXTRA_SEED_EXPERIMENTS[kind] if study.profile.seed != own else {})}


def primary_comparison(kind: str):
    """The primary comparison (:class:`~attnpod.experiments.budgets.Primary`) of experiment ``kind``: "pruning"
    or "kv_cache"."""
    from .experiments import kvcache, pruning

    return {"pruning": pruning.PRIMARY, "kv_cache": kvcache.PRIMARY}[kind]


def seed_experiment_results(study: "Study", kind: str, **options) -> dict:
    """Experiment ``kind`` ("pruning" or "kv_cache") on each of the study's training seeds
    (:attr:`~attnpod.study.Study.seeds`), with the chapter's ``options`` (:func:`experiment_options`):
    ``{seed: {model: result}}``, read from the shipped results where they match, else computed."""
    run = pruning_results if kind == "pruning" else cache_results
    return {s: run(study.seed_study(s), **experiment_options(study.seed_study(s), kind, **options))
            for s in study.seeds}


def seed_experiment_verdicts(study: "Study", kind: str, seed_results: dict):
    """The primary comparisons of :data:`PRIMARY_COMPARISONS` on every model and seed of ``seed_results``
    (:func:`seed_experiment_results`), each judged by the chapter's criterion
    (:func:`attnpod.claims.experiment_verdicts`) and then across seeds
    (:func:`attnpod.claims.across_seeds`). Returns the table (rows: model and rule; a column per
    seed, then "across seeds") and the cells ``{(model label, rule): SeedVerdict}``."""
    import pandas as pd

    from . import claims

    primary = primary_comparison(kind)
    what = primary.what
    per_seed: dict = {}
    for s, results in seed_results.items():
        for v, result in results.items():
            for rule, verdict in primary.verdicts(result).items():
                per_seed.setdefault((study.label(v), rule), {})[s] = verdict
    cells = {key: claims.across_seeds(by_seed, f"{key[1]} guides {what}, {key[0]}") for key, by_seed in per_seed.items()}
    table = pd.DataFrame({key: {**{f"seed {s}": claims.verdict_phrase(v) for s, v in by_seed.items()},
                                "across seeds": str(cells[key])} for key, by_seed in per_seed.items()}).T
    return table.rename_axis(["model", "rule"]), cells


def across_models_and_seeds(cells: dict, rule: str) -> str:
    """One rule's verdict across seeds on each model, in words: "BASE: worse in 5 of 5 seeds; ..."."""
    return "; ".join(f"{model}: {cell}" for (model, r), cell in cells.items() if r == rule)



# The subset of a shipped experiment a build recomputes: these rules at the middle budget, on the first
# evaluation batch (pruning) or REPRODUCED_WINDOWS windows (cache).
REPRODUCED_RULES = {"pruning": (UNIFORM_SCORES, H_STAR), "kv_cache": (H2O, PYRAMID_H2O, H_STAR)}
REPRODUCED_WINDOWS = 8


def reproduction_check(study: "Study", kind: str, results: dict):
    """Chapters 09 and 10: every model's experiment ``results`` (``kind`` "pruning" or "kv_cache") where
    shipped, with :data:`REPRODUCED_RULES` recomputed here at the middle budget on the first windows and
    set against the shipped losses. Returns the table (one row per model and rule, its source, the
    largest |Δ loss|) and the :func:`attnpod.claims.reproduces` verdict over the shipped rows (None if
    nothing was shipped)."""
    from .experiments import kvcache, pruning
    import pandas as pd

    from . import claims

    rows, worst = [], []
    for v, result in results.items():
        if result.source != "shipped":
            rows.append({"model": study.label(v), "rule": "(all)", "result": "computed"})
            continue
        model, k = study.trained(v).model, len(result.budgets) // 2
        for rule in REPRODUCED_RULES[kind]:
            r = result.rules.index(rule)
            if kind == "pruning":
                batches = study.pruning_windows(int(result.meta["n_eval"]) + int(result.meta["n_oracle"]))
                here = pruning.batch_losses(model, batches[:1], result.masks[r, k])
            else:
                x, y = study.cache_windows(int(result.meta["n_windows"]))
                n = REPRODUCED_WINDOWS
                here = kvcache.window_losses(model, x[:n], y[:n], result.selections[r], result.allocations[r, k])
            gap = float(np.abs(here - result.losses[r, k, :len(here)]).max())
            worst.append(gap)
            rows.append({"model": study.label(v), "rule": rule, "result": "shipped",
                         "budget": int(result.budgets[k]), "windows": len(here), "max |Δ loss|": gap})
    verdict = claims.reproduces(max(worst)) if worst else None
    return pd.DataFrame(rows).set_index(["model", "rule"]), verdict


def rederived_splits(study: "Study", kind: str, seed_results: dict):
    """Every split of ``seed_results`` (``{seed: {model: result}}``) made again from its stored scores with
    today's code (:func:`attnpod.experiments.budgets.rederive`), summed: a :class:`~attnpod.experiments.budgets.Rederived`."""
    from .experiments import kvcache, pruning
    from .experiments.budgets import Rederived

    def made(result):
        return pruning.rederived(result) if kind == "pruning" else kvcache.rederived(result, study.profile.block_size)

    return sum((made(r) for results in seed_results.values() for r in results.values()), Rederived(0, 0))


def seed_reproduction_check(study: "Study", kind: str, seed_results: dict):
    """:func:`reproduction_check` on every seed of ``seed_results`` (``{seed: results}``, as
    :func:`seed_experiment_results` returns): the table with a seed level first, and the verdict over all."""
    import pandas as pd

    from . import claims

    tables = {s: reproduction_check(study.seed_study(s), kind, results) for s, results in seed_results.items()}
    gaps = [float(t["max |Δ loss|"].max()) for t, v in tables.values() if v is not None]
    return (pd.concat({s: t for s, (t, _) in tables.items()}, names=["seed"]),
            claims.reproduces(max(gaps)) if gaps else None)


# ----------------------------------------------------------------------------- the character models' KV cache (chapter 10)

def cache_middle(result, block_size: int) -> int:
    """Chapter 10's budget index: the one nearest B = 16 keys at T = 256, scaled to ``block_size``."""
    return int(np.argmin(np.abs(result.budgets - 16 * block_size / 256)))


def interval_text(d: float, lo: float, hi: float) -> str:
    """A paired difference with its 95 % interval: "+0.012 [-0.003, +0.027]"."""
    return f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def sink_texts(study: "Study", results: dict):
    """Chapter 10: each model's attention on token 0 per layer against uniform attention's, in words, and as a
    table (models by layers)."""
    import pandas as pd

    ratio = {study.label(v): r.sinks / r.sink_uniform for v, r in results.items()}
    text = "; ".join(f"{k}: {v.min():.1f}–{v.max():.1f}× uniform" for k, v in ratio.items())
    table = pd.DataFrame({study.label(v): [f"{x:.4f}" for x in r.sinks] for v, r in results.items()},
                         index=study.layer_labels).T
    return text, table


def cache_decode_check(study: "Study", models, budget: int, n_windows: int = 1, of_windows: int = 64):
    """Chapter 10: the mask simulation against the literal decoder (:func:`attnpod.experiments.kvcache.decode_check`)
    on each model, every selection rule at a uniform ``budget``, on the first ``n_windows`` of the experiment's
    ``of_windows`` windows: the table of max |Δ logit| and the verdict (:func:`attnpod.claims.simulation_matches`)
    on the largest."""
    from .experiments import kvcache
    import pandas as pd

    from . import claims

    check_counts({}, decode_check_windows=n_windows)
    x, _ = study.cache_windows(of_windows)
    gaps = {(study.label(v), label): gap for v in models
            for label, gap in kvcache.decode_check(study.trained(v).model, x, budget, n_windows).items()}
    table = pd.Series({f"{m}, {s}": f"{d:.1e}" for (m, s), d in gaps.items()}, name="max |Δ logit|").to_frame()
    return table, claims.simulation_matches(max(gaps.values()))


def selection_texts(study: "Study", results: dict, k: int) -> dict:
    """Chapter 10's words on selection at budget index ``k``: the best selection rule per model, and the
    recent window against H2O (paired difference, 95 % interval)."""
    from .experiments import kvcache
    from .estimators import paired_interval

    best = {study.label(v): min(kvcache.SELECTION_RULES, key=lambda rule: r.increase(rule)[k]) for v, r in results.items()}
    recent = {study.label(v): paired_interval(r.loss(kvcache.SELECTION_LABELS["recent"])[k] - r.loss(kvcache.UNIFORM)[k])
              for v, r in results.items()}
    return {"kv_best_selection": "; ".join(f"{m}: {r}" for m, r in best.items()),
            "kv_recent_vs_h2o": "; ".join(f"{m}: {interval_text(*d)}" for m, d in recent.items())}


def split_table(result, rules, k: int, layers):
    """Each of ``rules``' split at budget index ``k``: rules (rows) by layers."""
    import pandas as pd

    return pd.DataFrame({rule: result.counts(rule)[k] for rule in rules}, index=layers).T


def cache_verdicts(study: "Study", results: dict) -> dict:
    """Chapter 10: every guided rule's verdict on every model (:func:`attnpod.experiments.kvcache.verdicts`),
    keyed by (model label, rule)."""
    from .experiments import kvcache

    return {(study.label(v), rule): verdict for v, r in results.items() for rule, verdict in kvcache.verdicts(r).items()}


def cache_verdict_texts(study: "Study", results: dict, verdicts: dict, k: int) -> dict:
    """Chapter 10's words on the allocation verdicts: the primary rules across models, the smallest
    detectable difference, the rules that came out better, those identical to uniform, the layers whose top
    scale sits at the grid's edge, and the primary rules against uniform at budget index ``k``."""
    from . import claims
    from .experiments import kvcache
    from .estimators import paired_interval
    from .wavelet import paper_scales

    labels = [study.label(v) for v in results]
    primary = {rule: [verdicts[(m, rule)] for m in labels] for rule in kvcache.NULL_RULES}
    guided = list(dict.fromkeys(rule for _, rule in verdicts))
    holding = [f"{rule} ({m}): {v.verdict}" for (m, rule), v in verdicts.items() if claims.outcome_of(v) == "better"]
    uniform_like = [rule for rule in guided if all(verdicts[(m, rule)].verdict == "identical to uniform" for m in labels)]
    scales = paper_scales()
    edges = {f"{study.label(v)}, {name}": [str(l + 1) for l, a in enumerate(s) if a in (scales[0], scales[-1])]
             for v in results for name, s in study.top_scales(v).items()}
    at_mid = {study.label(v): {rule: paired_interval(r.loss(rule)[k] - r.loss(kvcache.UNIFORM)[k])
                               for rule in (H_STAR, INVERSE_H_STAR, kvcache.PYRAMID) if rule in r.rules}
              for v, r in results.items()}
    return {"kv_verdict": claims.across_models(primary[H_STAR]),
            "kv_inverse": claims.across_models(primary[INVERSE_H_STAR]),
            "kv_detectable": f"{max(v.detectable for v in primary[H_STAR]):.3f} nats",
            "kv_holding": "; ".join(holding) or "none",
            "kv_uniform_like": ", ".join(uniform_like) or "none",
            "kv_edges": "; ".join(f"{key}: layers {', '.join(e)}" for key, e in edges.items() if e) or "none",
            "kv_measure": "; ".join(f"{m}: " + ", ".join(f"{rule} {interval_text(*d)}" for rule, d in cells.items())
                                    for m, cells in at_mid.items())}


def verdict_table(verdicts: dict, detail: bool = False):
    """Verdicts keyed by (model, rule) as a table: rules (rows) by models; each cell the verdict in words
    (better, equivalent, …, with its tier), or with ``detail`` the verdict and its per-budget measurement."""
    import pandas as pd

    models = list(dict.fromkeys(m for m, _ in verdicts))
    rules = list(dict.fromkeys(r for _, r in verdicts))
    cell = (lambda v: f"{v.verdict}: {v.measurement}") if detail else (lambda v: v.verdict)
    return pd.DataFrame({m: {rule: cell(verdicts[(m, rule)]) for rule in rules if (m, rule) in verdicts}
                         for m in models})


def sink_protection_texts(verdicts: dict, effect: dict) -> dict:
    """Chapter 10's words on sink protection (:func:`sink_protection`'s verdicts and effect)."""
    def of(rule):
        return "; ".join(f"{m}: {v.verdict}" for (m, r), v in verdicts.items() if r == rule)

    return {"kv_sink_verdict": of(H_STAR), "kv_sink_pyramid": of(PYRAMID_H2O),
            "kv_sink_effect": "; ".join(f"{m}: " + ", ".join(f"{b} {d}" for b, d in row.items())
                                        for m, row in effect.items())}


def window_table(study: "Study", results: dict):
    """Chapter 10: each scale-selective window against a uniform recent window of the same total: the table
    (model and rule by keys per layer, NLL increases, the paired difference) and the differences in words."""
    import pandas as pd

    from .estimators import paired_interval

    rows = {}
    for v, r in results.items():
        for w, rule in enumerate(r.window_rules):
            rows[(study.label(v), rule)] = {
                "keys per layer": ", ".join(str(int(k)) for k in r.window_allocations[w]),
                "NLL increase": f"{(r.window_losses[w] - r.baseline).mean():.3f}",
                "uniform window, same total": f"{(r.window_uniform[w] - r.baseline).mean():.3f}",
                "difference [95 %]": interval_text(*paired_interval(r.window_losses[w] - r.window_uniform[w]))}
    text = "; ".join(f"{m}, {rule}: {row['difference [95 %]']}" for (m, rule), row in rows.items())
    return pd.DataFrame(rows).T, text


# ----------------------------------------------------------------------------- the real model (chapter 13)

def real_model(profile: str, n_windows: int = 0, length: int = 0, seed: int = 42, n_boot: int = 200,
               n_half: int = 100, data_path: str = "", progress: bool = True) -> dict:
    """Chapter 13: the real model's analyses in both orientations (:func:`attnpod.pretrained.analyse_pretrained`),
    read from ``checkpoints/laptop/`` where shipped with these settings. ``n_windows`` 0: the profile's
    (:data:`attnpod.pretrained.REAL_MODEL_WINDOWS`); ``length`` 0: 128 tokens at the smoke profile, else 256."""
    from .errors import ParameterError
    from .data import load_corpus
    from .pretrained import LENGTH, REAL_MODEL_WINDOWS, SMOLLM2, analyse_pretrained
    from .shipped import MissingCheckpoint, shipped_root

    if profile not in REAL_MODEL_WINDOWS:
        raise ParameterError(f"unknown profile {profile!r}; choose one of {sorted(REAL_MODEL_WINDOWS)}")
    try:
        folder = shipped_root("laptop")
    except MissingCheckpoint:
        folder = None
    return analyse_pretrained(load_corpus(data_path or None).text, SMOLLM2, n_windows or REAL_MODEL_WINDOWS[profile],
                              length or (128 if profile == "smoke" else LENGTH), seed, n_boot, n_half,
                              progress=progress, shipped_folder=folder)


def gemma(n_boot: int = 200, n_half: int = 100, seed: int = 42) -> dict:
    """The Gemma chapter: Gemma 3 270M's analyses in both orientations, always the shipped ones
    (:data:`attnpod.pretrained.REAL_MODEL_SIZES`; made by ``python -m attnpod real-model --model gemma3 --ship``,
    about 50 minutes on 2 cores): a build never assembles the model. Missing, they are a one-line error saying so."""
    from .analysis import FieldAnalysis
    from .pretrained import GEMMA3, N_RANK, ORIENTATIONS, REAL_MODEL_SIZES, analysis_settings, shipped_real_model
    from .shipped import MissingCheckpoint, shipped_root

    n, length = REAL_MODEL_SIZES["gemma3"]
    settings = analysis_settings(GEMMA3, n, length, seed, n_boot, n_half, N_RANK)
    out = {}
    for orientation in ORIENTATIONS:
        path = shipped_real_model(GEMMA3, orientation, settings, shipped_root("laptop"))
        if path is None:
            raise MissingCheckpoint(f"{GEMMA3.label}'s {orientation} analysis with these settings is not shipped: "
                                    f"python -m attnpod real-model --model gemma3 --ship (about 50 minutes on 2 cores)")
        out[orientation] = FieldAnalysis.load(path)
        out[orientation].meta["source"] = "shipped"
    return out


def cross_model_table(families: dict, recovery):
    """Every claim under every reading (rows: claim, reading) for several model families (columns), beside what
    the bench says the reading can see. ``families[name]`` as :func:`claim_columns` returns (``suffix=""``);
    a scale verdict under a reading blind to range is marked so (:func:`blind_marked`)."""
    import pandas as pd

    from .claims import CLAIM_ROWS, verdict_matrix

    tables = {name: blind_marked(verdict_matrix(columns)[0], recovery) for name, columns in families.items()}
    rows = []
    for claim in CLAIM_ROWS.values():
        for r, label in column_labels().items():
            cells = {name: t.loc[claim, label] if claim in t.index else "does not apply" for name, t in tables.items()}
            rows.append({"claim": claim, "reading": READINGS[r], **cells,
                         "what the bench says the reading can see": sight(recovery, r)})
    return pd.DataFrame(rows).set_index(["claim", "reading"])


GEMMA_GLOBAL_LAYERS = (5, 11, 17)  # counted from 0: Gemma 3 270M's full-attention layers (config.layer_types)


def layers_apart_table(analyses: dict, group, recovery=None):
    """The Gemma chapter's pre-registered question: does each reading (and H*(0.1), 𝒯_spec at the
    Torrence–Compo top scale) put the layers of ``group`` (indices) apart from the others? One row per
    reading or statistic: the verdict of :func:`attnpod.claims.layers_apart` with its replicate share (bootstrap
    resamples for the readings, half-ensembles for the spectrum's shape), the measurement, and what the bench
    says the reading can see."""
    import pandas as pd

    from . import claims
    from .readings import layer_values, replicates

    causal, published = analyses["causal"], analyses["published"]
    mask = np.isin(np.arange(len(causal.scalogram)), list(group))
    rows = {}
    for r in (*BOOK_READINGS, "published", "keys"):
        result = published if r == "published" else causal
        verdict = claims.layers_apart(layer_values(result, r), mask, replicates(result, r), "scale (tokens)")
        rows[READINGS[r]] = (verdict, sight(recovery, r) if recovery is not None else "")
    shape, table = readings.shape_halves(causal), layer_table(analyses)  # at the Torrence–Compo top scale
    rank = np.asarray(shape["effective_rank"].values)[:, 0]
    for name, value, halves in (("H*(0.1) at the Torrence–Compo top scale", table["H*(0.1)"].to_numpy(), rank),
                                ("𝒯_spec at the Torrence–Compo top scale", table["𝒯_spec"].to_numpy(),
                                 np.asarray(shape["spectral_concentration"].values))):
        rows[name] = (claims.layers_apart(value, mask, halves if halves.shape[-1] else None, name.split(" ")[0],
                                          claims.HALF_BASIS), "")
    return pd.DataFrame({name: {"verdict": str(v), "measurement": v.measurement, "what the bench says it can see": s}
                         for name, (v, s) in rows.items()}).T


def real_model_source(analyses: dict) -> str:
    """Where the real model's analyses came from, in words: shipped (verified), cached in the store, or computed."""
    sources = {a.meta.get("source", "computed") for a in analyses.values()}
    words = {"shipped": "the laptop book's shipped result, verified", "cached": "computed earlier, cached in the store",
             "computed": "computed in this build"}
    return " and ".join(words[s] for s in sorted(sources))


def layer_table(analyses: dict):
    """Chapter 13, per layer: the top scale under every reading, the POD numbers at the Torrence–Compo top
    scale with their half-ensemble intervals, the published pipeline's explanation (diagonal mass, the last
    query's self-attention), and what the attention does (:class:`attnpod.fields.LayerStatistics`)."""
    import pandas as pd

    from . import claims
    from .analysis import spectrum_shape
    from .readings import at_grid_edge, layer_values

    causal, published = analyses["causal"], analyses["published"]
    L = len(causal.scalogram)

    table = {column: layer_values(published if r == "published" else causal, r)
             for r, column in TOP_SCALE_COLUMNS.items()}
    table["top scale at the grid's edge (Torrence–Compo)"] = at_grid_edge(causal, "tc")
    shape = spectrum_shape(causal.eigenvalues[np.arange(L), claims.top_scale_indices(causal, "tc")], [0.10])
    table["𝒯_spec"] = shape["spectral_concentration"]
    table["H*(0.1)"] = shape["effective_rank"][:, 0]
    table["λ₁ share"] = shape["first_share"]
    table["diagonal mass (published)"] = published.diagonal_mass
    table["last query's self-attention² (published)"] = published.corner
    for k, v in layer_statistics(causal).items():
        table[k] = v
    return pd.DataFrame(table, index=pd.RangeIndex(1, L + 1, name="layer"))


def pod_intervals(analyses: dict, table):
    """Chapter 13: 𝒯_spec, H*(0.1) and the λ₁ share at each layer's top scale (from :func:`layer_table`) with
    their 95 % half-ensemble intervals (the causal analysis's half-ensembles), as "value | mean [lo, hi]", and
    beside H* the white-noise ceiling at N and N/2 (:func:`attnpod.analysis.white_noise_ceiling`)."""
    import pandas as pd

    from . import claims
    from .analysis import white_noise_ceiling

    shape = readings.shape_halves(analyses["causal"])

    def column(name, halves, fmt):
        one = estimators.Halves(np.asarray(halves.values)[:, None], halves.halves, halves.N)  # one model
        return claims.with_half_intervals(table[name].to_numpy()[:, None], one, fmt).iloc[:, 0].to_numpy()

    rank = shape["effective_rank"]
    causal = analyses["causal"]
    noise = (f"{white_noise_ceiling(causal)} | "
             f"{white_noise_ceiling(causal, n_snapshots=np.asarray(rank.halves).shape[1])}")
    return pd.DataFrame({
        "top scale": table["top scale, Torrence–Compo power, raw fields"],
        "𝒯_spec": column("𝒯_spec", shape["spectral_concentration"], "{:.3f}"),
        "H*(0.1)": column("H*(0.1)", estimators.Halves(np.asarray(rank.values)[:, 0], rank.halves, rank.N), "{:.0f}"),
        "H*(0.1) of white noise": noise,  # the ceiling: the same N (| N/2) and dimension, no structure
        "λ₁ share": column("λ₁ share", shape["first_share"], "{:.3f}"),
    }, index=table.index)


def real_replicates(settings: dict | None = None):
    """Chapter 13's replicates as shipped in ``checkpoints/laptop/`` (verified), with ``settings`` (default:
    :func:`attnpod.experiments.replicates.settings`); a missing one is a one-line
    :class:`~attnpod.shipped.MissingCheckpoint` saying how to compute it. Nothing is computed here."""
    from .experiments import replicates

    return replicates.replicate_experiment("", settings, shipped_only=True)


def _mean_interval(values_kl, fmt: str) -> list[str]:
    """"mean [lo, hi]" per layer of ``values_kl[k, l]`` over the K replicates (Student t); where every replicate
    gives the same value, that value "on every ensemble" (a zero-width interval would claim a certainty)."""
    values = np.asarray(values_kl, dtype=float).T
    mean, lo, hi = estimators.replicate_interval(values)
    return [f"{fmt.format(m)} on every ensemble" if np.ptp(v) == 0 else f"{fmt.format(m)} [{fmt.format(a)}, {fmt.format(b)}]"
            for v, m, a, b in zip(values, mean, lo, hi)]


def _scale_range(values_kl) -> list[str]:
    """Each layer's top scales over the replicates: one value, or "lo–hi (n distinct)"."""
    out = []
    for v in np.asarray(values_kl, dtype=float).T:
        distinct = np.unique(v)
        out.append(f"{v[0]:.1f}" if len(distinct) == 1 else f"{v.min():.1f}–{v.max():.1f} ({len(distinct)} distinct)")
    return out


def replicate_table(rep):
    """Chapter 13's per-layer statistics on the K disjoint ensembles of N (layers as rows): H*(0.1), 𝒯_spec and the
    attention on token 0 as "mean [95 % interval]" of the value at N, the top scales seen, and the same with the
    sink ablated, with the change in H* it makes and whether its interval excludes 0."""
    import pandas as pd

    from . import claims

    change, lo, hi, moved = claims.paired_change(rep.h_star, rep.ablated_h_star)
    return pd.DataFrame({
        "H*(0.1)": _mean_interval(rep.h_star, "{:.1f}"),
        "𝒯_spec": _mean_interval(rep.t_spec, "{:.3f}"),
        "top scale (tokens)": _scale_range(rep.top_scale),
        "attention on token 0": _mean_interval(rep.sink, "{:.3f}"),
        "H*(0.1), sink ablated": _mean_interval(rep.ablated_h_star, "{:.1f}"),
        "top scale, sink ablated": _scale_range(rep.ablated_top_scale),
        "ΔH* from the ablation": [f"{m:+.1f} [{a:+.1f}, {b:+.1f}]" + (" *" if x else "")
                                  for m, a, b, x in zip(change, lo, hi, moved)],
    }, index=pd.Index(np.arange(1, rep.h_star.shape[1] + 1), name="layer"))


def ensemble_table(readouts: dict, full: dict, readout: str = "h_star", fmt: str = "{:.0f}",
                   fmt_mean: str = "{:.1f}"):
    """One readout per layer (rows) and model at a fixed N: ``full[model]`` on the analysis's own ensemble, and its
    mean [95 % Student-t interval] over the disjoint ensembles ``readouts[model][readout][k, l]``
    (:meth:`attnpod.study.Study.disjoint_readouts`); columns (model, reading)."""
    import pandas as pd

    columns = {}
    for model, r in readouts.items():
        columns[(model, "this ensemble")] = [fmt.format(v) for v in np.asarray(full[model], dtype=float)]
        columns[(model, f"over {len(r[readout])} disjoint ensembles")] = _mean_interval(r[readout], fmt_mean)
    n_layer = len(next(iter(columns.values())))
    table = pd.DataFrame(columns, index=pd.Index([f"layer {l + 1}" for l in range(n_layer)]))
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


def rank_against_n(rep):
    """H*(0.1) per layer at each ensemble size (mean over ensembles and draws; layers as rows, N as columns), with
    the max/min ratio across layers and the white-noise ceiling at each N as the last rows."""
    import pandas as pd

    from . import claims
    from .pod import white_noise_rank

    T = int(rep.meta["length"])
    means = rep.size_rank.mean((0, 2))  # (S, L)
    table = pd.DataFrame(means.T, columns=[int(n) for n in rep.sizes],
                         index=pd.Index([str(l) for l in range(1, means.shape[1] + 1)], name="layer")).round(1)
    table.loc["max/min"] = claims.size_ratios(rep.size_rank).round(2)
    table.loc["white noise"] = [white_noise_rank(int(n), T * (T + 1) // 2) for n in rep.sizes]
    return table


def rounding_table(rep):
    """The loss per validation tile, model and second roundings: mean and 95 % interval over tiles, and each
    rounding's paired change; then how far the second rounding moves H*, the sink share and the top scale, in
    units of the spread between disjoint ensembles."""
    import pandas as pd

    from . import claims

    rows = {}
    mean, lo, hi = estimators.replicate_interval(rep.val_loss)  # over tiles
    rows[f"{rep.meta['model']}"] = f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"
    for r, loss in enumerate(rep.rounded_val_loss):
        m, a, b = estimators.replicate_interval(loss)
        d, da, db = estimators.replicate_interval(loss - rep.val_loss)
        rows[f"rounded again (seed {r + 1})"] = f"{m:.3f} [{a:.3f}, {b:.3f}]; change {d:+.3f} [{da:+.3f}, {db:+.3f}]"
    loss = pd.Series(rows, name=f"loss (nats per token) on {len(rep.val_loss)} validation tiles").to_frame()
    names = {"h_star": "H*(0.1)", "sink": "attention on token 0", "top_scale": "top scale (tokens)"}
    spread = pd.DataFrame({label: claims.within_spread(getattr(rep, k), getattr(rep, f"rounded_{k}"))
                           for k, label in names.items()}).T
    spread["layers outside the ensembles' range"] = spread["layers outside the ensembles' range"].astype(int)
    return loss, spread


def replicate_verdicts(rep) -> dict:
    """Chapter 13's rulings on the replicates: ranks at a fixed N, the low-H* verdict with its share over the
    ensembles, the same after the sink ablation and under a second rounding, and the sign of H*'s correlation with
    the sink share on every ensemble, plain and sink-ablated (:mod:`attnpod.claims`)."""
    from . import claims

    from .wavelet import scale_grid

    grid = scale_grid(int(rep.meta["length"]))

    def low(h, sink, top, basis="disjoint ensembles"):
        edges = lambda a: (a <= grid[0]) | (a >= grid[-1])  # noqa: E731
        return claims.replicated(lambda h_, s_, a_: claims.low_rank_explained(h_, s_, a_, edge=edges(a_)), h, sink,
                                 top, basis=basis)

    return {
        "ranks": claims.ranks_differ(rep.h_star, rep.sizes, rep.size_rank),
        "low": low(rep.h_star, rep.sink, rep.top_scale),
        "low_ablated": low(rep.ablated_h_star, rep.sink, rep.ablated_top_scale),
        "low_rounded": low(rep.rounded_h_star, rep.rounded_sink, rep.rounded_top_scale,
                           "second roundings of the first ensemble"),
        "sinks": claims.sinks_add_modes(rep.h_star, rep.sink),
        "sinks_ablated": claims.sinks_add_modes(rep.ablated_h_star, rep.sink),
    }


def spearman_rows(rep):
    """Spearman(H*(0.1), attention on token 0) over the layers on each disjoint ensemble, sink-ablated (against the
    plain sink share) and under each second rounding: a table of ρ and its permutation p."""
    import pandas as pd

    from .claims import sink_correlations

    rows = {}
    for name, h, sink in (("ensemble", rep.h_star, rep.sink), ("sink ablated", rep.ablated_h_star, rep.sink),
                          ("rounded again", rep.rounded_h_star, rep.rounded_sink)):
        for k, (rho, p) in enumerate(zip(*sink_correlations(h, sink))):
            rows[f"{name} {k + 1}"] = {"Spearman ρ": round(rho, 2), "p": round(p, 4)}
    return pd.DataFrame(rows).T


# chapter 13's per-layer scale under each reading: reading -> column of layer_table (tokens)
TOP_SCALE_COLUMNS = ({r: f"top scale, {READINGS[r]}" for r in OUR_READINGS} | {"published": "top scale, published pipeline"}
                     | {CHOSEN: f"{READINGS[CHOSEN]} (tokens)"})
# Chapter 13's picture of what each layer does: panel title -> columns of layer_table.
REAL_MODEL_PANELS = {"H*(0.1)": ["H*(0.1)"], "𝒯_spec": ["𝒯_spec"],
                     "attention on token 0": ["attention on token 0"],
                     "approximate rank (90 % of Σσ²)": ["approximate rank (90 % of Σσ²)"],
                     "mean attention distance (tokens)": ["mean attention distance (tokens)"],
                     "normalised entropy": ["normalised entropy"],
                     "top scale, Torrence–Compo": ["top scale, Torrence–Compo power, raw fields"]}
STATISTIC_LABELS = {"distance": "mean attention distance (tokens)", "entropy": "attention entropy (nats)",
                    "normalised_entropy": "normalised entropy", "sink": "attention on token 0",
                    "rank": "approximate rank (90 % of Σσ²)"}


# ----------------------------------------------------------------------------- the real model's KV cache (chapter 14)

def real_cache(settings: dict | None = None):
    """Chapter 14: the real model's cache experiment as shipped in ``checkpoints/laptop/`` (verified), with
    ``settings`` (default: :func:`attnpod.experiments.llmcache.settings`); a missing one is a one-line
    :class:`~attnpod.shipped.MissingCheckpoint` saying how to compute it. Nothing is computed here."""
    from .experiments import llmcache

    return llmcache.cache_experiment("", settings, shipped_only=True)


def long_cache(settings: dict | None = None, spec=None):
    """The long-context grid of real model ``spec`` (default: SmolLM2) as shipped in ``checkpoints/laptop/``
    (verified), with ``settings`` (default: :func:`attnpod.experiments.longcache.settings` for that model); a
    missing one is a one-line :class:`~attnpod.shipped.MissingCheckpoint` saying how to compute it. Nothing is
    computed here."""
    from .experiments import longcache

    settings = longcache.settings(spec) if settings is None else settings
    return longcache.long_experiment("", settings, spec, shipped_only=True)


def long_cache_scores(result):
    """The long-context rules' per-layer scores (as the grid stores them) and each layer's attention on token 0:
    layers (rows, from 1) by signals."""
    import pandas as pd

    table = pd.DataFrame({r: np.asarray(s, dtype=float) for r, s in result.meta["scores"].items()},
                         index=pd.Index(np.arange(1, result.allocations.shape[-1] + 1), name="layer"))
    table["attention on token 0"] = result.sinks
    return table


def long_cache_check(result):
    """The grid's simulation against its literal decode (:func:`attnpod.claims.simulation_matches` of the largest
    logit gap, the full cache's as the floor) and the gaps, per plan, as a table."""
    import pandas as pd

    from .claims import simulation_matches

    gaps = result.meta["decode_gaps"]
    check = simulation_matches(max(v for k, v in gaps.items() if k != "full cache"), floor=gaps["full cache"])
    return check, pd.Series({k: f"{v:.1e}" for k, v in gaps.items()}, name="max |Δ logit|").to_frame()


def long_cache_verdicts(result, verdicts: dict):
    """Each rule's ``verdicts`` (:func:`attnpod.experiments.longcache.verdicts`) beside its split's largest L1
    distance from uniform over the budgets and, on a model with sliding-window layers, from the architecture-aware
    split (:func:`attnpod.experiments.longcache.architecture_splits`)."""
    import pandas as pd

    from .experiments import longcache

    columns = {"verdict": {r: v.verdict for r, v in verdicts.items()},
               "largest L1 from uniform": longcache.distances(result).max(axis=1)}
    architecture = longcache.architecture_splits(result)
    if architecture is not None:
        columns["largest L1 from the architecture's split"] = longcache.distances(result, architecture).max(axis=1)
    table = pd.DataFrame(columns).loc[list(verdicts)]
    for column in list(table.columns)[1:]:
        table[column] = table[column].map(lambda d: f"{d:.1%}")
    return table


def _against(result, rule: str, reference: str, k: int, flat: float):
    """Rule against ``reference`` at budget index ``k``: (:func:`attnpod.claims.compare` of the paired per-window
    differences, the split's L1 distance from ``reference``'s, the outcome, "not tested" where the split is within
    ``flat`` of it and selects as it does)."""
    from .claims import compare, l1_distances

    distance = float(l1_distances(result.counts(rule)[k], result.counts(reference)[k]))
    c = compare(result.loss(rule)[k] - result.loss(reference)[k], seed=k)
    return c, distance, "not tested" if distance < flat and result.selects_as(rule, reference) else c.outcome


def long_cache_budgets(result, rules, reference: str, flat: float = 0.0):
    """Per rule and budget, how the rule compares with ``reference`` (:func:`_against`): the outcome, the
    difference with its 95 % interval, the split's L1 distance from ``reference``'s and the smallest difference
    the windows detect with 80 % power; (rule, budget) rows."""
    import pandas as pd

    rows = {}
    for rule in rules:
        for k, b in enumerate(result.budgets):
            c, distance, outcome = _against(result, rule, reference, k, flat)
            rows[(rule, int(b))] = {"outcome": outcome, "Δ NLL vs uniform [95 %]": f"{c.mean:+.3f} [{c.lo:+.3f}, {c.hi:+.3f}]",
                                    "L1 from uniform": f"{distance:.1%}", "detects (80 % power)": f"{c.detectable:.3f}"}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["rule", "B"])
    return table


def real_cache_splits(result, k: int):
    """Keys per key/value head and layer of each allocation rule at budget index ``k``: layers (rows, from 1)
    by rules."""
    from .experiments import llmcache

    return pd_splits(result, k, llmcache.ALLOCATION_RULES)


def equivalence_table(result, rules, uniform: str, flat: float = 0.0):
    """Each rule against ``uniform`` at each budget (:func:`_against`): its outcome (better, equivalent, worse,
    inconclusive; "not tested" where its split is within ``flat`` of uniform's), the mean paired difference and
    its 90 % interval (TOST's)."""
    import pandas as pd

    cells = {}
    for rule in rules:
        row = {}
        for k, b in enumerate(result.budgets):
            c, distance, outcome = _against(result, rule, uniform, k, flat)
            row[f"B = {int(b)}"] = f"{outcome}: {c.mean:+.3f} [{c.lo90:+.3f}, {c.hi90:+.3f}]" + (
                f" (split {distance:.1%} from uniform)" if outcome == "not tested" else "")
        cells[rule] = row
    return pd.DataFrame(cells).T


def layer_statistics(causal) -> dict:
    """The real model's :class:`~attnpod.fields.LayerStatistics` per layer (heads averaged), by label."""
    per_head = causal.meta["statistics"]
    return {STATISTIC_LABELS[k]: np.asarray(v).mean(-1) for k, v in per_head.items()}


def reproduction_texts(table, verdict) -> tuple[str, str]:
    """What :func:`reproduction_check` recomputed, and its verdict, in words for the chapter's text."""
    rules = [r for r in dict.fromkeys(table.index.get_level_values("rule")) if r != "(all)"]
    return (", ".join(rules) or "nothing (every result was computed in this build)",
            str(verdict) if verdict else "computed in this build, nothing shipped to check")


def budget_table(result, rules=None, unit: str = "heads", random_label: str = "random median"):
    """Loss increase over the full model or cache with its paired 95 % interval, rules (rows) by budgets."""
    import pandas as pd

    from .estimators import paired_interval

    rules = list(result.rules if rules is None else rules)
    cells = {rule: [paired_interval(result.losses[result.rules.index(rule), k] - result.baseline)
                    for k in range(len(result.budgets))] for rule in rules}
    random = result.random_median()  # (K, U): the random splits may be scored on the first U windows only
    cells[random_label] = [paired_interval(random[k] - result.baseline[:random.shape[-1]])
                           for k in range(len(result.budgets))]
    index = [f"{b} heads" if unit == "heads" else f"B = {b}" for b in result.budgets]
    return pd.DataFrame({rule: [f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in c] for rule, c in cells.items()},
                        index=index).T


def _theorem1(study: "Study"):
    from .figures import plot_theorem1

    explicit, errors, l, a = theorem1_check(study)
    return plot_theorem1(explicit.eigenvalues, errors, label=f"(BASE, layer {l + 1}, a* = {a:.1f})")


def _coherency(study: "Study"):
    from .figures import plot_coherency

    return plot_coherency(*coherency_maps(study))


def _your_model(f, compared: dict):
    return f.plot_scalogram_grid({"BASE (ours)": compared["result_ours"],
                                  "BASE as a transformers GPT-2": compared["result_hf"]})


def _cache_allocation(study: "Study", results: dict):
    from .experiments import kvcache
    from .figures import plot_budget_curves

    first = next(iter(results.values()))
    return plot_budget_curves({study.label(v): r for v, r in results.items()}, rules=kvcache.allocation_rules(first),
                              xlabel="mean cache keys per layer", fewer_right=False, band_label="random splits")


def _sinks(study: "Study", results: dict):
    from .figures import plot_sinks

    first = next(iter(results.values()))
    return plot_sinks({study.label(v): r.sinks for v, r in results.items()}, first.sink_uniform)


class _Figures:
    """:mod:`attnpod.figures`, imported at the first drawing: naming the figures needs no matplotlib."""

    def __getattr__(self, name):
        from . import figures

        return getattr(figures, name)


def _recipes() -> dict:
    """Every figure's recipe by name: recipe(study) -> Figure."""
    from .experiments import kvcache, pruning
    from .analysis import lag_statistics
    from .lag import to_lag
    from .wavelet import paper_scales

    f = _Figures()

    def modes(variant, title):
        return lambda s: f.plot_pod_modes(s.analysis(variant), layers=[l for l in (1, 3, 5) if l < s.profile.n_layer],
                                          title=title)

    return {
        "loss_curves": lambda s: f.plot_loss_curves({v: s.trained(v).history for v in s.models}),
        "fields": lambda s: f.plot_fields({v: s.fields(v)[0] for v in s.models}, max_len=64),
        "lag_fields": lambda s: f.plot_fields({v: to_lag(s.fields(v)[0]) for v in s.models}, lag=True, max_len=64),
        "lag_profiles": lambda s: f.plot_lag_profiles({v: lag_statistics(s.fields(v)).mean_profile for v in s.models}),
        "morlet": lambda s: f.plot_morlet(paper_scales()),
        "scalograms": lambda s: f.plot_scalogram_grid(s.analyses()),
        "scale_energy": lambda s: f.plot_scale_energy(s.analyses()),
        "rectified_energy": lambda s: f.plot_scale_energy(s.analyses(), rectified=True),
        "fluctuation_scalograms": lambda s: f.plot_scalogram_grid(s.analyses(), fluctuations=True),
        "fluctuation_energy": lambda s: f.plot_scale_energy(s.analyses(), fluctuations=True),
        "lag_windows": lambda s: f.plot_lag_windows(
            s.profile.block_size, s.analysis("base").dominant_scales[min(1, s.profile.n_layer - 1)],
            title="windows at BASE layer 2's dominant scales"),
        "spectra": lambda s: f.plot_eigenvalue_spectra(s.analyses()),
        "modes_ega": modes("ega1", "EGA-1"),
        "modes_base": modes("base", "BASE"),
        "theorem1": _theorem1,
        "recovery": lambda s, recovery=None: f.plot_recovery(
            known_answers(s.profile.name) if recovery is None else recovery, READINGS),
        # a chapter that has computed the result already passes it (verdicts=, compared=): drawn, not recomputed
        "verdict_grid": lambda s, verdicts=None: f.plot_verdict_grid(
            verdict_matrices(s)[0] if verdicts is None else verdicts),
        "seed_verdict_grid": lambda s, verdicts=None: f.plot_verdict_grid(
            seed_verdict_matrix(s)[0] if verdicts is None else verdicts),
        "seed_spread": lambda s, measurements=None: f.plot_seed_spread(
            seed_measurements(s) if measurements is None else measurements),
        "your_model_scalograms": lambda s, n_windows=0, compared=None: _your_model(
            f, compared or adapter_comparison(s, n_windows)),
        "orientation": lambda s: f.plot_scalogram_grid({"BASE (ours)": s.analysis("base"),
                                                        "BASE (published reading)": s.analysis(
                                                            "base", orientation="published")}),
        "power_law_fits": lambda s: f.plot_power_law_fits(s.analyses()),
        "rank_by_scale": lambda s: f.plot_rank_by_scale(s.analyses(), eps_index=0),
        "rank_by_scale_001": lambda s: f.plot_rank_by_scale(s.analyses(), eps_index=2),
        "coherency": _coherency,
        "pruning_curves": lambda s, **p: f.plot_budget_curves(
            {s.label(v): r for v, r in pruning_results(s, **p).items()}),
        "head_maps": lambda s, model="base", **p: f.plot_head_maps(*head_rank_maps(s, model, **p),
                                                                   title=s.label(model)),
        "cache_selection": lambda s, **p: f.plot_budget_curves(
            {s.label(v): r for v, r in cache_results(s, **p).items()}, rules=kvcache.SELECTION_RULES,
            xlabel="mean cache keys per layer", fewer_right=False, band_label="random splits, H2O"),
        "cache_allocation": lambda s, **p: _cache_allocation(s, cache_results(s, **p)),
        "attention_sinks": lambda s, **p: _sinks(s, cache_results(s, **p)),
        "pruning_null": lambda s, **p: f.plot_permutation_null(
            {s.label(v): r for v, r in pruning_results(s, **p).items()}, H_STAR, pruning.UNIFORM),
        "cache_null": lambda s, **p: f.plot_permutation_null(
            {s.label(v): r for v, r in cache_results(s, **p).items()}, H_STAR, kvcache.UNIFORM,
            xlabel="mean cache keys per layer, B"),
        # chapter 13 passes the analyses it has (analyses=); else they are read or computed (real_model)
        "real_model_scales": lambda s, analyses=None, **p: f.plot_scale_map(
            _real(s, analyses, p)["causal"].scalogram, _real(s, analyses, p)["causal"].scales,
            "Torrence–Compo scale energy, raw fields"),
        "real_model_top_scales": lambda s, analyses=None, **p: f.plot_layer_panels(
            layer_table(_real(s, analyses, p)), {"top scale under each reading": list(TOP_SCALE_COLUMNS.values())}),
        "real_model_layers": lambda s, analyses=None, **p: f.plot_layer_panels(
            layer_table(_real(s, analyses, p)), REAL_MODEL_PANELS),
        # chapter 14 passes the shipped result it has read (result=)
        "real_cache_selection": lambda s, result=None: _real_cache_curves(f, result, "selection"),
        "real_cache_allocation": lambda s, result=None: _real_cache_curves(f, result, "allocation"),
        "real_cache_null": lambda s, result=None: _real_cache_curves(f, result, "null"),
        "real_cache_splits": lambda s, result=None, k=2: _real_cache_curves(f, result, "splits", k),
        "real_cache_sinks": lambda s, result=None: _real_cache_curves(f, result, "sinks"),
        # chapter 13 passes the shipped replicates it has read (replicates=)
        "real_model_rank_against_n": lambda s, replicates=None: _rank_against_n(f, replicates),
        "long_cache_allocation": lambda s, result=None: _long_cache_curves(f, result, "allocation"),
        "long_cache_null": lambda s, result=None: _long_cache_curves(f, result, "null"),
        "long_cache_scores": lambda s, result=None: _long_cache_curves(f, result, "scores"),
        "long_cache_splits": lambda s, result=None, k=3: _long_cache_curves(f, result, "splits", k),
    }


def _rank_against_n(f, rep):
    """Chapter 13's H* against N, from the shipped replicates (read here unless given)."""
    rep = real_replicates() if rep is None else rep
    table = rank_against_n(rep)
    layers = table.drop(index=["max/min", "white noise"]).to_numpy(float)
    return f.plot_rank_against_n(np.asarray(rep.sizes), layers.T, table.loc["max/min"].to_numpy(float),
                                 table.loc["white noise"].to_numpy(float))


def _real_cache_curves(f, result, which: str, k: int = 2):
    """Chapter 14's figures of the shipped result (read here unless given): the selection or allocation
    rules' loss curves, the permutation null of ∝ H*(0.1), the keys per layer at budget index ``k``, or
    each layer's attention on token 0 against uniform causal attention over the window."""
    from .experiments import llmcache

    ALLOCATION_RULES, SELECTION_RULES, UNIFORM = llmcache.ALLOCATION_RULES, llmcache.SELECTION_RULES, llmcache.UNIFORM
    result = result or real_cache()
    xlabel = "mean keys per key/value head, B"
    if which == "null":
        return f.plot_permutation_null({"SmolLM2-135M": result}, H_STAR, UNIFORM, xlabel=xlabel, unit="token")
    if which == "sinks":
        return f.plot_sinks({"SmolLM2-135M": result.sinks}, llmcache.uniform_sink(int(result.meta["length"])))
    if which == "splits":
        splits = real_cache_splits(result, k)
        return f.plot_layer_panels(splits, {f"keys per key/value head, B = {int(result.budgets[k])}":
                                            list(splits.columns)})
    rules = SELECTION_RULES if which == "selection" else (UNIFORM, *ALLOCATION_RULES)
    return f.plot_budget_curves({"SmolLM2-135M": result}, rules=rules, xlabel=xlabel, fewer_right=False,
                                band_label="random splits, H2O + sinks", unit="token")


def _long_cache_curves(f, result, which: str, k: int = 3):
    """The long-context chapter's figures of the shipped grid (read here unless given): the allocation rules' loss
    curves, the permutation null of each rule whose null ran, the rules' per-layer scores, or the keys per layer at
    budget index ``k``."""
    from .experiments import longcache

    result = result or long_cache()
    xlabel = "mean keys per key/value head, B"
    title = f"{result.meta['model'].split(' (')[0]}, {int(result.meta['length'])} tokens"
    if which == "null":  # a panel per rule whose null ran
        tested = {f"{title}\n{rule}": rule for rule in result.null_rules
                  if np.isfinite(result.null(rule)).any()}
        return f.plot_permutation_null(dict.fromkeys(tested, result), tested, longcache.UNIFORM,
                                       xlabel=xlabel, unit="token")
    if which == "scores":
        table = long_cache_scores(result).drop(columns=[longcache.INVERSE_H_STAR])  # the mirror of H*: no news
        return f.plot_layer_panels(table, {column: [column] for column in table.columns}, log_scales=False)
    if which == "splits":
        splits = pd_splits(result, k, longcache.ALLOCATION_RULES)
        return f.plot_layer_panels(splits, {f"keys per key/value head, B = {int(result.budgets[k])}":
                                            list(splits.columns)})
    rules = (longcache.UNIFORM, *(longcache.SELECTION_LABELS[s] for s in longcache.SELECTIONS),
             *longcache.ALLOCATION_RULES)
    return f.plot_budget_curves({title: result}, rules=rules, xlabel=xlabel, fewer_right=False,
                                band_label="random splits, H2O + sinks", unit="token")


def pd_splits(result, k: int, rules):
    """Keys per key/value head and layer of each of ``rules`` at budget index ``k``: layers (rows, from 1) by rules."""
    import pandas as pd

    return pd.DataFrame({r: result.counts(r)[k] for r in rules if r in result.rules},
                        index=pd.Index(np.arange(1, result.allocations.shape[-1] + 1), name="layer"))


def _real(study: "Study", analyses, options: dict) -> dict:
    return analyses if analyses is not None else real_model(study.profile.name, data_path=study.data_path,
                                                            progress=study.progress, **options)


# What each figure shows, by name: the command line lists them without importing torch or matplotlib.
# The figures drawn without any character model of the study (the method's own pictures, the known-answers bench,
# the real models' shipped results): the command line warns before the others start a long training.
WITHOUT_MODELS = frozenset({"morlet", "lag_windows", "recovery", "real_model_scales", "real_model_top_scales",
                            "real_model_layers", "real_cache_selection", "real_cache_allocation", "real_cache_null",
                            "real_cache_splits", "real_cache_sinks", "long_cache_allocation", "long_cache_null",
                            "long_cache_scores", "long_cache_splits", "real_model_rank_against_n"})
FIGURES = {
    "loss_curves": "training and validation loss (chapter 01)",
    "recovery": "the readings against planted answers: the recovery table and the windows case (Known answers)",
    "fields": "example attention fields (02)",
    "lag_fields": "example lag fields (02)",
    "lag_profiles": "mean lag profiles (02)",
    "morlet": "the Morlet wavelet and its filters (03)",
    "scalograms": "Figure 1: ensemble scalograms (03)",
    "scale_energy": "scale energy E(a) (03)",
    "rectified_energy": "rectified scale energy E(a)/a (03)",
    "fluctuation_scalograms": "scalograms of the fluctuations (03)",
    "fluctuation_energy": "scale energy of the fluctuations (03)",
    "lag_windows": "Gaussian lag windows (04)",
    "spectra": "POD eigenvalue spectra (04)",
    "modes_ega": "Figure 2: POD mode lag profiles, EGA-1 (04)",
    "modes_base": "POD mode lag profiles, BASE (04)",
    "theorem1": "Theorem 1 on our ensemble (04)",
    "orientation": "our lag reading against the published one, BASE (08)",
    "power_law_fits": "power-law fits behind T_spec (05)",
    "rank_by_scale": "H*(0.10) across scales (06)",
    "rank_by_scale_001": "H*(0.01) across scales (06)",
    "coherency": "Figure 3: cross-coherency maps (07)",
    "pruning_curves": "head pruning curves (09)",
    "pruning_null": "∝ H*(0.1) against the permutations of its own head counts (09)",
    "head_maps": "per-head H*(0.10) and importance (09)",
    "cache_selection": "KV cache: token selection rules (10)",
    "cache_allocation": "KV cache: budget allocation rules, H2O (10)",
    "attention_sinks": "attention on token 0 per layer (10)",
    "cache_null": "∝ H*(0.1) against the permutations of its own cache split (10)",
    "real_model_scales": "the real model's scale energy per layer (13)",
    "real_model_top_scales": "the real model's top scale per layer under every reading (13)",
    "real_model_layers": "what each of the real model's layers does, beside H* and the top scale (13)",
    "real_model_rank_against_n": "the real model's H* against the ensemble size, on disjoint ensembles (13)",
    "real_cache_selection": "the real model's KV cache: token selection rules (14)",
    "real_cache_allocation": "the real model's KV cache: budget allocation rules, H2O + sinks (14)",
    "real_cache_null": "the real model: ∝ H*(0.1) against the permutations of its own cache split (14)",
    "real_cache_splits": "the real model: keys per layer under each allocation rule (14)",
    "real_cache_sinks": "the real model: attention on token 0 per layer, training windows (14)",
    "long_cache_allocation": "KV budgets at long context: every rule's loss against the budget (17)",
    "long_cache_null": "KV budgets at long context: each rule with a null against the permutations of its split (17)",
    "long_cache_scores": "KV budgets at long context: each rule's per-layer score (17)",
    "long_cache_splits": "KV budgets at long context: keys per layer under each rule (17)",
    "verdict_grid": "the verdict matrix: readings by claims (11)",
    "seed_verdict_grid": "the verdict matrix across training seeds, k of n in every cell (11)",
    "seed_spread": "top scales, T_spec, H*(0.10) and the first-mode share per layer, every seed (11)",
    "your_model_scalograms": "BASE through the transformers adapter beside our own (12)",
}


def figure(study: Study, name: str, **parameters):
    """The book's figure ``name`` (a key of :data:`FIGURES`) for this study, from its cached artifacts;
    ``parameters`` are the chapter's own (for example ``n_random`` of chapters 09 and 10), defaults
    otherwise. The chapters draw every figure through here, and so does ``python -m attnpod figure``."""
    if name not in FIGURES:
        raise ParameterError(f"unknown figure {name!r}; choose one of {sorted(FIGURES)}")
    return _recipes()[name](study, **parameters)
