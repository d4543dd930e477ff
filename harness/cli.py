"""`harness`: run experiments, list what exists, validate configs, build leaderboards and reports.

Every user error (bad config, unknown name, missing path) prints one line and exits 2.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from harness.errors import HarnessError


class _Commands(TyperGroup):
    """Typer's group, with command-line mistakes (`--seed abc`, an unknown option or command)
    reported like every other user error: one `error:` line and exit code 2, not a usage box."""

    def make_context(self, info_name: Any, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except typer.TyperException as e:
            _print_error(f"{e.format_message()} (see --help)")
            raise typer.Exit(2) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except typer.TyperException as e:  # raised while parsing the subcommand's arguments
            _print_error(f"{e.format_message()} (see --help)")
            raise typer.Exit(2) from None


app = typer.Typer(add_completion=False, no_args_is_help=False, help=__doc__, cls=_Commands)
err_console = Console(stderr=True)
# Piped output gets a wide table rather than rich's 80-column default, so rows stay readable.
out_console = Console() if sys.stdout.isatty() else Console(width=int(os.environ.get("COLUMNS", 220)))

LS_KINDS = ("benchmarks", "methods", "metrics", "attacks", "judges", "models")


def _print_error(message: str) -> None:
    """`error: <first line of message>` on stderr. The message may quote user input (a key, a
    path, a model's text): it is never read as rich markup, and control characters (terminal
    escapes, further line breaks) become spaces."""
    from harness.reports.escape import one_line

    text = message.strip()
    line = one_line(text.splitlines()[0]).strip() if text else ""
    if len(line) > 1000:  # a message quoting a huge input value
        line = line[:1000] + "…"
    err_console.print(Text.assemble(("error:", "red"), " ", line or "unknown error"), markup=False,
                      highlight=False, soft_wrap=True)


def _warn(lines: list[str]) -> None:
    """`warning: <line>` on stderr for each line: something that will not stop the run but
    that the user should know before it starts (user text in it is never read as markup)."""
    from harness.reports.escape import one_line

    for line in lines:
        err_console.print(Text.assemble(("warning:", "yellow"), " ", one_line(line)), markup=False,
                          highlight=False, soft_wrap=True)


def _user_errors(fn: Callable) -> Callable:
    """Turn HarnessError into `error: <one line>` and exit code 2; Ctrl-C into a resume hint."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HarnessError as e:
            _print_error(str(e) if str(e).strip() else type(e).__name__)
            raise typer.Exit(2) from None
        except RecursionError:  # a config or data file nested thousands deep
            _print_error("an input (config or data file) is nested too deeply to read")
            raise typer.Exit(2) from None
        except BrokenPipeError:
            raise
        except OSError as e:  # a path the user gave: too long, not readable, a directory, ...
            where = f": {e.filename}" if e.filename is not None else ""
            _print_error(f"{e.strerror or e}{where}")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: rerun the same command to resume (finished work is kept)")
            raise typer.Exit(130) from None

    return wrapper


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass


def _split_list(values: Optional[list[str]]) -> list[str]:
    return [v.strip() for raw in values or [] for v in raw.split(",") if v.strip()]


