"""Profiles (named presets of every size and protocol setting) and the artifact store.

A profile is the one place where sizes live: notebooks, the CLI and the tests
read them from here. Artifacts (checkpoints, fields, analysis results) live in
one folder, each under a key that hashes every setting that influenced it, so a
changed setting never reuses a stale result and an unchanged one is reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


class AttnpodError(Exception):
    """A known failure with a message that says what to do (the CLI prints it as one line)."""


class ParameterError(AttnpodError, ValueError):
    """A profile setting or notebook parameter has the wrong type or lies out of range."""


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


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

    def is_preset(self) -> bool:
        """A preset of :data:`PROFILES` with at most its seed and N changed: what the command line
        can name (``--profile``, ``--seed``, ``--snapshots``)."""
        preset = PROFILES.get(self.name)
        return preset is not None and self == preset.replace(seed=self.seed, n_snapshots=self.n_snapshots)

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


# ----------------------------------------------------------------------------- artifacts

def project_root(start: Path | None = None) -> Path | None:
    """The enclosing attnpod checkout (the folder whose pyproject.toml names attnpod), if any."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        project = folder / "pyproject.toml"
        if project.is_file() and 'name = "attnpod"' in project.read_text(errors="ignore"):
            return folder
    return None


def artifacts_root() -> Path:
    """The folder that holds every artifact, as one absolute path for every entry point.

    ``$ATTNPOD_ARTIFACTS`` if set (a relative path is taken from the checkout's
    root, so the CLI at the root and notebooks in ``notebooks/`` share one store);
    else ``artifacts/`` of the enclosing checkout; else a per-user cache.
    """
    env = os.environ.get("ATTNPOD_ARTIFACTS", "").strip()
    project = project_root()
    if env:
        root = Path(env).expanduser()
        return (root if root.is_absolute() else (project or Path.cwd()) / root).resolve()
    if project is not None:
        return project / "artifacts"
    import pooch

    return Path(pooch.os_cache("attnpod")) / "artifacts"


def settings_key(settings: dict) -> str:
    """A short stable hash of a JSON-serialisable settings dict."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def artifact_name(name: str, settings: dict) -> str:
    """``<name>-<hash(settings)>``: an artifact's folder name, and a trained model's key in the caches."""
    return f"{name}-{settings_key(settings)}"


def artifact_dir(kind: str, name: str, settings: dict) -> Path:
    """``<root>/<kind>/<name>-<hash(settings)>/``, created, with the settings beside."""
    folder = artifacts_root() / kind / artifact_name(name, settings)
    folder.mkdir(parents=True, exist_ok=True)
    settings_file = folder / "settings.json"
    if not settings_file.exists():
        text = json.dumps(settings, sort_keys=True, indent=1, default=str)
        publish(settings_file, lambda tmp: tmp.write_text(text))
    return folder


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# Crash- and concurrency-safe artifacts. Every artifact ``X`` has a sidecar ``X.sha256``
# and a lock file ``X.lock``. Writers and verifying readers hold the lock, so no reader
# sees a half-published pair. A writer publishes in three renames: ``X.sha256.pending``
# (the new digest) appears first, then ``X``, then the pending digest becomes
# ``X.sha256``. A crash between them is repaired on the next access: if ``X`` matches
# the pending digest the publication is completed, else it is rolled back.

def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _pending(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.pending")


def temporary_path(path: Path) -> Path:
    """A temporary name beside ``path`` unique to this process and call."""
    return path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def publish(path: Path, write) -> None:
    """``write(tmp)`` then rename into place: readers see the old file or the new one, never a part."""
    tmp = temporary_path(path)
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def artifact_lock(path: Path):
    """An inter-process lock for one artifact (re-entrant within a process); use as a context manager."""
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.with_name(path.name + ".lock")), is_singleton=True)


def _recover(path: Path) -> None:
    """Finish or roll back a publication a crash interrupted, and remove stray temporary files."""
    pending = _pending(path)
    if pending.is_file():
        digest = pending.read_text().strip()
        if path.is_file() and sha256_file(path) == digest:
            pending.replace(_sidecar(path))
        else:
            pending.unlink()
    for stray in path.parent.glob(f"{path.name}.*.tmp"):
        stray.unlink(missing_ok=True)


def write_verified(path: Path, write) -> None:
    """Write ``path`` with a SHA-256 sidecar, crash- and concurrency-safe: ``write(tmp_path)`` makes the file.

    A crash leaves the previous pair or the new pair (after :func:`is_verified`
    repairs it), never a mismatch; two processes never share a temporary file.
    """
    path = Path(path)
    with artifact_lock(path):
        _recover(path)
        tmp = temporary_path(path)
        try:
            write(tmp)
            digest = sha256_file(tmp)
            publish(_pending(path), lambda p: p.write_text(digest + "\n"))
            tmp.replace(path)
            _pending(path).replace(_sidecar(path))
        finally:
            tmp.unlink(missing_ok=True)


def is_verified(path: Path) -> bool | None:
    """True if ``path`` matches its sidecar hash, False if not, None if either is missing."""
    path = Path(path)
    with artifact_lock(path):
        _recover(path)
        sidecar = _sidecar(path)
        if not (path.is_file() and sidecar.is_file()):
            return None
        return sha256_file(path) == sidecar.read_text().strip()


def reusable(path: Path, sound=None) -> bool:
    """True if ``path`` is a verified artifact and ``sound(path)`` holds; a corrupt one is reported and False.

    Call it holding :func:`artifact_lock` when the artifact is then recomputed, so
    that two processes never compute the same artifact at once.
    """
    state = is_verified(path)
    if state is False:
        warnings.warn(f"{path} is corrupted (hash mismatch); recomputing it", RuntimeWarning, stacklevel=2)
    elif state and sound is not None and not sound(path):
        warnings.warn(f"{path} holds NaN or infinite values, a corrupt cache; recomputing it", RuntimeWarning,
                      stacklevel=2)
        state = False
    return bool(state)
