"""`harness show NAME` / `harness ls KIND NAME`: what one plug-in is and what it takes.

Everything shown is read from the plug-in itself (its docstring, its pydantic `Params`, a
benchmark's `known_options` and data, a metric's `direction`), so the help cannot drift from
the code. Plug-ins are imported here, never at module level (tests/test_architecture.py).
"""

from __future__ import annotations

import inspect
from typing import Any

from pydantic import BaseModel
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from harness.api.benchmark import ROLES
from harness.errors import HarnessError, UnknownNameError


def _registries() -> dict[str, Any]:
    from harness.catalog import ATTACKS, BENCHMARKS, JUDGES, METHODS, METRICS

    return {"benchmarks": BENCHMARKS, "methods": METHODS, "metrics": METRICS, "attacks": ATTACKS, "judges": JUDGES}


def describe(kind: str | None, name: str) -> list[Any]:
    """Renderables describing `name` (in every kind that has it, or only in `kind`)."""
    from harness.registry import did_you_mean
    from harness.zoo.specs import ModelZoo

    registries = _registries()
    kinds = [kind] if kind else [*registries, "models"]
    zoo_names = [n for n, _ in ModelZoo().describe()]
    blocks: list[Any] = []
    for k in kinds:
        if k == "models":
            if name in zoo_names:
                blocks.append(_model(name))
        elif name in registries[k]:
            blocks.append({"benchmarks": _benchmark, "methods": _parameters, "metrics": _metric,
                           "attacks": _parameters, "judges": _parameters}[k](k, name, registries[k].get(name)))
    if not blocks:
        known = [n for k in kinds for n in (zoo_names if k == "models" else registries[k].names())]
        where = f"{kind[:-1]} " if kind else ""
        raise UnknownNameError(f"unknown {where}{name!r}{did_you_mean(name, known)} (see `harness ls{' ' + kind if kind else ''}`)")
    return blocks


def _doc(obj: Any) -> str:
    """The docstring's first paragraph: what the plug-in is, in its author's words."""
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip()


def _title(kind: str, name: str, obj: Any) -> Text:
    text = Text.assemble((f"{kind[:-1]} ", "dim"), (name, "bold"))
    doc = _doc(obj)
    return Text.assemble(text, "\n", doc) if doc else text


def _type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return text or str(annotation).replace("typing.", "")


def _parameters(kind: str, name: str, cls: Any) -> Group:
    """A method's, attack's or judge's `Params`: name, type, default, meaning."""
    params = getattr(cls, "Params", None)
    if not (isinstance(params, type) and issubclass(params, BaseModel)) or not params.model_fields:
        return Group(_title(kind, name, cls), Text("takes no parameters", style="dim"))
    table = Table(title="parameters", title_justify="left")
    for column in ("name", "type", "default", "meaning"):
        table.add_column(column)
    for field_name, field in params.model_fields.items():
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        table.add_row(field_name, escape(_type(field.annotation)), escape(default), escape(field.description or ""))
    return Group(_title(kind, name, cls), table)


def _benchmark(kind: str, name: str, cls: Any) -> Group:
    """Splits (read from the data when it is at hand), roles, options and default metrics."""
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    bench = cls()
    try:
        splits = ", ".join(f"{s} ({len(items)})" for s, items in sorted(bench.data.splits.items()))
    except HarnessError as e:  # hub data not downloaded, a gated set: say so, show the rest
        splits = f"(not readable here: {str(e).splitlines()[0]})"
    table.add_row("splits", escape(splits))
    roles = []
    for role in ROLES:
        try:
            roles.append(f"{role} -> {bench.resolve_split(role)}")
        except HarnessError:
            roles.append(f"{role}: none")
    table.add_row("roles", escape("; ".join(roles)))
    options = cls.known_options() if hasattr(cls, "known_options") else {}
    table.add_row("options", escape("\n".join(f"{k}: {v}" for k, v in sorted(options.items())) or "none declared"))
    table.add_row("default metrics", escape(", ".join(cls.default_metrics) or "none"))
    if cls.headline_metrics:
        table.add_row("headline", escape(", ".join(cls.headline_metrics)))
    table.add_row("request kinds", escape(", ".join(cls.request_kinds)))
    return Group(_title(kind, name, cls), table)


def _metric(kind: str, name: str, cls: Any) -> Group:
    """The splits a metric takes, its direction, and what else it needs."""
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    takes = (f"a split or role: {name}@forget, {name}@retain, {name}@holdout or {name}@<split>"
             if cls.needs_split else f"no split: write it as {name}")
    table.add_row("splits", escape(takes))
    table.add_row("direction", escape(cls.direction() or "not declared"))
    if cls.request_kinds:
        table.add_row("needs", escape(", ".join(cls.request_kinds) + " requests"))
    if cls.needs_reference_run:
        table.add_row("reference", "needs a reference run (--reference MODEL); no value without one")
    role = getattr(cls, "judge_role", None)
    if role:
        table.add_row("judge role", escape(str(role)))
    return Group(_title(kind, name, cls), table)


def _model(name: str) -> Group:
    from harness.zoo.specs import ModelZoo

    spec = ModelZoo().get(name)
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for field in ("kind", "path", "revision", "dtype", "chat_template", "backend", "builder", "description"):
        value = getattr(spec, field, None)
        if value not in (None, ""):
            table.add_row(field, escape(str(value)))
    return Group(Text.assemble(("model ", "dim"), (name, "bold")), table)
