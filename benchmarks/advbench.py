"""AdvBench (Zou et al. 2023): harmful behaviours with affirmative targets, and harmful strings.

Data (docs/datasets.md §12): GitHub `llm-attacks/llm-attacks`, `data/advbench/`:
  harmful_behaviors.csv  header exactly `goal,target`; every target is "Sure, here is ..."
  harmful_strings.csv    header exactly `target`
Read from the option `path` (one of the files, or a directory with both, flat or in the repo's
`data/advbench/` layout; no network), else downloaded once from the raw URL pinned to
`commit` (see `ADVBENCH_COMMIT`) into the harness cache.

Third-party copies are unreliable: one swaps the header to `target,goal` while the columns keep
their order. So the header is asserted exactly, and every behaviour target must start with
"Sure, here is" (option `check_targets: false` turns only the second check off, for a file
that is known to be official).

Splits: `behaviors` (prompt = goal, target = target) and `strings` (target only: the prompt is
empty, since an attack supplies it; the string is what the model must not emit). No category
fields. Decoding: greedy, 512 new tokens [proposal]: AdvBench fixes no generation length, so
this follows HarmBench's documented paper setting (docs/metrics.md §1), where AdvBench behaviours
are commonly re-judged. Default metric: ASR on `behaviors`.
Options: `path`, `commit` (alias `revision`), `check_targets`, `limit` (first N per split),
`timeout` (download seconds), and the decoding options of `PromptBenchmark`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from harness.api.benchmark import BenchmarkData, PromptBenchmark, PromptItem, check_limit
from harness.benchmarks.sources import check_commit, check_timeout, fetch_pinned, find_file, github_raw_url
from harness.errors import ConfigError, DatasetUnavailableError

ADVBENCH_REPO = "llm-attacks/llm-attacks"
# docs/datasets.md §12 records no commit for llm-attacks, so "main" follows the branch (and the cache
# keeps the first copy it downloads); pin a commit sha with the `commit` option for reproducible
# runs (the raw URL with the commit is recorded as the source).
ADVBENCH_COMMIT = "main"
REPO_DIR = "data/advbench"
FILES = {"behaviors": "harmful_behaviors.csv", "strings": "harmful_strings.csv"}
HEADERS = {"behaviors": ["goal", "target"], "strings": ["target"]}
TARGET_PREFIX = "Sure, here is"
_HOW = (f"set the advbench option `path` to the official {REPO_DIR}/harmful_behaviors.csv (header goal,target) "
        f"and harmful_strings.csv (header target) from github.com/{ADVBENCH_REPO}, or check `commit`")


class AdvBench(PromptBenchmark):
    """AdvBench harmful behaviours (goal, "Sure, here is" target) and strings; greedy 512 tokens."""

    name = "advbench"
    option_help = {
        "path": "a local copy of the data (no download)",
        "revision": "the pinned upstream commit to download from",
        "commit": "the pinned upstream commit to download from",
        "timeout": "seconds to wait for the download",
        "check_targets": "check every prompt has its affirmative target",
    }
    status = "available"  # docs/datasets.md §0: public; a local `path` overrides the download
    max_new_tokens = 512
    temperature = 0.0
    top_p = 1.0
    default_metrics = ("asr@behaviors",)
    headline_metrics = default_metrics
    category_fields = ()

    def load(self) -> BenchmarkData:
        limit = check_limit(self.options.get("limit"))
        check_targets = self.options.get("check_targets", True)
        if not isinstance(check_targets, bool):
            raise ConfigError(f"advbench: option `check_targets` must be true or false, got {check_targets!r}")
        path = self.options.get("path")
        sources: dict[str, str] = {}
        if path:
            files = _local_files(Path(path).expanduser())
            source = str(Path(path).expanduser().resolve())
        else:
            commit = check_commit(self.options.get("commit", self.options.get("revision")), ADVBENCH_COMMIT, "advbench")
            timeout = check_timeout(self.options.get("timeout"))
            files = {}
            for split, name in FILES.items():
                sources[split] = github_raw_url(ADVBENCH_REPO, commit, f"{REPO_DIR}/{name}")
                files[split] = fetch_pinned("advbench", sources[split], _HOW, timeout=timeout)
            source = github_raw_url(ADVBENCH_REPO, commit, REPO_DIR)
        splits: dict[str, list[Any]] = {}
        for split, file in files.items():
            items = _read(split, file, check_targets)
            splits[split] = items if limit is None else items[:limit]
        meta = {"files": {s: str(f) for s, f in files.items()}, "urls": sources, "limit": limit,
                "check_targets": check_targets, "decoding": self.decoding()}
        return BenchmarkData(splits=splits, source=source, meta=meta)


def _local_files(path: Path) -> dict[str, Path]:
    if not path.exists():
        raise DatasetUnavailableError(f"advbench: local path {path} does not exist; {_HOW}")
    if path.is_file():
        split = next((s for s, name in FILES.items() if path.name == name), None)
        if split is None:
            raise DatasetUnavailableError(
                f"advbench: cannot tell the split of {path} (name it harmful_behaviors.csv or harmful_strings.csv); {_HOW}")
        return {split: path}
    out = {}
    for split, name in FILES.items():
        file = find_file(path, [name], ("", REPO_DIR, "advbench"))
        if file is None:
            raise DatasetUnavailableError(f"advbench: {name} not found in {path} (nor in {REPO_DIR}/ under it); {_HOW}")
        out[split] = file
    return out


def _read(split: str, file: Path, check_targets: bool) -> list[PromptItem]:
    try:
        text = file.read_text(encoding="utf-8-sig")
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetUnavailableError(f"advbench: cannot read {file} as CSV: {e}; {_HOW}") from e
    if not rows:
        raise DatasetUnavailableError(f"advbench: {file} is empty; {_HOW}")
    header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if any(c.strip() for c in r)]
    expected = HEADERS[split]
    if header != expected:
        swap = " (the third-party header swap docs/datasets.md §12 warns about)" if sorted(header) == sorted(expected) else ""
        raise DatasetUnavailableError(
            f"advbench: {file} has header {','.join(header)!r}, expected exactly {','.join(expected)!r}{swap}; {_HOW}")
    if not body:
        raise DatasetUnavailableError(f"advbench: {file} holds no rows under its header; {_HOW}")
    items = []
    for n, row in enumerate(body):
        if len(row) != len(expected):
            raise DatasetUnavailableError(
                f"advbench: {file} row {n} has {len(row)} cells, expected {len(expected)} ({','.join(expected)}); {_HOW}")
        if split == "behaviors":
            goal, target = row
            if not goal.strip():
                raise DatasetUnavailableError(f"advbench: {file} row {n}: empty 'goal'; {_HOW}")
            if check_targets and not target.startswith(TARGET_PREFIX):
                raise DatasetUnavailableError(
                    f"advbench: {file} row {n}: 'target' does not start with {TARGET_PREFIX!r} (not the official "
                    f"file, or its columns are swapped); {_HOW}")
            items.append(PromptItem(id=f"advbench-behaviors-{n}", prompt=goal, target=target))
        else:
            (target,) = row
            if not target.strip():
                raise DatasetUnavailableError(f"advbench: {file} row {n}: empty 'target'; {_HOW}")
            items.append(PromptItem(id=f"advbench-strings-{n}", prompt="", target=target))
    return items
