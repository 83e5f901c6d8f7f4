"""The method on your own model: our trained BASE as a HuggingFace GPT-2 gives the same fields and analysis."""

import numpy as np
import pytest
import torch

from attnpod import adapters
from attnpod.analysis import analyse_fields
from attnpod.errors import ParameterError
from attnpod.config import get_profile
from attnpod.data import sample_windows
from attnpod.fields import collect_fields
from attnpod.models import GPT, GPTConfig
from attnpod.train import train

transformers = pytest.importorskip("transformers")  # the hf extra; `make test` installs it


@pytest.fixture(scope="module")
def trained_base(corpus, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATTNPOD_ARTIFACTS", str(tmp_path_factory.mktemp("artifacts")))
        model, _, _ = train(get_profile("smoke"), "base", corpus, "cpu", progress=False)
    return model.eval()


def test_trained_base_as_hf_gpt2_gives_the_same_fields_and_analysis(trained_base, corpus):
    hf = adapters.to_hf_gpt2(trained_base)
    assert isinstance(hf, transformers.GPT2LMHeadModel)
    windows = sample_windows(corpus, 16, trained_base.config.block_size, "val", seed=3)
    with torch.no_grad():
        logits = hf(input_ids=windows).logits
        assert (logits - trained_base(windows)[0]).abs().max() < 1e-4
    ours = collect_fields(trained_base, windows, progress=False)
    theirs = adapters.hf_fields(hf, windows, batch_size=5, progress=False)
    assert theirs.shape == ours.shape and np.abs(theirs - ours).max() < 1e-5
    per_head = adapters.hf_fields(hf, windows[:3], heads="all", progress=False)
    assert np.abs(per_head - collect_fields(trained_base, windows[:3], heads="all", progress=False)).max() < 1e-5
    a, b = (analyse_fields(f, n_boot=0, n_half=0, progress=False) for f in (ours, theirs))
    assert (a.dominant_index == b.dominant_index).all() and (a.effective_rank == b.effective_rank).all()
    assert np.allclose(a.eigenvalues, b.eigenvalues, rtol=1e-3, atol=1e-9 * a.eigenvalues.max())


def test_transformer_lens_style_cache():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0)).eval()
    idx = torch.randint(0, 65, (3, 16))
    maps = model.attention_maps(idx)  # (N, L, H, T, T)
    cache = {f"blocks.{l}.attn.hook_pattern": maps[:, l] for l in range(2)} | {"blocks.0.hook_resid_pre": idx}
    assert np.allclose(adapters.transformer_lens_fields(cache), collect_fields(model, idx, progress=False), atol=1e-7)
    assert adapters.transformer_lens_fields(cache, heads="all").shape == (3, 2, 2, 16, 16)
    with pytest.raises(adapters.AttentionInputError, match="hook_pattern"):
        adapters.transformer_lens_fields({"blocks.0.hook_resid_pre": idx})


def test_bad_input_gets_a_clear_error():
    T = 8
    causal = torch.softmax(torch.randn(2, 2, T, T).masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), -1e9), -1)
    assert adapters.fields_from_attentions([causal, causal]).shape == (2, 2, T, T)
    with pytest.raises(adapters.AttentionInputError, match="not causal"):
        adapters.fields_from_attentions([torch.softmax(torch.randn(2, 2, T, T), -1)])
    with pytest.raises(adapters.AttentionInputError, match="not row-stochastic"):
        adapters.fields_from_attentions([causal * 2])
    with pytest.raises(adapters.AttentionInputError, match="shapes differ"):
        adapters.fields_from_attentions([causal, causal[:, :1]])
    with pytest.raises(adapters.AttentionInputError, match="square"):
        adapters.fields_from_attentions([causal[..., :-1]])
    with pytest.raises(adapters.AttentionInputError, match="output_attentions=True"):
        adapters.fields_from_attentions(None)
    with pytest.raises(ParameterError, match="heads"):
        adapters.fields_from_attentions([causal], heads="max")
    with pytest.raises(ParameterError, match="only BASE"):
        adapters.to_hf_gpt2(GPT(GPTConfig(vocab_size=65, block_size=8, n_layer=1, n_head=1, n_embd=8,
                                          variant="ega1")))


def test_a_fused_attention_model_is_refused():
    config = transformers.GPT2Config(vocab_size=65, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                     bos_token_id=None, eos_token_id=None, attn_implementation="sdpa")
    model = transformers.GPT2LMHeadModel(config)
    with pytest.raises(adapters.AttentionInputError, match="eager"):
        adapters.hf_fields(model, torch.zeros(1, 8, dtype=torch.long), progress=False)


def test_the_readmes_own_model_snippet_runs_as_written(tmp_path):
    """The README's Python block under "The method on your own model", run as a reader would paste it."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## The method on your own model", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("[") == 2  # the dominant scales and the ranks, one per layer
