"""What both KV-cache simulators share (:mod:`.kvcache` on the character models, :mod:`.llmcache` on a real
model): the attention sinks, H2O's split of a budget, PyramidKV's schedule across layers, and the scored half
of a window.

A window's first half fills the cache (all of it at these budgets); only the second half, where every
budget's cache is full, is scored.
"""

from __future__ import annotations

import numpy as np

N_SINKS = 4  # StreamingLLM's attention sinks (Xiao et al. 2023)
PYRAMID_BETA = 20  # PyramidKV: the top layer gets the mean budget / β

# The cache rules' names, as result files store them and chapters print them (chapters pick rules by these).
RECENT = "recent window"  # the last k tokens
STREAMING = "StreamingLLM"  # the sinks and the most recent tokens
H2O = "H2O"  # the character models' H2O (sink protection separately)
H2O_SINKS = "H2O + sinks"  # the real model's H2O, keeping the sinks
SNAPKV = "SnapKV-style + sinks"  # the real model's SnapKV-style selection, keeping the sinks
PYRAMID = "PyramidKV schedule"  # PyramidKV's budgets across layers (its own selection differs)
PYRAMID_H2O = f"{PYRAMID}, H2O selection"  # the same on the character models, where a rule's name says its selection
ENTROPY = "∝ row entropy (static)"  # ∝ the layer's mean normalised row entropy on training windows: not LAVa,
# whose signal is per prompt
ADAKV = "Ada-KV-style pooling of H2O scores"  # a layer's heavy-hitter places pooled across its heads
# a rule's name in results shipped before it was renamed
FORMER_NAMES = {"∝ attention entropy (LAVa)": ENTROPY, "Ada-KV pooling": ADAKV}


def h2o_places(k, sinks: int = 0):
    """H2O's split of a budget of ``k`` keys (an int or a tensor of them) after ``sinks`` first tokens:
    (r, h) with r = ⌈(k − sinks)/2⌉ recent places and h = k − sinks − r heavy-hitter places."""
    recent = (k - sinks + 1) // 2
    return recent, k - sinks - recent


def pyramid_scores(n_layer: int, mean: float, beta: float = PYRAMID_BETA) -> np.ndarray:
    """PyramidKV's schedule: linear in depth from 2B − B/β (first layer) to B/β (last), mean B."""
    top = mean / beta
    return np.linspace(2 * mean - top, top, n_layer)


def scored(length: int) -> slice:
    """The scored positions of a ``length``-token window: its second half (the first fills the cache)."""
    return slice(length // 2, length)
