"""The real model's rulings against their own replicates: what one ensemble of N windows cannot say.

Chapter 13 reads one ensemble of N windows. Its half-ensemble intervals speak of a statistic at
N/2, not of the full-N value printed beside them, and H* grows with N. Here the corpus is cut
into every disjoint tile of :data:`LENGTH` tokens and :data:`N_ENSEMBLES` disjoint ensembles of
:data:`ENSEMBLE` tiles are drawn from them (from the whole file, as chapter 13's windows are; the
ensembles are disjoint from each other, not from chapter 13's windows). On each:

* every layer's top scale, H*(0.1) and 𝒯_spec at it, and the attention on token 0
  (:func:`attnpod.analysis.layer_readout`): the full-N values with a Student-t interval over the
  ensembles (:func:`attnpod.estimators.replicate_interval`);
* H*(0.1) at that scale on :data:`DRAWS` random subsets of each size in :data:`SIZES`: how H*
  and the max/min ratio across layers move with N;
* the same with the first key removed and each row renormalised (the sink ablated).

On the first ensemble, the model's linear weights are rounded a second time
(:func:`round_again`, :data:`ROUNDINGS` seeds): a Q4_1-sized error on top of the file's own,
which says how much the statistics and the loss depend on the rounding. The loss is measured
on every validation tile, per tile, for the model and each second rounding.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..adapters import hf_fields
from ..analysis import READOUTS, LayerReadout, layer_readout
from ..config import check_counts
from ..errors import CorruptFile
from ..pretrained import SMOLLM2, Tokenised, load_pretrained
from ..shipped import MissingCheckpoint, shipped_result
from ..store import artifact_dir, artifact_lock, check_arrays, load_npz, reused, save_npz

RESULT_KIND = "real_replicates"
FORMAT = 1
LENGTH = 256  # tokens per tile: chapter 13's windows
N_ENSEMBLES, ENSEMBLE = 6, 200  # disjoint ensembles of chapter 13's N
SIZES = (25, 50, 100, 200)  # ensemble sizes H* is read at
DRAWS = 8  # random subsets per size and ensemble (one at the full size)
ROUNDINGS = 2  # second roundings of the weights (seeds)
BLOCK, LEVELS = 32, 16  # Q4_1: blocks of 32 weights along a row, 16 levels from the block's min to its max


def tiles(tokens: torch.Tensor, length: int = LENGTH) -> torch.Tensor:
    """Every disjoint tile of ``length`` tokens, in order: (n, length)."""
    n = len(tokens) // length
    return tokens[:n * length].reshape(n, length)


def ensembles(n_tiles: int, k: int, n: int, seed: int) -> np.ndarray:
    """``k`` disjoint ensembles of ``n`` tile indices each, seeded: (k, n)."""
    if k * n > n_tiles:
        raise ValueError(f"{k} disjoint ensembles of {n} need {k * n} tiles; the corpus holds {n_tiles}")
    return np.random.default_rng(seed).permutation(n_tiles)[:k * n].reshape(k, n)


def subsets(n: int, sizes, draws: int, seed: int) -> list[np.ndarray]:
    """For each size m ≤ n, ``draws`` random subsets of m of n snapshots without replacement (one, all of them,
    at m = n): a list of index arrays (d, m)."""
    rng = np.random.default_rng(seed)
    return [np.arange(n)[None] if m == n else np.stack([rng.permutation(n)[:m] for _ in range(draws)])
            for m in sizes]


@torch.no_grad()
def round_again(model, seed: int):
    """A copy of ``model`` whose every linear weight inside its layers carries a second, independent rounding
    error of the Q4_1 file's size: per block of :data:`BLOCK` weights along a row, uniform in ± half the
    block's step (max − min)/(LEVELS − 1), as rounding to that grid from a random offset leaves."""
    twin = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    for module in twin.model.layers.modules():
        if isinstance(module, torch.nn.Linear):
            W = module.weight
            rows, cols = W.shape
            if cols % BLOCK:
                raise ValueError(f"a linear weight of {cols} inputs does not split into blocks of {BLOCK}")
            blocks = W.reshape(rows, cols // BLOCK, BLOCK)
            step = (blocks.amax(-1, keepdim=True) - blocks.amin(-1, keepdim=True)) / (LEVELS - 1)
            noise = (torch.rand(blocks.shape, generator=generator, dtype=W.dtype) - 0.5) * step
            W.add_(noise.reshape(rows, cols))
    return twin


@torch.no_grad()
def tile_losses(model, windows: torch.Tensor, batch_size: int = 8, progress: bool = False) -> np.ndarray:
    """Mean next-token loss (nats per token) of ``model`` on each window (n, T): (n,)."""
    out = []
    for n0 in tqdm(range(0, len(windows), batch_size), desc="loss (tiles)", disable=not progress):
        x = windows[n0:n0 + batch_size]
        logits = model(input_ids=x).logits[:, :-1]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), x[:, 1:].reshape(-1), reduction="none")
        out.append(loss.view(len(x), -1).mean(-1).double().numpy())
    return np.concatenate(out)


