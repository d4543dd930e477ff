"""What a benchmark is: named splits of items, a prompt format, and the metrics it reports.

A benchmark never talks to a model. It hands items to metrics, which turn them into
requests. Loaders take a local path or a hub id (pinned revision) and record where the data
came from and its content hash in the result provenance.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
import json
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

ModelKind = Literal["causal_lm", "vlm", "diffusion"]


@dataclass(frozen=True)
class QAItem:
    """A question with its answer, in the TOFU shape.

    `paraphrased_answer` and `perturbed_answers` are empty where a split has none; the
    truth ratio then uses `answer` as the correct side (as TOFU's real-authors set does).
    """

    id: str
    question: str
    answer: str
    paraphrased_answer: str = ""
    perturbed_answers: tuple[str, ...] = ()
    entity: str = ""  # whom or what the question is about (for probes and grouping)
    # Other wordings of the question, for paraphrase probes of forgotten answers.
    question_paraphrases: tuple[str, ...] = ()


@dataclass
class BenchmarkData:
    """Loaded splits plus where they came from."""

    splits: dict[str, list[Any]]
    source: str  # hub id@revision, URL, local path, or "generated:<generator version>"
    meta: dict[str, Any] = field(default_factory=dict)

    def data_hash(self) -> str:
        payload = json.dumps(
            {k: [asdict(i) if hasattr(i, "__dataclass_fields__") else i for i in v] for k, v in sorted(self.splits.items())},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


class Benchmark(ABC):
    """Base class. Subclasses set the class attributes and implement `load`.

    `options` come from the experiment config (`benchmarks: [{name: ..., options: {...}}]`).
    """

    name: ClassVar[str] = ""
    model_kind: ClassVar[ModelKind] = "causal_lm"
    request_kinds: ClassVar[tuple[str, ...]] = ("generate", "loglikelihood")
    # Metric ids ("metric@split") reported when the config names none.
    default_metrics: ClassVar[tuple[str, ...]] = ()
    # The few metric ids the terminal leaderboard shows (the files always hold every metric).
    headline_metrics: ClassVar[tuple[str, ...]] = ()
    # Metric ids whose harmonic mean is the model utility on this benchmark.
    utility_metrics: ClassVar[tuple[str, ...]] = ()
    # Defaults for the greedy generations metrics ask for (max_new_tokens, stop strings).
    max_new_tokens: ClassVar[int] = 200
    stop: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options: Any):
        self.options = options
        self._data: BenchmarkData | None = None

    # --- data -------------------------------------------------------------------------
    @abstractmethod
    def load(self) -> BenchmarkData:
        """Read (or generate) every split; called once, lazily, through `data`."""

    @property
    def data(self) -> BenchmarkData:
        if self._data is None:
            self._data = self.load()
        return self._data

    def split(self, name: str) -> list[Any]:
        from harness.errors import HarnessError

        if name not in self.data.splits:
            raise HarnessError(
                f"benchmark {self.name!r} has no split {name!r} (has: {', '.join(sorted(self.data.splits))})"
            )
        return self.data.splits[name]

    # --- roles for methods ------------------------------------------------------------
    def forget_split(self) -> str:
        """The split an unlearning method forgets (from options, e.g. `forget_split: forget10`)."""
        return self.options.get("forget_split", "forget10")

    def retain_split(self) -> str:
        """The split an unlearning method keeps: retainNN matching the forget split."""
        forget = self.forget_split()
        pct = int(forget.removeprefix("forget"))
        return self.options.get("retain_split", f"retain{100 - pct:02d}")

    def holdout_split(self) -> str:
        return self.options.get("holdout_split", self.forget_split().replace("forget", "holdout"))

    def resolve_split(self, role_or_split: str) -> str:
        """Metric ids name roles (`forget`, `retain`, `holdout`) or concrete splits."""
        roles = {"forget": self.forget_split, "retain": self.retain_split, "holdout": self.holdout_split}
        return roles[role_or_split]() if role_or_split in roles else role_or_split

    # --- prompts ----------------------------------------------------------------------
    def prompt(self, item: QAItem) -> str:
        """The text a model sees before the answer."""
        return f"Question: {item.question}\nAnswer:"

    def generation_budget(self, item: Any) -> tuple[int, tuple[str, ...]]:
        """(max_new_tokens, stop strings) for greedy answers to `item` (MUSE varies them by split)."""
        return self.max_new_tokens, tuple(self.stop)

    def target(self, answer: str) -> str:
        """The continuation scored after `prompt` (a leading space, as the model was trained)."""
        return " " + answer.strip()


class TofuShapedBenchmark(Benchmark):
    """Forget/retain/holdout QA in the TOFU shape (TOFU itself, fictitious-facts, ...).

    Methods train on `retain_split()` = retainNN (the complement of the forget split);
    metrics that name the role `retain` evaluate on `retain_perturbed` (override with the
    `retain_eval_split` option), as TOFU does.
    """

    default_metrics = (
        "probability@forget", "probability@retain", "rouge_l_recall@forget", "rouge_l_recall@retain",
        "exact_match_recall@forget", "exact_match_recall@retain", "truth_ratio@forget",
        "truth_ratio@retain", "forget_quality", "model_utility",
    )
    headline_metrics = ("exact_match_recall@forget", "exact_match_recall@retain", "probability@forget",
                        "truth_ratio@forget", "forget_quality", "model_utility")
    utility_metrics = ("probability@retain", "rouge_l_recall@retain", "truth_ratio@retain")

    def resolve_split(self, role_or_split: str) -> str:
        if role_or_split == "retain":
            return self.options.get("retain_eval_split", "retain_perturbed")
        return super().resolve_split(role_or_split)
