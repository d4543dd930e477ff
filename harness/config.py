"""The experiment config: benchmarks x models x methods x metrics, from YAML or flags.

Validation happens before any work starts: every name is looked up in its registry, every
method's hyperparameters are checked, every local model path must exist, and each
benchmark's request kinds must be served by the model's backend. A failure is a
ConfigError with one line that names the problem.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.errors import ConfigError, HarnessError
from harness.judges.panel import JudgeSpec

NO_METHOD = "none"


class NamedEntry(BaseModel):
    """A registry name with options: `{name: npo, params: {beta: 0.1}}` or just `npo`."""

    model_config = ConfigDict(extra="forbid")
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class ReferenceConfig(BaseModel):
    """The retain-only reference that forget quality compares against: a model or saved results."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    results: str | None = None  # a cell directory (summary.json + samples.jsonl) of an earlier run


class ExperimentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[str]
    methods: list[NamedEntry] = Field(default_factory=lambda: [NamedEntry(name=NO_METHOD)])
    benchmarks: list[NamedEntry]
    metrics: list[str] | None = None  # metric ids; None = each benchmark's defaults
    attacks: list[NamedEntry] = Field(default_factory=list)  # run on every unlearned model
    # Judges by role (harm, refusal, score, ...); harm and refusal default to refusal patterns.
    judges: dict[str, JudgeSpec] = Field(default_factory=dict)
    zoo: dict[str, dict[str, Any]] = Field(default_factory=dict)  # extra model specs by name
    reference: ReferenceConfig | None = None
    output_dir: str = "results/run"
    seed: int = 0
    device: str = "auto"
    batch_size: int | str = "auto"
    limit: int | None = Field(None, ge=1)  # evaluate the first N items of each split (evaluation only, as lm-eval)
    train_limit: int | None = Field(None, ge=1)  # methods train on the first N items of each split (None: all)
    cache: bool = True
    cache_dir: str | None = None
    # GPUs each cell reserves under `--executor ray`: one number, or per model name. Unset: 0 on
    # CPU, else the model spec's num_gpus (vLLM tensor x data parallel) or 1 (harness/executor.py).
    num_gpus: float | dict[str, float] | None = Field(default=None)

    @field_validator("num_gpus")
    @classmethod
    def _gpus(cls, v: Any) -> Any:
        values = v.values() if isinstance(v, dict) else [] if v is None else [v]
        if any(x < 0 for x in values):
            raise ValueError("must be >= 0")
        return v

    @field_validator("methods", "benchmarks", "attacks", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        if not isinstance(v, list):
            raise ValueError("must be a list")
        return [{"name": x} if isinstance(x, str) else x for x in v]

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        from harness.devices import check_device

        return check_device(v)

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, v: Any) -> Any:
        if isinstance(v, str) and v != "auto":
            raise ValueError("must be a positive integer or 'auto'")
        if isinstance(v, int) and v < 1:
            raise ValueError("must be a positive integer or 'auto'")
        return v

    def config_hash(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


def load_config(path: str | Path) -> ExperimentConfig:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"config {path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config {path} is not valid YAML{where}") from e
    except RecursionError:
        raise ConfigError(f"config {path} is nested too deeply to read") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a YAML mapping of settings")
    return parse_config(data, source=str(path))


def parse_config(data: dict[str, Any], source: str = "config") -> ExperimentConfig:
    from harness.limits import check_shape

    check_shape(data, source)  # an alias bomb or a 10,000-deep value fails here, in a moment
    try:
        return ExperimentConfig.model_validate(data)
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to read") from None
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise ConfigError(f"{source}: {loc}: {err['msg']}") from e