@dataclass
class Replicates:
    """The readouts on ``K`` disjoint ensembles (arrays ``[k, l]``; ``size_rank[k, s, d, l]`` at ``sizes[s]``),
    sink-ablated (``ablated_*[k, l]``), under a second rounding on the first ensemble (``rounded_*[r, l]``), and the
    loss per validation tile (``val_loss[v]``, ``rounded_val_loss[r, v]``)."""

    sizes: np.ndarray
    top_scale: np.ndarray
    h_star: np.ndarray
    t_spec: np.ndarray
    sink: np.ndarray
    size_rank: np.ndarray
    ablated_top_scale: np.ndarray
    ablated_h_star: np.ndarray
    ablated_t_spec: np.ndarray
    ablated_sink: np.ndarray
    rounded_top_scale: np.ndarray
    rounded_h_star: np.ndarray
    rounded_t_spec: np.ndarray
    rounded_sink: np.ndarray
    val_loss: np.ndarray
    rounded_val_loss: np.ndarray
    meta: dict = field(default_factory=dict)
    source: str = "computed"
    path: Path | None = None

    SHAPES = {"sizes": ("S",), **{k: ("K", "L") for k in READOUTS}, "size_rank": ("K", "S", "D", "L"),
              **{f"ablated_{k}": ("K", "L") for k in READOUTS}, **{f"rounded_{k}": ("R", "L") for k in READOUTS},
              "val_loss": ("V",), "rounded_val_loss": ("R", "V")}

    def arrays(self) -> dict:
        return {k: np.asarray(getattr(self, k)) for k in self.SHAPES}

    def save(self, path: Path) -> None:
        save_npz(path, {"meta": self.meta, "format": FORMAT}, self.arrays())

    @classmethod
    def load(cls, path: Path) -> "Replicates":
        meta, arrays = load_npz(path)
        if meta.get("format") != FORMAT:
            raise CorruptFile(f"{path}: format {meta.get('format')}, expected {FORMAT}")
        check_arrays(path, arrays, cls.SHAPES, may_be_nan=("t_spec", "ablated_t_spec", "rounded_t_spec"))
        return cls(**arrays, meta=meta["meta"], path=Path(path))

    def came_from(self, source: str, path: Path) -> "Replicates":
        self.source, self.path = source, Path(path)
        return self


def settings(spec=None, n_ensembles: int = N_ENSEMBLES, ensemble: int = ENSEMBLE, length: int = LENGTH,
             sizes=None, draws: int = DRAWS, roundings: int = ROUNDINGS, seed: int = 42) -> dict:
    """Everything the replicates depend on; a bad count is a one-line :class:`~attnpod.errors.ParameterError`."""
    spec = SMOLLM2 if spec is None else spec
    check_counts({"n_ensembles": 2, "ensemble": 4, "length": 8, "draws": 1, "roundings": 1, "seed": 0},
                 n_ensembles=n_ensembles, ensemble=ensemble, length=length, draws=draws, roundings=roundings,
                 seed=seed)
    sizes = [int(m) for m in (SIZES if sizes is None else sizes) if 2 <= int(m) <= ensemble]
    if ensemble not in sizes:
        sizes.append(ensemble)
    return {"gguf_sha256": spec.sha256, "n_ensembles": n_ensembles, "ensemble": ensemble, "length": length,
            "sizes": sorted(sizes), "draws": draws, "roundings": roundings, "seed": seed, "block": BLOCK,
            "levels": LEVELS, "format": FORMAT}


def _readout_arrays(r: LayerReadout) -> dict:
    return {k: getattr(r, k) for k in READOUTS}


