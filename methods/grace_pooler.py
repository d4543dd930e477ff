"""GRACE's layer-wise pooler and its policy/reference heads (docs/methods.md §1.2-§1.3).

Only the pooler's header is known from the reference code [code, partial]: multi-head attention
over transformer layers with a temperature softmax, token pooling `mean | cls | max`, optional
residual fusion with plain mean pooling, a projection, 4 heads. The equations are [unverified];
this module implements the spec's [proposal] and exposes every choice as a parameter:

1. `H ∈ R^{L×T×d}` = `hidden_states[1:]` (the embedding output dropped).
2. Token-pool each layer over the span mask (the completion tokens by default): `u_ℓ ∈ R^d`.
   `mean` (masked mean), `max` (masked max), `cls` (the span's first token: a causal LM has
   no CLS token, and the first completion token is the closest analogue), `last` (the span's
   last token, the usual choice for causal LMs; an extra option).
3. Head k has layer logits `w_k ∈ R^L` and weights `α^k = softmax(w_k / τ)` (`layer_scores:
   static`), or input-dependent logits `a_k(u_ℓ) = v_kᵀ u_ℓ + b_k` (`layer_scores: input`).
4. `z^k = Σ_ℓ α^k_ℓ u_ℓ`, `z = W [z¹; …; z^K] + b`, plus `mean_ℓ u_ℓ` when `residual` is on.

Token pooling has no parameters, so `u` can be computed anywhere (with gradients through a LoRA
LLM, or cached from a frozen one, or from `HiddenStatesRequest(layers=1..L, pooling="mean")`
answers for AVQI) and the learned part is `forward(u)` alone.

Initialisation [proposal]: `w_k = 0` (uniform over layers, so a fresh pooler starts as a plain
layer mean), `W` = the head average `[I/K, …, I/K]` when `out_dim == d`, so a fresh pooler with
residual fusion is `2·mean_ℓ u_ℓ`: training starts from the mean-pooled representation instead
of a random projection, and distances keep the LLM's scale (the margins M_sep = 5, M_merge = 1
are absolute L2 distances).
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence

import torch
from torch import nn

TokenPooling = Literal["mean", "cls", "max", "last"]
LayerScores = Literal["static", "input"]
POOLER_FILE = "pooler.safetensors"
HEADS_FILE = "heads.safetensors"
CONFIG_FILE = "grace.json"


def pool_tokens(hidden: torch.Tensor | Sequence[torch.Tensor], span_mask: torch.Tensor,
                mode: TokenPooling = "mean") -> torch.Tensor:
    """Per-layer token pooling over the span: `[B, L, T, d]` (or L tensors `[B, T, d]`) → `[B, L, d]`.

    `span_mask` `[B, T]` is 1 on the tokens to pool (completion tokens, or every real token for
    span `full`); padding and prompt tokens are 0. Every row needs at least one span token.
    """
    h = torch.stack(list(hidden), dim=1) if not isinstance(hidden, torch.Tensor) else hidden
    m = span_mask.to(h.dtype)
    if bool((m.sum(-1) == 0).any()):
        raise ValueError("pool_tokens: a row has an empty span (no completion tokens)")
    if mode == "mean":
        w = m[:, None, :, None]
        return (h * w).sum(2) / w.sum(2)
    if mode == "max":
        return h.masked_fill(~span_mask.bool()[:, None, :, None], float("-inf")).amax(2)
    if mode in ("cls", "last"):
        t = torch.arange(m.shape[1], device=m.device)
        on = span_mask.bool()
        idx = torch.where(on, t, t.numel() if mode == "cls" else -1)
        pos = idx.amin(-1) if mode == "cls" else idx.amax(-1)  # first / last span token
        return h[torch.arange(h.shape[0], device=h.device), :, pos]
    raise ValueError(f"unknown token pooling {mode!r} (mean, cls, max, last)")


@dataclass(frozen=True)
class PoolerConfig:
    num_layers: int
    hidden_size: int
    num_heads: int = 4
    temperature: float = 1.0
    token_pooling: TokenPooling = "mean"
    residual: bool = True
    out_dim: int | None = None  # None: hidden_size (needed for residual fusion)
    layer_scores: LayerScores = "static"

    @property
    def output_size(self) -> int:
        return self.out_dim or self.hidden_size


class MultiHeadLayerwiseAttentionPooler(nn.Module):
    """K heads of softmax(w_k/τ) over layers, a projection, optional residual mean (see module doc)."""

    def __init__(self, config: PoolerConfig):
        super().__init__()
        c = self.config = config
        if c.residual and c.output_size != c.hidden_size:
            raise ValueError(f"residual fusion needs out_dim == hidden_size ({c.hidden_size}), got {c.out_dim}")
        if c.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {c.temperature}")
        self.layer_logits = nn.Parameter(torch.zeros(c.num_heads, c.num_layers))
        self.scorer = nn.Linear(c.hidden_size, c.num_heads) if c.layer_scores == "input" else None
        if self.scorer is not None:
            nn.init.zeros_(self.scorer.weight)
            nn.init.zeros_(self.scorer.bias)
        self.proj = nn.Linear(c.num_heads * c.hidden_size, c.output_size)
        if c.output_size == c.hidden_size:
            with torch.no_grad():
                self.proj.weight.copy_(torch.eye(c.hidden_size).repeat(1, c.num_heads) / c.num_heads)
                self.proj.bias.zero_()

    def layer_weights(self, u: torch.Tensor | None = None) -> torch.Tensor:
        """α: `[K, L]` (static), or `[B, K, L]` (input-dependent, needs `u` `[B, L, d]`)."""
        if self.scorer is None:
            return torch.softmax(self.layer_logits / self.config.temperature, dim=-1)
        if u is None:
            raise ValueError("input-dependent layer scores need the pooled layers u")
        scores = self.scorer(u).transpose(1, 2)  # [B, K, L]
        return torch.softmax(scores / self.config.temperature, dim=-1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """`u` `[B, L, d]` (token-pooled layers) → `z` `[B, out_dim]`."""
        alpha = self.layer_weights(u)
        z = torch.einsum("kl,bld->bkd", alpha, u) if alpha.dim() == 2 else torch.einsum("bkl,bld->bkd", alpha, u)
        out = self.proj(z.flatten(1))
        return out + u.mean(1) if self.config.residual else out


class GraceHeads(nn.Module):
    """`s(h) = head(dropout(h))`: a trainable policy head and a frozen reference head (`d → 1`).

    The reference head is a frozen copy of the policy head at initialisation ([proposal]; its
    initialisation is [unverified]). One dropout draw per embedding feeds both heads, so the
    reference margin is measured on the same input as the policy margin ([proposal]).
    """

    def __init__(self, dim: int, dropout: float = 0.15):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.policy = nn.Linear(dim, 1)
        self.ref = copy.deepcopy(self.policy)
        for p in self.ref.parameters():
            p.requires_grad_(False)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(s_π, s_ref), each a 1-D `[B]` score vector (never `[B, 1]` or `[1, B]`)."""
        x = self.dropout(h)
        return self.policy(x).reshape(-1), self.ref(x).reshape(-1)


