"""The planted-answer generators: every ensemble is attention-like, and each really holds its planted answer."""

import numpy as np
import pytest

from attnpod import planted


@pytest.mark.parametrize("case", list(planted.GENERATORS))
@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_every_ensemble_is_causal_row_stochastic_and_non_negative(case, noise):
    p = planted.GENERATORS[case](T=24, N=10, noise=noise, seed=1)
    A = p.fields.astype(np.float64)
    assert A.shape[:1] == (10,) and A.shape[-2:] == (24, 24) and A.shape[1] == len(p.answer)
    assert A.min() >= 0
    assert np.abs(A[..., np.triu_indices(24, 1)[0], np.triu_indices(24, 1)[1]]).max() == 0
    np.testing.assert_allclose(A.sum(-1), 1.0, atol=1e-5)


def test_a_window_is_exactly_zero_beyond_its_width_and_the_whole_past_is_not():
    p = planted.windows(widths=(3, 7, planted.WHOLE), T=32, N=5)
    lag = np.arange(32)[:, None] - np.arange(32)[None, :]
    for l, W in enumerate((3, 7)):
        assert p.fields[:, l][:, lag >= W].max() == 0
        assert p.fields[:, l][:, (lag >= 0) & (lag < W)].min() > 0
    assert p.fields[:, 2][:, lag >= 0].min() > 0
    np.testing.assert_array_equal(p.answer, [3, 7, 32])


def test_a_sink_holds_exactly_its_planted_share_with_or_without_noise():
    for noise in (0.0, 0.4):
        p = planted.sinks(masses=(0.0, 0.25, 0.7), T=20, N=4, noise=noise, seed=3)
        for l, m in enumerate((0.0, 0.25, 0.7)):
            np.testing.assert_allclose(p.fields[:, l, 1:, 0], m, atol=1e-6)
        if not noise:  # the rest is the same attention in every layer, scaled by 1 − m
            rest = p.fields[:, :, 1:, 1:].astype(np.float64) / (1 - p.answer)[None, :, None, None]
            np.testing.assert_allclose(rest[:, 0], rest[:, 2], atol=1e-5)


def test_the_centred_rank_is_the_planted_rank():
    p = planted.centred_rank(ranks=(1, 2, 5), T=16, N=12, seed=2)
    for l, r in enumerate((1, 2, 5)):
        X = p.fields[:, l].reshape(12, -1).astype(np.float64)
        Xc = X - X.mean(0)
        s = np.linalg.svd(Xc, compute_uv=False)
        assert int((s > 1e-6 * s[0]).sum()) == r
    noisy = planted.centred_rank(ranks=(1, 2), T=16, N=12, noise=0.2, seed=2)
    s = np.linalg.svd(noisy.fields[:, 0].reshape(12, -1) - noisy.fields[:, 0].reshape(12, -1).mean(0),
                      compute_uv=False)
    assert int((s > 1e-6 * s[0]).sum()) > 1  # noise breaks the exact rank


@pytest.mark.parametrize("ell", [2.0, 6.0])
def test_an_exponential_profile_decays_at_its_planted_length(ell):
    p = planted.exponential_lags(lengths=(ell, 1.0), T=40, N=64, seed=4)
    A = p.fields[:, 0].astype(np.float64)
    i = np.arange(10, 40)
    # the texture is lognormal with median one, so the mean log ratio of neighbouring lags is −1/ℓ
    ratio = np.log(A[:, i, i - 1]) - np.log(A[:, i, i])
    assert abs(ratio.mean() + 1 / ell) < 0.05


@pytest.mark.parametrize("d", [1, 5])
def test_an_offset_head_looks_d_tokens_back(d):
    p = planted.offsets(lags=(d, 1), T=32, N=32, seed=5)
    A = p.fields[:, 0].astype(np.float64).mean(0)  # mean over snapshots: the texture averages out
    for i in range(d + 2, 32):
        assert i - int(np.argmax(A[i])) == d


def test_bad_settings_fail_before_any_work():
    with pytest.raises(ValueError, match="noise"):
        planted.windows(noise=1.0)
    with pytest.raises(ValueError, match="widths"):
        planted.windows(widths=(4, 100), T=32)
    with pytest.raises(ValueError, match="ranks"):
        planted.centred_rank(ranks=(1, 40), N=8)
    with pytest.raises(ValueError, match="two layers"):
        planted.sinks(masses=(0.5,))
