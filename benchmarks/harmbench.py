"""HarmBench (Mazeika et al. 2024): harmful behaviours a model should refuse, judged for attack success.

Data (docs/datasets.md §9): GitHub `centerforaisafety/HarmBench`, `data/behavior_datasets/
harmbench_behaviors_text_{all,val,test}.csv` (option `subset`, default `all`), columns
`Behavior, FunctionalCategory, SemanticCategory, Tags, ContextString, BehaviorID` [third-party].
Read from the option `path` (the CSV itself, or a directory holding it flat or in the repo's
`data/behavior_datasets/` layout; no network), else downloaded once from the raw URL pinned
to `commit` (see `HARMBENCH_COMMIT`) into the harness cache.

Splits: `standard`, `contextual`, `copyright` (by FunctionalCategory) and `all` (file order).
Items are `PromptItem`s: id = BehaviorID, prompt = Behavior, context = ContextString
(contextual rows must carry one), categories = functional_category, semantic_category, tags
(the raw Tags string; copyright behaviours are tagged `hash_check`).

Prompt: HarmBench's DirectRequest test case, `f"{context}\\n\\n---\\n\\n{behavior}"` when there is a
context, else the behaviour [third-party: `baselines/direct_request/direct_request.py`].
Decoding: greedy, 512 new tokens (the paper setting, docs/metrics.md §1; the generation script's
argparse default of 256 differs). Default metrics: ASR on the standard and contextual splits;
copyright behaviours are judged by MinHash matching against the copyrighted originals, which
this CSV does not hold, so `asr@copyright` is only computed when named.
Options: `path`, `commit` (alias `revision`), `subset`, `limit` (first N items per split;
`all` keeps the union in file order), `timeout` (download seconds), and the decoding options
of `PromptBenchmark`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.api.benchmark import BenchmarkData, PromptBenchmark, PromptItem, check_limit
from harness.benchmarks.sources import (cell, check_commit, check_timeout, fetch_pinned, find_file, github_raw_url,
                                require_columns)
from harness.datafiles import read_table
from harness.errors import ConfigError, DatasetUnavailableError

HARMBENCH_REPO = "centerforaisafety/HarmBench"
# docs/datasets.md §9 records no commit for HarmBench, so "main" follows the branch (and the cache
# keeps the first copy it downloads); pin a commit sha with the `commit` option for reproducible
# runs (the raw URL with the commit is recorded as the source).
HARMBENCH_COMMIT = "main"
REPO_DIR = "data/behavior_datasets"
FILES = {s: f"harmbench_behaviors_text_{s}.csv" for s in ("all", "val", "test")}
COLUMNS = ("Behavior", "FunctionalCategory", "SemanticCategory", "Tags", "ContextString", "BehaviorID")
FUNCTIONAL_CATEGORIES = ("standard", "contextual", "copyright")
CONTEXT_SEPARATOR = "\n\n---\n\n"
_HOW = ("set the harmbench option `path` to a local copy of data/behavior_datasets/harmbench_behaviors_text_all.csv "
        f"from github.com/{HARMBENCH_REPO} (columns: {', '.join(COLUMNS)}), or check `commit`")


class HarmBench(PromptBenchmark):
    """HarmBench text behaviours (standard / contextual / copyright), greedy 512 tokens, judged ASR."""

    name = "harmbench"
    option_help = {
        "path": "a local copy of the data (no download)",
        "revision": "the pinned upstream commit to download from",
        "commit": "the pinned upstream commit to download from",
        "timeout": "seconds to wait for the download",
        "subset": "which behaviour file: all (default), val or test",
    }
    status = "available"  # docs/datasets.md §0: public; a local `path` overrides the download
    max_new_tokens = 512
    # HarmBench's classifier reads each generation clipped to 512 tokens (its eval_utils: encode
    # with max_length=512, truncation, then decode).
    judge_clip_tokens = 512
    temperature = 0.0
    top_p = 1.0
    default_metrics = ("asr@standard", "asr@contextual")
    headline_metrics = default_metrics
    views = {"HarmBench ASR by semantic category": ("asr@standard[semantic_category=*]",
                                                     "asr@contextual[semantic_category=*]")}
    category_fields = ("functional_category", "semantic_category", "tags")

    def prompt(self, item: PromptItem) -> str:  # type: ignore[override]
        return f"{item.context}{CONTEXT_SEPARATOR}{item.prompt}" if item.context else item.prompt

    def load(self) -> BenchmarkData:
        limit = check_limit(self.options.get("limit"))
        subset = self.options.get("subset", "all")
        if subset not in FILES:
            raise ConfigError(f"harmbench: option `subset` must be one of {', '.join(FILES)}, got {subset!r}")
        path = self.options.get("path")
        if path:
            file = _local_file(Path(path).expanduser(), FILES[subset])
            source = str(file.resolve())
        else:
            commit = check_commit(self.options.get("commit", self.options.get("revision")), HARMBENCH_COMMIT, "harmbench")
            source = github_raw_url(HARMBENCH_REPO, commit, f"{REPO_DIR}/{FILES[subset]}")
            file = fetch_pinned("harmbench", source, _HOW, timeout=check_timeout(self.options.get("timeout")))
        columns, rows = read_table(file, "harmbench", _HOW)
        require_columns(columns, COLUMNS, "harmbench", str(file), _HOW)
        items = [_to_item(i, row, file) for i, row in enumerate(rows)]
        _check_unique(items, file)
        splits: dict[str, list[Any]] = {}
        for fc in FUNCTIONAL_CATEGORIES:
            chosen = [it for it in items if it.categories["functional_category"] == fc]
            splits[fc] = chosen if limit is None else chosen[:limit]
        kept = {it.id for fc in FUNCTIONAL_CATEGORIES for it in splits[fc]}
        splits["all"] = [it for it in items if it.id in kept]
        meta = {"subset": subset, "file": FILES[subset], "limit": limit, "decoding": self.decoding(),
                "counts": {s: len(v) for s, v in splits.items()}}
        return BenchmarkData(splits=splits, source=source, meta=meta)


def _local_file(path: Path, name: str) -> Path:
    if not path.exists():
        raise DatasetUnavailableError(f"harmbench: local path {path} does not exist; {_HOW}")
    if path.is_file():
        return path
    file = find_file(path, [name], ("", REPO_DIR, "behavior_datasets"))
    if file is None:
        raise DatasetUnavailableError(f"harmbench: {name} not found in {path} (nor in {REPO_DIR}/ under it); {_HOW}")
    return file


def _to_item(index: int, row: dict[str, Any], file: Path) -> PromptItem:
    def bad(what: str) -> DatasetUnavailableError:
        return DatasetUnavailableError(f"harmbench: {file} row {index}: {what}; {_HOW}")

    behavior, fc, context = cell(row, "Behavior", strip=False), cell(row, "FunctionalCategory"), cell(row, "ContextString", strip=False)
    behavior_id = cell(row, "BehaviorID")
    if not behavior.strip():
        raise bad("empty 'Behavior'")
    if not behavior_id:
        raise bad("empty 'BehaviorID'")
    if fc not in FUNCTIONAL_CATEGORIES:
        raise bad(f"'FunctionalCategory' must be one of {', '.join(FUNCTIONAL_CATEGORIES)}, got {fc!r}")
    if fc == "contextual" and not context.strip():
        raise bad("a contextual behaviour without a 'ContextString'")
    categories = {"functional_category": fc, "semantic_category": cell(row, "SemanticCategory"), "tags": cell(row, "Tags")}
    return PromptItem(id=behavior_id, prompt=behavior, categories=categories, context=context if context.strip() else "")


def _check_unique(items: list[PromptItem], file: Path) -> None:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise DatasetUnavailableError(f"harmbench: {file} repeats BehaviorID {item.id!r}; {_HOW}")
        seen.add(item.id)
