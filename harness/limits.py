"""Bounds on user-supplied structured input (configs), checked before anything walks it.

A config is a few hundred values a few levels deep. A YAML file can be far bigger than it
looks (aliases: ten lines can expand to a billion values, which `model_dump` then copies
forever) or far deeper (Python's recursion limit ends in a traceback). `check_shape` walks
the loaded data iteratively, never visiting more than MAX_VALUES nodes, so the check
itself is cheap whatever the input.
"""

from __future__ import annotations

from typing import Any

from harness.errors import ConfigError

MAX_VALUES = 1_000_000
MAX_DEPTH = 64


def check_shape(data: Any, source: str) -> None:
    """ConfigError unless `data` has at most MAX_VALUES values, nested at most MAX_DEPTH deep."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"{source}: more than {MAX_VALUES:,} values (YAML aliases that expand?); "
                              "a config is far smaller")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{source}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            count += len(node)  # the keys
        elif isinstance(node, (list, tuple)):
            stack.extend((v, depth + 1) for v in node)
