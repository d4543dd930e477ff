"""The contracts every plug-in is written against, in one package.

    request kinds and media   kinds.py, requests.py, media.py
    the model side            backend.py (Backend), intervention.py (Intervention)
    what is evaluated         benchmark.py (Benchmark and its item types)
    what changes a model      method.py (Method, UnlearningMethod), training.py (shared data helpers)
    what is measured          metric.py (Metric, MetricResult), judge.py (Judge, Verdict), attack.py (Attack)
    what a plug-in may use    context.py (RunContext: judges, backend factory, output dir, seed)

Plug-ins (`harness.benchmarks`, `harness.methods`, third-party packages) import from here;
the core never imports the plug-ins (tests/test_architecture.py). Names are re-exported
lazily, so `import harness.api` costs nothing until a name is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RequestKind": "kinds", "request_kind": "kinds", "ModelKind": "kinds",
    "GenerateRequest": "requests", "LoglikelihoodRequest": "requests", "HiddenStatesRequest": "requests",
    "GradNormRequest": "requests", "GenerateResponse": "requests", "LoglikelihoodResponse": "requests",
    "HiddenStatesResponse": "requests", "GradNormResponse": "requests", "Request": "requests", "Response": "requests",
    "ImageGenerationRequest": "requests", "ImageResponse": "requests",
    "MediaRef": "media", "BlobStore": "media",
    "Backend": "backend", "Intervention": "intervention",
    "Benchmark": "benchmark", "BenchmarkData": "benchmark", "QAItem": "benchmark", "MCQItem": "benchmark",
    "PromptItem": "benchmark", "OpenQuestion": "benchmark", "SceneItem": "benchmark",
    "Method": "method", "UnlearningMethod": "method",
    "Metric": "metric", "ItemMetric": "metric", "MetricResult": "metric",
    "Judge": "judge", "JudgeRequest": "judge", "Verdict": "judge",
    "Attack": "attack", "AttackContext": "attack", "RunContext": "context",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"harness.api.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'harness.api' has no attribute {name!r}")
