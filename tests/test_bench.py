"""The bench: its rules on hand-made numbers, the readings on planted ensembles, and its cache."""

import warnings

import numpy as np
import pytest

from attnpod import bench, planted, readings
from attnpod.analysis import analyse_fields
from attnpod.wavelet import paper_scales, scale_grid


def test_concordance_counts_strictly_ordered_pairs():
    assert bench.concordance([1, 2, 3], [5, 6, 7]) == 1.0
    assert bench.concordance([1, 1, 3], [5, 6, 7]) == pytest.approx(2 / 3)  # a tie is a miss
    assert bench.concordance([3, 2, 1], [5, 6, 7]) == 0.0
    assert bench.concordance([1, 9, 2], [1, 5, 1]) == 1.0  # equal answers set no pair


def test_a_sink_case_is_recovered_only_when_the_reading_stays_put():
    case = planted.sinks(T=16, N=3)
    assert bench.recovers(case, [10.0, 10.5, 10.9])
    assert not bench.recovers(case, [10.0, 12.0, 14.0])


@pytest.fixture(scope="module")
def small_bench():
    return bench.run_bench(T=32, sizes=(24,), noise_levels=(0.0,), draws=1, readings=("tc", "rectified", "span"),
                           progress=False)


def test_the_span_recovers_every_planted_range_and_the_wavelet_power_does_not(small_bench):
    seen = small_bench.can_see()
    assert seen["span"]["range"] and seen["span"]["sink"]
    assert not seen["tc"]["range"] and not seen["rectified"]["range"]
    # the bench's headline: no wavelet reading puts the whole past above a short window
    for r in ("tc", "rectified"):
        values, answer = small_bench.example("windows", 0.0, 24, r)
        assert not values[-1] > values[0]
    values, answer = small_bench.example("windows", 0.0, 24, "span")
    assert values[0] < values[1] < values[2]


def test_the_table_has_a_cell_per_case_noise_size_and_reading(small_bench):
    table = small_bench.table()
    assert list(table.columns) == ["tc", "rectified", "span"]
    assert len(table) == len(bench.planted_cases(32))
    assert set(table.to_numpy().ravel()) <= {"0/1", "1/1"}


def test_known_answers_is_cached_and_a_damaged_cache_is_recomputed():
    kwargs = dict(T=16, sizes=(12,), noise_levels=(0.0,), draws=1, progress=False)
    first = bench.known_answers(**kwargs)
    again = bench.known_answers(**kwargs)
    assert again.rows == first.rows
    from attnpod.store import artifacts_root

    (path,) = list(artifacts_root().rglob("recovery.npz"))
    path.write_bytes(path.read_bytes()[:-10])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        third = bench.known_answers(**kwargs)
    assert any("corrupted" in str(w.message) for w in caught)
    assert [r["recovered"] for r in third.rows] == [r["recovered"] for r in first.rows]


def test_the_scale_grid_reaches_half_the_window_beyond_128_tokens():
    np.testing.assert_array_equal(scale_grid(64), paper_scales())
    np.testing.assert_array_equal(scale_grid(128), paper_scales())
    grid = scale_grid(256)
    assert grid[0] == pytest.approx(2.0) and grid[-1] == pytest.approx(128.0)
    assert np.diff(np.log2(grid)).max() <= 5 / 19 + 1e-12
    assert scale_grid(1024)[-1] == pytest.approx(512.0)


def test_range_readings_average_their_snapshots_and_resample_like_means():
    p = planted.windows(widths=(2, 6, planted.WHOLE), T=20, N=10, seed=7)
    result = analyse_fields(p.fields, n_modes=0, n_boot=5, n_half=0, progress=False)
    np.testing.assert_allclose(readings.layer_values(result, "span"), result.attention_span.mean(-1))
    boot = readings.replicates(result, "span")
    assert boot.shape == (3, 5)
    counts = np.stack([np.bincount(r, minlength=10) for r in result.resamples])  # (B, N)
    np.testing.assert_allclose(boot, result.attention_span @ (counts / 10).T)
    index = readings.top_scale_indices(result, "span")
    for l, v in enumerate(readings.layer_values(result, "span")):
        assert abs(np.log(result.scales[index[l]] / v)) <= abs(np.log(result.scales / v)).min() + 1e-12
    assert not readings.at_grid_edge(result, "span").any()
    with pytest.raises(ValueError, match="unknown reading"):
        readings.layer_values(result, "spam")


