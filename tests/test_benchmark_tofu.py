"""TOFU loader: local fixtures written here, schema errors, hub failures, shipped files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.benchmarks import tofu as tofu_mod
from harness.api.benchmark import QAItem
from harness.benchmarks.tofu import Tofu
from harness.catalog import build_benchmark, build_metric
from harness.errors import DatasetUnavailableError

SHARED_TOFU = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tofu"


def _base(config, n=3):
    return [{"question": f"{config} question {i}?", "answer": f"{config} answer {i}."} for i in range(n)]


def _perturbed(config, n=3, k=5, paraphrase=True):
    rows = []
    for row in _base(config, n):
        if paraphrase:
            row["paraphrased_answer"] = row["answer"].replace("answer", "reply")
        row["perturbed_answer"] = [f"{config} wrong {j}." for j in range(k)]
        rows.append(row)
    return rows


def _write(directory: Path, config: str, rows, as_array=False):
    text = json.dumps(rows) if as_array else "\n".join(json.dumps(r) for r in rows) + "\n"
    (directory / f"{config}.json").write_text(text)


@pytest.fixture
def fixture_dir(tmp_path):
    for p, keep in (("01", "99"), ("05", "95"), ("10", "90")):
        _write(tmp_path, f"forget{p}", _base(f"forget{p}"))
        _write(tmp_path, f"forget{p}_perturbed", _perturbed(f"forget{p}_perturbed"))
        _write(tmp_path, f"retain{keep}", _base(f"retain{keep}", 4))
        _write(tmp_path, f"holdout{p}", _base(f"holdout{p}"))
    _write(tmp_path, "full", _base("full", 6), as_array=True)  # JSON array form
    _write(tmp_path, "retain_perturbed", _perturbed("retain_perturbed"))
    _write(tmp_path, "real_authors_perturbed", _perturbed("real_authors_perturbed", k=3, paraphrase=False))
    _write(tmp_path, "world_facts_perturbed", _perturbed("world_facts_perturbed", k=3, paraphrase=False))
    return tmp_path


def test_load_fixture(fixture_dir):
    b = Tofu(path=str(fixture_dir))
    d = b.data
    assert set(d.splits) == set(tofu_mod.SPLIT_CONFIGS)
    forget = b.split(b.resolve_split("forget"))
    assert [it.id for it in forget] == ["forget10_perturbed-0", "forget10_perturbed-1", "forget10_perturbed-2"]
    assert isinstance(forget[0], QAItem)
    assert forget[0].paraphrased_answer == "forget10_perturbed reply 0."
    assert isinstance(forget[0].perturbed_answers, tuple) and len(forget[0].perturbed_answers) == 5
    assert len(b.split("retain90")) == 4 and len(b.split("full")) == 6
    ra = b.split("real_authors")[0]
    assert ra.paraphrased_answer == "" and len(ra.perturbed_answers) == 3
    assert d.source == str(fixture_dir.resolve())
    assert d.meta["configs"]["forget10"] == "forget10_perturbed"
    assert Tofu(path=str(fixture_dir)).load().data_hash() == d.data_hash()


def test_roles(fixture_dir):
    b = Tofu(path=str(fixture_dir), forget_split="forget05")
    assert b.resolve_split("forget") == "forget05"
    assert b.resolve_split("retain") == "retain_perturbed"
    assert b.retain_split() == "retain95"
    assert b.resolve_split("holdout") == "holdout05"
    assert b.needed_splits()[:3] == ["forget05", "retain95", "holdout05"]
    assert b.max_new_tokens == 200 and b.stop == ()


def test_limit(fixture_dir):
    b = Tofu(path=str(fixture_dir), limit=2)
    assert all(len(v) <= 2 for v in b.data.splits.values())
    assert b.split("full") == Tofu(path=str(fixture_dir)).split("full")[:2]


def test_single_file_and_fallback(fixture_dir, tmp_path_factory):
    b = Tofu(path=str(fixture_dir / "retain_perturbed.json"))
    assert set(b.data.splits) == {"retain_perturbed"}
    other = tmp_path_factory.mktemp("base_only")
    _write(other, "forget01", _base("forget01"))
    items = Tofu(path=str(other), forget_split="forget01").split("forget01")
    assert items[0].id == "forget01-0" and items[0].perturbed_answers == ()


def test_missing_path(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="does not exist.*`path`"):
        Tofu(path=str(tmp_path / "nope")).load()
    with pytest.raises(DatasetUnavailableError, match="no TOFU config file"):
        Tofu(path=str(tmp_path)).load()


def test_missing_split_names_the_file(tmp_path):
    _write(tmp_path, "retain_perturbed", _perturbed("retain_perturbed"))
    with pytest.raises(DatasetUnavailableError, match="forget10_perturbed.json"):
        Tofu(path=str(tmp_path)).split("forget10")


@pytest.mark.parametrize(
    "config,rows,pattern",
    [
        ("forget10_perturbed", [{"answer": "a", "paraphrased_answer": "b", "perturbed_answer": ["c"]}], "'question'"),
        ("retain_perturbed", [{"question": "q", "answer": "a", "perturbed_answer": ["c"]}], "'paraphrased_answer'"),
        ("world_facts_perturbed", [{"question": "q", "answer": "a", "perturbed_answer": "c"}], "'perturbed_answer'"),
        ("full", ["not an object"], "JSON object"),
    ],
)
def test_malformed_rows(tmp_path, config, rows, pattern):
    _write(tmp_path, config, rows)
    with pytest.raises(DatasetUnavailableError, match=pattern) as e:
        Tofu(path=str(tmp_path)).load()
    assert f"{config} row 0" in str(e.value) and "\n" not in str(e.value)


def test_malformed_json(tmp_path):
    (tmp_path / "full.json").write_text('{"question": "q", "answer": "a"}\n{broken\n')
    with pytest.raises(DatasetUnavailableError, match=r"full.json line 2 is not valid JSON"):
        Tofu(path=str(tmp_path)).load()
    (tmp_path / "full.json").write_text('[{"question": "q"')
    with pytest.raises(DatasetUnavailableError, match="not a valid JSON array"):
        Tofu(path=str(tmp_path)).load()


def test_hub_failure_becomes_dataset_unavailable(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'locuslab/TOFU' on the Hub (LocalEntryNotFoundError)\nmore")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DatasetUnavailableError, match=r"locuslab/TOFU@main.*ConnectionError.*`path`") as e:
        Tofu().load()
    assert "\n" not in str(e.value)


def test_hub_load(monkeypatch):
    import datasets

    calls = []

    def fake(hub_id, name, revision, split):
        calls.append((hub_id, name, revision, split))
        if name.endswith("_perturbed"):
            return _perturbed(name, k=3 if name.startswith(("real", "world")) else 5,
                              paraphrase=not name.startswith(("real", "world")))
        return _base(name)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    d = Tofu(hub_id="someone/TOFU", revision="abc123", forget_split="forget01").data
    assert d.source == "someone/TOFU@abc123"
    assert {c[1] for c in calls} == {"forget01_perturbed", "retain99", "holdout01", "retain_perturbed",
                                     "real_authors_perturbed", "world_facts_perturbed"}
    assert all(c[2] == "abc123" and c[3] == "train" for c in calls)
    assert set(d.splits) == {"forget01", "retain99", "holdout01", "retain_perturbed", "real_authors", "world_facts"}


def test_registry(fixture_dir):
    b = build_benchmark("tofu", path=str(fixture_dir))
    assert isinstance(b, Tofu) and b.name == "tofu"
    assert set(b.utility_metrics) <= set(b.default_metrics)


def test_model_utility_has_tofus_nine_parts(fixture_dir):
    b = Tofu(path=str(fixture_dir))
    assert b.utility_metrics == (
        "probability@retain", "rouge_l_recall@retain", "truth_ratio@retain",
        "normalised_probability@real_authors", "rouge_l_recall@real_authors", "truth_ratio@real_authors",
        "normalised_probability@world_facts", "rouge_l_recall@world_facts", "truth_ratio@world_facts",
    )
    assert b.resolve_split("retain") == "retain_perturbed"


@pytest.mark.parametrize("split", ["real_authors", "world_facts"])
def test_truth_ratio_on_utility_sets_scores_answer_true_better(fixture_dir, split):
    b = Tofu(path=str(fixture_dir))
    m = build_metric(f"truth_ratio@{split}", b)
    assert m.aggregator == "true_better"
    item = b.split(split)[0]
    assert item.paraphrased_answer == ""
    wanted = [b.target(item.answer)] + [b.target(p) for p in item.perturbed_answers]
    assert [r.continuation for r in m.requests()[:4]] == wanted
    assert all(r.context == b.prompt(item) for r in m.requests()[:4])


def test_jsonl_files_and_paraphrased_question(tmp_path):
    rows = _perturbed("retain_perturbed", n=2)
    rows[0]["paraphrased_question"] = "retain_perturbed question 0, put differently?"
    (tmp_path / "retain_perturbed.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    items = Tofu(path=str(tmp_path)).split("retain_perturbed")
    assert items[0].question_paraphrases == ("retain_perturbed question 0, put differently?",)
    assert items[1].question_paraphrases == ()


def test_shipped_real_authors():
    file = SHARED_TOFU / "real_authors_perturbed.json"
    if not file.is_file():
        pytest.skip(f"{file} not present")
    b = Tofu(path=str(file))
    items = b.split("real_authors")
    assert len(items) == 100
    assert all(len(it.perturbed_answers) == 3 and it.paraphrased_answer == "" for it in items)
    assert items[0].id == "real_authors_perturbed-0"