@app.command()
@_user_errors
def run(
    config: Optional[Path] = typer.Argument(None, help="experiment YAML; omit (and give no flags) for the demo"),
    model: Optional[list[str]] = typer.Option(None, "--model", "-m", help="model name or path (repeatable)"),
    benchmark: Optional[list[str]] = typer.Option(None, "--benchmark", "-b", help="benchmark name (repeatable)"),
    method: Optional[list[str]] = typer.Option(None, "--method", help="method name, or 'none' (repeatable)"),
    method_param: Optional[list[str]] = typer.Option(
        None, "--param", "--method-param", "-p",
        help="a method hyperparameter or benchmark option, NAME.KEY=VALUE, e.g. npo.beta=0.2 or tofu.forget_split=forget05 (repeatable)",
    ),
    model_args: Optional[str] = typer.Option(
        None, "--model-args", help="model settings for every --model, KEY=VALUE,..., e.g. dtype=bfloat16,revision=main,chat_template=none"
    ),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="comma-separated metric ids, e.g. probability@forget"),
    reference: Optional[str] = typer.Option(
        None, "--reference", help="the retain-only reference model that forget_quality and mia_reference compare against"
    ),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o", help="where results go"),
    limit: Optional[int] = typer.Option(None, "--limit", help="evaluate at most this many items per split (methods still train on every item)"),
    train_limit: Optional[int] = typer.Option(None, "--train-limit", help="methods train on at most this many items per split"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1, ..."),
    batch_size: Optional[str] = typer.Option(None, "--batch-size", help="an integer or 'auto'"),
    no_cache: bool = typer.Option(False, "--no-cache", help="do not read or write the response cache"),
    force: bool = typer.Option(False, "--force", help="recompute cells already finished in the output dir"),
    shard: Optional[str] = typer.Option(
        None, "--shard", help="run only share I of N of the grid's cells, e.g. 1/4 (shards merge in one output dir)"
    ),
    executor: str = typer.Option("local", "--executor", help="local (this process) or ray (each cell a Ray task)"),
) -> None:
    """Run an experiment (benchmarks x models x methods x metrics). No arguments: the offline demo."""
    from harness.config import load_config, parse_config, reference_warnings
    from harness.runlog import open_run_log
    from harness.runner import Runner

    from harness.executor import EXECUTORS
    from harness.plan import parse_shard

    _quiet_libraries()
    shard_spec = parse_shard(shard) if shard is not None else None  # bad values fail before any work
    if executor not in EXECUTORS:
        raise HarnessError(f"--executor must be one of {', '.join(EXECUTORS)}, not {executor!r}")
    overrides: dict[str, Any] = {
        "output_dir": output_dir,
        "limit": limit,
        "train_limit": train_limit,
        "seed": seed,
        "device": device,
        "batch_size": _batch_size(batch_size),
        "cache": False if no_cache else None,
    }
    flags_given = any([model, benchmark, method, metrics, reference])
    if config is not None:
        cfg = load_config(config)
        data = cfg.model_dump()
    elif flags_given:
        if not model or not benchmark:
            raise HarnessError("without a config file, give at least --model and --benchmark")
        data = {"models": _split_list(model), "benchmarks": _split_list(benchmark)}
    else:
        err_console.print("[bold]no config given: running the built-in offline demo[/bold]")
        _run_demo(overrides, shard_spec, executor, force)
        return
    if model:
        data["models"] = _split_list(model)
    if benchmark:
        data["benchmarks"] = _split_list(benchmark)
    if method:
        data["methods"] = _split_list(method)
    if metrics:
        data["metrics"] = _split_list([metrics])
    if method_param:
        data["methods"], data["benchmarks"] = _with_params(data.get("methods") or [], data.get("benchmarks") or [],
                                                           method_param)
    if model_args:
        data["zoo"] = _with_model_args(data.get("models") or [], data.get("zoo") or {}, model_args)
    if reference:
        data["reference"] = {"model": reference}
    data.update({k: v for k, v in overrides.items() if v is not None})
    cfg = parse_config(data, source=str(config) if config else "flags")

    runner = Runner(cfg, console=err_console, force=force)  # validates: no warning about a config with errors
    _warn(reference_warnings(cfg))
    log = open_run_log(cfg.output_dir)  # trainer dicts and library warnings: there, not here
    try:
        report = runner.run(shard=shard_spec, executor=executor)
    except HarnessError:
        if log.is_file() and log.stat().st_size == 0:  # a failed run leaves no empty file behind
            log.unlink()
        raise
    paths = _leaderboard(Path(cfg.output_dir), print_table=True)
    html = _html_report(Path(cfg.output_dir))
    err_console.print(
        f"done in {report.seconds:.1f}s: {len(report.cells)} result cells computed, {report.skipped} finished earlier; "
        f"cache {report.cache_hits} hits / {report.cache_misses} misses; leaderboard: {paths['markdown']}; "
        f"report: {html}; log: {log}",
        markup=False,
    )


