import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnpod.errors import ParameterError
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


def test_sizes_are_said_once():
    """Profiles and model configs share one definition of the sizes, checked the same way."""
    import dataclasses

    from attnpod.config import PROFILES, ModelSize, Profile
    from attnpod.errors import ParameterError
    from attnpod.train import model_config

    sizes = {f.name for f in dataclasses.fields(ModelSize)}
    own = {cls: {f.name for f in dataclasses.fields(cls)} - sizes for cls in (Profile, GPTConfig)}
    assert sizes and not own[Profile] & own[GPTConfig]
    for profile in PROFILES.values():
        assert model_config(profile, "ega1").size() == profile.size()
    for bad in (dict(n_layer=True), dict(n_embd=30, n_head=4), dict(dropout=1.0)):
        with pytest.raises(ParameterError):
            GPTConfig(**bad)
        with pytest.raises(ParameterError):
            PROFILES["smoke"].replace(**bad)


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


@pytest.mark.parametrize("causal_gate", [False, True])
def test_fused_key_bias_gives_the_explicit_gradients(causal_gate):
    """The fused path folds log g_j into the scores as one more key coordinate; the gate learns the same."""
    import torch.nn.functional as F

    torch.manual_seed(4)
    model = GPT(GPTConfig(variant="ega1", causal_gate=causal_gate, **SMALL)).double().eval()
    idx = torch.randint(65, (2, 24))
    grads = []
    for explicit in (False, True):
        model.zero_grad()
        logits = model.forward_explicit(idx)[0] if explicit else model(idx)[0]
        F.cross_entropy(logits.reshape(-1, 65), idx.reshape(-1)).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert any("gate" in n for n in grads[0]) and grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7, msg=name)  # explicit softmax: float32


def _logit_change(variant, causal_gate, eps=1e-6, trials=8):
    """Largest change of the logits (float64) when the blocks' input moves by ``eps`` (per entry, random sign).

    The first two positions get the same input, so e_1 = e_0: where a prefix z-score
    without a prior jumps between −1, 0 and +1.
    """
    torch.manual_seed(1)
    model = GPT(GPTConfig(variant=variant, causal_gate=causal_gate, **SMALL)).double().eval()
    idx = torch.randint(65, (3, 24))

    def run(x):
        for block in model.blocks:
            x, _ = block(x)
        return model.lm_head(model.ln_f(x))

    with torch.no_grad():
        x = model._embed(idx)
        x[:, 1] = x[:, 0]
        y = run(x)
        gen = torch.Generator().manual_seed(0)
        return max((run(x + eps * torch.randn(x.shape, generator=gen, dtype=x.dtype)) - y).abs().max().item()
                   for _ in range(trials))


def test_causal_gate_is_a_continuous_function_of_its_input():
    """Perturbing the input by 1e-6 moves the causal-gate model's logits by O(1e-6), like BASE's;
    the unshrunk prefix variance made z_1 = sign(e_1 − e_0) and moved them by O(1e-2)."""
    base = _logit_change("base", False)
    causal = _logit_change("ega1", True)
    assert causal < 1e-4 and causal < 3 * base, (causal, base)


def test_causal_gate_first_positions_follow_the_prior():
    """z_0 = 0; at j = 1 the variance is shrunk towards σ_0² = ‖w_h‖² by one pseudo-observation."""
    gate = GPT(GPTConfig(variant="ega1", causal_gate=True, **SMALL)).blocks[0].attn.gate.double()
    e = torch.tensor([[[0.3, 0.5, -0.1]]], dtype=torch.float64).expand(1, 4, 3)
    z = gate._causal_z(e)[0, 0]
    prior = gate.energy.weight.double().pow(2).sum(-1)[0]
    assert z[0] == 0
    var1 = (2 * 0.1**2 + prior) / 3  # population variance of (0.3, 0.5) is 0.1²
    torch.testing.assert_close(z[1], (0.5 - 0.4) / var1.sqrt())


def _cpu_flags() -> set[str]:
    try:
        return set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return set()


@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_fused_and_explicit_paths_agree_on_every_simd_path(capability):
    """The same agreement under each of torch's CPU kernels (ATEN_CPU_CAPABILITY), in a fresh process."""
    if capability == "avx2" and "avx2" not in _cpu_flags():
        pytest.skip("this CPU has no AVX2")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                           "-k", "test_fused_and_explicit_paths_agree and not simd"],
                          env=env, capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout


def test_each_variant_is_one_spec_read_everywhere():
    """The variant is decided once (GPTConfig.spec); no module compares variant names to choose code."""
    import re
    from pathlib import Path

    from attnpod.config import MODELS
    from attnpod.models import VARIANT_SPECS

    assert list(VARIANT_SPECS) == list(MODELS)
    src = Path(__file__).resolve().parents[1] / "src" / "attnpod"
    for name in ("models.py", "experiments/kvcache.py", "adapters.py"):
        assert not re.search(r"variant\s*(==|!=|in\s*\()", (src / name).read_text()), name
    decodes = {(v, c): GPTConfig(vocab_size=65, n_layer=1, n_head=1, n_embd=8, block_size=8, variant=v,
                                 causal_gate=c).decodable
               for v in MODELS for c in (False, True) if not c or v in ("ega1", "ega_morlet")}
    assert decodes == {("base", False): True, ("ega1", False): False, ("ega1", True): True,
                       ("ega_morlet", False): False, ("ega_morlet", True): True, ("conv_l4", False): False}
    with pytest.raises(ParameterError, match="token by token"):
        GPT(GPTConfig(vocab_size=65, n_layer=1, n_head=1, n_embd=8, block_size=8, variant="conv_l4")).decode_step(
            0, 0, lambda *a: None, [])