def validate(config: ExperimentConfig) -> dict[int, tuple[Any, list[str]]]:
    """Check every name, parameter, option, path, metric split and backend capability without
    loading a model. Returns the benchmarks it built to check the metrics' splits (index in
    `config.benchmarks` -> (benchmark, metric ids)), so a run reuses them rather than reloading."""
    from harness.backends.routing import served_kinds
    from harness.catalog import ATTACKS, BENCHMARKS, METHODS, METRICS
    from harness.api.metric import parse_metric_id
    from harness.zoo.specs import ModelZoo

    try:
        zoo = ModelZoo(config.zoo)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"zoo: {'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from e
    names = list(config.models) + ([config.reference.model] if config.reference and config.reference.model else [])
    specs = [zoo.get(m) for m in names]
    for spec in specs:
        spec.check_exists()
        served_kinds(spec, config.device)  # checks the backend names and per-kind routes
    for m in config.methods:
        if m.name != NO_METHOD:
            instance = METHODS.get(m.name)(**m.params)  # validates hyperparameters
            check = getattr(instance, "check_runnable", None)  # settings a run cannot evaluate (GRACE)
            if callable(check):
                check()
    for a in config.attacks:
        ATTACKS.get(a.name)(**a.params)  # validates parameters
    for role, judge in config.judges.items():
        from harness.catalog import JUDGES
        from harness.judges.panel import JUDGE_ROLES, build_judge
        from harness.registry import did_you_mean

        hint = did_you_mean(role, JUDGE_ROLES) if role not in JUDGE_ROLES else ""
        if hint:  # close to a known role: a typo (a plug-in metric's own role is left alone)
            raise ConfigError(f"judges: unknown role {role!r}{hint} (roles the built-in metrics ask: "
                              f"{', '.join(JUDGE_ROLES)})")
        JUDGES.check(judge.kind)
        if judge.model is not None:
            zoo.get(judge.model).check_exists()
        build_judge(judge)  # validates parameters and reads the template (no model is loaded)
    for b in config.benchmarks:
        cls = BENCHMARKS.get(b.name)
        check_options(cls, b)
        check_data_paths(b)
        metric_ids = list(config.metrics or cls.default_metrics)
        for metric_id in metric_ids:
            METRICS.check(parse_metric_id(metric_id)[0])
        for spec in specs:
            check_capabilities(spec, cls, config.device, metric_ids)
        check_per_instance(cls, config.methods)
    check_output_dir(config.output_dir)
    if config.reference and config.reference.results:
        from harness.results import SUMMARY_FILE

        if not (Path(config.reference.results) / SUMMARY_FILE).is_file():
            raise ConfigError(f"reference.results: no {SUMMARY_FILE} in {config.reference.results}")
    if config.reference and not (config.reference.model or config.reference.results):
        raise ConfigError("reference: give `model` or `results`")
    built = {}
    for index, entry in enumerate(config.benchmarks):  # data, not models: splits are known once it is read
        from harness.catalog import build_benchmark

        benchmark = build_benchmark(entry.name, **benchmark_options(config, entry))
        metric_ids = list(config.metrics or benchmark.default_metrics)
        check_metric_splits(benchmark, metric_ids, config.seed)
        built[index] = (benchmark, metric_ids)
    return built


def benchmark_options(config: ExperimentConfig, entry: NamedEntry, training: bool = False) -> dict[str, Any]:
    """A benchmark's options as the run builds it: its params, and the run's `limit` (evaluation) or
    `train_limit` (the data methods train on) unless the params set `limit` themselves.

    `--limit` limits evaluation only, as lm-eval's does: a method trains on every item unless
    `train_limit` says otherwise, so a quick `--limit` run evaluates the same artefact a full run
    trains (and reuses it)."""
    options = dict(entry.params)
    limit = config.train_limit if training else config.limit
    if limit is not None:
        options.setdefault("limit", limit)
    return options


def check_options(cls: Any, entry: NamedEntry) -> None:
    """Every option names one the benchmark reads (when it declares them), so a typo such as
    `forget_splt` is refused instead of silently evaluating the default split."""
    from harness.registry import did_you_mean

    if not cls.declares_options():
        return
    known = cls.known_options()
    for key in entry.params:
        if key not in known:
            raise ConfigError(f"benchmark {entry.name!r} has no option {key!r}{did_you_mean(key, list(known))} "
                              f"(options: {', '.join(sorted(known))})")


def check_metric_splits(benchmark: Any, metric_ids: list[str], seed: int = 0) -> None:
    """Every metric (and each it depends on) builds on this benchmark and evaluates a split its
    data has: `probability@forgettt` fails here, with "did you mean", before any model loads."""
    from harness.api.benchmark import ROLES
    from harness.api.metric import parse_metric_id
    from harness.evaluate import resolve_metrics

    for metric_id in metric_ids:
        split = parse_metric_id(metric_id)[1]
        if split is not None and split not in ROLES:
            try:
                benchmark.split(split)
            except HarnessError as e:
                raise ConfigError(f"metric {metric_id!r}: {e}") from None
    for metric in resolve_metrics(benchmark, metric_ids, seed):
        if metric.split is not None:
            try:
                benchmark.split(metric.split)
            except HarnessError as e:  # a role resolved through a split option (`forget_split: forget5`)
                raise ConfigError(f"metric {metric.id!r} (role {metric.split_role!r}): {e}") from None


