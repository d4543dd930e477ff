"""The backend interface: the only thing in the harness that talks to a model.

Metrics speak in requests (generate / loglikelihood / hidden states, see
`harness.requests`); a backend answers whole lists of them at once so that it can batch,
sort by length and pick its own batch size. The interface is deliberately narrow (in the
spirit of lm-evaluation-harness's `LM`): three batched methods plus `run`, which takes a
mixed list, sends each kind to its method in one call, and puts the answers back in input
order. `identity` names the model for the response cache, so a rerun against the same
weights can be answered without loading them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from typing import ClassVar

from harness.errors import HarnessError
from harness.requests import (
    GenerateRequest,
    GenerateResponse,
    GradNormRequest,
    GradNormResponse,
    HiddenStatesRequest,
    HiddenStatesResponse,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
    Request,
    Response,
)

_METHODS = {"generate": "generate", "loglikelihood": "loglikelihood", "hidden_states": "hidden_states",
            "grad_norm": "grad_norm"}


class Backend(ABC):
    """A model behind the three request kinds.

    Subclasses set `name` and `serves`, implement the three batched methods (each returns
    one response per request, in input order) and `identity`. `calls` counts the requests
    actually sent to the model, so the cache layer and tests can see what was computed.
    """

    name: ClassVar[str] = "base"
    serves: ClassVar[frozenset[str]] = frozenset({"generate", "loglikelihood", "hidden_states"})

    calls: int = 0

    @property
    @abstractmethod
    def identity(self) -> str:
        """A stable string naming the model's weights (+ adapter): the model half of a cache key."""

    @abstractmethod
    def generate(self, requests: list[GenerateRequest]) -> list[GenerateResponse]:
        """Completions, one response (with `n` texts) per request."""

    @abstractmethod
    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[LoglikelihoodResponse]:
        """Per-token statistics of each continuation given its context."""

    @abstractmethod
    def hidden_states(self, requests: list[HiddenStatesRequest]) -> list[HiddenStatesResponse]:
        """Hidden states at the requested layers, pooled over each continuation."""

    def grad_norm(self, requests: list[GradNormRequest]) -> list[GradNormResponse]:
        """Gradient norms of each continuation's loss (optional: only backends that list
        "grad_norm" in `serves` implement it; `run` refuses the kind for the others)."""
        raise HarnessError(f"backend {self.name!r} does not compute gradient norms")

    def run(self, requests: list[Request]) -> list[Response]:
        """Answer a mixed list: one batched call per request kind, answers in input order."""
        groups: dict[str, list[int]] = defaultdict(list)
        for i, request in enumerate(requests):
            groups[request.kind].append(i)
        unserved = sorted(k for k in groups if k not in self.serves)
        if unserved:
            raise HarnessError(
                f"backend {self.name!r} cannot answer {', '.join(repr(k) for k in unserved)} requests "
                f"(it serves: {', '.join(sorted(self.serves))})"
            )
        out: list[Response | None] = [None] * len(requests)
        for kind, indices in groups.items():
            method = getattr(self, _METHODS[kind])
            responses = method([requests[i] for i in indices])
            if len(responses) != len(indices):
                raise RuntimeError(f"backend {self.name!r} returned {len(responses)} {kind} responses for {len(indices)}")
            for i, response in zip(indices, responses):
                out[i] = response
        return out  # type: ignore[return-value]
