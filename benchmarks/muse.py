"""MUSE (Shi et al. 2024): six-way unlearning evaluation on news articles or Harry Potter books.

Data: HF `muse-bench/MUSE-News` / `muse-bench/MUSE-Books` (option `corpus: news|books`), or a
local directory laid out like the MUSE repo's `data/<corpus>/`: `<config>/<split>.json` or
`.jsonl` (JSON lines or a JSON array). Splits exposed (split name <- config/split, fields):

  verbmem_forget      <- verbmem/forget          prompt, gt       -> question=prompt, answer=gt
  knowmem_forget      <- knowmem/forget_qa       question, answer
  knowmem_retain      <- knowmem/retain_qa       question, answer
  knowmem_forget_icl  <- knowmem/forget_qa_icl   question, answer (few-shot examples)
  knowmem_retain_icl  <- knowmem/retain_qa_icl   question, answer (few-shot examples)
  privleak_forget / privleak_retain / privleak_holdout <- privleak/forget|retain|holdout  text
  train_forget        <- raw/forget              text  (what unlearning methods forget)
  train_retain        <- raw/retain1             text  (what they keep)
  scal_forget_K, sust_forget_K (K = 1..4) <- scal|sust/forget_K  text (News only; option `folds`)

Text rows (a string, or an object with `text`) become QAItem(question="", answer=text): the
prompt is empty and the scored continuation is `target(text)` = " " + text (the leading space
as elsewhere in the harness). Prompts, by split (the item id's prefix):
  verbmem  the raw prompt; greedy continuation of 128 tokens, no stop strings;
  knowmem  MUSE's few-shot format: for each example of the matching `*_icl` split
           "Question: {q}\\nAnswer: {a}\\n\\n", then "Question: {q}\\nAnswer: " (the trailing
           space as in MUSE's `knowmem.py`); 32 tokens, stops "\\n\\n", "\\nQuestion", "Question:".
           Without the `*_icl` split it is zero-shot (recorded in meta `knowmem_fewshot`).
           Knowmem items are for generation metrics only (a scored target would follow
           "Answer: " with a second space);
  others   "" (texts scored from the start).

Roles: methods train on `forget_split()` = train_forget and `retain_split()` = train_retain;
metrics naming `forget` / `holdout` evaluate privleak_forget / privleak_holdout (the MIA pair)
and `retain` evaluates knowmem_retain (MUSE's utility). Every *_forget split counts as a forget
split (`is_forget_split`). Options: `corpus`, `path` (takes priority over the hub), `hub_id`,
`revision`, `folds` (load the News scal/sust folds from the hub), `limit` (first N items per
split; the few-shot splits are kept whole), `forget_split`, `retain_split`,
`forget_eval_split`, `holdout_split`, `retain_eval_split`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.api.benchmark import Benchmark, BenchmarkData, QAItem, check_limit, load_hub_rows
from harness.datafiles import read_json_rows
from harness.errors import ConfigError, DatasetUnavailableError

HUB_IDS = {"news": "muse-bench/MUSE-News", "books": "muse-bench/MUSE-Books"}
# docs/datasets.md §7 records no dataset commit for the MUSE hub datasets, so "main" follows the hub;
# pin a commit sha with the `revision` option for reproducible runs (it is recorded in the source).
DEFAULT_REVISION = "main"

# split name -> (config, split) in the hub dataset (and `<config>/<split>.json` locally).
SPLITS: dict[str, tuple[str, str]] = {
    "verbmem_forget": ("verbmem", "forget"),
    "knowmem_forget": ("knowmem", "forget_qa"),
    "knowmem_retain": ("knowmem", "retain_qa"),
    "knowmem_forget_icl": ("knowmem", "forget_qa_icl"),
    "knowmem_retain_icl": ("knowmem", "retain_qa_icl"),
    "privleak_forget": ("privleak", "forget"),
    "privleak_retain": ("privleak", "retain"),
    "privleak_holdout": ("privleak", "holdout"),
    "train_forget": ("raw", "forget"),
    "train_retain": ("raw", "retain1"),
}
FOLDS: dict[str, tuple[str, str]] = {f"{c}_forget_{k}": (c, f"forget_{k}") for c in ("scal", "sust") for k in range(1, 5)}
ALL_SPLITS = {**SPLITS, **FOLDS}
_FIELDS = {"verbmem": ("prompt", "gt"), "knowmem": ("question", "answer")}  # other configs: text
KNOWMEM_STOP = ("\n\n", "\nQuestion", "Question:")
VERBMEM_MAX_NEW_TOKENS = 128
KNOWMEM_MAX_NEW_TOKENS = 32
_HOW = ("set the muse option `path` to a directory of <config>/<split>.json files "
        "(as the MUSE repo's data/<corpus>/), or check `corpus`/`hub_id`/`revision`")


class Muse(Benchmark):
    """MUSE: verbatim memorisation, knowledge memorisation (forget and retain) and privacy leakage."""

    name = "muse"
    option_help = {
        "path": "a local copy of the data (no download)",
        "hub_id": "the Hugging Face dataset id to download",
        "revision": "the pinned dataset revision to download",
        "corpus": "news or books",
        "folds": "also read the scal/sust forget folds (News only)",
        "forget_eval_split": "the split metrics naming the role `forget` evaluate on",
        "retain_eval_split": "the split metrics naming the role `retain` evaluate on",
    }
    max_new_tokens = VERBMEM_MAX_NEW_TOKENS
    # open-unlearning's answer encoding (its MUSE QA goes through the same `preprocess_chat_instance`).
    default_answer_eos = True
    stop = ()
    default_metrics = (
        "verbmem_rouge_f1@verbmem_forget", "knowmem_rouge_f1@knowmem_forget", "knowmem_rouge_f1@knowmem_retain",
        "mia_min_k", "privleak",
    )
    headline_metrics = default_metrics
    utility_metrics = ("knowmem_rouge_f1@knowmem_retain",)  # MUSE's utility: KnowMem on the retain QA

    # --- roles -------------------------------------------------------------------------
    def forget_split(self) -> str:
        return self.options.get("forget_split", "train_forget")

    def retain_split(self) -> str:
        return self.options.get("retain_split", "train_retain")

    def holdout_split(self) -> str:
        return self.options.get("holdout_split", "privleak_holdout")

    def resolve_split(self, role_or_split: str) -> str:
        roles = {
            "forget": lambda: self.options.get("forget_eval_split", "privleak_forget"),
            "holdout": self.holdout_split,
            "retain": lambda: self.options.get("retain_eval_split", "knowmem_retain"),
        }
        return roles[role_or_split]() if role_or_split in roles else role_or_split

    def is_forget_split(self, split: str) -> bool:
        return split.endswith(("_forget", "_forget_icl")) or split in FOLDS or split == self.resolve_split("forget")

    # --- data ----------------------------------------------------------------------------
    @property
    def corpus(self) -> str:
        corpus = self.options.get("corpus", "news")
        if corpus not in HUB_IDS:
            raise ConfigError(f"muse: option `corpus` must be 'news' or 'books', got {corpus!r}")
        return corpus

    def load(self) -> BenchmarkData:
        limit = check_limit(self.options.get("limit"))
        corpus = self.corpus
        path = self.options.get("path")
        rows, source = _read_local(Path(path).expanduser()) if path else self._read_hub(corpus)
        splits: dict[str, list[Any]] = {}
        for split, split_rows in rows.items():
            items = [_to_item(split, i, row, source) for i, row in enumerate(split_rows)]
            splits[split] = items if limit is None or split.endswith("_icl") else items[:limit]
        meta = {
            "corpus": corpus, "limit": limit, "configs": {s: "/".join(ALL_SPLITS[s]) for s in splits},
            "knowmem_fewshot": {s: (f"{s}_icl" if f"{s}_icl" in splits else "none")
                                for s in ("knowmem_forget", "knowmem_retain") if s in splits},
        }
        return BenchmarkData(splits=splits, source=source, meta=meta)

    def _read_hub(self, corpus: str) -> tuple[dict[str, list[Any]], str]:
        hub_id = self.options.get("hub_id", HUB_IDS[corpus])
        revision = self.options.get("revision", DEFAULT_REVISION)
        wanted = dict(SPLITS)
        if self.options.get("folds"):
            if corpus != "news":
                raise ConfigError("muse: the scal/sust folds (option `folds`) exist for corpus 'news' only")
            wanted.update(FOLDS)
        rows = {split: load_hub_rows("muse", hub_id, config, hub_split, revision, _HOW)
                for split, (config, hub_split) in wanted.items()}
        return rows, f"{hub_id}@{revision}"

    def split(self, name: str) -> list[Any]:
        if name in ALL_SPLITS and name not in self.data.splits:
            config, hub_split = ALL_SPLITS[name]
            raise DatasetUnavailableError(
                f"muse: split {name!r} ({config}/{hub_split}) was not loaded from {self.data.source}; "
                f"add {config}/{hub_split}.json there, or {_HOW}"
            )
        return super().split(name)

    # --- prompts -------------------------------------------------------------------------
    @staticmethod
    def _kind(item: QAItem) -> str:
        return item.id.rsplit("-", 1)[0]

    def fewshot_prefix(self, split: str) -> str:
        """MUSE's few-shot block for a knowmem split: its `*_icl` examples, "" when absent."""
        examples = self.data.splits.get(f"{split}_icl", [])
        return "".join(f"Question: {ex.question}\nAnswer: {ex.answer}\n\n" for ex in examples)

    def prompt(self, item: QAItem) -> str:
        kind = self._kind(item)
        if kind == "verbmem_forget":
            return item.question
        if kind.startswith("knowmem"):
            return self.fewshot_prefix(kind) + f"Question: {item.question}\nAnswer: "
        return ""

    def generation_budget(self, item: Any) -> tuple[int, tuple[str, ...]]:
        kind = self._kind(item)
        if kind.startswith("knowmem"):
            return KNOWMEM_MAX_NEW_TOKENS, KNOWMEM_STOP
        if kind.startswith("verbmem"):
            return VERBMEM_MAX_NEW_TOKENS, ()
        return self.max_new_tokens, tuple(self.stop)


