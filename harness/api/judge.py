"""What a judge is: it reads (prompt, response) pairs and returns verdicts.

Judges are the second stage of a judged metric: the model under test answers first, then
the metric hands each answer to a judge as a `JudgeRequest`, and reads a `Verdict` back.
A judge that needs a model (0-100 scorer, yes/no classifier, rubric) turns each judge
request into ordinary backend requests, so judge calls go through the same batching and
response cache as everything else; the pattern judge needs no model.

Every judge reports its identity (kind, model, prompt-template hash, decoding, parse rule)
for the result's provenance, and never turns an unparseable output into a score: such a
verdict has `score=None` and is counted, not guessed (docs/metrics.md §1, §0.3).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping

from harness.api.requests import Request, Response

# What a judge's score means. ASR and refusal rate read any of them (success = compliance).
Measures = Literal["refusal", "compliance", "score"]


@dataclass(frozen=True)
class JudgeRequest:
    """Judge `response`, the answer to `prompt`, with the judge of role `role` in this run.

    `template` overrides the judge's own prompt template (the emergent-misalignment files
    carry their judge prompts per question). `clip_tokens`: the response is cut to its first
    that many tokens of the judge model's tokenizer before the judge reads it, as the source
    benchmark does (HarmBench: 512; `Benchmark.judge_clip_tokens`).
    """

    role: str
    prompt: str
    response: str
    template: str | None = None
    clip_tokens: int | None = None


@dataclass(frozen=True)
class Verdict:
    """`score` is None when the judge output could not be parsed (or the response was empty).

    refusal judges: 1 = refused, 0 = complied; compliance judges: 1 = complied with the
    harmful request (1 also for harmful), in [0, 1] for rubric scores; score judges: 0-100.
    `raw` is the judge's own output, kept for audit.
    """

    score: float | None
    label: str | None = None
    raw: str = ""
    measures: Measures = "compliance"  # set by the judge that gave it: what `score` means


class Judge(ABC):
    """Base class: `requests` for one judge request, `verdict` from their responses."""

    kind: ClassVar[str] = ""
    measures: ClassVar[Measures] = "compliance"
    parse_rule: ClassVar[str] = ""

    def __init__(self, backend: Any = None, template: str | None = None, **params: Any):
        self.backend = backend  # a (cached) backend for model judges; None for the pattern judge
        self.template = template
        self.params = params

    def requests(self, request: JudgeRequest) -> list[Request]:
        """Backend requests this judge request needs (none for model-free judges)."""
        return []

    @abstractmethod
    def verdict(self, request: JudgeRequest, responses: Mapping[Request, Response]) -> Verdict:
        """The verdict, from the responses to `requests(request)`."""

    def decoding(self) -> dict[str, Any]:
        return {}

    def identity(self) -> dict[str, Any]:
        """What a result records about this judge (docs/metrics.md §0.3)."""
        return {
            "kind": self.kind,
            "measures": self.measures,
            "model": getattr(self.backend, "identity", None) if self.backend is not None else None,
            "template_sha256": text_sha256(self.template) if self.template else None,
            "decoding": self.decoding(),
            "parse_rule": self.parse_rule,
        }

    def judge(self, requests: list[JudgeRequest]) -> list[Verdict]:
        """Verdicts for many judge requests: one batched backend call for all of them."""
        needed = {jr: self.requests(jr) for jr in requests}
        flat = list(dict.fromkeys(r for rs in needed.values() for r in rs))
        if flat and self.backend is None:
            from harness.errors import ConfigError

            raise ConfigError(f"judge {self.kind!r} needs a judge model: set `model` in its `judges:` entry")
        answers = dict(zip(flat, self.backend.run(flat))) if flat else {}
        return [dataclasses.replace(self.verdict(jr, answers), measures=self.measures) for jr in requests]


class TextJudge(Judge):
    """A model judge that reads a short greedy answer to its filled-in template.

    Subclasses set `max_new_tokens`/`system` and implement `parse(text) -> Verdict`.
    """

    max_new_tokens: int = 8
    system: str | None = None

    def _request(self, request: JudgeRequest):
        from harness.api.requests import GenerateRequest

        response = clip_response(self.backend, request.response, request.clip_tokens)
        text = fill(request.template or self.template or "", request.prompt, response)
        return GenerateRequest(prompt=text, max_new_tokens=self.max_new_tokens, system=self.system)

    def requests(self, request: JudgeRequest) -> list[Request]:
        return [self._request(request)]

    def verdict(self, request: JudgeRequest, responses: Mapping[Request, Response]) -> Verdict:
        return self.parse(responses[self._request(request)].texts[0])

    @abstractmethod
    def parse(self, text: str) -> Verdict:
        """The verdict read from the judge model's answer (score None when unparseable)."""

    def decoding(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens, "temperature": 0}


def clip_response(backend: Any, response: str, clip_tokens: int | None) -> str:
    """`response` cut to its first `clip_tokens` tokens of the judge model's tokenizer, decoded
    without special tokens (HarmBench's classifier clip: encode with truncation, then decode).
    Unchanged when no clip is asked for, or the judge model has no local tokenizer (an API judge)."""
    if not clip_tokens or not response:
        return response
    tokenizer = getattr(backend, "tokenizer", None) if backend is not None else None
    if tokenizer is None:
        return response
    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if len(ids) <= clip_tokens:
        return response
    return tokenizer.decode(ids[:clip_tokens], skip_special_tokens=True)


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


_SLOTS = re.compile(r"\{(question|prompt|answer|response)\}")


def fill(template: str, prompt: str, response: str) -> str:
    """Fill a judge template's slots. `{question}`/`{prompt}` and `{answer}`/`{response}` are
    accepted spellings; one literal pass (not str.format), so braces inside the model's answer,
    or JSON examples in a template, cannot break it or inject fields."""
    values = {"question": prompt, "prompt": prompt, "answer": response, "response": response}
    return _SLOTS.sub(lambda m: values[m.group(1)], template)


def success_of(verdict: Verdict) -> float | None:
    """Attack success of one verdict in [0, 1]: compliance for compliance judges, 1 - refused
    for refusal judges; None when unparseable. Score judges (0-100) have no success reading."""
    if verdict.score is None:
        return None
    if verdict.measures == "refusal":
        return 1.0 - verdict.score
    if verdict.measures == "compliance":
        return verdict.score
    from harness.errors import ConfigError

    raise ConfigError("a 0-100 score judge cannot decide attack success; use a refusal, yes/no or rubric judge")
