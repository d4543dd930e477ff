"""Shared plumbing for loaders whose data is a CSV (or JSON) file pinned to a git commit.

Why a module of its own: HarmBench, AdvBench and StrongREJECT publish their prompt sets as
CSV files in GitHub repositories, not as hub datasets. Each loader reads a local copy when
given `path` (no network), and otherwise downloads the file once from a raw URL pinned to a
commit into `harness.io.cache_dir()/data/<benchmark>/`, atomically, so a half-finished
download is never read back. Every failure (offline, 404, timeout, not UTF-8, a checksum
that does not match) is one DatasetUnavailableError line saying where the data lives and
which option to set.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Sequence

from harness.errors import ConfigError, DatasetUnavailableError

DEFAULT_TIMEOUT_S = 30.0
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024  # the largest of these files is well under 1 MB


def github_raw_url(repo: str, commit: str, path: str) -> str:
    """`https://raw.githubusercontent.com/<owner>/<repo>/<commit>/<path>`: what results record as the source."""
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path.lstrip('/')}"


def check_timeout(value: Any) -> float:
    """The `timeout` option (seconds to wait for a download): a positive number."""
    if value is None:
        return DEFAULT_TIMEOUT_S
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"option `timeout` must be a positive number of seconds, got {value!r}")
    return float(value)


def check_commit(value: Any, default: str, bench: str) -> str:
    """The `commit` (alias `revision`) option: a non-empty git ref without slashes or spaces."""
    if value is None:
        return default
    if not isinstance(value, str) or not value.strip() or any(c in value for c in "/\\ \n?#"):
        raise ConfigError(f"{bench}: option `commit` must be a git commit sha or ref name, got {value!r}")
    return value.strip()


def cached_path(bench: str, url: str) -> Path:
    """Where `url` is kept: one folder per URL (a commit change is a new folder), the file's own name."""
    from harness.io import cache_dir

    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    return cache_dir() / "data" / bench / key / url.rsplit("/", 1)[-1]


def fetch_pinned(bench: str, url: str, how: str, *, timeout: float = DEFAULT_TIMEOUT_S,
                 sha256: str | None = None) -> Path:
    """The local copy of `url`, downloaded on first use; any failure is a one-line DatasetUnavailableError.

    `sha256`, when given, must match the file's bytes (checked on download and on every reuse).
    A ref that is a branch name ("main") is frozen at its first download: the cache key is the
    URL, so pin a commit to make runs on different machines read the same bytes.
    """
    dest = cached_path(bench, url)
    if dest.is_file():
        _check_sha(bench, dest.read_bytes(), url, sha256, how)
        return dest
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - pinned https/file URL
            data = response.read(MAX_DOWNLOAD_BYTES + 1)
    except urllib.error.HTTPError as e:
        raise DatasetUnavailableError(f"{bench}: cannot download {url} (HTTP {e.code} {e.reason}); {how}") from e
    except Exception as e:  # offline, DNS, timeout, refused, bad URL: all mean "not reachable from here"
        reason = getattr(e, "reason", None) or e
        msg = str(reason).strip().splitlines()[0][:200] if str(reason).strip() else type(e).__name__
        raise DatasetUnavailableError(f"{bench}: cannot download {url} ({type(e).__name__}: {msg}); {how}") from e
    if not data.strip():
        raise DatasetUnavailableError(f"{bench}: {url} is empty; {how}")
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise DatasetUnavailableError(f"{bench}: {url} is larger than {MAX_DOWNLOAD_BYTES >> 20} MiB, not a prompt file; {how}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetUnavailableError(f"{bench}: {url} is not UTF-8 text ({e.reason}); {how}") from e
    _check_sha(bench, data, url, sha256, how)
    from harness.io import atomic_write_text

    atomic_write_text(dest, text)  # the same bytes on POSIX (no newline translation), so the sha stays valid
    return dest


def _check_sha(bench: str, data: bytes, url: str, sha256: str | None, how: str) -> None:
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256.lower():
        raise DatasetUnavailableError(
            f"{bench}: {url} does not match its recorded sha256 {sha256[:12]}... (changed upstream or corrupted); {how}"
        )



def require_columns(columns: Sequence[str], required: Sequence[str], bench: str, where: str, how: str) -> None:
    """A missing column is one line naming it and the expected schema."""
    missing = [c for c in required if c not in columns]
    if missing:
        raise DatasetUnavailableError(
            f"{bench}: {where} lacks column {missing[0]!r} (expected columns: {', '.join(required)}; "
            f"found: {', '.join(columns) or 'none'}); {how}"
        )


def find_file(directory: Path, names: Sequence[str], subdirs: Sequence[str] = ("",)) -> Path | None:
    """The first of `subdir/name` that exists under `directory` (official repo layout or flat)."""
    for sub in subdirs:
        for name in names:
            candidate = directory / sub / name if sub else directory / name
            if candidate.is_file():
                return candidate
    return None


def cell(row: dict[str, Any], column: str, strip: bool = True) -> str:
    """A cell as a string ("" for a missing or null cell); stripped unless it is text a model reads."""
    value = row.get(column)
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return text.strip() if strip else text
