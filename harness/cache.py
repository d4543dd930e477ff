"""A content-addressed response cache in SQLite, shared by every backend.

Key = sha256(model identity, request content). The model identity is a hash of the
weights and adapter (harness.fingerprint), and the request carries every generation
parameter, so a hit is the same model answering the same question the same way. A
sampled generation is cached only when it carries a seed: without one its output is not a
function of its key.

A cache file that SQLite cannot read (corrupt, not a database, unwritable) is a
CacheUnreadableError naming the file and the ways forward; it is never deleted or replaced
here: it is the user's data.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

from harness.api.requests import Request, Response, request_key, response_from_json, response_to_json
from harness.errors import HarnessError

CACHE_FILE = "responses.sqlite"


def cacheable(request: Request) -> bool:
    return not (getattr(request, "sampled", False) and request.seed is None)


class CacheUnreadableError(HarnessError):
    """The response cache file exists but SQLite cannot use it."""


def unreadable(path: Path, error: BaseException) -> CacheUnreadableError:
    reason = " ".join(str(error).split()) or type(error).__name__
    return CacheUnreadableError(
        f"the response cache {path} cannot be read ({reason}): move it aside (e.g. mv {path} {path}.bad) "
        "to start a new cache, or run with --no-cache"
    )


class ResponseCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL)"
            )
            self._db.commit()
        except sqlite3.Error as e:
            if "locked" in str(e):  # busy, not broken: another process holds it
                raise
            raise unreadable(self.path, e) from e

    @staticmethod
    def key(model_identity: str, request: Request) -> str:
        return hashlib.sha256(f"{model_identity}\n{request_key(request)}".encode()).hexdigest()

    def get_many(self, keys: list[str]) -> dict[str, tuple[str, str]]:
        found: dict[str, tuple[str, str]] = {}
        with self._lock:
            try:
                for start in range(0, len(keys), 500):
                    chunk = keys[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    for key, kind, body in self._db.execute(
                        f"SELECT key, kind, body FROM responses WHERE key IN ({marks})", chunk
                    ):
                        found[key] = (kind, body)
            except sqlite3.OperationalError:  # busy or out of disk: not the file's fault
                raise
            except sqlite3.DatabaseError as e:  # corrupt pages past a readable header
                raise unreadable(self.path, e) from e
        return found

    def put_many(self, items: list[tuple[str, str, Response]]) -> None:
        """Store (key, kind, response) rows in one transaction."""
        rows = [(k, kind, response_to_json(r)) for k, kind, r in items]
        with self._lock:
            try:
                with self._db:
                    self._db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", rows)
            except sqlite3.OperationalError:
                raise
            except sqlite3.DatabaseError as e:
                raise unreadable(self.path, e) from e

    def close(self) -> None:
        with self._lock:
            self._db.close()


def decode(kind: str, body: str) -> Response:
    return response_from_json(kind, body)
