"""FIUBench data loader (benchmarks.md §3): a local `full.json` + face images + `split.json`.

Nothing is downloaded. The data lives in the HF dataset `gray311/FIUBench` (Apache-2.0 per its
card); clone it and point `path` at the folder holding `full.json`. `split.json` is read from
that folder, or from `split_file` (the project ships a copy in `../shared/data/fiubench/`).

Every problem is one line: DatasetUnavailableError when the folder, `full.json`, `split.json`
or an image is missing or the records do not match the schema (naming the record and the
field); ConfigError for a bad option value (an unknown split name).

Schema [code: data_module.py, evaluate_util.py]:
  person: unique_id (str), image_path (str), caption (str, optional), qa_list (list)
  qa: question (str), answer (str), paraphrased_answer (str), perturbed_answer (list[str]),
      paraphrased_question (str or list[str]), keywords (list[str])
The code keeps only the first 400 persons (`data[:400]`); so does `max_persons` by default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.api.benchmark import Benchmark, BenchmarkData, ImageQAItem, QAItem, check_limit
from harness.api.media import MediaRef
from harness.datafiles import json_or_json_lines, pinned_snapshot
from harness.errors import ConfigError, DatasetUnavailableError

BENCH = "fiubench"
HF_DATASET = "gray311/FIUBench"
SPLIT_KEYS = ("forget1", "forget5", "forget10", "retain5", "retain15")
MAX_PERSONS = 400
_HOW = (f"clone the HF dataset {HF_DATASET} and set the benchmark option `path` to the folder holding "
        "full.json (and split.json, or set `split_file`), or set `hub` with a pinned `revision`")
_QA_FIELDS: dict[str, tuple[type, ...]] = {
    "question": (str,), "answer": (str,), "paraphrased_answer": (str,), "perturbed_answer": (list,),
    "paraphrased_question": (str, list), "keywords": (list,),
}


@dataclass(frozen=True)
class FIUBenchQA:
    question: str
    answer: str
    paraphrased_answer: str
    perturbed_answers: tuple[str, ...]
    paraphrased_questions: tuple[str, ...]  # a single string in the file becomes a 1-tuple
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class FIUBenchPerson:
    unique_id: str
    image_path: Path  # resolved, exists
    caption: str
    qa: tuple[FIUBenchQA, ...]


@dataclass
class FIUBenchData:
    persons: dict[str, FIUBenchPerson]  # unique_id -> person, in file order
    splits: dict[str, list[str]]  # split name -> unique_ids (forget lists, retain5/15, and `retain`)
    source: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> list[FIUBenchPerson]:
        if name not in self.splits:
            raise ConfigError(f"{BENCH}: no split {name!r} (has: {', '.join(self.splits)})")
        return [self.persons[i] for i in self.splits[name]]


def _fail(msg: str) -> DatasetUnavailableError:
    return DatasetUnavailableError(f"{BENCH}: {msg}; {_HOW}")


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise _fail(f"{what} not found at {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(f"cannot read {path} as JSON ({type(e).__name__}: {e})") from e


def _read_full(path: Path) -> list[Any]:
    """full.json: a JSON list, or JSON lines (the code accepts both)."""
    if not path.is_file():
        raise _fail(f"full.json not found at {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = json_or_json_lines(text)
    except json.JSONDecodeError as e:
        raise _fail(f"cannot read {path} as JSON or JSON lines ({e})") from e
    if not isinstance(data, list) or not data:
        raise _fail(f"{path} must hold a non-empty list of persons")
    return data


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(f"{where} must be a list of strings, got {type(value).__name__}")
    return tuple(value)


def parse_qa(qa: Any, where: str) -> FIUBenchQA:
    if not isinstance(qa, dict):
        raise _fail(f"{where} must be an object, got {type(qa).__name__}")
    for key, types in _QA_FIELDS.items():
        if key not in qa:
            raise _fail(f"{where} has no field {key!r}")
        if not isinstance(qa[key], types):
            raise _fail(f"{where}.{key} must be {' or '.join(t.__name__ for t in types)}, got {type(qa[key]).__name__}")
    pq = qa["paraphrased_question"]
    return FIUBenchQA(
        question=qa["question"], answer=qa["answer"], paraphrased_answer=qa["paraphrased_answer"],
        perturbed_answers=_str_list(qa["perturbed_answer"], f"{where}.perturbed_answer"),
        paraphrased_questions=(pq,) if isinstance(pq, str) else _str_list(pq, f"{where}.paraphrased_question"),
        keywords=_str_list(qa["keywords"], f"{where}.keywords"),
    )


def resolve_image(root: Path, image_path: str, image_root: Path | None = None) -> Path | None:
    """Where a record's `image_path` is: absolute as given; else under `image_root`, `root`,
    root's parent (the code runs from the repo root with the data in ./dataset/), or by file
    name in `<root>/images/`. None when none exists."""
    p = Path(image_path)
    candidates = [p] if p.is_absolute() else []
    if not p.is_absolute():
        if image_root is not None:
            candidates += [image_root / p, image_root / p.name]
        candidates += [root / p, root.parent / p]
    candidates.append(root / "images" / p.name)
    return next((c for c in candidates if c.is_file()), None)


def load_fiubench(path: str | Path | None, split_file: str | Path | None = None, image_root: str | Path | None = None,
                  max_persons: int | None = MAX_PERSONS, check_images: bool = True) -> FIUBenchData:
    """Read and schema-check FIUBench from a local folder.

    `path`: the folder with `full.json` (or the `full.json` file itself). `split_file`: the
    `split.json` to use (default: `<folder>/split.json`). `image_root`: where relative image
    paths start, when neither the folder nor its parent. `max_persons`: keep the first N
    persons, as the code's `data[:400]` (None: all). `check_images`: require every image file.

    Every id in every split must be a kept person. `splits` also gets `retain`: the kept
    persons in no forget list (the retain training set)."""
    if path is None:
        raise _fail("no path given")
    root = Path(path).expanduser()
    if not root.exists():
        raise _fail(f"local path {root} does not exist")
    full = root if root.is_file() else root / "full.json"
    folder = full.parent
    records = _read_full(full)
    if max_persons is not None:
        records = records[:max_persons]
    img_root = Path(image_root).expanduser() if image_root is not None else None

    persons: dict[str, FIUBenchPerson] = {}
    for n, rec in enumerate(records):
        where = f"{full.name} person {n}"
        if not isinstance(rec, dict):
            raise _fail(f"{where} must be an object, got {type(rec).__name__}")
        for key, types in (("unique_id", (str,)), ("image_path", (str,)), ("qa_list", (list,))):
            if key not in rec:
                raise _fail(f"{where} has no field {key!r}")
            if not isinstance(rec[key], types):
                raise _fail(f"{where}.{key} must be {types[0].__name__}, got {type(rec[key]).__name__}")
        uid = rec["unique_id"]
        where = f"{full.name} person {uid!r}"
        if uid in persons:
            raise _fail(f"{where} appears twice")
        if not rec["qa_list"]:
            raise _fail(f"{where} has an empty qa_list")
        qa = tuple(parse_qa(q, f"{where} qa_list[{i}]") for i, q in enumerate(rec["qa_list"]))
        image = resolve_image(folder, rec["image_path"], img_root)
        if image is None:
            if check_images:
                raise _fail(f"image of person {uid!r} not found: {rec['image_path']!r} (looked under {img_root or folder})")
            image = Path(rec["image_path"])
        caption = rec.get("caption", "")
        if not isinstance(caption, str):
            raise _fail(f"{where}.caption must be str, got {type(caption).__name__}")
        persons[uid] = FIUBenchPerson(uid, image, caption, qa)

    split_path = Path(split_file).expanduser() if split_file is not None else folder / "split.json"
    raw = _read_json(split_path, "split.json")
    if not isinstance(raw, dict):
        raise _fail(f"{split_path} must be an object of split name -> list of unique_id")
    missing_keys = [k for k in SPLIT_KEYS if k not in raw]
    if missing_keys:
        raise _fail(f"{split_path} has no {', '.join(missing_keys)} (expected keys {', '.join(SPLIT_KEYS)})")
    splits: dict[str, list[str]] = {}
    for key, ids in raw.items():
        ids = list(_str_list(ids, f"{split_path.name} {key!r}"))
        unknown = [i for i in ids if i not in persons]
        if unknown:
            raise _fail(f"{split_path.name} {key!r} names {len(unknown)} unique_id(s) not among the "
                        f"{len(persons)} persons read from {full.name} (first: {unknown[0]!r})")
        splits[key] = ids
    forget = {i for k in raw if k.startswith("forget") for i in raw[k]}
    splits["retain"] = [uid for uid in persons if uid not in forget]
    source = {"full_json": str(full), "split_json": str(split_path), "n_persons": len(persons),
              "n_qa": sum(len(p.qa) for p in persons.values()), "max_persons": max_persons, "hf_dataset": HF_DATASET}
    return FIUBenchData(persons=persons, splits=splits, source=source)


# --- the benchmarks -----------------------------------------------------------------------
def qa_item(uid: str, k: int, qa: FIUBenchQA, image: MediaRef) -> ImageQAItem:
    """One FIUBench QA as an item about its person's picture (id `<unique_id>-<k>`)."""
    return ImageQAItem(id=f"{uid}-{k}", question=qa.question, answer=qa.answer, paraphrased_answer=qa.paraphrased_answer,
                       perturbed_answers=qa.perturbed_answers, entity=uid, question_paraphrases=qa.paraphrased_questions,
                       images=(image,), keywords=qa.keywords)


