import math

import pytest
import torch

from attnpod.models import GPT, VARIANTS, GPTConfig, conv_lag_multiplier

SMALL = dict(vocab_size=65, block_size=24, n_layer=2, n_head=4, n_embd=32)


def base_params_by_hand(V=65, T=256, L=6, d=256) -> int:
    """Tied embedding, position table, per block 2 LayerNorms + QKV (no bias) + proj + MLP, final LayerNorm."""
    per_block = 2 * (2 * d) + 3 * d * d + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    return V * d + T * d + L * per_block + 2 * d


def test_paper_base_parameter_count():
    n = GPT(GPTConfig()).n_params()
    assert n == base_params_by_hand() == 4_816_640


def test_variant_parameter_differences():
    base = GPT(GPTConfig()).n_params()
    d, H, L, T = 256, 8, 6, 256
    assert GPT(GPTConfig(variant="ega1")).n_params() == base + L * (d * H + H + 2 * H)
    assert GPT(GPTConfig(variant="ega_morlet")).n_params() == base + L * (d * H + 3 * H) - T * d + d
    assert GPT(GPTConfig(variant="conv_l4")).n_params() == base + L * 9


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("causal_gate", [False, True])
def test_fused_and_explicit_paths_agree(variant, causal_gate):
    if causal_gate and variant not in ("ega1", "ega_morlet"):
        pytest.skip("causal gate is an EGA option")
    torch.manual_seed(1)
    model = GPT(GPTConfig(variant=variant, causal_gate=causal_gate, **SMALL)).eval()
    idx = torch.randint(65, (3, 24))
    with torch.no_grad():
        fused, _ = model(idx)
        explicit, maps = model.forward_explicit(idx)
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)
    assert maps.shape == (3, 2, 4, 24, 24)


@pytest.mark.parametrize("variant", VARIANTS)
def test_attention_maps_are_causal_distributions(variant):
    model = GPT(GPTConfig(variant=variant, **SMALL)).train()
    A = model.attention_maps(torch.randint(65, (2, 24)))
    assert model.training  # restored
    torch.testing.assert_close(A.sum(-1), torch.ones(A.shape[:-1]))
    assert torch.all(A.triu(1) == 0)


def test_ega_gate_is_an_additive_key_bias():
    """softmax(s + log g) equals the published softmax(s)·g / Σ softmax(s)·g."""
    torch.manual_seed(2)
    model = GPT(GPTConfig(variant="ega1", **SMALL)).eval()
    attn = model.blocks[0].attn
    x = torch.randn(2, 24, 32)
    B, T, C = x.shape
    q, k, v = attn.qkv(x).view(B, T, 3, 4, 8).permute(2, 0, 3, 1, 4)
    s = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    g = attn.gate(x).exp()[:, :, None, :]
    published = torch.softmax(s, -1) * g
    published = published / published.sum(-1, keepdim=True)
    _, probs = attn(x, return_probs=True)
    torch.testing.assert_close(probs, published)


def test_published_ega_gate_leaks_the_future_and_causal_one_does_not():
    torch.manual_seed(3)
    idx = torch.randint(65, (1, 24))
    later = idx.clone()
    later[0, 16:] = (later[0, 16:] + 7) % 65
    for causal, leaks in [(False, True), (True, False)]:
        torch.manual_seed(3)
        model = GPT(GPTConfig(variant="ega1", causal_gate=causal, **SMALL)).eval()
        with torch.no_grad():
            diff = (model(idx)[0][0, :16] - model(later)[0][0, :16]).abs().max().item()
        assert (diff > 1e-6) == leaks, (causal, diff)


def test_base_is_causal():
    model = GPT(GPTConfig(**SMALL)).eval()
    idx = torch.randint(65, (1, 24))
    later = idx.clone()
    later[0, 16:] = (later[0, 16:] + 7) % 65
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0][0, :16], model(later)[0][0, :16])


def test_conv_multiplier_equals_published_block_loop():
    """Independent re-statement of the published loop: add w·s on each shifted block."""
    T = 12
    w = torch.softmax(torch.randn(9) * 0.5, 0).tolist()
    s = torch.randn(T, T)
    published = torch.zeros(T, T)
    for lag, wl in zip(range(-4, 5), w):
        if lag == 0:
            published += wl * s
        elif lag > 0:
            published[: T - lag, lag:] += wl * s[: T - lag, lag:]
        else:
            published[-lag:, : T + lag] += wl * s[-lag:, : T + lag]
    torch.testing.assert_close(conv_lag_multiplier(w, T) * s, published)
    m = conv_lag_multiplier(w, T)
    torch.testing.assert_close(m[4:-4, 4:-4], torch.ones(T - 8, T - 8))  # = BASE away from the edges


def test_conv_lag_weights_never_train():
    model = GPT(GPTConfig(variant="conv_l4", **SMALL))
    idx = torch.randint(65, (2, 24))
    _, loss = model(idx, idx)
    loss.backward()
    assert all(b.attn.lag_logits.grad is None for b in model.blocks)


def test_unknown_variant_and_too_long_input_fail_clearly():
    with pytest.raises(ValueError, match="unknown variant"):
        GPTConfig(variant="rope")
    with pytest.raises(ValueError, match="causal_gate"):
        GPTConfig(variant="base", causal_gate=True)
    model = GPT(GPTConfig(**SMALL))
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 25, dtype=torch.long))


@pytest.mark.parametrize("causal_gate", [False, True])
def test_ega_gradients_are_finite(causal_gate):
    """The causal gate's first key has zero prefix variance; its gradient must stay finite."""
    model = GPT(GPTConfig(variant="ega1", causal_gate=causal_gate, **SMALL))
    idx = torch.randint(65, (2, 24))
    _, loss = model(idx, idx)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
