"""What a metric is: requests it needs, and a result computed from their responses.

A metric is instantiated for one benchmark split ("rouge_l_recall@forget"). It declares
 - `requests()`: what it needs from the model (the evaluator de-duplicates them across
   metrics, so one forward pass serves every metric that asks the same question);
 - `dependencies()`: other metric ids it builds on (computed once per run, injected);
 - `reference_dependencies()`: metric ids it needs from a reference run (the retain-only
   model), injected from that run's results;
 - `compute(...)`: a `MetricResult` with the aggregate, its 95% CI, n and per-item values.
Metrics never load or call a model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import numpy as np

from harness.api.requests import LoglikelihoodRequest, Request, Response
from harness.stats import mean_ci

if TYPE_CHECKING:
    from harness.api.benchmark import Benchmark

ResponseMap = Mapping[Request, Response]


@dataclass
class MetricResult:
    metric: str  # the metric id, e.g. "truth_ratio@forget"
    value: float | None  # None when the metric cannot be computed (e.g. no reference run)
    ci_low: float | None
    ci_high: float | None
    n: int
    higher_is_better: bool | None
    per_item: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    # Sub-results reported as metrics of their own (ASR per attack family:
    # "asr@adversarial[attack_family=role-play]"); the evaluator adds them to the results.
    parts: dict[str, "MetricResult"] = field(default_factory=dict)


def answer_request(benchmark: "Benchmark", item: Any, answer: str | None = None,
                   moments: bool = False) -> LoglikelihoodRequest:
    """The teacher-forced request for an answer to `item` (its own answer by default).

    Probability, truth ratio, normalised probability and the MIA scores all ask this one
    request, so the evaluator sends each (item, answer) pair to the model once; Min-k%++
    asks it with `moments` (the evaluator then sends only that form). Under the benchmark's
    `answer_eos` the EOS token is scored as the answer's last token (the MIA statistics leave
    it out again: `harness.metrics.mia.mia_tokens`).
    """
    return LoglikelihoodRequest(
        context=benchmark.prompt(item), continuation=benchmark.target(item.answer if answer is None else answer),
        images=benchmark.images(item), answer_eos=benchmark.answer_eos, moments=moments,
    )


def parse_metric_id(metric_id: str) -> tuple[str, str | None]:
    """'rouge_l_recall@forget' -> ('rouge_l_recall', 'forget'); 'forget_quality' -> (.., None)."""
    name, _, split = metric_id.partition("@")
    return name, (split or None)


class Metric(ABC):
    name: ClassVar[str] = ""
    # Request kinds the metric needs beyond its benchmark's (validation checks the model serves them).
    request_kinds: ClassVar[tuple[str, ...]] = ()
    higher_is_better: ClassVar[bool | None] = True
    needs_split: ClassVar[bool] = True
    # True when the value is None without a reference run (`reference:`), so a run without one
    # is warned before it starts rather than showing an empty column at the end.
    needs_reference_run: ClassVar[bool] = False
    # The ideal value of a metric with no better direction (an MIA AUC: 0.5; PrivLeak: 0), and a
    # note where the direction depends on the split; `direction()` says which, for every metric.
    best_at: ClassVar[float | None] = None
    direction_note: ClassVar[str] = ""

    @classmethod
    def direction(cls) -> str:
        """Which values are better, in words (`harness show`, and a test that none is silent)."""
        if cls.higher_is_better is not None:
            text = "higher is better" if cls.higher_is_better else "lower is better"
            return text + (" (on a forget split the reverse: it measures knowledge)" if cls.measures_knowledge else "")
        if cls.best_at is not None:
            return f"best at {cls.best_at:g}: neither higher nor lower is better"
        return cls.direction_note
    # True for scores of how much the model knows (probability, ROUGE, recall): on the
    # forget split the goal is to lower them, so there lower is better.
    measures_knowledge: ClassVar[bool] = False

    def __init__(self, benchmark: "Benchmark", split: str | None = None, seed: int = 0, **args: Any):
        from harness.errors import ConfigError

        if self.needs_split and split is None:
            raise ConfigError(f"metric {self.name!r} needs a split: write it as '{self.name}@<split>'")
        self.benchmark = benchmark
        self.split_role = split
        self.split = benchmark.resolve_split(split) if split else None
        self.seed = seed
        self.args = args

    @property
    def id(self) -> str:
        return f"{self.name}@{self.split_role}" if self.split_role else self.name

    @property
    def items(self) -> list[Any]:
        return self.benchmark.split(self.split) if self.split else []

    def requests(self) -> list[Request]:
        return []

    def dependencies(self) -> list[str]:
        return []

    def judge_requests(self, responses: ResponseMap) -> list[Any]:
        """Second stage of judged metrics: `JudgeRequest`s built from the model's responses.

        The evaluator answers them with the run's judges and adds the `Verdict`s to the
        response map that `compute` reads (keyed by the judge request).
        """
        return []

    def reference_dependencies(self) -> list[str]:
        return []

    def aggregate(self, values: Sequence[float]) -> float:
        """Per-item values -> the metric's value (the mean unless a metric says otherwise).

        Composite metrics (model utility) call it on resampled per-item values for their CI.
        """
        return float(np.mean(np.asarray(values, dtype=float)))

    @abstractmethod
    def compute(
        self,
        responses: ResponseMap,
        deps: Mapping[str, MetricResult],
        reference: Mapping[str, MetricResult],
    ) -> MetricResult:
        """The result from the responses to `requests()`, dependency results and reference results."""

    def result(self, value: float | None, ci: tuple[float, float] | None, n: int, **kw: Any) -> MetricResult:
        lo, hi = ci if ci is not None else (None, None)
        return MetricResult(self.id, value, lo, hi, n, self.better_when_higher, **kw)

    @property
    def better_when_higher(self) -> bool | None:
        forgetting = self.split is not None and self.benchmark.is_forget_split(self.split)
        if self.measures_knowledge and forgetting and self.higher_is_better is not None:
            return not self.higher_is_better
        return self.higher_is_better


class ItemMetric(Metric):
    """A metric that is the mean over items of a per-item value (most of them).

    Subclasses implement `item_requests` and `item_value`; an item whose value is None is
    left out of the mean and counted in `details['skipped']`.
    """

    @abstractmethod
    def item_requests(self, item: Any) -> list[Request]:
        """The requests one item needs."""

    @abstractmethod
    def item_value(self, item: Any, responses: ResponseMap) -> float | None:
        """The item's value from its responses (None: left out of the mean)."""

    def item_note(self, item: Any, responses: ResponseMap) -> str | None:
        """Text kept with the item's sample record (e.g. judge verdicts), for audit."""
        return None

    def requests(self) -> list[Request]:
        return [r for item in self.items for r in self.item_requests(item)]

    def compute(self, responses, deps, reference) -> MetricResult:
        per_item: dict[str, float] = {}
        skipped = 0
        for item in self.items:
            v = self.item_value(item, responses)
            if v is None:
                skipped += 1
            else:
                per_item[item.id] = float(v)
        if not per_item:
            return self.result(None, None, 0, details={"skipped": skipped})
        value, lo, hi = mean_ci(list(per_item.values()), seed=self.seed)
        return self.result(value, (lo, hi), len(per_item), per_item=per_item, details={"skipped": skipped})
