"""The analysis of one trained model, end to end and cached: windows → fields → :func:`analyse_fields`.

Every result goes to the artifact store under a key of every setting that made it
and the SHA-256 of the model's weights; NaN or inf is never cached, and a cached
file holding them is recomputed with a warning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .analysis import READOUTS, FieldAnalysis, NonFiniteError, analyse_fields, layer_readout
from .errors import CorruptFile, StoreError
from .config import Profile
from .store import (artifact_dir, artifact_lock, check_arrays, load_npz, reusable, reused, save_npz, store_root,
                    write_verified)
from .data import Corpus, sample_windows
from .fields import collect_fields
from .models import weights_digest

ANALYSIS_FORMAT = 7  # bump when FieldAnalysis changes content, so stored results are recomputed


def ensemble_settings(profile: Profile, checkpoint_name: str, split: str, weights: str, heads: str = "mean") -> dict:
    """What the fields depend on: the model (its checkpoint name and the SHA-256 of its weights), the windows,
    and whether heads are averaged (``"mean"``) or kept (``"all"``)."""
    return {"checkpoint": checkpoint_name, "weights_sha256": weights, "split": split,
            "n_snapshots": profile.n_snapshots, "length": profile.block_size, "seed": profile.seed, "heads": heads}


# The analysis holds one layer's fields and a few arrays of the same size at once (the fields in
# float32, the lag fields and their centred copy, the published reading): budget this many copies.
LAYER_COPIES = 6


def ensemble_bytes(profile: Profile, heads: str = "mean") -> tuple[int, int]:
    """(disk, memory) in bytes that an ensemble of the profile's N windows needs: the fields file
    ``fields[n, l, (h,) i, j]`` in float32, and the analysis's working set for one layer."""
    N, T, L, H = profile.n_snapshots, profile.block_size, profile.n_layer, profile.n_head
    layer = 4 * N * T * T * (H if heads == "all" else 1)
    return layer * L, layer * LAYER_COPIES


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            info = dict(line.split(":", 1) for line in fh)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def check_resources(profile: Profile, heads: str = "mean") -> None:
    """Refuse, before any work, an ensemble that does not fit the artifact store's disk or this machine's
    memory (:func:`ensemble_bytes`): a :class:`~attnpod.errors.StoreError` that gives both sizes."""
    import shutil

    disk, memory = ensemble_bytes(profile, heads)
    root = store_root(create=False)
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    free = shutil.disk_usage(existing).free if existing is not None else None
    if free is not None and disk > free:
        raise StoreError(f"N = {profile.n_snapshots} windows of {profile.block_size} tokens need {disk / 1e9:.1f} GB "
                         f"of attention fields in {root}, which has {free / 1e9:.1f} GB free: lower N (--snapshots)")
    available = _available_memory()
    if available is not None and memory > available:
        raise StoreError(f"N = {profile.n_snapshots} windows of {profile.block_size} tokens need about "
                         f"{memory / 1e9:.1f} GB of memory to analyse, {available / 1e9:.1f} GB are available: "
                         f"lower N (--snapshots)")


def fields_are_finite(path: Path, chunk: int = 64) -> bool:
    """Every value of the ``.npy`` fields at ``path`` is finite (read ``chunk`` snapshots at a time);
    a file that is no float ``.npy`` is a :class:`~attnpod.errors.CorruptFile`."""
    try:
        fields = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise CorruptFile(f"{path} cannot be read as attention fields ({type(err).__name__})") from None
    if not isinstance(fields, np.ndarray) or fields.dtype.kind != "f" or fields.ndim not in (4, 5):
        raise CorruptFile(f"{path} does not hold attention fields")
    return all(np.isfinite(fields[n0:n0 + chunk]).all() for n0 in range(0, len(fields), chunk))


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
            check_resources(profile, heads)
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
        cached = reused(path, FieldAnalysis.load)  # its load checks every array, finiteness included
        if cached is not None:
            return cached, folder
        fields = model_fields(model, corpus, profile, name, split, device, progress, heads)
        if heads == "all":  # (N, L, H, T, T) -> (N, L·H, T, T): each head's field is analysed as a layer
            fields = fields.reshape(fields.shape[0], -1, *fields.shape[-2:])
        result = analyse_fields(fields, orientation=orientation, progress=progress, device=device, **options)
        result.meta.update(settings)
        result.save(path)
    return result, folder


MOST_ENSEMBLES = 6  # disjoint ensembles of N for the full-N intervals, at most
READOUT_FORMAT = 1


def disjoint_readouts(model, corpus: Corpus, profile: Profile, name: str, split: str = "val", device=None,
                      progress: bool = True, most: int = MOST_ENSEMBLES) -> dict | None:
    """Every layer's :func:`~attnpod.analysis.layer_readout` (top scale, H*(0.1) and 𝒯_spec at it, attention on
    token 0) on K disjoint ensembles of N = ``profile.n_snapshots`` windows of the ``split``: K = the most of
    ``most`` its disjoint tiles hold (the ensembles are disjoint from each other, not from the analysis's own
    ensemble). ``{readout: [k, l]}``, cached; None where the split holds fewer than two ensembles of N."""
    N, T = profile.n_snapshots, profile.block_size
    K = min(int(most), len(corpus.split(split)) // T // N)
    if K < 2:
        return None
    settings = {"fields": ensemble_settings(profile, name, split, weights_digest(model)), "ensembles": K,
                "format": READOUT_FORMAT}
    path = artifact_dir("analysis", name, settings) / "readouts.npz"
    shapes = {r: ("K", "L") for r in READOUTS}

    def load(p):
        arrays = load_npz(p)[1]
        check_arrays(p, arrays, shapes, {"K": K}, may_be_nan=("t_spec",))  # 𝒯_spec: NaN on a degenerate spectrum
        return arrays

    with artifact_lock(path):
        cached = reused(path, load)
        if cached is not None:
            return cached
        windows = sample_windows(corpus, K * N, T, split, profile.seed + 1).reshape(K, N, T)
        readouts = [layer_readout(collect_fields(model, w, device=device, progress=False), progress=progress)
                    for w in windows]
        arrays = {r: np.stack([getattr(x, r) for x in readouts]) for r in READOUTS}
        save_npz(path, settings, arrays)
    return arrays
