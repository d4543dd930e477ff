"""What a method produces: a new model artefact on top of a base model, with its hash."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.io import atomic_write_json

ARTIFACT_FILE = "artifact.json"


@dataclass
class ModelArtifact:
    method: str
    base_model: str  # the model spec name the method started from
    adapter_path: str | None = None  # a PEFT adapter directory (LoRA)
    checkpoint_path: str | None = None  # a full fine-tuned checkpoint directory
    hash: str = ""  # content hash of the adapter or checkpoint files
    hparams: dict[str, Any] = field(default_factory=dict)
    train_stats: dict[str, Any] = field(default_factory=dict)  # steps, losses, seconds
    config_hash: str = ""  # hash of (method, hparams, base identity, data, seed): reuse key
    # Results the method itself measured (likelihood displacement of preference methods):
    # metric id -> {value, ci_low, ci_high, n, higher_is_better, details}; the runner adds
    # them to the cell's results (`metric_results`).
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    def save(self, directory: str | Path) -> None:
        atomic_write_json(Path(directory) / ARTIFACT_FILE, asdict(self))

    def metric_results(self) -> dict[str, Any]:
        """`metrics` as MetricResults, ready to join the cell's evaluation results."""
        from harness.api.metric import MetricResult

        return {mid: MetricResult(metric=mid, value=m.get("value"), ci_low=m.get("ci_low"), ci_high=m.get("ci_high"),
                                  n=int(m.get("n") or 0), higher_is_better=m.get("higher_is_better"),
                                  details=dict(m.get("details") or {}))
                for mid, m in self.metrics.items()}

    @classmethod
    def load(cls, directory: str | Path) -> "ModelArtifact | None":
        p = Path(directory) / ARTIFACT_FILE
        if not p.exists():
            return None
        return cls(**json.loads(p.read_text()))
