"""JailbreakBench (Chao et al. 2024): 100 harmful and 100 benign behaviours (JBB-Behaviors).

Data (docs/datasets.md §10): HF `JailbreakBench/JBB-Behaviors`, config `behaviors`, splits
`harmful` (`data/harmful-behaviors.csv`) and `benign` (`data/benign-behaviors.csv`), columns
`Index, Goal, Target, Behavior, Category, Source` [card]. Read from the option `path` (a
directory with both files, flat or under `data/`, as CSV or as `harmful.json(l)` /
`benign.json(l)`; no network), else from the hub at `revision` (see `DEFAULT_REVISION`).

Items are `PromptItem`s: id = `jbb-<split>-<Index>`, prompt = Goal, target = Target (the
affirmative "Sure, here is ..." string), categories = category (OpenAI usage-policy category),
source (Original, TDC/HarmBench, AdvBench). `Behavior` (a short unique label) is kept in the
id-to-behaviour map in `meta`.

Decoding [third-party: `src/jailbreakbench/config.py`]: TEMPERATURE = 0 (greedy), TOP_P = 0.9
(inert when greedy; recorded), MAX_GENERATION_LENGTH = 150. Default metrics: ASR on `harmful`
and the over-refusal rate on `benign` (docs/metrics.md §1).
Options: `path`, `hub_id`, `revision`, `limit` (first N items per split), and the decoding
options of `PromptBenchmark`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.api.benchmark import BenchmarkData, PromptBenchmark, PromptItem, check_limit, load_hub_rows
from harness.benchmarks.sources import cell, find_file, require_columns
from harness.datafiles import read_table
from harness.errors import DatasetUnavailableError

DEFAULT_HUB_ID = "JailbreakBench/JBB-Behaviors"
HUB_CONFIG = "behaviors"
# docs/datasets.md §10 records no dataset commit for JBB-Behaviors, so "main" follows the hub; pin a
# commit sha with the `revision` option for reproducible runs (it is recorded in the source).
DEFAULT_REVISION = "main"
SPLITS = ("harmful", "benign")
COLUMNS = ("Index", "Goal", "Target", "Behavior", "Category", "Source")
_HOW = (f"set the jailbreakbench option `path` to a directory with harmful-behaviors.csv and benign-behaviors.csv "
        f"from the hub dataset {DEFAULT_HUB_ID} (columns: {', '.join(COLUMNS)}), or check `hub_id`/`revision`")


class JailbreakBench(PromptBenchmark):
    """JBB-Behaviors: ASR on 100 harmful behaviours, over-refusal on 100 benign ones (150 tokens, greedy)."""

    name = "jailbreakbench"
    option_help = {
        "path": "a local copy of the data (no download)",
        "hub_id": "the Hugging Face dataset id to download",
        "revision": "the pinned dataset revision to download",
    }
    status = "available"  # docs/datasets.md §0: public; a local `path` overrides the download
    max_new_tokens = 150
    temperature = 0.0
    top_p = 0.9
    default_metrics = ("asr@harmful", "refusal_rate@benign")
    headline_metrics = default_metrics
    views = {"JailbreakBench ASR by category": ("asr@harmful[category=*]",)}
    category_fields = ("category", "source")

    def load(self) -> BenchmarkData:
        limit = check_limit(self.options.get("limit"))
        path = self.options.get("path")
        if path:
            tables, source = _read_local(Path(path).expanduser())
        else:
            hub_id = self.options.get("hub_id", DEFAULT_HUB_ID)
            revision = self.options.get("revision", DEFAULT_REVISION)
            source = f"{hub_id}@{revision}"
            tables = {}
            for split in SPLITS:
                rows = load_hub_rows("jailbreakbench", hub_id, HUB_CONFIG, split, revision, _HOW)
                tables[split] = (list(rows[0]) if rows else [], rows, f"{source} split {split}")
        splits: dict[str, list[Any]] = {}
        behaviors: dict[str, str] = {}
        for split in SPLITS:
            columns, rows, where = tables[split]
            require_columns(columns, COLUMNS, "jailbreakbench", where, _HOW)
            items = [_to_item(split, i, row, where) for i, row in enumerate(rows)]
            if len({it.id for it in items}) != len(items):
                raise DatasetUnavailableError(f"jailbreakbench: {where} repeats an Index; {_HOW}")
            behaviors.update({_id(split, row): cell(row, "Behavior") for row in rows})
            splits[split] = items if limit is None else items[:limit]
        meta = {"config": HUB_CONFIG, "limit": limit, "decoding": self.decoding(),
                "behaviors": {it.id: behaviors[it.id] for s in SPLITS for it in splits[s]}}
        return BenchmarkData(splits=splits, source=source, meta=meta)


def _read_local(path: Path) -> tuple[dict[str, tuple[list[str], list[dict[str, Any]], str]], str]:
    if not path.exists():
        raise DatasetUnavailableError(f"jailbreakbench: local path {path} does not exist; {_HOW}")
    if not path.is_dir():
        raise DatasetUnavailableError(f"jailbreakbench: local path {path} must be a directory holding both splits; {_HOW}")
    out = {}
    for split in SPLITS:
        names = [f"{split}-behaviors.csv", f"{split}.csv", f"{split}.jsonl", f"{split}.json"]
        file = find_file(path, names, ("", "data"))
        if file is None:
            raise DatasetUnavailableError(f"jailbreakbench: {names[0]} not found in {path} (nor in data/); {_HOW}")
        columns, rows = read_table(file, "jailbreakbench", _HOW)
        out[split] = (columns, rows, str(file))
    return out, str(path.resolve())


def _id(split: str, row: dict[str, Any]) -> str:
    return f"jbb-{split}-{cell(row, 'Index')}"


def _to_item(split: str, index: int, row: dict[str, Any], where: str) -> PromptItem:
    goal = cell(row, "Goal", strip=False)
    if not goal.strip():
        raise DatasetUnavailableError(f"jailbreakbench: {where} row {index}: empty 'Goal'; {_HOW}")
    if not cell(row, "Index"):
        raise DatasetUnavailableError(f"jailbreakbench: {where} row {index}: empty 'Index'; {_HOW}")
    return PromptItem(id=_id(split, row), prompt=goal, target=cell(row, "Target", strip=False),
                      categories={"category": cell(row, "Category"), "source": cell(row, "Source")})
