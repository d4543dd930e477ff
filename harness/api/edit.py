"""Per-instance editing: the data one deleted fact carries, and what a benchmark run that way provides.

UnLOK-VQA (docs/datasets.md §2) deletes one fact at a time: for each instance the fresh model
gets a defence (an edit of a few weights), is attacked, and is restored before the next
instance. A benchmark run this way sets `per_instance = True` and returns its instances from
`edit_instances()`; the protocol itself is the core's (harness/edit_protocol.py), the
defences are methods (methods/unlok_defences.py), and the attacks' requests and scores are
the benchmark's (benchmarks/unlok_attacks.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.api.media import MediaRef

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
