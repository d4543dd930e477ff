"""UnLOK-VQA's six defences (docs/methods.md "UnLOK-VQA defences"): one loss each, applied per instance.

Source: Patil et al., arXiv 2505.01456 and its code `Vaidehi99/UnLOK-VQA` @ 3924bdc7 (a fork of
ROME's FT editing; `--dummy_string`, the entropy/margin layer flags in the result names) [code],
with the defence objectives of Patil, Hase & Bansal, "Can Sensitive Information Be Deleted From
LLMs?" (ICLR 2024) [paper]. Each class overrides only `loss` (and, where the objective trains
on other rows or another target, `rows` / `target_text`); the edit itself (one MLP projection,
norm-constrained or LoRA) and the per-instance restore are shared (harness/backends/editing.py).

- Fact erasure: minimise the deleted answer's log-probability.
- Empty response: maximise the probability of "I don't know".
- Error injection: maximise the probability of a wrong answer (the record's `alt_ans`).
- Head-projection defence: fact erasure, plus a margin loss at each lens layer pushing the
  answer's first token below the k-th most likely other token (so HP finds it in no top-k).
- Max-entropy defence: fact erasure, plus the negative entropy of each lens layer's
  distribution (flat intermediate distributions leak no ranking).
- Input-rephrasing defence: fact erasure on the question and on rephrasings the protocol sets
  aside for defences (never the ones the attacks ask).
"""

from __future__ import annotations

import torch

from harness.api.edit import EditBatch, EditInstance, InstanceDefence
from harness.errors import DatasetUnavailableError
from harness.representations.logit_lens import TOP_K

IDK = "I don't know"  # the authors' `--dummy_string` objective [code]


class FactErasure(InstanceDefence):
    name = "fact-erasure"

    def loss(self, batch: EditBatch) -> torch.Tensor:
        return batch.target_logprob.mean()


class EmptyResponse(InstanceDefence):
    name = "empty-response"
    erases = False

    def target_text(self, instance: EditInstance) -> str:
        return IDK

    def loss(self, batch: EditBatch) -> torch.Tensor:
        return -batch.target_logprob.mean()


class ErrorInjection(InstanceDefence):
    name = "error-injection"
    erases = False

    def target_text(self, instance: EditInstance) -> str:
        if not instance.wrong_answer:
            raise DatasetUnavailableError(f"error-injection needs a wrong answer for instance {instance.id} "
                                          "(UnLOK-VQA's loader field `alt_ans`), which the data lacks")
        return instance.wrong_answer

    def loss(self, batch: EditBatch) -> torch.Tensor:
        return -batch.target_logprob.mean()


class HeadProjectionDefence(InstanceDefence):
    name = "head-projection-defence"

    def loss(self, batch: EditBatch) -> torch.Tensor:
        logp = batch.lens().log_softmax(-1)  # [rows, layers, vocab]
        answer = batch.answer_token.view(-1, 1, 1).expand(-1, logp.shape[1], 1)
        target = logp.gather(-1, answer).squeeze(-1)
        others = logp.scatter(-1, answer, float("-inf"))
        kth = others.topk(TOP_K, dim=-1).values[..., -1]  # the attacks' k (docs/metrics.md §11)
        margin = torch.relu(self.params.margin + target - kth).mean()
        return batch.target_logprob.mean() + self.params.layer_weight * margin


class MaxEntropyDefence(InstanceDefence):
    name = "max-entropy-defence"

    def loss(self, batch: EditBatch) -> torch.Tensor:
        logp = batch.lens().log_softmax(-1)
        entropy = -(logp.exp() * logp).sum(-1).mean()
        return batch.target_logprob.mean() - self.params.layer_weight * entropy


class InputRephrasingDefence(InstanceDefence):
    name = "input-rephrasing-defence"

    def rows(self, instance: EditInstance, rephrasings: tuple[str, ...] = ()) -> list[tuple[str, str]]:
        return [(q, instance.answer) for q in (instance.question, *rephrasings)]

    def loss(self, batch: EditBatch) -> torch.Tensor:
        return batch.target_logprob.mean()
