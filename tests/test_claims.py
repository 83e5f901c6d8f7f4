"""Every claim function on synthetic inputs whose verdict is known by construction."""
import numpy as np
import pytest

from attnpod import claims
from attnpod.allocation import allocate


def test_scale_contrast_agree_disagree_partly():
    agree = np.array([[2, 4, 8, 16, 32, 64], [3, 5, 8, 16, 25, 40]])
    assert claims.scale_contrast(agree).verdict == "agree"
    assert claims.scale_contrast(np.full((2, 6), 64.0)).verdict == "disagree"  # never fine
    partly = agree.copy()
    partly[1, 0] = 30
    v = claims.scale_contrast(partly)
    assert v.verdict == "partly" and "fine early 3/4" in v.measurement and "coarse late 4/4" in v.measurement


def test_scale_contrast_with_replicates_reports_stability_and_intervals():
    top = np.array([[2, 4, 8, 16, 32, 64]], dtype=float)
    boot = np.repeat(top[..., None], 10, axis=-1)
    boot[0, 0, :3] = 30  # 3 of 10 resamples move layer 1 to a coarse scale
    v = claims.scale_contrast(top, boot)
    assert v.verdict == "agree" and v.stability == pytest.approx(0.7)
    assert "CI" in v.measurement and str(v) == "agree (70% of resamples)"


def test_theorem1():
    tails = np.array([10.0, 4.0, 1.0, 0.0])
    assert claims.theorem1(tails + 1e-12, tails).verdict == "holds"
    assert claims.theorem1(tails + np.array([0, 0.5, 0, 0]), tails).verdict == "fails"


def test_index_separates_layers():
    layers = np.linspace(0.5, 3.0, 6)[:, None] + np.array([0.0, 0.01, -0.01, 0.02])  # [l, m]
    assert claims.index_separates_layers(layers).verdict == "yes"
    assert claims.index_separates_layers(layers.T.reshape(6, 4) * 0 + np.array([0.5, 1.5, 2.5, 3.5])).verdict == "not clearly"
    with_nan = layers.copy()
    with_nan[0, 0] = np.nan  # a degenerate spectrum is ignored, not a failure
    assert claims.index_separates_layers(with_nan).verdict == "yes"


def test_layer1_degenerate():
    share = np.full((6, 4), 0.05)
    assert claims.layer1_degenerate(share).verdict == "disagree"
    share[0, 2] = 0.6
    assert claims.layer1_degenerate(share).verdict == "agree"
    flags = np.zeros((6, 4), dtype=bool)
    flags[0, 0] = True
    assert claims.layer1_degenerate(np.full((6, 4), 0.05), flags).verdict == "agree"


def test_ega_raises_energy_with_and_without_pairs():
    base = np.ones(6)
    assert claims.ega_raises_energy(base, base + 1).verdict == "agree"
    assert claims.ega_raises_energy(base, base - 1).verdict == "disagree"
    assert claims.ega_raises_energy(base, base + np.array([1, -1, 1, 1, 1, 1])).verdict == "partly"
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, (6, 50))
    # point estimates above BASE everywhere, but the paired intervals straddle 0 in every layer
    v = claims.ega_raises_energy(base, base + 0.01, base[:, None] + noise, base[:, None] + 0.01 + noise[::-1])
    assert v.verdict == "disagree"


def test_ranks_non_uniform():
    assert claims.ranks_non_uniform([[10, 20, 30], [15, 15, 40]]).verdict == "agree"
    assert claims.ranks_non_uniform([[10, 20, 30], [15, 15, 16]]).verdict == "partly"
    assert claims.ranks_non_uniform([[10, 11, 12], [15, 15, 16]]).verdict == "disagree"


def test_ega_gain_and_leak_and_published_and_conv():
    assert claims.ega_gain_kept(2.0, 1.9, 1.95).verdict == "causal gate keeps 50% of the gain"
    assert claims.ega_gain_kept(2.0, 2.1, 1.95).verdict == "no gain to explain"
    assert claims.gate_leaks(6.8).verdict == "leaks" and claims.gate_leaks(2e-7).verdict == "causal"
    assert claims.published_selects_scales(3e-15).verdict == "void on causal models"
    assert claims.published_selects_scales(0.4).verdict == "scale-dependent"
    assert claims.conv_equals_base(1e-7).verdict == "equal"
    assert claims.conv_equals_base(0.07).verdict == "equal logits, different attention"


@pytest.mark.parametrize("scores, budget, hi, expected", [
    ([1, 1, 1, 1, 1, 100], 48, 8, [8, 8, 8, 8, 8, 8]),
    ([1, 1, 1, 1, 1, 100], 24, 8, [4, 3, 3, 3, 3, 8]),
    ([1, 2, 3], 12, None, [2, 4, 6]),
    ([0, 0, 0], 7, 3, [3, 2, 2]),
])
def test_allocate_sums_exactly_within_bounds(scores, budget, hi, expected):
    counts = allocate(scores, budget, lo=1, hi=hi)
    assert counts.sum() == budget and counts.min() >= 1 and (hi is None or counts.max() <= hi)
    np.testing.assert_array_equal(counts, expected)


