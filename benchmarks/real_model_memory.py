"""Peak memory and time of the real model's analysis (chapter 13), per stage, at N = 1000 windows.

    ATTNPOD_DATA=/path/to/input.txt python benchmarks/real_model_memory.py [--n 1000] [--stream 48] [--layers 2]

Each stage runs in its own process, so each peak (ru_maxrss) is that stage's alone:

* ``load``: the de-quantised model from the artifact store (de-quantising first if it is not there);
* ``stream``: ``--stream`` windows of 256 tokens through all 30 layers, head-averaged fields
  streamed into a ``.npy`` file, with the layer statistics; one batch of 8 windows is in memory
  at a time, so this peak does not grow with N;
* ``analyse``: ``--layers`` layers of an N-window ensemble (the streamed windows' fields tiled to N:
  the analysis' memory depends on the shapes, not the values), read one layer at a time from
  the file, both orientations, 200 resamples and 100 half-ensembles as the book's.

The peak of a whole N-window run is the largest of the three: the fields of all 30 layers
(N·30·256²·4 bytes, 7.9 GB at N = 1000) stay on disk.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path


def _stage(name: str, folder: str, n: int, stream: int, layers: int, queue) -> None:
    import numpy as np
    import torch

    from attnpod.data import load_corpus
    from attnpod.fields import FieldFile
    from attnpod.pretrained import Tokenised, load_pretrained, pretrained_fields

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    folder = Path(folder)
    if name == "load":
        load_pretrained()
    elif name == "stream":
        model, tokenizer = load_pretrained()
        windows = Tokenised.of(load_corpus().text, tokenizer).windows(stream, 256, "all", 42)
        t0 = time.perf_counter()
        pretrained_fields(model, windows, folder / "fields.npy", progress=False)
    else:
        from attnpod.analysis import analyse_fields

        small = np.load(folder / "fields.npy", mmap_mode="r")[:, :layers]
        tiled = np.lib.format.open_memmap(folder / "tiled.npy", "w+", np.float32, (n, layers, *small.shape[2:]))
        for n0 in range(0, n, len(small)):
            tiled[n0:n0 + len(small)] = small[:n - n0]
        tiled.flush()
        del tiled, small
        t0 = time.perf_counter()
        for orientation in ("causal", "published"):
            analyse_fields(FieldFile(folder / "tiled.npy"), n_modes=0, orientation=orientation, n_boot=200,
                           n_half=100, progress=False)
    queue.put((time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="windows of the analysed ensemble (default 1000)")
    parser.add_argument("--stream", type=int, default=48, help="windows streamed through the model (default 48)")
    parser.add_argument("--layers", type=int, default=2, help="layers analysed (default 2)")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in ("load", "stream", "analyse"):
            queue = context.Queue()
            proc = context.Process(target=_stage, args=(name, folder, args.n, args.stream, args.layers, queue))
            proc.start()
            seconds, peak = queue.get()
            proc.join()
            rows[name] = (seconds, peak)
    print("| stage | what | seconds | peak memory (GB) |\n|---|---|---:|---:|")
    what = {"load": "the model from the store", "stream": f"{args.stream} windows, all 30 layers",
            "analyse": f"{args.layers} layers of N = {args.n}, both orientations"}
    for name, (seconds, peak) in rows.items():
        print(f"| {name} | {what[name]} | {seconds:.1f} | {peak / 1e9:.2f} |")
    per_window = rows["stream"][0] / args.stream
    per_layer = rows["analyse"][0] / args.layers
    print(json.dumps({"seconds_per_window": round(per_window, 3), "seconds_per_layer_both_orientations":
                      round(per_layer, 2), "peak_GB": round(max(p for _, p in rows.values()) / 1e9, 2)}))


if __name__ == "__main__":
    main()
