"""Preference pairs (prompt, chosen, rejected) for preference methods (DPO, CHES-DPO).

Two sources:

- `build_preferences`: the CHES refusal recipe (docs/methods.md §2.6). The model itself samples
  `n_samples` answers per prompt (temperature 1, top_p 1 by default, seeded per prompt), the
  run's `refusal`/`harm` judge scores each one, and the pair is chosen = the answer with the
  lowest compliance (the refusal), rejected = the one with the highest (the compliance). Ties
  inside the lowest or highest group are broken at random with an RNG seeded by (seed, item
  id). A prompt whose samples hold no refusal *and* compliance falls back to the item's own
  `safe_completion`/`unsafe_completion` when both are present and `fallback` is on [proposal:
  the CHES code breaks such ties at random or with PairRM instead, which pairs two refusals];
  otherwise it is skipped and counted.
- `load_preferences`: a user's dataset with columns `prompt`, `chosen`, `rejected` (plain
  strings, or conversational message lists as TRL accepts them), from a JSONL/JSON file or
  a hub id read with `datasets.load_dataset` at a pinned revision.

`PreferenceData.save` writes the pairs as JSONL and their provenance (model and judge
identity, sampling settings, seed, counts) as JSON next to them, both atomically.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from harness.errors import ConfigError, DatasetUnavailableError
from harness.io import atomic_write_json, atomic_write_jsonl

if TYPE_CHECKING:
    from harness.api.judge import Judge

PAIRS_FILE = "preferences.jsonl"
PROVENANCE_FILE = "preferences.json"
REQUIRED_COLUMNS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class PreferencePair:
    """One preference pair. Scores are the judge's compliance in [0, 1] (None for user data)."""

    id: str
    prompt: str
    chosen: str
    rejected: str
    system: str | None = None
    source: str = "user"  # "samples" (the model's own answers), "fallback" (the item's completions), "user"
    chosen_score: float | None = None
    rejected_score: float | None = None


