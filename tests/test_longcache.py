"""KV budgets at long context: the shared prefill against one masked forward pass and a literal decode, the
fairness cap, the calibration's closed forms, the grid's bookkeeping and the verdict withheld for flat splits."""

import numpy as np
import pytest
import torch

from attnpod import claims
from attnpod.experiments import llmcache, longcache
from attnpod.experiments.budgets import Evaluations, H_STAR
from attnpod.experiments.llmcache import CachePlan

pytest.importorskip("transformers")
from .test_llmcache import PLANS, PROMPT, T, tiny_llama  # noqa: E402


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: f"{p.selection}{'-pooled' if p.pooled else ''}")
def test_a_decode_pass_after_a_shared_prefill_is_one_masked_forward_pass_and_a_literal_decode(plan):
    """The prefill computed once, then the decoded half alone under each plan: the same logits as the whole window
    under the plan's masks and as a token-by-token decode with a real cache (float64: to 1e-9)."""
    model = tiny_llama()
    x = torch.randint(60, (2, T), generator=torch.Generator().manual_seed(4))
    (_, shared), = longcache.decode_logits(model, x, {"plan": plan})
    with torch.no_grad(), llmcache.cache_plan(model, plan, T):
        whole = model(input_ids=x).logits[:, PROMPT:]
    np.testing.assert_allclose(shared.numpy(), whole.numpy(), atol=1e-9)
    literal = llmcache.decode_literal(model, x[1], plan)[PROMPT:]
    np.testing.assert_allclose(shared[1].numpy(), literal.numpy(), atol=1e-9)


