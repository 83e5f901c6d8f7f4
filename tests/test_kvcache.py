"""KV-cache budgets: hand-worked cases for every rule, and the mask simulation against a literal cached decode."""

import numpy as np
import pytest
import torch

from attnpod.experiments import kvcache as kv
from attnpod.errors import ParameterError
from attnpod.models import GPT, GPTConfig


def rows(keep):
    """The kept keys of each query of a (T, T) mask, as lists."""
    return [np.nonzero(r)[0].tolist() for r in np.asarray(keep)]


def test_recent_window_by_hand():
    assert rows(kv.recent_keep([2], 4)[0, 0]) == [[0], [0, 1], [1, 2], [2, 3]]


def test_streaming_keeps_sinks_and_recent_by_hand():
    # k = 3: s = min(4, 2) = 2 sinks, 1 recent (the query itself)
    assert rows(kv.streaming_keep([3], 6)[0, 0]) == [[0], [0, 1], [0, 1, 2], [0, 1, 3], [0, 1, 4], [0, 1, 5]]
    # k = 6: 4 sinks and the 2 most recent
    assert rows(kv.streaming_keep([6], 8)[0, 0])[-1] == [0, 1, 2, 3, 6, 7]


def test_h2o_evicts_the_least_attended_candidate_by_hand():
    """T = 5, k = 3: two recent keys and one heavy-hitter place; every query attends mostly to key 1.

    i=0 sees {0}; acc = [1]. i=1 sees {0, 1}: p ≈ (0.007, 0.993); key 0 leaves the window
    and takes the heavy place. i=2 sees {0, 1, 2}; key 1 leaves the window: candidates {0, 1}
    with acc 1.01 and 1.98, so key 0 (the first token) is evicted. i=3 sees {1, 2, 3}; key 2
    leaves with acc ≈ 0.02 < acc(1): evicted. i=4 sees {1, 3, 4}.
    """
    T = 5
    logits = torch.zeros(1, 1, T, T)
    logits[..., 1:, 1] = 5.0
    logits = logits.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    assert rows(kv.h2o_keep(logits, [3])[0, 0]) == [[0], [0, 1], [0, 1, 2], [1, 2, 3], [1, 3, 4]]
    # uniform attention: the first token gathers the most attention and stays (an attention sink)
    flat = torch.zeros(1, 1, T, T).masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    assert rows(kv.h2o_keep(flat, [3])[0, 0])[-1] == [0, 3, 4]


def h2o_reference(logits, k):
    """H2O on one head's (T, T) logits, as a cache of key positions with accumulated attention."""
    T = len(logits)
    recent, cache, acc, keep = (k + 1) // 2, [], {}, np.zeros((T, T), dtype=bool)
    for i in range(T):
        cache.append(i)
        keep[i, cache] = True
        p = np.exp(logits[i, cache] - logits[i, cache].max())
        for j, pj in zip(cache, p / p.sum()):
            acc[j] = acc.get(j, 0.0) + pj
        heavy = [j for j in cache if j <= i + 1 - recent]
        while len(heavy) > k - recent:
            heavy.remove(min(heavy, key=acc.get))
        cache = heavy + [j for j in cache if j > i + 1 - recent]
    return keep


@pytest.mark.parametrize("k", [2, 3, 4, 7])
def test_h2o_matches_a_cache_of_positions(k):
    """Random logits, several heads: the row-by-row masks equal a plain list-based cache, which
    accumulates only the attention the cache gave (not the full row's, as a mask shortcut would)."""
    T = 20
    gen = torch.Generator().manual_seed(k)
    logits = (3 * torch.randn(2, 3, T, T, generator=gen)).masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(),
                                                                      float("-inf"))
    keep = kv.h2o_keep(logits, [k, k]).numpy()
    for n in range(2):
        for h in range(3):
            assert (keep[n, h] == h2o_reference(logits[n, h].double().numpy(), k)).all()


def test_h2o_with_one_key_keeps_only_the_query():
    T = 6
    logits = torch.randn(2, 3, T, T).masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    keep = kv.h2o_keep(logits, [1, 2])
    assert torch.equal(keep[0], torch.eye(T, dtype=torch.bool).expand(3, T, T))
    assert (keep[1].sum(-1)[:, 1:] == 2).all()  # one recent (itself) plus one heavy hitter


