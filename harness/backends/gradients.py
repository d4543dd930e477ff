"""Gradient norms for the GradNorm membership-inference attack (docs/metrics.md §7).

Per sequence (batch size 1, no padding): loss = mean NLL of the continuation tokens, one
backward pass, answer = mean over parameter tensors of ||grad||_p. For a PEFT model only
the adapter's own parameters count (what PEFT trains), whatever their requires_grad flags:
the answer must depend only on the weights, which are the cache key. The model is in
train() mode during the computation, under a fixed torch seed; its previous mode and
requires_grad flags are restored and its grads cleared afterwards. An empty continuation
answers NaN.
"""

from __future__ import annotations

from typing import Any


def grad_params(model: Any) -> list:
    """The tensors GradNorm differentiates: a PEFT model's adapter parameters, else all."""
    if hasattr(model, "peft_config"):
        active = getattr(model, "active_adapters", None) or [getattr(model, "active_adapter", "default")]
        active = [active] if isinstance(active, str) else list(active)
        own = [p for n, p in model.named_parameters() if any(f".{a}." in f".{n}." for a in active)]
        if own:
            return own
    return list(model.parameters())


def gradient_norms(model: Any, seqs: list[tuple[list[int], int]], ps: list[float], device: str) -> list[float]:
    """(token ids, continuation length) per request -> its gradient norm."""
    import torch

    chosen = grad_params(model)
    chosen_ids = {id(p) for p in chosen}
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    was_training = model.training
    device = torch.device(device)
    rng_devices = [device] if device.type == "cuda" else []
    out: list[float] = []
    try:
        for p in params:
            p.requires_grad_(id(p) in chosen_ids)
        model.zero_grad(set_to_none=True)
        model.train()
        for (seq, nc), p_norm in zip(seqs, ps):
            if nc == 0:
                out.append(float("nan"))
                continue
            ids = torch.tensor([seq], dtype=torch.long, device=device)
            with torch.enable_grad(), torch.random.fork_rng(devices=rng_devices):
                torch.manual_seed(0)
                logits = model(input_ids=ids, use_cache=False).logits[0, -nc - 1:-1].float()
                loss = torch.nn.functional.cross_entropy(logits, ids[0, -nc:])
                loss.backward()
            norms = [torch.linalg.vector_norm(p.grad.detach().float(), ord=p_norm)
                     for p in chosen if p.grad is not None]
            out.append(float(torch.stack(norms).mean()) if norms else float("nan"))
            model.zero_grad(set_to_none=True)
    finally:
        model.zero_grad(set_to_none=True)
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        model.train(was_training)
    return out
