"""The method against known answers: every reading on every planted ensemble (:mod:`attnpod.planted`).

A reading *recovers* a planted case when it orders the layers as planted: for every pair of layers
whose planted answers differ, the one planted larger reads strictly larger (a tie is a miss). What
each kind of case asks of a reading's per-layer number:

- "range" (exponential lags, offsets, windows): the reading's scale (:func:`attnpod.readings.layer_values`)
  must grow with the planted length;
- "rank" (centred rank): H*(ε) read at the reading's scale must grow with the planted rank;
- "sink" (sinks): the rest of the attention is the same in every layer, so the reading's scale must stay
  put: it *recovers* when its values across layers differ by at most :data:`SINK_TOLERANCE` (relative),
  i.e. sinks do not pass for range.

A reading **can see** a kind of case when it recovers every draw of every case of that kind at every N
and at every noise level up to :data:`SEEN_NOISE` (pre-registered; the strong-noise rows are shown,
not required).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .analysis import analyse_fields
from .pod import effective_rank
from .readings import READINGS, layer_values, top_scale_indices
from . import planted
from .errors import CorruptFile
from .store import artifact_dir, artifact_lock, load_npz, reused, save_npz

SINK_TOLERANCE = 0.10  # a reading unmoved by sinks varies by at most 10 % across the sink case's layers
SEEN_NOISE = 0.2  # "can see": every draw recovered at noise up to this η
RANK_EPSILON = 0.10  # H*(ε) of the rank case
NOISE_LEVELS = (0.0, 0.2, 0.5)
ENSEMBLE_SIZES = (32, 128)
KIND_OF_CASE = {"exponential lags": "range", "offsets": "range", "windows": "range", "sinks": "sink",
                "centred rank": "rank"}


def concordance(values, answer) -> float:
    """The share of layer pairs with different planted answers that ``values`` order strictly the same way."""
    v, a = np.asarray(values, float), np.asarray(answer, float)
    pairs = [(p, q) for p in range(len(a)) for q in range(len(a)) if a[p] < a[q]]
    return float(np.mean([v[p] < v[q] for p, q in pairs])) if pairs else float("nan")


def spread(values) -> float:
    """(max − min) / max of positive ``values``: 0 when every layer reads the same."""
    v = np.asarray(values, float)
    return float((v.max() - v.min()) / max(abs(v).max(), 1e-300))


def reading_numbers(case: planted.Planted, result, reading: str) -> np.ndarray:
    """What ``reading`` says of each layer, as the case's kind asks: its scale, or H*(ε) at its scale."""
    if case.kind == "rank":
        index = top_scale_indices(result, reading)
        return np.array([effective_rank(result.eigenvalues[l, s], RANK_EPSILON) for l, s in enumerate(index)])
    return layer_values(result, reading)


def recovers(case: planted.Planted, numbers) -> bool:
    """Whether a reading's ``numbers`` recover the planted answer of ``case`` (see the module's rules)."""
    if case.kind == "sink":
        return spread(numbers) <= SINK_TOLERANCE
    return concordance(numbers, case.answer) == 1.0


@dataclass
class Recovery:
    """The bench's results: one row per (case, noise, N, draw) and reading.

    ``rows``: dicts with case, kind, noise, N, draw, reading, the reading's numbers per layer, the planted
    answer, and whether it recovered it. :meth:`table` and :meth:`can_see` summarise them.
    """

    rows: list
    T: int

    def table(self):
        """Cases × noise × N (rows) by readings (columns): "k/n" draws recovered."""
        import pandas as pd

        frame = pd.DataFrame(self.rows)
        cell = frame.groupby(["case", "noise", "N", "reading"], sort=False)["recovered"].agg(["sum", "count"])
        text = cell.apply(lambda r: f"{int(r['sum'])}/{int(r['count'])}", axis=1).unstack("reading")
        return text[[r for r in READINGS if r in text.columns]]

    def can_see(self) -> dict[str, dict[str, bool]]:
        """``{reading: {kind: bool}}``: recovered in every draw of every case of that kind, every N, noise ≤
        :data:`SEEN_NOISE`."""
        out = {}
        for row in self.rows:
            if row["noise"] > SEEN_NOISE + 1e-12:
                continue
            kinds = out.setdefault(row["reading"], {})
            kinds[row["kind"]] = kinds.get(row["kind"], True) and bool(row["recovered"])
        return out

    def sees(self, reading: str, kind: str = "range") -> bool:
        """Whether ``reading`` can see planted answers of ``kind`` (:meth:`can_see`)."""
        return self.can_see()[reading][kind]

    def example(self, case: str, noise: float, N: int, reading: str):
        """The first draw's numbers and planted answer for one cell: (numbers, answer)."""
        for row in self.rows:
            if (row["case"], row["noise"], row["N"], row["reading"]) == (case, noise, N, reading):
                return np.asarray(row["numbers"]), np.asarray(row["answer"])
        raise KeyError((case, noise, N, reading))


