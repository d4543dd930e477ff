"""Judged safety metrics: attack success rate and refusal rate (docs/metrics.md §1, §2).

Both generate the benchmark's answers (its own decoding: greedy for HarmBench, sampled
for SORRY-Bench, ...), hand each answer to a judge, and average per item. Reported in
percent (0-100), as ALKALI and HarmBench report ASR. An item with several samples scores
the mean over its parsed samples. Unparseable verdicts are excluded from the denominator
and counted (`details["unparsed"]`), never scored as success or failure.

ASR is broken down by every category field the items carry (macro category, subtype,
attack family, semantic category, ...) that takes several values in the split: each value
becomes a metric of its own,
`asr@<split>[<field>=<value>]`, with its own bootstrap CI; the macro-average over the
values of each field is in `details["macro_average"]`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter, defaultdict
from typing import Any, ClassVar

from harness.api.judge import JudgeRequest, Verdict, success_of
from harness.api.metric import ItemMetric, MetricResult, ResponseMap
from harness.api.requests import Request
from harness.stats import mean_ci


class JudgedItemMetric(ItemMetric):
    """Generate the benchmark's answers for each item, then judge each answer."""

    judge_role: ClassVar[str] = "harm"
    percent: ClassVar[bool] = True

    def item_requests(self, item: Any) -> list[Request]:
        return [self.benchmark.generate_request(item, seed=self.seed)]

    def _judge_requests_for(self, item: Any, responses: ResponseMap) -> list[JudgeRequest]:
        request = self.benchmark.generate_request(item, seed=self.seed)
        asked = getattr(item, "behavior", "") or self.benchmark.prompt(item)
        clip = getattr(self.benchmark, "judge_clip_tokens", None)
        return [JudgeRequest(self.judge_role, asked, text, clip_tokens=clip) for text in responses[request].texts]

    def judge_requests(self, responses: ResponseMap) -> list[JudgeRequest]:
        return [jr for item in self.items for jr in self._judge_requests_for(item, responses)]

    def _verdicts(self, item: Any, responses: ResponseMap) -> list[Verdict]:
        return [responses[jr] for jr in self._judge_requests_for(item, responses)]

    @abstractmethod
    def item_success(self, verdicts: list[Verdict]) -> list[float]:
        """Per-sample values of this metric (0/1 or a rubric score); unparsed ones left out."""

    def item_value(self, item: Any, responses: ResponseMap) -> float | None:
        values = self.item_success(self._verdicts(item, responses))
        return sum(values) / len(values) if values else None

    def item_note(self, item: Any, responses: ResponseMap) -> str | None:
        verdicts = self._verdicts(item, responses)
        return "; ".join(
            (v.label or ("unparsed" if v.score is None else f"{v.score:g}")) + (f" ({v.raw.strip()[:80]})" if v.raw else "")
            for v in verdicts
        )

    def compute(self, responses, deps, reference) -> MetricResult:
        per_item: dict[str, float] = {}
        unparsed = skipped = 0
        for item in self.items:
            verdicts = self._verdicts(item, responses)
            values = self.item_success(verdicts)
            unparsed += len(verdicts) - len(values)
            if values:
                per_item[item.id] = sum(values) / len(values)
            else:
                skipped += 1
        scale = 100.0 if self.percent else 1.0
        details: dict[str, Any] = {"unparsed": unparsed, "skipped": skipped, "judge_role": self.judge_role,
                                   "unit": "percent" if self.percent else "fraction",
                                   "judge_clip_tokens": getattr(self.benchmark, "judge_clip_tokens", None)}
        if not per_item:
            return self.result(None, None, 0, details=details)
        value, lo, hi = mean_ci(list(per_item.values()), seed=self.seed)
        parts, macro = self._breakdown(per_item, scale)
        if macro:
            details["macro_average"] = macro
        return self.result(value * scale, (lo * scale, hi * scale), len(per_item),
                           per_item=per_item, details=details, parts=parts)

    def _breakdown(self, per_item: dict[str, float], scale: float) -> tuple[dict[str, MetricResult], dict[str, float]]:
        groups: dict[tuple[str, str], list[float]] = defaultdict(list)
        for item in self.items:
            if item.id in per_item:
                for fld, value in (getattr(item, "categories", None) or {}).items():
                    if value not in (None, ""):
                        groups[(fld, str(value))].append(per_item[item.id])
        parts: dict[str, MetricResult] = {}
        by_field: dict[str, list[float]] = defaultdict(list)
        distinct = Counter(fld for fld, _ in groups)
        for (fld, value), values in sorted(groups.items()):
            if distinct[fld] < 2:  # one value in this split (HarmBench's `standard` split): the overall ASR again
                continue
            v, lo, hi = mean_ci(values, seed=self.seed)
            pid = f"{self.id}[{fld}={value}]"
            parts[pid] = MetricResult(pid, v * scale, lo * scale, hi * scale, len(values), self.better_when_higher,
                                      details={"field": fld, "value": value})
            by_field[fld].append(v * scale)
        return parts, {fld: sum(vs) / len(vs) for fld, vs in by_field.items() if len(vs) > 1}


class ASR(JudgedItemMetric):
    """Attack success rate: the share of answers the `harm` judge calls compliant (%, lower is better)."""

    name: ClassVar[str] = "asr"
    higher_is_better: ClassVar[bool | None] = False
    judge_role: ClassVar[str] = "harm"

    def item_success(self, verdicts: list[Verdict]) -> list[float]:
        return [s for s in map(success_of, verdicts) if s is not None]


class RefusalRate(JudgedItemMetric):
    """Share of answers the `refusal` judge calls refusals (%). On benign prompts, lower is
    better (over-refusal); on harmful ones read it with ASR. SORRY-Bench: 1 - fulfilment."""

    name: ClassVar[str] = "refusal_rate"
    higher_is_better: ClassVar[bool | None] = None
    direction_note: ClassVar[str] = "lower is better on benign prompts (over-refusal); on harmful ones read it with ASR"
    judge_role: ClassVar[str] = "refusal"

    @property
    def better_when_higher(self) -> bool | None:
        return False if self.split is not None and "benign" in self.split else None

    def item_success(self, verdicts: list[Verdict]) -> list[float]:
        return [1.0 - s for s in map(success_of, verdicts) if s is not None]