def test_allocate_never_misses_the_budget_on_random_scores():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, hi = rng.integers(1, 9), rng.integers(1, 9)
        budget = int(rng.integers(n, n * hi + 1))
        counts = allocate(rng.random(n) ** 3, budget, lo=1, hi=hi)
        assert counts.sum() == budget and counts.min() >= 1 and counts.max() <= hi
    with pytest.raises(ValueError, match="cannot be split"):
        allocate([1, 1], 20, hi=8)


@pytest.mark.parametrize("scores, budget, hi, expected", [([0, 0, 1], 20, 8, [6, 6, 8]), ([0, 0, 1], 21, 8, [7, 6, 8]),
                                                          ([0, 2, 1, 0], 30, 8, [7, 8, 8, 7]), ([0, 0, 1], 6, 8, [1, 1, 4])])
def test_allocate_meets_the_budget_when_some_scores_are_zero(scores, budget, hi, expected):
    """Scored items saturate at hi; the rest of the budget goes to the unscored ones, tied, in turn."""
    counts = allocate(scores, budget, lo=1, hi=hi)
    assert counts.sum() == budget and counts.max() <= hi
    np.testing.assert_array_equal(counts, expected)


def test_the_old_rounding_rule_misses_the_budget():
    """Chapter 06's former max(1, round(budget·h/Σh)) gives 51 for a budget of 48."""
    h = np.array([1, 1, 1, 1, 1, 100.0])
    assert np.maximum(1, np.round(48 * h / h.sum())).sum() == 51
    assert allocate(h, 48).sum() == 48


def test_reading_verdicts_and_the_matrix_on_small_analyses():
    from attnpod.analysis import analyse_fields

    def fields(seed):
        rng = np.random.default_rng(seed)
        logits = rng.normal(size=(12, 4, 16, 16)) * 2
        logits[..., np.triu(np.ones((16, 16), dtype=bool), 1)] = -np.inf
        A = np.exp(logits - logits.max(-1, keepdims=True))
        return A / A.sum(-1, keepdims=True)

    def analyses(orientation):
        return {m: analyse_fields(fields(s), np.array([2.0, 4.0, 8.0, 16.0, 24.0]), n_dominant=2, n_boot=6,
                                  orientation=orientation, progress=False) for m, s in (("base", 1), ("ega1", 2))}

    ours, published = analyses("causal"), analyses("published")
    columns = {name: claims.reading_verdicts(published if name == "published" else ours, name)
               for name in claims.READINGS}
    for name, col in columns.items():
        assert set(col) == {"scale", "separates", "layer1", "ranks", "ega_energy"}
        assert col["scale"].stability is not None and "95 % CI" in col["scale"].measurement
        assert (col["separates"].stability is not None) == (name in ("tc", "published"))
    with pytest.raises(ValueError, match="orientation='published'"):
        claims.reading_verdicts(ours, "published")
    # Torrence–Compo power on raw non-negative profiles ranks the coarsest scale first
    assert "fine early 0/4" in columns["tc"]["scale"].measurement
    verdicts, measurements = claims.verdict_matrix(columns)
    assert verdicts.shape == (5, 5) and list(verdicts.index)[0].startswith("early layers fine")
    assert measurements.loc[verdicts.index[0], "tc"] == columns["tc"]["scale"].measurement


def test_rank_correlation_is_spearman():
    assert claims.rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert claims.rank_correlation([1, 2, 3, 4], [4, 1, 0, -7]) == pytest.approx(-1.0)
    # ties share their mean rank: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4)
    expected = np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1]
    assert claims.rank_correlation([0, 5, 5, 9], [1, 2, 3, 4]) == pytest.approx(expected)
    assert np.isnan(claims.rank_correlation([1, 1, 1], [1, 2, 3]))


def test_paired_interval_and_allocation_verdict():
    rng = np.random.default_rng(0)
    m, lo, hi = claims.paired_interval(rng.normal(-1.0, 0.1, 64))
    assert lo < m < hi < 0
    budgets = [40, 32, 24]
    uniform = rng.normal(2.0, 0.05, (3, 64))
    random_median = uniform + 0.01
    better = uniform - 0.2
    assert claims.allocation_guides(better, uniform, random_median, budgets).verdict == "holds"
    assert claims.allocation_guides(uniform + 0.2, uniform, random_median, budgets).verdict == "does not hold"


@pytest.mark.parametrize("verdicts, expected", [(["holds", "holds", "holds", "no"], "holds (3 of 4 models)"),
                                                (["holds", "holds", "no", "no"], "does not hold (2 of 4 models)"),
                                                (["holds"], "holds (1 of 1 models)"),
                                                (["no", "no"], "does not hold (0 of 2 models)")])
def test_a_rule_holds_across_models_on_more_than_half(verdicts, expected):
    from types import SimpleNamespace

    assert claims.across_models([SimpleNamespace(verdict=v) for v in verdicts]) == expected