class FaceUnlearningBenchmark(Benchmark):
    """FIUBench-shaped VLM unlearning: QA about a person shown in a picture (FIUBench, fictitious-faces).

    The prompt is the bare question (the VLM's chat template adds the turn and the image
    placeholder); every request shows the item's picture (`Benchmark.images`). Roles, as
    FIUBench: methods forget `forget_split` (default forget5) and train on `retain` (every
    person in no forget list); metrics that name `retain` evaluate on `retain_eval_split`
    (default retain15); greedy answers get 50 new tokens. `gpt_eval: true` adds GPT-Eval (a
    `fiu_gpt` judge model is then needed) to the default metrics and to Avg MU.
    """

    model_kind = "image-text-to-text"
    max_new_tokens = 50
    # FIUBench's `data_module.py` tokenizes `system + question tag + question + answer tag + answer`
    # with the tokenizer's defaults (BOS, no EOS) for training and for its loss-based metrics, so
    # its answers carry no EOS (docs/metrics.md "Answer EOS"); the open-unlearning rule is off here.
    default_answer_eos = False
    # The ACC metric id (the general visual utility questions), where the benchmark has them.
    acc_metric: ClassVar[str | None] = None
    # The code's Model Utility: the harmonic mean (`model_utility`) of the retain ROUGE-L, Prob.
    # (normalised over the perturbed answers), truth ratio and EM (+ GPT-Eval with a judge).
    utility_metrics = ("fiu_rouge_l_recall@retain", "normalised_probability@retain", "fiu_truth_ratio@retain",
                       "fiu_keyword_em@retain")
    default_metrics = (
        "fiu_rouge_l_recall@forget", "probability@forget", "fiu_truth_ratio@forget", "fiu_keyword_em@forget",
        "fiu_ape@forget", "fiu_mia_min_k@forget", "fiu_mia_min_k_plus_plus@forget", "forget_quality",
        *utility_metrics, "model_utility", "fiu_avg_mu", "fiu_avg_fq",
    )
    # FIUBench's Table 2, in its order: utility (ROUGE-L, GPT, truth ratio, ACC, Avg MU), then
    # forgetting (KS, EM, MIA, APE, Avg FQ). GPT-Eval shows "—" without a judge model.
    headline_metrics = ("fiu_rouge_l_recall@retain", "fiu_gpt_eval@retain", "fiu_truth_ratio@retain", "fiu_acc@visual",
                        "fiu_avg_mu", "forget_quality", "fiu_keyword_em@forget", "fiu_mia_min_k@forget", "fiu_ape@forget",
                        "fiu_avg_fq")
    views = {
        "forget set, as the retain columns": ("fiu_rouge_l_recall@forget", "probability@forget", "fiu_truth_ratio@forget"),
        "code aggregates (harmonic-mean model utility, Min-K%++)": (
            "model_utility", "normalised_probability@retain", "fiu_keyword_em@retain", "fiu_mia_min_k_plus_plus@forget"),
    }

    def __init__(self, **options: Any):
        super().__init__(**options)
        gpt = options.get("gpt_eval", False)
        if not isinstance(gpt, bool):
            raise ConfigError(f"{self.name}: option `gpt_eval` must be true or false, got {gpt!r}")
        if gpt:  # GPT-Eval (and the Avg MU built on it) need the run's `fiu_gpt` judge
            self.default_metrics = (*type(self).default_metrics, "fiu_gpt_eval@retain")

    def forget_split(self) -> str:
        return self.options.get("forget_split", "forget5")

    def retain_split(self) -> str:
        return self.options.get("retain_split", "retain")

    def holdout_split(self) -> str:
        return self.options.get("holdout_split", "holdout")

    def resolve_split(self, role_or_split: str) -> str:
        if role_or_split == "retain":
            return self.options.get("retain_eval_split", "retain15")
        return super().resolve_split(role_or_split)

    def prompt(self, item: QAItem) -> str:
        return item.question


