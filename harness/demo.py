"""The built-in demo, offline, in minutes: unlearning on `tiny-facts`, safety on `tiny-safety`.

Unlearning: forget10 of `tiny-facts` with several methods. It evaluates the original model,
the retain-only reference and each unlearned model, so the leaderboard shows the methods
lowering forget-set recall while the reference keeps its retain recall. Hyperparameters are
tuned for the tiny model (LoRA, a few epochs).

Safety: `tiny-safety` on the built-in `adversarial-probes`, as given and after DPO, CHES-filtered
DPO and GRACE (ASR by attack family, benign over-refusal, AVQI, likelihood displacement). The two are separate experiments (different models and benchmarks)
sharing one output directory, so one leaderboard shows both.
"""

from __future__ import annotations

from typing import Any

from harness.config import ExperimentConfig, parse_config

DEMO_METHOD_PARAMS: dict[str, dict[str, Any]] = {
    "grad-ascent": {"lr": 1e-3, "epochs": 4},
    "grad-diff": {"lr": 1.2e-3, "epochs": 10},
    "npo": {"lr": 1.2e-3, "epochs": 6},
    "laf": {"lr_ue": 1e-3, "lr_ra": 1e-3, "epochs": 3, "vae_hidden": [256, 64], "vae_epochs": 5},
}


# "Deleted or hidden?": small grids so that they add seconds, not minutes, to the demo.
DEMO_REPRESENTATION_ATTACKS: list[dict[str, Any]] = [
    {"name": "restoration", "params": {"max_items": 20, "scales": [1.0], "modes": ["direct_injection"],
                                       "sae_steps": 200}},
    {"name": "representation", "params": {"max_items": 30, "splits": ["forget"]}},
    {"name": "in_context", "params": {"max_items": 20, "metrics": ["exact_match_recall@forget"], "derived": False,
                                      "control": False}},
]


# Safety methods, tuned on tiny-safety (they train on adversarial-probes' `train` split, disjoint
# from the evaluated prompts). The paper settings (lr 5e-6, one epoch) barely move a tiny LoRA.
# DPO adds the chosen answer's NLL with weight 0.1 (TRL loss_type ["sigmoid", "sft"], RPO-style):
# measured with TRL 1.16 / transformers 5.25, plain sigmoid DPO pushed both answers' likelihood
# down (the displacement CHES predicts) and lowered ASR only 40.0 -> 34.2 (CHES-DPO: 45.3, up);
# with the term, ASR falls to 0.5 (DPO) and 4.7 (CHES-DPO), at 40% / 17% benign over-refusal.
RPO = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.1]}
SAFETY_METHOD_PARAMS: dict[str, dict[str, Any]] = {
    "dpo": {"lr": 2e-3, "epochs": 2, "batch_size": 8, "grad_accum": 1, "beta": 0.5, **RPO},
    "ches-dpo": {"lr": 2e-3, "epochs": 2, "batch_size": 8, "grad_accum": 1, "beta": 0.5,
                 "measure": "ln_ches", "keep": 0.5, "quantile": 0.0, **RPO},
    "grace": {"train_llm": "lora", "sft_weight": 1.0, "epochs": 2, "batch_size": 16, "lr": 1e-3, "lora_lr": 1e-3},
}


def demo_config(output_dir: str = "results/demo", limit: int | None = None, **overrides: Any) -> ExperimentConfig:
    data: dict[str, Any] = {
        "models": ["tiny-facts"],
        "methods": ["none"] + [{"name": n, "params": p} for n, p in DEMO_METHOD_PARAMS.items()],
        "benchmarks": [{"name": "fictitious-facts", "params": {"forget_split": "forget10"}}],
        "reference": {"model": "tiny-facts-retain"},
        "attacks": ["relearn", "paraphrase_probe", "prefix_probe", *DEMO_REPRESENTATION_ATTACKS],
        "output_dir": output_dir,
        "limit": limit,
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_config(data, source="demo")


def safety_demo_config(output_dir: str = "results/demo", limit: int | None = None, **overrides: Any) -> ExperimentConfig:
    """`tiny-safety` on the built-in adversarial probes, as given and after DPO, CHES-DPO and GRACE:
    ASR by attack family, benign over-refusal, AVQI and likelihood displacement.

    Judged by the refusal-pattern judge (no judge model needed offline).
    """
    data: dict[str, Any] = {
        "models": ["tiny-safety"],
        "methods": ["none"] + [{"name": n, "params": p} for n, p in SAFETY_METHOD_PARAMS.items()],
        "benchmarks": ["adversarial-probes"],
        "output_dir": output_dir,
        "limit": limit,
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_config(data, source="demo")


def demo_configs(output_dir: str = "results/demo", limit: int | None = None, **overrides: Any) -> list[ExperimentConfig]:
    """Every experiment of the demo, in order; they share the output dir (and so one leaderboard)."""
    return [demo_config(output_dir, limit, **overrides), safety_demo_config(output_dir, limit, **overrides)]
