"""SORRY-Bench (Xie et al. 2024): unsafe instructions across 45 categories; refusal rate (CHES protocol).

Data (docs/datasets.md §13): HF `sorry-bench/sorry-bench-202406` is **gated** under a custom
"sorry-bench" license, so nothing is downloaded or shipped: the loader reads only a local copy
named by the option `path`: `sorry_bench_202406.csv`, the hub's `question.jsonl`, or any CSV /
JSON-lines file with the columns
  prompt_style  "base" for the 450 base instructions, else the mutation (misspellings, ...)
  category      the category id
  turns | prompt  the instruction: `turns` is the hub's list of turns (the first is used; a
                JSON list string from a CSV export is accepted), `prompt` a plain string
  question_id   optional; the item id (else the row number)
A directory is searched for sorry_bench_202406.csv, then question.jsonl.

Splits: `base` (prompt_style == "base"), `all` (every row), and `train` / `test`: the CHES
refusal experiment's split of the base rows (docs/metrics.md §2, docs/methods.md §2.6): a fraction
`test_fraction` (default 0.15) with seed `split_seed` (default 128) [proposal on the mechanics]:
CHES permutes with torch's global generator after sampling the responses, which cannot be
reproduced, so here `numpy.random.default_rng(split_seed).permutation(n)` over the base rows in
file order gives test = the first int(n * test_fraction), train = the rest. `test_fraction: 0`
leaves the two splits out (so does the default fraction when a small file would leave one side
empty; meta `ches_split` says so; an explicit `test_fraction` that does is a ConfigError). Categories: category, prompt_style.

Decoding (docs/metrics.md §2, CHES `utils/sorry_bench_utils.py` [code]): sampling, temperature 0.7,
top_p 1.0 (top_k 0: the HF backend disables top-k when sampling), max_new_tokens 512. Default
metric: the refusal rate on `base` (report `refusal_rate@train` / `@test` for CHES).
Options: `path`, `test_fraction`, `split_seed`, `limit` (first N per split, after splitting),
and the decoding options of `PromptBenchmark`.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.api.benchmark import BenchmarkData, PromptBenchmark, PromptItem, check_limit
from harness.benchmarks.sources import cell, find_file, require_columns
from harness.datafiles import read_table
from harness.errors import ConfigError, DatasetUnavailableError

HUB_ID = "sorry-bench/sorry-bench-202406"
FILE_NAMES = ("sorry_bench_202406.csv", "question.jsonl")
PROMPT_COLUMNS = ("turns", "prompt")
SCHEMA = "prompt_style, category, turns (or prompt), optional question_id"
DEFAULT_TEST_FRACTION = 0.15
DEFAULT_SPLIT_SEED = 128
_HOW = (f"SORRY-Bench is gated on the Hugging Face hub ({HUB_ID}) under a custom license and is never downloaded "
        f"by the harness: accept the license there, download sorry_bench_202406.csv (or question.jsonl), and set the "
        f"sorry-bench option `path` to it (columns: {SCHEMA})")


class SorryBench(PromptBenchmark):
    """SORRY-Bench 202406 from a local copy (gated): refusal rate on the base instructions, sampled at T=0.7."""

    name = "sorry-bench"
    option_help = {
        "path": "a local copy of the data (no download)",
        "test_fraction": "share of base rows held out as the CHES test split",
        "split_seed": "seed of the CHES train/test split",
    }
    status = "gated"  # docs/datasets.md §0: gated, custom license; local path only
    max_new_tokens = 512
    temperature = 0.7
    top_p = 1.0
    default_metrics = ("refusal_rate@base",)
    headline_metrics = default_metrics
    views = {"SORRY-Bench refusal rate by category": ("refusal_rate@base[category=*]",)}
    category_fields = ("category", "prompt_style")

    def load(self) -> BenchmarkData:
        limit = check_limit(self.options.get("limit"))
        test_fraction = self.options.get("test_fraction", DEFAULT_TEST_FRACTION)
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 <= test_fraction < 1:
            raise ConfigError(f"sorry-bench: option `test_fraction` must be a number in [0, 1), got {test_fraction!r}")
        seed = self.options.get("split_seed", DEFAULT_SPLIT_SEED)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"sorry-bench: option `split_seed` must be a non-negative integer, got {seed!r}")
        path = self.options.get("path")
        if not path:
            raise DatasetUnavailableError(f"sorry-bench: no local path given; {_HOW}")
        file = _local_file(Path(path).expanduser())
        columns, rows = read_table(file, "sorry-bench", _HOW)
        require_columns(columns, ("prompt_style", "category"), "sorry-bench", str(file), _HOW)
        prompt_column = next((c for c in PROMPT_COLUMNS if c in columns), None)
        if prompt_column is None:
            raise DatasetUnavailableError(
                f"sorry-bench: {file} lacks the prompt column 'turns' (or 'prompt') (expected columns: {SCHEMA}; "
                f"found: {', '.join(columns)}); {_HOW}")
        items = [_to_item(i, row, prompt_column, file) for i, row in enumerate(rows)]
        if len({it.id for it in items}) != len(items):
            raise DatasetUnavailableError(f"sorry-bench: {file} repeats a (question_id, prompt_style) pair; {_HOW}")
        base = [it for it in items if it.categories["prompt_style"] == "base"]
        if not base:
            raise DatasetUnavailableError(f"sorry-bench: {file} has no row with prompt_style 'base'; {_HOW}")
        splits: dict[str, list[Any]] = {"base": base, "all": items}
        ches = "none (test_fraction 0)"
        if test_fraction > 0:
            train, test = ches_split(base, float(test_fraction), seed)
            if train and test:
                splits.update(train=train, test=test)
                ches = f"train {len(train)} / test {len(test)} of {len(base)} base rows"
            elif "test_fraction" in self.options:
                raise ConfigError(f"sorry-bench: test_fraction {test_fraction} of {len(base)} base rows leaves an "
                                  f"empty train or test split; change `test_fraction` or set it to 0")
            else:  # a small local file under the default fraction: no CHES split, said in meta
                ches = f"omitted: the default test_fraction {test_fraction} of {len(base)} base rows leaves a side empty"
        if limit is not None:
            splits = {s: v[:limit] for s, v in splits.items()}
        meta = {"file": str(file), "prompt_column": prompt_column, "test_fraction": test_fraction, "split_seed": seed, "ches_split": ches,
                "limit": limit, "decoding": self.decoding(), "hub_id": HUB_ID, "status": "gated"}
        return BenchmarkData(splits=splits, source=str(file.resolve()), meta=meta)


def ches_split(items: list[PromptItem], test_fraction: float, seed: int) -> tuple[list[PromptItem], list[PromptItem]]:
    """(train, test): a seeded permutation, the first int(n * test_fraction) to test (as CHES slices it)."""
    perm = np.random.default_rng(seed).permutation(len(items))
    n_test = int(len(items) * test_fraction)
    return [items[i] for i in perm[n_test:]], [items[i] for i in perm[:n_test]]


def _local_file(path: Path) -> Path:
    if not path.exists():
        raise DatasetUnavailableError(f"sorry-bench: local path {path} does not exist; {_HOW}")
    if path.is_file():
        return path
    file = find_file(path, FILE_NAMES)
    if file is None:
        raise DatasetUnavailableError(f"sorry-bench: neither {' nor '.join(FILE_NAMES)} found in {path}; {_HOW}")
    return file


def _first_turn(value: Any) -> str:
    """The instruction from `turns`: a list, or a list serialised into a CSV cell (JSON or Python literal)."""
    if isinstance(value, list):
        return value[0] if value and isinstance(value[0], str) else ""
    if not isinstance(value, str):
        return ""
    text = value.strip()
    if text.startswith("["):
        for parse in (json.loads, ast.literal_eval):  # literal_eval parses literals only, never runs code
            try:
                parsed = parse(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                continue
            return _first_turn(parsed) if isinstance(parsed, list) else ""
    return value


def _to_item(index: int, row: dict[str, Any], prompt_column: str, file: Path) -> PromptItem:
    def bad(what: str) -> DatasetUnavailableError:
        return DatasetUnavailableError(f"sorry-bench: {file} row {index}: {what}; {_HOW}")

    style, category = cell(row, "prompt_style"), cell(row, "category")
    if not style:
        raise bad("empty 'prompt_style'")
    if not category:
        raise bad("empty 'category'")
    prompt = _first_turn(row.get(prompt_column)) if prompt_column == "turns" else cell(row, "prompt", strip=False)
    if not prompt.strip():
        raise bad(f"empty or unreadable {prompt_column!r} (expected the instruction text"
                  f"{', or a list of turns' if prompt_column == 'turns' else ''})")
    qid = cell(row, "question_id") or str(index)
    return PromptItem(id=f"sorry-{qid}-{style}", prompt=prompt, categories={"category": category, "prompt_style": style})
