import numpy as np
import pytest
import torch
import torch.nn.functional  # noqa: F401

from attnpod.experiments.pruning import (PruningResult, batch_losses, greedy_oracle, head_budgets, head_importance,
                           keep_by_importance, michel_iterative, michel_one_shot, run)
from attnpod.errors import ParameterError
from attnpod.config import get_profile
from attnpod.models import GPT, GPTConfig

SMALL = dict(vocab_size=65, block_size=12, n_layer=3, n_head=4, n_embd=16, dropout=0.0)


def model(variant="base"):
    torch.manual_seed(0)
    m = GPT(GPTConfig(variant=variant, **SMALL)).eval()
    with torch.no_grad():  # larger weights than the init, so heads matter
        for p in m.parameters():
            p.mul_(8.0) if p.dim() == 2 and p.shape[0] != 65 else None
    return m


def batches(n=3, B=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randint(65, (B, 12), generator=gen), torch.randint(65, (B, 12), generator=gen)) for _ in range(n)]


@pytest.mark.parametrize("variant", ["base", "ega1", "conv_l4"])
def test_masking_a_head_equals_removing_its_slice_of_w_o(variant):
    m = model(variant)
    x = torch.randint(65, (2, 12))
    mask = torch.ones(3, 4)
    mask[1, 2] = 0.0
    cut = GPT(m.config).eval()
    cut.load_state_dict(m.state_dict())
    hs = 16 // 4
    with torch.no_grad():
        cut.blocks[1].attn.proj.weight[:, 2 * hs:3 * hs] = 0.0
        fused, _ = m(x, head_mask=mask)
        explicit, _ = m.forward_explicit(x, head_mask=mask)
        reference, _ = cut(x)
        full, _ = m(x)
    torch.testing.assert_close(fused, reference)
    torch.testing.assert_close(explicit, reference, rtol=1e-5, atol=1e-5)
    assert (fused - full).abs().max() > 1e-3  # the head mattered


def test_importance_is_the_mean_absolute_per_example_derivative():
    """Against a central finite difference of each example's loss in ξ_lh."""
    m = model()
    data = batches(n=2, B=2)
    raw = head_importance(m, data, normalise=False)
    delta = 1e-3
    fd = np.zeros((3, 4))
    for x, y in data:
        for b in range(len(x)):
            for l in range(3):
                for h in range(4):
                    up, down = torch.ones(3, 4, dtype=torch.float64), torch.ones(3, 4, dtype=torch.float64)
                    up[l, h], down[l, h] = 1 + delta, 1 - delta
                    m64 = m.double()
                    with torch.no_grad():  # the loss in float64 (GPT.forward's own loss is float32)
                        lu, ld = (torch.nn.functional.cross_entropy(m64(x[b:b + 1], head_mask=xi)[0][0], y[b])
                                  for xi in (up, down))
                    fd[l, h] += abs(lu - ld).item() / (2 * delta)
    m.float()
    fd /= 4
    np.testing.assert_allclose(raw, fd, rtol=1e-3, atol=1e-6)
    normalised = head_importance(m, data)
    np.testing.assert_allclose(np.linalg.norm(normalised, axis=1), 1.0)


def test_per_batch_gradient_would_differ_from_per_example():
    """The mean of |per-example derivatives| is not |derivative of the batch mean|: Michel's is the former."""
    m = model()
    data = batches(n=1, B=4)
    per_example = head_importance(m, data, normalise=False)
    xi = torch.ones(3, 4, requires_grad=True)
    x, y = data[0]
    (grad,) = torch.autograd.grad(m(x, y, head_mask=xi)[1], xi)
    assert not np.allclose(per_example, grad.abs().numpy())


def test_keep_by_importance_and_pruning_schedules_meet_each_budget():
    imp = np.array([[0.1, 0.5, 0.3, 0.2], [0.4, 0.1, 0.2, 0.3], [0.9, 0.0, 0.1, 0.05]])
    mask = keep_by_importance([2, 1, 3], imp)
    np.testing.assert_array_equal(mask, [[0, 1, 1, 0], [1, 0, 0, 0], [1, 0, 1, 1]])
    m, data = model(), batches(n=2)
    for masks in (michel_iterative(m, data, [10, 6, 3]), greedy_oracle(m, data, [10, 6, 3])):
        for budget, mask in masks.items():
            assert mask.sum() == budget and (mask.sum(1) >= 1).all()
        assert (masks[3] <= masks[6]).all() and (masks[6] <= masks[10]).all()  # nested: heads are only removed


