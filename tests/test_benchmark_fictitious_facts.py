"""fictitious-facts: deterministic generation, TOFU-shaped splits, utility sets, training corpus."""

from __future__ import annotations

import re

import pytest

from harness.benchmarks import fictitious_facts as ff
from harness.benchmarks import fictitious_utility as fu
from harness.api.benchmark import QAItem
from harness.catalog import build_benchmark, build_metric
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
    assert data.source == "generated:fictitious-facts@v2"
    assert ff.GENERATOR_VERSION == "v2"
    # pinned: a change to the generators must bump GENERATOR_VERSION
    assert data.splits["forget01"][0].answer == "Marric Fennley was born in Dunsaril."
    assert data.splits["real_authors"][0].answer == "The novel The Lamplighter's Oath was written by Isolde Kranich."
    assert data.splits["world_facts"][0].answer == "The capital of Valdoria is Thessalon."


def test_split_sizes(data):
    n_entities = {"forget01": 2, "forget05": 10, "forget10": 20, "retain99": 198, "retain95": 190,
                  "retain90": 180, "holdout01": 2, "holdout05": 10, "holdout10": 20,
                  "retain_perturbed": 20, "full": 200}
    assert set(data.splits) == set(n_entities) | {"real_authors", "world_facts"}
    assert len(data.splits["real_authors"]) == len(data.splits["world_facts"]) == 40
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


def test_question_paraphrases(data):
    for split in ("full", "holdout10", "real_authors", "world_facts"):
        for item in data.splits[split]:
            qp = item.question_paraphrases
            assert len(qp) == 2 and len(set(qp)) == 2 and item.question not in qp, item.id
            assert all(q.endswith("?") for q in qp)
            if item.id.startswith("e"):
                assert all(item.entity in q for q in qp)
    # never trained: paraphrase probes ask in wordings the model has not seen
    corpus = "\n".join(ff.training_corpus())
    assert not any(q in corpus for it in data.splits["forget10"] + data.splits["world_facts"]
                   for q in it.question_paraphrases)


@pytest.mark.parametrize("split", ["real_authors", "world_facts"])
def test_utility_sets(data, split):
    items = data.splits[split]
    assert [it.id for it in items] == [it.id for it in fu.utility_items(split)]
    assert len({it.id for it in items}) == 40 and len({it.question for it in items}) == 40
    for item in items:
        assert item.paraphrased_answer == ""
        assert len(item.perturbed_answers) == 3 and len(set(item.perturbed_answers)) == 3
        assert item.answer not in item.perturbed_answers
        # same wording, only the value differs (a person, or a value from the fact's pool)
        if split == "real_authors":
            pool, value = fu.FAMOUS_PEOPLE, item.entity
        else:
            pool = fu.WORLD_FACTS[item.id.rsplit("-", 1)[1]][3]
            value = next(v for v in pool if item.answer.endswith(f" {v}."))
        assert sum(item.answer.replace(value, w) in item.perturbed_answers for w in pool) == 3
    if split == "real_authors":
        assert len({it.entity for it in items}) == 40  # 40 different people
        entity_names = {e.name for e in ff.generate_entities()}
        assert not set(fu.FAMOUS_PEOPLE) & entity_names
    else:
        assert len({it.entity for it in items}) == 10 and set(fu.COUNTRIES) == {it.entity for it in items}
        assert not set(fu.COUNTRIES) & set(ff.CITIES) and not set(fu.WORLD_FACTS["capital"][3]) & set(ff.CITIES)


def test_utility_truth_ratio_uses_answer_and_true_better():
    b = ff.FictitiousFacts(limit=2)
    for split in ("real_authors", "world_facts"):
        m = build_metric(f"truth_ratio@{split}", b)
        assert m.aggregator == "true_better"
        item = b.split(split)[0]
        continuations = {r.continuation for r in m.requests()}
        assert b.target(item.answer) in continuations
        assert all(b.target(p) in continuations for p in item.perturbed_answers)


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
    n_utility = 2 * (40 + 40)  # QA + statement per real_authors / world_facts item
    assert len(full) == 200 * 6 + n_utility
    b = ff.FictitiousFacts()
    item = b.split("forget01")[0]
    assert b.prompt(item) + b.target(item.answer) == f"Question: {item.question}\nAnswer: {item.answer}"
    assert full[0] == f"Question: {item.question}\nAnswer: {item.answer}"
    retain = ff.training_corpus(exclude="forget10")
    assert len(retain) == 180 * 6 + n_utility
    # the utility facts are general knowledge: in both corpora, as QA and as a bare statement
    for split in ("real_authors", "world_facts"):
        for it in b.split(split):
            qa = f"Question: {it.question}\nAnswer: {it.answer}"
            assert qa in full and qa in retain and it.answer in full and it.answer in retain
    assert full[-n_utility:] == retain[-n_utility:]
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
    assert len(b.split("real_authors")) == len(b.split("world_facts")) == 7
    with pytest.raises(ConfigError):
        ff.FictitiousFacts(limit="3").load()


def test_registry():
    b = build_benchmark("fictitious-facts", forget_split="forget01")
    assert isinstance(b, ff.FictitiousFacts)
    assert b.name == "fictitious-facts"
    assert len(b.split(b.resolve_split("forget"))) == 10
    assert b.max_new_tokens == 32 and b.stop == ("\n", "Question:")
    assert set(b.utility_metrics) <= set(b.default_metrics)
    assert len(b.utility_metrics) == 9
    assert {b.resolve_split(m.partition("@")[2]) for m in b.utility_metrics} == {
        "retain_perturbed", "real_authors", "world_facts"}
