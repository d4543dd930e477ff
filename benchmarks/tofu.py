"""TOFU (Maini et al. 2024): QA about 200 fictitious authors, from HF `locuslab/TOFU` or a local copy.

Splits exposed (split name <- config):
  forgetNN <- forgetNN_perturbed (answer + paraphrase + 5 perturbed answers)
  retainNN, holdoutNN, full <- the config of the same name (question, answer)
  retain_perturbed <- retain_perturbed (the retain evaluation subset)
  real_authors <- real_authors_perturbed, world_facts <- world_facts_perturbed (3 perturbed, no paraphrase)

Every QAItem keeps `answer`; `paraphrased_answer` and `perturbed_answers` come from the
perturbed configs, and a row's `paraphrased_question` (where a config has one) becomes
`question_paraphrases`. On real_authors / world_facts the truth ratio therefore scores
`answer` against the perturbed answers (docs/metrics.md §5.4), aggregated `true_better`.

Options: `path` (a directory of `<config>.json` / `.jsonl` files, JSON lines or a JSON array,
or one such file; takes priority over the hub), `hub_id`, `revision`, `forget_split` (default
forget10), `retain_eval_split` (default retain_perturbed), `limit` (first N items per split).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.api.benchmark import BenchmarkData, QAItem, TofuShapedBenchmark, check_limit, load_hub_rows
from harness.datafiles import read_json_rows
from harness.errors import ConfigError, DatasetUnavailableError

DEFAULT_HUB_ID = "locuslab/TOFU"
# docs/datasets.md §6 records no dataset commit for locuslab/TOFU, so "main" follows the hub; pin a
# commit sha with the `revision` option for reproducible runs (it is recorded in the source).
DEFAULT_REVISION = "main"

_PCTS = ("01", "05", "10")
# split name -> the config it is read from (the perturbed one where both exist).
SPLIT_CONFIGS: dict[str, str] = {
    "full": "full",
    **{f"forget{p}": f"forget{p}_perturbed" for p in _PCTS},
    **{f"retain{100 - int(p):02d}": f"retain{100 - int(p):02d}" for p in _PCTS},
    **{f"holdout{p}": f"holdout{p}" for p in _PCTS},
    "retain_perturbed": "retain_perturbed",
    "real_authors": "real_authors_perturbed",
    "world_facts": "world_facts_perturbed",
}
# A base config read when its perturbed config is absent locally (no paraphrase/perturbed answers).
_FALLBACK_CONFIGS = {**{f"forget{p}": f"forget{p}" for p in _PCTS},
                     "real_authors": "real_authors", "world_facts": "world_facts"}
_PERTURBED = {c for c in SPLIT_CONFIGS.values() if c.endswith("_perturbed")}
_NEEDS_PARAPHRASE = {c for c in _PERTURBED if not c.startswith(("real_authors", "world_facts"))}
_HOW = "set the tofu option `path` to a directory holding <config>.json files (JSON lines or a JSON array)"


class Tofu(TofuShapedBenchmark):
    """TOFU fictitious-author unlearning.

    Methods train on `retain_split()` = retainNN; metrics naming the role `retain` evaluate
    on `retain_perturbed` (override with `retain_eval_split`), as TOFU does.
    """

    name = "tofu"
    option_help = {
        "path": "a local copy of the data (no download)",
        "hub_id": "the Hugging Face dataset id to download",
        "revision": "the pinned dataset revision to download",
    }
    max_new_tokens = 200
    stop = ()

    def needed_splits(self) -> list[str]:
        """The splits a hub load fetches for the configured forget split."""
        forget = self.forget_split()
        if forget not in SPLIT_CONFIGS or not forget.startswith("forget"):
            raise ConfigError(f"tofu: unknown forget_split {forget!r} (use forget01, forget05 or forget10)")
        return [forget, self.retain_split(), self.holdout_split(), "retain_perturbed", "real_authors", "world_facts"]

    def load(self) -> BenchmarkData:
        limit = check_limit(self.options.get("limit"))
        path = self.options.get("path")
        if path:
            rows, source = _read_local(Path(path).expanduser())
        else:
            rows, source = self._read_hub()
        splits: dict[str, list[Any]] = {}
        configs: dict[str, str] = {}
        for split, (config, config_rows) in rows.items():
            items = [_to_item(config, i, row, source) for i, row in enumerate(config_rows)]
            splits[split] = items if limit is None else items[:limit]
            configs[split] = config
        return BenchmarkData(splits=splits, source=source, meta={"configs": configs, "limit": limit})

    def split(self, name: str) -> list[Any]:
        if name in SPLIT_CONFIGS and name not in self.data.splits:
            raise DatasetUnavailableError(
                f"tofu: split {name!r} (config {SPLIT_CONFIGS[name]}) was not loaded from {self.data.source}; "
                f"add {SPLIT_CONFIGS[name]}.json there, or {_HOW}"
            )
        return super().split(name)

    def _read_hub(self) -> tuple[dict[str, tuple[str, list[dict]]], str]:
        hub_id = self.options.get("hub_id", DEFAULT_HUB_ID)
        revision = self.options.get("revision", DEFAULT_REVISION)
        out: dict[str, tuple[str, list[dict]]] = {}
        for split in self.needed_splits():
            config = SPLIT_CONFIGS[split]
            out[split] = (config, load_hub_rows("tofu", hub_id, config, "train", revision, _HOW))
        return out, f"{hub_id}@{revision}"


def _read_local(path: Path) -> tuple[dict[str, tuple[str, list[dict]]], str]:
    """Every known config present at `path` (a directory, or a single `<config>.json`)."""
    if not path.exists():
        raise DatasetUnavailableError(f"tofu: local path {path} does not exist; {_HOW}")
    if path.is_file():
        files = {path.stem: path}
    else:
        files = {p.stem: p for p in sorted([*path.glob("*.jsonl"), *path.glob("*.json")])}  # .json wins
    out: dict[str, tuple[str, list[dict]]] = {}
    for split, config in SPLIT_CONFIGS.items():
        chosen = config if config in files else _FALLBACK_CONFIGS.get(split)
        if chosen in files:
            out[split] = (chosen, _read_rows(files[chosen]))
    if not out:
        known = ", ".join(sorted(set(SPLIT_CONFIGS.values())))
        raise DatasetUnavailableError(f"tofu: no TOFU config file found at {path} (expected some of: {known}, as .json); {_HOW}")
    return out, str(path.resolve())


def _read_rows(file: Path) -> list[dict]:
    return read_json_rows(file, "tofu", _HOW)


def _to_item(config: str, index: int, row: Any, where: str) -> QAItem:
    def bad(what: str) -> DatasetUnavailableError:
        return DatasetUnavailableError(f"tofu: {where} config {config} row {index}: {what}; {_HOW}")

    if not isinstance(row, dict):
        raise bad(f"expected a JSON object, got {type(row).__name__}")
    for key in ("question", "answer"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise bad(f"missing or empty string field {key!r}")
    paraphrase = row.get("paraphrased_answer", "")
    perturbed = row.get("perturbed_answer", [])
    if config in _NEEDS_PARAPHRASE and (not isinstance(paraphrase, str) or not paraphrase.strip()):
        raise bad("missing or empty string field 'paraphrased_answer'")
    if config in _PERTURBED and (
        not isinstance(perturbed, list) or not perturbed or not all(isinstance(p, str) for p in perturbed)
    ):
        raise bad("field 'perturbed_answer' must be a non-empty list of strings")
    para_q = row.get("paraphrased_question")
    return QAItem(
        id=f"{config}-{index}",
        question=row["question"],
        answer=row["answer"],
        paraphrased_answer=paraphrase if isinstance(paraphrase, str) else "",
        perturbed_answers=tuple(perturbed) if isinstance(perturbed, list) else (),
        entity="",  # TOFU rows do not name their author
        question_paraphrases=(para_q,) if isinstance(para_q, str) and para_q.strip() else (),
    )
