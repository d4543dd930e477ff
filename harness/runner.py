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
from harness.errors import AdapterNoEffectError, HarnessError
from harness.evaluate import evaluate, load_reference, resolve_metrics
from harness.io import cache_dir
from harness.metrics.base import MetricResult
from harness.provenance import git_commit, now, package_versions
from harness.results import CacheStats, MetricValue, Provenance, RunSummary, cell_dir, write_cell
from harness.zoo.specs import ModelSpec, ModelZoo

log = logging.getLogger(__name__)

NO_EFFECT_RTOL = 1e-6  # logits closer than this (relative to their scale) count as unchanged


@dataclass
class RunReport:
    cells: list[Path] = field(default_factory=list)
    cache_hits: int = 0
    cache_misses: int = 0
    seconds: float = 0.0


class Runner:
    def __init__(self, config: ExperimentConfig, console: Console | None = None):
        validate(config)
        self.config = config
        self.console = console or Console(stderr=True)
        self.zoo = ModelZoo(config.zoo)
        self.output_dir = Path(config.output_dir)
        self.cache = None
        if config.cache:
            self.cache = ResponseCache(Path(config.cache_dir or cache_dir()) / CACHE_FILE)
        self._loaded: dict[str, Any] = {}  # model name -> LoadedModel, shared by its methods
        self._cell_backends: list[CachedBackend] = []  # every backend the current cell used
        self.report = RunReport()

    # --- the grid ---------------------------------------------------------------------
    def run(self) -> RunReport:
        from harness.catalog import build_benchmark

        start = time.time()
        cfg = self.config
        for bentry in cfg.benchmarks:
            options = dict(bentry.params)
            if cfg.limit is not None:
                options.setdefault("limit", cfg.limit)
            benchmark = build_benchmark(bentry.name, **options)
            metric_ids = list(cfg.metrics or benchmark.default_metrics)
            reference = self._reference(benchmark, bentry, metric_ids)
            # The model as given goes first, so attacks can compare against it.
            methods = sorted(cfg.methods, key=lambda m: m.name != NO_METHOD)
            for model_name in cfg.models:
                original = None
                for method in methods:
                    results = self._cell(benchmark, bentry, metric_ids, model_name, method, reference, original)
                    if method.name == NO_METHOD:
                        original = results
        self.report.seconds = time.time() - start
        return self.report

    def _reference(self, benchmark, bentry: NamedEntry, metric_ids: list[str]) -> dict[str, MetricResult] | None:
        ref = self.config.reference
        if ref is None:
            return None
        if ref.results:
            return load_reference(ref.results)
        return self._cell(benchmark, bentry, metric_ids, ref.model, NamedEntry(name=NO_METHOD), None)

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
        evaluation = evaluate(benchmark, metrics, cached, reference)
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
        from harness.backends.hf import HFBackend

        cfg = self.config
        backend = CachedBackend(HFBackend(spec, device=cfg.device, batch_size=cfg.batch_size, adapter=adapter), self.cache)
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

        ctx = AttackContext(
            benchmark=benchmark, spec=eval_spec, artifact=artifact, backend=cached,
            make_backend=self._backend,
            load_model=lambda: load_hf_model(eval_spec, device=self.config.device, adapter=adapter),
            results=evaluation.results, original=original, output_dir=out, seed=self.config.seed,
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
        recipe = cell_hash(spec.model_dump(), method.model_dump(), bentry.model_dump(),
                           benchmark.data.data_hash(), self.config.seed)
        existing = ModelArtifact.load(out)
        if existing and existing.config_hash == recipe:
            self.console.print(f"[dim]reusing {method.name} artefact for {spec.name} ({out})[/dim]")
            return existing
        base = self._load(spec)
        self.console.print(f"[bold]applying[/bold] {method.name} to {spec.name}")
        artifact = METHODS.get(method.name)(**method.params).apply(base, benchmark, out, self.config.seed)
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
                         cfg.seed, cfg.limit, cfg.reference.model_dump() if cfg.reference else None)

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
