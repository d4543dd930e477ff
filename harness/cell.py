"""One cell of the grid, start to finish: apply the method → evaluate → attack → assemble.

`run_cell` is the whole pipeline of one (model, method, benchmark) cell. Each step is one
function below; the cell's result is assembled in one place (harness/assemble.py) and
written atomically, summary last. Which cells run, in which order, and where their
dependencies come from is the planner's and executor's business (plan.py, executor.py).
"""

from __future__ import annotations

import time
from typing import Any

from harness.api.metric import MetricResult
from harness.artifacts import ModelArtifact
from harness.assemble import assemble_summary
from harness.config import NO_METHOD, NamedEntry, cell_hash
from harness.errors import AdapterNoEffectError, HarnessError
from harness.evaluate import evaluate, resolve_metrics
from harness.plan import Cell, cell_config_hash, method_entry
from harness.results import cell_dir, write_cell
from harness.session import Session
from harness.zoo.specs import ModelSpec

NO_EFFECT_RTOL = 1e-6  # logits closer than this (relative to their scale) count as unchanged


def run_cell(session: Session, cell: Cell, reference: dict[str, MetricResult] | None,
             original: dict[str, MetricResult] | None = None) -> dict[str, MetricResult]:
    """Compute one cell and write its result directory; return its metric results."""
    cfg = session.config
    benchmark, metric_ids = session.benchmark(cell.benchmark)
    bentry = cfg.benchmarks[cell.benchmark]
    method = method_entry(cfg, cell)
    spec = session.zoo.get(cell.model)
    out = cell_dir(session.output_dir, cell.model, method.name, bentry.name)
    label = f"{cell.model} × {method.name} × {bentry.name}"
    first_backend = len(session.backends.used)
    t0 = time.time()
    if getattr(benchmark, "per_instance", False):
        return run_per_instance_cell(session, cell, benchmark, method, spec, out, label, first_backend)

    artifact = (apply_method(session, spec, method, session.training_benchmark(cell.benchmark), bentry)
                if method.name != NO_METHOD else None)
    t_apply = time.time() - t0

    adapter = artifact.adapter_path if artifact else None
    eval_spec = spec
    if artifact and artifact.checkpoint_path:
        eval_spec = spec.model_copy(update={"path": artifact.checkpoint_path, "builder": None, "adapter": None})
    backend = session.backends.make(eval_spec, adapter)
    session.console.print(f"[bold]evaluating[/bold] {label}")
    session.judges.used = set()
    evaluation = evaluate(benchmark, resolve_metrics(benchmark, metric_ids, cfg.seed), backend, reference,
                          judges=session.judges)
    results = dict(evaluation.results)
    if cell.reference:
        _mark_reference_role(results)
    if artifact is not None:  # what the method measured itself (likelihood displacement)
        results.update(artifact.metric_results())
    if backend.stats.misses and (artifact or eval_spec.adapter):
        check_took_effect(session, backend, spec.model_copy(update={"adapter": None}), benchmark, label)
    t_eval = time.time() - t0 - t_apply

    if cfg.attacks:
        results.update(run_attacks(session, benchmark, spec, eval_spec, adapter, artifact, backend, results,
                                   evaluation.samples, original, out, unlearned=method.name != NO_METHOD))
    t_attack = time.time() - t0 - t_apply - t_eval

    _finish(session, cell, out, benchmark, method.name, results, evaluation.samples, backend, spec,
            first_backend, {"apply_s": t_apply, "evaluate_s": t_eval, "attack_s": t_attack},
            f"{t_apply:.1f}s apply, {t_eval:.1f}s eval, {t_attack:.1f}s attacks", eval_path=eval_spec.path or "",
            artifact=artifact, judges=session.judges.identities(),
            reference=cfg.reference.model_dump(exclude_none=True) if cfg.reference else None)
    if spec.kind == "text-to-image":
        _write_grid(session, spec, method.name, benchmark, metric_ids, backend, out)
    return results