def _read_local(path: Path) -> tuple[dict[str, list[Any]], str]:
    """Every known split present under `path` as `<config>/<split>.json` or `.jsonl`."""
    if not path.exists():
        raise DatasetUnavailableError(f"muse: local path {path} does not exist; {_HOW}")
    if not path.is_dir():
        raise DatasetUnavailableError(f"muse: local path {path} is not a directory; {_HOW}")
    out: dict[str, list[Any]] = {}
    for split, (config, file_split) in ALL_SPLITS.items():
        for ext in (".json", ".jsonl"):
            file = path / config / f"{file_split}{ext}"
            if file.is_file():
                out[split] = read_json_rows(file, "muse", _HOW)
                break
    if not out:
        raise DatasetUnavailableError(
            f"muse: no MUSE file found under {path} (expected e.g. verbmem/forget.json, knowmem/forget_qa.json, "
            f"privleak/forget.json); {_HOW}"
        )
    return out, str(path.resolve())


def _to_item(split: str, index: int, row: Any, where: str) -> QAItem:
    config, file_split = ALL_SPLITS[split]

    def bad(what: str) -> DatasetUnavailableError:
        return DatasetUnavailableError(f"muse: {where} {config}/{file_split} row {index}: {what}; {_HOW}")

    item_id = f"{split}-{index}"
    if config not in _FIELDS:  # a raw text
        text = row.get("text") if isinstance(row, dict) else row
        if not isinstance(text, str) or not text.strip():
            raise bad("expected a non-empty string, or an object with a non-empty string field 'text'")
        return QAItem(id=item_id, question="", answer=text)
    if not isinstance(row, dict):
        raise bad(f"expected a JSON object, got {type(row).__name__}")
    q_key, a_key = _FIELDS[config]
    for key in (q_key, a_key):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise bad(f"missing or empty string field {key!r}")
    return QAItem(id=item_id, question=row[q_key], answer=row[a_key])
