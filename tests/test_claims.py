"""Every claim function on synthetic inputs whose verdict is known by construction."""
import numpy as np
import pytest

from attnpod import claims, estimators
from attnpod.experiments.budgets import allocate, distinct_orders, permuted_allocations


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
    assert claims.simulation_matches(1.2e-5).verdict == "passes" and claims.simulation_matches(0.01).verdict == "fails"
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


def test_allocate_keeps_each_item_under_its_own_cap_and_sends_the_excess_to_the_others():
    counts = allocate([10.0, 1.0, 1.0, 1.0], 40, lo=2, hi=[8, 30, 30, 30])
    assert counts.tolist() == [8, 11, 11, 10] and counts.sum() == 40
    with pytest.raises(ValueError, match="cannot be split"):
        allocate([1, 1], 20, hi=[8, 9])


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
    assert verdicts.shape == (5, len(claims.READINGS)) and list(verdicts.index)[0].startswith("early layers fine")
    assert measurements.loc[verdicts.index[0], "tc"] == columns["tc"]["scale"].measurement


def test_rank_correlation_is_spearman():
    assert estimators.rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert estimators.rank_correlation([1, 2, 3, 4], [4, 1, 0, -7]) == pytest.approx(-1.0)
    # ties share their mean rank: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4)
    expected = np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1]
    assert estimators.rank_correlation([0, 5, 5, 9], [1, 2, 3, 4]) == pytest.approx(expected)
    assert np.isnan(estimators.rank_correlation([1, 1, 1], [1, 2, 3]))


def test_paired_interval():
    m, lo, hi = estimators.paired_interval(np.random.default_rng(0).normal(-1.0, 0.1, 64))
    assert lo < m < hi < 0


@pytest.mark.parametrize("shift, spread, n, outcome", [
    (-0.10, 0.05, 64, "better"),       # far below 0
    (+0.10, 0.05, 64, "worse"),
    (0.0, 0.02, 256, "equivalent"),    # tight around 0: the 90 % interval inside ±0.02
    (-0.01, 0.02, 256, "equivalent"),  # a tiny significant gain is still inside the margin: nobody would act on it
    (0.0, 0.3, 16, "inconclusive"),    # too few, too noisy windows to say either
    (-0.03, 0.05, 400, "better"),      # beyond the margin and clear of 0: not equivalent
])
def test_compare_gives_each_of_the_four_outcomes(shift, spread, n, outcome):
    d = np.random.default_rng(1).normal(0, 1, n)
    d = shift + spread * (d - d.mean()) / d.std()
    c = claims.compare(d, margin=0.02)
    assert c.outcome == outcome, c
    assert c.lo < c.lo90 <= c.mean <= c.hi90 < c.hi
    assert c.detectable == pytest.approx(2.80 * spread / np.sqrt(n), rel=0.15)  # (1.96 + 0.84) σ/√n


def test_distinct_orders_are_the_permutations_of_the_rule_itself():
    orders = distinct_orders([1, 1, 2], 100)
    np.testing.assert_array_equal(orders, [[1, 2, 1], [2, 1, 1]])  # 3 distinct orders, less the rule's own
    assert len(distinct_orders([3, 3, 3], 100)) == 0  # uniform counts: no null at all
    six = distinct_orders([1, 2, 3, 4, 5, 6], 40, seed=2)
    assert six.shape == (40, 6) and len({tuple(o) for o in six}) == 40
    assert all(sorted(o) == [1, 2, 3, 4, 5, 6] and list(o) != [1, 2, 3, 4, 5, 6] for o in six)
    thirty = distinct_orders(np.arange(30), 25, seed=3)  # too many to enumerate: sampled
    assert thirty.shape == (25, 30) and len({tuple(o) for o in thirty}) == 25
    null = permuted_allocations([[1, 1, 2], [2, 2, 2]], 10)
    assert null.shape == (2, 2, 3) and np.isnan(null[1]).all() and (null[0] == [[1, 2, 1], [2, 1, 1]]).all()
    assert not claims.null_binds(5) and claims.null_binds(19) and claims.null_binds(40)
    assert claims.permutation_share(1.0, [0.5, 2.0, 3.0, np.nan]) == pytest.approx(2 / 3)