def tiny_gemma():
    """A random Gemma 3 with two sliding-window layers (a window of 8 keys) and a global one."""
    import transformers

    torch.manual_seed(0)
    config = transformers.Gemma3TextConfig(
        vocab_size=60, hidden_size=48, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=1, head_dim=12, sliding_window=8, max_position_embeddings=64,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"])
    config._attn_implementation = "eager"
    return transformers.Gemma3ForCausalLM(config).eval().double()


def test_sliding_window_layers_see_their_window_in_the_simulation_and_after_a_shared_prefill():
    """Gemma's local layers see only their last 8 keys: the cache attention without a plan is the model's own
    eager attention, and a decode pass after the shared prefill (whose cache keeps every key) is the whole
    window's pass under the same plan."""
    model = tiny_gemma()
    x = torch.randint(60, (2, T), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        own = model(input_ids=x).logits
        with llmcache.cache_plan(model, CachePlan(None), T):
            ours = model(input_ids=x).logits
    np.testing.assert_allclose(ours.numpy(), own.numpy(), atol=1e-6)  # Gemma's eager softmax is float32
    plan = CachePlan("h2o", (7, 7, 12), PROMPT)
    (_, shared), = longcache.decode_logits(model, x, {"h2o": plan})
    with torch.no_grad(), llmcache.cache_plan(model, plan, T):
        whole = model(input_ids=x).logits[:, PROMPT:]
    np.testing.assert_allclose(shared.numpy(), whole.numpy(), atol=1e-9)


def test_the_decode_check_reports_each_plans_gap_and_the_full_caches_floor():
    model = tiny_llama()
    x = torch.randint(60, (T,), generator=torch.Generator().manual_seed(5))
    gaps = longcache.decode_check(model, x, {"h2o": PLANS[2], "snapkv": PLANS[4]}, progress=False)
    assert set(gaps) == {"full cache", "h2o", "snapkv"} and max(gaps.values()) < 1e-9


def test_no_layer_is_given_more_keys_than_exist_at_the_first_decoded_position():
    """A rule that would give one layer most of the total is capped at P + 1 keys there; the excess goes to the
    other layers, so the split still holds L·B keys, every one of them at every scored position."""
    counts = longcache.split_budget([100.0, 1.0, 1.0, 1.0], 64, length=128)
    assert counts.max() == 128 // 2 + 1 and counts.sum() == 4 * 64 and counts.min() >= llmcache.N_SINKS + 2
    uncapped = llmcache.allocate_budget([100.0, 1.0, 1.0, 1.0], 64, 128)  # the 256-token grid's cap: the window
    assert uncapped.max() > 65


def test_minimal_keys_and_the_row_entropy_have_their_closed_forms():
    uniform = torch.full((1, 10), 0.1, dtype=torch.float64)
    assert int(longcache.minimal_keys(uniform, 0.1)) == 9  # 9 keys hold 0.9 of a flat row
    one_hot = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    assert int(longcache.minimal_keys(one_hot, 0.1)) == 1
    watcher = longcache.Calibration(n_layer=1)
    T_ = 8  # a uniform causal row at position i sees i + 1 keys: normalised entropy 1, minimal keys ⌈0.9 (i + 1)⌉
    p = torch.tril(torch.ones(T_, T_, dtype=torch.float64))
    p = (p / p.sum(-1, keepdim=True))[None, None, None]
    watcher.saw(0, p)
    means = watcher.means()
    rows = np.arange(T_ // 2, T_) + 1
    assert means["row entropy"][0] == pytest.approx(1.0)
    assert means["minimal keys"][0] == pytest.approx(np.mean(np.ceil(0.9 * rows - 1e-12)))
    assert means["sink"][0] == pytest.approx(np.mean(1 / rows))


def test_the_grid_shares_its_prefill_runs_the_null_only_where_a_split_is_not_flat_and_resumes(tmp_path, monkeypatch):
    model = tiny_llama(layers=3, dtype=torch.float32)
    windows = torch.randint(60, (4, T + 1), generator=torch.Generator().manual_seed(2))
    scores = {H_STAR: np.array([10.0, 10.5, 11.0]), longcache.INVERSE_H_STAR: np.array([1.0, 0.5, 0.25]),
              longcache.ZIGZAG: np.array([3.0, 6.0, 9.0]), longcache.ROW_ENTROPY: np.array([0.5, 0.4, 0.3])}
    memo = tmp_path / "evaluations.npz"
    kwargs = dict(n_random=2, n_perm=3, null_budgets=[8], null_windows=2, batch_size=3, progress=False,
                  memo_path=memo, null_rules=(longcache.PYRAMID, H_STAR, longcache.INVERSE_H_STAR))
    result = longcache.run(model, windows, scores, [12, 8], **kwargs)
    assert result.rules[0] == longcache.UNIFORM and set(longcache.ALLOCATION_RULES) <= set(result.rules)
    assert (result.allocations.sum(-1) == np.array([12, 8]) * 3).all() and result.allocations.max() <= T // 2 + 1
    ran = {r: np.isfinite(result.null(r)[..., 0]).any(-1).tolist() for r in result.null_rules}
    assert ran[longcache.PYRAMID] == [False, True]  # only at the null's budget
    assert ran[H_STAR] == [False, False]  # ∝ H* splits within 10 % of uniform: no null, no verdict
    assert ran[longcache.INVERSE_H_STAR] == [False, True]
    verdicts = longcache.verdicts(result)
    assert verdicts[H_STAR].verdict.startswith("not tested: split within") and verdicts[H_STAR].detectable > 0
    assert not verdicts[longcache.PYRAMID].verdict.startswith("not tested")
    assert "nan" not in verdicts[longcache.PYRAMID].measurement  # a budget without its null says nothing of one
    assert not verdicts[longcache.ADAKV].verdict.startswith("not tested")  # uniform's split, but pooled: tested
    assert (np.abs(result.increase(longcache.UNIFORM)) > 1e-4).all()
    result.meta = {"length": T, "scores": {r: s.tolist() for r, s in scores.items()}}  # as long_experiment stores
    assert str(longcache.rederived(result)).startswith("18 of 18 splits")  # 9 rules at 2 budgets, made again
    from attnpod.book import long_cache_budgets, long_cache_scores

    table = long_cache_budgets(result, [H_STAR, longcache.PYRAMID, longcache.ADAKV], longcache.UNIFORM, longcache.FLAT)
    assert table.loc[H_STAR, "outcome"].tolist() == ["not tested"] * 2  # within 10 % of uniform at both budgets
    assert "not tested" not in table.loc[longcache.ADAKV, "outcome"].tolist()  # pooled: not a split of uniform's
    for cell in table["Δ NLL vs uniform [95 %]"]:  # every interval covers the mean it is printed beside
        mean, lo, hi = (float(v) for v in cell.replace("[", "").replace("]", "").replace(",", "").split())
        assert lo <= mean <= hi
    assert list(long_cache_scores(result).columns) == [*scores, "attention on token 0"]
    from attnpod import figures
    from attnpod.book import _long_cache_curves

    result.meta["model"] = "a tiny llama"
    panels = [ax.get_title().split("\n")[-1] for ax in _long_cache_curves(figures, result, "null").axes]
    assert panels == [longcache.PYRAMID, longcache.INVERSE_H_STAR]  # a panel per rule whose null ran, H*'s did not
    calls = []
    monkeypatch.setattr(longcache, "decode_logits", lambda *a, **k: calls.append(a) or iter(()))
    again = longcache.run(model, windows, scores, [12, 8], **kwargs)
    assert calls == [] and np.array_equal(again.losses, result.losses)


def test_decode_losses_scores_only_the_windows_each_plan_asks_for_and_keeps_each_batch():
    model = tiny_llama(layers=2, dtype=torch.float32)
    windows = torch.randint(60, (5, T + 1), generator=torch.Generator().manual_seed(3))
    plan = CachePlan("h2o", (8, 8), PROMPT)
    evaluations = Evaluations(0, "", False)
    out = longcache.decode_losses(model, windows, {"a": (plan, 5), "b": (plan, 2)}, evaluations, batch_size=2)
    assert out["a"].shape == (5,) and out["b"].shape == (2,)
    np.testing.assert_allclose(out["b"], out["a"][:2], atol=1e-6)
    assert len(evaluations.done) == 3 + 1  # "a" in three batches, "b" in one
    whole = llmcache.window_losses(model, windows, plan)
    np.testing.assert_allclose(out["a"], whole, atol=1e-5)


def test_a_split_within_the_flat_line_is_not_tested_and_never_called_equivalent():
    rng = np.random.default_rng(0)
    uniform = rng.normal(3, 0.1, (2, 40))
    same = uniform + rng.normal(0, 0.001, (2, 40))  # equivalent by any test
    flat = claims.allocation_verdict(same, uniform, [8, 4], distances=[0.04, 0.06], flat=0.1)
    assert flat.verdict == "not tested: split within 6.0% of uniform" and flat.outcome == "not tested"
    tested = claims.allocation_verdict(same, uniform, [8, 4], distances=[0.04, 0.3], flat=0.1)
    assert tested.verdict.startswith("equivalent") and "not tested at 8" in tested.measurement
    assert "not tested" in claims.VERDICT_WORDS
    np.testing.assert_allclose(claims.l1_distances([[2, 6], [4, 4]], [[4, 4], [4, 4]]), [0.5, 0.0])


def test_bad_long_context_settings_are_one_line():
    from attnpod.errors import ParameterError

    with pytest.raises(ParameterError, match="outside"):
        longcache.settings(budgets=[600])
    with pytest.raises(ParameterError, match="among the budgets"):
        longcache.settings(null_budgets=[100])
    with pytest.raises(ParameterError, match="permutation null"):
        longcache.settings(null_rules=("uniform",))
    assert longcache.settings()["budgets"] == [256, 128, 64, 32]


GEMMA_PLANS = [CachePlan("h2o", (6, 5, 12), PROMPT), CachePlan("h2o", (7, 6, 10), PROMPT, pooled=True),
               CachePlan("streaming", (6, 7, 12), PROMPT), CachePlan(None)]


@pytest.mark.parametrize("plan", GEMMA_PLANS, ids=lambda p: f"{p.selection}{'-pooled' if p.pooled else ''}")
def test_gemmas_sliding_layers_drop_the_keys_that_leave_their_window_in_the_simulation_and_a_literal_decode(plan):
    """A literal decoder of Gemma 3 (q/k norms, four norms a block, a rotary embedding per layer type) whose
    sliding caches drop what leaves the window: the same logits as the masked simulation (float64: to 1e-9)."""
    model = tiny_gemma()
    x = torch.randint(60, (T,), generator=torch.Generator().manual_seed(8))
    assert T - PROMPT > 8  # keys leave the sliding window while the second half is decoded
    assert llmcache.decode_gap(model, x[None], plan) < 1e-9


def test_a_sliding_layer_spends_its_whole_budget_inside_its_window():
    """H2O in a layer with a window of 8: at every decoded row it holds min(k, keys in the window) keys, all of
    them inside the window (none charged for a key it cannot see), the sinks' places going to heavy hitters once
    the sinks have left; without the window the same budget keeps the sinks."""
    T_, P, k, W = 40, 16, 6, 8
    logits = torch.randn(1, 1, 2, T_, T_, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    i, j = torch.arange(T_)[:, None], torch.arange(T_)[None, :]
    visible = (j <= i) & (j > i - W)
    plan = CachePlan("h2o", (k,), P)
    keep = llmcache.keep_mask(logits.masked_fill(~visible, -float("inf")), k, plan, window=W)[0, 0]  # (R, T)
    rows = keep[P:]
    assert not (rows & ~visible[P:]).any()
    assert (rows.sum(-1) == k).all()
    plain = llmcache.keep_mask(logits.masked_fill(j > i, -float("inf")), k, plan)[0, 0][P:]
    assert plain[:, :llmcache.N_SINKS].all() and (plain.sum(-1) == k).all()


def test_the_architecture_aware_split_is_uniform_until_a_sliding_layers_share_reaches_its_window():
    windows = [8, 8, None]
    assert longcache.architecture_split(windows, 6, length=40).tolist() == [6, 6, 6]
    assert longcache.architecture_split(windows, 10, length=60).tolist() == [8, 8, 14]
    capped = longcache.split_budget([1.0, 1.0, 5.0], 10, length=60, windows=windows)
    assert capped.sum() == 30 and capped[2] <= 31 and capped[:2].max() <= 8
    heavy_sliding = longcache.split_budget([10.0, 1.0, 1.0], 10, length=60, windows=windows)
    assert heavy_sliding[0] == 8 and heavy_sliding.sum() == 30  # not charged for keys it can never see


def test_each_model_gets_its_design_and_an_explicit_setting_wins():
    from attnpod.pretrained import GEMMA3

    smollm2, gemma = longcache.settings(), longcache.settings(GEMMA3)
    assert (smollm2["n_windows"], smollm2["null_windows"], smollm2["n_perm"]) == (32, 16, 19)
    assert {k: gemma[k] for k in longcache.DESIGNS[GEMMA3.key]} == longcache.DESIGNS[GEMMA3.key]
    assert gemma["gguf_sha256"] == GEMMA3.sha256 and gemma["budgets"] == smollm2["budgets"]
    assert longcache.settings(GEMMA3, n_windows=4, n_perm=2)["n_windows"] == 4
    assert longcache.settings(GEMMA3, n_windows=4)["null_windows"] == 4  # never more null windows than windows


def test_a_batch_keeps_its_decoded_logits_within_the_limit():
    class Config:
        vocab_size = 262_144

    class Model:
        config = Config()

    assert longcache.batch_size_of(Model(), 1024) == 4  # 4 × 512 × 262,144 float32 logits: 2 GiB
    Config.vocab_size = 49_152
    assert longcache.batch_size_of(Model(), 1024) == 8  # the largest
    Config.vocab_size = 10 ** 9
    assert longcache.batch_size_of(Model(), 1024) == 1  # never none


def test_distances_from_the_architectures_split_and_a_table_that_shows_them():
    from types import SimpleNamespace

    from attnpod.book import long_cache_verdicts

    counts = {longcache.UNIFORM: np.array([[6, 6, 6], [10, 10, 10]]), longcache.ZIGZAG: np.array([[4, 4, 10], [8, 8, 14]])}
    result = SimpleNamespace(budgets=np.array([6, 10]), rules=list(counts), counts=counts.__getitem__,
                             meta={"length": 60})
    assert longcache.architecture_splits(result) is None  # no sliding layers: no such reference
    result.meta["windows"] = [8, 8, None]
    architecture = longcache.architecture_splits(result)
    assert architecture.tolist() == [[6, 6, 6], [8, 8, 14]]
    far = longcache.distances(result, architecture)
    np.testing.assert_allclose(far.loc[longcache.UNIFORM], [0.0, 8 / 30])
    np.testing.assert_allclose(far.loc[longcache.ZIGZAG], [8 / 18, 0.0])
    np.testing.assert_allclose(longcache.distances(result).loc[longcache.ZIGZAG], [8 / 18, 8 / 30])
    verdicts = {longcache.ZIGZAG: SimpleNamespace(verdict="worse")}
    table = long_cache_verdicts(result, verdicts)
    assert table.loc[longcache.ZIGZAG].tolist() == ["worse", "44.4%", "44.4%"]
    del result.meta["windows"]
    assert list(long_cache_verdicts(result, verdicts).columns) == ["verdict", "largest L1 from uniform"]
