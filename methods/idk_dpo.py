"""IdkDPO (docs/methods.md §5.5): DPO that prefers an "I don't know" answer to the true forget answer."""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import Field

from harness.errors import ConfigError
from harness.api.training import encode_items, model_inputs
from harness.methods.grad_diff import GradDiff
from harness.methods.idk_answers import IDK_ANSWERS
from harness.methods.losses import dpo_loss, sequence_logprob_sum

if TYPE_CHECKING:
    from harness.api.benchmark import Benchmark


class IdkDPO(GradDiff):
    """DPO on forget prompts with win y_w = a refusal ("I don't know") and lose y_l = the true answer.

    L = γ·L_forget + α·L_retain, with
    L_forget = −(2/β)·mean_batch log σ(β·[(log π_θ − log π_ref)(y_w|x) − (log π_θ − log π_ref)(y_l|x)]),
    log-probs *summed* over answer tokens (`sequence_logprob_sum`); the reference is the starting
    model (with LoRA, the adapter-disabled view). Note the 2/β factor, which TRL's DPO lacks.
    Defaults: β = 0.1, γ = 1, α = 1, retain NLL (`retain_loss_type`, as GradDiff).

    Data: each forget item gets one refusal, drawn once per item from `methods.idk_answers`
    (this project's own list of 40) or from `idk_path` (one answer per line, blank lines
    skipped; e.g. TOFU's `idontknow.jsonl`) with an RNG seeded by the run seed. open-unlearning
    instead redraws the refusal each time an item is fetched. The refusal is encoded as the
    forget batch's `alternate` target (`encode_items(..., alternate_answers=...)`).
    """

    name: ClassVar[str] = "idk-dpo"
    needs_reference: ClassVar[bool] = True

    class Params(GradDiff.Params):
        beta: float = Field(0.1, gt=0)
        idk_path: str | None = None  # a file of refusals, one per line; None: methods.idk_answers

    def idk_answers(self) -> list[str]:
        path = self.params.idk_path
        if path is None:
            return list(IDK_ANSWERS)
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise ConfigError(f"method {self.name!r}: cannot read idk_path {path!r}: {e.strerror or e}") from None
        answers = [line.strip() for line in lines if line.strip()]
        if not answers:
            raise ConfigError(f"method {self.name!r}: idk_path {path!r} holds no answers")
        return answers

    def encode_forget(
        self, benchmark: "Benchmark", items: list, tokenizer: Any, max_length: int, chat: bool, seed: int
    ) -> list[dict]:
        answers = self.idk_answers()
        rng = random.Random(f"idk-dpo:{seed}")
        drawn = [answers[rng.randrange(len(answers))] for _ in items]
        return encode_items(benchmark, items, tokenizer, max_length, chat, alternate_answers=drawn)

    def extra_train_stats(self) -> dict[str, Any]:
        return {"idk_source": self.params.idk_path or "harness.methods.idk_answers", "n_idk_answers": len(self.idk_answers())}

    def forget_loss(self, model: Any, forget: dict, ref_model: Any) -> torch.Tensor:
        lose, win = model_inputs(forget), model_inputs(forget["alternate"])
        logp_w = sequence_logprob_sum(model(**win).logits, win["labels"])
        logp_l = sequence_logprob_sum(model(**lose).logits, lose["labels"])
        logp_w_ref = sequence_logprob_sum(ref_model(**win).logits, win["labels"])
        logp_l_ref = sequence_logprob_sum(ref_model(**lose).logits, lose["labels"])
        return dpo_loss(logp_w, logp_w_ref, logp_l, logp_l_ref, self.params.beta)
