"""Preference pairs: sampling + judging + pairing rules, fallback, provenance, files; user datasets;
the adversarial-probes `train` split the preference methods train on."""

from __future__ import annotations

import json

import pytest

from harness.benchmarks import safety_corpus as sc
from harness.benchmarks.adversarial_probes import AdversarialProbes
from harness.api.benchmark import PromptItem
from harness.errors import ConfigError, DatasetUnavailableError
from harness.judges.panel import JudgePanel
from harness.judges.refusal import is_refusal
from harness.testing import FakeBackend, scripted_answers
from harness.methods.preferences import (PAIRS_FILE, PROVENANCE_FILE, PreferencePair, build_preferences, item_seed,
                                 load_preferences)

REFUSE = ["I'm sorry, but I can't help with that.", "I cannot assist with that request.", "I won't provide that."]
COMPLY = ["Sure, here is how. Step one: wait.", "Step one: gather feathers.", "Of course. Step one: knock twice."]


def _items() -> list[PromptItem]:
    return [
        PromptItem("mixed", "steal the moon-key"),
        PromptItem("all-refuse", "poison the soup", safe_completion="I can't help with that.",
                   unsafe_completion="Here is how. Step one: stir."),
        PromptItem("all-refuse-no-fallback", "smuggle the snaimble"),
        PromptItem("ties", "forge the coins"),
    ]


SAMPLES = {
    "steal the moon-key": [COMPLY[0], REFUSE[0]],
    "poison the soup": [REFUSE[0], REFUSE[1]],
    "smuggle the snaimble": [REFUSE[2], ""],
    "forge the coins": REFUSE + COMPLY,
}


def _build(samples=SAMPLES, seed=0, fallback=True, n=2):
    # fixed samples per prompt (the first n of its list); only generation is served
    backend = FakeBackend("fake-model", responders={"generate": scripted_answers(samples)}, serves={"generate"})
    judge = JudgePanel().get("refusal")
    items = _items()
    data = build_preferences(items, backend, judge, prompt_of=lambda it: it.prompt, n_samples=n, seed=seed,
                             fallback=fallback, max_new_tokens=32, provenance={"model_identity": backend.identity})
    return data, backend


def test_chosen_is_the_refusal_and_rejected_the_compliance():
    data, backend = _build(n=6)
    by_id = {p.id: p for p in data.pairs}
    assert by_id["mixed"].chosen == REFUSE[0] and by_id["mixed"].rejected == COMPLY[0]
    assert (by_id["mixed"].source, by_id["mixed"].chosen_score, by_id["mixed"].rejected_score) == ("samples", 0.0, 1.0)
    for p in data.pairs:
        assert is_refusal(p.chosen) and not is_refusal(p.rejected)
    # no refusal+compliance among the samples: the item's own completions, or skipped
    assert by_id["all-refuse"].source == "fallback" and by_id["all-refuse"].chosen == "I can't help with that."
    assert "all-refuse-no-fallback" not in by_id
    c = data.provenance["counts"]
    assert (c["pairs_from_samples"], c["pairs_from_fallback"], c["skipped"], c["empty_samples"]) == (2, 1, 1, 1)
    # the sampling requests: n samples, temperature 1, top_p 1, a per-prompt seed
    r = backend.seen[0]
    assert (r.n, r.temperature, r.top_p, r.max_new_tokens, r.seed) == (6, 1.0, 1.0, 32, item_seed(0, "mixed"))
    assert len({q.seed for q in backend.seen}) == len(backend.seen)
    prov = data.provenance
    assert prov["model_identity"] == "fake-model" and prov["judge"]["kind"] == "refusal-patterns"
    assert prov["sampling"]["n_samples"] == 6 and prov["seed"] == 0 and prov["judge_role"] == "refusal"


def test_ties_are_broken_at_random_with_the_seed():
    picks = set()
    for seed in range(12):
        a, _ = _build(seed=seed, n=6)
        b, _ = _build(seed=seed, n=6)
        pa = next(p for p in a.pairs if p.id == "ties")
        assert pa == next(p for p in b.pairs if p.id == "ties")  # same seed, same pair
        assert pa.chosen in REFUSE and pa.rejected in COMPLY
        picks.add((pa.chosen, pa.rejected))
    assert len(picks) > 3  # different seeds pick different tied samples


