"""Registries: lazy built-ins, decorator registration, plugins, and 'did you mean'."""

from __future__ import annotations

import sys

import pytest

from harness.errors import UnknownNameError
from harness.registry import Registry


def test_lazy_entry_is_imported_on_first_use_only():
    reg: Registry = Registry("thing")
    reg.add_lazy("json-dumps", "json:dumps", "serialise")
    assert reg.describe() == [("json-dumps", "serialise")]
    import json

    assert reg.get("json-dumps") is json.dumps


def test_catalog_listing_imports_no_model_code(monkeypatch):
    # monkeypatch puts the modules back afterwards: later tests must see the same classes.
    for mod in [m for m in sys.modules if m.startswith(("harness.methods.", "harness.benchmarks.fictitious", "harness.backends.hf"))]:
        monkeypatch.delitem(sys.modules, mod)
    from harness.catalog import BENCHMARKS, METHODS, METRICS

    assert "npo" in METHODS.names() and "tofu" in BENCHMARKS.names() and "forget_quality" in METRICS.names()
    METHODS.describe()
    assert "harness.methods.npo" not in sys.modules


def test_decorator_registration_and_docstring_description():
    reg: Registry = Registry("method")

    @reg.register("my-method")
    class MyMethod:
        """Forget things politely.

        More text that is not the description.
        """

    assert reg.get("my-method") is MyMethod
    assert reg.describe() == [("my-method", "Forget things politely.")]


def test_unknown_name_suggests_close_matches():
    reg: Registry = Registry("benchmark")
    for name in ["fictitious-facts", "tofu", "muse"]:
        reg.add_lazy(name, "json:dumps", "")
    with pytest.raises(UnknownNameError) as e:
        reg.get("fictitous-facts")
    assert "did you mean 'fictitious-facts'" in str(e.value)
    with pytest.raises(UnknownNameError) as e:
        reg.check("zzzz")
    assert "did you mean" not in str(e.value) and "known: fictitious-facts, muse, tofu" in str(e.value)


def test_entry_point_plugins_are_discovered(monkeypatch):
    from importlib.metadata import EntryPoint

    import harness.registry as registry_mod

    def fake_entry_points(group):
        assert group == "harness.metrics"
        return [EntryPoint(name="plugin-metric", value="json:loads", group=group)]

    monkeypatch.setattr(registry_mod, "entry_points", fake_entry_points)
    reg: Registry = Registry("metric", "harness.metrics")
    assert "plugin-metric" in reg.names()
    import json

    assert reg.get("plugin-metric") is json.loads


def test_every_registered_model_names_a_registered_builder():
    """A built-in model spec's builder is a BUILDERS name (configs cannot import code), and it resolves."""
    from harness.catalog import BUILDERS, MODELS

    for name in MODELS.names():
        spec = MODELS.get(name)
        assert spec.name == name
        if spec.builder:
            assert spec.builder in BUILDERS.names(), (name, spec.builder)
            assert callable(spec.build_function())
