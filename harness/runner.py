"""Run an experiment grid: for each benchmark, model and method, apply -> evaluate -> write.

Stages write artefacts so a run resumes: a method's trained adapter is reused when its
`artifact.json` matches the cell's config hash, evaluation goes through the response
cache (a rerun makes zero model calls), and each cell's results are written atomically.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.artifacts import ModelArtifact
from harness.backends.cached import CachedBackend
from harness.cache import CACHE_FILE, ResponseCache
from harness.config import NO_METHOD, ExperimentConfig, NamedEntry, cell_hash, validate
from harness.errors import AdapterNoEffectError, ConfigError, HarnessError
from harness.evaluate import evaluate, load_reference, resolve_metrics
from harness.io import cache_dir
from harness.metrics.base import MetricResult
from harness.provenance import git_commit, now, package_versions
from harness.executor import EXECUTORS, Cell, Shard, assign, original_cell, reference_cell, run_on_ray
from harness.results import (SUMMARY_FILE, CacheStats, MetricValue, Provenance, RunSummary, cell_dir,
                             read_summary, write_cell)
from harness.zoo.specs import ModelSpec, ModelZoo

log = logging.getLogger(__name__)

NO_EFFECT_RTOL = 1e-6  # logits closer than this (relative to their scale) count as unchanged


@dataclass
class RunReport:
    cells: list[Path] = field(default_factory=list)
    skipped: int = 0  # cells finished earlier under the same recipe and code, not recomputed
    cache_hits: int = 0
    cache_misses: int = 0
    seconds: float = 0.0


@dataclass
class _GridState:
    """What one run shares between its cells: dependency results and built benchmarks."""

    memo: dict[Cell, dict[str, MetricResult]] = field(default_factory=dict)
    benchmarks: dict[int, tuple[Any, list[str]]] = field(default_factory=dict)
    reference_results: dict[str, MetricResult] | None = None


class Runner:
    def __init__(self, config: ExperimentConfig, console: Console | None = None, force: bool = False):
        """`force`: recompute cells already finished on disk (answers still come from the cache)."""
        validate(config)
        self.config = config
        self.force = force
        self.console = console or Console(stderr=True)
        self.zoo = ModelZoo(config.zoo)
        self.output_dir = Path(config.output_dir)
        self.cache = None
        if config.cache:
            self.cache = ResponseCache(Path(config.cache_dir or cache_dir()) / CACHE_FILE)
        self._loaded: dict[str, Any] = {}  # model name -> LoadedModel, shared by its methods
        from harness.judges.panel import JudgePanel

        self.judges = JudgePanel(config.judges, make_backend=lambda name: self._backend(self.zoo.get(name), None))
        self._cell_backends: list[CachedBackend] = []  # every backend the current cell used
        self.report = RunReport()

    # --- the grid ---------------------------------------------------------------------
    def run(self, shard: Shard | None = None, executor: str = "local") -> RunReport:
        """Run the grid's cells (or one shard's share, see harness/executor.py), in order:
        per benchmark the reference first, then per model the method-less cell, then methods.

        `executor="ray"` runs each cell as a Ray task instead of in this process."""
        if executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {executor!r} (choose one of: {', '.join(EXECUTORS)})")
        start = time.time()
        cells = assign(self.config, shard)
        if shard is not None:
            self.console.print(f"[bold]shard {shard}[/bold]: {len(cells)} of {len(assign(self.config, None))} cells")
        if executor == "local":
            self._prebuild(cells)
        if executor == "ray":
            run_on_ray(self, cells)
        else:
            grid = self._grid_state()
            for cell in cells:
                self._run_with_dependencies(cell, grid)
        self.report.seconds = time.time() - start
        return self.report

    def _prebuild(self, cells: list[Cell]) -> None:
        """Build the missing built-in models the unfinished cells need, in parallel (harness/zoo/prebuild.py)."""
        from harness.zoo.prebuild import prebuild

        cfg = self.config
        todo = [c for c in cells if self.force or self._finished_cell(c, self._grid_state()) is None]
        names = {c.model for c in todo}
        if todo and cfg.reference is not None and cfg.reference.model:
            names.add(cfg.reference.model)
        names |= {j.model for j in cfg.judges.values() if j.model}
        prebuild([self.zoo.get(n) for n in sorted(names)], console=self.console)

    def _grid_state(self) -> _GridState:
        return _GridState()

    def _run_with_dependencies(self, cell: Cell, grid: _GridState) -> dict[str, MetricResult]:
        """Run one cell, first getting the results it needs: the reference model's and (for
        attacks) the method-less model's, each from this run, from disk, or computed here."""
        cfg = self.config
        if not self.force:  # resume: a cell finished under the same recipe and code is not redone
            finished = self._finished_cell(cell, grid)
            if finished is not None:
                self.console.print(f"[dim]finished earlier: {cell.label(cfg)} (skipped; --force recomputes)[/dim]")
                self.report.skipped += 1
                if cell.method is None:
                    grid.memo[cell] = finished
                return finished
        benchmark, metric_ids = self._grid_benchmark(cell.benchmark, grid)
        bentry = cfg.benchmarks[cell.benchmark]
        reference = original = None
        if cfg.reference is not None and cfg.reference.results:
            if grid.reference_results is None:
                grid.reference_results = load_reference(cfg.reference.results)
            reference = grid.reference_results
        ref_cell, orig_cell = reference_cell(cfg, cell), original_cell(cfg, cell)
        if ref_cell is not None:
            reference = self._dependency(ref_cell, grid)
        if orig_cell is not None:
            original = self._dependency(orig_cell, grid)
        method = NamedEntry(name=NO_METHOD) if cell.method is None else cfg.methods[cell.method]
        results = self._cell(benchmark, bentry, metric_ids, cell.model, method, reference, original)
        if method.name == NO_METHOD:  # only method-less cells are ever needed by others
            grid.memo[cell] = results
        return results

    def _dependency(self, cell: Cell, grid: _GridState) -> dict[str, MetricResult]:
        if cell in grid.memo:
            return grid.memo[cell]
        finished = self._finished_cell(cell, grid)
        if finished is not None:
            self.console.print(f"[dim]using finished {cell.label(self.config)} from {self.output_dir}[/dim]")
            grid.memo[cell] = finished
            return finished
        self.console.print(f"[dim]computing {cell.label(self.config)}: needed here, not on disk yet[/dim]")
        return self._run_with_dependencies(cell, grid)

    def _finished_cell(self, cell: Cell, grid: _GridState) -> dict[str, MetricResult] | None:
        """A finished cell's results on disk, when written under this cell's config hash."""
        cfg = self.config
        path = self.output_dir / cell.key(cfg)
        if not (path / SUMMARY_FILE).is_file():
            return None
        try:
            summary = read_summary(path / SUMMARY_FILE)
        except HarnessError:
            return None  # unreadable: recompute rather than trust it
        _, metric_ids = self._grid_benchmark(cell.benchmark, grid)
        method = NamedEntry(name=NO_METHOD) if cell.method is None else cfg.methods[cell.method]
        expected = self._cell_config_hash(self.zoo.get(cell.model), method, cfg.benchmarks[cell.benchmark], metric_ids)
        if summary.provenance.config_hash != expected:
            return None
        if summary.provenance.git_commit != git_commit():  # other code may compute other numbers
            return None
        return load_reference(path)

    def _grid_benchmark(self, index: int, grid: _GridState) -> tuple[Any, list[str]]:
        """The benchmark of config.benchmarks[index] (built once per run) and its metric ids."""
        from harness.catalog import build_benchmark

        if index not in grid.benchmarks:
            cfg = self.config
            bentry = cfg.benchmarks[index]
            options = dict(bentry.params)
            if cfg.limit is not None:
                options.setdefault("limit", cfg.limit)
            benchmark = build_benchmark(bentry.name, **options)
            grid.benchmarks[index] = (benchmark, list(cfg.metrics or benchmark.default_metrics))
        return grid.benchmarks[index]

    # --- one cell ---------------------------------------------------------------------
    def _cell(self, benchmark, bentry, metric_ids, model_name, method: NamedEntry, reference, original=None):
        cfg = self.config
        self._cell_backends = []
        spec = self.zoo.get(model_name)
        out = cell_dir(self.output_dir, model_name, method.name, bentry.name)
        label = f"{model_name} × {method.name} × {bentry.name}"
        t0 = time.time()
        artifact = None
        if method.name != NO_METHOD:
            artifact = self._apply(spec, method, benchmark, bentry)
        t_apply = time.time() - t0
        adapter = artifact.adapter_path if artifact else None
        eval_spec = spec
        if artifact and artifact.checkpoint_path:
            eval_spec = spec.model_copy(update={"path": artifact.checkpoint_path, "builder": None, "adapter": None})
        cached = self._backend(eval_spec, adapter)
        backend = cached.backend
        metrics = resolve_metrics(benchmark, metric_ids, cfg.seed)
        self.console.print(f"[bold]evaluating[/bold] {label}")
        self.judges.used = set()
        evaluation = evaluate(benchmark, metrics, cached, reference, judges=self.judges)
        if artifact is not None:  # what the method measured itself (likelihood displacement)
            evaluation.results.update(artifact.metric_results())
        if cached.stats.misses and (artifact or eval_spec.adapter):
            self._check_took_effect(backend, spec.model_copy(update={"adapter": None}), benchmark, label)
        t_eval = time.time() - t0 - t_apply
        if cfg.attacks:
            self._attack(benchmark, spec, eval_spec, adapter, artifact, cached, evaluation, original, out,
                         unlearned=method.name != NO_METHOD)
        t_attack = time.time() - t0 - t_apply - t_eval
        summary = RunSummary(
            model=model_name,
            method=method.name,
            benchmark=bentry.name,
            metrics={
                mid: MetricValue(value=r.value, ci_low=r.ci_low, ci_high=r.ci_high, n=r.n,
                                 higher_is_better=r.higher_is_better, details=r.details)
                for mid, r in evaluation.results.items()
            },
            provenance=Provenance(
                config_hash=self._cell_config_hash(spec, method, bentry, metric_ids),
                git_commit=git_commit(),
                harness_version=_harness_version(),
                package_versions=package_versions(),
                seed=cfg.seed,
                model_identity=backend.identity,
                base_model=spec.name,
                model_path=eval_spec.path or "",
                adapter_hash=artifact.hash if artifact else None,
                method_hparams=artifact.hparams if artifact else {},
                chat_template_hash=backend.chat_template_hash,
                dataset_source=benchmark.data.source,
                dataset_hash=benchmark.data.data_hash(),
                benchmark_options=dict(benchmark.options),
                reference=self._reference_provenance(),
                judge=self.judges.identities() or None,
                device=cfg.device,
                created_at=now(),
            ),
            cache=CacheStats(hits=sum(b.stats.hits for b in self._cell_backends),
                             misses=sum(b.stats.misses for b in self._cell_backends)),
            timing={"apply_s": round(t_apply, 2), "evaluate_s": round(t_eval, 2), "attack_s": round(t_attack, 2)},
        )
        write_cell(out, summary, evaluation.samples)
        self.report.cells.append(out)
        self.report.cache_hits += summary.cache.hits
        self.report.cache_misses += summary.cache.misses
        self.console.print(
            f"  wrote {out} (cache: {summary.cache.hits} hits, {summary.cache.misses} misses; "
            f"{t_apply:.1f}s apply, {t_eval:.1f}s eval, {t_attack:.1f}s attacks)"
        )
        return evaluation.results

    def _backend(self, spec: ModelSpec, adapter: str | None) -> CachedBackend:
        from harness.backends.routing import build_backend

        cfg = self.config
        # Per request kind (spec.backends / backend: auto); plain HF unless vLLM or an endpoint is used.
        # lora_expected: a vLLM engine built for the original model can then serve the methods' adapters.
        lora = any(m.name != NO_METHOD for m in cfg.methods) or bool(cfg.attacks)
        routed = build_backend(spec, device=cfg.device, batch_size=cfg.batch_size, adapter=adapter, lora_expected=lora)
        backend = CachedBackend(routed, self.cache)
        self._cell_backends.append(backend)
        return backend

    def _check_took_effect(self, backend, base_spec: ModelSpec, benchmark, label: str) -> None:
        """Fail loudly when an adapter or checkpoint answers exactly like its base model.

        Catches an adapter that silently did nothing (lm-evaluation-harness#2432,
        open-unlearning#161) before its numbers are reported under the method's name.
        """
        items = _probe_items(benchmark)
        probes = [benchmark.prompt(i) + benchmark.target(i.answer) for i in items] or ["Hello"]
        from harness.backends.hf import HFBackend

        # The base weights a method trained from are already in memory: compare against them.
        loaded = self._loaded.get(base_spec.name) if not self.zoo.get(base_spec.name).adapter else None
        base = HFBackend(base_spec, device=self.config.device, batch_size=self.config.batch_size, loaded=loaded)
        ours, theirs = backend.logits_fingerprint(probes), base.logits_fingerprint(probes)
        # Float noise only: an adapter can route the same sums through other kernels.
        tolerance = NO_EFFECT_RTOL * max(1.0, float(theirs.abs().max()))
        if float((ours - theirs).abs().max()) <= tolerance:
            raise AdapterNoEffectError(
                f"{label}: the model gives the base model's logits on probe prompts (within {tolerance:.1e}); "
                "its adapter or checkpoint had no effect, so its numbers would be the base model's"
            )

    def _attack(self, benchmark, spec, eval_spec, adapter, artifact, cached, evaluation, original, out,
                unlearned: bool) -> None:
        """Run the configured attacks on the model; add their results to the cell.

        Models without a method get only the attacks that make a baseline there (the probes).
        """
        from harness.attacks.base import AttackContext
        from harness.catalog import ATTACKS
        from harness.zoo.load import load_hf_model

        cfg = self.config
        ref_name = cfg.reference.model if cfg.reference and cfg.reference.model else None
        original_spec: ModelSpec | None = spec
        if spec.name == ref_name and spec.name not in cfg.models:
            # The reference's own cell: its original is the model the grid unlearns (when one),
            # not itself, so "CKA to the original" reads as what full deletion looks like.
            original_spec = self.zoo.get(cfg.models[0]) if len(cfg.models) == 1 else None
        ctx = AttackContext(
            benchmark=benchmark, spec=eval_spec, artifact=artifact, backend=cached,
            make_backend=self._backend,
            load_model=lambda: load_hf_model(eval_spec, device=cfg.device, adapter=adapter),
            results=evaluation.results, original=original, output_dir=out, seed=cfg.seed,
            original_spec=original_spec,
            reference_spec=self.zoo.get(ref_name) if ref_name else None,
        )
        by_id = {(r.split, r.item_id): r for r in evaluation.samples}
        forget = benchmark.forget_split()
        for entry in self.config.attacks:
            attack = ATTACKS.get(entry.name)(**entry.params)
            if not (unlearned or attack.on_original):
                continue
            self.console.print(f"  [bold]attack[/bold] {entry.name}")
            for mid, result in attack.run(ctx).items():
                evaluation.results[mid] = result
                for item_id, value in result.per_item.items():
                    record = by_id.get((forget, item_id))
                    if record is not None:
                        record.values[mid] = value

    def _apply(self, spec: ModelSpec, method: NamedEntry, benchmark, bentry) -> ModelArtifact:
        """Train the method, or reuse its saved artefact when the recipe is unchanged."""
        from harness.catalog import METHODS

        out = cell_dir(self.output_dir, spec.name, method.name, bentry.name) / "artifact"
        cls = METHODS.get(method.name)
        recipe = cell_hash(spec.model_dump(), method.model_dump(), bentry.model_dump(),
                           benchmark.data.data_hash(), self.config.seed)
        uses_judges = getattr(cls, "uses_judges", False)  # preference methods judge their own samples
        if uses_judges:
            recipe = cell_hash(recipe, {r: s.model_dump() for r, s in sorted(self.judges.specs.items())})
        existing = ModelArtifact.load(out)
        if existing and existing.config_hash == recipe:
            self.console.print(f"[dim]reusing {method.name} artefact for {spec.name} ({out})[/dim]")
            return existing
        base = self._load(spec)
        self.console.print(f"[bold]applying[/bold] {method.name} to {spec.name}")
        instance = cls(**method.params)
        if uses_judges:
            instance.judges = self.judges
        artifact = instance.apply(base, benchmark, out, self.config.seed)
        artifact.config_hash = recipe
        artifact.save(out)
        return artifact

    def _load(self, spec: ModelSpec):
        from harness.zoo.load import load_hf_model

        if spec.name not in self._loaded:
            self._loaded[spec.name] = load_hf_model(spec, device=self.config.device)
        return self._loaded[spec.name]

    def _cell_config_hash(self, spec, method, bentry, metric_ids) -> str:
        cfg = self.config
        return cell_hash(spec.model_dump(), method.model_dump(), bentry.model_dump(), metric_ids,
                         cfg.seed, cfg.limit, cfg.reference.model_dump() if cfg.reference else None,
                         [a.model_dump() for a in cfg.attacks], {k: v.model_dump() for k, v in cfg.judges.items()},
                         _harness_version())

    def _reference_provenance(self) -> dict[str, Any] | None:
        ref = self.config.reference
        return ref.model_dump(exclude_none=True) if ref else None


def _probe_items(benchmark) -> list:
    try:
        return benchmark.split(benchmark.forget_split())[:4]
    except HarnessError:  # an evaluation-only benchmark (WMDP) has no forget split
        return []


def _harness_version() -> str:
    from harness import __version__

    return __version__
