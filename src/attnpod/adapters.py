"""The method on your own model: attention from an external model as the ensemble the analysis takes.

The analysis (:func:`attnpod.analysis.analyse_fields`) reads ``fields[n, l, i, j]``:
head-averaged, causal, row-stochastic attention of N windows of T tokens at L
layers (or ``fields[n, l, h, i, j]`` per head). Three ways in:

* :func:`fields_from_attentions`: per-layer tensors (B, H, T, T) in any framework's
  layout, such as the ``attentions`` a HuggingFace model returns;
* :func:`hf_fields`: runs a HuggingFace ``transformers`` model (eager attention,
  ``output_attentions=True``) over token windows;
* :func:`transformer_lens_fields`: a TransformerLens-style cache of ``pattern``
  tensors (``blocks.{l}.attn.hook_pattern``).

:func:`to_hf_gpt2` converts our BASE (a GPT-2-shaped model) into a ``transformers``
GPT-2, which the tests use to check the adapters against our own fields.
``transformers`` is an optional extra: ``pip install attnpod[hf]``.
"""

from __future__ import annotations

import numpy as np
import torch

from .analysis import CAUSAL_TOL
from .errors import AttentionInputError, AttnpodError, ParameterError
from .data import token_windows
from .fields import stream_fields

ROW_SUM_TOL = 1e-3  # rows of float32 softmax sum to 1 within this



def row_sum_tolerance(dtype) -> float:
    """How far from 1 a softmax row may sum in ``dtype``: :data:`ROW_SUM_TOL`, or four units of the
    dtype's rounding where that is coarser (bf16 rows sum to 1 ± 0.004, float16 to 1 ± 0.001)."""
    if isinstance(dtype, torch.dtype):
        eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    else:
        eps = float(np.finfo(dtype).eps) if np.dtype(dtype).kind == "f" else 0.0
    return max(ROW_SUM_TOL, 4 * eps)


def _as_numpy(tensor) -> np.ndarray:
    if isinstance(tensor, torch.Tensor):
        return tensor.detach().float().cpu().numpy()
    return np.asarray(tensor, dtype=np.float32)


def check_attention(A: np.ndarray, where: str = "attention", row_tol: float = ROW_SUM_TOL) -> None:
    """``A[..., T, T]`` must be causal (zero above the diagonal) and row-stochastic (rows summing to 1
    within ``row_tol``: see :func:`row_sum_tolerance`); a clear error if not."""
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise AttentionInputError(f"{where} must end in a square (T, T) map per head, got shape {A.shape}")
    if not np.isfinite(A).all():
        raise AttentionInputError(f"{where} holds NaN or infinite values")
    T = A.shape[-1]
    above = A[..., np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]]
    if above.size and np.abs(above).max() > CAUSAL_TOL:
        raise AttentionInputError(f"{where} is not causal: {np.abs(above).max():.2g} of attention above the diagonal "
                                  f"(the analysis is for decoder attention; a bidirectional model does not fit)")
    sums = A.sum(-1)
    if np.abs(sums - 1).max() > row_tol or (A < -CAUSAL_TOL).any():
        raise AttentionInputError(f"{where} is not row-stochastic: rows sum to {sums.min():.4g}…{sums.max():.4g} "
                                  f"(pass softmax probabilities, not logits or scores)")


def fields_from_attentions(attentions, heads: str = "mean") -> np.ndarray:
    """``fields[n, l, i, j]`` (heads="mean") or ``fields[n, l, h, i, j]`` (heads="all") from per-layer
    attention probabilities ``attentions[l]`` of shape (N, H, T, T), as HuggingFace models return them."""
    if heads not in ("mean", "all"):
        raise ParameterError(f"heads must be 'mean' or 'all', got {heads!r}")
    if attentions is None or len(attentions) == 0:
        raise AttentionInputError("no attention maps: run the model with output_attentions=True (eager attention)")
    tolerance = max(row_sum_tolerance(getattr(a, "dtype", np.float32)) for a in attentions)
    layers = [_as_numpy(a) for a in attentions]
    shapes = {a.shape for a in layers}
    if len(shapes) != 1:
        raise AttentionInputError(f"the layers' attention shapes differ: {sorted(shapes)}")
    (shape,) = shapes
    if len(shape) != 4:
        raise AttentionInputError(f"each layer's attention must be (N, H, T, T), got {shape}")
    for l, a in enumerate(layers):
        check_attention(a, f"layer {l}'s attention", tolerance)
    stacked = np.stack(layers, axis=1)  # (N, L, H, T, T)
    return stacked.mean(axis=2) if heads == "mean" else stacked


