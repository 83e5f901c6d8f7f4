"""One layer of a long-window ensemble (Gemma's size: N = 128 windows of T = 1024 tokens) through the analysis,
timed, with its peak memory, against an independent float64 NumPy reference.

    python benchmarks/long_window_analysis.py [--n 128] [--t 1024] [--threads 2]

The layer is a planted ensemble (`attnpod.planted.windows`: a sliding window of T/2 keys, Gemma's local
layer), so the run needs no model. The reference recomputes, in float64 and without the package's
shortcuts: the scale energy E(a) from the Morlet transform of every lag profile (row by row, chunked),
the POD eigenvalues at the top scale from the explicit windowed snapshot matrix, and the attention span
row by row. Prints a table.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def reference(fields: np.ndarray, scales: np.ndarray, top: int) -> dict:
    """E(a), the eigenvalues at scale index ``top`` and the span, in float64 from the definitions."""
    from attnpod.lag import to_lag
    from attnpod.wavelet import morlet_cwt

    N, T, _ = fields.shape
    energy = np.zeros(len(scales))
    grams = np.zeros((N, N))
    w = np.exp(-np.arange(T) ** 2 / (2 * scales[top] ** 2))
    mean = np.zeros((T, T))
    for n in range(N):
        mean += to_lag(fields[n].astype(np.float64)) / N
    windowed = []
    for n in range(N):
        L = to_lag(fields[n].astype(np.float64))  # (i, tau)
        for i0 in range(0, T, 128):  # the CWT of every lag profile, 128 rows at a time
            energy += (np.abs(morlet_cwt(L[i0:i0 + 128], scales)) ** 2).sum(axis=(0, 2)) / T / N
        windowed.append(((L - mean) * w).ravel())
    U = np.stack(windowed)  # (N, T²): the windowed, centred snapshots
    grams = U @ U.T / N
    eigenvalues = np.clip(np.linalg.eigvalsh(grams)[::-1], 0, None)
    spans = []
    for n in range(N):
        L = to_lag(fields[n].astype(np.float64))
        rows = []
        for i in range(1, T):
            p = L[i, :i] / L[i, :i].sum()  # off the first token (lag i)
            rows.append(int(np.searchsorted(np.cumsum(p), 0.9 - 1e-9)) + 1)
        spans.append(np.mean(rows))
    return {"E(a)": energy, "eigenvalues at a*": eigenvalues, "attention span": np.array(spans)}


def _plant(path: str, n: int, t: int) -> None:
    """The planted layer, written to ``path`` by a child process (its temporaries never count in the parent's peak)."""
    from attnpod.planted import WHOLE, windows

    np.save(path, windows((t // 2, WHOLE), T=t, N=n, seed=0).fields[:, :1])  # (N, 1, T, T)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--t", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-reference", action="store_true", help="time and peak memory only")
    args = parser.parse_args()
    import multiprocessing
    import tempfile
    from pathlib import Path

    import torch

    from attnpod.analysis import analyse_fields
    from attnpod.wavelet import scale_energy

    torch.set_num_threads(args.threads)
    folder = tempfile.mkdtemp()
    path = str(Path(folder) / "fields.npy")
    child = multiprocessing.get_context("spawn").Process(target=_plant, args=(path, args.n, args.t))
    child.start()
    child.join()
    fields = np.load(path, mmap_mode="r")  # as the real model's fields are read: from disk, a layer at a time
    start = time.perf_counter()
    result = analyse_fields(fields, n_modes=0, n_boot=200, n_half=100, progress=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    top = int(result.dominant_index[0, 0])
    if args.no_reference:
        print(f"one layer, N = {args.n}, T = {args.t}, {len(result.scales)} scales, {args.threads} threads: "
              f"analysis {seconds:.1f} s, peak {peak:.2f} GB (the memory-mapped fields' pages included)")
        return
    fields = np.asarray(fields)
    start = time.perf_counter()
    ref = reference(fields[:, 0], result.scales, top)
    ref_seconds = time.perf_counter() - start
    ours = {"E(a)": scale_energy(result.scalogram[0]), "eigenvalues at a*": result.eigenvalues[0, top],
            "attention span": result.attention_span[0]}
    print(f"one layer, N = {args.n}, T = {args.t}, {len(result.scales)} scales, {args.threads} threads: "
          f"analysis {seconds:.1f} s (peak {peak:.2f} GB), float64 reference {ref_seconds:.1f} s")
    print(f"| quantity | largest relative difference |\n|---|---|")
    for name, value in ours.items():
        r = ref[name]
        scale = np.abs(r).max()
        print(f"| {name} | {np.abs(np.asarray(value, float)[:len(r)] - r).max() / scale:.1e} |")


if __name__ == "__main__":
    main()
