# ---
# jupyter:
#   jupytext:
#     formats: py:percent,ipynb
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: attnpod (.venv)
#     language: python
#     name: attnpod
# ---

# %% [markdown]
# # Scalograms
#
# At which scales does attention live? The paper answers with a Morlet wavelet
# transform of each query's lag profile {cite}`torrence1998`.

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

from attnpod.figures import plot_morlet, plot_scale_energy, plot_scalogram_grid
from attnpod.study import Study
from attnpod.wavelet import fourier_period, paper_scales

study = Study.create(profile, seed=seed, device=device, data_path=data_path, overrides=overrides)
P = study.profile

# %% [markdown]
# ## The Morlet wavelet
#
# $$
# \psi(t) = \pi^{-1/4} e^{i\omega_0 t} e^{-t^2/2}, \qquad \omega_0 = 5,
# $$
#
# computed in the Fourier domain with Torrence and Compo's normalisation, so
# that every scale has unit energy:
#
# $$
# W_a(\tau) = \sum_k \hat x_k\, \hat\psi^*(a\omega_k)\, e^{i\omega_k \tau}, \qquad
# \hat\psi(a\omega) = \sqrt{2\pi a}\; \pi^{-1/4} e^{-(a\omega-\omega_0)^2/2}\, H(\omega),
# $$
#
# the signal zero-padded to at least twice its length. A wavelet of scale $a$
# responds most to a period of $4\pi a / (\omega_0 + \sqrt{2+\omega_0^2})
# \approx$ {glue:text}`period_factor` $a$ tokens. The paper uses 20 log-spaced
# scales from 2 to 64 tokens.

# %%
scales = paper_scales()
glue("period_factor", f"{fourier_period(1.0):.4f}", display=False)
fig = plot_morlet(scales)
glue("fig_morlet", fig, display=False)

# %% [markdown]
# ```{glue:figure} fig_morlet
# :name: fig-morlet
# Left: the wavelet at three scales. Right: the 20 Fourier-domain filters against
# period; dotted lines mark the predicted period $1.2325\,a$.
# ```
#
# ## Figure 1: ensemble scalograms
#
# For snapshot $n$ and query $i$, $W_{n,i}(a,\tau)$ is the CWT of the lag profile
# $L_{i\cdot}$. The ensemble scalogram averages its power over queries and snapshots:
#
# $$
# \bar S(a, \tau) = \frac{1}{N}\sum_{n=1}^N \frac{1}{T}\sum_{i=1}^T |W_{n,i}(a,\tau)|^2 .
# $$
#
# Because $|W|^2$ is quadratic in the profile, $\bar S$ follows exactly from the
# profiles' $T\times T$ second moment; no transform of individual profiles is needed.

# %%
analyses = {v: study.analysis(v) for v in study.models}
fig = plot_scalogram_grid(analyses)
glue("fig_scalograms", fig, display=False)

# %% [markdown]
# ```{glue:figure} fig_scalograms
# :name: fig-scalograms
# Ensemble scalograms $\log_{10} \bar S(a,\tau)/\max$, models (rows) by layers
# 1–6 (columns); the dashed line marks each layer's top dominant scale.
# ```
#
# ## Scale energy and dominant scales
#
# $E(a) = \sum_\tau \bar S(a,\tau)$; the dominant scales are the four largest.

# %%
fig = plot_scale_energy(analyses)
glue("fig_energy", fig, display=False)

# %% [markdown]
# ```{glue:figure} fig_energy
# :name: fig-energy
# Scale energy $E(a)$ per layer, normalised to its maximum.
# ```

# %% tags=["hide-input"]
layers = [f"layer {l + 1}" for l in range(P.n_layer)]
dominant = pd.DataFrame({study.label(v): [", ".join(f"{a:.1f}" for a in row) for row in r.dominant_scales]
                         for v, r in analyses.items()}, index=layers)
glue("dominant_table", dominant, display=False)

# %% [markdown]
# Dominant scales (tokens), largest energy first:
#
# ```{glue:} dominant_table
# ```
#
# ## The paper's claim
#
# *Early layers are dominated by fine scales ($a \le 7$ tokens), later layers by
# coarse scales ($a \ge 20$).* We read "early" as layers 1–2 and "later" as the
# last two layers, and test each model's top dominant scale.

# %% tags=["hide-input"]
n_layer = P.n_layer
top = {v: r.dominant_scales[:, 0] for v, r in analyses.items()}
early = [top[v][l] <= 7 for v in top for l in (0, 1)]
late = [top[v][l] >= 20 for v in top for l in (n_layer - 2, n_layer - 1)]


def verdict(hits):
    share = np.mean(hits)
    return "agree" if share == 1 else "disagree" if share == 0 else f"partly ({share:.0%} of cases)"


glue("early_hits", f"{sum(early)} of {len(early)}", display=False)
glue("late_hits", f"{sum(late)} of {len(late)}", display=False)
glue("early_verdict", verdict(early), display=False)
glue("late_verdict", verdict(late), display=False)
pd.DataFrame({study.label(v): top[v] for v in top}, index=layers).style.format("{:.1f}")

# %% [markdown]
# ## What we found
#
# - Fine scales early: {glue:text}`early_hits` (model, layer 1–2) pairs have a
#   top scale $\le 7$ tokens: **{glue:text}`early_verdict`**.
# - Coarse scales late: {glue:text}`late_hits` (model, last-two-layer) pairs
#   have a top scale $\ge 20$ tokens: **{glue:text}`late_verdict`**.
# - Read the scalograms with the attention sink of the previous chapter in
#   mind: first-token attention is a diagonal in lag coordinates and adds
#   energy at every lag.