def _case(rule_shift, permuted_shift=None, baseline_shift=None, n_perm=40, budgets=(8, 6, 4), seed=0):
    """A rule, uniform, its permutations and the best baseline, as losses [k, w] with known offsets."""
    rng = np.random.default_rng(seed)
    uniform = rng.normal(2.0, 0.05, (len(budgets), 128))
    noise = lambda: rng.normal(0, 0.01, uniform.shape)  # noqa: E731
    rule = uniform + rule_shift + noise()
    permuted = None if permuted_shift is None else [
        np.stack([uniform[k] + permuted_shift + rng.normal(0, 0.01, 128) for _ in range(n_perm)]) for k in range(len(budgets))]
    best = None if baseline_shift is None else uniform + baseline_shift + noise()
    return claims.allocation_verdict(rule, uniform, budgets, permuted, best, "∝ H*")


def test_allocation_verdict_outcomes_and_tiers():
    assert _case(-0.10, permuted_shift=0.0, baseline_shift=-0.10).verdict == "better, useful"
    assert _case(-0.10, permuted_shift=0.0, baseline_shift=-0.30).verdict == "better, informative"  # baseline wins
    # better than uniform, but so is every order of its counts: the analysis chose nothing
    assert _case(-0.10, permuted_shift=-0.10).verdict == "better"
    assert _case(-0.10, permuted_shift=-0.20).verdict == "better"
    assert _case(-0.10).verdict == "better, null not run"
    # too few orders to reach 95 %: the null cannot bind, whatever the losses
    assert _case(-0.10, permuted_shift=0.5, baseline_shift=-0.1, n_perm=10).verdict == "better"
    assert _case(+0.10, permuted_shift=0.0).verdict == "worse"
    assert _case(0.0, permuted_shift=0.0).verdict == "equivalent"
    v = _case(0.0)
    assert "TOST" in v.criterion and "detectable" in v.criterion and "8: equivalent" in v.measurement


def test_a_null_run_at_some_budgets_gives_the_tier_there_and_says_where():
    rng = np.random.default_rng(4)
    uniform = rng.normal(2.0, 0.05, (4, 128))
    rule = uniform - 0.1 + rng.normal(0, 0.01, uniform.shape)
    orders = lambda k, shift: np.stack([uniform[k, :32] + shift + rng.normal(0, 0.01, 32) for _ in range(19)])  # noqa: E731
    unscored = np.full((19, 32), np.nan)  # the null's padding where it was not run
    beaten = [unscored, unscored, orders(2, 0.0), unscored]  # the rule's order beats every one, at budget 4 only
    v = claims.allocation_verdict(rule, uniform, [8, 6, 4, 2], beaten)
    assert v.verdict == "better, informative at 4" and v.outcome == "better"
    assert "4: better" in v.measurement and "beats 100% of 19 orders" in v.measurement
    assert v.measurement.count("orders") == 1  # the budgets without a null say nothing of one
    matched = [unscored, unscored, orders(2, -0.1), unscored]  # every order does as well: the order chose nothing
    assert claims.allocation_verdict(rule, uniform, [8, 6, 4, 2], matched).verdict == "better"
    nowhere = [unscored] * 4  # padding everywhere is no null at all
    assert claims.allocation_verdict(rule, uniform, [8, 6, 4, 2], nowhere).verdict == "better, null not run"


def test_allocation_verdict_needs_a_majority_of_budgets():
    rng = np.random.default_rng(3)
    uniform = rng.normal(2.0, 0.05, (4, 128))
    rule = uniform + np.array([-0.1, -0.1, 0.1, 0.1])[:, None] + rng.normal(0, 0.01, (4, 128))
    v = claims.allocation_verdict(rule, uniform, [8, 6, 4, 2])
    assert v.verdict == "mixed" and v.measurement.count("better") == 2 and v.measurement.count("worse") == 2