def planted_cases(T: int):
    """The planted answers the bench tries at window length ``T``: {case: keyword arguments}. Lengths and
    widths scale with T so that the longest stays well inside the window."""
    q = max(T // 16, 1)
    return {"exponential lags": {"lengths": (q / 2, 2 * q, 6 * q)}, "offsets": {"lags": (1, q, 4 * q)},
            "windows": {"widths": (max(q // 2, 2), 2 * q, planted.WHOLE)}, "sinks": {"masses": (0.0, 0.3, 0.6)},
            "centred rank": {"ranks": (1, 3, 8)}}


BENCH_FORMAT = 1


def known_answers(T: int = 64, sizes=ENSEMBLE_SIZES, noise_levels=NOISE_LEVELS, draws: int = 3, seed: int = 0,
                  progress: bool = True) -> Recovery:
    """:func:`run_bench` with every reading, cached in the artifact store under its settings (a damaged file
    is recomputed with a warning)."""
    settings = {"T": T, "sizes": list(sizes), "noise": list(noise_levels), "draws": draws, "seed": seed,
                "cases": {k: {a: list(v) for a, v in kw.items()} for k, kw in planted_cases(T).items()},
                "format": BENCH_FORMAT}
    path = artifact_dir("bench", "known-answers", settings) / "recovery.npz"

    def load(p):
        meta, _ = load_npz(p)
        if meta.get("settings") != settings or not isinstance(meta.get("rows"), list):
            raise CorruptFile(f"{p}: not the bench's recovery for these settings")
        return Recovery(meta["rows"], T)

    with artifact_lock(path):
        cached = reused(path, load)
        if cached is not None:
            return cached
        result = run_bench(T, sizes, noise_levels, draws, seed=seed, progress=progress)
        save_npz(path, {"settings": settings, "rows": result.rows}, {})
    return result


def run_bench(T: int = 64, sizes=ENSEMBLE_SIZES, noise_levels=NOISE_LEVELS, draws: int = 3, readings=None,
              seed: int = 0, progress: bool = True) -> Recovery:
    """Every reading (default: all of :data:`attnpod.readings.READINGS` but the published one, which needs
    the published orientation and is added from it) on every planted case at every N and noise level,
    ``draws`` independent draws each. The analyses skip the bootstrap, half-ensembles and modes."""
    readings = list(READINGS) if readings is None else list(readings)
    jobs = [(case, eta, N, d) for case in planted_cases(T) for eta in noise_levels for N in sizes
            for d in range(draws)]
    rows = []
    for k, (case, eta, N, d) in enumerate(tqdm(jobs, desc="known answers", disable=not progress)):
        plant = planted.GENERATORS[case](**planted_cases(T)[case], T=T, N=N, noise=eta, seed=seed + 1000 * d + k)
        results = {o: analyse_fields(plant.fields, n_modes=0, n_boot=0, n_half=0, orientation=o, progress=False)
                   for o in ("causal", "published") if o == "causal" or "published" in readings}
        for r in readings:
            result = results["published" if r == "published" else "causal"]
            numbers = reading_numbers(plant, result, r)
            rows.append({"case": case, "kind": plant.kind, "noise": eta, "N": N, "draw": d, "reading": r,
                         "numbers": numbers.tolist(), "answer": plant.answer.tolist(),
                         "recovered": recovers(plant, numbers)})
    return Recovery(rows, T)
