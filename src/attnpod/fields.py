"""The snapshot ensemble: attention fields of N windows, one forward pass each, eval mode (SPEC section 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import temporary_path
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
    if heads not in ("mean", "all"):
        raise ValueError(f"heads must be 'mean' or 'all', got {heads!r}")
    windows = token_windows(windows)
    N, T = windows.shape
    cfg = model.config
    shape = (N, cfg.n_layer, T, T) if heads == "mean" else (N, cfg.n_layer, cfg.n_head, T, T)
    nbytes = 4 * int(np.prod(shape))
    if out is None and nbytes > IN_MEMORY_LIMIT:
        raise MemoryError(f"fields of shape {shape} take {nbytes / 2**30:.1f} GiB; pass out=<file.npy> to stream them to disk")
    device = torch.device(device) if device not in (None, "auto") else next(model.parameters()).device
    model = model.to(device).eval()
    if out is not None:
        out = Path(out)
        tmp = temporary_path(out)
        fields = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    else:
        fields = np.empty(shape, dtype=np.float32)
    try:
        for n0 in tqdm(range(0, N, batch_size), desc="attention fields", disable=not progress):
            maps = model.attention_maps(windows[n0:n0 + batch_size].to(device))  # (B, L, H, T, T)
            if heads == "mean":
                maps = maps.mean(dim=2)
            fields[n0:n0 + len(maps)] = maps.float().cpu().numpy()
        if out is None:
            return fields
        fields.flush()
        del fields
        tmp.replace(out)
    finally:
        if out is not None:
            tmp.unlink(missing_ok=True)
    return np.load(out, mmap_mode="r")
