"""Editing one instance into an in-process model, and undoing it bit for bit.

The runtime half of a per-instance defence (harness/api/edit.py): encode the defence's rows
exactly as the HF backend encodes a scored continuation, optimise one MLP projection of one
decoder layer on the defence's loss (ROME FT's norm-constrained update, or a LoRA merged
afterwards), and restore the saved weights when the instance is done. `edit_intervention`
wraps it as an `Intervention` whose identity is the instance's recipe, so the response cache
keeps each edited model's answers apart and a rerun never edits again.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from harness.api.edit import EditBatch, EditInstance, InstanceDefence
from harness.api.intervention import Intervention
from harness.api.requests import LoglikelihoodRequest
from harness.errors import ConfigError
from harness.representations.layers import decoder_layers
from harness.representations.logit_lens import lens_logits


def edited_module(model: Any, layer: int, module: str) -> Any:
    """`layers[layer].mlp.<module>`: the one linear map a defence edits."""
    layers = decoder_layers(model)[1]
    if not -len(layers) <= layer < len(layers):
        raise ConfigError(f"defence layer {layer} out of range: the model has decoder layers 0..{len(layers) - 1}")
    mlp = getattr(layers[layer], "mlp", None)
    target = getattr(mlp, module, None)
    if target is None or not hasattr(target, "weight"):
        names = [n for n, m in (mlp.named_children() if mlp is not None else []) if hasattr(m, "weight")]
        raise ConfigError(f"defence module {module!r} is not a linear map of layer {layer}'s MLP "
                          f"(it has: {', '.join(names) or 'none'})")
    return target


@contextmanager
def restored(tensors: list[Any]) -> Iterator[None]:
    """Save the tensors, and copy them back afterwards (also on errors): bit for bit."""
    import torch

    saved = [t.detach().clone() for t in tensors]
    try:
        yield
    finally:
        with torch.no_grad():
            for t, s in zip(tensors, saved):
                t.copy_(s)


def edit_batch(backend: Any, rows: list[tuple[str, str]], instance: EditInstance, prompt: Any,
               lens_layers: list[int]) -> tuple[dict[str, Any], Any]:
    """The model inputs of the defence's rows and a function from model outputs to an `EditBatch`.

    Each row is encoded as the backend scores `prompt(question)` + `target` (chat template,
    images, answer tokens), so the edit moves exactly the probabilities the metrics read."""
    import torch

    answer, *encoded = backend._encode_pairs(
        [LoglikelihoodRequest(prompt(q), " " + t.strip(), images=instance.images)
         for q, t in [(instance.question, instance.answer), *rows]])
    answer_first = answer[0][len(answer[0]) - answer[1]]
    ids, mask, pos = backend._pad([seq for seq, _, _, _ in encoded])
    inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": pos,
              **backend._pixel_kwargs([px for _, _, px, _ in encoded])}
    width = ids.shape[1]
    n_cont = [n for _, n, _, _ in encoded]
    norm, head = backend._lens_modules()

    def to_batch(out: Any) -> EditBatch:
        logprobs = out.logits.float().log_softmax(-1)
        means = []
        for r, n in enumerate(n_cont):
            targets = ids[r, width - n:]
            lp = logprobs[r, width - n - 1: width - 1].gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            means.append(lp.mean())

        def lens() -> Any:  # the attacks' lens at each row's last prompt position
            return torch.stack([lens_logits(out.hidden_states, out.logits, r, width - n - 1, lens_layers, norm, head)
                                for r, n in enumerate(n_cont)])

        return EditBatch(target_logprob=torch.stack(means),
                         answer_token=torch.full((len(rows),), int(answer_first), device=ids.device), lens=lens)

    return inputs, to_batch


def run_edit(backend: Any, defence: InstanceDefence, instance: EditInstance, prompt: Any,
             rows: list[tuple[str, str]], seed: int, lens_layers: tuple[int, ...]) -> list[float]:
    """Edit the backend's model in place for one instance on the defence's (question, target)
    `rows`; returns the losses per step.

    The caller restores the weights (`restored`); everything but the edited module is frozen
    for the duration and unfrozen afterwards. `lens_layers`: the attacks' layers, which the
    head-projection and max-entropy defences read unless their own `lens_layers` is set."""
    import torch

    p = defence.params
    model = backend.model
    module = edited_module(model, p.layer, p.module)
    inputs, to_batch = edit_batch(backend, rows, instance, prompt,
                                  list(p.lens_layers or lens_layers))
    grads = {id(t): t.requires_grad for t in model.parameters()}
    was_training = model.training
    torch.manual_seed(seed)
    losses: list[float] = []
    hook = None
    try:
        for t in model.parameters():
            t.requires_grad_(False)
        model.eval()  # dropout off: the edit is deterministic given the seed
        weight = module.weight
        start = weight.detach().clone()
        if p.lora_rank:
            a = torch.nn.Parameter(torch.randn(p.lora_rank, weight.shape[1], device=weight.device) / weight.shape[1] ** 0.5)
            b = torch.nn.Parameter(torch.zeros(weight.shape[0], p.lora_rank, device=weight.device))
            hook = module.register_forward_hook(lambda _m, args, out: out + (args[0] @ a.T.to(args[0].dtype)) @ b.T.to(args[0].dtype))
            trained = [a, b]
        else:
            weight.requires_grad_(True)
            trained = [weight]
        opt = torch.optim.Adam(trained, lr=p.lr)
        for _ in range(p.steps):
            opt.zero_grad()
            out = model(**inputs, output_hidden_states=True)
            loss = defence.loss(to_batch(out))
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if not p.lora_rank:
                with torch.no_grad():  # ROME FT: each weight within ± norm_constraint of its start
                    weight.copy_(torch.clamp(weight, start - p.norm_constraint, start + p.norm_constraint))
        if p.lora_rank:
            hook.remove()
            hook = None
            with torch.no_grad():
                weight.add_((b @ a).to(weight.dtype))
    finally:
        if hook is not None:
            hook.remove()
        for t in model.parameters():
            t.requires_grad_(grads[id(t)])
        model.train(was_training)
    return losses


def edit_intervention(defence: InstanceDefence, instance: EditInstance, prompt: Any, rows: list[tuple[str, str]],
                      recipe: dict[str, Any], seed: int, lens_layers: tuple[int, ...],
                      log: dict[str, list[float]] | None = None) -> Intervention:
    """The instance's edit as an intervention: the first entry edits the model (later ones,
    for further batches of the same instance, put the kept edited weights back), leaving it
    restores every weight. `recipe` names the model, defence, hyperparameters and instance content."""

    edited: dict[str, Any] = {}  # the edited weights, kept for further batches of this instance

    @contextmanager
    def enter(backend: Any) -> Iterator[None]:
        import torch

        weight = edited_module(backend.model, defence.params.layer, defence.params.module).weight
        with restored([weight]):
            if "weight" in edited:
                with torch.no_grad():
                    weight.copy_(edited["weight"])
            else:
                losses = run_edit(backend, defence, instance, prompt, rows, seed, lens_layers)
                edited["weight"] = weight.detach().clone()
                if log is not None:
                    log[instance.id] = losses
            yield

    return Intervention.from_recipe("edit", recipe, enter, name=f"{defence.name}:{instance.id}")