def test_pyramid_schedule_by_hand():
    s = kv.pyramid_scores(6, 8, beta=20)
    assert s[0] == pytest.approx(15.6) and s[-1] == pytest.approx(0.4) and s.mean() == pytest.approx(8)
    counts = kv.allocate_cache(s, 8, 128)
    assert counts.sum() == 48 and list(counts) == sorted(counts, reverse=True) and counts.min() >= 1


def test_allocation_sums_to_the_budget_within_bounds():
    rng = np.random.default_rng(0)
    for _ in range(50):
        counts = kv.allocate_cache(rng.dirichlet(np.ones(6)), 16, 64)
        assert counts.sum() == 96 and counts.min() >= 1 and counts.max() <= 64
    counts = kv.allocate_cache([1, 1, 1, 1, 1, 100], 8, 32)  # the big layer is capped at T = 32
    assert counts[-1] == 32 and counts.sum() == 48 and list(counts[:5]) == [4, 3, 3, 3, 3]


def test_scale_window_and_budgets():
    assert list(kv.scale_window([2.3, 7.6, 300.0], 128)) == [2, 8, 128]
    assert kv.cache_budgets(256) == [8, 16, 32, 64]
    assert kv.cache_budgets(128) == [4, 8, 16, 32]
    assert kv.cache_budgets(64) == [2, 4, 8, 16]


def test_cache_cost_by_hand():
    # two layers of 2 keys, d = 4, T = 4: scored positions 2 and 3 each hold 2 + 2 keys
    cost = kv.cache_cost([2, 2], n_embd=4, n_head=2, block_size=4, selection="h2o")
    assert cost["attention FLOPs / token"] == 4 * 4 * 4
    assert cost["KV cache (KiB)"] == 2 * 4 * 4 * 4 / 1024
    assert cost["selection scores (KiB)"] == 2 * 4 * 8 / 1024
    assert cost["selection ops / token"] == 2 * 2 * 4  # 2 heads × 4 keys held, an add and a compare each
    assert kv.cache_cost([2, 2], 4, 2, 4, "streaming")["selection ops / token"] == 0.0
    assert kv.cache_cost([8, 8], 4, 2, 4, "recent")["attention FLOPs / token"] == 4 * 4 * (3 + 3 + 4 + 4) / 2


def sharp_model(variant="base", causal=False, T=24):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=65, block_size=T, n_layer=3, n_head=4, n_embd=32, dropout=0.0,
                          variant=variant, causal_gate=causal)).eval()
    with torch.no_grad():  # larger weights: peaked attention, so that eviction choices matter
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(8.0)
    return model


@pytest.mark.parametrize("variant,causal", [("base", False), ("ega1", True)])
@pytest.mark.parametrize("selection", kv.SELECTIONS)
def test_simulation_matches_a_literal_cached_decode(variant, causal, selection):
    model = sharp_model(variant, causal)
    idx = torch.randint(0, 65, (2, 24), generator=torch.Generator().manual_seed(1))
    budgets = np.array([3, 6, 5])
    with torch.no_grad():
        simulated, _ = model.forward_explicit(idx, select=kv.selector(selection, torch.as_tensor(np.tile(budgets, (2, 1)))))
        full, _ = model(idx)
        for w in range(2):
            decoded = kv.decode_cached(model, idx[w], budgets, selection)
            assert (decoded - simulated[w]).abs().max() < 1e-4
    assert (full - simulated).abs().max() > 0.1  # the cache budget changed the model


