"""ALKALI (Khanna et al., arXiv 2506.08885): adversarial prompts judged by attack success rate.

The dataset is **not publicly released** (docs/datasets.md §1), so the registry status is
`unavailable` and this loader never substitutes other data. It reads a copy the user holds,
in the project's placeholder schema [proposal]:

  id (str; an int is accepted and turned into a str), prompt (str),
  macro_category in {jailbreak, control_generation, performance_degradation},
  subtype (str), attack_family (str), source_paper (str)   -- free text, so the official
                                                               names can be dropped in;
  optional: safe_completion, unsafe_completion, jailbreak_completion (str; for AVQI / GRACE).

`macro_category` is compared after lower-casing and turning spaces and hyphens into
underscores ("Control Generation" is `control_generation`). Extra columns are ignored.

Options: `path` (a .jsonl / .json / .csv file; takes priority), or `hub_id` with `revision`
(default "main": pin a commit for reproducible runs), `hub_config`, `hub_split` (default
"train"); `limit` (first N items per split); decoding overrides `max_new_tokens`,
`temperature`, `top_p`, `samples` (see `PromptBenchmark.decoding`).

Splits: `all` (file order) and one per macro category (each always present, possibly empty).

Decoding default [proposal; ALKALI's own setting is unverified]: greedy, 256 new tokens
(HarmBench's `generate_completions.py` default): long enough for a judge to see whether a
jailbreak worked, short enough to run 9,000 prompts.

The row parser (`parse_rows`) is shared with the built-in `adversarial-probes` benchmark,
which is written in the same schema, so both go through one validation path.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable, Mapping

from harness.api.benchmark import BenchmarkData, PromptBenchmark, PromptItem, check_limit, load_hub_rows
from harness.datafiles import read_json_rows
from harness.errors import ConfigError, DatasetUnavailableError

MACRO_CATEGORIES: tuple[str, ...] = ("jailbreak", "control_generation", "performance_degradation")
CATEGORY_COLUMNS: tuple[str, ...] = ("macro_category", "subtype", "attack_family", "source_paper")
REQUIRED_COLUMNS: tuple[str, ...] = ("id", "prompt", *CATEGORY_COLUMNS)
COMPLETION_COLUMNS: tuple[str, ...] = ("safe_completion", "unsafe_completion", "jailbreak_completion")
SCHEMA = (
    "columns id, prompt, macro_category (jailbreak|control_generation|performance_degradation), "
    "subtype, attack_family, source_paper, optionally safe_completion, unsafe_completion, jailbreak_completion"
)
_HOW = ("set the alkali option `path` (benchmarks: [{name: alkali, params: {path: FILE}}]) to a .jsonl/.json/.csv "
        f"file with {SCHEMA}, or `hub_id` and `revision` for a copy on the hub")
DEFAULT_REVISION = "main"
DEFAULT_HUB_SPLIT = "train"


def normalise_macro(value: str) -> str:
    """'Control Generation' / 'control-generation' -> 'control_generation'."""
    return "_".join(value.strip().lower().replace("-", " ").split())


def read_table(path: Path, bench: str, how: str) -> list[Any]:
    """Rows of a JSON-lines, JSON-array or CSV file (by suffix); problems are one-line errors."""
    if not path.exists():
        raise DatasetUnavailableError(f"{bench}: local path {path} does not exist; {how}")
    if not path.is_file():
        raise DatasetUnavailableError(f"{bench}: {path} is not a file; {how}")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return read_json_rows(path, bench, how)
    if suffix != ".csv":
        raise DatasetUnavailableError(f"{bench}: cannot read {path.name} (expected .jsonl, .json or .csv); {how}")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetUnavailableError(f"{bench}: cannot read {path}: {e}; {how}") from e
    if not rows:
        raise DatasetUnavailableError(f"{bench}: {path} holds no rows (expected a header line and data rows); {how}")
    return rows


def parse_rows(
    rows: Iterable[Any],
    bench: str,
    how: str,
    macro_categories: tuple[str, ...] = MACRO_CATEGORIES,
    extra_categories: tuple[str, ...] = (),
) -> list[PromptItem]:
    """Validate rows in the ALKALI schema and turn them into `PromptItem`s.

    Every problem (a row that is not an object, a missing required column, a wrong type, an
    empty id or prompt, a duplicate id, a macro category outside `macro_categories`) is one
    DatasetUnavailableError naming the row (1-based) and the column. `extra_categories` are
    further string columns kept in `categories` (adversarial-probes' template names).
    """

    def fail(n: int, what: str) -> DatasetUnavailableError:
        return DatasetUnavailableError(f"{bench}: row {n}: {what}; {how}")

    items: list[PromptItem] = []
    seen: set[str] = set()
    for n, row in enumerate(rows, 1):
        if not isinstance(row, Mapping):
            raise fail(n, f"expected an object with {SCHEMA}, got {type(row).__name__}")
        missing = [c for c in REQUIRED_COLUMNS if c not in row]
        if missing:
            raise fail(n, f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} (expected {SCHEMA})")
        raw_id = row["id"]
        if isinstance(raw_id, int) and not isinstance(raw_id, bool):
            raw_id = str(raw_id)
        if not isinstance(raw_id, str) or not raw_id.strip():
            raise fail(n, f"column `id` must be a non-empty string, got {row['id']!r}")
        if raw_id in seen:
            raise fail(n, f"duplicate id {raw_id!r}")
        seen.add(raw_id)
        prompt = row["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise fail(n, f"column `prompt` must be a non-empty string (id {raw_id!r})")
        categories: dict[str, str] = {}
        for col in (*CATEGORY_COLUMNS, *extra_categories):
            value = row.get(col)
            if not isinstance(value, str):
                raise fail(n, f"column `{col}` must be a string, got {type(value).__name__} (id {raw_id!r})")
            categories[col] = value.strip()
        macro = normalise_macro(categories["macro_category"])
        if macro not in macro_categories:
            raise fail(n, f"macro_category {row['macro_category']!r} is not one of {', '.join(macro_categories)} "
                          f"(id {raw_id!r})")
        categories["macro_category"] = macro
        completions: dict[str, str] = {}
        for col in COMPLETION_COLUMNS:
            value = row.get(col)
            if value is not None and not isinstance(value, str):
                raise fail(n, f"column `{col}` must be a string or empty, got {type(value).__name__} (id {raw_id!r})")
            completions[col] = value or ""
        items.append(PromptItem(id=raw_id, prompt=prompt, categories=categories, **completions))
    return items


class Alkali(PromptBenchmark):
    """ALKALI from a user-held copy in the documented schema; no data ships with the harness."""

    name = "alkali"
    option_help = {
        "path": "a local copy of the data (no download)",
        "hub_id": "the Hugging Face dataset id to download",
        "revision": "the pinned dataset revision to download",
        "hub_split": "the hub split to read",
        "hub_config": "the hub config to read",
    }
    status = "unavailable"  # docs/datasets.md §0: not publicly released
    default_metrics = ("asr@all",)
    headline_metrics = ("asr@all",)
    views = {
        "ASR by macro category": ("asr@all[macro_category=*]",),
        "ASR by attack family": ("asr@all[attack_family=*]",),
    }
    category_fields = CATEGORY_COLUMNS
    max_new_tokens = 256
    stop = ()

    def load(self) -> BenchmarkData:
        limit = check_limit(self.options.get("limit"))
        path, hub_id = self.options.get("path"), self.options.get("hub_id")
        for key, value in (("path", path), ("hub_id", hub_id)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"alkali: option `{key}` must be a non-empty string, got {value!r}")
        if path:
            file = Path(path).expanduser()
            rows = read_table(file, "alkali", _HOW)
            source = str(file.resolve())
            meta: dict[str, Any] = {"format": file.suffix.lower().lstrip(".")}
        elif hub_id:
            revision = str(self.options.get("revision", DEFAULT_REVISION))
            split = str(self.options.get("hub_split", DEFAULT_HUB_SPLIT))
            config = self.options.get("hub_config")
            rows = load_hub_rows("alkali", hub_id, config, split, revision, _HOW)
            source = f"{hub_id}@{revision}"
            meta = {"hub_split": split, "hub_config": config}
        else:
            raise DatasetUnavailableError(
                "alkali: the ALKALI dataset (Khanna et al., arXiv 2506.08885) is not publicly released, so no data "
                f"ships with the harness; {_HOW}"
            )
        items = parse_rows(rows, "alkali", _HOW)
        splits: dict[str, list[Any]] = {"all": items if limit is None else items[:limit]}
        for macro in MACRO_CATEGORIES:
            chosen = [it for it in items if it.categories["macro_category"] == macro]
            splits[macro] = chosen if limit is None else chosen[:limit]
        meta.update({
            "status": self.status, "n_rows": len(items), "limit": limit,
            "macro_counts": {m: sum(it.categories["macro_category"] == m for it in items) for m in MACRO_CATEGORIES},
            "with_completions": sum(bool(it.safe_completion and it.unsafe_completion and it.jailbreak_completion)
                                    for it in items),
            "decoding": self.decoding(),
        })
        return BenchmarkData(splits=splits, source=source, meta=meta)
