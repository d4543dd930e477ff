"""The judges of a run, by role: which judge answers which question.

Metrics name a role, not a judge: ASR asks the `harm` judge whether a response complied,
the refusal rate asks the `refusal` judge, emergent-misalignment asks the `score` judge
(0-100) with the question file's own prompts. The config's `judges:` maps roles to judges;
`harm` and `refusal` default to the refusal-pattern judge, so a run needs no judge model
unless it asks for one. Model judges get their backend (and the shared response cache)
from the runner, through `make_backend(model_name)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import ConfigError
from harness.api.judge import Judge, JudgeRequest, Verdict

DEFAULT_JUDGES: dict[str, dict[str, Any]] = {
    "harm": {"kind": "refusal-patterns"},
    "refusal": {"kind": "refusal-patterns"},
}
# The roles the built-in metrics and methods ask (ASR and preference methods: harm, refusal;
# emergent misalignment: score, and label for its deception files); `harness validate` refuses
# a role close to one of these.
JUDGE_ROLES: tuple[str, ...] = ("harm", "refusal", "score", "label")


class JudgeSpec(BaseModel):
    """`{kind: classifier, model: my-judge, template: prompts/judge.txt, params: {...}}`."""

    model_config = ConfigDict(extra="forbid")
    kind: str
    model: str | None = None  # a zoo model name, local path or hub id
    template: str | None = None  # a file holding the judge prompt ({prompt}/{question}, {response}/{answer})
    params: dict[str, Any] = Field(default_factory=dict)

    def template_text(self) -> str | None:
        if self.template is None:
            return None
        path = Path(self.template).expanduser()
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"judge template {self.template!r} cannot be read ({type(e).__name__})") from e


def build_judge(spec: JudgeSpec, backend: Any = None) -> Judge:
    from harness.catalog import JUDGES

    cls = JUDGES.get(spec.kind)
    try:
        return cls(backend=backend, template=spec.template_text(), **spec.params)
    except TypeError as e:
        raise ConfigError(f"judge {spec.kind!r}: {e}") from e


class JudgePanel:
    """Role -> judge, built lazily (a judge model loads only when a metric asks for it)."""

    def __init__(self, specs: dict[str, JudgeSpec] | None = None,
                 make_backend: Callable[[str], Any] | None = None):
        merged = {role: JudgeSpec(**d) for role, d in DEFAULT_JUDGES.items()}
        merged.update(specs or {})
        self.specs = merged
        self.make_backend = make_backend
        self._judges: dict[str, Judge] = {}
        self.used: set[str] = set()

    def get(self, role: str) -> Judge:
        if role not in self._judges:
            spec = self.specs.get(role)
            if spec is None:
                raise ConfigError(
                    f"no judge for role {role!r}: add `judges: {{{role}: {{kind: ..., model: ...}}}}` to the config "
                    f"(roles set: {', '.join(sorted(self.specs))})"
                )
            backend = None
            if spec.model is not None:
                if self.make_backend is None:
                    raise ConfigError(f"judge {role!r} names a model, but no backend factory was given")
                backend = self.make_backend(spec.model)
            self._judges[role] = build_judge(spec, backend)
        return self._judges[role]

    def judge(self, requests: list[JudgeRequest]) -> dict[JudgeRequest, Verdict]:
        """Verdicts for judge requests of any roles: one batched judge call per role."""
        by_role: dict[str, list[JudgeRequest]] = {}
        for jr in dict.fromkeys(requests):
            by_role.setdefault(jr.role, []).append(jr)
        out: dict[JudgeRequest, Verdict] = {}
        for role, jrs in by_role.items():
            self.used.add(role)
            out.update(zip(jrs, self.get(role).judge(jrs)))
        return out

    def identities(self) -> dict[str, Any]:
        """Provenance of the judges this run used, by role."""
        return {role: {"model_name": self.specs[role].model, **self.get(role).identity()}
                for role in sorted(self.used)}
