"""The real model's replicates: intervals over disjoint ensembles, a fixed-N ruling, the sink ablation and a second
rounding of the weights, each against a closed form, a planted answer or an independent computation."""

import math

import numpy as np
import pytest
import torch

from attnpod import claims
from attnpod.analysis import analyse_fields, half_statistics, layer_readout, without_sink
from attnpod.estimators import between_within, replicate_interval, student_quantile
from attnpod.experiments import replicates

transformers = pytest.importorskip("transformers")


def causal_fields(N=40, L=3, T=24, sharpness=(0.5, 1.5, 3.0), sink=1.5, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(N, L, T, T)) * np.asarray(sharpness)[None, :, None, None]
    logits[..., 0] += sink
    logits = np.where(np.tril(np.ones((T, T), bool)), logits, -np.inf)
    f = np.exp(logits - logits.max(-1, keepdims=True))
    return (f / f.sum(-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995])
def test_student_quantiles_match_their_closed_forms_at_one_and_two_degrees_of_freedom(p):
    assert student_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-6)
    assert student_quantile(p, 2) == pytest.approx((2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p))), rel=1e-6)
    assert student_quantile(1 - p, 7) == pytest.approx(-student_quantile(p, 7), abs=1e-9)


def test_the_interval_over_six_replicates_covers_its_mean_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    values = rng.normal(3.0, 2.0, size=(4000, 6))
    _, lo, hi = replicate_interval(values)
    coverage = np.mean((lo <= 3.0) & (3.0 <= hi))
    assert 0.935 < coverage < 0.965  # a normal quantile (1.96) would give about 0.91 here


def test_between_within_binds_on_a_planted_difference_and_holds_its_size_without_one():
    rng = np.random.default_rng(2)
    shared = rng.normal(size=(1, 6))  # what the replicates share (the same windows for every layer)
    planted = np.linspace(0, 3, 10)[:, None] + shared + rng.normal(size=(10, 6))
    assert between_within(planted, 999)[1] < 0.01
    rejections = [between_within(shared + rng.normal(size=(10, 6)), 199, seed=s)[1] < 0.05 for s in range(200)]
    assert np.mean(rejections) < 0.1


def test_the_layer_readout_reads_what_the_full_analysis_reads():
    f = causal_fields()
    full = analyse_fields(f, n_modes=0, n_boot=0, n_half=6, progress=False)
    e = list(full.epsilons).index(0.1)
    readout = layer_readout(f, [full.halves])
    np.testing.assert_array_equal(readout.top_scale, full.dominant_scales[:, 0])
    np.testing.assert_array_equal(readout.h_star, full.effective_rank[:, e])
    np.testing.assert_allclose(readout.t_spec, full.spectral_concentration, rtol=1e-5)
    np.testing.assert_array_equal(readout.size_rank[0], half_statistics(full)["effective_rank"][:, e].T)
    np.testing.assert_allclose(readout.sink, f[:, :, 1:, 0].mean((0, 2)), rtol=1e-6)


def test_removing_the_sink_leaves_rows_of_one_over_the_other_keys():
    f = causal_fields()[:, 0]
    cut = without_sink(f)
    assert np.all(cut[:, :, 0] == 0) and np.all(cut[:, 0] == 0)
    np.testing.assert_allclose(cut[:, 1:].sum(-1), 1, rtol=1e-5)
    np.testing.assert_allclose(cut[:, 5, 1:4] / cut[:, 5, 1:2], f[:, 5, 1:4] / f[:, 5, 1:2], rtol=1e-5)  # ratios kept
    readout = layer_readout(causal_fields(sink=4.0), ablate_sink=True)
    assert readout.sink.max() == 0 and layer_readout(causal_fields(sink=4.0)).sink.min() > 0.4


def test_ranks_differ_rules_on_a_planted_layer_effect_and_not_on_noise():
    rng = np.random.default_rng(3)
    noise = lambda: rng.normal(0, 2, size=(6, 12)) + 40  # noqa: E731: (ensembles, layers)
    planted = noise() + np.linspace(0, 20, 12)
    assert claims.ranks_differ(planted, n_perm=999).verdict == "agree"
    assert claims.ranks_differ(noise(), n_perm=999).verdict == "disagree"
    size_rank = np.stack([np.full((6, 2, 12), 10.0), np.full((6, 2, 12), 20.0)], 1)
    size_rank[:, 1, :, 0] = 40.0
    np.testing.assert_allclose(claims.size_ratios(size_rank), [1.0, 2.0])


def test_a_replicated_verdict_counts_the_ensembles_that_agree():
    h = np.tile(np.linspace(40, 10, 8), (5, 1))
    sink, top = np.zeros((5, 8)), np.full((5, 8), 30.0)
    sink[:2, 4:] = 0.9  # two of five ensembles read the deep layers as sinks
    v = claims.replicated(claims.low_rank_explained, h, sink, top)
    assert v.verdict == "coarse scale" and v.stability == pytest.approx(3 / 5)