def _run_demo(overrides: dict[str, Any], shard_spec: Any, executor: str, force: bool = False) -> None:
    """The demo's experiments (unlearning, then safety) into one output dir and one leaderboard."""
    import time

    from harness.config import parse_config
    from harness.demo import demo_configs
    from harness.runner import Runner

    from harness.runlog import open_run_log
    from harness.zoo.prebuild import prebuild
    from harness.zoo.specs import ModelZoo

    start, cells, skipped, hits, misses = time.time(), 0, 0, 0, 0
    out_dir = overrides.get("output_dir") or "results/demo"
    configs = demo_configs(output_dir=out_dir)
    # All the demo's models at once (the experiments run one after the other), largest first.
    zoo = ModelZoo()
    names = dict.fromkeys(n for c in configs for n in [*c.models, *([c.reference.model] if c.reference else [])] if n)
    prebuild([zoo.get(n) for n in names], console=err_console)
    for cfg in configs:
        data = cfg.model_dump()
        data.update({k: v for k, v in overrides.items() if v is not None})
        runner = Runner(parse_config(data, source="demo"), console=err_console, force=force)
        open_run_log(out_dir)
        report = runner.run(shard=shard_spec, executor=executor)
        cells, skipped = cells + len(report.cells), skipped + report.skipped
        hits, misses = hits + report.cache_hits, misses + report.cache_misses
    paths = _leaderboard(Path(out_dir), print_table=True)
    html = _html_report(Path(out_dir))
    err_console.print(f"done in {time.time() - start:.1f}s: {cells} result cells computed, {skipped} finished earlier; "
                      f"cache {hits} hits / {misses} misses; leaderboard: {paths['markdown']}; report: {html}",
                      markup=False)


def _with_params(methods: list, benchmarks: list, assignments: list[str]) -> tuple[list[dict], list[dict]]:
    """Apply `NAME.KEY=VALUE` flags (VALUE read as YAML: numbers, booleans, lists) to the run's
    method or benchmark called NAME: a hyperparameter or a benchmark option (checked by validate)."""
    import yaml

    from harness.registry import did_you_mean

    def entries(items: list) -> list[dict]:
        return [{"name": m, "params": {}} if isinstance(m, str) else {"params": {}, **m} for m in items]

    methods, benchmarks = entries(methods), entries(benchmarks)
    for text in assignments:
        key, eq, raw = text.partition("=")
        target, dot, name = key.strip().rpartition(".")  # rpartition: a method may be module.path:Class
        if not (eq and dot and target and name):
            raise HarnessError(f"-p takes NAME.KEY=VALUE (e.g. npo.beta=0.2, tofu.forget_split=forget05), not {text!r}")
        matches = [e for e in methods if e["name"] == target] + [e for e in benchmarks if e["name"] == target]
        if not matches:
            known = [e["name"] for e in methods + benchmarks]
            raise HarnessError(f"-p {text!r}: {target!r} is not in this run's methods or benchmarks"
                               f"{did_you_mean(target, known)} (they are: {', '.join(known) or 'none'})")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        for entry in matches:
            entry["params"] = {**entry["params"], name: value}
    return methods, benchmarks