def hf_fields(model, windows, heads: str = "mean", batch_size: int = 8, progress: bool = True,
              out=None, statistics=None) -> np.ndarray:
    """Attention fields of a HuggingFace ``transformers`` model over token ``windows[n, t]``.

    The model runs in eval mode with ``output_attentions=True``; it must use eager
    attention (``attn_implementation="eager"`` when loading), since fused kernels
    return no probabilities. With ``out`` (a ``.npy`` path) the fields stream batch by
    batch into a ``.npy`` file (:func:`attnpod.fields.stream_fields`): only one batch's
    attention is ever in memory. ``statistics`` (a :class:`attnpod.fields.LayerStatistics`)
    sees every batch's per-head maps on the way.
    """
    windows = token_windows(windows)
    implementation = getattr(getattr(model, "config", None), "_attn_implementation", "eager")
    if implementation not in (None, "eager"):
        raise AttentionInputError(f"the model uses {implementation!r} attention, which returns no probabilities; "
                                  f"load it with attn_implementation='eager'")
    device = next(model.parameters()).device
    model.eval()
    N, T = windows.shape
    L, H = model.config.num_hidden_layers, model.config.num_attention_heads
    shape = (N, L, T, T) if heads == "mean" else (N, L, H, T, T)

    # the backbone without its language-model head: no logits (for a large vocabulary, the batch's largest tensor)
    backbone = getattr(model, "base_model", None)
    backbone = model if backbone is None or backbone is model else backbone

    def batches():
        with torch.no_grad():
            for n0 in range(0, N, batch_size):
                result = backbone(input_ids=windows[n0:n0 + batch_size].to(device), output_attentions=True)
                yield torch.from_numpy(fields_from_attentions(getattr(result, "attentions", None), "all"))

    return stream_fields(batches(), shape, heads, out, progress, total=-(-N // batch_size),
                         on_batch=None if statistics is None else statistics.add)


def transformer_lens_fields(cache, heads: str = "mean") -> np.ndarray:
    """Fields from a TransformerLens-style activation cache: ``cache["blocks.{l}.attn.hook_pattern"]``
    of shape (N, H, T, T) for l = 0, 1, … (a plain dict of those keys works too)."""
    keys = cache.keys() if hasattr(cache, "keys") else []
    patterns = []
    while f"blocks.{len(patterns)}.attn.hook_pattern" in keys:
        patterns.append(cache[f"blocks.{len(patterns)}.attn.hook_pattern"])
    if not patterns:
        raise AttentionInputError("the cache holds no 'blocks.{l}.attn.hook_pattern' entries: run the model with "
                                  "run_with_cache (or keep the hook_pattern activations)")
    return fields_from_attentions(patterns, heads)


def to_hf_gpt2(model):
    """Our BASE as a ``transformers`` GPT2LMHeadModel with the same weights (eval mode, no dropout).

    BASE is GPT-2-shaped: pre-LN blocks, learned positions, exact GELU, tied
    embeddings, no Q/K/V bias. GPT-2's Conv1D layers hold weights as (in, out), the
    transpose of ``nn.Linear``.
    """
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError as err:
        raise AttnpodError("transformers is not installed: pip install 'attnpod[hf]'") from err
    cfg = model.config
    if (cfg.spec.position, cfg.spec.score) != ("learned", "none"):
        raise ParameterError(f"only BASE is GPT-2-shaped; {cfg.variant!r} has its own attention")
    hf = GPT2LMHeadModel(GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        layer_norm_epsilon=model.ln_f.eps, tie_word_embeddings=True, bos_token_id=None, eos_token_id=None,
        attn_implementation="eager"))
    sd = {"transformer.wte.weight": model.tok_emb.weight, "transformer.wpe.weight": model.pos_emb.weight,
          "transformer.ln_f.weight": model.ln_f.weight, "transformer.ln_f.bias": model.ln_f.bias,
          "lm_head.weight": model.lm_head.weight}
    for l, block in enumerate(model.blocks):
        p = f"transformer.h.{l}."
        sd |= {p + "ln_1.weight": block.ln1.weight, p + "ln_1.bias": block.ln1.bias,
               p + "attn.c_attn.weight": block.attn.qkv.weight.T,
               p + "attn.c_attn.bias": torch.zeros(3 * cfg.n_embd),
               p + "attn.c_proj.weight": block.attn.proj.weight.T, p + "attn.c_proj.bias": block.attn.proj.bias,
               p + "ln_2.weight": block.ln2.weight, p + "ln_2.bias": block.ln2.bias,
               p + "mlp.c_fc.weight": block.mlp.fc.weight.T, p + "mlp.c_fc.bias": block.mlp.fc.bias,
               p + "mlp.c_proj.weight": block.mlp.out.weight.T, p + "mlp.c_proj.bias": block.mlp.out.bias}
    own = hf.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith((".attn.bias", ".attn.masked_bias"))]
    if missing:
        raise AttnpodError(f"GPT-2 parameters without a BASE counterpart: {missing[:4]}")
    with torch.no_grad():
        for name, value in sd.items():
            own[name].copy_(value.detach().to(own[name].dtype).contiguous())
    return hf.eval()