def _finish(session: Session, cell: Cell, out: Any, benchmark: Any, method: str, results: dict[str, MetricResult],
            samples: list, backend: Any, spec: ModelSpec, first_backend: int, timing: dict[str, float], detail: str,
            **provenance: Any) -> Any:
    """Assemble the cell's summary (harness/assemble.py), write it with its samples (summary
    last), count it in the run's report, and say so; `provenance`: eval_path, artifact, judges,
    reference."""
    cfg = session.config
    summary = assemble_summary(
        model=cell.model, method=method, benchmark_name=cfg.benchmarks[cell.benchmark].name, benchmark=benchmark,
        results=results, config_hash=cell_config_hash(session, cell), seed=cfg.seed, device=cfg.device,
        backend=backend.backend, spec=spec, cache=session.backends.counts(first_backend), timing=timing,
        requested=cfg.metrics, limits={"limit": cfg.limit, "train_limit": cfg.train_limit}, **provenance,
    )
    write_cell(out, summary, samples)
    report = session.report
    report.cells.append(out)
    report.cache_hits += summary.cache.hits
    report.cache_misses += summary.cache.misses
    session.console.print(f"  wrote {out} (cache: {summary.cache.hits} hits, {summary.cache.misses} misses; {detail})")
    return summary


def run_per_instance_cell(session: Session, cell: Cell, benchmark: Any, method: NamedEntry, spec: ModelSpec, out: Any,
                          label: str, first_backend: int) -> dict[str, MetricResult]:
    """A benchmark run one instance at a time (harness/edit_protocol.py): the method is a
    defence applied to each instance of the fresh model, attacked, and undone."""
    from harness.catalog import METHODS
    from harness.edit_protocol import run_edit_protocol

    cfg = session.config
    defence = METHODS.get(method.name)(**method.params) if method.name != NO_METHOD else None
    backend = session.backends.make(spec)
    session.console.print(f"[bold]edit → attack → restore[/bold] {label}")
    run = run_edit_protocol(benchmark, backend, session.backends, defence, cfg.seed, session.console)
    _finish(session, cell, out, benchmark, method.name, run.results, run.samples, backend, spec, first_backend,
            {"apply_s": 0.0, "evaluate_s": run.seconds, "attack_s": 0.0},
            f"{len(run.edit_losses)} edits made; {run.seconds:.1f}s", eval_path=spec.path or "", artifact=None,
            judges={}, reference=None)
    return run.results


def _write_grid(session: Session, spec: ModelSpec, method: str, benchmark: Any, metric_ids: list[str], backend: Any,
                out: Any) -> None:
    """`grid.png`: the cell's text-to-image generations beside the base model's, per prompt
    (harness/grids.py); both answered from the cache after the evaluation."""
    from harness.evaluate import collect_requests
    from harness.grids import write_grid

    requests = collect_requests(resolve_metrics(benchmark, metric_ids, session.config.seed))
    before = None if method == NO_METHOD else session.backends.make(spec)
    path = write_grid(out / "grid.png", requests, backend, before)
    if path is not None:
        session.console.print(f"  grid: {path}")


def _mark_reference_role(results: dict[str, MetricResult]) -> None:
    """The reference cell's own reference-run metrics have nothing to compare against by design:
    say so, rather than "no reference run", which would send the user looking for a missing one."""
    from harness.api.metric import parse_metric_id
    from harness.catalog import METRICS

    for mid, r in results.items():
        name = parse_metric_id(mid)[0]
        if r.value is None and name in METRICS and getattr(METRICS.get(name), "needs_reference_run", False):
            r.details["reason"] = "this row is the reference run; it is not compared against itself"


def apply_method(session: Session, spec: ModelSpec, method: NamedEntry, benchmark: Any, bentry: NamedEntry) -> ModelArtifact:
    """Train the method, or reuse its saved artefact when the recipe is unchanged."""
    from harness.catalog import METHODS

    out = cell_dir(session.output_dir, spec.name, method.name, bentry.name) / "artifact"
    cls = METHODS.get(method.name)
    recipe = cell_hash(spec.recipe_fields(), method.model_dump(), bentry.model_dump(), benchmark.data.data_hash(),
                       session.config.seed)
    if getattr(cls, "uses_judges", False):  # preference methods judge their own samples
        recipe = cell_hash(recipe, {r: s.model_dump() for r, s in sorted(session.judges.specs.items())})
    existing = ModelArtifact.load(out)
    if existing and existing.config_hash == recipe:
        session.console.print(f"[dim]reusing {method.name} artefact for {spec.name} ({out})[/dim]")
        return existing
    base = session.load(spec)
    session.console.print(f"[bold]applying[/bold] {method.name} to {spec.name}")
    artifact = cls(**method.params).apply(base, benchmark, session.context(out))
    artifact.config_hash = recipe
    artifact.save(out)
    return artifact


