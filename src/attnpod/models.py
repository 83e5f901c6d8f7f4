"""The paper's four GPT variants (SPEC section 2) as one model.

BASE, EGA-1, EGA-MORLET and CONV-L4 share everything but two pieces:

* the attention logits: plain ``s_ij = q_i·k_j/√hs``; EGA adds a per-key bias
  ``log g_j``; CONV-L4 multiplies ``s_ij`` by the published lag-block sum ``m_ij``;
* the position code: a learned table, or (EGA-MORLET) learned Morlet atoms.

Each attention layer has two paths: a fused one for training
(``scaled_dot_product_attention``) and an explicit one that also returns the
probabilities ``A[B, H, T, T]`` for analysis. Both give the same output.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import MODELS as VARIANTS  # the four variants, named once
from .config import ModelSize
from .errors import ParameterError

CONV_MAX_LAG = 4


@dataclass(frozen=True)
class VariantSpec:
    """What makes a variant: its position code ("learned" or "morlet") and the piece its attention adds
    to the scores ("none", "energy_gate": EGA's key gate, "lag_mix": CONV-L4's lag mixing)."""

    position: str
    score: str


VARIANT_SPECS = {
    "base": VariantSpec("learned", "none"),
    "ega1": VariantSpec("learned", "energy_gate"),
    "ega_morlet": VariantSpec("morlet", "energy_gate"),
    "conv_l4": VariantSpec("learned", "lag_mix"),
}


@dataclass(frozen=True, kw_only=True)
class GPTConfig(ModelSize):
    """One model: the sizes (:class:`attnpod.config.ModelSize`, the paper's by default) and the variant."""

    vocab_size: int = 65
    variant: str = "base"
    causal_gate: bool = False  # EGA only: prefix statistics instead of the whole window (errata 4)

    def __post_init__(self):
        def fail(what: str, value) -> None:
            raise ParameterError(f"model config: {what}, got {value!r}")

        self.check_size(fail)
        if self.variant not in VARIANTS:
            raise ParameterError(f"unknown variant {self.variant!r}; choose one of {VARIANTS}")
        if self.causal_gate and not self.gated:
            raise ParameterError(f"causal_gate applies to EGA variants only, not {self.variant!r}")

    @property
    def spec(self) -> VariantSpec:
        """The variant's position code and score piece, decided here once."""
        return VARIANT_SPECS[self.variant]

    @property
    def gated(self) -> bool:
        """EGA: a key gate on the scores."""
        return self.spec.score == "energy_gate"

    @property
    def decodable(self) -> bool:
        """Whether a prefix of the window has a well-defined attention, so the model decodes token by token:
        not CONV-L4 (its lag multiplier depends on the window length), nor the published EGA gate (it
        normalises over future tokens); the causal gate does."""
        return self.spec.score != "lag_mix" and (not self.gated or self.causal_gate)


# ----------------------------------------------------------------------------- attention pieces

class EnergyGate(nn.Module):
    """EGA's key gate, returned as the additive bias ``log g_j``, shape (B, H, T).

    e_j = w·x_j + b per head; ẽ = z-normalised e; g_j = σ(α(ẽ_j − τ)).

    Published: mean and population std over the whole window (future included),
    std clamped at 1e-8 (SPEC section 2).

    Causal (errata 4): ẽ_j = (e_j − μ_j)/σ̂_j with the prefix mean μ_j of e_0…e_j and
    a prefix variance shrunk towards a prior by one pseudo-observation,

        σ̂_j² = ((j+1)·s_j² + σ_0²) / (j + 2),   σ_0 = ‖w_h‖,

    where s_j² is the population variance of the prefix and σ_0² the variance of
    w·x for isotropic unit-variance LN outputs x: the gate's own energy scale.
    Without the prior, z at j = 1 is sign(e_1 − e_0), a discontinuous function of
    the input, and rounding alone changes the model. The sums are taken around e_0
    (a causal shift) in float64, so nothing cancels catastrophically.
    """

    PRIOR_COUNT = 1.0  # pseudo-observations at the prior variance
    CAUSAL_FORM = "prefix-shrunk-v2"  # in the checkpoint key: v1 (unshrunk E[e²] − E[e]²) models are not reused

    def __init__(self, n_embd: int, n_head: int, causal: bool):
        super().__init__()
        self.energy = nn.Linear(n_embd, n_head)
        self.alpha = nn.Parameter(torch.full((n_head,), 2.0))
        self.tau = nn.Parameter(torch.zeros(n_head))
        self.causal = causal

    def forward(self, x):
        """The log-gate log σ(α (z − τ)) per head and position from the hidden states ``x``: (B, H, T)."""
        e = self.energy(x).transpose(1, 2)  # (B, H, T)
        z = self._causal_z(e) if self.causal else self._window_z(e)
        return F.logsigmoid(self.alpha[:, None] * (z - self.tau[:, None]))  # (B, H, T)

    @staticmethod
    def _window_z(e):
        mean = e.mean(-1, keepdim=True)
        var = e.var(-1, keepdim=True, correction=0)
        return (e - mean) / var.clamp_min(1e-16).sqrt()  # std clamped at 1e-8; finite gradient at var = 0

    def _causal_z(self, e):
        e64 = e.double()
        d = e64 - e64[..., :1]  # shifted around the first energy: causal, no cancellation
        count = torch.arange(1, e.shape[-1] + 1, device=e.device, dtype=d.dtype)
        mean = d.cumsum(-1) / count
        var = ((d * d).cumsum(-1) / count - mean * mean).clamp_min(0)
        prior = self.energy.weight.double().pow(2).sum(-1)[:, None]  # σ_0² = ‖w_h‖², (H, 1)
        var = (count * var + self.PRIOR_COUNT * prior) / (count + self.PRIOR_COUNT)
        return ((d - mean) / var.clamp_min(1e-16).sqrt()).to(e.dtype)


def conv_lag_multiplier(weights: list[float], T: int, device=None) -> torch.Tensor:
    """CONV-L4's published score arithmetic as a multiplier ``m[i, j]`` (T, T).

    Lag ℓ ∈ −4…4 adds w_ℓ·s_ij on a block (ℓ > 0: i < T−ℓ, j ≥ ℓ; ℓ < 0: i ≥ |ℓ|,
    j < T−|ℓ|; ℓ = 0: all), skipping w_ℓ < 1e-4; so the logits are m_ij·s_ij.
    Away from the edges m = Σ w_ℓ = 1: CONV-L4 is BASE there (errata 3).
    """
    m = torch.zeros(T, T, device=device)
    for lag, w in zip(range(-CONV_MAX_LAG, CONV_MAX_LAG + 1), weights):
        if abs(w) < 1e-4 or abs(lag) >= T:
            continue
        if lag >= 0:
            m[: T - lag, lag:] += w
        else:
            m[-lag:, : T + lag] += w
    return m


class CausalSelfAttention(nn.Module):
    """Causal multi-head attention of one layer, with the variant's score piece: none (BASE), EGA's key
    gate, or CONV-L4's lag mixing."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.dropout, self.lag_mix = cfg.n_head, cfg.dropout, cfg.spec.score == "lag_mix"
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.attn_drop = nn.Dropout(cfg.dropout)
        self.resid_drop = nn.Dropout(cfg.dropout)
        self.gate = EnergyGate(cfg.n_embd, cfg.n_head, cfg.causal_gate) if cfg.gated else None
        if self.lag_mix:
            # Published: softmax(λ) is read through .item(), so λ never receives a gradient.
            self.lag_logits = nn.Parameter(torch.zeros(2 * CONV_MAX_LAG + 1))

    def lag_weights(self) -> list[float]:
        """CONV-L4's weights over lags −4…4, softmax(λ)."""
        return F.softmax(self.lag_logits.detach().float(), dim=0).tolist()

    def forward(self, x, return_probs: bool = False, head_mask=None, select=None):
        """The block's output and, with ``return_probs``, its attention probabilities (see :class:`CausalSelfAttention`)."""
        """``head_mask`` ξ[h] or ξ[B, h] scales each head's output before the output projection.

        ``select(logits[B, H, T, T])`` (explicit path only) returns which keys each query may
        see, a boolean mask of that shape: a KV cache that holds only those keys.
        """
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)  # 3×(B, H, T, hs)
        bias = self.gate(x)[:, :, None, :] if self.gate is not None else None  # (B, H, 1, T)
        if return_probs or select is not None:
            y, probs = self._explicit(q, k, v, bias, select=select)
        else:
            y, probs = self._fused(q, k, v, bias), None
        if head_mask is not None:  # before W_O: zeroing after the projection would mix heads
            y = y * head_mask.to(y.dtype).reshape(-1, self.n_head, 1, 1)  # (B|1, H, 1, 1)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_drop(self.proj(y)), probs

    def _scores(self, q, k, rows=slice(None)):
        """Masked logits for the query rows ``rows``: (B, H, R, T)."""
        T = k.shape[-2]
        s = (q[:, :, rows] * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)  # scale q: T/hs times less work
        if self.lag_mix:
            s = s * conv_lag_multiplier(self.lag_weights(), T, s.device)[rows].to(s.dtype)
        causal = torch.ones(T, T, dtype=torch.bool, device=s.device).tril()[rows]
        return s.masked_fill(~causal, float("-inf"))

    def _explicit(self, q, k, v, bias, rows=slice(None), select=None):
        s = self._scores(q, k, rows)
        if bias is not None:
            s = s + bias
        if select is not None:
            s = s.masked_fill(~select(s), float("-inf"))
        probs = F.softmax(s.float(), dim=-1).to(v.dtype)  # (B, H, R, T)
        return self.attn_drop(probs) @ v, probs

    def _fused(self, q, k, v, bias):
        p = self.dropout if self.training else 0.0
        if self.lag_mix:
            return self._fused_conv(q, k, v, p)
        if bias is None:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        return self._fused_key_bias(q, k, v, bias, p)

    @staticmethod
    def _fused_key_bias(q, k, v, bias, p):
        """Causal attention with a per-key bias b_j (EGA's log g_j) on the fast causal kernel.

        The bias is one more coordinate of the scores: q'_i = [q_i, 1], k'_j = [k_j, b_j·√hs],
        so q'_i·k'_j/√hs = q_i·k_j/√hs + b_j exactly, and no (B, H, T, T) mask is formed.
        v gets a zero coordinate so that q, k and v share one head size (some kernels ask it).
        """
        hs = q.shape[-1]
        q2 = torch.cat([q, torch.ones_like(q[..., :1])], dim=-1)
        k2 = torch.cat([k, (bias.transpose(-1, -2) * math.sqrt(hs)).to(k.dtype)], dim=-1)  # (B, H, T, hs + 1)
        v2 = torch.cat([v, torch.zeros_like(v[..., :1])], dim=-1)
        y = F.scaled_dot_product_attention(q2, k2, v2, dropout_p=p, is_causal=True, scale=1.0 / math.sqrt(hs))
        return y[..., :hs]

    def _fused_conv(self, q, k, v, p):
        """CONV-L4 fused: on causal entries of rows 4…T−5, m_ij depends on j only,
        so scaling k_j by it is exact; the 8 edge rows are recomputed explicitly."""
        T, L = q.shape[-2], CONV_MAX_LAG
        if T <= 2 * L:
            return self._explicit(q, k, v, None)[0]
        m = conv_lag_multiplier(self.lag_weights(), T, q.device)
        y = F.scaled_dot_product_attention(q, k * m[T // 2, :, None].to(k.dtype), v, dropout_p=p, is_causal=True)
        edges = torch.cat([torch.arange(L), torch.arange(T - L, T)]).to(q.device)
        exact = self._explicit(q, k, v, None, rows=edges)[0]  # (B, H, 2L, hs)
        return torch.cat([exact[:, :, :L], y[:, :, L:T - L], exact[:, :, L:]], dim=2)


class MLP(nn.Module):
    """The feed-forward block: n_embd → 4·n_embd → n_embd, GELU."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.out = nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        """The feed-forward block: dropout(W₂ GELU(W₁ x))."""
        return self.drop(self.out(F.gelu(self.fc(x))))


class Block(nn.Module):
    """A pre-LayerNorm transformer block: x + attn(ln1(x)), then + mlp(ln2(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x, return_probs: bool = False, head_mask=None, select=None):
        a, probs = self.attn(self.ln1(x), return_probs, head_mask, select)
        x = x + a
        return x + self.mlp(self.ln2(x)), probs


class MorletPositionalEncoding(nn.Module):
    """EGA-MORLET's learned Morlet atoms: PE[p, 2k] = cos(ω_k p)·e^{−p²/2σ_k²}, PE[p, 2k+1] = sin(…)."""

    def __init__(self, n_embd: int, block_size: int):
        super().__init__()
        omega = torch.exp(torch.linspace(math.log(1.0), math.log(0.99 * math.pi), n_embd // 2))
        self.log_omega = nn.Parameter(omega.log())
        self.log_sigma = nn.Parameter((5.0 / omega).log())
        self.register_buffer("pos", torch.arange(block_size, dtype=torch.float32), persistent=False)

    def forward(self, T: int):
        """The learned Morlet positional encodings of positions 0…T−1: (T, n_embd)."""
        omega = self.log_omega.exp().clamp(max=0.95 * math.pi)
        sigma = self.log_sigma.exp().clamp(min=1e-3)
        omega = torch.where(omega * sigma < 5.0, 5.0 / sigma, omega)
        p = self.pos[:T, None]  # (T, 1)
        envelope = torch.exp(-p**2 / (2 * sigma**2 + 1e-8))
        phase = p * omega
        return torch.stack([phase.cos() * envelope, phase.sin() * envelope], dim=-1).flatten(1)  # (T, C)


# ----------------------------------------------------------------------------- the model

class GPT(nn.Module):
    """The paper's character-level GPT (SPEC section 2), one class for the four variants.

    Token embeddings tied to the output matrix; learned positions, or EGA-MORLET's
    Morlet atoms; ``n_layer`` pre-LN blocks whose attention carries the variant's piece
    (:class:`CausalSelfAttention`); GPT-2 style initialisation N(0, 0.02).
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        if cfg.spec.position == "morlet":
            self.pos_code = MorletPositionalEncoding(cfg.n_embd, cfg.block_size)
        else:
            self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.tok_emb.weight = self.lm_head.weight  # tied
        self.apply(self._init)
        for block in self.blocks:
            if block.attn.lag_mix:
                nn.init.normal_(block.attn.lag_logits, 0.0, 0.02)

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def n_params(self) -> int:
        """The number of parameters (the tied matrix counted once)."""
        return sum(p.numel() for p in self.parameters())

    def _embed(self, idx):
        T = idx.shape[1]
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        return self.drop(self.tok_emb(idx) + self._positions(T))  # (B, T, C)

    def _positions(self, T: int):
        return self.pos_code(T) if self.config.spec.position == "morlet" else self.pos_emb.weight[:T]  # (T, C)

    @torch.no_grad()
    def decode_step(self, token: int, position: int, attend, state: list) -> torch.Tensor:
        """Logits (V,) of one ``token`` at ``position``, for a decoder that keeps its own KV cache.

        Per layer l, ``attend(l, q, k, v, bias)`` gets this token's query, key and value
        (H, hs each) and its key bias (H,: EGA's log-gate, zeros otherwise) and returns the
        heads' outputs (H, hs): it holds the cache, so it decides which keys remain.
        ``state`` (start with ``[]``) carries the prefix the causal gate normalises over.
        Only models with :attr:`GPTConfig.decodable` decode this way.
        """
        cfg = self.config
        if not cfg.decodable:
            raise ParameterError(f"{cfg.variant} cannot be decoded token by token")
        H, hs = cfg.n_head, cfg.n_embd // cfg.n_head
        pos = self.pos_code(position + 1)[-1] if cfg.spec.position == "morlet" else self.pos_emb.weight[position]
        x = self.tok_emb.weight[token] + pos  # (C,)
        while len(state) < cfg.n_layer:
            state.append([])
        for l, block in enumerate(self.blocks):
            attn = block.attn
            h = block.ln1(x)
            q, k, v = attn.qkv(h).view(3, H, hs)
            bias = torch.zeros(H)
            if attn.gate is not None:  # the causal gate of this key reads the prefix 0…position only
                state[l].append(h)
                bias = attn.gate(torch.stack(state[l])[None])[0, :, -1]
            x = x + attn.proj(attend(l, q, k, v, bias).reshape(-1))
            x = x + block.mlp(block.ln2(x))
        return self.lm_head(self.ln_f(x))

    def forward(self, idx, targets=None, head_mask=None):
        """Logits (B, T, V) and, given targets, the mean cross-entropy.

        ``head_mask`` ξ[l, h] (or per example ξ[B, l, h]) multiplies head h of layer l
        before the output projection: 0 removes the head, 1 keeps it.
        """
        x = self._embed(idx)
        for l, block in enumerate(self.blocks):
            x, _ = block(x, head_mask=None if head_mask is None else head_mask[..., l, :])
        logits = self.lm_head(self.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        return logits, loss

    def forward_explicit(self, idx, head_mask=None, select=None, maps: bool = True):
        """Logits and attention probabilities ``A[B, n_layer, H, T, T]`` via the explicit path
        (``maps=False``: logits and None, without the copy that stacks the layers' maps).

        ``select(l, logits)`` restricts the keys of layer l (see :meth:`CausalSelfAttention.forward`).
        """
        x = self._embed(idx)
        probs = []
        for l, block in enumerate(self.blocks):
            x, p = block(x, return_probs=True, head_mask=None if head_mask is None else head_mask[..., l, :],
                         select=None if select is None else partial(select, l))
            probs += [p] if maps else []
        return self.lm_head(self.ln_f(x)), torch.stack(probs, dim=1) if maps else None

    @torch.no_grad()
    def attention_maps(self, idx) -> torch.Tensor:
        """Attention probabilities ``A[b, l, h, i, j]`` in eval mode (no dropout).

        Rows sum to 1; zero above the diagonal.
        """
        was_training = self.training
        self.eval()
        try:
            return self.forward_explicit(idx)[1]
        finally:
            self.train(was_training)


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of the model's weights (names, dtypes, shapes and values): what caches of its outputs are keyed by."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
