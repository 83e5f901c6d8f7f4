"""Analysis speed and memory at paper size, against a straightforward float64 NumPy reference.

    python benchmarks/analysis_speed.py [--n 1000] [--t 256] [--model] [--device cuda]

One layer of synthetic causal fields (N snapshots, T×T; each row a softmax of
a random local decay plus noise). Ours: attnpod's per-lag Gram POD. Reference:
for each scale, build the windowed snapshot matrix X[N, T²] in float64, centre,
C = X Xᵀ/N, ``numpy.linalg.eigh``. The memory column is the peak resident memory
above what the process held before the measurement (sampled every 5 ms).
``--device cuda`` adds the whole layer analysed on the GPU (the time includes
the transfers; the result is checked against the CPU's). ``--model`` also times a whole paper-size model: collecting the fields of a
(randomly initialised) BASE model into a memory map, then the full analysis of
all its layers.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from attnpod.analysis import analyse_fields, scale_selective_pod
from attnpod.wavelet import dominant_scale_indices, paper_scales, scalogram


def synthetic_fields(N: int, T: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    i, j = np.indices((T, T))
    lag = (i - j).astype(np.float32)
    out = np.empty((N, T, T), dtype=np.float32)
    for n in range(N):
        width = rng.uniform(1.0, 30.0, size=(T, 1)).astype(np.float32)
        s = -lag / width + rng.standard_normal((T, T)).astype(np.float32)
        s[j > i] = -np.inf
        s -= s.max(axis=1, keepdims=True)
        e = np.exp(s)
        out[n] = e / e.sum(axis=1, keepdims=True)
    return out


def reference_eigenvalues(fields: np.ndarray, scales) -> np.ndarray:
    N, T, _ = fields.shape
    i, j = np.indices((T, T))
    out = []
    for a in scales:
        X = (fields.astype(np.float64) * np.exp(-((i - j) ** 2) / (2 * a * a))).reshape(N, -1)
        X -= X.mean(axis=0)
        lam = np.linalg.eigh(X @ X.T / N)[0][::-1]
        out.append(np.clip(lam, 0, None))
    return np.array(out)


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def measure(fn):
    """(seconds, peak extra GiB, result) of fn(): resident memory sampled every 5 ms above its value at the start."""
    base, peak, done = _rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return seconds, max(peak[0] - base, 0) / 2**30, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--t", type=int, default=256)
    parser.add_argument("--model", action="store_true", help="also time a whole paper-size model (fields + 6 layers)")
    parser.add_argument("--device", default="cpu", help="also time the whole layer on this device (e.g. cuda)")
    args = parser.parse_args(argv)
    scales = paper_scales()
    print(f"synthetic fields: N = {args.n}, T = {args.t} (one layer)", flush=True)
    fields = synthetic_fields(args.n, args.t)
    dominant = scales[dominant_scale_indices(scalogram(fields, scales), 4)]
    print(f"dominant scales: {', '.join(f'{a:.2f}' for a in dominant)}\n", flush=True)

    # Warm-up on a few snapshots, so that no timed call pays for thread-pool start-up or first-touch allocation.
    scale_selective_pod(fields[:8], dominant[:1])
    analyse_fields(fields[:8, None], scales[:2], progress=False)
    reference_eigenvalues(fields[:8], dominant[:1])

    rows = []
    t, mem, ours4 = measure(lambda: scale_selective_pod(fields, dominant).eigenvalues)
    rows.append(("ours: POD at the 4 dominant scales", t, mem))
    t, mem, _ = measure(lambda: analyse_fields(fields[:, None], scales, progress=False).eigenvalues)
    rows.append(("ours: whole layer (scalogram, 20 scales, modes, indices)", t, mem))
    if args.device != "cpu":
        import torch

        cpu = analyse_fields(fields[:, None], scales, progress=False)
        analyse_fields(fields[:2, None], scales[:2], progress=False, device=args.device)  # warm-up: kernels, context
        t, mem, gpu = measure(lambda: analyse_fields(fields[:, None], scales, progress=False, device=args.device))
        torch.cuda.synchronize() if args.device.startswith("cuda") else None
        rows.append((f"ours: whole layer on {args.device}", t, mem))
        k = min(30, args.n)
        diff = np.max(np.abs(gpu.eigenvalues[..., :k] - cpu.eigenvalues[..., :k]) / cpu.eigenvalues[..., :1])
        print(f"{args.device} vs CPU: same dominant scales {np.array_equal(gpu.dominant_index, cpu.dominant_index)}, largest "
              f"eigenvalue difference (leading {k}, relative to λ1) {diff:.1e}", flush=True)
    t_ref, mem_ref, ref4 = measure(lambda: reference_eigenvalues(fields, dominant))
    rows.append(("reference float64: 4 dominant scales", t_ref, mem_ref))

    print("| computation (one layer) | time (s) | peak extra memory (GiB) |")
    print("|---|---:|---:|")
    for name, seconds, gib in rows:
        print(f"| {name} | {seconds:.2f} | {gib:.2f} |")
    k = min(30, args.n)
    rel = np.max(np.abs(ours4[:, :k] - ref4[:, :k]) / ref4[:, :k])
    print(f"\nspeed-up at 4 scales: {t_ref / rows[0][1]:.1f}×; whole layer (20 scales) vs reference (4): "
          f"{t_ref / rows[1][1]:.1f}×")
    print(f"largest relative eigenvalue difference, leading {k} at the 4 scales: {rel:.1e}")

    if args.model:
        import torch

        from attnpod.config import get_profile
        from attnpod.fields import collect_fields
        from attnpod.models import GPT
        from attnpod.train import model_config

        profile = get_profile("paper")
        torch.manual_seed(0)
        model = GPT(model_config(profile, "base")).eval()
        windows = torch.randint(65, (args.n, profile.block_size))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "fields.npy"
            t, mem, _ = measure(lambda: collect_fields(model, windows, out=path, progress=False) is not None)
            print(f"\n| whole paper-size model | time (s) | peak extra memory (GiB) |\n|---|---:|---:|")
            print(f"| collect head-averaged fields ({args.n} × 6 × 256 × 256) | {t:.1f} | {mem:.2f} |", flush=True)
            mapped = np.load(path, mmap_mode="r")
            t, mem, _ = measure(lambda: analyse_fields(mapped, scales, progress=False).spectral_concentration)
            print(f"| analysis of all 6 layers (fields memory-mapped) | {t:.1f} | {mem:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
