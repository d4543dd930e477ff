"""What one run shares between its cells: config, zoo, judges, the backend factory, models in
memory, built benchmarks, the results other cells depend on, and the run's report.

A `Session` is built once per run (and once per Ray worker task). The cell pipeline
(harness/cell.py) and the executors (harness/executor.py) read it; nothing in it knows how
a cell is computed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from harness.api.context import RunContext
from harness.api.media import BlobStore
from harness.backends.factory import BackendFactory
from harness.cache import CACHE_FILE, ResponseCache
from harness.config import NO_METHOD, ExperimentConfig
from harness.io import cache_dir
from harness.zoo.specs import ModelSpec, ModelZoo

if TYPE_CHECKING:  # pragma: no cover
    from harness.api.metric import MetricResult
    from harness.plan import Cell


@dataclass
class RunReport:
    cells: list[Path] = field(default_factory=list)
    skipped: int = 0  # cells finished earlier under the same recipe and code, not recomputed
    cache_hits: int = 0
    cache_misses: int = 0
    seconds: float = 0.0


class Session:
    def __init__(self, config: ExperimentConfig, console: Console | None = None, force: bool = False):
        """`force`: recompute cells already finished on disk (answers still come from the cache)."""
        from harness.judges.panel import JudgePanel

        self.config = config
        self.force = force
        self.console = console or Console(stderr=True)
        self.zoo = ModelZoo(config.zoo)
        self.output_dir = Path(config.output_dir)
        root = Path(config.cache_dir or cache_dir())
        self.cache = ResponseCache(root / CACHE_FILE) if config.cache else None
        self.blobs = BlobStore(root / "blobs")  # media outputs, by content hash, beside the response cache
        # lora_expected: a vLLM engine built for the original model can then serve the methods' adapters.
        lora = any(m.name != NO_METHOD for m in config.methods) or bool(config.attacks)
        self.backends = BackendFactory(self.cache, device=config.device, batch_size=config.batch_size,
                                       lora_expected=lora, zoo=self.zoo, blobs=self.blobs)
        self.judges = JudgePanel(config.judges, make_backend=self.backends.named)
        self.loaded: dict[str, Any] = {}  # model name -> LoadedModel, shared by its methods
        self.benchmarks: dict[int, tuple[Any, list[str]]] = {}
        self.training_benchmarks: dict[int, Any] = {}  # built only when they differ (`limit`, `train_limit`)
        self.memo: dict[Cell, dict[str, MetricResult]] = {}  # results of method-less cells, for dependants
        self.reference_results: dict[str, MetricResult] | None = None
        self.report = RunReport()
        self.started = time.time()

    def benchmark(self, index: int) -> tuple[Any, list[str]]:
        """The benchmark of config.benchmarks[index] (built once per run) and its metric ids."""
        from harness.catalog import build_benchmark
        from harness.config import benchmark_options

        if index not in self.benchmarks:
            entry = self.config.benchmarks[index]
            benchmark = build_benchmark(entry.name, **benchmark_options(self.config, entry))
            self.benchmarks[index] = (benchmark, list(self.config.metrics or benchmark.default_metrics))
        return self.benchmarks[index]

    def training_benchmark(self, index: int) -> Any:
        """The benchmark a method of config.benchmarks[index] trains on: built without the run's
        `limit` (evaluation only), with `train_limit` when set; the evaluation one when the two
        option sets agree."""
        from harness.catalog import build_benchmark
        from harness.config import benchmark_options

        entry = self.config.benchmarks[index]
        options = benchmark_options(self.config, entry, training=True)
        evaluated, _ = self.benchmark(index)
        if options == dict(evaluated.options):
            return evaluated
        if index not in self.training_benchmarks:
            self.training_benchmarks[index] = build_benchmark(entry.name, **options)
        return self.training_benchmarks[index]

    def load(self, spec: ModelSpec) -> Any:
        """A model's weights in memory, loaded once per run (methods train from them)."""
        from harness.zoo.load import load_hf_model

        if spec.name not in self.loaded:
            self.loaded[spec.name] = load_hf_model(spec, device=self.config.device)
        return self.loaded[spec.name]

    def context(self, output_dir: Path) -> RunContext:
        """What a method or attack of this run gets: judges, the backend factory, dir, seed."""
        return RunContext(output_dir=output_dir, seed=self.config.seed, judges=self.judges, backends=self.backends,
                          device=self.config.device, blobs=self.blobs)
