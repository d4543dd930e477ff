"""A backend whose model answers under an intervention (harness/api/intervention.py).

Its identity is the inner model's plus the intervention's, so the response cache keeps the
intervened answers apart from the plain ones and serves them again on a rerun. The
intervention is entered around each batch the cache could not answer, and left afterwards.
"""

from __future__ import annotations

from typing import Any, ClassVar

from harness.api.backend import Backend
from harness.api.intervention import Intervention
from harness.api.requests import Request, Response
from harness.errors import HarnessError


class IntervenedBackend(Backend):
    name: ClassVar[str] = "intervened"

    def __init__(self, inner: Backend, intervention: Intervention):
        if intervention.enter is None:
            raise HarnessError(f"intervention {intervention.identity} has nothing to apply (no `enter`)")
        self.inner, self.intervention = inner, intervention
        self.calls = 0

    @property
    def serves(self) -> frozenset[str]:  # type: ignore[override]
        return self.inner.serves

    @property
    def sees_images(self) -> bool:  # type: ignore[override]
        return self.inner.sees_images

    @property
    def identity(self) -> str:
        return f"{self.inner.identity}+{self.intervention.identity}"

    def run(self, requests: list[Request]) -> list[Response]:
        if not requests:
            return []
        with self.intervention.enter(self.inner):  # type: ignore[misc]
            out = self.inner.run(requests)
        self.calls += len(requests)
        return out

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr in ("inner", "intervention"):
            raise AttributeError(attr)
        return getattr(self.inner, attr)
