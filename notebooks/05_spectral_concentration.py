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
# # Spectral concentration
#
# ```{admonition} This page's run
# :class: note
# {glue:text}`run`
# ```
#
# How fast does the POD spectrum decay? The paper fits a power law to the
# leading eigenvalues and calls its inverse exponent the spectral concentration
# index (its code names it an "attention Reynolds number").

# %% tags=["parameters"]
profile = "auto"
seed = 42
device = "auto"
data_path = ""
overrides = {}

# %% tags=["hide-input"]
import numpy as np
import pandas as pd
from IPython.display import display
from myst_nb import glue

from attnpod import claims
from attnpod.analysis import bootstrap_statistics
from attnpod.book import ensemble_table, figure
from attnpod.estimators import stack_halves
from attnpod.readings import shape_halves
from attnpod.study import Study

study = Study.create(profile, seed=seed, device=device, data_path=data_path, overrides=overrides)
glue("run", study.run_stamp, display=False)  # which run this page shows (the findings page lists it)
glue("own_seed", study.profile.seed, display=False)
P = study.profile
analyses = study.analyses()
layers = study.layer_labels

# %% [markdown]
# ```{note}
# Every figure and table of this chapter shows one training seed,
# {glue:text}`own_seed`. [Verdicts across readings](11_verdicts) shows the
# spread of its numbers over every seed of the build, and its verdicts judged on
# each of them.
# ```
#
# ## The index
#
# At each layer's top dominant scale, fit by least squares
#
# $$
# \log \lambda_k = c - \beta \log k, \qquad k = 1, \ldots, K = \min(30, N), \quad \lambda_k > 10^{-12},
# $$
#
# and set $\mathcal{T}_\mathrm{spec} = 1/\max(\beta, 0.01)$. A large index is a
# slowly decaying spectrum (many modes matter); a small one, a field dominated
# by a few modes. With fewer than 3 usable eigenvalues there is nothing to fit:
# we report the layer as degenerate, where the published code returns 1.0.

# %%
fig = figure(study, "power_law_fits")
glue("fig_fits", fig, display=False)

# %% [markdown]
# ```{glue:figure} fig_fits
# :name: fig-fits
# Leading eigenvalues (dots) and the power-law fit (line), models (rows) by layers (columns).
# ```
#
# ## Table 2

# %%
shapes = [shape_halves(r) for r in analyses.values()]
halves = {s: stack_halves([shape[s] for shape in shapes], 1)  # [layer, model, half]
          for s in ("spectral_concentration", "first_share")}
N, M = P.n_snapshots, halves["first_share"].halves.shape[1]
glue("N", N, display=False)
glue("M", M, display=False)
glue("n_halves", len(halves["first_share"]), display=False)
table2 = pd.DataFrame({study.label(v): r.spectral_concentration for v, r in analyses.items()}, index=layers)
glue("table2", claims.with_half_intervals(table2, halves["spectral_concentration"], index=layers,
                                          columns=table2.columns), display=False)

# %% [markdown]
# $\mathcal{T}_\mathrm{spec}$ per layer and model on all $N =$ {glue:text}`N`
# snapshots, then, after the bar, its expected value for an ensemble of
# $N/2 =$ {glue:text}`M` with a 95 % interval, from {glue:text}`n_halves` random
# halves of the snapshots. The shape of a spectrum depends on the ensemble's
# size, so an interval must say which size it speaks of: resampling the $N$
# snapshots with replacement would not do, because a resample holds only about
# 63 % distinct snapshots and shifts every shape statistic by more than its
# spread (the method page explains the halves and tests their coverage):
#
# ```{glue:} table2
# ```
#
# The full-$N$ values get their own intervals from the
# {glue:text}`n_ensembles` disjoint ensembles of $N$ that the validation split
# holds (`attnpod.study.Study.disjoint_readouts`, disjoint from each other, not
# from the analysis's own; the effective-rank chapter rules on them): the mean
# over those ensembles with its 95 % Student-t interval, beside this ensemble's
# value.

# %% tags=["hide-input"]
readouts = {study.label(v): study.disjoint_readouts(v) for v in study.models}
if any(r is None for r in readouts.values()):
    glue("n_ensembles", "none: too few", display=False)
else:
    glue("n_ensembles", len(next(iter(readouts.values()))["t_spec"]), display=False)
    display(ensemble_table(readouts, dict(table2.items()), "t_spec", "{:.3f}", "{:.3f}"))