class FIUBench(FaceUnlearningBenchmark):
    """FIUBench (Ma et al., ICLR 2025): 400 fictitious faces x 20 private-attribute QA.

    Options: `path` (a local folder with full.json, split.json and the images), or `hub` (a
    dataset id, default none) with a pinned `revision` (a commit hash: results must say which
    data they were computed on), fetched with huggingface_hub into its cache; `split_file`,
    `image_root`, `max_persons` (default 400, as the code), `forget_split`, `limit` (first N
    items per split). ACC, FIUBench's general visual utility, needs local MME and/or POPE
    (benchmarks/visual_yes_no.py): `mme_root`, `pope_file` and `pope_image_root`. Their
    questions form the `visual` split that `fiu_acc@visual` scores (and Avg MU uses), and the
    `mme` and `pope` splits.
    """

    name = "fiubench"

    def __init__(self, **options: Any):
        super().__init__(**options)
        if options.get("mme_root") or options.get("pope_file"):
            self.acc_metric = "fiu_acc@visual"
            self.default_metrics = (*self.default_metrics, "fiu_acc@visual")

    def _visual_splits(self) -> dict[str, list[Any]]:
        """`mme`, `pope` and `visual` (both) as yes/no items, when their files are given."""
        from harness.benchmarks.visual_yes_no import load_mme, load_pope

        sets: dict[str, list[Any]] = {}
        if self.options.get("mme_root"):
            sets["mme"] = load_mme(self.options["mme_root"])
        if self.options.get("pope_file"):
            sets["pope"] = load_pope(self.options["pope_file"], self.options.get("pope_image_root"))
        splits = {name: [ImageQAItem(id=q.id, question=q.question, answer=q.answer + ".", entity=q.source,
                                     images=(MediaRef.from_path(q.image),)) for q in qs] for name, qs in sets.items()}
        if splits:
            splits["visual"] = [item for items in splits.values() for item in items]
        return splits

    def load(self) -> BenchmarkData:
        limit = check_limit(self.options.get("limit"))
        path, source = self.options.get("path"), None
        if path is None and self.options.get("hub"):
            path, source = pinned_snapshot(str(self.options["hub"]), self.options.get("revision"), BENCH, _HOW)
        data = load_fiubench(path, self.options.get("split_file"), self.options.get("image_root"),
                             self.options.get("max_persons", MAX_PERSONS))
        refs = {uid: MediaRef.from_path(p.image_path) for uid, p in data.persons.items()}
        splits: dict[str, list[Any]] = {}
        for name, ids in data.splits.items():
            items = [qa_item(uid, k, qa, refs[uid]) for uid in ids for k, qa in enumerate(data.persons[uid].qa)]
            splits[name] = items if limit is None else items[:limit]
        visual = self._visual_splits()
        splits.update({name: items if limit is None else items[:limit] for name, items in visual.items()})
        meta = {**data.source, "limit": limit, **{f"n_{name}": len(items) for name, items in visual.items()}}
        return BenchmarkData(splits=splits, source=source or str(data.source["full_json"]), meta=meta)
