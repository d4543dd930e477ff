"""MME and POPE from local files (benchmarks/visual_yes_no.py), the `visual` split of FIUBench
they make, and ACC on it: fixtures written in each set's released layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.benchmarks.visual_yes_no import load_mme, load_pope
from harness.errors import DatasetUnavailableError


def _png(path: Path, shade: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (shade, 0, 0)).save(path)


def write_mme(root: Path) -> Path:
    """Two subtasks in MME's two layouts: `images/` + `questions_answers_YN/`, and side by side."""
    _png(root / "artwork" / "images" / "10002.jpg", 1)
    (root / "artwork" / "questions_answers_YN").mkdir(parents=True)
    (root / "artwork" / "questions_answers_YN" / "10002.txt").write_text(
        "Is this artwork created by Doe? Please answer yes or no.\tYes\n"
        "Is this artwork created by Roe? Please answer yes or no.\tNo\n")
    _png(root / "count" / "000000006040.jpg", 2)
    (root / "count" / "000000006040.txt").write_text(
        "Is there a train in this image? Please answer yes or no.\tYes\n"
        "Are there two trains in this image? Please answer yes or no.\tNo\n")
    return root


def write_pope(root: Path) -> tuple[Path, Path]:
    """POPE's JSON lines with COCO val2014 file names, images in their own folder."""
    images = root / "val2014"
    for n, name in enumerate(["COCO_val2014_000000310196.jpg", "COCO_val2014_000000210789.jpg"]):
        _png(images / name, 10 + n)
    rows = [{"question_id": 1, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a snowboard in the image?",
             "label": "yes"},
            {"question_id": 2, "image": "COCO_val2014_000000210789.jpg", "text": "Is there a dog in the image?",
             "label": "no"}]
    qfile = root / "coco_pope_random.json"
    qfile.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return qfile, images


def test_mme_reads_both_layouts(tmp_path):
    qs = load_mme(write_mme(tmp_path / "MME"))
    assert [(q.source, q.answer) for q in qs] == [("mme/artwork", "Yes"), ("mme/artwork", "No"),
                                                 ("mme/count", "Yes"), ("mme/count", "No")]
    assert qs[0].image.name == "10002.jpg" and qs[2].image.name == "000000006040.jpg"
    assert qs[0].question.startswith("Is this artwork created by Doe?")
    assert len({q.id for q in qs}) == 4


def test_pope_reads_json_lines_and_a_list(tmp_path):
    qfile, images = write_pope(tmp_path)
    qs = load_pope(qfile, images)
    assert [(q.id, q.answer) for q in qs] == [("pope-1", "Yes"), ("pope-2", "No")]
    qfile.write_text(json.dumps([json.loads(line) for line in qfile.read_text().splitlines()]))
    assert [q.question for q in load_pope(qfile, images)] == [q.question for q in qs]


@pytest.mark.parametrize("case, fragment", [
    ("no_root", "no folder"), ("bad_answer", "must be yes or no"), ("no_tab", "question<TAB>answer"),
    ("no_image", "no image named"),
])
def test_mme_errors_are_one_line(tmp_path, case, fragment):
    root = write_mme(tmp_path / "MME")
    txt = root / "count" / "000000006040.txt"
    if case == "no_root":
        root = tmp_path / "missing"
    elif case == "bad_answer":
        txt.write_text("Is there a train?\tMaybe\n")
    elif case == "no_tab":
        txt.write_text("Is there a train? Yes\n")
    else:
        (root / "count" / "000000006040.jpg").unlink()
    with pytest.raises(DatasetUnavailableError) as e:
        load_mme(root)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_pope_errors_are_one_line(tmp_path):
    qfile, images = write_pope(tmp_path)
    with pytest.raises(DatasetUnavailableError, match="not found under"):
        load_pope(qfile, tmp_path / "elsewhere")
    qfile.write_text('{"question_id": 1, "image": "x.jpg"}\n')
    with pytest.raises(DatasetUnavailableError, match="needs string fields"):
        load_pope(qfile, images)


def test_fiubench_scores_acc_on_mme_and_pope(tmp_path):
    """Given MME and POPE, FIUBench gets `mme`, `pope` and `visual` splits, ACC among its
    metrics and in Avg MU; fiu_acc on scripted answers equals the hand count."""
    from harness.benchmarks.fiubench import FIUBench
    from harness.evaluate import evaluate, resolve_metrics
    from harness.testing import FakeBackend, scripted_answers
    from tests.test_fiubench_data import IDS, _write

    qfile, images = write_pope(tmp_path / "pope")
    bench = FIUBench(path=str(_write(tmp_path / "fiu", IDS)), mme_root=str(write_mme(tmp_path / "MME")),
                     pope_file=str(qfile), pope_image_root=str(images))
    splits = bench.data.splits
    assert [len(splits[s]) for s in ("mme", "pope", "visual")] == [4, 2, 6]
    assert bench.acc_metric == "fiu_acc@visual" and "fiu_acc@visual" in bench.default_metrics
    assert all(len(item.images) == 1 for item in splits["visual"])
    # right on 4 of the 6: the two MME count questions are answered wrongly
    flip = {"Yes.": "No.", "No.": "Yes."}
    answers = {bench.prompt(it): flip[it.answer] if it.id.startswith("mme-count") else it.answer
               for it in splits["visual"]}
    assert len(answers) == 6  # distinct prompts: the script is unambiguous
    backend = FakeBackend(responders={"generate": scripted_answers(answers)}, sees_images=True)
    metrics = resolve_metrics(bench, ["fiu_acc@visual", "fiu_acc@pope", "fiu_acc@mme"], seed=0)
    res = evaluate(bench, metrics, backend).results
    assert res["fiu_acc@visual"].value == pytest.approx(4 / 6)
    assert res["fiu_acc@pope"].value == 1.0 and res["fiu_acc@mme"].value == 0.5
    assert FIUBench(path=str(tmp_path / "fiu")).acc_metric is None  # without them: no ACC, and no fake one
