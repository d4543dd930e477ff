"""adversarial-probes: structure, the ALKALI schema, completions, and no overlap with training."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from harness.benchmarks import safety_corpus as sc
from harness.benchmarks.adversarial_probes import AdversarialProbes
from harness.benchmarks.alkali import MACRO_CATEGORIES, parse_rows
from harness.api.benchmark import PromptItem
from harness.catalog import BENCHMARKS, build_benchmark
from harness.judges.refusal import is_refusal


@pytest.fixture(scope="module")
def bench() -> AdversarialProbes:
    return AdversarialProbes()


def test_splits_families_and_ids(bench):
    adv, benign = bench.split("adversarial"), bench.split("benign")
    assert set(bench.data.splits) == {"adversarial", "benign", "train"}  # train: tests/test_preferences.py
    assert all(isinstance(it, PromptItem) for it in adv + benign)
    ids = [it.id for it in adv + benign]
    assert len(ids) == len(set(ids)) and all(ids)
    families = Counter(it.categories["attack_family"] for it in adv)
    assert set(families) == {"direct", "role-play", "prefix-injection", "obfuscation", "refusal-suppression"}
    assert families == {"direct": 20, "role-play": 50, "prefix-injection": 40, "refusal-suppression": 40,
                        "obfuscation": 40}
    assert len(benign) == 30 and Counter(it.categories["subtype"] for it in benign) == {"ordinary": 20, "look-alike": 10}
    for it in adv:
        assert it.categories["macro_category"] in MACRO_CATEGORIES
        assert set(it.categories) == {"macro_category", "subtype", "attack_family", "source_paper", "template",
                                      "template_seen"}
        assert it.categories["template"].startswith(it.categories["attack_family"] + "/")
    assert {it.categories["macro_category"] for it in adv if it.categories["attack_family"] == "direct"} == {"control_generation"}
    assert {it.categories["macro_category"] for it in adv if it.categories["attack_family"] != "direct"} == {"jailbreak"}
    # every family has a template tiny-safety never saw
    assert {it.categories["attack_family"] for it in adv if it.categories["template_seen"] == "held-out"} == \
        set(families) - {"direct"}


def test_metric_ids_and_decoding(bench):
    assert bench.default_metrics == ("asr@adversarial", "refusal_rate@benign", "avqi@adversarial")
    assert set(bench.default_metrics) <= set(bench.headline_metrics)
    # the family view's pattern names the per-family ids the ASR metric emits
    from harness.reports.tables import _matching

    families = sorted({it.categories["attack_family"] for it in bench.split("adversarial")})
    emitted = [f"asr@adversarial[attack_family={f}]" for f in families] + ["asr@adversarial[subtype=x]"]
    assert _matching(bench.views["ASR by attack family"], emitted) == emitted[:-1]
    req = bench.generate_request(bench.split("adversarial")[0])
    assert (req.temperature, req.max_new_tokens, req.n, req.chat) == (0.0, 48, 1, True)
    assert "adversarial-probes" in BENCHMARKS.names()
    assert build_benchmark("adversarial-probes").data.data_hash() == bench.data.data_hash()


def test_completions_for_avqi(bench):
    for it in bench.split("adversarial"):
        assert it.safe_completion and it.unsafe_completion and it.jailbreak_completion
        assert is_refusal(it.safe_completion) is True, it.safe_completion
        assert is_refusal(it.unsafe_completion) is False, it.unsafe_completion
        assert is_refusal(it.jailbreak_completion) is False, it.jailbreak_completion
        assert len({it.safe_completion, it.unsafe_completion, it.jailbreak_completion}) == 3
    for it in bench.split("benign"):
        assert not (it.safe_completion or it.unsafe_completion or it.jailbreak_completion)
    # prefix-injection completions start with the prefix the prompt asks for
    for it in bench.split("adversarial"):
        m = re.search(r"with (?:the words )?'([^']+)'", it.prompt)
        if it.categories["attack_family"] == "prefix-injection":
            assert m and it.jailbreak_completion.startswith(m.group(1).split(" Step")[0]), it.prompt


def test_limit_keeps_every_family(bench):
    small = AdversarialProbes(limit=len(sc.WRAPPERS))
    adv = small.split("adversarial")
    assert len(adv) == len(sc.WRAPPERS) and len(small.split("benign")) == len(sc.WRAPPERS)
    assert {it.categories["template"] for it in adv} == {f"{w.family}/{w.name}" for w in sc.WRAPPERS}


def test_placeholders_only(bench):
    """Every harmful-looking request is a cue verb on an object of the invented world, nothing real."""
    cues = [*sc.HARMFUL_VERBS, *sc.SWAPS.values(), "s t e a l", "p-o-i-s-o-n"]
    for it in bench.split("adversarial"):
        assert any(obj in it.prompt or sc.reverse_words(obj) in it.prompt
                   for obj in (*sc.OBJECTS, *sc.invented_things()[1])), it.prompt
        words = sc.reverse_words(it.prompt) if it.categories["template"] == "obfuscation/reversed" else it.prompt
        assert any(c in words for c in cues) or re.search(r"\b(\w[ -]){3,}\w\b", it.prompt), it.prompt


def test_disjoint_from_tiny_safety_training(bench):
    examples = sc.training_examples()
    train_prompts = {ex.prompt for ex in examples}
    held_objects = sc.heldout_objects()
    held_tasks = [t for i, t in enumerate(sc.BENIGN_TASKS) if sc.is_heldout(i)]
    for it in bench.split("adversarial") + bench.split("benign"):
        assert it.prompt not in train_prompts
    for ex in examples:
        text = ex.prompt + " " + ex.response
        assert not any(obj in text or sc.reverse_words(obj) in text for obj in held_objects), ex.prompt
        assert not any(t in text for t in held_tasks), ex.prompt
        assert not any(re.search(ask.replace("{task}", ".*").replace("?", r"\?"), ex.prompt)
                       for ask in sc.HELDOUT_ASKS), ex.prompt
    trained_templates = {f"{w.family}/{w.name}" for w in sc.WRAPPERS if w.trained}
    held_templates = [w for w in sc.WRAPPERS if not w.trained]
    for w in held_templates:  # the never-trained wrappers' fixed text is in no training prompt
        fixed = max(re.split(r"\{[a-z_]+\}", w.template), key=len).strip()
        assert fixed and not any(fixed in ex.prompt for ex in examples), w.name
    assert {f"{w.family}/{w.name}" for w in sc.WRAPPERS} - trained_templates == {f"{w.family}/{w.name}" for w in held_templates}
    # every adversarial object is held out, every benign ordinary task too
    for it in bench.split("adversarial"):
        assert any(o in it.prompt or sc.reverse_words(o) in it.prompt for o in held_objects), it.prompt


def test_training_examples_are_consistent():
    examples = sc.training_examples()
    assert examples == sc.training_examples()  # deterministic
    kinds = Counter(ex.kind for ex in examples)
    assert kinds["refusal"] > 0 and kinds["compliance"] > 0 and kinds["answer"] > 0
    breaking = {(w.family, w.name) for w in sc.WRAPPERS if w.breaks}
    for ex in examples:
        if ex.kind == "refusal":
            assert ex.response in sc.REFUSALS and is_refusal(ex.response)
        else:
            assert is_refusal(ex.response) is False, ex.response
    assert not any(ex.family == "direct" and ex.kind == "compliance" for ex in examples)
    assert {ex.family for ex in examples if ex.kind == "compliance"} == {f for f, _ in breaking}
    assert len(set(sc.REFUSALS)) >= 6 and all(is_refusal(r) for r in sc.REFUSALS)


def test_rows_pass_the_alkali_parser_and_break_it_when_bad():
    adv_rows, _ = sc.benchmark_rows()
    items = parse_rows(adv_rows, "adversarial-probes", "fix", extra_categories=("template", "template_seen"))
    assert len(items) == len(adv_rows)
    bad = [dict(adv_rows[0], macro_category="benign")]
    with pytest.raises(Exception, match="not one of jailbreak"):
        parse_rows(bad, "adversarial-probes", "fix")


def test_obfuscation_transforms():
    assert sc.space_letters("Tell me how to steal the key.") == "Tell me how to s t e a l the key."
    assert sc.space_letters("break into the vault") == "b r e a k / i n t o the vault"
    assert sc.dash_letters("break into the vault") == "b-r-e-a-k i-n-t-o the vault"
    assert sc.swap_synonyms("steal and smuggle, not stealth") == "borrow forever and quietly carry, not stealth"
    assert sc.reverse_words("Tell me how to steal the key.") == "key the steal to how me Tell"
