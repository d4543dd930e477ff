"""Reading the data files users and loaders hand us (JSON, JSON lines, CSV), with one-line errors.

Benchmark loaders and the judge-agreement command read the same formats the same way: a
file that cannot be read, decoded or parsed is a DatasetUnavailableError naming the file and
saying what was expected (`how`), never a traceback.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, DatasetUnavailableError

# One rule for every loader: a single text field (a prompt, an answer, a CSV cell) may hold at
# most this many characters. Real benchmark texts are far shorter (HarmBench's longest context
# is ~20k); a larger one is a broken or hostile file, refused with the same line everywhere.
MAX_FIELD_CHARS = 1_000_000

csv.field_size_limit(16 * 1024 * 1024)  # HarmBench context strings are long; the default cap is 128 KiB


def read_json_rows(file: Path, bench: str, how: str) -> list[Any]:
    """Rows of a JSON-lines file or a JSON array; any problem is a one-line DatasetUnavailableError.

    `bench` prefixes the message, `how` ends it (what the user can do about it).
    """
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetUnavailableError(f"{bench}: cannot read {file}: {e}; {how}") from e
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise DatasetUnavailableError(f"{bench}: {file} is not a valid JSON array ({e.msg}); {how}") from e
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DatasetUnavailableError(f"{bench}: {file} line {n} is not valid JSON ({e.msg}); {how}") from e
    if not isinstance(rows, list) or not rows:
        raise DatasetUnavailableError(f"{bench}: {file} holds no rows (expected JSON lines or a non-empty JSON array); {how}")
    return check_text_sizes(rows, bench, str(file), how)


def read_table(file: Path, bench: str, how: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of a CSV file, or of a JSON-lines / JSON-array file (columns: keys in every row).

    CSV cells are strings; a short row's missing cells read as "" (not None), extra cells are dropped,
    and header names are stripped of surrounding spaces.
    """
    if file.suffix.lower() in (".json", ".jsonl"):
        rows = read_json_rows(file, bench, how)
        for n, row in enumerate(rows):
            if not isinstance(row, dict):
                raise DatasetUnavailableError(f"{bench}: {file} row {n} is not a JSON object; {how}")
        columns = [k for k in rows[0] if all(k in r for r in rows)]
        return columns, check_text_sizes(rows, bench, str(file), how)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetUnavailableError(f"{bench}: cannot read {file}: {e}; {how}") from e
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        # Header cells are stripped: some exports carry "prompt " with a trailing space.
        reader.fieldnames = columns = [c.strip() for c in reader.fieldnames or []]
        rows = [{k: ("" if v is None else v) for k, v in row.items() if k is not None} for row in reader]
    except csv.Error as e:
        raise DatasetUnavailableError(f"{bench}: {file} is not a valid CSV file ({e}); {how}") from e
    if not columns or not rows:
        raise DatasetUnavailableError(f"{bench}: {file} holds no rows (expected a CSV file with a header row); {how}")
    return columns, check_text_sizes(rows, bench, str(file), how)


def check_text_sizes(rows: list[Any], bench: str, where: str, how: str) -> list[Any]:
    """`rows` unchanged, or one line naming the first text field over MAX_FIELD_CHARS."""
    def too_long(value: Any) -> bool:
        if isinstance(value, str):
            return len(value) > MAX_FIELD_CHARS
        if isinstance(value, dict):
            return any(too_long(v) for v in value.values())
        if isinstance(value, list):
            return any(too_long(v) for v in value)
        return False

    for n, row in enumerate(rows):
        if too_long(row):
            raise DatasetUnavailableError(
                f"{bench}: {where} row {n} has a text field over {MAX_FIELD_CHARS:,} characters (the limit for one "
                f"field in every loader); {how}")
    return rows


def json_or_json_lines(text: str) -> Any:
    """A file's text read as one JSON document, else as JSON lines (the released data sets come
    both ways); raises json.JSONDecodeError when it is neither."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def pinned_snapshot(hub: str, revision: Any, bench: str, how: str) -> tuple[str, str]:
    """(local folder, `hub@revision`) of a hub dataset snapshot pinned to a commit, fetched with
    huggingface_hub into its cache (results must say which data they were computed on). A
    revision that is not a 40-hex commit is a ConfigError; a fetch that fails (offline, gated,
    unknown id or revision: all user-fixable) a one-line DatasetUnavailableError ending in `how`."""
    if not isinstance(revision, str) or len(revision) != 40 or any(c not in "0123456789abcdef" for c in revision):
        raise ConfigError(f"{bench}: option `hub` needs `revision` pinned to a 40-hex commit, got {revision!r}")
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(hub, repo_type="dataset", revision=revision)
    except Exception as e:  # noqa: BLE001 - every failure here is the user's to fix, in one line
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise DatasetUnavailableError(f"{bench}: cannot fetch {hub}@{revision} ({type(e).__name__}: {msg}); {how}") from None
    return folder, f"{hub}@{revision}"
