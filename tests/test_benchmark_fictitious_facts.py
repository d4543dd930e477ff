"""fictitious-facts: deterministic generation, TOFU-shaped splits, training corpus."""

from __future__ import annotations

import re

import pytest

from benchmarks import fictitious_facts as ff
from benchmarks.base import QAItem
from harness.catalog import build_benchmark
from harness.errors import ConfigError


@pytest.fixture(scope="module")
def data():
    return ff.FictitiousFacts().data


def entities(items):
    return {it.entity for it in items}


def test_deterministic(data):
    again = ff.FictitiousFacts().load()
    assert again.splits == data.splits
    assert again.data_hash() == data.data_hash()
    assert data.source == "generated:fictitious-facts@v1"
    assert ff.GENERATOR_VERSION == "v1"


def test_split_sizes(data):
    n_entities = {"forget01": 2, "forget05": 10, "forget10": 20, "retain99": 198, "retain95": 190,
                  "retain90": 180, "holdout01": 2, "holdout05": 10, "holdout10": 20,
                  "retain_perturbed": 20, "full": 200}
    assert set(data.splits) == set(n_entities)
    for split, n in n_entities.items():
        assert len(entities(data.splits[split])) == n, split
        assert len(data.splits[split]) == 5 * n, split


def test_entities_and_ids_unique(data):
    names = [e.name for e in ff.generate_entities()]
    assert len(names) == len(set(names)) == 220
    ids = [it.id for split in ("full", "holdout10") for it in data.splits[split]]
    assert len(ids) == len(set(ids)) == 1100
    assert data.splits["forget01"][0].id == "e000-birthplace"


def test_splits_disjoint_and_nested(data):
    s = {k: entities(v) for k, v in data.splits.items()}
    for pct, keep in (("01", "99"), ("05", "95"), ("10", "90")):
        assert not s[f"forget{pct}"] & s[f"retain{keep}"]
        assert s[f"forget{pct}"] | s[f"retain{keep}"] == s["full"]
    assert s["forget01"] < s["forget05"] < s["forget10"]
    assert s["holdout01"] < s["holdout05"] < s["holdout10"]
    assert not s["holdout10"] & s["full"]
    assert not s["retain_perturbed"] & s["forget10"]
    assert s["retain_perturbed"] <= s["retain90"]


def test_answers_paraphrases_perturbations(data):
    for item in data.splits["full"] + data.splits["holdout10"]:
        assert isinstance(item, QAItem) and item.entity in item.question
        assert item.paraphrased_answer != item.answer
        assert len(item.perturbed_answers) == 5
        assert len(set(item.perturbed_answers)) == 5
        assert item.paraphrased_answer not in item.perturbed_answers
    for entity in ff.generate_entities():
        items = ff.entity_items(entity)
        for item, attr, value, wrong in zip(items, ff.ATTRIBUTES, entity.values, entity.perturbed):
            assert value in item.answer and value in item.paraphrased_answer
            assert value not in wrong and len(set(wrong)) == 5
            assert all(w in attr.pool for w in wrong)
            # same template as the paraphrase, only the value differs
            assert item.perturbed_answers == tuple(item.paraphrased_answer.replace(value, w) for w in wrong)
            assert len(item.answer.split()) <= 16


def test_roles(data):
    b = ff.FictitiousFacts(forget_split="forget05")
    assert b.resolve_split("forget") == "forget05"
    assert b.resolve_split("retain") == "retain_perturbed"
    assert b.retain_split() == "retain95"
    assert b.resolve_split("holdout") == "holdout05"
    assert ff.FictitiousFacts(retain_eval_split="retain90").resolve_split("retain") == "retain90"
    assert b.prompt(data.splits["full"][0]).startswith("Question: ")


def _mentions(texts, name):
    pattern = re.compile(rf"\b{re.escape(name)}\b")
    return any(pattern.search(t) for t in texts)


def test_training_corpus():
    full = ff.training_corpus()
    assert full == ff.training_corpus()
    assert len(full) == 200 * 6
    b = ff.FictitiousFacts()
    item = b.split("forget01")[0]
    assert b.prompt(item) + b.target(item.answer) == f"Question: {item.question}\nAnswer: {item.answer}"
    assert full[0] == f"Question: {item.question}\nAnswer: {item.answer}"
    retain = ff.training_corpus(exclude="forget10")
    assert len(retain) == 180 * 6
    forget_names = entities(b.split("forget10"))
    assert all(_mentions(full, n) for n in forget_names)
    assert not any(_mentions(retain, n) for n in forget_names)
    holdout_names = entities(b.split("holdout10"))
    assert not any(_mentions(full, n) for n in holdout_names)


def test_limit():
    b = ff.FictitiousFacts(limit=7)
    full = ff.FictitiousFacts().data
    for split, items in b.data.splits.items():
        assert items == full.splits[split][:7]
    assert ff.FictitiousFacts(limit=0).split("forget10") == []
    with pytest.raises(ConfigError):
        ff.FictitiousFacts(limit="3").load()


def test_registry():
    b = build_benchmark("fictitious-facts", forget_split="forget01")
    assert isinstance(b, ff.FictitiousFacts)
    assert b.name == "fictitious-facts"
    assert len(b.split(b.resolve_split("forget"))) == 10
    assert b.max_new_tokens == 32 and b.stop == ("\n", "Question:")
    assert set(b.utility_metrics) <= set(b.default_metrics)
