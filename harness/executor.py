"""Split an experiment grid into independent cells, pick one shard's share, run cells on Ray.

A *cell* is one (model, method, benchmark) evaluation: one `summary.json` under the output
dir. Two cells feed others:
- the **reference** cell (config.reference.model × none × benchmark), whose results every
  cell of that benchmark compares against (forget quality);
- the **original** cell (model × none × benchmark), whose results the attacks on that
  model's unlearned cells compare against (recovery), when "none" is among the methods.

Why cells may land anywhere: a cell that needs another cell's results takes them from this
run's memory when it computed them, else loads the finished cell from disk
(`harness.evaluate.load_reference`) when its config hash matches, else computes them itself
(the response cache makes that cheap, and it writes the same file the owner would). So
`--shard i/n` runs on different machines need nothing from each other, and their results
merge by pointing the leaderboard at the common output dir.

Assignment: round-robin over the cells sorted by their relative result path, so shares
differ in size by at most one and the same config always splits the same way. `"hash"`
(a stable sha256 of the path, modulo n) keeps a cell on its shard when the grid grows, at
the price of uneven shares; choose it with `assignment=`.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness.config import NO_METHOD, ExperimentConfig
from harness.errors import ConfigError, HarnessError
from harness.results import cell_dir

if TYPE_CHECKING:  # pragma: no cover
    from harness.metrics.base import MetricResult
    from harness.runner import Runner

Assignment = Literal["round-robin", "hash"]
EXECUTORS = ("local", "ray")


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


# --- Ray ---------------------------------------------------------------------------------
def cell_num_gpus(config: ExperimentConfig, model: str) -> float:
    """GPUs a cell reserves under Ray.

    config.num_gpus (one number, or per model name) when given; else 0 on a CPU run (device
    "cpu", or "auto" where the driver sees no CUDA); else the model spec's `num_gpus` (its
    vLLM tensor x data parallel size) or 1. Ray then runs as many cells at once as the
    cluster's GPUs allow."""
    given = config.num_gpus
    if isinstance(given, dict) and model in given:
        return float(given[model])
    if isinstance(given, (int, float)):
        return float(given)
    device = config.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not device.startswith("cuda"):
        return 0.0
    from harness.zoo.specs import ModelZoo

    return float(getattr(ModelZoo(config.zoo).get(model), "num_gpus", None) or 1)


@dataclass
class CellOutcome:
    """What a Ray task sends back: the results (for dependants) and the report's counts."""

    results: dict[str, MetricResult]
    paths: list[str]
    cache_hits: int
    cache_misses: int


def _run_cell_task(config_json: str, cwd: str, cell: Cell, reference: CellOutcome | None,
                   original: CellOutcome | None) -> CellOutcome:
    """Body of a Ray task: a fresh Runner in the worker runs one cell.

    `reference`/`original` are the outcomes of dependency cells this run also executes (Ray
    resolves their object refs before the task starts); a dependency that is None here the
    worker loads from disk or computes itself."""
    from rich.console import Console

    from harness.runner import Runner

    if os.path.isdir(cwd):  # relative paths in the config mean the driver's directory
        os.chdir(cwd)
    runner = Runner(ExperimentConfig.model_validate_json(config_json), console=Console(stderr=True))
    grid = runner._grid_state()
    deps = ((reference_cell(runner.config, cell), reference), (original_cell(runner.config, cell), original))
    for dep, outcome in deps:
        if dep is not None and outcome is not None:
            grid.memo[dep] = outcome.results
    results = runner._run_with_dependencies(cell, grid)
    r = runner.report
    return CellOutcome(results, [str(p) for p in r.cells], r.cache_hits, r.cache_misses)


def run_on_ray(runner: Runner, cells: list[Cell]) -> None:
    """Run `cells` as Ray tasks (one per cell, `num_gpus` per cell, no retries), dependencies
    passed as object refs so Ray orders them; fills `runner.report`.

    Connects to RAY_ADDRESS when set, else starts a local Ray; an already initialised Ray
    (e.g. `ray.init(num_cpus=2)` in a test or notebook) is used as it is. Workers must see
    the same files (output dir, cache, local model paths): one machine or a shared disk."""
    try:
        import ray
    except ImportError as e:
        raise HarnessError("--executor ray needs Ray: pip install 'llm-safety-harness[ray]'") from e
    from harness.io import cache_dir

    if not ray.is_initialized():
        env = {k: v for k, v in os.environ.items() if k.startswith(("HARNESS_", "HF_"))}
        ray.init(runtime_env={"env_vars": env} if env else None)
    config = runner.config
    # Workers may start in another directory: send absolute output and cache dirs.
    shipped = config.model_copy(update={
        "output_dir": str(Path(config.output_dir).resolve()),
        "cache_dir": str(Path(config.cache_dir).resolve()) if config.cache_dir else str(cache_dir()),
    })
    payload, cwd = shipped.model_dump_json(), os.getcwd()
    task = ray.remote(max_retries=0)(_run_cell_task)
    refs: dict[Cell, Any] = {}
    for cell in cells:  # run order: a cell's dependencies in this run come before it
        deps = [refs.get(d) if d is not None else None
                for d in (reference_cell(config, cell), original_cell(config, cell))]
        refs[cell] = task.options(num_gpus=cell_num_gpus(config, cell.model), num_cpus=1,
                                  name=f"cell {cell.label(config)}").remote(payload, cwd, cell, *deps)
    for cell in cells:
        try:
            outcome: CellOutcome = ray.get(refs[cell])
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, HarnessError):  # one line for the CLI, not a remote traceback
                raise cause from None
            raise
        runner.report.cells.extend(Path(p) for p in outcome.paths)
        runner.report.cache_hits += outcome.cache_hits
        runner.report.cache_misses += outcome.cache_misses