@pytest.mark.parametrize("sinks", [1, 2])
def test_h2o_with_sinks_matches_a_literal_cached_decode_and_keeps_the_first_tokens(sinks):
    model = sharp_model("base", False)
    idx = torch.randint(0, 65, (2, 24), generator=torch.Generator().manual_seed(3))
    budgets = np.array([sinks + 1, 6, 5])
    select = kv.selector("h2o", torch.as_tensor(np.tile(budgets, (2, 1))), sinks)
    with torch.no_grad():
        simulated, _ = model.forward_explicit(idx, select=select)
        plain, _ = model.forward_explicit(idx, select=kv.selector("h2o", torch.as_tensor(np.tile(budgets, (2, 1)))))
        for w in range(2):
            assert (kv.decode_cached(model, idx[w], budgets, "h2o", sinks) - simulated[w]).abs().max() < 1e-4
    assert (plain - simulated).abs().max() > 1e-3  # keeping the sinks changed what the cache holds
    T = 20
    logits = (3 * torch.randn(1, 2, T, T, generator=torch.Generator().manual_seed(0))).masked_fill(
        ~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    keep = kv.h2o_keep(logits, [7], sinks)
    assert keep[0, :, sinks:, :sinks].all()  # every later query sees the sinks
    assert (keep[0, :, 7:].sum(-1) == 7).all()  # and holds its budget exactly


def test_sink_protection_by_budget_and_the_protected_splits(tmp_path):
    assert [kv.protected_sinks(b) for b in (4, 8, 16, 32, 64)] == [1, 2, 4, 4, 4]
    model = sharp_model("base", False)
    x = torch.randint(0, 65, (3, 24), generator=torch.Generator().manual_seed(4))
    losses, allocations, null = kv.sink_protected_losses(model, x, torch.roll(x, -1, 1), np.array([1.0, 2.0, 6.0]),
                                                         [4, 8], n_perm=3, null_windows=2)
    assert set(losses) == set(kv.SINK_PROTECTED) and losses[kv.UNIFORM].shape == (2, 3)
    assert null.shape[0] == 2 and null.shape[-1] == 2 and np.isfinite(null).any()
    for rule, a in allocations.items():
        assert (a.sum(-1) == np.array([4, 8]) * 3).all()
        assert (a.min(-1) >= np.array([2, 3])).all()  # the sinks and the query's own key, every layer


def test_budget_of_the_whole_window_is_the_full_model():
    model = sharp_model()
    idx = torch.randint(0, 65, (3, 24), generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 65, (3, 24), generator=torch.Generator().manual_seed(3))
    full = kv.window_losses(model, idx, y)
    for selection in kv.SELECTIONS:
        assert np.allclose(kv.window_losses(model, idx, y, selection, [24, 24, 24]), full, atol=1e-5)
    assert not np.allclose(kv.window_losses(model, idx, y, "recent", [2, 2, 2]), full, atol=1e-3)


def test_models_without_a_causal_prefix_are_refused():
    for variant, causal in (("conv_l4", False), ("ega1", False)):
        model = GPT(GPTConfig(vocab_size=65, block_size=16, n_layer=1, n_head=2, n_embd=8, variant=variant,
                              causal_gate=causal))
        with pytest.raises(ParameterError, match="cannot be decoded"):
            kv.decode_cached(model, torch.zeros(4, dtype=torch.long), [2], "recent")
    with pytest.raises(ParameterError, match="unknown cache selection"):
        kv.selector("lru", torch.ones(1, 1))


def test_experiment_on_a_tiny_model():
    model = sharp_model(T=16)
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randint(0, 65, (4, 16), generator=gen), torch.randint(0, 65, (4, 16), generator=gen)
    scores = {"uniform": np.ones(3), "∝ H*(0.1)": np.array([1.0, 2.0, 3.0])}
    result = kv.run(model, x, y, scores, {"TC": np.array([8.0, 8.0, 8.0])}, [2, 4], n_random=3,
                                     progress=False, n_perm=3, null_windows=2)
    assert result.rules[:4] == ["recent window", "StreamingLLM", "H2O", "PyramidKV schedule, H2O selection"]
    # the permutation null of ∝ H*(0.1) only (∝ 1/H*(0.1) was not asked for): its own split, reordered,
    # scored on the first 2 windows
    assert result.null_rules == ["∝ H*(0.1)"] and result.null_allocations.shape == (1, 2, 3, 3)
    assert result.null_losses.shape == (1, 2, 3, 2)
    for k in range(2):
        own = result.allocations[result.rules.index("∝ H*(0.1)"), k]
        for order, loss in zip(result.null_allocations[0, k], result.null("∝ H*(0.1)")[k]):
            if np.isnan(order).any():
                assert np.isnan(loss).all()
                continue
            assert sorted(order) == sorted(own) and list(order) != list(own)
            np.testing.assert_allclose(loss, kv.window_losses(model, x[:2], y[:2], "h2o", order.astype(int)),
                                       rtol=1e-6)
    assert result.losses.shape == (len(result.rules), 2, 4) and result.random_losses.shape == (3, 2, 4)
    assert (result.allocations.sum(-1) == np.array([6, 12])).all()
    assert list(result.window_allocations[0]) == [8, 8, 8]
    # a uniform scale window is the uniform recent window of the same total
    assert np.allclose(result.window_losses, result.window_uniform)
    # ∝ top scale with equal scales is uniform H2O
    assert np.allclose(result.loss("∝ top scale (TC)"), result.loss("H2O"))
    assert result.sinks.shape == (3,) and 0 < result.sink_uniform < 1