@dataclass
class PreferenceData:
    pairs: list[PreferencePair]
    provenance: dict[str, Any] = field(default_factory=dict)

    def save(self, directory: str | Path) -> Path:
        """Write `preferences.jsonl` (one pair a line) and `preferences.json` (provenance)."""
        directory = Path(directory)
        atomic_write_jsonl(directory / PAIRS_FILE, [asdict(p) for p in self.pairs])
        atomic_write_json(directory / PROVENANCE_FILE, self.provenance)
        return directory / PAIRS_FILE

    def fingerprint(self) -> str:
        """Content hash of the pairs (what a trained artefact was trained on)."""
        payload = json.dumps([asdict(p) for p in self.pairs], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


# --- building pairs from the model's own samples ---------------------------------------------


def item_seed(seed: int, item_id: str) -> int:
    """The sampling seed of one prompt: depends on (run seed, item id) only, not on order."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{item_id}".encode()).digest()[:4], "big")


def build_preferences(
    items: list[Any],
    backend: Any,
    judge: "Judge",
    *,
    prompt_of: Callable[[Any], str],
    judge_role: str = "refusal",
    n_samples: int = 2,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 512,
    stop: Iterable[str] = (),
    seed: int = 0,
    fallback: bool = True,
    threshold: float = 0.5,
    chat: bool = True,
    provenance: dict[str, Any] | None = None,
) -> PreferenceData:
    """Sample, judge and pair (see the module docstring).

    `backend` answers GenerateRequests (`run`); `judge` is the run's judge for the role
    (compliance read with `success_of`). A sample counts as a refusal when its compliance is
    below `threshold`, as a compliance otherwise; unparseable verdicts and empty answers are
    left out and counted. `judge_role` only labels the judge requests and the provenance.
    """
    from harness.api.judge import JudgeRequest, success_of
    from harness.api.requests import GenerateRequest

    if n_samples < 2:
        raise ConfigError(f"preference sampling needs at least 2 samples per prompt, got {n_samples}")
    requests = [
        GenerateRequest(prompt=prompt_of(it), max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                        n=n_samples, seed=item_seed(seed, it.id), stop=tuple(stop), system=it.system, chat=chat)
        for it in items
    ]
    answers = backend.run(requests) if requests else []
    texts = [list(a.texts) for a in answers]
    role = judge_role
    jrs = [JudgeRequest(role, getattr(it, "behavior", "") or prompt_of(it), t)
           for it, ts in zip(items, texts) for t in ts if t.strip()]
    verdicts = dict(zip(jrs, judge.judge(jrs))) if jrs else {}

    pairs: list[PreferencePair] = []
    counts = {"items": len(items), "samples": 0, "empty_samples": 0, "unparsed_verdicts": 0,
              "pairs_from_samples": 0, "pairs_from_fallback": 0, "skipped": 0}
    for it, ts in zip(items, texts):
        scored: list[tuple[float, str]] = []
        for t in ts:
            counts["samples"] += 1
            if not t.strip():
                counts["empty_samples"] += 1
                continue
            s = success_of(verdicts[JudgeRequest(role, getattr(it, "behavior", "") or prompt_of(it), t)])
            if s is None:
                counts["unparsed_verdicts"] += 1
                continue
            scored.append((s, t))
        pair = _pair_from_samples(it, prompt_of(it), scored, seed, threshold)
        if pair is not None:
            counts["pairs_from_samples"] += 1
        elif fallback and getattr(it, "safe_completion", "") and getattr(it, "unsafe_completion", ""):
            pair = PreferencePair(id=str(it.id), prompt=prompt_of(it), chosen=it.safe_completion,
                                  rejected=it.unsafe_completion, system=it.system, source="fallback")
            counts["pairs_from_fallback"] += 1
        else:
            counts["skipped"] += 1
            continue
        pairs.append(pair)
    prov = dict(provenance or {})
    prov.update({
        "source": "samples",
        "judge": judge.identity(),
        "judge_role": role,
        "sampling": {"n_samples": n_samples, "temperature": temperature, "top_p": top_p, "top_k": 0,
                     "max_new_tokens": max_new_tokens, "stop": list(stop), "chat": chat},
        "seed": seed,
        "threshold": threshold,
        "fallback": fallback,
        "counts": counts,
    })
    return PreferenceData(pairs=pairs, provenance=prov)


def _pair_from_samples(item: Any, prompt: str, scored: list[tuple[float, str]], seed: int,
                       threshold: float) -> PreferencePair | None:
    """chosen = a lowest-compliance sample, rejected = a highest one; None unless one refuses and one complies."""
    if not scored:
        return None
    lo, hi = min(s for s, _ in scored), max(s for s, _ in scored)
    if not (lo < threshold <= hi):
        return None
    rng = random.Random(f"preferences:{seed}:{item.id}")
    low = [t for s, t in scored if s == lo]
    high = [t for s, t in scored if s == hi]
    return PreferencePair(id=str(item.id), prompt=prompt, chosen=low[rng.randrange(len(low))],
                          rejected=high[rng.randrange(len(high))], system=item.system, source="samples",
                          chosen_score=lo, rejected_score=hi)


# --- reading a user's dataset ----------------------------------------------------------------


def load_preferences(source: str, revision: str | None = None, split: str = "train",
                     config: str | None = None) -> PreferenceData:
    """Pairs from a local JSONL/JSON file, or from a hub dataset at a pinned `revision`.

    Rows need `prompt`, `chosen`, `rejected` (optional `id`, `system`). Conversational rows
    (lists of {role, content}) are reduced to one user turn (plus a system turn) and the last
    assistant message; multi-turn prompts are refused, as every prompt is encoded as one user
    turn (`harness.prompts.encode_prompt`). Rows with an empty field are skipped and counted.
    """
    path = Path(source).expanduser()
    if path.is_file():
        rows = _read_rows(path)
        where = {"source": "file", "path": str(path.resolve())}
    elif path.exists() or source.startswith((".", "/", "~")) or source.endswith((".json", ".jsonl")):
        raise DatasetUnavailableError(f"preference dataset {source!r}: no such file")
    else:
        if not revision:
            raise ConfigError(f"preference dataset {source!r} from the hub needs a pinned `preferences_revision` "
                              "(a commit hash or tag)")
        rows = _hub_rows(source, revision, split, config)
        where = {"source": "hub", "hub_id": source, "revision": revision, "split": split, "config": config}
    pairs: list[PreferencePair] = []
    skipped = 0
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ConfigError(f"preference dataset {source!r}: row {n} is not an object")
        missing = [c for c in REQUIRED_COLUMNS if c not in row]
        if missing:
            raise ConfigError(f"preference dataset {source!r}: row {n} lacks {', '.join(missing)} "
                              f"(needs columns {', '.join(REQUIRED_COLUMNS)})")
        prompt, system = _prompt_text(row["prompt"], source, n)
        system = row.get("system") or system
        chosen = _response_text(row["chosen"], source, n, "chosen")
        rejected = _response_text(row["rejected"], source, n, "rejected")
        if not (prompt.strip() and chosen.strip() and rejected.strip()):
            skipped += 1
            continue
        pairs.append(PreferencePair(id=str(row.get("id", n - 1)), prompt=prompt, chosen=chosen, rejected=rejected,
                                    system=system or None, source="user"))
    ids = [p.id for p in pairs]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"preference dataset {source!r}: duplicate `id` values")
    if not pairs:
        raise ConfigError(f"preference dataset {source!r} holds no usable pairs")
    return PreferenceData(pairs=pairs, provenance={**where, "counts": {"rows": len(rows), "pairs": len(pairs),
                                                                       "skipped": skipped}})


def _read_rows(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetUnavailableError(f"preference dataset {path}: cannot read it ({type(e).__name__})") from e
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"preference dataset {path}: invalid JSON ({e.msg}, line {e.lineno})") from None
    if isinstance(data, dict) and isinstance(data.get("pairs"), list):
        return data["pairs"]
    if not isinstance(data, list):
        raise ConfigError(f"preference dataset {path}: expected a list of rows (or {{\"pairs\": [...]}})")
    return data


def _hub_rows(hub_id: str, revision: str, split: str, config: str | None) -> list[dict]:
    try:
        import datasets

        ds = datasets.load_dataset(hub_id, name=config, revision=revision, split=split)
        return [dict(r) for r in ds]
    except Exception as e:  # noqa: BLE001 - offline, gated, unknown id/revision/split: all user-fixable
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DatasetUnavailableError(
            f"preference dataset {hub_id}@{revision} split {split!r} cannot be loaded ({type(e).__name__}: "
            f"{msg[:200]}); use a local JSONL file with prompt/chosen/rejected"
        ) from None


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)


def _prompt_text(value: Any, source: str, n: int) -> tuple[str, str | None]:
    if isinstance(value, str):
        return value, None
    if _is_messages(value):
        system = next((str(m["content"]) for m in value if m["role"] == "system"), None)
        users = [str(m["content"]) for m in value if m["role"] == "user"]
        if len(users) != 1 or any(m["role"] not in ("system", "user") for m in value):
            raise ConfigError(f"preference dataset {source!r}: row {n} has a multi-turn prompt; "
                              "only one user turn (plus a system turn) is supported")
        return users[0], system
    raise ConfigError(f"preference dataset {source!r}: row {n} `prompt` must be a string or a message list")


def _response_text(value: Any, source: str, n: int, column: str) -> str:
    if isinstance(value, str):
        return value
    if _is_messages(value):
        replies = [str(m["content"]) for m in value if m["role"] == "assistant"]
        if replies:
            return replies[-1]
    raise ConfigError(f"preference dataset {source!r}: row {n} `{column}` must be a string or messages "
                      "with an assistant turn")


# --- pairs as the trainer sees them ---------------------------------------------------------


def encode_pair(tokenizer: Any, pair: PreferencePair, chat: bool) -> dict[str, list[int]]:
    """Token ids TRL trains on: the prompt exactly as the backend encodes it, then each response
    followed by EOS, tokenized as the backend tokenizes a continuation (`add_special_tokens=False`)."""
    from harness.prompts import encode_prompt
    from harness.prompts import with_eos

    prompt_ids = encode_prompt(tokenizer, pair.prompt, pair.system, use_template=chat)

    def ids(response: str) -> list[int]:
        return list(tokenizer(with_eos(response, tokenizer.eos_token), add_special_tokens=False)["input_ids"])

    return {"prompt_ids": prompt_ids, "chosen_ids": ids(pair.chosen), "rejected_ids": ids(pair.rejected)}


def split_holdout(pairs: list[PreferencePair], fraction: float, seed: int) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, held out): a seeded `fraction` of the pairs (rounded down, at least one pair left to
    train on) kept out of training, in their original order."""
    import random

    n_held = min(int(len(pairs) * fraction), max(0, len(pairs) - 1))
    if n_held == 0:
        return list(pairs), []
    held = set(random.Random(f"holdout:{seed}").sample(range(len(pairs)), n_held))
    return [q for i, q in enumerate(pairs) if i not in held], [q for i, q in enumerate(pairs) if i in held]


def length_filter(tokenizer: Any, pairs: list[PreferencePair], chat: bool, max_length: int | None,
                  truncation_mode: str) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(kept, dropped) by TRL's own length filter: with keep_start truncation, a pair whose prompt
    ids fill `max_length` is dropped before training (the rule `_make_trainer` keeps TRL's)."""
    from harness.prompts import encode_prompt

    if max_length is None or truncation_mode != "keep_start":
        return list(pairs), []
    kept, dropped = [], []
    for q in pairs:
        (kept if len(encode_prompt(tokenizer, q.prompt, q.system, use_template=chat)) < max_length else dropped).append(q)
    return kept, dropped