@pytest.mark.parametrize("verdicts, expected", [
    (["better, useful", "better", "better, informative", "worse"], "better (3 of 4 models)"),
    (["better", "better", "worse", "worse"], "no majority (better 2, worse 2 of 4 models)"),
    (["equivalent"], "equivalent (1 of 1 models)"),
    (["worse", "worse"], "worse (2 of 2 models)"),
    (["mixed", "mixed"], "mixed (2 of 2 models)"),
    (["mixed", "identical to uniform"], "no majority (mixed 1, identical to uniform 1 of 2 models)")])
def test_a_rule_across_models_takes_the_majority_outcome(verdicts, expected):
    from types import SimpleNamespace

    as_made = [SimpleNamespace(claim="c", verdict=v, outcome=v.split(",")[0]) for v in verdicts]
    assert claims.across_models(as_made) == expected


def test_an_outcome_is_read_from_the_verdict_never_parsed_from_its_text():
    d = np.full((3, 40), -0.1) + np.random.default_rng(0).normal(0, 0.01, (3, 40))
    v = claims.allocation_verdict(d, np.zeros((3, 40)), [8, 6, 4])
    assert v.outcome == "better" and v.verdict.startswith("better")
    with pytest.raises(ValueError, match="not an allocation verdict"):
        claims.outcome_of(claims.reproduces(0.0))


def test_shape_claims_read_half_ensembles():
    """A verdict on half-ensembles reports the statistic at N/2 with its interval and its stability there."""
    halves = np.array([np.random.default_rng(h).permutation(20)[:10] for h in range(50)])
    ranks = np.array([[10.0, 12, 30], [8, 9, 20]])  # (m, l): ratios 3.0 and 2.5
    values = np.repeat(ranks[..., None], 50, axis=-1)
    values[1, 2, :20] = 10  # 20 of 50 halves: model 2's ratio falls to 1.25
    v = claims.ranks_non_uniform(ranks, estimators.Halves(values, halves, 20))
    assert v.verdict == "agree" and v.stability == pytest.approx(0.6)
    assert str(v) == "agree (60% of half-ensembles of N/2)" and "at N/2 = 10" in v.measurement


def test_allocation_verdict_leaves_out_budgets_where_the_rule_is_uniform():
    rng = np.random.default_rng(5)
    uniform = rng.normal(2.0, 0.05, (3, 128))
    rule = uniform.copy()
    rule[2] += 0.1 + rng.normal(0, 0.01, 128)  # differs only at the last budget, and is worse there
    v = claims.allocation_verdict(rule, uniform, [8, 6, 4], same_as_uniform=[True, True, False])
    assert v.verdict == "worse" and "same split as uniform at 8, 6" in v.measurement
    assert claims.allocation_verdict(uniform, uniform, [8, 6, 4], same_as_uniform=[True] * 3).verdict == \
        "identical to uniform"


def test_correlation_p_value_is_exact_for_six_layers():
    # a perfect monotone relation among 6 items: 2 of the 720 orders reach |ρ| = 1
    assert estimators.correlation_p_value([1, 2, 3, 4, 5, 6], [2, 4, 6, 8, 10, 12]) == pytest.approx(2 / 720)
    assert estimators.correlation_p_value([1, 2, 3, 4, 5, 6], [3, 1, 6, 2, 5, 4]) > 0.3
    assert np.isnan(estimators.correlation_p_value([1, 1, 1], [1, 2, 3]))


