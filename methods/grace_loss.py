"""The GRACE loss terms (docs/methods.md §1.4), each its own function, and their weighted total.

Kept apart from the method so each term can be checked by hand on small tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import torch
import torch.nn.functional as F


def preference_loss(s_pi_safe: torch.Tensor, s_pi_unsafe: torch.Tensor, s_ref_safe: torch.Tensor,
                    s_ref_unsafe: torch.Tensor, beta: float) -> torch.Tensor:
    """`−mean log σ(s_π(h_s) − s_π(h_u) − β (s_ref(h_s) − s_ref(h_u)))` (β scales the reference margin)."""
    m = (s_pi_safe - s_pi_unsafe) - beta * (s_ref_safe - s_ref_unsafe)
    return -F.logsigmoid(m).mean()


def separation_loss(h_s: torch.Tensor, h_u: torch.Tensor, h_j: torch.Tensor, margin: float) -> torch.Tensor:
    """`½ [mean relu(M − ‖h_s − h_u‖₂) + mean relu(M − ‖h_s − h_j‖₂)]` on paired rows."""
    d_su = torch.linalg.vector_norm(h_s - h_u, dim=-1)
    d_sj = torch.linalg.vector_norm(h_s - h_j, dim=-1)
    return 0.5 * (F.relu(margin - d_su).mean() + F.relu(margin - d_sj).mean())


def merge_loss(h_u: torch.Tensor, h_j: torch.Tensor, margin: float) -> torch.Tensor:
    """`mean relu(‖h_u − h_j‖₂ − M)`: pulls unsafe and jailbreak completions together."""
    return F.relu(torch.linalg.vector_norm(h_u - h_j, dim=-1) - margin).mean()


def smoothing_loss(s_pi_unsafe: torch.Tensor, s_pi_jailbreak: torch.Tensor) -> torch.Tensor:
    """`kl_div(log q, p, reduction="batchmean")`, p/q the softmax over the batch of the unsafe /
    jailbreak policy scores. Scores are reshaped to `[B]` first, so batchmean divides by B."""
    p = torch.softmax(s_pi_unsafe.reshape(-1), dim=0)
    log_q = torch.log_softmax(s_pi_jailbreak.reshape(-1), dim=0)
    return F.kl_div(log_q, p, reduction="batchmean")


@dataclass
class GraceLoss:
    """The terms of one batch; `total` is what is minimised, `probe` is only logged [code]."""

    pref: torch.Tensor
    sep: torch.Tensor
    merge: torch.Tensor
    smooth: torch.Tensor
    total: torch.Tensor
    probe: torch.Tensor

    def floats(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name).detach()) for f in fields(self)}


def grace_loss(h_s: torch.Tensor, h_u: torch.Tensor, h_j: torch.Tensor, heads: Callable[[torch.Tensor], tuple],
               beta: float = 0.8, margin_sep: float = 5.0, margin_merge: float = 1.0, lambda_sep: float = 1.0,
               lambda_merge: float = 1.0, lambda_smooth: float = 0.1) -> GraceLoss:
    """All GRACE terms from pooled `[B, d]` embeddings; `heads(h) -> (s_π [B], s_ref [B])`."""
    pi_s, ref_s = heads(h_s)
    pi_u, ref_u = heads(h_u)
    pi_j, _ = heads(h_j)
    pref = preference_loss(pi_s, pi_u, ref_s, ref_u, beta)
    sep = separation_loss(h_s, h_u, h_j, margin_sep)
    merge = merge_loss(h_u, h_j, margin_merge)
    smooth = smoothing_loss(pi_u, pi_j)
    total = pref + lambda_sep * sep + lambda_merge * merge + lambda_smooth * smooth
    probe = F.smooth_l1_loss(pi_s, ref_s) + F.smooth_l1_loss(pi_u, ref_u)
    return GraceLoss(pref, sep, merge, smooth, total, probe.detach())
