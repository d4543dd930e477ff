"""File helpers shared by every stage: atomic writes and the cache directory."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from platformdirs import user_cache_dir


def cache_dir() -> Path:
    """Where built models, fingerprints and the response cache live (HARNESS_CACHE_DIR overrides)."""
    d = Path(os.environ.get("HARNESS_CACHE_DIR") or user_cache_dir("harness"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same directory, then rename: never a half-written file.

    The file gets the mode a plain `open()` would give it (0666 less the umask), not
    mkstemp's 0600, so a team sharing a results disk can read it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def current_umask() -> int:
    """The process umask (reading it means setting it; set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in rows))


@contextmanager
def exclusive(lock_path: str | Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an inter-process file lock for the block (filelock; released when the process dies,
    so a killed holder never blocks the next run). `on_wait` runs once if another holds it."""
    from filelock import FileLock, Timeout

    Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def remove_stale_temp_files(directory: str | Path) -> int:
    """Delete the `.<name>.*.tmp` files an atomic write left behind when its process was killed.
    Only call it while holding the lock that guards `directory`'s writers. Returns how many."""
    removed = 0
    root = Path(directory)
    if not root.is_dir():
        return 0
    for tmp in root.rglob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def save_png_once(path: Path, image: Any) -> Path:
    """A PIL `image` as a PNG at `path`, written atomically unless already there: the drawn
    data sets are deterministic, so an existing file is that picture."""
    if not path.exists():
        import io

        buf = io.BytesIO()
        image.save(buf, format="PNG")
        atomic_write_bytes(path, buf.getvalue())
    return path