def test_experiment_verdicts_read_an_experiment_result():
    """The chapters' verdicts from a result object: the best baseline per budget, the null where run,
    budgets where a rule splits as uniform left out."""
    from types import SimpleNamespace

    rng = np.random.default_rng(6)
    uniform = rng.normal(2.0, 0.05, (2, 96))
    losses = {"uniform": uniform, "∝ H*(0.1)": uniform - 0.1 + rng.normal(0, 0.01, (2, 96)),
              "∝ T_spec": uniform.copy(), "A": uniform - 0.05, "B": uniform - 0.2}
    counts = {"uniform": [[2, 2, 2], [1, 1, 1]], "∝ H*(0.1)": [[1, 2, 3], [1, 1, 1]], "∝ T_spec": [[2, 2, 2], [1, 1, 1]],
              "A": [[1, 1, 4], [1, 1, 1]], "B": [[1, 1, 4], [1, 1, 1]]}
    null = np.stack([np.stack([uniform[k] + 0.05 for _ in range(20)]) for k in range(2)])
    result = SimpleNamespace(budgets=np.array([6, 3]), loss=lambda r: losses[r], counts=lambda r: np.array(counts[r]),
                             null=lambda r: null if r == "∝ H*(0.1)" else None,
                             same_as=lambda r, u: (np.array(counts[r]) == np.array(counts[u])).all(-1))
    np.testing.assert_array_equal(claims.best_of(result, ["A", "B"]), losses["B"])
    v = claims.experiment_verdicts(result, ["∝ H*(0.1)", "∝ T_spec"], "uniform", ["A", "B"], "heads")
    # budget 3 is uniform for every rule: only budget 6 counts; better, beats its null, but worse than B
    assert v["∝ H*(0.1)"].verdict == "better, informative" and "same split as uniform at 3" in v["∝ H*(0.1)"].measurement
    assert v["∝ T_spec"].verdict == "identical to uniform"
    v = claims.experiment_verdicts(result, ["∝ H*(0.1)"], "uniform", ["A"], "heads")
    assert v["∝ H*(0.1)"].verdict == "better, useful"


def test_a_null_on_fewer_windows_ranks_the_rule_on_those_windows():
    """The rule is ranked among its permutations on the windows they were scored on, not on all."""
    uniform = np.full((1, 8), 2.0)
    rule = np.array([[1.0, 1.0, 1.0, 1.0, 9.0, 9.0, 9.0, 9.0]])  # good on the first 4 windows, bad on the rest
    permuted = [np.full((20, 4), 1.5)]  # the null on the first 4 windows
    v = claims.allocation_verdict(rule, uniform, [8], permuted)
    assert "beats 100% of 20 orders" in v.measurement  # 1.0 < 1.5 on the shared windows (all 8 would give 5.0)


# ----------------------------------------------------------------------------- training seeds

def test_across_seeds_four_of_five_is_the_book_verdict():
    v = claims.across_seeds({42: "disagree", 43: "disagree", 44: "agree", 45: "disagree", 46: "disagree"}, "scale")
    assert (v.verdict, v.count, v.n, v.robust) == ("disagree", 4, 5, True)
    assert str(v) == "disagree in 4 of 5 seeds"
    assert str(claims.across_seeds({s: "agree (97% of resamples)" for s in range(5)})) == "agree in 5 of 5 seeds"


def test_across_seeds_three_to_two_is_seed_dependent_and_names_the_seeds():
    v = claims.across_seeds({42: "agree", 43: "partly", 44: "agree", 45: "partly", 46: "agree"})
    assert v.verdict == "seed-dependent" and v.count == 3 and v.robust
    assert v.seeds_with("agree") == [42, 44, 46] and v.seeds_with("partly") == [43, 45]
    assert str(v) == "seed-dependent: agree in 3 of 5 (42, 44, 46); partly in 2 of 5 (43, 45)"