def measure(model, windows: torch.Tensor, chosen: dict, seed: int, progress: bool = False) -> dict:
    """The readouts of one ensemble of ``windows`` (plain, with its H* at every size, and sink-ablated)."""
    fields = hf_fields(model, windows, batch_size=8, progress=progress)
    plain = layer_readout(fields, subsets(len(windows), chosen["sizes"], chosen["draws"], seed), progress=progress)
    ablated = layer_readout(fields, ablate_sink=True, progress=progress)
    D = chosen["draws"]
    size_rank = np.stack([np.pad(s, ((0, D - len(s)), (0, 0)), mode="edge") for s in plain.size_rank])
    return {**_readout_arrays(plain), "size_rank": size_rank,
            **{f"ablated_{k}": v for k, v in _readout_arrays(ablated).items()}}


def replicates_file(chosen: dict, spec=None) -> Path:
    """Where the store keeps the replicates for these settings (and, beside them, each stage as it is done)."""
    return artifact_dir("analysis", (SMOLLM2 if spec is None else spec).key + "-replicates", chosen) / "result.npz"


def replicate_experiment(text: str, chosen: dict | None = None, spec=None, shipped_folder=None,
                         shipped_only: bool = False, progress: bool = True) -> Replicates:
    """The replicates for the ``chosen`` settings: shipped, else the store's, else computed (each ensemble and
    rounding kept in the store as it is done: a rerun resumes) and stored."""
    spec = SMOLLM2 if spec is None else spec
    chosen = settings(spec) if chosen is None else chosen
    if shipped_folder is not None or shipped_only:
        try:
            path = shipped_result("laptop", RESULT_KIND, spec.key, chosen, folder=shipped_folder)
            return _checked(path, chosen).came_from("shipped", path)
        except MissingCheckpoint:
            if shipped_only:
                raise
    path = replicates_file(chosen, spec)
    with artifact_lock(path):
        result = reused(path, lambda p: _checked(p, chosen))
        if result is not None:
            return result.came_from("cached", path)
        model, tokenizer = load_pretrained(spec)
        tokenised = Tokenised.of(text, tokenizer)
        every = tiles(tokenised.tokens, chosen["length"])
        groups = ensembles(len(every), chosen["n_ensembles"], chosen["ensemble"], chosen["seed"])
        val = tiles(tokenised.split("val"), chosen["length"])

        def part(name, compute):  # one stage's arrays, kept in the store
            stage = path.with_name(f"part-{name}.npz")
            kept = reused(stage, lambda p: load_npz(p)[1])
            if kept is None:
                kept = compute()
                save_npz(stage, {"stage": name}, kept)
            return kept

        parts = [part(f"ensemble-{k}", lambda k=k: measure(model, every[groups[k]], chosen, chosen["seed"] + k,
                                                            progress))
                 for k in tqdm(range(chosen["n_ensembles"]), desc="ensembles", disable=not progress)]
        losses = part("loss", lambda: {"val_loss": tile_losses(model, val, progress=progress)})
        rounded = []
        for r in range(chosen["roundings"]):
            def again(r=r):
                twin = round_again(model, chosen["seed"] + 1000 + r)
                readout = layer_readout(hf_fields(twin, every[groups[0]], batch_size=8, progress=progress),
                                        progress=progress)
                return {**_readout_arrays(readout), "val_loss": tile_losses(twin, val, progress=progress)}
            rounded.append(part(f"rounding-{r}", again))
        stack = lambda key, rows: np.stack([p[key] for p in rows])  # noqa: E731
        arrays = {k: stack(k, parts) for k in (*READOUTS, "size_rank", *(f"ablated_{k}" for k in READOUTS))}
        arrays |= {f"rounded_{k}": stack(k, rounded) for k in READOUTS}
        result = Replicates(sizes=np.asarray(chosen["sizes"]), **arrays, val_loss=losses["val_loss"],
                            rounded_val_loss=stack("val_loss", rounded),
                            meta={**chosen, "model": spec.label, "tiles": len(every), "val_tiles": len(val)})
        result.save(path)
    return result.came_from("computed", path)


def _checked(path, chosen: dict) -> Replicates:
    result = Replicates.load(path)
    stored = {k: result.meta.get(k) for k in chosen}
    if stored != chosen:
        raise CorruptFile(f"{path}: made with other settings than these")
    return result


__all__ = ["Replicates", "ensembles", "replicate_experiment", "round_again", "settings", "subsets", "tile_losses",
           "tiles"]
