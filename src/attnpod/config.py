"""Profiles: named presets of every size and protocol setting, and the models' names.

A profile is the one place where sizes live: notebooks, the CLI and the tests
read them from here. Where the artifacts they make are kept is :mod:`attnpod.store`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from .errors import ParameterError

MODELS = ("base", "ega1", "ega_morlet", "conv_l4")
MODEL_LABELS = {"base": "BASE", "ega1": "EGA-1", "ega_morlet": "EGA-MORLET", "conv_l4": "CONV-L4"}
CAUSAL = "_causal"  # a model name's suffix for the causal EGA gate (the errata chapter's model)


def model_name(variant: str, causal_gate: bool = False) -> str:
    """A model's name in the store and the book: the variant, ``_causal`` added for the causal gate."""
    return variant + (CAUSAL if causal_gate else "")


def parse_model_name(name: str) -> tuple[str, bool]:
    """(variant, causal_gate) of a model name: the inverse of :func:`model_name`."""
    return name.removesuffix(CAUSAL), name.endswith(CAUSAL)


def model_label(name: str) -> str:
    """The paper's label of a model name, e.g. "EGA-1 (causal gate)"."""
    variant, causal = parse_model_name(name)
    return MODEL_LABELS.get(variant, variant) + (" (causal gate)" if causal else "")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_counts(minimums: dict, **counts) -> None:
    """A one-line :class:`~attnpod.errors.ParameterError` unless every count is a whole number of at least its
    ``minimums[name]`` (1 where not given): what every experiment and analysis checks before any work starts."""
    for name, value in counts.items():
        low = minimums.get(name, 1)
        if not _is_int(value) or value < low:
            raise ParameterError(f"{name} must be an integer of at least {low}, got {value!r}")


def _is_real(value) -> bool:
    return (_is_int(value) or isinstance(value, (float, np.floating))) and math.isfinite(value)


@dataclass(frozen=True, kw_only=True)
class ModelSize:
    """The transformer's sizes and dropout (SPEC section 2), said once.

    A profile has them, and so does every model config
    (:class:`attnpod.models.GPTConfig`); the defaults are the paper's.
    """

    n_layer: int = 6
    n_head: int = 8
    n_embd: int = 256
    block_size: int = 256
    dropout: float = 0.1

    def check_size(self, fail) -> None:
        """Call ``fail(what, value)`` for the first size out of type or range."""
        for name in ("n_layer", "n_head", "n_embd", "block_size"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                fail(f"{name} must be a positive integer", value)
        if self.n_embd % self.n_head:
            fail(f"n_embd={self.n_embd} must be divisible by n_head", self.n_head)
        if not _is_real(self.dropout) or not 0.0 <= self.dropout < 1.0:
            fail("dropout must be a number in [0, 1)", self.dropout)

    def size(self) -> dict:
        """The size fields alone, to build a model config from a profile."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(ModelSize)}

    def as_dict(self) -> dict:
        """Every field (sizes and the rest), as stored with a checkpoint and hashed into artifact keys."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Profile(ModelSize):
    """Sizes and protocol of one run of the whole book.

    The model size (:class:`ModelSize`) and the training protocol of SPEC
    section 2; ``n_snapshots`` is N of the field ensemble (section 3), whose
    windows have length ``block_size``. Every value is checked by type and
    range on construction, before any work starts.
    """

    name: str
    steps: int = 5000
    warmup: int = 300
    batch_size: int = 64
    lr: float = 3e-4
    eval_interval: int = 500
    eval_batches: int = 50
    n_snapshots: int = 1000
    seed: int = 42

    def __post_init__(self):
        def fail(what: str, value) -> None:
            raise ParameterError(f"profile {self.name!r}: {what}, got {value!r}")

        self.check_size(fail)
        for name in ("steps", "batch_size", "eval_interval", "eval_batches"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                fail(f"{name} must be a positive integer", value)
        if not _is_int(self.warmup) or not 0 <= self.warmup < self.steps:
            fail(f"warmup must be an integer in [0, steps={self.steps})", self.warmup)
        if not _is_real(self.lr) or not self.lr > 0:
            fail("lr must be a finite positive number", self.lr)
        if not _is_int(self.n_snapshots) or self.n_snapshots < 3:
            fail("n_snapshots (N) must be an integer >= 3", self.n_snapshots)
        if not _is_int(self.seed) or not 0 <= self.seed < 2**32:
            fail("seed must be an integer in [0, 2**32)", self.seed)

    def replace(self, **overrides) -> "Profile":
        """A copy with some settings changed (validated like the presets)."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ParameterError(f"unknown profile setting(s): {sorted(unknown)}; "
                                 f"known: {[f.name for f in dataclasses.fields(self) if f.name != 'name']}")
        return dataclasses.replace(self, **overrides)


PROFILES = {
    # SPEC section 2 exactly: 4.82 M parameters, 5000 steps of 64 x 256 tokens, N = 1000.
    "paper": Profile("paper"),
    # The largest 6-layer, 8-head setting that trains all four models in about
    # 15 minutes together on a 2-core CPU with BASE at validation loss <= 2.0
    # (measured: see README). Dropout is off: 1.8 k steps of 8 x 128 tokens see
    # a quarter of one epoch, where dropout only slows learning.
    "laptop": Profile("laptop", n_embd=128, block_size=128, dropout=0.0, steps=1800, warmup=100,
                      batch_size=8, lr=2e-3, eval_interval=300, eval_batches=10, n_snapshots=200),
    # Whole book in a few minutes: exercises every code path, proves nothing.
    "smoke": Profile("smoke", n_embd=32, block_size=64, steps=30, warmup=5, batch_size=8,
                     lr=1e-3, eval_interval=15, eval_batches=2, n_snapshots=16),
}


def default_profile_name() -> str:
    """``paper`` when CUDA is available, else ``laptop``."""
    import torch

    return "paper" if torch.cuda.is_available() else "laptop"


def get_profile(name: str | None = None, **overrides) -> Profile:
    """The named preset with optional overrides; ``None`` picks the default."""
    name = name or default_profile_name()
    if name not in PROFILES:
        raise ParameterError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[name].replace(**overrides) if overrides else PROFILES[name]