def _with_model_args(models: list[str], zoo: dict[str, Any], text: str) -> dict[str, Any]:
    """`--model-args KEY=VALUE,...` (lm-eval's form) as zoo settings of every model of the run: its
    spec (built-in, config zoo, or a path / hub id) with these fields replaced."""
    import re

    import yaml

    from harness.registry import did_you_mean
    from harness.zoo.specs import ModelSpec, ModelZoo

    args: dict[str, Any] = {}
    for part in re.split(r",(?=\s*[A-Za-z_]\w*\s*=)", text):  # a comma inside a value stays
        key, eq, raw = part.partition("=")
        key = key.strip()
        if not (eq and key):
            raise HarnessError(f"--model-args takes KEY=VALUE,... (e.g. dtype=bfloat16,revision=main), not {text!r}")
        if key == "name" or key not in ModelSpec.model_fields:
            fields = [f for f in ModelSpec.model_fields if f != "name"]
            raise HarnessError(f"--model-args: unknown setting {key!r}{did_you_mean(key, fields)} "
                               f"(settings: {', '.join(fields)})")
        try:
            args[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            args[key] = raw
        if isinstance(args[key], (int, float)) and key in ("revision", "path", "chat_template", "adapter"):
            args[key] = raw.strip()  # a commit such as 1234567 stays text
    zoo = dict(zoo)
    lookup = ModelZoo(zoo)
    for model in models:
        spec = lookup.get(model).model_dump(exclude={"name"}, exclude_unset=False)
        zoo[model] = {**spec, **args}
    return zoo


def _batch_size(value: Optional[str]) -> int | str | None:
    if value is None or value == "auto":
        return value
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise HarnessError(f"--batch-size must be a positive integer or 'auto', not {value!r}")


def _leaderboard(results_dir: Path, sort_by: Optional[str] = None, benchmark: Optional[str] = None,
                 print_table: bool = True) -> dict[str, Path]:
    """Write the leaderboard files and print the same tables: per benchmark the metrics the run
    asked for (its headline when none were asked), sort column first, then its views."""
    from harness.reports.leaderboard import load_results
    from harness.reports.render import render_rich, write_leaderboard
    from harness.reports.tables import breakdown_csv, report_tables

    from harness.results import report_layouts

    df = load_results(results_dir)
    layouts = report_layouts(results_dir)  # what each benchmark wants shown, from its result files
    full, tables = report_tables(df, layouts, sort_by=sort_by, benchmark=benchmark)
    breakdowns = {name: breakdown_csv(df, name, layout) for name, layout in layouts.items()
                  if layout.rows_by and name in set(df.benchmark) and benchmark in (None, name)}
    paths = write_leaderboard(full, results_dir, tables, breakdowns)
    if print_table:
        for table in tables:
            out_console.print(render_rich(table))
    return paths


@app.command()
@_user_errors
def ls(kind: Optional[str] = typer.Argument(None, help="benchmarks | methods | metrics | attacks | judges | models"),
       name: Optional[str] = typer.Argument(None, help="one of them: its parameters, splits, options, direction")) -> None:
    """List what exists, with one-line descriptions; `ls KIND NAME` shows one (as `harness show`)."""
    from harness.catalog import ATTACKS, BENCHMARKS, JUDGES, METHODS, METRICS
    from harness.registry import did_you_mean
    from harness.zoo.specs import ModelZoo

    if kind is not None and kind not in LS_KINDS:
        raise HarnessError(f"unknown kind {kind!r}{did_you_mean(kind, LS_KINDS)}; choose one of: "
                          f"{', '.join(LS_KINDS)} (see --help)")
    if name is not None:
        from harness.describe import describe

        for block in describe(kind, name):
            out_console.print(block)
        return
    sources = {
        "benchmarks": BENCHMARKS.describe,
        "methods": METHODS.describe,
        "metrics": METRICS.describe,
        "attacks": ATTACKS.describe,
        "judges": JUDGES.describe,
        "models": ModelZoo().describe,
    }
    for k in [kind] if kind else LS_KINDS:
        table = Table(title=k, show_header=True, title_justify="left")
        table.add_column("name", style="bold")
        table.add_column("description")
        for name, desc in sources[k]():
            table.add_row(name, desc)
        out_console.print(table)


@app.command()
@_user_errors
def show(name: str = typer.Argument(..., help="a benchmark, method, metric, attack, judge or model name")) -> None:
    """What one plug-in is and takes: a method's parameters, a benchmark's splits, roles, options
    and default metrics, a metric's splits and direction."""
    from harness.describe import describe

    for block in describe(None, name):
        out_console.print(block)


@app.command(name="validate")
@_user_errors
def validate_cmd(config: Path = typer.Argument(..., help="experiment YAML")) -> None:
    """Check a config (names, hyperparameters, paths, backend capabilities) without running it."""
    from harness.config import load_config, reference_warnings, validate

    cfg = load_config(config)
    validate(cfg)
    _warn(reference_warnings(cfg))
    out_console.print(f"{config}: ok ({len(cfg.models)} models × {len(cfg.methods)} methods × "
                      f"{len(cfg.benchmarks)} benchmarks)", markup=False)


@app.command()
@_user_errors
def leaderboard(
    results_dir: Path = typer.Argument(..., help="a results directory written by `harness run`"),
    sort_by: Optional[str] = typer.Option(None, "--sort-by", help="metric id to sort by (best first)"),
    benchmark: Optional[str] = typer.Option(None, "--benchmark", help="only this benchmark"),
) -> None:
    """Write leaderboard.md and leaderboard.csv from result files alone."""
    if not results_dir.is_dir():
        raise HarnessError(f"results directory not found: {results_dir}")
    paths = _leaderboard(results_dir, sort_by=sort_by, benchmark=benchmark)
    err_console.print(f"wrote {paths['markdown']} and {paths['csv']}", markup=False)


def _html_report(results_dir: Path, out: Optional[Path] = None, max_samples: Optional[int] = None) -> Path:
    """Write the self-contained report.html (leaderboard, plots, sample viewer); its path."""
    from harness.reports.html import MAX_SAMPLES, write_report

    return write_report(results_dir, out, MAX_SAMPLES if max_samples is None else max_samples)


@app.command()
@_user_errors
def report(
    results_dir: Path = typer.Argument(..., help="a results directory written by `harness run`"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="where to write it (default RESULTS_DIR/report.html)"),
    max_samples: Optional[int] = typer.Option(
        None, "--max-samples", help="items per split and cell in the sample viewer (default 500; all stay in samples.jsonl)"),
) -> None:
    """Write report.html from result files alone: one offline page with the sortable leaderboard,
    plots with CIs and a sample viewer (open it from disk; it makes no network request)."""
    if not results_dir.is_dir():
        raise HarnessError(f"results directory not found: {results_dir}")
    path = _html_report(results_dir, output, max_samples)
    out_console.print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)", markup=False, highlight=False, soft_wrap=True)


