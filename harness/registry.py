"""Lazy, named registries for benchmarks, methods, metrics, backends and models.

Built-ins are listed as "module:attr" strings with a one-line description, so `harness ls`
and config validation never import torch-heavy or optional modules. Third-party packages
add entries through the entry-point groups `harness.benchmarks`, `harness.methods` and
`harness.metrics`. User code registers with the decorator (`@METHODS.register("name")`).
"""

from __future__ import annotations

import difflib
import importlib
import threading
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, TypeVar

from harness.errors import UnknownNameError

T = TypeVar("T")


@dataclass
class _Entry:
    target: Any  # the object, or a "module:attr" string until first use
    description: str


class Registry(Generic[T]):
    def __init__(self, kind: str, entry_point_group: str | None = None, classes_of: str | None = None):
        """`classes_of`: "module:Class" of a base class; then a name written `module:Class` (not
        registered) is imported and accepted only when it is a subclass of it (a config is data:
        it may name a class of the contract, never call an arbitrary function)."""
        self.kind = kind
        self.group = entry_point_group
        self.classes_of = classes_of
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._plugins_loaded = False

    def add_lazy(self, name: str, target: str, description: str) -> None:
        """Register `module:attr` without importing it."""
        with self._lock:
            self._entries[name] = _Entry(target, description)

    def register(self, name: str, description: str | None = None) -> Callable[[T], T]:
        """Decorator: register an object under `name` (the docstring's first line describes it)."""

        def wrap(obj: T) -> T:
            with self._lock:
                self._entries[name] = _Entry(obj, description or _first_line(obj))
            return obj

        return wrap

    def _load_plugins(self) -> None:
        if self._plugins_loaded or self.group is None:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            if ep.name not in self._entries:
                self._entries[ep.name] = _Entry(ep.value, f"(plugin {ep.value})")

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def describe(self) -> list[tuple[str, str]]:
        """(name, one-line description) for every entry, for `harness ls`."""
        return [(n, self._entries[n].description) for n in self.names()]

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._entries

    def get(self, name: str) -> T:
        self._load_plugins()
        entry = self._entries.get(name)
        if entry is None and self.classes_of and ":" in name:
            return self._import_class(name)
        if entry is None:
            raise UnknownNameError(self.unknown_message(name))
        if isinstance(entry.target, str):
            module_name, _, attr = entry.target.partition(":")
            obj = getattr(importlib.import_module(module_name), attr)
            with self._lock:
                entry.target = obj
                if entry.description.startswith("(plugin"):
                    entry.description = _first_line(obj) or entry.description
        return entry.target

    def check(self, name: str) -> None:
        """Raise UnknownNameError for an unknown name (a `module:Class` name is imported and checked)."""
        if self.classes_of and ":" in name and name not in self:
            self._import_class(name)
        elif name not in self:
            raise UnknownNameError(self.unknown_message(name))

    def _import_class(self, name: str) -> Any:
        """`module:Class`, imported, and refused unless a subclass of `classes_of`; checked before
        anything is instantiated."""
        import re

        from harness.errors import ConfigError

        module_name, _, attr = name.partition(":")
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", module_name) or not re.fullmatch(r"[A-Za-z_]\w*", attr):
            raise ConfigError(f"{self.kind} {name!r}: write a class as module:Class (e.g. my_pkg.methods:MyMethod)")
        base_module, _, base_attr = (self.classes_of or "").partition(":")
        base = getattr(importlib.import_module(base_module), base_attr)
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ConfigError(f"{self.kind} {name!r}: cannot import {module_name!r} ({e}); install it or put it "
                              "on PYTHONPATH") from None
        obj = getattr(module, attr, None)
        if not (isinstance(obj, type) and issubclass(obj, base)):
            what = "not found" if obj is None else f"a {type(obj).__name__}, not a subclass of {base.__module__}.{base.__name__}"
            raise ConfigError(f"{self.kind} {name!r}: {attr!r} in {module_name!r} is {what}; a config may name only "
                              f"a {self.kind} class")
        return obj

    def unknown_message(self, name: str) -> str:
        return f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())} (known: {', '.join(self.names()) or 'none'})"


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """`; did you mean 'a', 'b'?` for the choices close to a mistyped name, else empty: the one
    hint every unknown name gets (registries, split names and roles, options, judge roles)."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _first_line(obj: Any) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
