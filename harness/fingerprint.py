"""Content hashes of model weights and adapters: the model half of every cache key.

Hashing 100+ GB of weights is slow, so a file's sha256 is remembered by (path, size, mtime)
in a small JSON index under the cache directory; a changed file is re-hashed.

PEFT writes some `adapter_config.json` fields from Python sets (`target_modules`, ...), so
their order — and the file's bytes — change with PYTHONHASHSEED while the weights are
byte-identical. That file is hashed in a canonical form (parsed, set-valued lists sorted,
keys sorted), so one adapter has one identity, provenance and set of cache keys.

For the same reason fields that say where or how long rather than what are left out: the base
model's local path in `adapter_config.json` (the base is the identity's other half) and the
build time in a tiny model's `recipe.json`. Identical weights built twice, or kept under two
cache directories, are one model.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from harness.io import atomic_write_text, cache_dir

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf", ".json", ".model", ".txt", ".jinja")
ADAPTER_CONFIG = "adapter_config.json"
# adapter_config.json fields PEFT holds as sets: their order carries no meaning.
SET_VALUED_FIELDS = ("target_modules", "exclude_modules", "modules_to_save")
# Per file name: fields that record where or how long, not what (left out of the hash).
NOT_IDENTITY = {ADAPTER_CONFIG: ("base_model_name_or_path",), "recipe.json": ("seconds", "cpu_seconds")}
# Index keys of canonically hashed files carry this prefix: a digest remembered under another
# rule (raw bytes, or an earlier canonical form) is not reused.
CANONICAL_KEY = "canonical-v2|"


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def canonical_json(name: str, raw: bytes) -> bytes | None:
    """A canonically hashed file (`NOT_IDENTITY`) in canonical form: parsed, set-valued lists
    sorted, fields that are not identity dropped, keys sorted (None when it is not a JSON object)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    for field in SET_VALUED_FIELDS if name == ADAPTER_CONFIG else ():
        value = data.get(field)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            data[field] = sorted(set(value))
    for field in NOT_IDENTITY[name]:
        data.pop(field, None)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _file_digest(path: Path) -> str:
    if path.name in NOT_IDENTITY:
        canonical = canonical_json(path.name, path.read_bytes())
        if canonical is not None:
            return hashlib.sha256(canonical).hexdigest()
    return file_sha256(path)


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
        if p.name in NOT_IDENTITY:
            key = CANONICAL_KEY + key  # not a digest an older index may hold under another rule
        digest = index.get(key)
        if digest is None:
            digest = _file_digest(p)
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
