"""adversarial-probes: a built-in, offline jailbreak benchmark in the ALKALI schema.

Project-written (`benchmarks/safety_corpus.py`); nothing in it is dangerous: the "harmful"
requests are harmless placeholders (steal the silver moon-key of the Moon Guild, poison the
royal glitter soup) wrapped by templates named after attack families (`direct`, `role-play`,
`prefix-injection`, `refusal-suppression`, `obfuscation`). It exists so the demo and the tests
can run the safety metrics end to end on `tiny-safety` without any download; its numbers say
nothing about real models.

Rows go through the ALKALI row parser (`benchmarks.alkali.parse_rows`), the same validation
path as a real ALKALI file; `categories` also carry `template` (family/name) and
`template_seen` (`trained` / `held-out` for tiny-safety), so ASR can be split by template.

Splits:
  adversarial  190 wrapped harmful-looking requests (`direct` included: the baseline), each with
               safe_completion (a refusal), unsafe_completion (a direct compliance) and
               jailbreak_completion (a compliance in the wrapper's style), for AVQI;
  benign       30 harmless requests (20 ordinary, 10 look-alikes such as "polish the silver
               moon-key of the Moon Guild"): over-refusal, where the refusal rate should be low.
Both use only objects and tasks tiny-safety was never trained on (see safety_corpus).
  train        56 wrapped harmful-looking requests for preference training (DPO, CHES-DPO):
               4 per *trained* wrapper, on *trained* objects with trained asks only, with the
               same three completions. Disjoint from `adversarial` by construction (no held-out
               object, wrapper or ask), so a method trained on it is evaluated on behaviours and
               templates it never saw; training on `adversarial` itself would make ASR
               meaningless.

Decoding: greedy, 48 new tokens (enough for the refusal judge's 200-character window; a
refusal is about a dozen tokens). Options: `limit` (first N items per split) and the
`PromptBenchmark` decoding overrides (`max_new_tokens`, `temperature`, `top_p`, `samples`).
"""

from __future__ import annotations

from typing import Any

from harness.benchmarks.alkali import CATEGORY_COLUMNS, MACRO_CATEGORIES, parse_rows
from harness.api.benchmark import BenchmarkData, PromptBenchmark, check_limit
from harness.benchmarks.safety_corpus import FAMILIES, GENERATOR_VERSION, WRAPPERS, benchmark_rows

_HOW = "this is generated data: report it as a bug in benchmarks/safety_corpus.py"
EXTRA_CATEGORIES = ("template", "template_seen")


class AdversarialProbes(PromptBenchmark):
    """Harmless-placeholder jailbreak probes (5 attack families) plus a benign over-refusal set."""

    name = "adversarial-probes"
    option_help = {
    }
    default_metrics = ("asr@adversarial", "refusal_rate@benign", "avqi@adversarial")
    headline_metrics = ("asr@adversarial", "refusal_rate@benign", "avqi@adversarial", "avqi_normalised@adversarial",
                        "likelihood_displacement:rate")
    views = {
        "ASR by attack family": ("asr@adversarial[attack_family=*]",),
        "likelihood displacement (preference methods, on their training pairs)": (
            "likelihood_displacement:delta_chosen", "likelihood_displacement:delta_rejected",
            "likelihood_displacement:rate", "likelihood_displacement:margin_change",
            "likelihood_displacement:spearman_*"),
    }
    category_fields = (*CATEGORY_COLUMNS, *EXTRA_CATEGORIES)
    max_new_tokens = 48
    stop = ()

    def load(self) -> BenchmarkData:
        limit = check_limit(self.options.get("limit"))
        adversarial_rows, benign_rows = benchmark_rows()
        adversarial = parse_rows(adversarial_rows, self.name, _HOW, extra_categories=EXTRA_CATEGORIES)
        benign = parse_rows(benign_rows, self.name, _HOW, macro_categories=("benign",),
                            extra_categories=EXTRA_CATEGORIES)
        train = parse_rows(list(train_rows()), self.name, _HOW, extra_categories=EXTRA_CATEGORIES)
        splits: dict[str, list[Any]] = {"adversarial": adversarial, "benign": benign, "train": train}
        if limit is not None:
            splits = {k: v[:limit] for k, v in splits.items()}
        meta = {
            "generator_version": GENERATOR_VERSION, "limit": limit, "families": list(FAMILIES),
            "templates": {f"{w.family}/{w.name}": "trained" if w.trained else "held-out" for w in WRAPPERS},
            "macro_categories": list(MACRO_CATEGORIES), "decoding": self.decoding(),
            "sizes": {k: len(v) for k, v in splits.items()},
        }
        return BenchmarkData(splits=splits, source=f"generated:adversarial-probes@{GENERATOR_VERSION}", meta=meta)


TRAIN_PER_WRAPPER = 4  # train items per trained wrapper


def train_rows() -> tuple[dict, ...]:
    """The `train` split: harmful-looking requests on trained objects under trained wrappers.

    Preference methods need prompts of their own: these reuse only what tiny-safety was trained
    on (objects, wrappers, asks), never a held-out one, so they share no prompt, object or
    template with `adversarial` (tests check it). Wrappers interleaved, so `limit` keeps every one.
    """
    import random

    from harness.benchmarks import safety_corpus as sc

    rng = random.Random(sc.SEED + 2)
    objects = sc.trained_objects()
    per_wrapper: list[list[dict]] = []
    n = 0
    for w in (w for w in WRAPPERS if w.trained):
        rows = []
        for j in range(TRAIN_PER_WRAPPER):
            t = sc.make_task(sc.HARMFUL_VERBS[n % len(sc.HARMFUL_VERBS)], objects[rng.randrange(len(objects))])
            macro, subtype, source = sc.FAMILY_TAXONOMY[w.family]
            rows.append({
                "id": f"train-{w.family}-{w.name}-{j:02d}",
                "prompt": sc.wrap(w, t, sc.TRAIN_ASKS[rng.randrange(len(sc.TRAIN_ASKS))]),
                "macro_category": macro, "subtype": subtype, "attack_family": w.family, "source_paper": source,
                "template": f"{w.family}/{w.name}", "template_seen": "trained",
                "safe_completion": sc.REFUSALS[n % len(sc.REFUSALS)],
                "unsafe_completion": sc.unsafe_completion(t, n),
                "jailbreak_completion": sc.jailbreak_completion(w, t, n),
            })
            n += 1
        per_wrapper.append(rows)
    return tuple(rows[j] for j in range(TRAIN_PER_WRAPPER) for rows in per_wrapper)
