# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: attnpod (.venv)
#     language: python
#     name: attnpod
# ---

# %% [markdown]
# # The method on your own model
#
# ```{admonition} This page's run
# :class: note
# {glue:text}`run`
# ```
#
# The analysis needs one thing from a model: its attention probabilities on N
# windows of T tokens, as an ensemble `fields[n, l, i, j]` (head-averaged, the
# paper's choice) or `fields[n, l, h, i, j]` (per head). `attnpod.adapters` turns
# the attention of external models into that ensemble; the extra is
# `pip install "attnpod[hf]"` (HuggingFace `transformers`), and the core install
# does not grow.
#
# ## A HuggingFace model
#
# Load the model with eager attention (fused kernels return no probabilities),
# tokenise N windows of T tokens, and hand both to the adapter:
#
# ```python
# from transformers import AutoModelForCausalLM, AutoTokenizer
# from attnpod.adapters import hf_fields
# from attnpod.analysis import analyse_fields
#
# model = AutoModelForCausalLM.from_pretrained("gpt2", attn_implementation="eager")
# tokens = AutoTokenizer.from_pretrained("gpt2")(text, return_tensors="pt").input_ids[0]
# T, N = 256, 200
# starts = torch.randint(len(tokens) - T, (N,))
# windows = torch.stack([tokens[s:s + T] for s in starts])   # (N, T) token ids
#
# fields = hf_fields(model, windows)          # (N, L, T, T), head-averaged
# result = analyse_fields(fields)             # scalograms, dominant scales, POD, T_spec, H*(ε)
# result.dominant_scales, result.effective_rank
# ```
#
# ## A TransformerLens cache
#
# ```python
# from attnpod.adapters import transformer_lens_fields
#
# _, cache = model.run_with_cache(windows)    # a HookedTransformer
# fields = transformer_lens_fields(cache)     # reads blocks.{l}.attn.hook_pattern
# ```
#
# Or any per-layer list of `(N, H, T, T)` probability tensors:
# `attnpod.adapters.fields_from_attentions(attentions)`.
#
# Attention that is not causal (a bidirectional encoder), rows that do not sum
# to 1 (logits instead of probabilities), layers of different shapes, or a model
# run without `output_attentions=True` each stop with an error that says so.
#
# ## Checked on a model we know
#
# Our BASE is GPT-2-shaped (pre-LN blocks, learned positions, GELU, tied
# embeddings, no Q/K/V bias), so `attnpod.adapters.to_hf_gpt2` copies its trained
# weights into a `transformers` GPT-2. The adapter must then give the fields and
# the analysis our own code gives. This is what the page runs (and `tests/test_adapters.py`
# checks at the smoke size):

# %% tags=["parameters"]
profile = "auto"
seed = 42
device = "auto"
data_path = ""
overrides = {}
n_windows = 0  # 0: the profile's N

# %% tags=["hide-input"]
import numpy as np
import pandas as pd
from myst_nb import glue

from attnpod.book import adapter_comparison, figure
from attnpod.study import Study

study = Study.create(profile, seed=seed, device=device, data_path=data_path, overrides=overrides)
glue("run", study.run_stamp, display=False)  # which run this page shows
P = study.profile
base = study.trained("base").model.cpu()

# %%
compared = adapter_comparison(study, n_windows)  # BASE as a transformers GPT-2 through hf_fields, and ours
theirs, ours = compared["theirs"], compared["ours"]
print(f"fields {theirs.shape}: largest difference {np.abs(theirs - ours).max():.1e}")

# %%
result_hf, result_ours = compared["result_hf"], compared["result_ours"]
pd.DataFrame({
    "top scale (transformers)": result_hf.dominant_scales[:, 0],
    "top scale (ours)": result_ours.dominant_scales[:, 0],
    "H*(0.10) (transformers)": result_hf.effective_rank[:, 0],
    "H*(0.10) (ours)": result_ours.effective_rank[:, 0],
    "T_spec (transformers)": result_hf.spectral_concentration.round(4),
    "T_spec (ours)": result_ours.spectral_concentration.round(4),
}, index=study.layer_labels)

# %% tags=["hide-input"]
glue("adapter_diff", f"{np.abs(theirs - ours).max():.1e}", display=False)
glue("adapter_same", "the same" if (result_hf.dominant_index == result_ours.dominant_index).all()
     and (result_hf.effective_rank == result_ours.effective_rank).all() else "different", display=False)

# %%
fig = figure(study, "your_model_scalograms", n_windows=n_windows, compared=compared)
glue("fig_your_model", fig, display=False)

# %% [markdown]
# ```{glue:figure} fig_your_model
# :name: fig-your-model
# Ensemble scalograms of BASE read through the `transformers` adapter, beside
# our own: the dashed line marks each layer's top scale.
# ```
#
# The fields agree to {glue:text}`adapter_diff`; the dominant scales and
# effective ranks are {glue:text}`adapter_same`.