def reference_warnings(config: ExperimentConfig) -> list[str]:
    """One line per metric that will have no value because it needs a reference run and the
    config names none (warned at `validate` and when `run` starts, not discovered at the end)."""
    from harness.api.metric import parse_metric_id
    from harness.catalog import BENCHMARKS, METRICS

    if config.reference is not None:
        return []
    out: list[str] = []
    for b in config.benchmarks:
        for metric_id in config.metrics or BENCHMARKS.get(b.name).default_metrics:
            if getattr(METRICS.get(parse_metric_id(metric_id)[0]), "needs_reference_run", False):
                line = (f"metric {metric_id!r} needs a reference run (the retain-only model) and none is set, so it "
                        "will have no value; give --reference MODEL or `reference:` in the config")
                if line not in out:
                    out.append(line)
    return out


def check_capabilities(spec: Any, benchmark_cls: Any, device: str | None, metric_ids: list[str] | None = None) -> None:
    """Whether a model can answer what a benchmark asks: the request kinds of the benchmark
    and of each metric that asks for more (hidden states, gradients), as routed for this model,
    and, for benchmarks that show images, a model kind that sees them. One line naming both
    sides when not."""
    from harness.api.kinds import SEES_IMAGES
    from harness.api.metric import parse_metric_id
    from harness.backends.routing import served_kinds
    from harness.catalog import METRICS

    served = set(served_kinds(spec, device))
    if served and not set(benchmark_cls.request_kinds) <= served:
        raise ConfigError(
            f"benchmark {benchmark_cls.name!r} needs request kinds {sorted(benchmark_cls.request_kinds)} but model "
            f"{spec.name!r} (backend {spec.backend!r}) serves {sorted(served)}"
        )
    for metric_id in metric_ids or ():
        needs = set(getattr(METRICS.get(parse_metric_id(metric_id)[0]), "request_kinds", None) or ())
        if served and not needs <= served:
            raise ConfigError(
                f"metric {metric_id!r} needs {', '.join(sorted(needs - served))} requests, which model {spec.name!r} "
                f"(backend {spec.backend!r}) cannot answer (it serves {', '.join(sorted(served))}); drop the metric "
                "or route that kind to a backend with the weights (hf)"
            )
    if benchmark_cls.model_kind in SEES_IMAGES and spec.kind not in SEES_IMAGES:
        raise ConfigError(
            f"benchmark {benchmark_cls.name!r} shows the model images, but model {spec.name!r} is a {spec.kind} "
            "model and cannot see them (use an image-text-to-text model)"
        )


def check_per_instance(benchmark_cls: Any, methods: list[NamedEntry]) -> None:
    """A benchmark run per instance (edit → attack → restore, harness/edit_protocol.py) takes
    per-instance defences as its methods, and a defence runs only on such a benchmark."""
    from harness.catalog import METHODS

    per_instance = getattr(benchmark_cls, "per_instance", False)
    for m in methods:
        if m.name == NO_METHOD:
            continue
        defence = getattr(METHODS.get(m.name), "per_instance", False)
        if per_instance and not defence:
            defences = [n for n in METHODS.names() if getattr(METHODS.get(n), "per_instance", False)]
            raise ConfigError(f"benchmark {benchmark_cls.name!r} edits one instance at a time, so its methods are "
                              f"per-instance defences ({', '.join(defences)}), not {m.name!r}")
        if defence and not per_instance:
            raise ConfigError(f"method {m.name!r} is a per-instance defence; benchmark {benchmark_cls.name!r} is not "
                              "run per instance (use tiny-vqa or unlok-vqa)")


def check_data_paths(entry: NamedEntry) -> None:
    """A benchmark's local data paths exist (options named `path` or ending in `_path`, `_file`,
    `_root`, `_dir`) before any work starts, so a missing one never stops a run half-way."""
    for key, value in entry.params.items():
        if not isinstance(value, str) or not (key == "path" or key.endswith(("_path", "_file", "_root", "_dir"))):
            continue
        looks_local = value.startswith((".", "/", "~")) or Path(value).expanduser().exists() or value.count("/") != 1
        if looks_local and not Path(value).expanduser().exists():
            raise ConfigError(f"benchmark {entry.name!r}: {key} {value!r} does not exist")


def check_output_dir(output_dir: str) -> None:
    """The output dir is a directory we can write (or can be created), checked before any work."""
    import os

    path = Path(output_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output dir {output_dir!r} is a file, not a directory")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and (not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK)):
        raise ConfigError(f"output dir {output_dir!r} cannot be written ({probe} is not a writable directory)")


def describe_error(e: HarnessError) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def cell_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
