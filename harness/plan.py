"""Plan an experiment: the grid's cells, their dependencies, one shard's share, what is done.

A *cell* is one (model, method, benchmark) evaluation: one `summary.json` under the output
dir. Two cells feed others:
- the **reference** cell (config.reference.model × none × benchmark), whose results every
  cell of that benchmark compares against (forget quality);
- the **original** cell (model × none × benchmark), whose results the attacks on that
  model's unlearned cells compare against (recovery), when "none" is among the methods.

Assignment: round-robin over the cells sorted by their relative result path, so shares
differ in size by at most one and the same config always splits the same way. `"hash"`
(a stable sha256 of the path, modulo n) keeps a cell on its shard when the grid grows, at
the price of uneven shares; choose it with `assignment=`.

Resume: a cell is finished when its `summary.json` was written under the same config hash
(model, method, benchmark, metrics, attacks, judges, seed, limit) and the same code commit.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from harness.config import NO_METHOD, ExperimentConfig, NamedEntry, cell_hash
from harness.errors import ConfigError, HarnessError
from harness.results import SUMMARY_FILE, cell_dir, read_summary

if TYPE_CHECKING:  # pragma: no cover
    from harness.api.metric import MetricResult
    from harness.session import Session

Assignment = Literal["round-robin", "hash"]


class ShardError(ConfigError):
    """A `--shard` value that is not `i/n` with 1 <= i <= n."""


@dataclass(frozen=True)
class Cell:
    """One grid cell. `benchmark`/`method` index into the config's lists (entries carry params).

    `reference` marks the reference role: evaluated without a reference of its own, as the
    runner always did. The same (model, none, benchmark) can also be a grid cell; then both
    share one result path and the grid cell (written last) is the one on disk.
    """

    benchmark: int
    model: str
    method: int | None  # None: no method (the reference role, or "none" absent from methods)
    reference: bool = False

    def method_name(self, config: ExperimentConfig) -> str:
        return NO_METHOD if self.method is None else config.methods[self.method].name

    def key(self, config: ExperimentConfig) -> str:
        """The cell's result directory relative to the output dir: its identity on disk."""
        return cell_dir("", self.model, self.method_name(config), config.benchmarks[self.benchmark].name).as_posix()

    def label(self, config: ExperimentConfig) -> str:
        return f"{self.model} × {self.method_name(config)} × {config.benchmarks[self.benchmark].name}"


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as written on the command line
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`"i/n"` -> Shard(i, n); anything else is a ShardError with one line."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise ShardError(f"--shard takes I/N (e.g. 1/4), not {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= i <= n:
        raise ShardError(f"--shard {text}: need 1 <= I <= N and N >= 1")
    return Shard(i, n)


# --- the grid ----------------------------------------------------------------------------
def grid_cells(config: ExperimentConfig) -> list[Cell]:
    """Every cell of the experiment in run order: per benchmark, the reference first, then per
    model the method-less cell before the methods (attacks compare against it)."""
    cells: list[Cell] = []
    order = sorted(range(len(config.methods)), key=lambda k: config.methods[k].name != NO_METHOD)
    ref_model = _reference_model(config)
    for b in range(len(config.benchmarks)):
        if ref_model:
            cells.append(Cell(b, ref_model, None, reference=True))
        for model in config.models:
            cells.extend(Cell(b, model, k) for k in order)
    return cells


def reference_cell(config: ExperimentConfig, cell: Cell) -> Cell | None:
    """The reference-role cell `cell` compares against, if a reference model is configured."""
    model = _reference_model(config)
    if cell.reference or model is None:
        return None
    return Cell(cell.benchmark, model, None, reference=True)


def _reference_model(config: ExperimentConfig) -> str | None:
    """The reference model to evaluate; saved reference results (`results:`) take precedence."""
    ref = config.reference
    return ref.model if ref is not None and ref.model and not ref.results else None


def original_cell(config: ExperimentConfig, cell: Cell) -> Cell | None:
    """The method-less cell of the same model whose results attacks compare against."""
    if cell.reference or cell.method is None or config.methods[cell.method].name == NO_METHOD:
        return None
    none = [k for k, m in enumerate(config.methods) if m.name == NO_METHOD]
    return Cell(cell.benchmark, cell.model, none[0]) if none else None


def dependencies(config: ExperimentConfig, cell: Cell) -> list[Cell]:
    return [c for c in (reference_cell(config, cell), original_cell(config, cell)) if c is not None]


def assign(config: ExperimentConfig, shard: Shard | None, assignment: Assignment = "round-robin") -> list[Cell]:
    """This shard's cells, in run order. Cells sharing a result path (a reference model that
    is also a grid model) go to one shard together, so no two shards own one file."""
    cells = grid_cells(config)
    if shard is None or shard.count == 1:
        return cells
    keys = sorted({c.key(config) for c in cells})
    if assignment == "round-robin":
        owner = {k: i % shard.count for i, k in enumerate(keys)}
    elif assignment == "hash":
        owner = {k: int(hashlib.sha256(k.encode()).hexdigest(), 16) % shard.count for k in keys}
    else:
        raise ConfigError(f"unknown shard assignment {assignment!r} (round-robin, hash)")
    return [c for c in cells if owner[c.key(config)] == shard.index - 1]


# --- resume ------------------------------------------------------------------------------
def method_entry(config: ExperimentConfig, cell: Cell) -> NamedEntry:
    return NamedEntry(name=NO_METHOD) if cell.method is None else config.methods[cell.method]


def cell_config_hash(session: "Session", cell: Cell) -> str:
    """What a cell's results depend on besides the code: its recipe, metrics and run settings."""
    from harness import __version__

    cfg = session.config
    _, metric_ids = session.benchmark(cell.benchmark)
    return cell_hash(session.zoo.get(cell.model).recipe_fields(), method_entry(cfg, cell).model_dump(),
                     cfg.benchmarks[cell.benchmark].model_dump(), metric_ids, cfg.seed, cfg.limit,
                     cfg.reference.model_dump() if cfg.reference else None, [a.model_dump() for a in cfg.attacks],
                     {k: v.model_dump() for k, v in cfg.judges.items()}, __version__,
                     *([{"train_limit": cfg.train_limit}] if cfg.train_limit is not None else []))


def finished_results(session: "Session", cell: Cell) -> "dict[str, MetricResult] | None":
    """A finished cell's results on disk, when written under this cell's config hash and code."""
    from harness.evaluate import load_reference
    from harness.provenance import git_commit

    path = Path(session.config.output_dir) / cell.key(session.config)
    if not (path / SUMMARY_FILE).is_file():
        return None
    try:
        summary = read_summary(path / SUMMARY_FILE)
    except HarnessError:
        return None  # unreadable: recompute rather than trust it
    if summary.provenance.config_hash != cell_config_hash(session, cell):
        return None
    if summary.provenance.git_commit != git_commit():  # other code may compute other numbers
        return None
    return load_reference(path)
