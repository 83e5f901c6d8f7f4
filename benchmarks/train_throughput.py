"""Training throughput: attnpod's fused model against the published-style reference.

    python benchmarks/train_throughput.py [--sizes laptop paper] [--variants ...] [--rounds 3] [--steps 4]

For each variant and size, both models run full training steps (forward,
backward, AdamW) on the same batches, alternating ours/reference for several
rounds in one process; the table reports the median tokens/second of each and
their ratio. bf16 autocast on CUDA, fp32 on the CPU. On the CPU the paper size
runs with a batch of 8 (tokens/second barely depends on it there).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_model import ReferenceGPT  # noqa: E402

from attnpod.config import get_profile  # noqa: E402
from attnpod.models import GPT, VARIANTS  # noqa: E402
from attnpod.train import model_config  # noqa: E402


def steps_per_second(model, batch, device, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = batch

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["laptop", "paper"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; {'bf16 autocast' if device.type == 'cuda' else 'fp32'}\n")
    print(f"| size | variant | batch × T | ours (tok/s) | reference (tok/s) | speed-up |")
    print(f"|---|---|---|---:|---:|---:|")
    for size in args.sizes:
        profile = get_profile(size)
        batch_size = profile.batch_size if device.type == "cuda" else min(profile.batch_size, 8)
        for variant in args.variants:
            cfg = model_config(profile, variant)
            torch.manual_seed(0)
            ours, ref = GPT(cfg).to(device).train(), ReferenceGPT(cfg).to(device).train()
            x = torch.randint(cfg.vocab_size, (batch_size, cfg.block_size), device=device)
            batch = (x, torch.roll(x, -1, dims=1))
            rates = {"ours": [], "ref": []}
            for _ in range(args.rounds):
                rates["ours"].append(steps_per_second(ours, batch, device, args.steps))
                rates["ref"].append(steps_per_second(ref, batch, device, args.steps))
            tok = batch_size * cfg.block_size
            o, r = statistics.median(rates["ours"]) * tok, statistics.median(rates["ref"]) * tok
            print(f"| {size} | {variant} | {batch_size} × {cfg.block_size} | {o:,.0f} | {r:,.0f} | {o / r:.2f}× |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
