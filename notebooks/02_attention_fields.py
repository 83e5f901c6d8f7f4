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
# # Attention fields
#
# ```{admonition} This page's run
# :class: note
# {glue:text}`run`
# ```
#
# The paper's object of study is the attention matrix of each layer seen as a
# field over (query, key), sampled by many input windows.

# %% tags=["parameters"]
profile = "auto"
seed = 42
device = "auto"
data_path = ""
overrides = {}

# %% tags=["hide-input"]
import numpy as np
import pandas as pd
from myst_nb import glue

from attnpod.analysis import lag_statistics
from attnpod.book import figure
from attnpod.study import Study

study = Study.create(profile, seed=seed, device=device, data_path=data_path, overrides=overrides)
glue("run", study.run_stamp, display=False)  # which run this page shows
P = study.profile

# %% [markdown]
# ## The snapshot ensemble
#
# A snapshot is one forward pass, in evaluation mode (no dropout), over a window
# of $T$ consecutive tokens. Its field at layer $l$ is the attention matrix
# averaged over the heads,
#
# $$
# A^{(l)}_{ij} = \frac{1}{H} \sum_{h=1}^{H} A^{(l,h)}_{ij}, \qquad \sum_j A^{(l)}_{ij} = 1,\quad A^{(l)}_{ij} = 0 \text{ for } j > i .
# $$
#
# We draw $N =$ {glue:text}`N` windows of $T =$ {glue:text}`T` tokens from the
# validation split with seed {glue:text}`seed` (the published script draws from
# the whole file, training text included).

# %%
fields = {v: study.fields(v) for v in study.models}  # fields[n, l, i, j], memory-mapped
glue("N", P.n_snapshots, display=False)
glue("T", P.block_size, display=False)
glue("seed", P.seed, display=False)
pd.DataFrame({"snapshots N": [f.shape[0] for f in fields.values()], "layers L": [f.shape[1] for f in fields.values()],
              "queries × keys": [f"{f.shape[2]} × {f.shape[3]}" for f in fields.values()]},
             index=[study.label(v) for v in fields]).rename_axis("model")

# %% [markdown]
# ## Example fields
#
# The first snapshot, every layer (square root of the probability, so that weak
# structure shows; the first 64 queries and keys).

# %%
fig = figure(study, "fields")
glue("fig_fields", fig, display=False)

# %% [markdown]
# ```{glue:figure} fig_fields
# :name: fig-fields
# One snapshot's attention fields, models (rows) by layers (columns).
# ```
#
# ## Lag coordinates
#
# Attention to "the token $\tau$ positions back" lies on a diagonal of $A$.
# Lag coordinates straighten those diagonals into columns:
#
# $$
# L_{i\tau} = A_{i,\,i-\tau} \quad (0 \le \tau \le i), \qquad L_{i\tau} = 0 \quad (\tau > i).
# $$
#
# Row $i$ of $L$ is the *lag profile* of query $i$. A head that always looks at
# the previous token becomes one bright column at $\tau = 1$; a head that always
# looks at the first token (an attention sink) becomes the moving diagonal
# $\tau = i$.

# %%
fig = figure(study, "lag_fields")
glue("fig_lag_fields", fig, display=False)

# %% [markdown]
# ```{glue:figure} fig_lag_fields
# :name: fig-lag-fields
# The same snapshot in lag coordinates $L_{i\tau}$.
# ```
#
# ## How far each layer looks back
#
# The mean lag profile averages $L_{i\tau}$ over snapshots and over the queries
# for which lag $\tau$ exists; the mean look-back is
# $\langle \sum_\tau \tau L_{i\tau} \rangle$ over snapshots and queries $i \ge 1$.

# %%
stats = {v: lag_statistics(f) for v, f in fields.items()}
fig = figure(study, "lag_profiles")
glue("fig_lag_profiles", fig, display=False)

# %% [markdown]
# ```{glue:figure} fig_lag_profiles
# :name: fig-lag-profiles
# Mean attention at lag $\tau$ for each layer (log scale).
# ```

# %% tags=["hide-input"]
layers = study.layer_labels
look_back = pd.DataFrame({study.label(v): s.mean_lag for v, s in stats.items()}, index=layers)
sink = pd.DataFrame({study.label(v): s.first_token_share for v, s in stats.items()}, index=layers)
glue("look_back_table", look_back.style.format("{:.1f}"), display=False)
glue("sink_table", sink.style.format("{:.1%}"), display=False)

# %% [markdown]
# Mean look-back $\langle\tau\rangle$ in tokens:
#
# ```{glue:} look_back_table
# ```
#
# ## The attention sink
#
# Share of attention that queries $i \ge 1$ put on the window's first token.
# Whatever sits there appears in lag coordinates as a diagonal moving with the
# query, energy at lags up to $T$ that a scalogram reads as coarse scale.
#
# ```{glue:} sink_table
# ```

# %% tags=["hide-input"]
base = stats["base"]
glue("base_near", f"{base.mean_lag[0]:.1f}", display=False)
glue("base_far", f"{base.mean_lag[-1]:.1f}", display=False)
deepest = int(np.argmax(base.mean_lag)) + 1
glue("base_deepest", deepest, display=False)
glue("base_deepest_text", f"every layer looks back about as far ({base.mean_lag.min():.1f}–{base.mean_lag.max():.1f} "
     f"tokens)" if np.ptp(base.mean_lag) < 0.5 else f"its furthest-looking layer is layer {deepest}", display=False)
max_sink = max((s.first_token_share.max(), v) for v, s in stats.items())
glue("max_sink", f"{max_sink[0]:.1%}", display=False)
glue("max_sink_model", study.label(max_sink[1]), display=False)
glue("max_sink_layer", int(np.argmax(stats[max_sink[1]].first_token_share)) + 1, display=False)

# %% [markdown]
# ## What we found
#
# - BASE looks back {glue:text}`base_near` tokens on average in layer 1 and
#   {glue:text}`base_far` in the last layer; {glue:text}`base_deepest_text`.
# - The largest first-token share is {glue:text}`max_sink` ({glue:text}`max_sink_model`,
#   layer {glue:text}`max_sink_layer`): that much of the field is a moving
#   diagonal in lag coordinates, not local structure.