def test_across_seeds_with_too_few_seeds_is_never_robust():
    one = claims.across_seeds({42: claims.Verdict("c", "m", "r", "agree", 1.0)})
    assert (one.verdict, one.robust) == ("agree", False)
    assert str(one) == "agree in 1 of 1 seed (too few seeds to call robust)"
    assert claims.across_seeds({42: "agree", 43: "disagree"}).verdict == "seed-dependent"
    assert str(claims.across_seeds({42: "better", 43: "better, informative"})) == \
        "better in 2 of 2 seeds (informative in 1) (too few seeds to call robust)"
    three = claims.across_seeds({1: "agree", 2: "agree", 3: "disagree"})  # 2 of 3 is under 80 %
    assert three.verdict == "seed-dependent" and three.robust
    with pytest.raises(ValueError):
        claims.across_seeds({})


def test_seed_matrix_has_a_cell_per_claim_and_reading():
    def col(scale, ranks):
        return {"scale": claims.Verdict("c", "m", "r", scale), "ranks": claims.Verdict("c", "m", "r", ranks)}

    table, cells = claims.seed_matrix({"ours": {42: col("agree", "disagree"), 43: col("agree", "agree"),
                                                44: col("agree", "disagree")}})
    assert table.loc[claims.CLAIM_ROWS["scale"], "ours"] == "agree in 3 of 3 seeds"
    assert cells["ours"]["ranks"].verdict == "seed-dependent"
    assert list(table.index) == [claims.CLAIM_ROWS["scale"], claims.CLAIM_ROWS["ranks"]]


def test_the_legend_names_a_verdicts_word_and_nothing_else():
    """legend_word finds the longest key word a verdict begins with, followed by its brackets, a comma or a
    colon, and nothing for a word the key does not have (or a key word run into another)."""
    from attnpod.claims import VERDICT_WORDS, legend_word, legend_table

    assert legend_word("disagree (100% of resamples)") == "disagree"
    assert legend_word("not apart (97% of resamples)") == "not apart"
    assert legend_word("seed-dependent: agree in 3 of 5 (42, 43, 44)") == "seed-dependent"
    assert legend_word("equal logits, different attention") == "equal logits, different attention"
    assert legend_word("agreeable") is None and legend_word("frobnicated") is None
    assert list(legend_table().index) == list(VERDICT_WORDS)


def test_across_seeds_aggregates_the_tier_with_the_word():
    """The tier is counted, not dropped: all seeds informative reads "better, informative in 5 of 5 seeds";
    some of them, "(informative in 3)"; a seed-dependent cell qualifies each of its words."""
    informative = {s: claims.Verdict("c", "m", "r", "better, informative", outcome="better") for s in range(5)}
    assert str(claims.across_seeds(informative)) == "better, informative in 5 of 5 seeds"
    mixed = {**informative, 0: "better", 1: "better (90% of resamples)"}
    assert str(claims.across_seeds(mixed)) == "better in 5 of 5 seeds (informative in 3)"
    split = claims.across_seeds({0: "better, useful", 1: "better, useful", 2: "worse", 3: "worse", 4: "worse"})
    assert str(split) == "seed-dependent: worse in 3 of 5 (2, 3, 4); better, useful in 2 of 5 (0, 1)"
    assert claims.verdict_tier("apart, above (97% of resamples)") == "above" and claims.verdict_tier("agree") == ""


def test_a_claim_on_every_model_agrees_only_where_each_model_does():
    rng = np.random.default_rng(3)
    differ = rng.normal(0, 0.3, (5, 6)) + np.arange(6) * 3.0  # 5 ensembles, 6 layers that differ
    same = np.random.default_rng(0).normal(10, 1.0, (5, 6))  # layers that differ by chance alone (p = 0.33)
    yes, no = claims.ranks_differ(differ, n_perm=999), claims.ranks_differ(same, n_perm=999)
    assert (yes.verdict, no.verdict) == ("agree", "disagree") and yes.brief.startswith("F = ")
    assert claims.on_every_model({"a": yes, "b": yes}).verdict == "agree"
    mixed = claims.on_every_model({"a": yes, "b": no})
    assert mixed.verdict == "partly" and mixed.measurement.startswith("a: F = ") and "b: F = " in mixed.measurement
    assert claims.on_every_model({"a": no, "b": no}).verdict == "disagree"
