"""MUSE loader: a local fixture written here (made-up text), prompts, budgets, roles, errors, hub mocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.benchmarks import muse as muse_mod
from harness.api.benchmark import QAItem
from harness.benchmarks.muse import Muse
from harness.catalog import build_benchmark
from harness.errors import ConfigError, DatasetUnavailableError


def _write(directory: Path, config: str, split: str, rows, as_array=False, ext=".json"):
    (directory / config).mkdir(parents=True, exist_ok=True)
    text = json.dumps(rows) if as_array else "\n".join(json.dumps(r) for r in rows) + "\n"
    (directory / config / f"{split}{ext}").write_text(text)


def _qa(tag, n):
    return [{"question": f"What did the {tag} heron carry on day {i}?", "answer": f"A {tag} pebble number {i}."}
            for i in range(n)]


@pytest.fixture
def fixture_dir(tmp_path):
    _write(tmp_path, "verbmem", "forget", [{"prompt": f"The lighthouse keeper of Pell wrote entry {i}:",
                                            "gt": f"the tide came twice and the lamp burned blue {i}."} for i in range(3)])
    _write(tmp_path, "knowmem", "forget_qa", _qa("forget", 4))
    _write(tmp_path, "knowmem", "retain_qa", _qa("retain", 4))
    _write(tmp_path, "knowmem", "forget_qa_icl", _qa("forget-icl", 3), as_array=True)
    _write(tmp_path, "knowmem", "retain_qa_icl", _qa("retain-icl", 3))
    for split in ("forget", "retain", "holdout"):
        _write(tmp_path, "privleak", split, [f"{split} paragraph {i} about the marsh ferry." for i in range(5)],
               as_array=True)
    _write(tmp_path, "raw", "forget", [{"text": f"Raw forget article {i} on the salt roads."} for i in range(6)],
           ext=".jsonl")
    _write(tmp_path, "raw", "retain1", [{"text": f"Raw retain article {i} on the copper mills."} for i in range(6)])
    return tmp_path


def test_load_fixture(fixture_dir):
    b = Muse(path=str(fixture_dir))
    d = b.data
    assert set(d.splits) == set(muse_mod.SPLITS)
    assert d.source == str(fixture_dir.resolve())
    assert d.meta["corpus"] == "news" and d.meta["configs"]["knowmem_forget"] == "knowmem/forget_qa"
    assert d.meta["knowmem_fewshot"] == {"knowmem_forget": "knowmem_forget_icl", "knowmem_retain": "knowmem_retain_icl"}
    v = b.split("verbmem_forget")[0]
    assert isinstance(v, QAItem) and v.id == "verbmem_forget-0"
    assert v.question == "The lighthouse keeper of Pell wrote entry 0:"
    assert v.answer == "the tide came twice and the lamp burned blue 0."
    k = b.split("knowmem_retain")[2]
    assert (k.question, k.answer) == ("What did the retain heron carry on day 2?", "A retain pebble number 2.")
    p = b.split("privleak_holdout")[1]
    assert (p.question, p.answer) == ("", "holdout paragraph 1 about the marsh ferry.")
    assert b.split("train_forget")[5].answer == "Raw forget article 5 on the salt roads."
    assert len(b.split("train_retain")) == 6
    assert Muse(path=str(fixture_dir)).load().data_hash() == d.data_hash()


def test_prompts_and_budgets(fixture_dir):
    b = Muse(path=str(fixture_dir))
    v = b.split("verbmem_forget")[0]
    assert b.prompt(v) == v.question
    assert b.target(v.answer) == " " + v.answer
    assert b.generation_budget(v) == (128, ())

    k = b.split("knowmem_forget")[1]
    icl = b.split("knowmem_forget_icl")
    expected = "".join(f"Question: {e.question}\nAnswer: {e.answer}\n\n" for e in icl)
    assert b.prompt(k) == expected + f"Question: {k.question}\nAnswer: "
    assert b.prompt(k).count("Question:") == 4 and "forget-icl pebble number 2." in b.prompt(k)
    assert b.generation_budget(k) == (32, ("\n\n", "\nQuestion", "Question:"))
    r = b.split("knowmem_retain")[0]
    assert "retain-icl" in b.prompt(r) and "forget-icl" not in b.prompt(r)

    for split in ("privleak_forget", "privleak_holdout", "train_forget"):
        item = b.split(split)[0]
        assert b.prompt(item) == ""
        assert b.target(item.answer) == " " + item.answer


def test_zero_shot_without_icl(fixture_dir):
    (fixture_dir / "knowmem" / "forget_qa_icl.json").unlink()
    b = Muse(path=str(fixture_dir))
    k = b.split("knowmem_forget")[0]
    assert b.prompt(k) == f"Question: {k.question}\nAnswer: "
    assert b.data.meta["knowmem_fewshot"]["knowmem_forget"] == "none"


def test_roles(fixture_dir):
    b = Muse(path=str(fixture_dir))
    assert b.resolve_split("forget") == "privleak_forget"
    assert b.resolve_split("holdout") == "privleak_holdout"
    assert b.resolve_split("retain") == "knowmem_retain"
    assert b.forget_split() == "train_forget" and b.retain_split() == "train_retain"
    assert b.resolve_split("knowmem_forget") == "knowmem_forget"
    for split in ("verbmem_forget", "knowmem_forget", "privleak_forget", "train_forget", "scal_forget_2"):
        assert b.is_forget_split(split), split
    for split in ("knowmem_retain", "privleak_holdout", "privleak_retain", "train_retain"):
        assert not b.is_forget_split(split), split


def test_limit_keeps_fewshot_whole(fixture_dir):
    b = Muse(path=str(fixture_dir), limit=2)
    assert len(b.split("privleak_forget")) == 2 and len(b.split("knowmem_forget")) == 2
    assert len(b.split("knowmem_forget_icl")) == 3
    with pytest.raises(ConfigError):
        Muse(path=str(fixture_dir), limit=-1).load()


def test_missing_path_and_split(tmp_path, fixture_dir):
    with pytest.raises(DatasetUnavailableError, match="does not exist.*`path`"):
        Muse(path=str(tmp_path / "nope")).load()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetUnavailableError, match="no MUSE file found"):
        Muse(path=str(empty)).load()
    with pytest.raises(DatasetUnavailableError, match=r"scal/forget_1.json"):
        Muse(path=str(fixture_dir)).split("scal_forget_1")


@pytest.mark.parametrize(
    "config,split,rows,pattern",
    [
        ("verbmem", "forget", [{"prompt": "p"}], "'gt'"),
        ("knowmem", "forget_qa", [{"question": "q", "answer": ""}], "'answer'"),
        ("knowmem", "retain_qa", ["just a string"], "JSON object"),
        ("privleak", "forget", [{"body": "no text key"}], "'text'"),
        ("raw", "forget", [17], "non-empty string"),
    ],
)
def test_malformed_rows(tmp_path, config, split, rows, pattern):
    _write(tmp_path, config, split, rows)
    with pytest.raises(DatasetUnavailableError, match=pattern) as e:
        Muse(path=str(tmp_path)).load()
    assert f"{config}/{split} row 0" in str(e.value) and "\n" not in str(e.value)


def test_malformed_json(tmp_path):
    (tmp_path / "privleak").mkdir()
    (tmp_path / "privleak" / "forget.json").write_text('"fine"\n{broken\n')
    with pytest.raises(DatasetUnavailableError, match=r"forget.json line 2 is not valid JSON"):
        Muse(path=str(tmp_path)).load()
    (tmp_path / "privleak" / "forget.json").write_text("[]")
    with pytest.raises(DatasetUnavailableError, match="holds no rows"):
        Muse(path=str(tmp_path)).load()


def test_bad_corpus():
    with pytest.raises(ConfigError, match="corpus"):
        Muse(corpus="poems").load()


def test_hub_failure_becomes_dataset_unavailable(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'muse-bench/MUSE-Books' on the Hub\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DatasetUnavailableError, match=r"muse-bench/MUSE-Books@main.*ConnectionError.*`path`") as e:
        Muse(corpus="books").load()
    assert "\n" not in str(e.value)


def test_hub_load(monkeypatch):
    import datasets

    calls = []

    def fake(hub_id, name, revision, split):
        calls.append((hub_id, name, revision, split))
        if name == "verbmem":
            return [{"prompt": "p", "gt": "g"}]
        if name == "knowmem":
            return [{"question": f"{split}?", "answer": "a"}] * 2
        return [{"text": f"{name} {split} text"}]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    d = Muse(revision="abc123", folds=True).data
    assert d.source == "muse-bench/MUSE-News@abc123"
    assert {(c[1], c[3]) for c in calls} == set(muse_mod.ALL_SPLITS.values())
    assert all(c[0] == "muse-bench/MUSE-News" and c[2] == "abc123" for c in calls)
    assert set(d.splits) == set(muse_mod.ALL_SPLITS)
    assert d.splits["train_retain"][0].answer == "raw retain1 text"
    with pytest.raises(ConfigError, match="news"):
        Muse(corpus="books", folds=True).load()


def test_registry(fixture_dir):
    b = build_benchmark("muse", path=str(fixture_dir))
    assert isinstance(b, Muse) and b.name == "muse"
    assert b.default_metrics == ("verbmem_rouge_f1@verbmem_forget", "knowmem_rouge_f1@knowmem_forget",
                                 "knowmem_rouge_f1@knowmem_retain", "mia_min_k", "privleak")
    assert set(b.utility_metrics) <= set(b.default_metrics)
