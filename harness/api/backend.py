"""The backend interface: the only thing in the harness that talks to a model.

Metrics speak in requests (see `harness.api.requests`); a backend answers whole lists of
them at once so that it can batch, sort by length and pick its own batch size. The
interface is deliberately narrow (in the spirit of lm-evaluation-harness's `LM`): a backend
declares the request kinds it `serves` and has one batched method per kind, named after the
kind (`generate`, `loglikelihood`, ...). `run` takes a mixed list, sends each kind to its
method in one call, and puts the answers back in input order. `identity` names the model
for the response cache, so a rerun against the same weights is answered without loading them.

Images: a backend says whether its model can see them (`sees_images`). A request that
carries images sent to one that cannot is refused with one line, never answered as text.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from typing import ClassVar

from harness.api.kinds import kind
from harness.api.requests import Request, Response
from harness.errors import HarnessError


class Backend(ABC):
    """A model behind the request kinds it serves.

    Subclasses set `name` and `serves`, implement `identity` and one batched method per
    served kind (each returns one response per request, in input order). `calls` counts the
    requests actually sent to the model, so the cache layer and tests see what was computed.
    """

    name: ClassVar[str] = "base"
    serves: ClassVar[frozenset[str]] = frozenset()
    # Whether the model reads the images a request carries (an image-text-to-text model).
    sees_images: bool = False

    calls: int = 0

    @property
    @abstractmethod
    def identity(self) -> str:
        """A stable string naming the model's weights (+ adapter): the model half of a cache key."""

    def cache_identity(self, kind_name: str) -> str:
        """The model half of the cache key for answers of one kind (routing adds the backend)."""
        return self.identity

    def answer(self, kind_name: str, requests: list[Request]) -> list[Response]:
        """One kind's requests, batched: the backend's method named after the kind."""
        return getattr(self, kind(kind_name).name)(requests)

    def run(self, requests: list[Request]) -> list[Response]:
        """Answer a mixed list: one batched call per request kind, answers in input order."""
        groups: dict[str, list[int]] = defaultdict(list)
        for i, request in enumerate(requests):
            groups[request.kind].append(i)
        check_served(self, groups)
        check_images(self, requests)
        out: list[Response | None] = [None] * len(requests)
        for kind_name, indices in groups.items():
            responses = self.answer(kind_name, [requests[i] for i in indices])
            if len(responses) != len(indices):
                raise RuntimeError(f"backend {self.name!r} returned {len(responses)} {kind_name} responses for {len(indices)}")
            for i, response in zip(indices, responses):
                out[i] = response
        return out  # type: ignore[return-value]


def check_served(backend: Backend, kinds: "dict[str, object] | set[str] | frozenset[str]") -> None:
    unserved = sorted(k for k in kinds if k not in backend.serves)
    if unserved:
        raise HarnessError(
            f"backend {backend.name!r} cannot answer {', '.join(repr(k) for k in unserved)} requests "
            f"(it serves: {', '.join(sorted(backend.serves))})"
        )


def check_images(backend: Backend, requests: list[Request]) -> None:
    with_images = sum(1 for r in requests if getattr(r, "images", ()))
    if with_images and not backend.sees_images:
        raise HarnessError(
            f"backend {backend.name!r} cannot see images, but {with_images} request(s) carry them "
            "(use an image-text-to-text model, `kind: image-text-to-text` in its zoo spec)"
        )