def check_took_effect(session: Session, backend: Any, base_spec: ModelSpec, benchmark: Any, label: str) -> None:
    """Fail loudly when an adapter or checkpoint answers exactly like its base model.

    Catches an adapter that silently did nothing (lm-evaluation-harness#2432,
    open-unlearning#161) before its numbers are reported under the method's name.
    """
    items = _probe_items(benchmark)
    probes = [benchmark.prompt(i) + benchmark.target(i.answer) for i in items] or ["Hello"]
    # The base weights a method trained from are already in memory: compare against them.
    loaded = session.loaded.get(base_spec.name) if not session.zoo.get(base_spec.name).adapter else None
    # Cached and routed backends pass `logits_fingerprint` through to the model's HF half.
    base = (session.backends.in_memory(loaded, batch_size=session.config.batch_size) if loaded is not None
            else session.backends.make(base_spec))
    ours, theirs = backend.logits_fingerprint(probes), base.logits_fingerprint(probes)
    # Float noise only: an adapter can route the same sums through other kernels.
    tolerance = NO_EFFECT_RTOL * max(1.0, float(theirs.abs().max()))
    if float((ours - theirs).abs().max()) <= tolerance:
        raise AdapterNoEffectError(
            f"{label}: the model gives the base model's logits on probe prompts (within {tolerance:.1e}); "
            "its adapter or checkpoint had no effect, so its numbers would be the base model's"
        )


def run_attacks(session: Session, benchmark: Any, spec: ModelSpec, eval_spec: ModelSpec, adapter: str | None,
                artifact: ModelArtifact | None, backend: Any, results: dict[str, MetricResult], samples: list,
                original: dict[str, MetricResult] | None, out: Any, unlearned: bool) -> dict[str, MetricResult]:
    """Run the configured attacks on the cell's model; their results, and per-item values in `samples`.

    Models without a method get only the attacks that make a baseline there (the probes)."""
    from harness.api.attack import AttackContext
    from harness.catalog import ATTACKS
    from harness.zoo.load import load_hf_model

    cfg = session.config
    ref_name = cfg.reference.model if cfg.reference and cfg.reference.model else None
    original_spec: ModelSpec | None = spec
    if spec.name == ref_name and spec.name not in cfg.models:
        # The reference's own cell: its original is the model the grid unlearns (when one),
        # not itself, so "CKA to the original" reads as what full deletion looks like.
        original_spec = session.zoo.get(cfg.models[0]) if len(cfg.models) == 1 else None
    ctx = AttackContext(
        benchmark=benchmark, spec=eval_spec, artifact=artifact, backend=backend,
        load_model=lambda: load_hf_model(eval_spec, device=cfg.device, adapter=adapter),
        results=dict(results), original=original, run=session.context(out),
        original_spec=original_spec,
        reference_spec=session.zoo.get(ref_name) if ref_name else None,
    )
    found: dict[str, MetricResult] = {}
    by_id = {(r.split, r.item_id): r for r in samples}
    forget = benchmark.forget_split()
    for entry in cfg.attacks:
        attack = ATTACKS.get(entry.name)(**entry.params)
        if not (unlearned or attack.on_original):
            continue
        session.console.print(f"  [bold]attack[/bold] {entry.name}")
        for mid, result in attack.run(ctx).items():
            found[mid] = result
            ctx.results[mid] = result  # type: ignore[index]
            for item_id, value in result.per_item.items():
                record = by_id.get((forget, item_id))
                if record is not None:
                    record.values[mid] = value
    return found


def _probe_items(benchmark: Any) -> list:
    try:
        return benchmark.split(benchmark.forget_split())[:4]
    except HarnessError:  # an evaluation-only benchmark (WMDP) has no forget split
        return []
