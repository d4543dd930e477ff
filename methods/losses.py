"""Loss helpers shared by the loss-based unlearning methods (docs/methods.md §5.0, §6.1).

Batches are dicts with `input_ids`, `attention_mask` and `labels` (−100 on prompt and
padding tokens), right-padded. Two kinds of sequence score are kept apart on purpose:
`answer_nll_mean` is HF's token-mean cross-entropy over the whole batch, and
`sequence_logprob_sum` is the *summed* answer log-probability per sequence (NPO, DPO).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from harness.api.training import IGNORE_INDEX, answer_nll_mean

def sequence_logprob_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Σ_t log π(y_t | x, y_<t) over answer tokens, per sequence: shape (B,).

    Logits at position i predict the label at i + 1 (the usual one-position shift); positions
    whose label is −100 contribute nothing. Computed in float32. This is minus open-unlearning's
    `compute_batch_nll`.
    """
    logits = logits[:, :-1, :].float()
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    logp = torch.log_softmax(logits, dim=-1)
    token_logp = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (token_logp * mask).sum(dim=-1)


def npo_loss(logp_theta: torch.Tensor, logp_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO forget loss −(2/β)·mean_batch log σ(−β·[log π_θ(y|x) − log π_ref(y|x)]) (§5.3).

    Both inputs are summed sequence log-probs of shape (B,); `logp_ref` carries no gradient.
    """
    return -(2.0 / beta) * F.logsigmoid(-beta * (logp_theta - logp_ref)).mean()


def kl_to_reference(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """KL(π_ref ‖ π_θ) summed over the vocabulary, divided by B·T (§5.0).

    Every position counts, prompt and padding included, as in open-unlearning's
    `compute_kl_divergence`: both log-softmaxes are flattened to (B·T, V) and passed to
    `kl_div(log π_θ, log π_ref, log_target=True, reduction="batchmean")`.
    """
    vocab = logits.shape[-1]
    log_p = torch.log_softmax(logits.float(), dim=-1).reshape(-1, vocab)
    log_ref = torch.log_softmax(ref_logits.float(), dim=-1).reshape(-1, vocab)
    return F.kl_div(log_p, log_ref, reduction="batchmean", log_target=True)


def retain_loss(
    model: Any, retain: dict[str, torch.Tensor], ref_model: Any, kind: Literal["NLL", "KL"] = "NLL"
) -> torch.Tensor:
    """L_retain (§5.0): `NLL` is the HF mean answer cross-entropy; `KL` is KL(π_ref ‖ π_θ) on retain inputs."""
    if kind == "NLL":
        return answer_nll_mean(model, retain)
    if kind == "KL":
        ref_logits = ref_model(**retain).logits
        return kl_to_reference(model(**retain).logits, ref_logits)
    raise ValueError(f"unknown retain_loss_type {kind!r} (NLL or KL)")


# --- per-sequence and per-token helpers for the §5.4–5.9 baselines --------------------------


def answer_token_count(labels: torch.Tensor) -> torch.Tensor:
    """|y| per sequence: the answer tokens (labels ≠ −100) after the one-position shift, shape (B,)."""
    return (labels[:, 1:] != IGNORE_INDEX).sum(dim=-1)


def sequence_logprob_mean(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Length-normalised log π(y|x)/|y| per sequence, shape (B,) (SimNPO; §6.1).

    The summed counterpart is `sequence_logprob_sum`; a sequence without answer tokens
    counts as length 1 (its sum is 0).
    """
    return sequence_logprob_sum(logits, labels) / answer_token_count(labels).clamp(min=1)


def simnpo_loss(nll_mean: torch.Tensor, beta: float, delta: float = 0.0) -> torch.Tensor:
    """SimNPO forget loss −(2/β)·mean_batch log σ(β·(NLL_sum/|y| − δ)) (§5.4); input shape (B,)."""
    return -(2.0 / beta) * F.logsigmoid(beta * (nll_mean - delta)).mean()


def dpo_loss(
    logp_win: torch.Tensor,
    logp_win_ref: torch.Tensor,
    logp_lose: torch.Tensor,
    logp_lose_ref: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """open-unlearning's DPO loss −(2/β)·mean_batch log σ(β·[(θ − ref)(y_w) − (θ − ref)(y_l)]) (§5.5).

    Inputs are *summed* sequence log-probs of shape (B,). Note the 2/β factor, which TRL's DPO lacks.
    """
    margin = (logp_win - logp_win_ref) - (logp_lose - logp_lose_ref)
    return -(2.0 / beta) * F.logsigmoid(beta * margin).mean()


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shifted per-token cross-entropy CE_t and the answer mask, both of shape (B, T−1).

    `ce[b, t] = −log π(labels[b, t+1] | ·)` from `logits[b, t]`, in float32; 0 where the label is −100
    (`mask` False there).
    """
    logits = logits[:, :-1, :].float()
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    ce = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none")
    return ce, mask


def weighted_ascent_loss(ce: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """−mean over every answer token of the batch of `weights · CE_t` (WGA, SatImp).

    As open-unlearning's `compute_wga_loss`/`compute_satimp_loss`, the mean runs over the
    flattened (B·T) answer tokens, not per sequence.
    """
    return -(weights * ce)[mask].mean()


def wga_loss(logits: torch.Tensor, labels: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """WGA forget loss −mean_t[(p_t)^β·CE_t], p_t = exp(−CE_t), weights detached (§5.8)."""
    ce, mask = token_cross_entropy(logits, labels)
    weights = torch.exp(-ce).detach() ** beta
    return weighted_ascent_loss(ce, mask, weights)


def satimp_loss(
    logits: torch.Tensor, labels: torch.Tensor, beta1: float = 5.0, beta2: float = 1.0, detach: bool = True
) -> torch.Tensor:
    """SatImp forget loss −mean_t[p_t^β1·(1 − p_t)^β2·CE_t], p_t = exp(−CE_t) (§5.9).

    `detach` stops the gradient through the weights (as WGA; whether the reference detaches is unverified).
    """
    ce, mask = token_cross_entropy(logits, labels)
    p = torch.exp(-ce)
    weights = p**beta1 * (1.0 - p) ** beta2
    if detach:
        weights = weights.detach()
    return weighted_ascent_loss(ce, mask, weights)


def undial_loss(
    logits: torch.Tensor,
    ref_logits: torch.Tensor,
    labels: torch.Tensor,
    beta: float = 10.0,
    reference_compat: bool = False,
) -> torch.Tensor:
    """UNDIAL: CE(softmax(z_ref − β·onehot(y_{t+1})), π_θ) averaged over positions (§5.7).

    Positions are the shifted ones (logits at t predict labels[t+1]). By default only answer
    positions (label ≠ −100) are averaged ([proposal]). `reference_compat=True` reproduces
    open-unlearning's `compute_undial_loss`: no mask, every position (prompt and padding too)
    is averaged, and a −100 label indexes vocabulary id V − 100 (Python's negative-index wrap).
    """
    student = logits[:, :-1, :].float()
    teacher = ref_logits[:, :-1, :].detach().float()
    targets = labels[:, 1:]
    vocab = student.shape[-1]
    mask = targets != IGNORE_INDEX
    if reference_compat:
        if vocab < -IGNORE_INDEX:
            raise ValueError(f"reference_compat needs a vocabulary of at least {-IGNORE_INDEX} tokens (got {vocab})")
        index = torch.where(mask, targets, targets + vocab)
    else:
        index = targets.clamp(min=0)
    onehot = F.one_hot(index, vocab).to(teacher.dtype)  # masked positions are dropped below
    soft = torch.softmax(teacher - beta * onehot, dim=-1)
    per_pos = -(soft * torch.log_softmax(student, dim=-1)).sum(dim=-1)
    if reference_compat:
        return per_pos.mean()
    return per_pos[mask].mean()


def masked_activation_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RMU's activation loss (§5.6): per token the mean over d of (a − b)², summed over the
    masked tokens and divided by their count per sequence, then the mean over the batch.

    `a`, `b`: (B, T, d), `b` broadcastable; `mask`: (B, T) bool. open-unlearning's
    `compute_activation_loss`, except that a row with no masked token counts as one token (0, not NaN).
    """
    sq = (a.float() - b.float()).pow(2).mean(dim=-1)
    m = mask.to(sq.dtype)
    return ((sq * m).sum(dim=-1) / m.sum(dim=-1).clamp(min=1)).mean()
