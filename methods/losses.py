"""Loss helpers shared by the loss-based unlearning methods (methods.md §5.0, §6.1).

Batches are dicts with `input_ids`, `attention_mask` and `labels` (−100 on prompt and
padding tokens), right-padded. Two kinds of sequence score are kept apart on purpose:
`answer_nll_mean` is HF's token-mean cross-entropy over the whole batch, and
`sequence_logprob_sum` is the *summed* answer log-probability per sequence (NPO, DPO).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def answer_nll_mean(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """HF mean token cross-entropy over answer tokens (labels ≠ −100): `model(**batch).loss`."""
    return model(**batch).loss


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
