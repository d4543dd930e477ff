"""Run an experiment: validate → plan the cells → build the models they need → execute.

The steps live in their own modules, in data-flow order: `plan.py` (cells, shards,
dependencies, resume), `session.py` (what the run's cells share), `cell.py` (one cell:
apply → evaluate → attacks → assemble), `executor.py` (here or on Ray). A run resumes:
a finished cell is skipped, a method's saved artefact is reused when its recipe matches,
and every answer comes from the response cache when it can.
"""

from __future__ import annotations

import time

from rich.console import Console

from harness.config import ExperimentConfig, validate
from harness.errors import ConfigError
from harness.executor import EXECUTORS, run_local, run_on_ray
from harness.plan import Cell, Shard, assign, finished_results
from harness.session import RunReport, Session


class Runner:
    def __init__(self, config: ExperimentConfig, console: Console | None = None, force: bool = False):
        """`force`: recompute cells already finished on disk (answers still come from the cache)."""
        built = validate(config)  # every check, data read, before any model loads
        self.config = config
        self.session = Session(config, console=console, force=force)
        self.session.benchmarks.update(built)
        self.console = self.session.console

    @property
    def report(self) -> RunReport:
        return self.session.report

    def run(self, shard: Shard | None = None, executor: str = "local") -> RunReport:
        """Run the grid's cells (or one shard's share), in order: per benchmark the reference
        first, then per model the method-less cell, then methods. `executor="ray"` runs each
        cell as a Ray task instead of in this process."""
        if executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {executor!r} (choose one of: {', '.join(EXECUTORS)})")
        start = time.time()
        cells = assign(self.config, shard)
        if shard is not None:
            self.console.print(f"[bold]shard {shard}[/bold]: {len(cells)} of {len(assign(self.config, None))} cells")
        if executor == "ray":
            run_on_ray(self.session, cells)
        else:
            self._prebuild(cells)
            run_local(self.session, cells)
        self._store_relative_metrics()
        self.report.seconds = time.time() - start
        return self.report

    def _store_relative_metrics(self) -> None:
        """AVQI normalised over the finished cells of each benchmark, stored with its model set's id."""
        from harness.normalised import store_normalised_avqi

        for name in dict.fromkeys(b.name for b in self.config.benchmarks):
            store_normalised_avqi(self.session.output_dir, name)

    def _prebuild(self, cells: list[Cell]) -> None:
        """Build the missing built-in models the unfinished cells need, in parallel (harness/zoo/prebuild.py)."""
        from harness.zoo.prebuild import prebuild

        cfg, session = self.config, self.session
        todo = [c for c in cells if session.force or finished_results(session, c) is None]
        names = {c.model for c in todo}
        if todo and cfg.reference is not None and cfg.reference.model:
            names.add(cfg.reference.model)
        names |= {j.model for j in cfg.judges.values() if j.model}
        prebuild([session.zoo.get(n) for n in sorted(names)], console=self.console)
