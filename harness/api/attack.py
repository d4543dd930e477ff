"""Attacks on an unlearned model: does the forgotten knowledge come back?

An attack receives the unlearned model's cell (its evaluation results and a way to make a
backend) and returns metric results named `<attack>:<metric id>`, written into the same
result cell next to the plain forget metrics. Two kinds exist: model attacks that change
the weights (relearning) and probe attacks that only change how the model is asked
(paraphrased questions, other answer formats).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from harness.api.context import RunContext
from harness.errors import ConfigError
from harness.api.metric import MetricResult
from harness.stats import bootstrap_ci, mean_ci


@dataclass
class AttackContext:
    """The attacked cell (its model, backend and results) plus the run's context: every model
    an attack queries comes from `run.backends`, so it is routed and cached like the cell's."""

    benchmark: Any
    spec: Any  # the ModelSpec the unlearned model came from
    artifact: Any | None  # the method's ModelArtifact (None: the model as given)
    backend: Any  # the unlearned model's cached backend
    load_model: Callable[[], Any]  # -> LoadedModel of the unlearned model (base + adapter), to train on
    results: Mapping[str, MetricResult]  # the unlearned model's plain metric results
    original: Mapping[str, MetricResult] | None  # the same model without a method, if evaluated
    run: RunContext  # judges, backend factory, output dir, seed
    # The model the method started from (a zoo spec, no method applied) and the retain-only
    # reference model (`config.reference.model`; None when absent or given as results):
    # representation attacks compare the unlearned model with both.
    original_spec: Any | None = None
    reference_spec: Any | None = None

    @property
    def output_dir(self) -> Path:
        return self.run.output_dir

    @property
    def seed(self) -> int:
        return self.run.seed

    def make_backend(self, spec: Any, adapter: str | None = None) -> Any:
        """Another model (original, reference, relearned), routed and cached."""
        return self.run.backends.make(spec, adapter)


class Attack(ABC):
    name: ClassVar[str] = ""
    # Also run on models without a method, as a baseline (probes: yes; relearning: pointless).
    on_original: ClassVar[bool] = False

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, **params: Any):
        try:
            self.params = self.Params(**params)
        except ValidationError as e:
            err = e.errors()[0]
            raise ConfigError(f"attack {self.name!r}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from e

    @abstractmethod
    def run(self, ctx: AttackContext) -> dict[str, MetricResult]:
        """Metric results of the attacked model, keyed `<attack>:<metric id>`."""


def paired_gain(attack_name: str, metric_id: str, attacked: MetricResult, before: MetricResult,
                seed: int) -> MetricResult:
    """Per-item gain attacked − before on the items both measured, mean with a 95% CI."""
    ids = [i for i in attacked.per_item if i in before.per_item]
    diffs = [attacked.per_item[i] - before.per_item[i] for i in ids]
    if not diffs:
        return MetricResult(f"{attack_name}_gain:{metric_id}", None, None, None, 0, None)
    value, lo, hi = mean_ci(diffs, seed=seed)
    return MetricResult(f"{attack_name}_gain:{metric_id}", value, lo, hi, len(diffs), False,
                        per_item=dict(zip(ids, diffs)), details={"what": "attacked minus unlearned, per item"})


def recovery_rate(attack_name: str, metric_id: str, attacked: MetricResult, unlearned: MetricResult,
                  original: MetricResult | None, seed: int) -> MetricResult:
    """Share of what unlearning removed that the attack brings back: (att − unl) / (orig − unl).

    Computed on means over the items all three runs measured, with a paired bootstrap CI;
    None when there is no original run or unlearning removed nothing.
    """
    rid = f"{attack_name}_recovery:{metric_id}"
    if original is None:
        return MetricResult(rid, None, None, None, 0, None, details={"reason": "no run of the original model"})
    ids = [i for i in attacked.per_item if i in unlearned.per_item and i in original.per_item]
    a, u, o = (np.array([r.per_item[i] for i in ids]) for r in (attacked, unlearned, original))
    if len(ids) == 0 or abs(o.mean() - u.mean()) < 1e-12:
        return MetricResult(rid, None, None, None, len(ids), None, details={"reason": "unlearning removed nothing"})

    def stat(idx: np.ndarray) -> float:
        idx = idx.astype(int)
        removed = o[idx].mean() - u[idx].mean()
        return float((a[idx].mean() - u[idx].mean()) / removed) if abs(removed) > 1e-12 else 0.0

    value = stat(np.arange(len(ids)))
    lo, hi = bootstrap_ci([np.arange(len(ids))], stat, seed=seed)
    return MetricResult(rid, value, min(lo, value), max(hi, value), len(ids), False,
                        details={"what": "(attacked - unlearned) / (original - unlearned), on means"})