@app.command(name="judge-agreement")
@_user_errors
def judge_agreement(
    labels: Path = typer.Argument(..., help="labelled file: prompt, response, label (JSONL, JSON or CSV)"),
    judge: str = typer.Option("refusal-patterns", "--judge", "-j", help="judge kind (see `harness ls judges`)"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="judge model (zoo name, path or hub id)"),
    template: Optional[str] = typer.Option(None, "--template", help="judge prompt template file"),
    param: Optional[list[str]] = typer.Option(None, "--param", "-p", help="judge parameter NAME=VALUE (repeatable)"),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="score >= threshold counts as 1 (scored judges)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="also write the report as JSON here"),
    device: Optional[str] = typer.Option(None, "--device"),
) -> None:
    """Score a judge against human labels: accuracy, Cohen's kappa, confusion matrix."""
    import dataclasses
    import json

    import yaml

    from harness.judges.agreement import agreement, read_labelled
    from harness.judges.panel import JudgeSpec, build_judge

    _quiet_libraries()
    if device is not None:
        from harness.devices import check_device

        try:
            check_device(device)
        except ValueError as e:
            raise HarnessError(f"--device {e}") from None
    params: dict[str, Any] = {}
    for text in param or []:
        key, eq, raw = text.partition("=")
        if not eq or not key.strip():
            raise HarnessError(f"--param takes NAME=VALUE, not {text!r}")
        params[key.strip()] = yaml.safe_load(raw)
    spec = JudgeSpec(kind=judge, model=model, template=template, params=params)
    backend = None
    if model is not None:
        from harness.backends.factory import BackendFactory
        from harness.cache import CACHE_FILE, ResponseCache
        from harness.io import cache_dir
        from harness.zoo.specs import ModelZoo

        zoo = ModelZoo()
        zoo.get(model).check_exists()
        backend = BackendFactory(ResponseCache(cache_dir() / CACHE_FILE), device=device or "auto", zoo=zoo).named(model)
    rows = read_labelled(labels)
    report = agreement(build_judge(spec, backend), rows, threshold)
    table = Table(title=f"judge {judge} vs {labels.name}", show_header=True, title_justify="left")
    table.add_column("")
    for lab in report.labels:
        table.add_column(f"judge {lab}", justify="right")
    for lab, row in zip(report.labels, report.confusion):
        table.add_row(f"label {lab}", *(str(v) for v in row))
    out_console.print(table)
    kappa = "—" if report.kappa is None else f"{report.kappa:.3f}"
    acc = "—" if report.accuracy is None else f"{report.accuracy:.3f}"
    out_console.print(f"n={report.n} scored={report.scored} unparsed={report.unparsed} "
                      f"accuracy={acc} cohen_kappa={kappa}")
    if output is not None:
        from harness.io import atomic_write_text

        atomic_write_text(output, json.dumps(dataclasses.asdict(report), indent=2) + "\n")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