def test_a_top_scale_at_the_grid_edge_is_flagged():
    p = planted.exponential_lags(lengths=(2, 8), T=32, N=8)
    result = analyse_fields(p.fields, n_modes=0, n_boot=0, n_half=0, progress=False)
    index = readings.top_scale_indices(result, "tc")
    edge = readings.at_grid_edge(result, "tc")
    np.testing.assert_array_equal(edge, (index == 0) | (index == len(result.scales) - 1))
    flags = readings.edge_flags(result, "tc")
    flat = readings.top_margin(result) <= readings.FLAT_MARGIN
    assert all(("(edge)" in f) == e and f.endswith("(flat)") == x for f, e, x in zip(flags, edge, flat))


def test_a_top_scale_that_barely_beats_the_runner_up_is_flagged_flat():
    from types import SimpleNamespace

    S = np.ones((3, 5, 4))  # layers, scales, lags: E(a) is the sum over lags
    S[0, 2] *= 1.5  # clearly on top
    S[1, 3] *= 1.004  # by 0.4 %: flat
    margin = readings.top_margin(SimpleNamespace(scalogram=S))
    np.testing.assert_allclose(margin, [0.5, 0.004, 0.0], atol=1e-12)


def test_the_book_marks_every_scale_verdict_of_a_reading_blind_to_range(small_bench):
    import pandas as pd

    from attnpod.book import blind_marked, column_labels, sight, sight_table
    from attnpod.claims import CLAIM_ROWS

    recovery = bench.Recovery([r for r in small_bench.rows], small_bench.T)
    for row in list(recovery.rows):  # the other readings of the verdict matrix, as blind as the bench's tc
        if row["reading"] == "tc":
            recovery.rows += [{**row, "reading": r} for r in ("tc_fluct", "rectified_fluct", "published")]
    labels = column_labels()
    verdicts = pd.DataFrame({label: {CLAIM_ROWS["scale"]: "disagree", CLAIM_ROWS["ranks"]: "disagree"}
                             for label in labels.values()})
    marked = blind_marked(verdicts, recovery)
    for r, label in labels.items():
        assert marked.loc[CLAIM_ROWS["scale"], label].endswith("(blind to range on the bench)") == (r != "span")
        assert marked.loc[CLAIM_ROWS["ranks"], label] == "disagree"  # only the scale claim is about range
    assert sight(recovery, "span").startswith("range: sees")
    assert list(sight_table(recovery).index) == list(labels.values())


def test_the_cross_model_table_has_every_claim_under_every_reading_for_every_family(small_bench):
    from attnpod.book import column_labels, cross_model_table
    from attnpod.claims import CLAIM_ROWS

    p = planted.exponential_lags(lengths=(2, 4, 8, 16), T=24, N=8, seed=1)
    analyses = {o: analyse_fields(p.fields, n_modes=0, n_boot=4, n_half=4, orientation=o, progress=False)
                for o in ("causal", "published")}
    from attnpod.book import claim_columns

    columns = claim_columns({"m": analyses["causal"]}, {"m": analyses["published"]})
    recovery = bench.Recovery(small_bench.rows + [{**r, "reading": x} for r in small_bench.rows if r["reading"] == "tc"
                                                  for x in ("tc_fluct", "rectified_fluct", "published")], 32)
    table = cross_model_table({"one": columns, "two": columns}, recovery)
    assert len(table) == len(CLAIM_ROWS) * len(column_labels())
    assert list(table.columns) == ["one", "two", "what the bench says the reading can see"]
    scale = table.loc[CLAIM_ROWS["scale"]]
    assert scale.loc[readings.READINGS["tc"], "one"].endswith("(blind to range on the bench)")
    assert not scale.loc[readings.READINGS["span"], "one"].endswith("(blind to range on the bench)")
    assert (table.loc[CLAIM_ROWS["ega_energy"], "one"] == "does not apply").all()  # no EGA model here