def test_a_paired_change_flags_a_planted_shift_only():
    rng = np.random.default_rng(4)
    plain = rng.normal(50, 3, size=(6, 4))
    changed = plain + rng.normal(0, 0.5, size=(6, 4)) + np.array([5.0, 0, 0, 0])
    assert claims.paired_change(plain, changed)[3].tolist() == [True, False, False, False]
    unmoved = claims.within_spread(plain, plain[:1])
    assert unmoved["largest change"] == 0.0 and unmoved["layers outside the ensembles' range"] == 0
    moved = claims.within_spread(plain, plain[:1] + np.array([100.0, 0, 0, 0]))
    assert moved["largest change"] == 100.0 and moved["layers outside the ensembles' range"] == 1


def tiny_llama():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=60, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    config._attn_implementation = "eager"
    return transformers.LlamaForCausalLM(config).eval()


def test_a_second_rounding_moves_each_weight_by_at_most_half_its_blocks_step_and_leaves_the_model_alone():
    model = tiny_llama()
    before = {n: p.clone() for n, p in model.named_parameters()}
    twin = replicates.round_again(model, seed=0)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    W, V = model.model.layers[0].mlp.up_proj.weight.detach(), twin.model.layers[0].mlp.up_proj.weight.detach()
    blocks = W.reshape(W.shape[0], -1, replicates.BLOCK)
    step = (blocks.amax(-1, keepdim=True) - blocks.amin(-1, keepdim=True)) / (replicates.LEVELS - 1)
    error = (V - W).reshape(blocks.shape) / step
    assert error.abs().max() <= 0.5 + 1e-6 and error.std() == pytest.approx(1 / math.sqrt(12), rel=0.05)
    assert torch.equal(twin.model.embed_tokens.weight, model.model.embed_tokens.weight)  # only the layers' linears
    assert not torch.equal(replicates.round_again(model, seed=1).model.layers[0].mlp.up_proj.weight, V)


def test_tile_losses_average_to_the_models_own_loss():
    model = tiny_llama()
    x = torch.randint(0, 60, (5, 16))
    per_tile = replicates.tile_losses(model, x, batch_size=2)
    assert per_tile.shape == (5,)
    assert per_tile.mean() == pytest.approx(float(model(input_ids=x, labels=x).loss), rel=1e-5)


def test_ensembles_are_disjoint_and_the_measure_of_one_has_every_array():
    groups = replicates.ensembles(100, 4, 20, seed=0)
    assert len(np.unique(groups)) == 80
    with pytest.raises(ValueError, match="need 120 tiles"):
        replicates.ensembles(100, 6, 20, seed=0)
    chosen = replicates.settings(ensemble=8, sizes=[4], draws=3)
    assert chosen["sizes"] == [4, 8]
    out = replicates.measure(tiny_llama(), torch.randint(0, 60, (8, 16)), chosen, seed=0)
    assert out["size_rank"].shape == (2, 3, 2) and out["h_star"].shape == (2,)
    assert out["ablated_sink"].max() == 0


def test_the_sink_correlation_is_ruled_on_every_ensemble_and_binds_on_a_planted_sign():
    rng = np.random.default_rng(5)
    sink = rng.random((4, 20))
    more = claims.sinks_add_modes(40 + 30 * sink + rng.normal(0, 1, (4, 20)), sink, n_sample=999)
    assert more.verdict == "more modes" and more.stability == 1.0
    fewer = claims.sinks_add_modes(40 - 30 * sink + rng.normal(0, 1, (4, 20)), sink, n_sample=999)
    assert fewer.verdict == "fewer modes"
    noise = claims.sinks_add_modes(rng.normal(40, 3, (4, 20)), sink, n_sample=999)
    assert noise.verdict == "not on every ensemble"


def test_the_shipped_replicates_are_listed_verified_and_complete():
    from attnpod.book import rank_against_n, replicate_table, replicate_verdicts, rounding_table

    rep = replicates.replicate_experiment("", shipped_only=True)
    chosen = replicates.settings()
    assert rep.source == "shipped" and rep.h_star.shape == (chosen["n_ensembles"], 30)
    assert rep.size_rank.shape == (chosen["n_ensembles"], len(chosen["sizes"]), chosen["draws"], 30)
    assert rep.rounded_val_loss.shape == (chosen["roundings"], rep.meta["val_tiles"])
    assert len(replicate_table(rep)) == 30 and list(rank_against_n(rep).columns) == chosen["sizes"]
    assert rounding_table(rep)[1].shape[0] == 3 and set(replicate_verdicts(rep)) >= {"ranks", "low", "sinks"}


def test_the_low_h_verdict_counts_sink_heads_that_a_layer_average_hides():
    h = np.linspace(40, 10, 8)
    head_sink = np.zeros((8, 3))
    head_sink[6, 0] = 0.9  # one sink head in a low deep layer whose average (0.3) is no sink
    v = claims.low_rank_explained(h, head_sink.mean(-1), np.full(8, 30.0), head_sink=head_sink)
    assert v.verdict == "coarse scale" and "sink heads 1 of 12 in these layers, 0 of 12 in the others" in v.measurement
