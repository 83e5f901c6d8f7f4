"""The snapshot ensemble: attention fields of N windows, one forward pass each, eval mode (SPEC section 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .store import temporary_path
from .data import token_windows

IN_MEMORY_LIMIT = 4 * 2**30  # bytes; larger per-head ensembles must stream to disk


def collect_fields(model, windows, heads: str = "mean", batch_size: int = 16, device=None,
                   out: str | Path | None = None, progress: bool = True) -> np.ndarray:
    """Attention fields of the windows ``windows[n, t]``.

    heads="mean": ``fields[n, l, i, j]`` averaged over heads (the paper's choice);
    heads="all": ``fields[n, l, h, i, j]``. Float32. With ``out`` the array is a
    ``.npy`` memory map written batch by batch (the file appears only when complete),
    so ensembles larger than memory never sit in it whole.
    """
    check_heads(heads)
    windows = token_windows(windows)
    N, T = windows.shape
    cfg = model.config
    shape = (N, cfg.n_layer, T, T) if heads == "mean" else (N, cfg.n_layer, cfg.n_head, T, T)
    device = torch.device(device) if device not in (None, "auto") else next(model.parameters()).device
    model = model.to(device).eval()

    def batches():
        for n0 in range(0, N, batch_size):
            yield model.attention_maps(windows[n0:n0 + batch_size].to(device))  # (B, L, H, T, T)

    return stream_fields(batches(), shape, heads, out, progress, total=-(-N // batch_size))


def check_heads(heads: str) -> None:
    """A :class:`ValueError` unless ``heads`` is "mean" (head-averaged fields) or "all" (per head)."""
    if heads not in ("mean", "all"):
        raise ValueError(f"heads must be 'mean' or 'all', got {heads!r}")


def stream_fields(batches, shape: tuple, heads: str = "mean", out: str | Path | None = None, progress: bool = True,
                  total: int | None = None, on_batch=None) -> np.ndarray:
    """The fields of ``shape`` from ``batches`` of per-head attention maps (B, L, H, T, T), in order.

    heads="mean" averages each batch over heads as it comes. With ``out``, a ``.npy`` file
    written batch by batch with plain writes (no memory map: the pages written are the
    page cache's, not this process's), which appears only when complete; only one batch
    is ever in memory. ``on_batch(maps)`` sees each batch's per-head maps first
    (statistics that need the heads apart). Returns the array (with ``out``, memory-mapped;
    :class:`FieldFile` reads it a slice at a time instead).
    """
    check_heads(heads)
    nbytes = 4 * int(np.prod(shape))
    if out is None and nbytes > IN_MEMORY_LIMIT:
        raise MemoryError(f"fields of shape {shape} take {nbytes / 2**30:.1f} GiB; pass out=<file.npy> to stream them to disk")
    fields = np.empty(shape, dtype=np.float32) if out is None else None
    tmp = None if out is None else temporary_path(Path(out))
    n0 = 0
    try:
        with open(tmp, "wb") if tmp is not None else _nothing() as fh:
            if fh is not None:
                np.lib.format.write_array_header_2_0(fh, {"descr": "<f4", "fortran_order": False, "shape": shape})
            for maps in tqdm(batches, desc="attention fields", total=total, disable=not progress):
                if on_batch is not None:
                    on_batch(maps)
                if heads == "mean":
                    maps = maps.mean(dim=2)
                part = maps.float().cpu().numpy()
                if part.shape[1:] != tuple(shape[1:]) or n0 + len(part) > shape[0]:
                    raise ValueError(f"a batch of shape {part.shape} does not fit fields of shape {shape}")
                if fh is None:
                    fields[n0:n0 + len(part)] = part
                else:
                    fh.write(np.ascontiguousarray(part, dtype="<f4").tobytes())
                n0 += len(part)
        if n0 != shape[0]:
            raise ValueError(f"the batches held {n0} windows, the fields {shape[0]}")
        if out is None:
            return fields
        tmp.replace(out)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return np.load(out, mmap_mode="r")


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


class FieldFile:
    """A ``.npy`` ensemble on disk, read a slice at a time: each ``fields[...]`` maps the file, copies the
    slice and lets the map go, so a pass over all layers never holds the whole file in this process."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        probe = np.load(self.path, mmap_mode="r")
        self.shape, self.dtype = probe.shape, probe.dtype
        del probe

    @property
    def ndim(self) -> int:
        """The number of axes of the stored fields."""
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        mapped = np.load(self.path, mmap_mode="r")
        try:
            return np.array(mapped[index])
        finally:
            del mapped

    def __array__(self, dtype=None, copy=None):
        whole = self[...]
        return whole if dtype is None else whole.astype(dtype)


# ----------------------------------------------------------------------------- what a layer's attention does

RANK_ENERGY = 0.9  # the approximate rank of an attention matrix: singular values holding this share of Σσ²


class LayerStatistics:
    """What each layer's attention does, accumulated over batches of per-head maps (B, L, H, T, T).

    Per layer and head, averaged over windows and over the queries i ≥ 1 (query 0 can
    attend to token 0 only):

    * ``distance``: mean attention distance Σ_j A[i, j] (i − j), in tokens;
    * ``entropy``: attention entropy −Σ_j A[i, j] log A[i, j], in nats, and
      ``normalised_entropy``, the same over log(i + 1), its largest value (1: uniform over the prefix);
    * ``sink``: attention on the first token, A[i, 0];
    * ``rank``: the approximate rank of the whole T×T matrix, the number of singular
      values that hold :data:`RANK_ENERGY` of Σσ², on the first ``n_rank`` windows.

    A layer with low H* may be one that parks its attention on a sink (high ``sink``, low
    ``rank`` and ``entropy``) rather than one that reads a coarse scale; these tell the two apart.
    """

    KEYS = ("distance", "entropy", "normalised_entropy", "sink", "rank")

    def __init__(self, n_rank: int = 16, energy: float = RANK_ENERGY):
        if not 0 < energy <= 1:
            raise ValueError(f"energy must be in (0, 1], got {energy}")
        self.n_rank, self.energy = int(n_rank), float(energy)
        self.sums: dict = {}
        self.n_windows = self.n_ranked = 0

    def add(self, maps) -> None:
        """One batch of maps (B, L, H, T, T), a layer at a time; sums kept in float64."""
        maps = torch.as_tensor(maps)
        B, L, T = maps.shape[0], maps.shape[1], maps.shape[-1]
        i = torch.arange(1, T, dtype=maps.dtype)
        lag = (i[:, None] - torch.arange(T, dtype=maps.dtype)[None, :]).clamp_min(0)  # i - j, 0 above the diagonal
        take = min(B, self.n_rank - self.n_ranked)
        parts = {k: [] for k in self.KEYS}
        for l in range(L):
            rows = maps[:, l, :, 1:, :]  # (B, H, T-1, T): the queries i >= 1
            entropy = -torch.special.xlogy(rows, rows).sum(-1)  # 0 log 0 = 0
            per_query = {"distance": (rows * lag).sum(-1), "entropy": entropy,
                         "normalised_entropy": entropy / torch.log(i + 1), "sink": rows[..., 0]}
            for k, v in per_query.items():
                parts[k].append(v.double().mean(-1).sum(0))  # (H,): summed over windows
            if take > 0:
                s2 = torch.linalg.svdvals(maps[:take, l]).double() ** 2  # (b, H, T), descending
                share = s2.cumsum(-1) / s2.sum(-1, keepdim=True)
                parts["rank"].append(((share < self.energy - 1e-9).sum(-1) + 1).double().sum(0))
        for k, v in parts.items():
            if v:
                self.sums[k] = self.sums.get(k, 0) + torch.stack(v)  # (L, H)
        self.n_ranked += max(take, 0)
        self.n_windows += B

    def per_head(self) -> dict[str, np.ndarray]:
        """Each statistic per layer and head, (L, H)."""
        if not self.n_windows:
            raise ValueError("no attention maps were added")
        return {k: (self.sums[k] / (self.n_ranked if k == "rank" else self.n_windows)).numpy()
                for k in self.KEYS if k in self.sums}

    def per_layer(self) -> dict[str, np.ndarray]:
        """Each statistic per layer, averaged over heads, (L,)."""
        return {k: v.mean(-1) for k, v in self.per_head().items()}
