"""One model, one identity: adapter_config.json (issue 18) and a tiny model's recipe.json are hashed in
a canonical form, without the fields that say where or how long."""

from __future__ import annotations

import json
from pathlib import Path

from harness.fingerprint import CANONICAL_KEY, directory_fingerprint, model_identity

CONFIG = {
    "peft_type": "LORA", "r": 8, "lora_alpha": 16, "base_model_name_or_path": "base",
    "target_modules": ["q_proj", "v_proj", "k_proj", "o_proj"], "modules_to_save": ["lm_head", "embed"],
}


def _adapter(directory: Path, config: dict, weights: bytes = b"\x00weights\x01") -> Path:
    directory.mkdir(parents=True)
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=2))
    (directory / "adapter_model.safetensors").write_bytes(weights)
    return directory


def test_set_order_in_adapter_config_does_not_change_the_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    reordered = {**CONFIG, "target_modules": ["o_proj", "k_proj", "q_proj", "v_proj"],
                 "modules_to_save": ["embed", "lm_head"]}
    reordered = dict(reversed(list(reordered.items())))  # key order too
    a = _adapter(tmp_path / "a", CONFIG)
    b = _adapter(tmp_path / "b", reordered)
    assert (a / "adapter_config.json").read_bytes() != (b / "adapter_config.json").read_bytes()
    assert directory_fingerprint(a) == directory_fingerprint(b)
    base = _adapter(tmp_path / "base", {"model_type": "llama"})
    assert model_identity(str(base), adapter=str(a)) == model_identity(str(base), adapter=str(b))


def test_what_matters_still_changes_the_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    a = directory_fingerprint(_adapter(tmp_path / "a", CONFIG))
    assert directory_fingerprint(_adapter(tmp_path / "r", {**CONFIG, "r": 16})) != a
    assert directory_fingerprint(_adapter(tmp_path / "t", {**CONFIG, "target_modules": ["q_proj"]})) != a
    assert directory_fingerprint(_adapter(tmp_path / "w", CONFIG, weights=b"other")) != a
    # a file that is not JSON is hashed as it is
    bad = _adapter(tmp_path / "bad", CONFIG)
    (bad / "adapter_config.json").write_text("{not json")
    assert directory_fingerprint(bad) != a


def test_a_remembered_raw_digest_is_not_reused(tmp_path, monkeypatch):
    """An index written before canonical hashing must not answer for adapter_config.json."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    a = _adapter(tmp_path / "a", CONFIG)
    first = directory_fingerprint(a)
    index_file = tmp_path / "cache" / "fingerprints.json"
    index = json.loads(index_file.read_text())
    for prefix in ("", "canonical|"):  # raw bytes; the first canonical form (base path kept)
        stale = {(prefix + k.removeprefix(CANONICAL_KEY) if k.startswith(CANONICAL_KEY) else k):
                 ("0" * 64 if k.startswith(CANONICAL_KEY) else v) for k, v in index.items()}
        assert len(stale) == 2 and "0" * 64 in stale.values()
        index_file.write_text(json.dumps(stale))
        assert directory_fingerprint(a) == first


def test_where_the_base_lives_is_not_the_adapters_identity(tmp_path, monkeypatch):
    """PEFT writes the base model's local path into adapter_config.json: the same adapter trained
    against a base under two cache directories is one adapter."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    a = _adapter(tmp_path / "a", {**CONFIG, "base_model_name_or_path": str(tmp_path / "one" / "zoo" / "tiny-facts")})
    b = _adapter(tmp_path / "b", {**CONFIG, "base_model_name_or_path": str(tmp_path / "two" / "zoo" / "tiny-facts")})
    assert directory_fingerprint(a) == directory_fingerprint(b)


def _built(directory: Path, record: dict) -> Path:
    directory.mkdir(parents=True)
    (directory / "model.safetensors").write_bytes(b"\x00weights")
    (directory / "recipe.json").write_text(json.dumps(record, indent=2))
    return directory


def test_a_tiny_models_build_time_is_not_its_identity(tmp_path, monkeypatch):
    """Two builds of the same recipe give byte-identical weights but another `seconds`: one model
    (measured: the demo's tiny-facts built twice differed only there)."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    record = {"recipe": {"layers": 4, "seed": 0}, "final_loss": 0.35}
    one = directory_fingerprint(_built(tmp_path / "one", {**record, "seconds": 83.3, "cpu_seconds": 160.1}))
    assert directory_fingerprint(_built(tmp_path / "two", {**record, "seconds": 83.0, "cpu_seconds": 159.0})) == one
    assert directory_fingerprint(_built(tmp_path / "seed", {**record, "recipe": {"layers": 4, "seed": 1},
                                                            "seconds": 83.3, "cpu_seconds": 160.1})) != one
    assert directory_fingerprint(_built(tmp_path / "loss", {**record, "final_loss": 0.36, "seconds": 83.3,
                                                            "cpu_seconds": 160.1})) != one
