"""A straightforward reference GPT in the published style, for speed comparisons only.

Eight separate head modules per layer, each with its own key/query/value
projections, an explicit T×T score matrix, masked_fill and softmax; the EGA gate
renormalises the softmax; CONV-L4 loops over its lags. Same sizes and the same
arithmetic as attnpod.models, written the way the published code writes it.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnpod.models import GPTConfig, MorletPositionalEncoding


class Head(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        hs = cfg.n_embd // cfg.n_head
        self.key = nn.Linear(cfg.n_embd, hs, bias=False)
        self.query = nn.Linear(cfg.n_embd, hs, bias=False)
        self.value = nn.Linear(cfg.n_embd, hs, bias=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.variant = cfg.variant
        if cfg.variant in ("ega1", "ega_morlet"):
            self.proj = nn.Linear(cfg.n_embd, 1)
            self.alpha = nn.Parameter(torch.ones(1) * 2.0)
            self.tau = nn.Parameter(torch.zeros(1))
        if cfg.variant == "conv_l4":
            self.lag_weights = nn.Parameter(torch.randn(9) * 0.02)
        self.register_buffer("tril", torch.tril(torch.ones(cfg.block_size, cfg.block_size)))

    def forward(self, x):
        B, T, _ = x.shape
        k, q, v = self.key(x), self.query(x), self.value(x)
        scale = math.sqrt(k.shape[-1])
        if self.variant == "conv_l4":
            sc = torch.zeros(B, T, T, dtype=x.dtype, device=x.device)
            weights = F.softmax(self.lag_weights, dim=0)
            for idx, lag in enumerate(range(-4, 5)):
                w = weights[idx].item()
                if abs(w) < 1e-4:
                    continue
                if lag == 0:
                    sc.add_(q @ k.transpose(-2, -1) / scale * w)
                elif lag > 0:
                    sc[:, : T - lag, lag:].add_(q[:, : T - lag] @ k[:, lag:].transpose(-2, -1) / scale * w)
                else:
                    a = -lag
                    sc[:, a:, : T - a].add_(q[:, a:] @ k[:, : T - a].transpose(-2, -1) / scale * w)
        else:
            sc = q @ k.transpose(-2, -1) / scale
        sc = sc.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        att = self.drop(F.softmax(sc, dim=-1))
        if self.variant in ("ega1", "ega_morlet"):
            e = self.proj(x).transpose(-2, -1)
            e = (e - e.mean(-1, keepdim=True)) / e.std(-1, keepdim=True, correction=0).clamp(min=1e-8)
            att = att * torch.sigmoid(self.alpha * (e - self.tau))
            att = att / att.sum(-1, keepdim=True).clamp(min=1e-8)
        return att @ v


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.heads = nn.ModuleList(Head(cfg) for _ in range(cfg.n_head))
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.ff = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(),
                                nn.Linear(4 * cfg.n_embd, cfg.n_embd), nn.Dropout(cfg.dropout))
        self.ln1, self.ln2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)

    def forward(self, x):
        xn = self.ln1(x)
        x = x + self.drop(self.proj(torch.cat([h(xn) for h in self.heads], dim=-1)))
        return x + self.ff(self.ln2(x))


class ReferenceGPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        if cfg.variant == "ega_morlet":
            self.pe = MorletPositionalEncoding(cfg.n_embd, cfg.block_size)
        else:
            self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.Sequential(*[Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.tok_emb.weight = self.head.weight

    def forward(self, idx, targets=None):
        T = idx.shape[1]
        pos = self.pe(T) if self.cfg.variant == "ega_morlet" else self.pos_emb(torch.arange(T, device=idx.device))
        x = self.ln_f(self.blocks(self.drop(self.tok_emb(idx) + pos)))
        logits = self.head(x)
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        return logits, loss
