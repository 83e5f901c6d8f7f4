"""How a layer's scale is read from its analysis: one registry of readings, used alike by the verdict matrix,
the real-model chapters and the bench (:mod:`attnpod.bench`).

A reading turns a :class:`~attnpod.analysis.FieldAnalysis` into one number per layer, in tokens:

- the wavelet readings pick the top dominant scale a* of a scalogram: Torrence–Compo power E(a) or the
  rectified E(a)/a, of the raw lag fields or of their fluctuations, or the published pipeline's;
- the range readings measure how far attention reaches: ``span``, the row-balanced span holding
  1 − ε of each query's attention off the first token (:func:`attnpod.lag.attention_span`; the reading
  this book chose on the bench), and ``keys``, the fewest keys anywhere holding as much
  (:func:`attnpod.lag.attention_keys`, ZigZagKV's budget: concentration, not range).

Every reading also names the grid scale its POD numbers are read at: a wavelet reading's own a*, a range
reading's grid scale nearest its value. Display text is made from the key here, never parsed back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .estimators import Halves
from .lag import SPAN_EPSILON

if TYPE_CHECKING:  # the registry's names need no torch: the analysis is imported where a reading is taken
    from .analysis import FieldAnalysis

READINGS = {
    "tc": "Torrence–Compo power, raw fields",
    "rectified": "rectified power E(a)/a, raw fields",
    "tc_fluct": "Torrence–Compo power, fluctuations",
    "rectified_fluct": "rectified power, fluctuations",
    "published": "published pipeline (A[b, b+s], its POD)",
    "span": f"attention span ({1 - SPAN_EPSILON:.0%} of attention off token 0)",
    "keys": f"fewest keys ({1 - SPAN_EPSILON:.0%} of attention off token 0)",
}
WAVELET_READINGS = ("tc", "rectified", "tc_fluct", "rectified_fluct", "published")
RANGE_READINGS = ("span", "keys")
FLAT_MARGIN = 0.005  # a top scale whose E(a) beats the runner-up's by at most 0.5 % is weakly determined ("flat")
CHOSEN = "span"  # the reading of range chosen on the bench, before any model (chapter "Known answers")

# bootstrap_statistics' key for each wavelet reading's resampled top scale
_BOOT_KEYS = {"tc": "top_scale", "rectified": "rectified_top_scale", "tc_fluct": "fluctuation_top_scale",
              "rectified_fluct": "rectified_fluctuation_top_scale", "published": "top_scale"}
_RANGE_ARRAYS = {"span": "attention_span", "keys": "attention_keys"}


def check_reading(reading: str) -> None:
    """A :class:`ValueError` unless ``reading`` is one of :data:`READINGS`."""
    if reading not in READINGS:
        raise ValueError(f"unknown reading {reading!r}; choose one of {list(READINGS)}")


def _scalogram(result: FieldAnalysis, reading: str) -> np.ndarray:
    return {"tc": result.scalogram, "rectified": result.scalogram, "tc_fluct": result.fluctuation_scalogram,
            "rectified_fluct": result.fluctuation_scalogram, "published": result.published_scalogram}[reading]


def layer_values(result: FieldAnalysis, reading: str) -> np.ndarray:
    """Each layer's scale under ``reading``, in tokens: (L,). A wavelet reading's top scale a*; a range
    reading's mean over snapshots of its per-snapshot value."""
    check_reading(reading)
    if reading in RANGE_READINGS:
        return getattr(result, _RANGE_ARRAYS[reading]).mean(-1)
    return result.scales[top_scale_indices(result, reading)]


def top_scale_indices(result: FieldAnalysis, reading: str) -> np.ndarray:
    """The grid index of each layer's scale under ``reading``, where its POD numbers are read: (L,).
    A wavelet reading's top dominant scale; a range reading's grid scale nearest its value (clipped to the grid)."""
    from .analysis import nearest_scale_index
    from .wavelet import dominant_scale_indices, rectified_dominant_scale_indices

    check_reading(reading)
    if reading in RANGE_READINGS:
        return np.array([nearest_scale_index(result.scales, max(v, 1e-12)) for v in layer_values(result, reading)])
    S = _scalogram(result, reading)
    if reading.startswith("rectified"):
        return np.array([rectified_dominant_scale_indices(s, result.scales, 1)[0] for s in S])
    return np.array([dominant_scale_indices(s, 1)[0] for s in S])


def replicates(result: FieldAnalysis, reading: str, statistics: dict | None = None) -> np.ndarray | None:
    """Each layer's value under ``reading`` on every bootstrap resample of the snapshots: (L, B), or None
    without resamples. ``statistics``: the result's :func:`attnpod.analysis.bootstrap_statistics`, if at hand."""
    from .analysis import bootstrap_statistics
    from .pod import resample_weights

    check_reading(reading)
    if len(result.resamples) == 0:
        return None
    if reading in RANGE_READINGS:
        w = resample_weights(result.resamples, result.resamples.shape[1])  # (B, N)
        return getattr(result, _RANGE_ARRAYS[reading]) @ w.T
    return (bootstrap_statistics(result) if statistics is None else statistics)[_BOOT_KEYS[reading]]


def at_grid_edge(result: FieldAnalysis, reading: str) -> np.ndarray:
    """Where a wavelet reading's top scale is the grid's first or last scale (the true maximum may lie beyond):
    (L,) bool. A range reading is never at an edge: its value is not a grid point."""
    check_reading(reading)
    if reading in RANGE_READINGS:
        return np.zeros(len(result.scalogram), dtype=bool)
    index = top_scale_indices(result, reading)
    return (index == 0) | (index == len(result.scales) - 1)


def top_margin(result: FieldAnalysis) -> np.ndarray:
    """How far each layer's Torrence–Compo top scale (raw fields) stands out: its scale energy E(a) over the
    runner-up's, less 1: (L,). Near 0, the top scale is weakly determined."""
    from .wavelet import scale_energy

    E = np.sort(scale_energy(result.scalogram), axis=-1)
    return np.divide(E[:, -1] - E[:, -2], E[:, -2], out=np.full(len(E), np.inf), where=E[:, -2] > 0)


def edge_flags(result: FieldAnalysis, reading: str, values=None, fmt: str = "{:.1f}") -> list[str]:
    """Each layer's value under ``reading`` as text, "(edge)" added where it sits at the grid's edge, and under
    the Torrence–Compo reading of the raw fields "(flat)" where it beats the runner-up scale by at most
    :data:`FLAT_MARGIN` (:func:`top_margin`)."""
    values = layer_values(result, reading) if values is None else values
    flat = top_margin(result) <= FLAT_MARGIN if reading == "tc" else np.zeros(len(values), dtype=bool)
    return [fmt.format(v) + (" (edge)" if e else "") + (" (flat)" if f else "")
            for v, e, f in zip(values, at_grid_edge(result, reading), flat)]


def shape_halves(result) -> dict[str, Halves]:
    """One model's shape statistics on its half-ensembles, at each layer's top scale, computed once:
    ``spectral_concentration`` and ``first_share`` ``[l, h]``, ``effective_rank`` ``[l, e, h]``."""
    from .analysis import half_statistics

    N = result.snapshot_energy.shape[1]
    return {k: Halves(v, result.halves, N) for k, v in half_statistics(result).items()}
