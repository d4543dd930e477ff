"""Per-instance editing: the data one deleted fact carries, and what a benchmark run that way provides.

UnLOK-VQA (docs/datasets.md §2) deletes one fact at a time: for each instance the fresh model
gets a defence (an edit of a few weights), is attacked, and is restored before the next
instance. A benchmark run this way sets `per_instance = True` and returns its instances from
`edit_instances()`; the protocol itself is the core's (harness/edit_protocol.py), the
defences are methods (methods/unlok_defences.py), and the attacks' requests and scores are
the benchmark's (benchmarks/unlok_attacks.py).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from pydantic import Field

from harness.api.media import MediaRef
from harness.api.method import Method
from harness.errors import ConfigError

if TYPE_CHECKING:
    import torch

IMAGE_LEVELS = ("easy", "medium", "hard")


@dataclass(frozen=True)
class EditInstance:
    """One fact to delete: `question` about `images` has the answer `answer`.

    The optional fields feed the attacks and defences that need them; each names its source
    field in UnLOK-VQA's record (docs/datasets.md §2), and an attack that needs an empty one
    stops in one line naming it.
    """

    id: str
    question: str  # `src`
    answer: str  # `pred`: the answer to delete
    images: tuple[MediaRef, ...]  # the COCO image (or the drawn scene)
    rephrasings: tuple[str, ...] = ()  # `rephrase`: other wordings of the question (mg attack, paraphrase score)
    neighborhood: tuple[tuple[str, str], ...] = ()  # (`loc` question, `loc_ans`) about the same image
    image_paraphrases: tuple[tuple[str, MediaRef], ...] = ()  # (level easy/medium/hard, re-rendered image)
    subject: str = ""  # `subject`: what the question is about (jailbreak templates)
    wrong_answer: str = ""  # `alt_ans[0]`: the error-injection target

    def paraphrase_images(self, level: str) -> tuple[MediaRef, ...]:
        """The instance's image paraphrases of one difficulty level."""
        return tuple(m for lv, m in self.image_paraphrases if lv == level)


# --- defences: methods applied to one instance at a time ------------------------------------
@dataclass
class EditBatch:
    """What a defence's loss sees on its training rows (one row per (prompt, target) of
    `InstanceDefence.rows`), computed by harness/backends/editing.py on the model being edited.

    `target_logprob`: [rows] mean log-probability per token of each row's target text.
    `answer_token`: [rows] the deleted answer's first token id (what the white-box attacks look for).
    `lens()`: [rows, len(lens_layers), vocab] logits of the logit lens (final norm + LM head) on
    the chosen layers' hidden states at the last prompt position, computed on first call.
    """

    target_logprob: "torch.Tensor"
    answer_token: "torch.Tensor"
    lens: Callable[[], "torch.Tensor"]


class InstanceDefence(Method):
    """A defence against extraction, applied to one instance at a time (docs/methods.md, UnLOK-VQA).

    The protocol (harness/edit_protocol.py) edits the fresh model for each instance with this
    defence, attacks it, and restores the weights before the next instance. A defence says
    which (question, target) rows it trains on (`rows`) and overrides only `loss`; the shared
    optimisation edits one MLP projection of one decoder layer, directly with each weight held
    within `norm_constraint` of its start (ROME's FT rule, the authors' setting) or through a
    rank-`lora_rank` LoRA merged afterwards.
    """

    per_instance: ClassVar[bool] = True
    # Edit scores (docs/metrics.md §12): fact erasure scores the erased share of the answer's
    # probability; the other objectives the recovered share of their own target's.
    erases: ClassVar[bool] = True

    class Params(Method.Params):
        layer: int = Field(1, description="decoder layer whose MLP is edited (the authors: 7 of LLaVA-7B's 32)")
        module: str = Field("down_proj", description="the MLP projection edited in that layer (ROME FT: down_proj)")
        norm_constraint: float = Field(1e-4, gt=0, description="each edited weight stays within ± this of its "
                                       "start (ROME FT's clamp; the authors' 1e-4); ignored with lora_rank")
        lora_rank: int = Field(0, ge=0, description="> 0: train a LoRA of this rank on the module instead, then merge it")
        steps: int = Field(25, ge=1, description="optimisation steps per instance")
        lr: float = Field(5e-4, gt=0, description="Adam learning rate")
        lens_layers: list[int] | None = Field(None, description="layers the head-projection and max-entropy defences "
                                              "read (default: the upper half and the last, as the attacks)")
        layer_weight: float = Field(1.0, ge=0, description="weight of the layer-wise loss against the erasure loss")
        margin: float = Field(0.1, ge=0, description="head-projection margin (log-probability units)")

    def rows(self, instance: EditInstance, rephrasings: tuple[str, ...] = ()) -> list[tuple[str, str]]:
        """The (question, target) rows the edit trains on; `rephrasings` are questions the
        protocol set aside for defences (never the ones the attacks use)."""
        return [(instance.question, self.target_text(instance))]

    def target_text(self, instance: EditInstance) -> str:
        """The text whose probability the edit moves (and the edit scores measure)."""
        return instance.answer

    @abstractmethod
    def loss(self, batch: EditBatch) -> "torch.Tensor":
        """The scalar the edit minimises."""

    def apply(self, base: Any, benchmark: Any, ctx: Any) -> Any:
        raise ConfigError(f"{self.name} is a per-instance defence: run it on a per-instance benchmark "
                          "(tiny-vqa, unlok-vqa), which edits and restores the model for each instance")
