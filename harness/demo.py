"""The built-in demo: unlearn forget10 of `tiny-facts` with three methods, offline, in minutes.

It evaluates the original model, the retain-only reference and each unlearned model, so
the leaderboard shows the methods lowering forget-set recall while the reference keeps its
retain recall. Hyperparameters are tuned for the tiny model (LoRA, a few epochs).
"""

from __future__ import annotations

from typing import Any

from harness.config import ExperimentConfig, parse_config

DEMO_METHOD_PARAMS: dict[str, dict[str, Any]] = {
    "grad-ascent": {"lr": 1e-3, "epochs": 4},
    "grad-diff": {"lr": 1.2e-3, "epochs": 10},
    "npo": {"lr": 1.2e-3, "epochs": 6},
}


def demo_config(output_dir: str = "results/demo", limit: int | None = None, **overrides: Any) -> ExperimentConfig:
    data: dict[str, Any] = {
        "models": ["tiny-facts"],
        "methods": ["none"] + [{"name": n, "params": p} for n, p in DEMO_METHOD_PARAMS.items()],
        "benchmarks": [{"name": "fictitious-facts", "params": {"forget_split": "forget10"}}],
        "reference": {"model": "tiny-facts-retain"},
        "attacks": ["relearn", "paraphrase_probe", "prefix_probe"],
        "output_dir": output_dir,
        "limit": limit,
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_config(data, source="demo")
