"""The analysis of one trained model, end to end and cached: windows → fields → :func:`analyse_fields`.

Every result goes to the artifact store under a key of every setting that made it
and the SHA-256 of the model's weights; NaN or inf is never cached, and a cached
file holding them is recomputed with a warning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .analysis import FieldAnalysis, NonFiniteError, analyse_fields
from .config import Profile, artifact_dir, artifact_lock, reusable, write_verified
from .data import Corpus, sample_windows
from .fields import collect_fields
from .models import weights_digest

ANALYSIS_FORMAT = 4  # bump when FieldAnalysis changes content, so stored results are recomputed


def ensemble_settings(profile: Profile, checkpoint_name: str, split: str, weights: str, heads: str = "mean") -> dict:
    """What the fields depend on: the model (its checkpoint name and the SHA-256 of its weights), the windows,
    and whether heads are averaged (``"mean"``) or kept (``"all"``)."""
    return {"checkpoint": checkpoint_name, "weights_sha256": weights, "split": split,
            "n_snapshots": profile.n_snapshots, "length": profile.block_size, "seed": profile.seed, "heads": heads}


def fields_are_finite(path: Path, chunk: int = 64) -> bool:
    """Every value of the ``.npy`` fields at ``path`` is finite (read ``chunk`` snapshots at a time)."""
    fields = np.load(path, mmap_mode="r")
    return all(np.isfinite(fields[n0:n0 + chunk]).all() for n0 in range(0, len(fields), chunk))


def _analysis_is_finite(path: Path) -> bool:
    return FieldAnalysis.load(path).is_finite()


def model_fields(model, corpus: Corpus, profile: Profile, checkpoint_name: str, split: str = "val",
                 device=None, progress: bool = True, heads: str = "mean") -> np.ndarray:
    """The model's ensemble ``fields[n, l, i, j]`` (heads averaged) or ``fields[n, l, h, i, j]`` (``heads="all"``),
    cached (memory-mapped on reuse).

    Keyed by the settings and the weights' SHA-256; fields with NaN or inf are
    never written, and a cached file holding them is recomputed with a warning.
    """
    settings = ensemble_settings(profile, checkpoint_name, split, weights_digest(model), heads)
    path = artifact_dir("fields", checkpoint_name, settings) / "fields.npy"
    with artifact_lock(path):
        if not reusable(path, fields_are_finite):
            windows = sample_windows(corpus, profile.n_snapshots, profile.block_size, split, profile.seed)

            def write(tmp):
                collect_fields(model, windows, heads=heads, device=device, out=tmp, progress=progress)
                if not fields_are_finite(tmp):
                    raise NonFiniteError(f"{checkpoint_name}: its attention fields hold NaN or inf "
                                         f"(non-finite weights?); nothing was cached")

            write_verified(path, write)
    return np.load(path, mmap_mode="r")


def analyse_model(model, corpus: Corpus, profile: Profile, name: str, split: str = "val", device=None,
                  orientation: str = "causal", progress: bool = True, heads: str = "mean",
                  **options) -> tuple[FieldAnalysis, Path]:
    """Fields and :func:`analyse_fields` for one trained model, both cached under keys of every setting.

    ``name`` identifies the trained model (its checkpoint folder name, which hashes
    its settings); the weights' SHA-256 is part of the key as well, so another
    model under the same name never reuses this one's results. ``heads="all"``
    analyses every head's field on its own: the result's "layers" are the L·H
    (layer, head) pairs in the order l·H + h.
    """
    fields_settings = ensemble_settings(profile, name, split, weights_digest(model), heads)
    settings = {"fields": fields_settings, "orientation": orientation, "format": ANALYSIS_FORMAT, **options}
    folder = artifact_dir("analysis", name, settings)
    path = folder / "analysis.npz"
    with artifact_lock(path):
        if reusable(path, _analysis_is_finite):
            return FieldAnalysis.load(path), folder
        fields = model_fields(model, corpus, profile, name, split, device, progress, heads)
        if heads == "all":  # (N, L, H, T, T) -> (N, L·H, T, T): each head's field is analysed as a layer
            fields = fields.reshape(fields.shape[0], -1, *fields.shape[-2:])
        result = analyse_fields(fields, orientation=orientation, progress=progress, device=device, **options)
        result.meta.update(settings)
        result.save(path)
    return result, folder
