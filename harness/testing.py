"""Test utilities for the harness and its plug-ins: a fake backend and small configs.

`FakeBackend` answers every declared request kind from fixtures (deterministic functions of
the request, or your own per kind), counts what reaches it and remembers what it saw, so a
metric, judge, method or pipeline can be tested without a model. A plug-in's tests can use
it too: `from harness.testing import FakeBackend`. `scripted_answers` turns a table of
prompt -> answer(s) (or a function of the request) into a `generate` responder.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, ClassVar, Mapping, Sequence

from harness.api.backend import Backend
from harness.api.kinds import kind_names
from harness.api.requests import (
    GenerateRequest,
    GenerateResponse,
    GradNormRequest,
    GradNormResponse,
    HiddenStatesRequest,
    HiddenStatesResponse,
    LogitLensRequest,
    LogitLensResponse,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
    Request,
    Response,
)

Responder = Callable[[Any], Response]


def _unit(text: str) -> float:
    """A stable number in [0, 1) from a text (fixtures that differ when the request differs)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 16**8


def fake_generate(r: GenerateRequest) -> GenerateResponse:
    images = ",".join(i.sha256[:8] for i in r.images)
    return GenerateResponse(texts=[f"{r.prompt}|{r.seed}|{images}|{k}" for k in range(r.n)], n_tokens=[3] * r.n)


def fake_loglikelihood(r: LoglikelihoodRequest) -> LoglikelihoodResponse:
    # One token per word, plus the EOS under `answer_eos` (as the real backends count it).
    n = max(1, len(r.continuation.split()) + (1 if r.answer_eos and r.continuation else 0))
    base = -float(len(r.continuation)) - _unit(r.context + "".join(i.sha256 for i in r.images))
    return LoglikelihoodResponse(token_logprobs=[base / n] * n, token_greedy=[True] * n, token_mu=[-1.0] * n,
                                 token_sigma=[0.5] * n)


def fake_hidden_states(r: HiddenStatesRequest) -> HiddenStatesResponse:
    u = _unit(r.context + r.continuation)
    return HiddenStatesResponse(states={layer: [u, -1.5 * u, float(layer)] for layer in r.layers}, n_positions=1)


def fake_grad_norm(r: GradNormRequest) -> GradNormResponse:
    return GradNormResponse(norm=1.0 + _unit(r.context + r.continuation))


def fake_logit_lens(r: LogitLensRequest) -> LogitLensResponse:
    """Each entry's top ids 0..k-1 with falling values; targets at a value from the request."""
    keys = list(r.layers)[r.order:]
    tids = [*r.target_ids, *(int(_unit(t) * 100) for t in r.targets)]
    u = _unit(r.context + "".join(i.sha256 for i in r.images))
    return LogitLensResponse(top_ids={k: list(range(r.top_k)) for k in keys},
                             top_values={k: [u / (j + 1) for j in range(r.top_k)] for k in keys},
                             target_ids=tids, target_values={k: [u / 10] * len(tids) for k in keys},
                             bottom_ids={k: list(range(r.bottom_k)) for k in keys} if r.bottom_k else {},
                             bottom_values={k: [-u / (j + 1) for j in range(r.bottom_k)] for k in keys} if r.bottom_k else {})


def scripted_answers(answers: Mapping[str, str | Sequence[str]] | Callable[[GenerateRequest], str | Sequence[str]],
                     n_tokens: int = 1) -> Responder:
    """A `generate` responder from scripted answers: `answers[prompt]`, or `answers(request)`.

    A string answers each of the request's `n` samples; a list is the samples themselves (its
    first `n`). Every sample counts `n_tokens` tokens. A prompt missing from the table is a
    KeyError, so a test notices a request it did not script.
    """

    def respond(r: GenerateRequest) -> GenerateResponse:
        got = answers(r) if callable(answers) else answers[r.prompt]
        texts = [got] * r.n if isinstance(got, str) else list(got)[: r.n]
        return GenerateResponse(texts=texts, n_tokens=[n_tokens] * r.n)

    return respond


DEFAULT_RESPONDERS: dict[str, Responder] = {
    "generate": fake_generate, "loglikelihood": fake_loglikelihood,
    "hidden_states": fake_hidden_states, "grad_norm": fake_grad_norm, "logit_lens": fake_logit_lens,
}


class FakeBackend(Backend):
    """Serves every declared kind (or `serves`), each from `responders[kind]` or the default fixture."""

    name: ClassVar[str] = "fake"

    def __init__(self, identity: str = "fake-model", responders: dict[str, Responder] | None = None,
                 serves: set[str] | None = None, sees_images: bool = False):
        self._identity = identity
        self.responders = {**DEFAULT_RESPONDERS, **(responders or {})}
        self._serves = frozenset(serves if serves is not None else kind_names())
        self.sees_images = sees_images
        self.calls = 0
        self.seen: list[Request] = []

    @property
    def serves(self) -> frozenset[str]:  # type: ignore[override]
        return self._serves

    @property
    def identity(self) -> str:
        return self._identity

    def answer(self, kind_name: str, requests: list[Request]) -> list[Response]:
        if kind_name not in self.responders:
            raise NotImplementedError(f"FakeBackend has no fixture for {kind_name!r} requests; pass responders=")
        self.calls += len(requests)
        self.seen += requests
        return [self.responders[kind_name](r) for r in requests]
