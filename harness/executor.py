"""Run planned cells: here, one after the other, or as Ray tasks; dependencies first.

Why cells may land anywhere: a cell that needs another cell's results takes them from this
run's memory when it computed them, else loads the finished cell from disk
(`harness.evaluate.load_reference`) when its config hash matches, else computes them itself
(the response cache makes that cheap, and it writes the same file the owner would). So
`--shard i/n` runs on different machines need nothing from each other, and their results
merge by pointing the leaderboard at the common output dir.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cell import run_cell
from harness.config import NO_METHOD, ExperimentConfig
from harness.errors import HarnessError
from harness.io import exclusive, remove_stale_temp_files
from harness.plan import Cell, finished_results, original_cell, reference_cell
from harness.session import Session

if TYPE_CHECKING:  # pragma: no cover
    from harness.api.metric import MetricResult

EXECUTORS = ("local", "ray")


def run_local(session: Session, cells: list[Cell]) -> None:
    """The cells in order, each announced as `cell k/N` with the run's ETA (from the cells
    computed so far; cells finished earlier are skipped in a moment and not counted)."""
    import time

    spent, computed = 0.0, 0
    for k, cell in enumerate(cells, 1):
        session.console.print(f"[bold]cell {k}/{len(cells)}[/bold] {cell.label(session.config)}"
                              f"{eta(spent, computed, len(cells) - k + 1)}", highlight=False)
        start, skipped = time.time(), session.report.skipped
        run_with_dependencies(session, cell)
        if session.report.skipped == skipped:
            spent, computed = spent + time.time() - start, computed + 1


def eta(spent: float, computed: int, remaining: int) -> str:
    """`(ETA 3m 20s)` for `remaining` cells at the mean time of the `computed` ones; empty before any."""
    if not computed or remaining <= 0:
        return ""
    seconds = round(spent / computed * remaining)
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    text = f"{hours}h {m:02d}m" if hours else f"{m}m {s:02d}s" if m else f"{s}s"
    return f" [dim](ETA {text})[/dim]"


def run_with_dependencies(session: Session, cell: Cell) -> "dict[str, MetricResult]":
    """Run one cell, first getting the results it needs: the reference model's and (for
    attacks) the method-less model's, each from this run, from disk, or computed here."""
    cfg = session.config
    if not session.force:  # resume: a cell finished under the same recipe and code is not redone
        finished = finished_results(session, cell)
        if finished is not None:
            session.console.print(f"[dim]finished earlier: {cell.label(cfg)} (skipped; --force recomputes)[/dim]")
            session.report.skipped += 1
            if cell.method is None:
                session.memo[cell] = finished
            return finished
    reference = original = None
    if cfg.reference is not None and cfg.reference.results:
        if session.reference_results is None:
            from harness.evaluate import load_reference

            session.reference_results = load_reference(cfg.reference.results)
        reference = session.reference_results
    ref_cell, orig_cell = reference_cell(cfg, cell), original_cell(cfg, cell)
    if ref_cell is not None:
        reference = _dependency(session, ref_cell)
    if orig_cell is not None:
        original = _dependency(session, orig_cell)
    out = Path(cfg.output_dir) / cell.key(cfg)
    # One run computes a cell at a time: a second run on the same output dir waits for it,
    # then takes its finished result instead of doing the work twice.
    with exclusive(out / ".cell.lock",
                   on_wait=lambda: session.console.print(f"[dim]waiting: another run is computing {cell.label(cfg)}[/dim]")):
        finished = None if session.force else finished_results(session, cell)
        if finished is not None:
            session.console.print(f"[dim]finished by another run: {cell.label(cfg)} (skipped)[/dim]")
            session.report.skipped += 1
            results = finished
        else:
            removed = remove_stale_temp_files(out)  # left by a run that was killed mid-write
            if removed:
                session.console.print(f"[dim]removed {removed} unfinished file(s) a killed run left in {out}[/dim]")
            results = run_cell(session, cell, reference, original)
    if cell.method is None or cfg.methods[cell.method].name == NO_METHOD:  # only these are needed by others
        session.memo[cell] = results
    return results


def _dependency(session: Session, cell: Cell) -> "dict[str, MetricResult]":
    if cell in session.memo:
        return session.memo[cell]
    finished = finished_results(session, cell)
    if finished is not None:
        session.console.print(f"[dim]using finished {cell.label(session.config)} from {session.output_dir}[/dim]")
        session.memo[cell] = finished
        return finished
    session.console.print(f"[dim]computing {cell.label(session.config)}: needed here, not on disk yet[/dim]")
    return run_with_dependencies(session, cell)


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

    from harness.config import validate

    if os.path.isdir(cwd):  # relative paths in the config mean the driver's directory
        os.chdir(cwd)
    config = ExperimentConfig.model_validate_json(config_json)
    validate(config)
    session = Session(config, console=Console(stderr=True))
    deps = ((reference_cell(config, cell), reference), (original_cell(config, cell), original))
    for dep, outcome in deps:
        if dep is not None and outcome is not None:
            session.memo[dep] = outcome.results
    results = run_with_dependencies(session, cell)
    r = session.report
    return CellOutcome(results, [str(p) for p in r.cells], r.cache_hits, r.cache_misses)


def run_on_ray(session: Session, cells: list[Cell]) -> None:
    """Run `cells` as Ray tasks (one per cell, `num_gpus` per cell, no retries), dependencies
    passed as object refs so Ray orders them; fills `session.report`.

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
    config = session.config
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
        session.report.cells.extend(Path(p) for p in outcome.paths)
        session.report.cache_hits += outcome.cache_hits
        session.report.cache_misses += outcome.cache_misses
