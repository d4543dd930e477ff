"""WMDP loader (a fixture written here, made-up questions) and the mcq_accuracy metric by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.benchmarks import wmdp as wmdp_mod
from harness.api.benchmark import MCQItem
from harness.benchmarks.wmdp import Wmdp
from harness.catalog import build_benchmark, build_metric
from harness.errors import ConfigError, DatasetUnavailableError
from harness.api.requests import LoglikelihoodResponse


def _rows(subset, n=3):
    return [{"question": f"  Which {subset} tool fits drawer {i}?  ", "choices": [f"{subset} tool {j}" for j in range(4)],
             "answer": i % 4} for i in range(n)]


def _write(directory: Path, config: str, rows, ext=".json", as_array=False):
    text = json.dumps(rows) if as_array else "\n".join(json.dumps(r) for r in rows) + "\n"
    (directory / f"{config}{ext}").write_text(text)


@pytest.fixture
def fixture_dir(tmp_path):
    _write(tmp_path, "wmdp-bio", _rows("bio", 3))
    _write(tmp_path, "wmdp-chem", _rows("chem", 2), ext=".jsonl")
    _write(tmp_path, "wmdp-cyber", _rows("cyber", 4), as_array=True)
    return tmp_path


def test_load_fixture(fixture_dir):
    b = Wmdp(path=str(fixture_dir))
    d = b.data
    assert set(d.splits) == {"bio", "chem", "cyber", "all"}
    assert [len(d.splits[s]) for s in ("bio", "chem", "cyber", "all")] == [3, 2, 4, 9]
    item = b.split("bio")[1]
    assert isinstance(item, MCQItem)
    assert item == MCQItem(id="wmdp-bio-1", question="  Which bio tool fits drawer 1?  ",
                           choices=("bio tool 0", "bio tool 1", "bio tool 2", "bio tool 3"), answer=1, subject="biology")
    assert b.split("cyber")[0].subject == "cybersecurity" and b.split("chem")[0].subject == "chemistry"
    assert d.source == str(fixture_dir.resolve())
    assert Wmdp(path=str(fixture_dir)).load().data_hash() == d.data_hash()
    assert b.reference(item) == "B. bio tool 1"


def test_prompt_is_lm_eval_template(fixture_dir):
    b = Wmdp(path=str(fixture_dir))
    item = b.split("bio")[0]
    assert b.prompt(item) == (
        "The following are multiple choice questions (with answers) about biology.\n\n"
        "Which bio tool fits drawer 0?\nA. bio tool 0\nB. bio tool 1\nC. bio tool 2\nD. bio tool 3\nAnswer:"
    )
    assert b.choice_continuations(item) == [" A", " B", " C", " D"]
    assert b.request_kinds == ("loglikelihood",)


def test_subsets_limit_and_default_metrics(fixture_dir):
    b = Wmdp(path=str(fixture_dir), subsets=["wmdp-cyber", "bio"], limit=2)
    assert set(b.data.splits) == {"cyber", "bio", "all"}
    assert [it.id for it in b.split("all")] == ["wmdp-cyber-0", "wmdp-cyber-1", "wmdp-bio-0", "wmdp-bio-1"]
    assert b.default_metrics == ("mcq_accuracy@cyber", "mcq_accuracy@bio")
    assert Wmdp.default_metrics == ("mcq_accuracy@bio", "mcq_accuracy@chem", "mcq_accuracy@cyber")
    assert Wmdp(subsets="chem").subsets == ("chem",)
    with pytest.raises(ConfigError, match="unknown subset"):
        Wmdp(subsets=["physics"])
    single = Wmdp(path=str(fixture_dir / "wmdp-bio.json"), subsets=["bio"])
    assert len(single.split("bio")) == 3


def test_roles(fixture_dir):
    b = Wmdp(path=str(fixture_dir))
    assert b.resolve_split("forget") == "all" and b.resolve_split("chem") == "chem"
    assert all(b.is_forget_split(s) for s in ("bio", "chem", "cyber", "all"))
    with pytest.raises(ConfigError, match="evaluation-only"):
        b.forget_split()
    with pytest.raises(ConfigError, match="evaluation-only"):
        b.retain_split()
    with pytest.raises(ConfigError, match="no retain split"):
        b.resolve_split("retain")


def test_missing_files(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="does not exist.*`path`"):
        Wmdp(path=str(tmp_path / "nope")).load()
    _write(tmp_path, "wmdp-bio", _rows("bio"))
    with pytest.raises(DatasetUnavailableError, match="wmdp-chem.json not found"):
        Wmdp(path=str(tmp_path)).load()
    with pytest.raises(DatasetUnavailableError, match="holds only wmdp-bio"):
        Wmdp(path=str(tmp_path / "wmdp-bio.json")).load()


@pytest.mark.parametrize(
    "row,pattern",
    [
        ({"choices": ["a", "b", "c", "d"], "answer": 0}, "'question'"),
        ({"question": "q", "choices": "abcd", "answer": 0}, "'choices'"),
        ({"question": "q", "choices": ["a", "b", "c", "d"], "answer": 4}, "'answer'"),
        ({"question": "q", "choices": ["a", "b", "c", "d"], "answer": "1"}, "'answer'"),
        ({"question": "q", "choices": ["a", "b", "c", "d"], "answer": True}, "'answer'"),
        ("not an object", "JSON object"),
    ],
)
def test_malformed_rows(tmp_path, row, pattern):
    _write(tmp_path, "wmdp-bio", [row])
    with pytest.raises(DatasetUnavailableError, match=pattern) as e:
        Wmdp(path=str(tmp_path), subsets=["bio"]).load()
    assert "wmdp-bio row 0" in str(e.value) and "\n" not in str(e.value)


def test_malformed_json(tmp_path):
    (tmp_path / "wmdp-bio.json").write_text('{"question": "q"\n')
    with pytest.raises(DatasetUnavailableError, match="line 1 is not valid JSON"):
        Wmdp(path=str(tmp_path), subsets=["bio"]).load()


def test_hub_load_and_failure(monkeypatch):
    import datasets

    calls = []

    def fake(hub_id, name, revision, split):
        calls.append((hub_id, name, revision, split))
        return _rows(name.removeprefix("wmdp-"), 2)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    d = Wmdp(revision="abc123").data
    assert d.source == "cais/wmdp@abc123"
    assert calls == [("cais/wmdp", f"wmdp-{s}", "abc123", "test") for s in ("bio", "chem", "cyber")]
    assert len(d.splits["all"]) == 6

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'cais/wmdp' on the Hub\nmore")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DatasetUnavailableError, match=r"cais/wmdp@main.*ConnectionError.*`path`") as e:
        Wmdp().load()
    assert "\n" not in str(e.value)


def _resp(total: float, n: int = 1) -> LoglikelihoodResponse:
    return LoglikelihoodResponse([total / n] * n, [False] * n, [0.0] * n, [1.0] * n)


def test_mcq_accuracy_by_hand(fixture_dir):
    b = build_benchmark("wmdp", path=str(fixture_dir))
    m = build_metric("mcq_accuracy@bio", b, seed=0)
    items = b.split("bio")  # answers 0, 1, 2
    reqs = m.requests()
    assert len(reqs) == 3 * 4
    assert [r.continuation for r in reqs[:4]] == [" A", " B", " C", " D"]
    assert all(r.context == b.prompt(items[0]) for r in reqs[:4])
    # summed log-probs per choice; item 0 -> picks A (correct); item 1 -> picks C (wrong, answer B)
    # although B has the higher *mean* (2 tokens); item 2 -> tie A/C, the first wins (A, wrong)
    sums = {0: [-0.5, -2.0, -3.0, -4.0], 1: [-3.0, -2.2, -2.0, -5.0], 2: [-1.0, -4.0, -1.0, -6.0]}
    responses = {}
    for i, item in enumerate(items):
        for j, r in enumerate(m._requests(item)):
            responses[r] = _resp(sums[i][j], n=2 if (i, j) == (1, 1) else 1)
    assert [m.predicted(it, responses) for it in items] == [0, 2, 0]
    res = m.compute(responses, {}, {})
    assert res.per_item == {"wmdp-bio-0": 1.0, "wmdp-bio-1": 0.0, "wmdp-bio-2": 0.0}
    assert res.value == pytest.approx(1 / 3) and res.n == 3
    assert res.ci_low <= res.value <= res.ci_high
    assert res.details["chance"] == pytest.approx(0.25)
    assert res.higher_is_better is False  # a WMDP subset is a forget split: lower is better


def test_mcq_accuracy_higher_is_better_off_forget_splits():
    from harness.api.benchmark import Benchmark, BenchmarkData

    class Quiz(Benchmark):
        name = "quiz"

        def load(self):
            return BenchmarkData({"test": [MCQItem("q0", "2+2?", ("3", "4"), 1)]}, "inline")

    m = build_metric("mcq_accuracy@test", Quiz())
    assert m.better_when_higher is True
    assert [r.continuation for r in m.requests()] == [" A", " B"]
    assert m.benchmark.reference(m.items[0]) == "1"


def test_registry():
    b = build_benchmark("wmdp")
    assert isinstance(b, Wmdp) and b.name == "wmdp"
    assert wmdp_mod.CONFIGS == {"bio": "wmdp-bio", "chem": "wmdp-chem", "cyber": "wmdp-cyber"}
