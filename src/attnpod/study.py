"""One object per book build: the profile, the corpus, and each model's training and analysis, cached.

Notebooks create a :class:`Study` from their parameters cell and ask it for what
they need; every expensive result comes from (or goes to) the artifact store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike

from .analysis import FieldAnalysis, analyse_model, model_fields
from .config import MODEL_LABELS, MODELS, ParameterError, Profile, get_profile
from .data import SPLITS, Corpus, load_corpus
from .train import History, resolve_device, train


def check_parameters(profile="auto", split: str = "val", overrides=None, data_path="", seeds=()) -> None:
    """Type checks of the notebook parameters that :class:`Profile` does not see (it checks the rest)."""
    if not isinstance(seeds, (list, tuple)) or any(not isinstance(s, int) or isinstance(s, bool) or s < 0
                                                    for s in seeds):
        raise ParameterError(f"seeds must be a list of non-negative integers, e.g. [43, 44], got {seeds!r}")
    if profile is not None and not isinstance(profile, str):
        raise ParameterError(f"profile must be a name such as 'laptop', got {profile!r}")
    if split not in SPLITS:
        raise ParameterError(f"split must be one of {SPLITS}, got {split!r}")
    if overrides is not None and not (isinstance(overrides, dict) and all(isinstance(k, str) for k in overrides)):
        raise ParameterError(f"overrides must be a dict of profile settings, e.g. {{'n_snapshots': 50}}, "
                             f"got {overrides!r}")
    if data_path is not None and not isinstance(data_path, (str, PathLike)):
        raise ParameterError(f"data_path must be a path string ('' for the default), got {data_path!r}")


@dataclass
class Trained:
    model: object
    history: History
    name: str  # checkpoint folder name: variant-hash


@dataclass
class Study:
    profile: Profile
    corpus: Corpus
    device: str = "auto"
    split: str = "val"
    progress: bool = True
    _trained: dict = field(default_factory=dict, repr=False)
    _analyses: dict = field(default_factory=dict, repr=False)

    @classmethod
    def create(cls, profile: str = "auto", seed: int = 42, device: str = "auto", data_path: str = "",
               split: str = "val", overrides: dict | None = None, progress: bool = True) -> "Study":
        """Validate the notebook parameters and load the corpus; fails at once on a bad value."""
        check_parameters(profile=profile, split=split, overrides=overrides, data_path=data_path)
        chosen = get_profile(None if profile in ("", "auto", None) else profile, seed=seed, **(overrides or {}))
        return cls(chosen, load_corpus(data_path or None), str(resolve_device(device)), split, progress)

    @property
    def models(self) -> tuple[str, ...]:
        return MODELS

    @staticmethod
    def label(variant: str) -> str:
        return MODEL_LABELS.get(variant, variant) + (" (causal gate)" if variant.endswith("_causal") else "")

    def trained(self, variant: str) -> Trained:
        """The trained model (``variant`` may end in ``_causal`` for the causal EGA gate)."""
        if variant not in self._trained:
            base, causal = variant.removesuffix("_causal"), variant.endswith("_causal")
            model, history, path = train(self.profile, base, self.corpus, self.device, causal, self.progress)
            self._trained[variant] = Trained(model, history, path.parent.name)
        return self._trained[variant]

    def fields(self, variant: str):
        """Head-averaged ensemble ``fields[n, l, i, j]`` (memory-mapped)."""
        t = self.trained(variant)
        return model_fields(t.model, self.corpus, self.profile, t.name, self.split, self.device, self.progress)

    @property
    def layer_labels(self) -> list[str]:
        return [f"layer {l + 1}" for l in range(self.profile.n_layer)]

    def analyses(self, orientation: str = "causal") -> dict[str, FieldAnalysis]:
        """The analysis of each of the four models."""
        return {v: self.analysis(v, orientation) for v in self.models}

    def analysis(self, variant: str, orientation: str = "causal") -> FieldAnalysis:
        key = (variant, orientation)
        if key not in self._analyses:
            t = self.trained(variant)
            self._analyses[key] = analyse_model(t.model, self.corpus, self.profile, t.name, self.split,
                                                self.device, orientation, self.progress)[0]
        return self._analyses[key]
