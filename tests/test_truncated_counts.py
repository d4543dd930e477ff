"""No silent drops: inputs the HF backend cuts to fit the model are counted in each result."""

from __future__ import annotations

from harness.api.benchmark import Benchmark, BenchmarkData, QAItem
from harness.api.requests import GenerateRequest, HiddenStatesRequest, LoglikelihoodRequest
from harness.backends.hf import HFBackend
from harness.evaluate import evaluate, resolve_metrics
from harness.zoo.specs import ModelSpec

LONG = "Ada likes tea and maps and rivers. " * 60  # far beyond the tiny model's 256 positions


class LongBench(Benchmark):
    name = "long"

    def load(self) -> BenchmarkData:
        items = [QAItem("short", "What does Bo like?", "Bo likes maps."), QAItem("long", LONG, "Ada likes tea.")]
        return BenchmarkData(splits={"forget10": items, "retain90": [], "holdout10": []}, source="test")


def test_backend_reports_the_tokens_it_cut(tiny_model_dir):
    backend = HFBackend(ModelSpec(name="t", path=str(tiny_model_dir)), device="cpu", batch_size=2)
    limit = backend._max_len()
    n_long = len(backend.tokenizer(LONG)["input_ids"])
    assert n_long > limit
    short, long = backend.loglikelihood([LoglikelihoodRequest("Hi", " there"), LoglikelihoodRequest(LONG, " there")])
    n_cont = long.n_tokens
    assert short.truncated == 0 and long.truncated == n_long + n_cont - limit
    [hs] = backend.hidden_states([HiddenStatesRequest(LONG, " there", layers=(1,))])
    assert hs.truncated == long.truncated
    g_short, g_long = backend.generate([GenerateRequest("Hi", max_new_tokens=4), GenerateRequest(LONG, max_new_tokens=4)])
    assert g_short.truncated == 0 and g_long.truncated == n_long - (limit - 4)


def test_each_result_counts_its_truncated_inputs(tiny_model_dir):
    backend = HFBackend(ModelSpec(name="t", path=str(tiny_model_dir)), device="cpu", batch_size=2)
    bench = LongBench()
    metrics = resolve_metrics(bench, ["probability@forget", "rouge_l_recall@forget"], seed=0)
    results = evaluate(bench, metrics, backend).results
    assert results["probability@forget"].details["truncated"] == 1
    assert results["rouge_l_recall@forget"].details["truncated"] == 1
