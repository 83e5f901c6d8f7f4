"""One object per book build: the profile, the corpus, and each model's training and analysis, cached.

Notebooks create a :class:`Study` from their parameters cell and ask it for what
they need; every expensive result comes from (or goes to) the artifact store.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path

import numpy as np

from .experiments.budgets import rule_scores, top_scales
from .analysis import FieldAnalysis
from .pipeline import analyse_model, disjoint_readouts, model_fields
from .errors import CorruptFile, ParameterError
from .config import MODELS, PROFILES, Profile, get_profile, model_label, parse_model_name
from .store import artifact_dir, artifact_lock, reused
from .experiments import kvcache, pruning
from .experiments.kvcache import CacheResult
from .experiments.pruning import PruningResult, evaluation_batches
from .data import SPLITS, Corpus, load_corpus
from .shipped import (MissingCheckpoint, result_misfit, shipped_entry, shipped_result, shipped_root,
                      trained_or_shipped, trains_only_on_gpu)
from .train import History, is_trained, resolve_device, train_in_processes


def check_parameters(profile="auto", split: str | None = "val", overrides=None, data_path="", seeds=()) -> None:
    """Type checks of the notebook parameters that :class:`Profile` does not see (it checks the rest)."""
    if not isinstance(seeds, (list, tuple)) or any(not isinstance(s, int) or isinstance(s, bool) or s < 0
                                                    for s in seeds):
        raise ParameterError(f"seeds must be a list of non-negative integers, e.g. [43, 44], got {seeds!r}")
    if profile is not None and not isinstance(profile, str):
        raise ParameterError(f"profile must be a name such as 'laptop', got {profile!r}")
    if split is not None and split not in SPLITS:
        raise ParameterError(f"split must be one of {SPLITS}, got {split!r}")
    if overrides is not None and not (isinstance(overrides, dict) and all(isinstance(k, str) for k in overrides)):
        raise ParameterError(f"overrides must be a dict of profile settings, e.g. {{'n_snapshots': 50}}, "
                             f"got {overrides!r}")
    if data_path is not None and not isinstance(data_path, (str, PathLike)):
        raise ParameterError(f"data_path must be a path string ('' for the default), got {data_path!r}")


@dataclass
class Trained:
    """A trained model of a study: the model, its training record, and its name in the artifact store."""

    model: object
    history: History
    name: str  # checkpoint folder name: variant-hash


@dataclass
class Study:
    """One book build's models, analyses and experiments, each computed once and cached in the store.

    A chapter creates one from its parameters cell (:meth:`create`) and asks for what it
    shows: :meth:`trained` models (trained here, reused, or shipped), their :meth:`fields`
    and :meth:`analysis`, and the experiments of chapters 09 and 10 (:meth:`pruning`,
    :meth:`kv_cache`). The named results and figures built on these live in
    :mod:`attnpod.book`.
    """

    profile: Profile
    corpus: Corpus
    device: str = "auto"
    split: str = "val"
    progress: bool = True
    data_path: str = ""
    shipped: bool = False  # the models from the shipped folder, even where they could be trained
    shipped_folder: str = ""  # where shipped models and results live ('' : checkpoints/<profile>/ of the checkout)
    retrained_first: bool = False  # with shipped: a model retrained in the store wins over the shipped one
    replicates: bool = True  # analyses carry their bootstrap and half-ensembles (off for extra seeds)
    chosen_seeds: tuple = ()  # the seeds to judge claims on, if not the profile's (BOOK_SEEDS)
    _trained: dict = field(default_factory=dict, repr=False)
    _analyses: dict = field(default_factory=dict, repr=False)
    _seed_studies: dict = field(default_factory=dict, repr=False)

    @classmethod
    def create(cls, profile: str = "auto", seed: int = 42, device: str = "auto", data_path: str = "",
               split: str | None = None, overrides: dict | None = None, progress: bool = True,
               seeds=(), shipped: bool = False, shipped_folder: str = "") -> "Study":
        """Validate the notebook parameters and load the corpus; fails at once on a bad value.

        ``split`` is where the snapshots' windows come from: by default the validation
        split when it holds N disjoint windows, else the whole file (as the published
        script draws), which the chapters' run stamp then says. ``seeds``: the training
        seeds to judge claims on besides ``seed`` (default: the profile's, :data:`BOOK_SEEDS`).
        ``shipped``: the models from ``shipped_folder`` (default: ``checkpoints/<profile>/`` of the
        checkout), even where they could be trained here.
        """
        check_parameters(profile=profile, split=split, overrides=overrides, data_path=data_path, seeds=seeds)
        chosen = get_profile(None if profile in ("", "auto", None) else profile, seed=seed, **(overrides or {}))
        corpus = load_corpus(data_path or None)
        if split is None:
            fits = chosen.n_snapshots * chosen.block_size <= len(corpus.split("val"))
            split = "val" if fits else "all"
        return cls(chosen, corpus, str(resolve_device(device)), split, progress, str(data_path or ""),
                   shipped=bool(shipped), shipped_folder=str(shipped_folder or ""), chosen_seeds=tuple(seeds))

    @property
    def run_stamp(self) -> str:
        """Which run a chapter shows: profile, seed, any changed setting, and when it was computed (UTC)."""
        import datetime

        P = self.profile
        preset = PROFILES.get(P.name)
        changed = {k: v for k, v in P.as_dict().items()
                   if preset is not None and k not in ("seed", "name") and getattr(preset, k) != v}
        extra = "".join(f", {k} = {v}" for k, v in changed.items())
        if self.split != "val":
            extra += f"; snapshots from the {'whole file' if self.split == 'all' else self.split + ' split'}"
        if self.shipped and not trains_only_on_gpu(P.name, self.device):
            extra += "; the shipped weights"
        return (f"{P.name} profile, seed {P.seed}{extra}; executed "
                f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")

    @property
    def models(self) -> tuple[str, ...]:
        """The paper's four variants, in the book's order."""
        return MODELS

    label = staticmethod(model_label)

    @property
    def seeds(self) -> tuple[int, ...]:
        """The training seeds every claim is judged on: the study's own, then the profile's others
        (:data:`BOOK_SEEDS`), which come from shipped weights unless retrained here."""
        seeds = self.chosen_seeds or BOOK_SEEDS.get(self.profile.name, ())
        return (self.profile.seed, *dict.fromkeys(s for s in seeds if s != self.profile.seed))

    def seed_study(self, seed: int) -> "Study":
        """The same study at another training seed. Its models are the shipped ones
        (``checkpoints/<profile>/``, verified; a missing or damaged file is an error that
        names it, never a silent fallback), or retrained ones where the artifact store holds
        them (``python -m attnpod train --profile P --seed S --model ...``). Its analyses
        skip the bootstrap and half-ensembles: the spread over seeds replaces them."""
        if seed == self.profile.seed:
            return self
        if seed not in self._seed_studies:
            self._seed_studies[seed] = Study(self.profile.replace(seed=seed), self.corpus, self.device, self.split,
                                             self.progress, self.data_path, shipped=True,
                                             shipped_folder=self.shipped_folder, retrained_first=True,
                                             replicates=False)
        return self._seed_studies[seed]

    def on_split(self, split: str) -> "Study":
        """The same study (the same models, already loaded) with its snapshots from another ``split``."""
        return replace(self, split=split, _seed_studies={})

    def trained(self, variant: str) -> Trained:
        """The trained model (``variant`` may end in ``_causal`` for the causal EGA gate)."""
        if variant not in self._trained:
            base, causal = parse_model_name(variant)
            shipped = self.shipped and not (self.retrained_first and is_trained(self.profile, base,
                                                                                 self.corpus.vocab_size, causal))
            model, history, name = trained_or_shipped(self.profile, base, self.corpus, self.device, causal,
                                                      self.progress, shipped=shipped,
                                                      folder=self.shipped_folder or None)
            self._trained[variant] = Trained(model, history, name)
        return self._trained[variant]

    def untrained(self, variants=None) -> list[str]:
        """Which of ``variants`` (default: the study's models) this study would have to train: not trained to
        the last step in the store, and not read from shipped weights."""
        def trained(name: str) -> bool:
            variant, causal = parse_model_name(name)
            return is_trained(self.profile, variant, self.corpus.vocab_size, causal)

        if self.shipped:
            return []
        return [v for v in (self.models if variants is None else variants) if not trained(v)]

    def train_all(self, variants) -> dict[str, Trained]:
        """The trained models; those not trained yet are trained together, in parallel processes
        (:func:`attnpod.train.train_in_processes`), where the machine may train them."""
        missing = [v for v in variants if v not in self._trained
                   and not trains_only_on_gpu(self.profile.name, self.device) and v in self.untrained(variants)]
        if len(missing) > 1:
            train_in_processes(self.profile, missing, self.data_path or None, self.device, progress=self.progress)
        return {v: self.trained(v) for v in variants}

    def fields(self, variant: str):
        """Head-averaged ensemble ``fields[n, l, i, j]`` (memory-mapped)."""
        t = self.trained(variant)
        return model_fields(t.model, self.corpus, self.profile, t.name, self.split, self.device, self.progress)

    @property
    def layer_labels(self) -> list[str]:
        """"layer 1" … "layer L": the chapters' row and column labels."""
        return [f"layer {l + 1}" for l in range(self.profile.n_layer)]

    def analyses(self, orientation: str = "causal") -> dict[str, FieldAnalysis]:
        """The analysis of each of the four models."""
        return {v: self.analysis(v, orientation) for v in self.models}

    def analysis(self, variant: str, orientation: str = "causal", split: str | None = None, heads: str = "mean",
                 **options) -> FieldAnalysis:
        """The cached analysis of one model (``split`` defaults to the study's; ``heads="all"``: per head)."""
        split = split or self.split
        if not self.replicates:
            options = {"n_boot": 0, "n_half": 0} | options
        key = (variant, orientation, split, heads, tuple(sorted(options.items())))
        if key not in self._analyses:
            t = self.trained(variant)
            self._analyses[key] = analyse_model(t.model, self.corpus, self.profile, t.name, split, self.device,
                                                orientation, self.progress, heads, **options)[0]
        return self._analyses[key]

    def disjoint_readouts(self, variant: str) -> dict | None:
        """One model's layer readouts on disjoint ensembles of N windows of the study's split
        (:func:`attnpod.pipeline.disjoint_readouts`): ``{readout: [k, l]}``, or None where the split holds fewer
        than two ensembles of N."""
        t = self.trained(variant)
        return disjoint_readouts(t.model, self.corpus, self.profile, t.name, self.split, self.device, self.progress)

    def allocation_scores(self, variant: str) -> dict[str, np.ndarray]:
        """Per-layer scores of each analysis-guided allocation rule (:func:`attnpod.experiments.budgets.rule_scores`),
        from training-split snapshots only."""
        return rule_scores(self.analysis(variant, split="train"))

    def pruning(self, variant: str, n_random: int = 10, oracle: bool = False, n_eval: int = 4,
                n_score: int = 4, n_oracle: int = 1, n_perm: int = 19) -> PruningResult:
        """Every head-allocation rule at the scaled budgets, cached as an artifact (:func:`attnpod.experiments.pruning.run`).

        Importance comes from ``n_score`` training batches; losses from ``n_eval`` fixed validation
        batches; the greedy oracle (if asked for) chooses its heads on ``n_oracle`` further
        validation batches, disjoint from those it is judged on; ``n_perm`` orders per budget
        make the primary rule's permutation null.
        """
        pruning.check_counts(pruning.ZERO_ALLOWED, n_random=n_random, n_eval=n_eval, n_score=n_score, n_oracle=n_oracle, n_perm=n_perm)
        t, P = self.trained(variant), self.profile  # the counts are checked before any training
        settings = pruning.settings(t.model, P, n_random, oracle, n_eval, n_score, n_oracle, n_perm)
        budgets = settings["budgets"]

        def measured():
            return {"scores": {k: v.tolist() for k, v in self.allocation_scores(variant).items()}}

        def compute():
            validation = self.pruning_windows(n_eval + n_oracle)
            scoring = evaluation_batches(self.corpus, n_score, P.batch_size, P.block_size, "train", P.seed + 2000)
            return pruning.run(t.model, validation[:n_eval], scoring, self.allocation_scores(variant), budgets,
                               n_random, validation[n_eval:] if oracle else None, P.seed, self.progress, n_perm)

        return self._experiment("pruning", variant, settings, measured, compute, PruningResult)

    def pruning_windows(self, n_batches: int):
        """The fixed validation batches head pruning is judged on (then the oracle's), no two windows overlapping."""
        P = self.profile
        return evaluation_batches(self.corpus, n_batches, P.batch_size, P.block_size, "val", P.seed + 1000)

    def _experiment(self, kind: str, variant: str, settings: dict, measured, compute, result_class):
        """The result of experiment ``kind`` on a model, cached in the store under its settings.

        A result shipped with the models (``checkpoints/<profile>/results/``) made with these
        settings on these very weights (their SHA-256 is a setting) is read instead, verified;
        it brings the settings measured from the model's attention fields (the rules' scores,
        :data:`attnpod.shipped.MEASURED_SETTINGS`), so reading it needs no analysis.
        Otherwise ``measured()`` adds them to the settings, and the result is computed.
        At a profile whose models are shipped because this machine may not train them
        (:func:`attnpod.shipped.trains_only_on_gpu`), the experiment would take hours: a
        missing result is :class:`~attnpod.shipped.MissingCheckpoint`, saying how to compute
        it on a GPU.
        """
        gpu_only = trains_only_on_gpu(self.profile.name, self.device)
        path = self._shipped_result(kind, variant, settings, required=gpu_only)
        if path is not None:  # a shipped result made with these settings on these very weights
            result = result_class.load(path).came_from("shipped", path)
            windows = settings["n_eval"] * settings["batch"][0] if kind == "pruning" else settings["n_windows"]
            problem = result_misfit(result, settings, windows)
            if problem:
                raise CorruptFile(f"{path}: {problem}: the manifest lists it for settings it was not made with")
            return result
        settings = {**settings, **measured()}
        path = artifact_dir(kind, self.trained(variant).name, settings) / f"{kind}.npz"
        with artifact_lock(path):
            cached = reused(path, result_class.load)  # a damaged file is recomputed
            if cached is not None:
                return cached.came_from("cached", path)
            result = compute()
            result.meta.update(settings)
            result.save(path)
        return result.came_from("computed", path)

    def _shipped_result(self, kind: str, variant: str, settings: dict, required: bool) -> "Path | None":
        """The verified shipped result of this experiment (settings, weights' SHA-256 included), if any;
        ``required``: its absence is an error saying how to make it."""
        try:
            return shipped_result(self.profile.name, kind, variant, settings, folder=self.shipped_folder or None)
        except MissingCheckpoint:
            if required:
                raise
            return None

    def with_shipped_models(self) -> "Study":
        """The same study on its seed's shipped weights, where the profile ships them all (the models and
        ``ega1_causal``), else itself. Chapters 09 and 10 run on these: their experiments' results are
        shipped for those weights (``python -m attnpod experiments``), so a build reads them and
        recomputes a stated subset instead of every evaluation."""
        if self.shipped:
            return self
        try:
            folder = shipped_root(self.profile.name, folder=self.shipped_folder or None)
        except MissingCheckpoint:
            return self
        for name in (*self.models, "ega1_causal"):
            if shipped_entry(self.profile, *parse_model_name(name), self.corpus.vocab_size, folder) is None:
                return self
        return replace(self, shipped=True, _trained={}, _analyses={}, _seed_studies={})

    def top_scales(self, variant: str) -> dict[str, np.ndarray]:
        """Each layer's top dominant lag scale from training-split snapshots (:func:`attnpod.experiments.budgets.top_scales`)."""
        return top_scales(self.analysis(variant, split="train"))

    def cache_windows(self, n_windows: int):
        """The fixed validation windows ``(x, y)`` (n_windows, T) every cache rule is scored on, no two overlapping."""
        P = self.profile
        batches = evaluation_batches(self.corpus, 1, n_windows, P.block_size, "val", P.seed + 3000)
        return batches[0]

    def kv_cache(self, variant: str, n_random: int = 10, n_windows: int = 64, n_perm: int = 19,
                 null_windows: int = 32) -> CacheResult:
        """Every KV-cache rule at the scaled budgets, cached as an artifact
        (:func:`attnpod.experiments.kvcache.run`); the analysis-guided rules read training-split
        snapshots, the losses ``n_windows`` fixed validation windows."""
        kvcache.check_counts(kvcache.MINIMUMS, n_random=n_random, n_windows=n_windows, n_perm=n_perm,
                             null_windows=null_windows)  # before any training
        t, P = self.trained(variant), self.profile
        settings = kvcache.settings(t.model, P, n_random, n_windows, n_perm, null_windows)

        def measured():
            return {"scores": {k: v.tolist() for k, v in self.allocation_scores(variant).items()},
                    "top_scales": {k: v.tolist() for k, v in self.top_scales(variant).items()}}

        def compute():
            x, y = self.cache_windows(n_windows)
            return kvcache.run(t.model, x, y, self.allocation_scores(variant), self.top_scales(variant),
                               settings["budgets"], n_random, P.seed, progress=self.progress, n_perm=n_perm,
                               null_windows=null_windows)

        return self._experiment("kv_cache", variant, settings, measured, compute, CacheResult)


# The training seeds of each profile's book: the study trains its own (42) and reads the others' shipped weights.
BOOK_SEEDS = {"smoke": (42, 43), "laptop": (42, 43, 44, 45, 46), "paper": (42,)}
CACHE_MODELS = ("base", "ega1_causal")  # the models that decode token by token (kvcache.decodable)