# %% [markdown]
# ## Does the index separate layers?
#
# If it does, its spread across layers should be large against its spread
# across models at the same layer. And the paper singles out layer 1: in its
# 150-snapshot run layer 1's spectrum was near-degenerate (the 1.00 fallback).
# We measure layer 1 by the energy share of its first mode.

# %%
values = table2.to_numpy()  # [layer, model]
separates = claims.index_separates_layers(values, halves["spectral_concentration"])
glue("sd_layers", f"{np.nanmean(np.nanstd(values, axis=0)):.3f}", display=False)
glue("sd_models", f"{np.nanmean(np.nanstd(values, axis=1)):.3f}", display=False)
glue("separates_measure", separates.measurement, display=False)
glue("separates", str(separates), display=False)
first_share = pd.DataFrame({study.label(v): r.top_eigenvalues[:, 0] / r.top_eigenvalues.sum(-1)
                            for v, r in analyses.items()}, index=layers)
layer1 = claims.layer1_degenerate(first_share.to_numpy(), np.isnan(values), halves["first_share"])
glue("l1_share", f"{first_share.iloc[0].mean():.0%}", display=False)
glue("other_share", f"{first_share.iloc[1:].to_numpy().mean():.0%}", display=False)
glue("l1_measure", layer1.measurement, display=False)
glue("n_degenerate", int(np.isnan(values).sum()), display=False)
glue("l1_verdict", str(layer1), display=False)
glue("share_table", claims.with_half_intervals(first_share, halves["first_share"], "{:.1%}", index=layers,
                                               columns=first_share.columns), display=False)

# %% [markdown]
# Energy share of the first mode, $\lambda_1/\sum\lambda$, on all $N$ snapshots |
# at $N/2$ with its 95 % interval:
#
# ```{glue:} share_table
# ```
#
# ## Does EGA raise spectral energy?
#
# The paper reports that energy gating raises spectral energy across layers. We
# compare the total windowed variance $\sum_k \lambda_k$, EGA-1 against BASE,
# layer by layer, at a common scale: BASE's top scale. (At each model's own top
# scale a model with a coarser top scale would win by its wider lag window
# alone.) $\sum_k \lambda_k$ is a mean over snapshots, so the bootstrap over
# snapshots is valid for it ({glue:text}`n_boot` resamples, paired: the same
# resamples of the same windows for both models).

# %%
boot = {v: bootstrap_statistics(r) for v, r in analyses.items()}
glue("n_boot", len(analyses["base"].resamples), display=False)
common = analyses["base"].dominant_index[:, 0]
rows = np.arange(len(common))
energy = pd.DataFrame({study.label(v): r.eigenvalues[rows, common].sum(-1) for v, r in analyses.items()}, index=layers)
ega_energy = claims.ega_raises_energy(energy["BASE"], energy["EGA-1"], boot["base"]["energy_by_scale"][rows, :, common],
                                      boot["ega1"]["energy_by_scale"][rows, :, common])
everywhere = [(analyses["ega1"].eigenvalues[:, s].sum(-1) > analyses["base"].eigenvalues[:, s].sum(-1)).sum()
              for s in range(len(analyses["base"].scales))]
glue("ega_all_scales", f"{min(everywhere)}–{max(everywhere)} of {len(common)} layers", display=False)
glue("ega_raised", ega_energy.measurement, display=False)
glue("ega_verdict", str(ega_energy), display=False)
energy.style.format("{:.3e}")

# %% [markdown]
# ## What we found
#
# - Across layers the index varies by {glue:text}`sd_layers` (mean standard
#   deviation over layers), across models by {glue:text}`sd_models`
#   ({glue:text}`separates_measure`): does it separate layers?
#   **{glue:text}`separates`**.
# - Layer 1's first mode holds {glue:text}`l1_share` of its energy on average,
#   against {glue:text}`other_share` in the other layers;
#   {glue:text}`n_degenerate` layer(s) had too few eigenvalues to fit. Is layer 1
#   near-degenerate (a first mode with half the energy, or no fit)?
#   **{glue:text}`l1_verdict`**.
# - Windowed variance at BASE's top scale, {glue:text}`ega_raised` (paired
#   bootstrap over the same resampled windows): **{glue:text}`ega_verdict`**
#   with the paper's claim. Across all 20 scales, EGA-1 lies above BASE in
#   {glue:text}`ega_all_scales`, depending on the scale.
