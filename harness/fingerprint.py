"""Content hashes of model weights and adapters: the model half of every cache key.

Hashing 100+ GB of weights is slow, so a file's sha256 is remembered by (path, size, mtime)
in a small JSON index under the cache directory; a changed file is re-hashed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from harness.io import atomic_write_text, cache_dir

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf", ".json", ".model", ".txt", ".jinja")


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _index_path() -> Path:
    return cache_dir() / "fingerprints.json"


def directory_fingerprint(directory: str | Path) -> str:
    """sha256 over (relative name, file sha256) of every weight/config file in a directory."""
    directory = Path(directory)
    index_file = _index_path()
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError):
        index = {}
    h = hashlib.sha256()
    changed = False
    for p in sorted(directory.rglob("*")):
        if not p.is_file() or not p.name.endswith(WEIGHT_SUFFIXES):
            continue
        st = p.stat()
        key = f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        digest = index.get(key)
        if digest is None:
            digest = file_sha256(p)
            index[key] = digest
            changed = True
        h.update(f"{p.relative_to(directory)}:{digest}\n".encode())
    if changed:
        atomic_write_text(index_file, json.dumps(index))
    return h.hexdigest()


def model_identity(path: str, revision: str | None = None, adapter: str | None = None) -> str:
    """Identity of (base weights, adapter): content hashes where local, id@revision for hub ids."""
    if os.path.isdir(os.path.expanduser(path)):
        base = "sha256:" + directory_fingerprint(os.path.expanduser(path))
    else:
        base = f"hub:{path}@{revision or 'main'}"
    if adapter:
        base += "+adapter:sha256:" + directory_fingerprint(os.path.expanduser(adapter))
    return base
