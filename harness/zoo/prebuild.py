"""Build a run's missing built-in models side by side before its cells start.

Built-in tiny models train single-threaded (`harness.zoo.tiny.single_threaded`), so on a
2-core machine two of them build in parallel processes in little more than the time of one:
the demo's three models take about as long as its slowest pair instead of their sum. Models
already built are never touched; with fewer than two to build, nothing is started here and
the model builds lazily on first use, as before. The weights are the same either way.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Iterable

from harness.zoo.specs import ModelSpec


def _builder(name: str):
    from harness.catalog import BUILDERS

    return BUILDERS.get(name)


def needs_build(spec: ModelSpec) -> bool:
    """True for a built-in model whose recipe has not been built yet (cheap: hashes its recipe)."""
    if not spec.builder:
        return False
    try:
        return _builder(spec.builder)(dry_run=True) is None
    except TypeError:  # a third-party builder without dry_run: let it build lazily
        return False


def _build(target: str) -> str:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return str(_builder(target)())


def prebuild(specs: Iterable[ModelSpec], console=None, workers: int | None = None) -> list[str]:
    """Build the missing built-in models among `specs` in parallel; returns the builders run."""
    pending = list(dict.fromkeys(s.builder for s in specs if needs_build(s)))
    workers = min(len(pending), workers or os.cpu_count() or 1)
    if len(pending) < 2 or workers < 2:
        return []
    if console is not None:
        console.print(f"[bold]building[/bold] {len(pending)} built-in models in parallel ({workers} processes)")
    # spawn, not fork: the parent may already hold torch's thread pools.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        list(pool.map(_build, pending))
    return pending
