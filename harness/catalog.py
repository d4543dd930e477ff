"""The built-in registries, listed lazily: importing this module imports no model code.

Each entry is "module:attr" plus a one-line description for `harness ls`. Third-party
packages add entries through entry points (groups harness.benchmarks / harness.methods /
harness.metrics); user code can also decorate: `@METHODS.register("my-method")`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.registry import Registry

if TYPE_CHECKING:
    from benchmarks.base import Benchmark
    from harness.metrics.base import Metric

BENCHMARKS: Registry = Registry("benchmark", "harness.benchmarks")
METHODS: Registry = Registry("method", "harness.methods")
METRICS: Registry = Registry("metric", "harness.metrics")
BACKENDS: Registry = Registry("backend", "harness.backends")

for name, target, desc in [
    ("fictitious-facts", "benchmarks.fictitious_facts:FictitiousFacts",
     "TOFU-shaped QA about generated fictitious entities (forget/retain/holdout 1/5/10%), built offline"),
    ("tofu", "benchmarks.tofu:Tofu", "TOFU fictitious-author unlearning (hub locuslab/TOFU or a local copy)"),
]:
    BENCHMARKS.add_lazy(name, target, desc)

for name, target, desc in [
    ("grad-ascent", "methods.grad_ascent:GradAscent", "gradient ascent on the forget set (no retain term)"),
    ("grad-diff", "methods.grad_diff:GradDiff", "gradient ascent on forget + NLL or KL descent on retain"),
    ("npo", "methods.npo:NPO", "negative preference optimisation against a frozen reference + retain NLL"),
]:
    METHODS.add_lazy(name, target, desc)

for name, target, desc in [
    ("probability", "harness.metrics.probability:Probability",
     "length-normalised answer probability exp(-avgNLL), mean over items"),
    ("rouge_l_recall", "harness.metrics.rouge:RougeLRecall",
     "ROUGE-L recall of the greedy answer against the reference answer (rouge-score, stemmer)"),
    ("truth_ratio", "harness.metrics.truth_ratio:TruthRatio",
     "P(perturbed)/P(paraphrased); forget: mean min(R,1/R), other splits: mean max(0,1-R)"),
    ("forget_quality", "harness.metrics.forget_quality:ForgetQuality",
     "KS-test p-value of forget truth ratios against the retain-only reference model's"),
    ("model_utility", "harness.metrics.model_utility:ModelUtility",
     "harmonic mean of the benchmark's utility parts (retain probability, ROUGE-L, truth ratio, ...)"),
    ("exact_match_recall", "harness.metrics.exact_match:ExactMatchRecall",
     "share of items whose normalised answer appears in the greedy generation"),
]:
    METRICS.add_lazy(name, target, desc)

BACKENDS.add_lazy("hf", "harness.backends.hf:HFBackend", "Hugging Face transformers: generation, loglikelihood, hidden states")


def build_benchmark(name: str, **options: Any) -> "Benchmark":
    return BENCHMARKS.get(name)(**options)


def build_metric(metric_id: str, benchmark: "Benchmark", seed: int = 0, **args: Any) -> "Metric":
    """'truth_ratio@forget' -> a TruthRatio instance on the benchmark's forget split."""
    from harness.metrics.base import parse_metric_id

    name, split = parse_metric_id(metric_id)
    return METRICS.get(name)(benchmark, split, seed=seed, **args)