def test_greedy_oracle_first_step_removes_the_cheapest_head():
    m, data = model(), batches(n=2)
    mask = greedy_oracle(m, data, [11])[11]
    removed = tuple(np.argwhere(mask == 0)[0])
    costs = {}
    for l in range(3):
        for h in range(4):
            trial = np.ones((3, 4), dtype=np.float32)
            trial[l, h] = 0
            costs[(l, h)] = batch_losses(m, data, trial).mean()
    assert removed == min(costs, key=costs.get)


def test_prune_heads_runs_every_rule_and_round_trips(tmp_path):
    m = model()
    result = run(m, batches(n=2, seed=1), batches(n=2, seed=2),
                         {"uniform": np.ones(3), "∝ H*": np.array([1.0, 2.0, 3.0])}, [9, 6], n_random=3,
                         oracle_batches=batches(n=1, seed=3), progress=False, n_perm=4, null_rules=("∝ H*",))
    assert result.rules == ["uniform", "∝ H*", "∝ importance", "∝ cut-to-one loss", "Michel one-shot",
                            "Michel iterative", "greedy oracle"]
    assert result.losses.shape == (7, 2, 4) and result.random_losses.shape == (3, 2, 4)  # per window
    np.testing.assert_array_equal(result.masks.sum(axis=(-1, -2)), [[9, 6]] * 7)
    np.testing.assert_array_equal(result.counts("∝ H*")[1], [1, 2, 3])  # counts ∝ scores
    # the permutation null: its own counts (1, 2, 3) reordered, 5 distinct orders, 4 drawn, each scored
    assert result.null_rules == ["∝ H*"] and result.null_counts.shape == (1, 2, 4, 3)
    for order, loss in zip(result.null_counts[0, 1], result.null(("∝ H*"))[1]):
        assert sorted(order) == [1, 2, 3] and list(order) != [1, 2, 3]
        mask = keep_by_importance(order.astype(int), result.importance)
        np.testing.assert_allclose(loss, batch_losses(m, batches(n=2, seed=1), mask), rtol=1e-6)
    result.save(tmp_path / "p.npz")
    loaded = PruningResult.load(tmp_path / "p.npz")
    assert loaded.rules == result.rules and loaded.null_rules == ["∝ H*"]
    np.testing.assert_array_equal(loaded.losses, result.losses)
    np.testing.assert_array_equal(loaded.null_losses, result.null_losses)


def test_michel_one_shot_keeps_the_most_important_heads_globally():
    importance = np.array([[0.9, 0.1, 0.2], [0.8, 0.7, 0.05]])
    masks = michel_one_shot(importance, [4, 2])
    np.testing.assert_array_equal(masks[4], [[1, 0, 1], [1, 1, 0]])
    np.testing.assert_array_equal(masks[2], [[1, 0, 0], [1, 0, 0]])  # every layer keeps one


def test_head_budgets_scale_the_papers():
    assert head_budgets(6, 8) == [40, 32, 24, 16, 12, 8]
    assert head_budgets(2, 2) == [3, 2]  # 40/48 of 4 heads rounds to 3; every layer keeps at least one


@pytest.mark.parametrize("options, message", [
    ({"n_eval": 0}, "n_eval must be an integer of at least 1, got 0"),
    ({"n_random": 1.5}, "n_random must be an integer of at least 0"),
    ({"n_oracle": True}, "n_oracle must be an integer of at least 1"),
    ({"n_perm": -1}, "n_perm must be an integer of at least 0"),
])
def test_pruning_counts_are_checked_before_any_work(options, message, tmp_path, monkeypatch):
    """Bad counts stop at once: no model is trained or loaded first."""
    from attnpod.data import load_corpus
    from attnpod.study import Study

    from .conftest import corpus_file

    monkeypatch.setenv("ATTNPOD_ARTIFACTS", str(tmp_path))
    study = Study(get_profile("smoke"), load_corpus(corpus_file()), "cpu", progress=False)
    with pytest.raises(ParameterError, match=message):
        study.pruning("base", **options)
    assert not (tmp_path / "checkpoints").exists()