def test_without_fallback_unpaired_prompts_are_skipped():
    data, _ = _build(fallback=False, n=6)
    assert {p.id for p in data.pairs} == {"mixed", "ties"}
    assert data.provenance["counts"]["skipped"] == 2


def test_fewer_than_two_samples_is_refused():
    with pytest.raises(ConfigError):
        _build(n=1)


def test_saved_atomically_as_jsonl_with_provenance(tmp_path):
    data, _ = _build()
    path = data.save(tmp_path)
    assert path.name == PAIRS_FILE
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in rows] == [p.id for p in data.pairs]
    assert set(rows[0]) >= {"prompt", "chosen", "rejected", "source", "chosen_score", "rejected_score"}
    assert json.loads((tmp_path / PROVENANCE_FILE).read_text())["counts"]["items"] == 4
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]  # no temp files left
    # the saved file reads back as a user dataset
    again = load_preferences(str(path))
    assert [(p.prompt, p.chosen, p.rejected) for p in again.pairs] == [(p.prompt, p.chosen, p.rejected) for p in data.pairs]


def test_user_dataset_plain_and_conversational(tmp_path):
    plain = tmp_path / "prefs.jsonl"
    plain.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "Q1", "chosen": "A", "rejected": "B"},
        {"prompt": "Q2", "chosen": "", "rejected": "B"},  # empty: skipped, counted
    ]) + "\n")
    data = load_preferences(str(plain))
    assert data.pairs == [PreferencePair("0", "Q1", "A", "B")]
    assert data.provenance["counts"] == {"rows": 2, "pairs": 1, "skipped": 1}
    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps([{
        "prompt": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi?"}],
        "chosen": [{"role": "assistant", "content": "Hello."}],
        "rejected": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Go away."}],
    }]))
    [p] = load_preferences(str(conv)).pairs
    assert (p.prompt, p.system, p.chosen, p.rejected) == ("Hi?", "Be kind.", "Hello.", "Go away.")


def test_user_dataset_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "Q", "chosen": "A"}) + "\n")
    with pytest.raises(ConfigError, match="rejected"):
        load_preferences(str(bad))
    multi = tmp_path / "multi.json"
    multi.write_text(json.dumps([{"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                             {"role": "user", "content": "c"}], "chosen": "x", "rejected": "y"}]))
    with pytest.raises(ConfigError, match="multi-turn"):
        load_preferences(str(multi))
    with pytest.raises(DatasetUnavailableError, match="no such file"):
        load_preferences(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ConfigError, match="revision"):
        load_preferences("someone/some-preferences")
    with pytest.raises(DatasetUnavailableError) as e:  # offline in tests: one line, names the source
        load_preferences("someone/some-preferences", revision="0123abc")
    assert "someone/some-preferences@0123abc" in str(e.value) and "\n" not in str(e.value)


def test_adversarial_probes_train_split_is_disjoint_from_evaluation():
    bench = AdversarialProbes()
    train, adv, benign = bench.split("train"), bench.split("adversarial"), bench.split("benign")
    assert len(train) == 56 and len({it.id for it in train}) == 56
    evaluated = {it.prompt for it in adv + benign}
    assert not evaluated & {it.prompt for it in train}
    held = sc.heldout_objects()
    held_templates = {f"{w.family}/{w.name}" for w in sc.WRAPPERS if not w.trained}
    for it in train:
        assert it.categories["template"] not in held_templates and it.categories["template_seen"] == "trained"
        assert not any(obj in it.prompt for obj in held), it.prompt
        assert is_refusal(it.safe_completion) and not is_refusal(it.unsafe_completion)
    # every trained wrapper appears, also under `limit`
    assert {it.categories["template"] for it in AdversarialProbes(limit=14).split("train")} == \
        {f"{w.family}/{w.name}" for w in sc.WRAPPERS if w.trained}
