"""General yes/no visual questions for a VLM's utility: MME and POPE from local files.

FIUBench's "ACC" is accuracy on MME and POPE (benchmarks.md §3, `eval/eval_mme.py`,
`eval/eval_pope.py`): every question is answered Yes or No about a picture. Neither set is
downloaded here (MME is released on request; POPE's questions come with COCO val2014 images):
point the FIUBench options at local copies and their questions become the `visual` split that
`fiu_acc` scores (and `mme`, `pope` for each alone).

Layouts read, as released:
- MME: a root folder of subtask folders. A subtask holds either `images/` and
  `questions_answers_YN/` (the question files named as their images), or the images and their
  `.txt` files side by side. Each `.txt` line is `question<TAB>answer`, answer Yes or No.
- POPE: a JSON-lines file (or a JSON list) of `{"question_id", "image", "text", "label"}`, the
  label yes or no, with the images under `pope_image_root` (COCO val2014 for the COCO splits).

Every problem is one line (DatasetUnavailableError) naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.datafiles import read_json_rows
from harness.errors import DatasetUnavailableError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class YesNoQuestion:
    """One general visual question: `answer` is "Yes" or "No"; `source` is mme/<subtask> or pope."""

    id: str
    image: Path
    question: str
    answer: str
    source: str


def _fail(msg: str) -> DatasetUnavailableError:
    return DatasetUnavailableError(msg)


def yes_or_no(value: object, where: str) -> str:
    word = str(value).strip().strip(".").lower()
    if word not in ("yes", "no"):
        raise _fail(f"{where}: the answer must be yes or no, got {str(value)[:40]!r}")
    return word.capitalize()


def _image_for(stem: str, folders: list[Path]) -> Path | None:
    for folder in folders:
        for suffix in IMAGE_SUFFIXES:
            for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
                if candidate.is_file():
                    return candidate
    return None


def load_mme(root: str | Path) -> list[YesNoQuestion]:
    """Every question of a local MME release, subtasks in name order, files in name order."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise _fail(f"MME: no folder at {base} (MME is released on request by its authors; point `mme_root` at it)")
    out: list[YesNoQuestion] = []
    for task in sorted(p for p in base.iterdir() if p.is_dir()):
        qa_dir = task / "questions_answers_YN"
        text_dir = qa_dir if qa_dir.is_dir() else task
        image_dirs = [task / "images", task] if qa_dir.is_dir() else [task]
        for txt in sorted(text_dir.glob("*.txt")):
            image = _image_for(txt.stem, image_dirs)
            if image is None:
                raise _fail(f"MME {task.name}/{txt.name}: no image named {txt.stem}.* beside it or in images/")
            try:
                lines = txt.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as e:
                raise _fail(f"MME {task.name}/{txt.name}: cannot be read ({type(e).__name__})") from e
            for n, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                question, sep, answer = line.rpartition("\t")
                if not sep or not question.strip():
                    raise _fail(f"MME {task.name}/{txt.name} line {n}: expected `question<TAB>answer`")
                out.append(YesNoQuestion(f"mme-{task.name}-{txt.stem}-{n}", image, question.strip(),
                                         yes_or_no(answer, f"MME {task.name}/{txt.name} line {n}"), f"mme/{task.name}"))
    if not out:
        raise _fail(f"MME: no question files found under {base} (expected subtask folders of .txt files)")
    return out


def load_pope(questions: str | Path, image_root: str | Path | None = None) -> list[YesNoQuestion]:
    """Every question of a POPE file; images under `image_root` (default: the file's folder)."""
    path = Path(questions).expanduser()
    if not path.is_file():
        raise _fail(f"POPE: no question file at {path} (e.g. coco_pope_random.json; point `pope_file` at it)")
    root = Path(image_root).expanduser() if image_root is not None else path.parent
    out: list[YesNoQuestion] = []
    rows = read_json_rows(path, "POPE", "point `pope_file` at a POPE question file (JSON lines or a JSON array)")
    for n, row in enumerate(rows, 1):
        where = f"POPE {path.name} row {n}"
        if not isinstance(row, dict):
            raise _fail(f"{where}: expected an object")
        question, label, image = row.get("text", row.get("question")), row.get("label", row.get("answer")), row.get("image")
        if not isinstance(question, str) or not isinstance(image, str) or label is None:
            raise _fail(f"{where}: needs string fields `text` and `image`, and `label`")
        image_path = root / image
        if not image_path.is_file():
            raise _fail(f"{where}: image {image!r} not found under {root} (set `pope_image_root`, e.g. COCO val2014)")
        out.append(YesNoQuestion(f"pope-{row.get('question_id', n)}", image_path, question.strip(),
                                 yes_or_no(label, where), "pope"))
    return out
