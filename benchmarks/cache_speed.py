"""What one cache evaluation of chapter 10 costs, piece by piece, on a randomly initialised BASE.

    python benchmarks/cache_speed.py [--size laptop] [--windows 64] [--budget 8] [--threads 1] [--rounds 3]

A cache evaluation is one forward pass over the windows with, in every layer, the
keys its cache holds (:func:`attnpod.experiments.kvcache.window_losses`). The table times the
fused forward (no cache, the floor), the explicit attention path with no mask, the
recent-window and H2O masks, and H2O's own bookkeeping (:func:`attnpod.experiments.kvcache.h2o_keep`
for one layer, times the layers): the median of ``--rounds`` runs, in seconds. Chapter
10 runs about 2 × 241 of these per laptop build; where the time goes is what to speed up.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from attnpod.experiments import kvcache
from attnpod.config import get_profile
from attnpod.models import GPT
from attnpod.train import model_config


def median_seconds(f, rounds: int) -> float:
    f()  # warm up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="laptop", choices=["smoke", "laptop", "paper"])
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--budget", type=int, default=8, help="keys per layer")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a book chapter gets 1 of 2 cores)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    P = get_profile(args.size)
    torch.manual_seed(0)
    model = GPT(model_config(P, "base", 65)).eval()
    x = torch.randint(0, 65, (args.windows, P.block_size))
    y = torch.randint(0, 65, (args.windows, P.block_size))
    budgets = kvcache.allocate_cache(np.ones(P.n_layer), args.budget, P.block_size)
    with torch.inference_mode():
        q = torch.randn(args.windows, P.n_head, P.block_size, P.block_size)
        logits = q.masked_fill(torch.ones(P.block_size, P.block_size, dtype=torch.bool).triu(1), float("-inf"))
        rows = {
            "fused forward (no cache)": lambda: model(x),
            "explicit attention, no mask": lambda: model.forward_explicit(x, maps=False),
            "recent-window cache": lambda: kvcache.window_losses(model, x, y, "recent", budgets),
            "H2O cache": lambda: kvcache.window_losses(model, x, y, "h2o", budgets),
            f"H2O bookkeeping alone (× {P.n_layer} layers)": lambda: [
                kvcache.h2o_keep(logits, torch.full((args.windows,), args.budget)) for _ in range(P.n_layer)],
        }
        print(f"{args.size} size, {args.windows} windows of {P.block_size}, {args.budget} keys per layer, "
              f"{args.threads} thread(s), median of {args.rounds}\n")
        print("| step | seconds |\n|---|---:|")
        for name, f in rows.items():
            print(f"| {name} | {median_seconds(f, args.rounds):.3f} |")


if __name__ == "__main__":
    main()
