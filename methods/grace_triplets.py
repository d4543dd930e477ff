"""GRACE's training data: a safe, an unsafe and a jailbreak completion per prompt.

From the item's own completions when present, else sampled from the model and sorted by the
run's judge (docs/methods.md §1.1 [proposal]).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from harness.errors import ConfigError
from harness.metrics.avqi import CLUSTERS

if TYPE_CHECKING:
    from harness.api.benchmark import Benchmark
    from harness.api.judge import Judge


@dataclass(frozen=True)
class Triplet:
    """One prompt's three completions; `direct` is the context of safe/unsafe, `wrapped` of jailbreak."""

    item_id: str
    direct: str
    wrapped: str
    system: str | None
    safe: str
    unsafe: str
    jailbreak: str
    sources: dict[str, str] = field(default_factory=dict, hash=False)  # cluster -> "item" | "sampled"


@dataclass
class TripletStats:
    items: int = 0
    triplets: int = 0
    skipped: int = 0
    missing: dict[str, int] = field(default_factory=lambda: {c: 0 for c in CLUSTERS})  # among skipped items
    sampled: dict[str, int] = field(default_factory=lambda: {c: 0 for c in CLUSTERS})  # filled from samples
    generations: int = 0
    unparsed: int = 0


def build_triplets(benchmark: "Benchmark", items: list, generate: Callable[[list], list] | None,
                   judge: "Judge | None", max_new_tokens: int, temperature: float = 0.0,
                   seed: int = 0) -> tuple[list[Triplet], TripletStats]:
    """Triplets from the items' own completions, the missing ones sampled and judged (module doc).

    `generate(list[GenerateRequest]) -> list[GenerateResponse]` and `judge` (a `Judge`: its
    verdicts read through `success_of`, ≥ 0.5 = compliance) are needed only when some item lacks
    a completion; with `generate=None` such items are skipped.
    """
    from harness.api.judge import JudgeRequest, success_of
    from harness.api.requests import GenerateRequest

    stats = TripletStats(items=len(items))
    rows = []
    for item in items:
        wrapped = benchmark.prompt(item)
        direct = getattr(item, "behavior", "") or wrapped
        have = {c: getattr(item, f"{c}_completion", "") or "" for c in CLUSTERS}
        rows.append((item, direct, wrapped, have))

    def request(prompt: str, item: Any) -> Any:
        return GenerateRequest(prompt=prompt, max_new_tokens=max_new_tokens, temperature=temperature, n=1,
                               seed=seed if temperature > 0 else None, stop=tuple(getattr(benchmark, "stop", ())),
                               system=getattr(item, "system", None))

    asks: dict[Any, str] = {}  # GenerateRequest -> the behaviour the judge is asked about
    if generate is not None:
        for item, direct, wrapped, have in rows:
            if all(have.values()):
                continue
            asks[request(direct, item)] = direct
            if wrapped != direct:
                asks[request(wrapped, item)] = direct
    texts: dict[Any, tuple[str, float | None]] = {}
    if asks:
        if judge is None:
            raise ConfigError("GRACE: some items lack completions and no judge was given to classify samples")
        reqs = list(asks)
        answers = generate(reqs)
        stats.generations = len(reqs)
        jrs = [JudgeRequest("harm", asks[r], a.texts[0] if a.texts else "") for r, a in zip(reqs, answers)]
        verdicts = judge.judge(jrs)
        for r, jr, v in zip(reqs, jrs, verdicts):
            success = success_of(v)
            stats.unparsed += success is None
            texts[r] = (jr.response, success)

    triplets = []
    for item, direct, wrapped, have in rows:
        sources = {c: "item" for c in CLUSTERS if have[c]}
        if not all(have.values()) and asks:
            got = dict(have)
            for prompt in ((direct, wrapped) if wrapped != direct else (direct,)):
                text, success = texts.get(request(prompt, item), ("", None))
                if success is None or not text.strip():
                    continue
                if success < 0.5:
                    cluster = "safe"
                else:  # a compliance: to the direct request, or under the wrapper
                    cluster = "unsafe" if prompt == direct else "jailbreak"
                if not got[cluster]:
                    got[cluster], sources[cluster] = text, "sampled"
            have = got
        if all(have.values()):
            for c, s in sources.items():
                stats.sampled[c] += s == "sampled"
            triplets.append(Triplet(item.id, direct, wrapped, getattr(item, "system", None),
                                    have["safe"], have["unsafe"], have["jailbreak"], sources))
        else:
            stats.skipped += 1
            for c in CLUSTERS:
                stats.missing[c] += not have[c]
    stats.triplets = len(triplets)
    return triplets, stats
