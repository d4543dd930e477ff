"""StrongREJECT (Souly et al. 2024): forbidden prompts scored by a refusal-aware rubric judge.

Data (docs/datasets.md §11): GitHub `alexandrasouly/strongreject`, `strongreject_dataset/`:
  strongreject_dataset.csv        313 prompts [unverified]
  strongreject_small_dataset.csv  the 60-prompt "small" subset [unverified]
both with columns `category, source, forbidden_prompt`. Read from the option `path` (the full
CSV alone, or a directory with it and optionally the small one, flat or in the repo's
`strongreject_dataset/` layout; no network), else downloaded once from raw URLs pinned to
commits (`STRONGREJECT_COMMIT`, `STRONGREJECT_SMALL_COMMIT`; the option `commit` sets both).

Splits: `all`, and `small` when the source has the small file (a small prompt that also occurs
in `all` keeps the `all` item's id, so responses are shared). Categories: category, source.

Decoding: greedy, 512 new tokens [proposal]. StrongREJECT fixes no generation setting for the
model under test (its package uses the provider's defaults; the inspect_evals port samples at
temperature 0.75 [third-party]), so this follows HarmBench's documented paper setting
(docs/metrics.md §1) to keep the judged safety sets comparable; override with `temperature`,
`max_new_tokens`. Default metric: ASR on `all`.
Options: `path`, `commit` (alias `revision`), `small` (fetch the small file, default true),
`limit` (first N per split), `timeout`, and the decoding options of `PromptBenchmark`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.api.benchmark import BenchmarkData, PromptBenchmark, PromptItem, check_limit
from harness.benchmarks.sources import (cell, check_commit, check_timeout, fetch_pinned, find_file, github_raw_url,
                                require_columns)
from harness.datafiles import read_table
from harness.errors import ConfigError, DatasetUnavailableError

STRONGREJECT_REPO = "alexandrasouly/strongreject"
# docs/datasets.md §11 asks to pin the dataset URL to a commit as the inspect_evals port does; the
# shared docs give no commit, so these are the pins seen in third-party ports [third-party,
# unverified here: offline]: the full set as inspect_evals pins it, the small set as the
# `complai` port pins it. Pin your own with the `commit` option (it applies to both files).
STRONGREJECT_COMMIT = "3432b2d696b428f242bd507df96d80f686571d5e"
STRONGREJECT_SMALL_COMMIT = "f7cad6c17e624e21d8df2278e918ae1dddb4cb56"
REPO_DIR = "strongreject_dataset"
FILES = {"all": "strongreject_dataset.csv", "small": "strongreject_small_dataset.csv"}
COLUMNS = ("category", "source", "forbidden_prompt")
_HOW = (f"set the strongreject option `path` to a local copy of {REPO_DIR}/strongreject_dataset.csv "
        f"(and optionally strongreject_small_dataset.csv) from github.com/{STRONGREJECT_REPO} "
        f"(columns: {', '.join(COLUMNS)}), or check `commit`")


class StrongReject(PromptBenchmark):
    """StrongREJECT forbidden prompts (313, plus the 60-prompt small subset); greedy 512 tokens."""

    name = "strongreject"
    option_help = {
        "path": "a local copy of the data (no download)",
        "revision": "the pinned upstream commit to download from",
        "commit": "the pinned upstream commit to download from",
        "timeout": "seconds to wait for the download",
        "small": "also read the 60-prompt small set (split `small`) when present (default true)",
    }
    status = "available"  # docs/datasets.md §0: public; a local `path` overrides the download
    max_new_tokens = 512
    temperature = 0.0
    top_p = 1.0
    default_metrics = ("asr@all",)
    headline_metrics = default_metrics
    views = {"StrongREJECT ASR by category": ("asr@all[category=*]",)}
    category_fields = ("category", "source")

    def load(self) -> BenchmarkData:
        limit = check_limit(self.options.get("limit"))
        want_small = self.options.get("small", True)
        if not isinstance(want_small, bool):
            raise ConfigError(f"strongreject: option `small` must be true or false, got {want_small!r}")
        path = self.options.get("path")
        urls: dict[str, str] = {}
        if path:
            files = _local_files(Path(path).expanduser())
            if not want_small:
                files.pop("small", None)
            source = str(Path(path).expanduser().resolve())
        else:
            commit = check_commit(self.options.get("commit", self.options.get("revision")), "", "strongreject")
            timeout = check_timeout(self.options.get("timeout"))
            commits = {"all": commit or STRONGREJECT_COMMIT, "small": commit or STRONGREJECT_SMALL_COMMIT}
            files = {}
            for split in ("all", "small") if want_small else ("all",):
                urls[split] = github_raw_url(STRONGREJECT_REPO, commits[split], f"{REPO_DIR}/{FILES[split]}")
                files[split] = fetch_pinned("strongreject", urls[split], _HOW, timeout=timeout)
            source = urls["all"]
        full = _read(files["all"], "strongreject")
        by_prompt = {it.prompt: it.id for it in full}
        splits: dict[str, list[Any]] = {"all": full}
        if "small" in files:
            small = _read(files["small"], "strongreject_small")
            splits["small"] = [PromptItem(id=by_prompt.get(it.prompt, it.id), prompt=it.prompt, categories=it.categories)
                               for it in small]
        if limit is not None:
            splits = {s: v[:limit] for s, v in splits.items()}
        meta = {"files": {s: str(f) for s, f in files.items()}, "urls": urls, "limit": limit,
                "decoding": self.decoding()}
        return BenchmarkData(splits=splits, source=source, meta=meta)


def _local_files(path: Path) -> dict[str, Path]:
    if not path.exists():
        raise DatasetUnavailableError(f"strongreject: local path {path} does not exist; {_HOW}")
    if path.is_file():
        return {"all": path}
    full = find_file(path, [FILES["all"]], ("", REPO_DIR))
    if full is None:
        raise DatasetUnavailableError(f"strongreject: {FILES['all']} not found in {path} (nor in {REPO_DIR}/); {_HOW}")
    out = {"all": full}
    small = find_file(path, [FILES["small"]], ("", REPO_DIR))
    if small is not None:
        out["small"] = small
    return out


def _read(file: Path, prefix: str) -> list[PromptItem]:
    columns, rows = read_table(file, "strongreject", _HOW)
    require_columns(columns, COLUMNS, "strongreject", str(file), _HOW)
    items = []
    for n, row in enumerate(rows):
        prompt = cell(row, "forbidden_prompt", strip=False)
        if not prompt.strip():
            raise DatasetUnavailableError(f"strongreject: {file} row {n}: empty 'forbidden_prompt'; {_HOW}")
        items.append(PromptItem(id=f"{prefix}-{n}", prompt=prompt,
                                categories={"category": cell(row, "category"), "source": cell(row, "source")}))
    return items
