"""UnLOK-VQA data loader (docs/datasets.md §2): a local copy of the release, or a pinned hub snapshot.

Nothing is shipped or downloaded unasked: the dataset's license is not stated, so point `path`
at a local copy of HF `vaidehi99/UnLOK-VQA` (a JSON list, JSON lines or parquet file, or the
folder holding exactly one), or set `hub` with a 40-hex `revision`. Images come from local
folders: `coco_root` (MS-COCO 2017; `image_id` padded to 12 digits, looked up in `train2017/`,
then `val2017/`, as the code's `get_image_path`), and the Google Drive paraphrase and
neighbourhood images, one folder per difficulty (`paraphrase_image_roots`,
`neighborhood_image_roots`: {easy, medium, hard} -> folder of `{id}.jpg` / `{id}_{j}.jpg`).

Record schema [code]: `id` int, `src` str (the question whose answer is deleted), `pred` str (the
answer), `loc` list[str] (neighbourhood questions, each prefixed "nq question: "), `loc_ans`
list[str], `image_id` int. The six loader fields `subject`, `answers`, `alt_ans`, `rephrase`,
`neigh_idx`, `objects_edit` are optional: whether the release has them is [unverified]. The
loader records which are missing; an attack that needs one calls `UnlokData.require(field)`,
which stops with one line naming the field.

Every problem is one line: DatasetUnavailableError for missing files or records that do not
match the schema (naming the record and field), ConfigError for bad option values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.api.benchmark import Benchmark, BenchmarkData, ImageQAItem, check_limit
from harness.api.edit import EditInstance
from harness.api.media import MediaRef
from harness.datafiles import json_or_json_lines, pinned_snapshot
from harness.benchmarks.unlok_attacks import UnlokProtocol
from harness.errors import ConfigError, DatasetUnavailableError

BENCH = "unlok-vqa"
HF_DATASET = "vaidehi99/UnLOK-VQA"
REQUIRED: dict[str, type] = {"id": int, "src": str, "pred": str, "loc": list, "loc_ans": list, "image_id": int}
# The loader fields of the code's dataset class (dsets/zsre.py), optional here.
OPTIONAL: dict[str, type] = {"subject": str, "answers": list, "alt_ans": list, "rephrase": list,
                             "neigh_idx": list, "objects_edit": list}
LEVELS = ("easy", "medium", "hard")
LOC_PREFIX = "nq question: "
COCO_SPLITS = ("train2017", "val2017")
DATA_SUFFIXES = (".json", ".jsonl", ".parquet")
_HOW = (f"download the HF dataset {HF_DATASET} and set the benchmark option `path` to its data file "
        "(or the folder holding it), or set `hub` with a pinned 40-hex `revision`")


def _fail(msg: str) -> DatasetUnavailableError:
    return DatasetUnavailableError(f"{BENCH}: {msg}; {_HOW}")


@dataclass(frozen=True)
class UnlokRecord:
    """One instance: the fact to delete (`src` -> `pred`) about COCO image `image_id`, its
    neighbourhood questions, and whichever loader fields the release has (`extra`)."""

    id: int
    src: str
    pred: str
    loc: tuple[str, ...]
    loc_ans: tuple[str, ...]
    image_id: int
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def loc_questions(self) -> tuple[str, ...]:
        """The neighbourhood questions without the "nq question: " prefix."""
        return tuple(q[len(LOC_PREFIX):] if q.startswith(LOC_PREFIX) else q for q in self.loc)


@dataclass
class UnlokData:
    records: list[UnlokRecord]
    missing: tuple[str, ...]  # optional loader fields absent from at least one record
    source: dict[str, Any]
    coco_root: Path | None = None
    paraphrase_roots: dict[str, Path] = field(default_factory=dict)
    neighborhood_roots: dict[str, Path] = field(default_factory=dict)

    def require(self, name: str) -> None:
        """Stop, in one line, when an attack needs loader field `name` and the data lacks it."""
        if name not in OPTIONAL and name not in REQUIRED:
            raise ConfigError(f"{BENCH}: no field {name!r} (fields: {', '.join([*REQUIRED, *OPTIONAL])})")
        if name in self.missing:
            lacking = sum(1 for r in self.records if name not in r.extra)
            raise DatasetUnavailableError(
                f"{BENCH}: this attack needs the loader field {name!r}, which {lacking} of {len(self.records)} records "
                f"in {self.source.get('file')} lack (the release may have only id, src, pred, loc, loc_ans, image_id)")

    def coco_image(self, record: UnlokRecord) -> Path:
        """`<coco_root>/train2017/<12-digit id>.jpg`, else `val2017/` (the code's `get_image_path`)."""
        if self.coco_root is None:
            raise ConfigError(f"{BENCH}: set the option `coco_root` to the MS-COCO 2017 folder (with train2017/, val2017/)")
        return _coco_path(self.coco_root, record)

    def paraphrase_image(self, record: UnlokRecord, level: str) -> Path:
        """The `level` (easy/medium/hard) paraphrase image of the record: `<root>/<id>.jpg`."""
        return _level_file(self.paraphrase_roots, "paraphrase_image_roots", level, f"{record.id}.jpg")

    def neighborhood_image(self, record: UnlokRecord, level: str, j: int) -> Path:
        """The record's j-th `level` neighbourhood image: `<root>/<id>_<j>.jpg`."""
        return _level_file(self.neighborhood_roots, "neighborhood_image_roots", level, f"{record.id}_{j}.jpg")


def _coco_path(root: Path, record: UnlokRecord) -> Path:
    name = f"{record.image_id:012d}.jpg"
    for split in COCO_SPLITS:
        if (root / split / name).is_file():
            return root / split / name
    raise _fail(f"COCO image {name} of record {record.id} not in {root / COCO_SPLITS[0]} or {root / COCO_SPLITS[1]}")


def _level_file(roots: dict[str, Path], option: str, level: str, name: str) -> Path:
    if level not in LEVELS:
        raise ConfigError(f"{BENCH}: image level must be one of {', '.join(LEVELS)}, not {level!r}")
    if level not in roots:
        raise ConfigError(f"{BENCH}: set `{option}: {{{level}: <folder>}}` for the {level} images")
    path = roots[level] / name
    if not path.is_file():
        raise _fail(f"{level} image {name} not found in {roots[level]} (`{option}`)")
    return path


def _roots(value: Any, option: str) -> dict[str, Path]:
    if value is None:
        return {}
    if not isinstance(value, dict) or any(k not in LEVELS for k in value):
        raise ConfigError(f"{BENCH}: option `{option}` must map {'/'.join(LEVELS)} to folders, got {value!r}")
    out = {k: Path(str(v)).expanduser() for k, v in value.items()}
    for k, p in out.items():
        if not p.is_dir():
            raise ConfigError(f"{BENCH}: `{option}.{k}` is not a folder: {p}")
    return out


def find_data_file(path: Path) -> Path:
    """The data file: `path` itself, or the one .json/.jsonl/.parquet file in the folder or its `data/`."""
    if path.is_file():
        return path
    found = [p for d in (path, path / "data") if d.is_dir() for p in sorted(d.iterdir())
             if p.is_file() and p.suffix in DATA_SUFFIXES and not p.name.startswith(".")]
    if not found:
        raise _fail(f"no .json, .jsonl or .parquet data file in {path} or {path / 'data'}")
    if len(found) > 1:
        raise _fail(f"{len(found)} data files in {path} ({', '.join(p.name for p in found[:4])}); "
                    "set `path` to the one to use")
    return found[0]


def read_rows(file: Path) -> list[Any]:
    """Rows of a JSON list (or an object holding one list), JSON lines, or parquet file."""
    try:
        if file.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(file).to_pylist()
        text = file.read_text(encoding="utf-8")
    except Exception as e:  # unreadable file, bad parquet: the user's file to fix
        raise _fail(f"cannot read {file} ({type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''})") from None
    try:
        data = json_or_json_lines(text)
    except json.JSONDecodeError as e:
        raise _fail(f"cannot read {file} as JSON or JSON lines ({e})") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else data
    if not isinstance(data, list) or not data:
        raise _fail(f"{file} must hold a non-empty list of records")
    return data


def _int(value: Any, where: str) -> int:
    """An int, or a string of digits (exports sometimes write ids as text)."""
    if isinstance(value, bool):
        raise _fail(f"{where} must be an integer, got bool")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise _fail(f"{where} must be an integer, got {type(value).__name__} {str(value)[:40]!r}")


def _list(value: Any, item: type, where: str) -> tuple[Any, ...]:
    if hasattr(value, "tolist"):  # numpy arrays from parquet readers
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise _fail(f"{where} must be a list, got {type(value).__name__}")
    if item is int:
        return tuple(_int(v, f"{where}[{i}]") for i, v in enumerate(value))
    if not all(isinstance(v, item) for v in value):
        raise _fail(f"{where} must be a list of {item.__name__}")
    return tuple(value)


def parse_record(row: Any, n: int) -> UnlokRecord:
    """One row checked against the schema; the optional fields present go to `extra`."""
    where = f"record {n}"
    if not isinstance(row, dict):
        raise _fail(f"{where} must be an object, got {type(row).__name__}")
    missing = [k for k in REQUIRED if k not in row or row[k] is None]
    if missing:
        raise _fail(f"{where} has no field {missing[0]!r} (required: {', '.join(REQUIRED)})")
    rid = _int(row["id"], f"{where}.id")
    where = f"record id {rid}"
    for key in ("src", "pred"):
        if not isinstance(row[key], str) or not row[key].strip():
            raise _fail(f"{where}.{key} must be a non-empty string")
    loc, loc_ans = _list(row["loc"], str, f"{where}.loc"), _list(row["loc_ans"], str, f"{where}.loc_ans")
    if len(loc) != len(loc_ans):
        raise _fail(f"{where} has {len(loc)} loc questions but {len(loc_ans)} loc_ans")
    extra: dict[str, Any] = {}
    for key, typ in OPTIONAL.items():
        if row.get(key) is None:
            continue
        if typ is str:
            if not isinstance(row[key], str):
                raise _fail(f"{where}.{key} must be a string, got {type(row[key]).__name__}")
            extra[key] = row[key]
        else:
            extra[key] = _list(row[key], int if key == "neigh_idx" else str, f"{where}.{key}")
    return UnlokRecord(id=rid, src=row["src"], pred=row["pred"], loc=loc, loc_ans=loc_ans,
                       image_id=_int(row["image_id"], f"{where}.image_id"), extra=extra)


def load_unlok_vqa(path: str | Path | None, coco_root: str | Path | None = None,
                   paraphrase_image_roots: Any = None, neighborhood_image_roots: Any = None,
                   check_images: bool = True) -> UnlokData:
    """Read and schema-check UnLOK-VQA. With `coco_root` and `check_images`, every record's
    COCO image must exist (paraphrase and neighbourhood images are looked up when asked for)."""
    if path is None:
        raise _fail("no path given")
    root = Path(path).expanduser()
    if not root.exists():
        raise _fail(f"local path {root} does not exist")
    file = find_data_file(root)
    records = [parse_record(row, n) for n, row in enumerate(read_rows(file))]
    seen: set[int] = set()
    for r in records:
        if r.id in seen:
            raise _fail(f"record id {r.id} appears twice in {file.name}")
        seen.add(r.id)
    missing = tuple(k for k in OPTIONAL if any(k not in r.extra for r in records))
    coco = None
    if coco_root is not None:
        coco = Path(coco_root).expanduser()
        if not coco.is_dir():
            raise ConfigError(f"{BENCH}: `coco_root` is not a folder: {coco}")
        if check_images:
            for r in records:
                _coco_path(coco, r)
    source = {"file": str(file), "n_records": len(records), "missing_fields": list(missing), "hf_dataset": HF_DATASET}
    return UnlokData(records, missing, source, coco, _roots(paraphrase_image_roots, "paraphrase_image_roots"),
                     _roots(neighborhood_image_roots, "neighborhood_image_roots"))


class UnlokVQA(UnlokProtocol, Benchmark):
    """UnLOK-VQA (Patil et al., TMLR; arXiv 2505.01456): delete one OK-VQA fact about a COCO image at a time.

    Splits: `forget` (one item per instance: the question whose answer is deleted, its COCO
    image) and `neighborhood` (each instance's `loc` questions about the same image, id
    `<id>-loc<j>`). Run per instance (`UnlokProtocol`): each record is an `EditInstance` that
    the cell's defence edits into the fresh model, the attacks of docs/metrics.md §11-12 probe,
    and the protocol undoes (harness/edit_protocol.py); its values are the benchmark's metrics.
    """

    name = "unlok-vqa"
    per_instance: ClassVar[bool] = True  # edit -> attack -> restore, one instance at a time (harness/api/edit.py)
    status: ClassVar[str] = "available"  # public on HF; license not stated, so never shipped
    model_kind = "image-text-to-text"
    max_new_tokens = 36  # the code's black-box attack budget (docs/metrics.md §12)
    default_metrics = ()
    option_help = {
        **UnlokProtocol.protocol_options,
        "path": "local copy of the release: its data file, or the folder holding it (no download)",
        "hub": "a hub dataset id to fetch instead of `path` (needs `revision`)",
        "revision": "the 40-hex hub commit `hub` is pinned to",
        "coco_root": "MS-COCO 2017 folder with train2017/ and val2017/ (required: every item shows its image)",
        "paraphrase_image_roots": "{easy, medium, hard} -> folder of <id>.jpg paraphrase images",
        "neighborhood_image_roots": "{easy, medium, hard} -> folder of <id>_<j>.jpg neighbourhood images",
        "forget_split": None, "retain_split": None, "holdout_split": None,
    }

    def unlok_data(self) -> UnlokData:
        if getattr(self, "_unlok", None) is None:
            path = self.options.get("path")
            self._source = None
            if path is None and self.options.get("hub"):
                path, self._source = pinned_snapshot(str(self.options["hub"]), self.options.get("revision"), BENCH, _HOW)
            if self.options.get("coco_root") is None:
                raise ConfigError(f"{BENCH}: set the option `coco_root` to the MS-COCO 2017 folder "
                                  "(with train2017/ and val2017/): every item shows its COCO image")
            self._unlok = load_unlok_vqa(path, self.options["coco_root"], self.options.get("paraphrase_image_roots"),
                                         self.options.get("neighborhood_image_roots"))
        return self._unlok

    def edit_instances(self) -> list[EditInstance]:
        """The records (the first `limit`) as EditInstance: question `src`, answer `pred`, the COCO
        image, `rephrase`, the `loc` questions with `loc_ans`, the paraphrase images of every
        level whose root is configured and holds the record's file, `subject` and `alt_ans[0]`."""
        limit = check_limit(self.options.get("limit"))
        data = self.unlok_data()
        records = data.records if limit is None else data.records[:limit]
        out = []
        for r in records:
            paras = tuple((lv, MediaRef.from_path(data.paraphrase_roots[lv] / f"{r.id}.jpg")) for lv in LEVELS
                          if lv in data.paraphrase_roots and (data.paraphrase_roots[lv] / f"{r.id}.jpg").is_file())
            alt = r.extra.get("alt_ans", ())
            out.append(EditInstance(
                id=str(r.id), question=r.src, answer=r.pred, images=(MediaRef.from_path(data.coco_image(r)),),
                rephrasings=tuple(r.extra.get("rephrase", ())), neighborhood=tuple(zip(r.loc_questions, r.loc_ans)),
                image_paraphrases=paras, subject=r.extra.get("subject", ""), wrong_answer=alt[0] if alt else ""))
        return out

    def load(self) -> BenchmarkData:
        limit = check_limit(self.options.get("limit"))
        data = self.unlok_data()
        records = data.records if limit is None else data.records[:limit]
        forget, neighborhood = [], []
        for r in records:
            image = (MediaRef.from_path(data.coco_image(r)),)
            forget.append(ImageQAItem(id=str(r.id), question=r.src, answer=r.pred, entity=r.extra.get("subject", ""),
                                      question_paraphrases=tuple(r.extra.get("rephrase", ())), images=image))
            neighborhood += [ImageQAItem(id=f"{r.id}-loc{j}", question=q, answer=a, entity=str(r.id), images=image)
                             for j, (q, a) in enumerate(zip(r.loc_questions, r.loc_ans))]
        meta = {**data.source, "limit": limit}
        return BenchmarkData(splits={"forget": forget, "neighborhood": neighborhood},
                             source=self._source or data.source["file"], meta=meta)