def save_pooler(directory: str | Path, pooler: MultiHeadLayerwiseAttentionPooler, heads: GraceHeads,
                extra: dict | None = None) -> Path:
    """`pooler.safetensors`, `heads.safetensors` and `grace.json` (the pooler config + `extra`)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in pooler.state_dict().items()}, directory / POOLER_FILE)
    save_file({k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()}, directory / HEADS_FILE)
    meta = {"pooler": asdict(pooler.config), "head_dropout": heads.dropout.p, **(extra or {})}
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return directory


def load_pooler(directory: str | Path) -> tuple[MultiHeadLayerwiseAttentionPooler, GraceHeads, dict]:
    """The saved pooler and heads (eval mode) and the saved metadata; safetensors only (no pickle)."""
    from safetensors.torch import load_file

    from harness.errors import ModelLoadError

    directory = Path(directory)
    try:
        meta = json.loads((directory / CONFIG_FILE).read_text())
        pooler = MultiHeadLayerwiseAttentionPooler(PoolerConfig(**meta["pooler"]))
        pooler.load_state_dict(load_file(directory / POOLER_FILE))
        heads = GraceHeads(pooler.config.output_size, meta.get("head_dropout", 0.15))
        heads.load_state_dict(load_file(directory / HEADS_FILE))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise ModelLoadError(f"cannot load the GRACE pooler from {directory}: {type(e).__name__}: {e}") from e
    return pooler.eval(), heads.eval(), meta


def embed_states(pooler: MultiHeadLayerwiseAttentionPooler, states: Sequence[dict[int, list]],
                 layers: Sequence[int] | None = None) -> torch.Tensor:
    """GRACE embeddings `[N, out_dim]` from `HiddenStatesResponse.states` dicts (layer → pooled
    vector), e.g. the answers to `HiddenStatesRequest(layers=(1, …, L), pooling="mean")`: the
    layers are stacked in order into `u` `[N, L, d]` and fed to the trained pooler."""
    layers = list(layers) if layers is not None else list(range(1, pooler.config.num_layers + 1))
    if len(layers) != pooler.config.num_layers:
        raise ValueError(f"the pooler reads {pooler.config.num_layers} layers, got {len(layers)}")
    u = torch.tensor([[s[layer] for layer in layers] for s in states], dtype=pooler.proj.weight.dtype)
    with torch.no_grad():
        return pooler(u)
