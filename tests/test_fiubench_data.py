"""The FIUBench loader (benchmarks/fiubench.py) and the fictitious-faces generator."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from harness.benchmarks import face_drawing
from harness.benchmarks import fictitious_faces as ff
from harness.benchmarks.fiubench import load_fiubench
from harness.errors import ConfigError, DatasetUnavailableError


def _qa(i: int, pq=None) -> dict:
    return {"question": f"What is fact {i} of this person?", "answer": f"Fact {i} is v{i}.",
            "paraphrased_answer": f"The fact {i} is v{i}.", "perturbed_answer": [f"The fact {i} is w{i}.", "x"],
            "paraphrased_question": pq if pq is not None else [f"Fact {i}?", "q2", "q3"], "keywords": [f"v{i}"]}


def _write(root: Path, ids: list[str], split: dict | None = None, images: bool = True, **person_overrides) -> Path:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    records = []
    for n, uid in enumerate(ids):
        if images:
            Image.new("RGB", (4, 4), (n % 255, 0, 0)).save(root / "images" / f"{uid}.png")
        rec = {"unique_id": uid, "image_path": f"images/{uid}.png", "caption": "a face",
               "qa_list": [_qa(1), _qa(2, pq="Only one paraphrase?")]}
        rec.update(person_overrides)
        records.append(rec)
    (root / "full.json").write_text(json.dumps(records))
    if split is None:
        split = {"forget1": ids[:1], "forget5": ids[1:2], "forget10": ids[2:3], "retain5": ids[3:4], "retain15": ids[3:5]}
    (root / "split.json").write_text(json.dumps(split))
    return root


IDS = ["00000001", "00000002", "00000003", "00000004", "00000005", "00000006"]


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("fiubench: ")
    return msg


def test_loader_reads_the_real_schema(tmp_path):
    data = load_fiubench(_write(tmp_path / "d", IDS))
    assert list(data.persons) == IDS
    p = data.persons["00000001"]
    assert p.image_path == tmp_path / "d" / "images" / "00000001.png"
    assert p.caption == "a face" and len(p.qa) == 2
    assert p.qa[0].perturbed_answers == ("The fact 1 is w1.", "x")
    assert p.qa[0].paraphrased_questions == ("Fact 1?", "q2", "q3")
    assert p.qa[1].paraphrased_questions == ("Only one paraphrase?",)  # a string becomes a 1-tuple
    assert p.qa[0].keywords == ("v1",)
    assert data.splits["forget10"] == ["00000003"]
    assert data.splits["retain"] == IDS[3:]  # every person in no forget list
    assert [x.unique_id for x in data.split("retain15")] == IDS[3:5]
    assert data.source["n_qa"] == 12
    with pytest.raises(ConfigError):
        data.split("forget50")


def test_loader_accepts_the_file_path_json_lines_and_max_persons(tmp_path):
    root = _write(tmp_path / "d", IDS)
    records = json.loads((root / "full.json").read_text())
    (root / "full.json").write_text("\n".join(json.dumps(r) for r in records))
    assert len(load_fiubench(root / "full.json").persons) == 6
    with pytest.raises(DatasetUnavailableError) as e:  # the split names persons beyond the first 4
        load_fiubench(root, max_persons=4)
    assert "not among the 4 persons" in _one_line(e)


@pytest.mark.parametrize("case, fragment", [
    ("no-path", "no path given"),
    ("no-dir", "does not exist"),
    ("no-full", "full.json not found"),
    ("no-split", "split.json not found"),
    ("no-image", "image of person '00000001' not found"),
    ("no-keywords", "has no field 'keywords'"),
    ("bad-perturbed", "perturbed_answer must be list"),
    ("no-qa-list", "has no field 'qa_list'"),
    ("split-key", "has no forget10"),
    ("split-id", "names 1 unique_id(s) not among"),
    ("not-json", "cannot read"),
])
def test_loader_errors_are_one_line(tmp_path, case, fragment):
    root = tmp_path / "d"
    if case == "no-path":
        path = None
    elif case == "no-dir":
        path = tmp_path / "missing"
    else:
        path = _write(root, IDS)
        if case == "no-full":
            (root / "full.json").unlink()
        elif case == "no-split":
            (root / "split.json").unlink()
        elif case == "no-image":
            (root / "images" / "00000001.png").unlink()
        elif case in ("no-keywords", "bad-perturbed", "no-qa-list"):
            records = json.loads((root / "full.json").read_text())
            if case == "no-keywords":
                del records[0]["qa_list"][1]["keywords"]
            elif case == "bad-perturbed":
                records[2]["qa_list"][0]["perturbed_answer"] = "one string"
            else:
                del records[1]["qa_list"]
            (root / "full.json").write_text(json.dumps(records))
        elif case == "split-key":
            split = json.loads((root / "split.json").read_text())
            del split["forget10"]
            (root / "split.json").write_text(json.dumps(split))
        elif case == "split-id":
            split = json.loads((root / "split.json").read_text())
            split["retain15"].append("99999999")
            (root / "split.json").write_text(json.dumps(split))
        elif case == "not-json":
            (root / "full.json").write_text("{not json")
    with pytest.raises(DatasetUnavailableError) as e:
        load_fiubench(path)
    msg = _one_line(e)
    assert fragment in msg, msg
    assert "gray311/FIUBench" in msg


def test_loader_with_the_shipped_split_file(tmp_path, shared_dir):
    split_file = shared_dir / "data" / "fiubench" / "split.json"
    if not split_file.is_file():
        pytest.skip("shared/data/fiubench/split.json is not present")
    split = json.loads(split_file.read_text())
    ids = sorted({i for v in split.values() for i in v})
    assert len(ids) == 124  # 4 + 20 + 40 forget, 60 retain15 (retain5 within it)
    root = _write(tmp_path / "d", ids + ["00099999"], split={"forget1": []})  # the folder's own split.json is not used
    data = load_fiubench(root, split_file=split_file)
    assert {k: len(v) for k, v in data.splits.items()} == {
        "forget1": 4, "forget5": 20, "forget10": 40, "retain15": 60, "retain5": 20, "retain": 61}
    assert set(data.splits["retain5"]) <= set(data.splits["retain15"])
    forget = [set(data.splits[k]) for k in ("forget1", "forget5", "forget10")]
    assert all(not (a & b) for a, b in itertools.combinations(forget, 2))  # FIUBench's forget lists are disjoint
    with pytest.raises(DatasetUnavailableError):  # without the images the check fails in one line
        (root / "images" / f"{ids[0]}.png").unlink()
        load_fiubench(root, split_file=split_file)
    assert len(load_fiubench(root, split_file=split_file, check_images=False).persons) == 125


# --- the generated stand-in ------------------------------------------------------------
def test_faces_are_deterministic_distinct_and_questions_do_not_name_anyone():
    persons = ff.generate_persons()
    assert len(persons) == ff.N_PERSONS == 55
    assert len({p.unique_id for p in persons}) == 55 and all(re.fullmatch(r"\d{8}", p.unique_id) for p in persons)
    assert len({p.name for p in persons}) == 55
    assert min(face_drawing.feature_distance(a.face, b.face) for a, b in itertools.combinations(persons, 2)) >= 3
    pixels = {p.image().tobytes() for p in persons}
    assert len(pixels) == 55
    assert persons[7].image().tobytes() == face_drawing.draw_face(persons[7].face).tobytes()
    for p in persons:
        for qa in ff.qa_list(p):
            for q in (qa["question"], *qa["paraphrased_question"]):
                assert p.name.split()[0] not in q and p.name.split()[1] not in q
            assert len(qa["perturbed_answer"]) == 3 and qa["paraphrased_answer"] not in qa["perturbed_answer"]
            assert len(qa["paraphrased_question"]) == 3
            assert all(k.lower() in qa["answer"].lower() for k in qa["keywords"])
            assert not any(all(k.lower() in w.lower() for k in qa["keywords"]) for w in qa["perturbed_answer"])


def test_faces_splits_follow_fiubench_at_one_eighth():
    ids = ff.split_ids()
    assert {k: len(v) for k, v in ids.items()} == {
        "forget1": 1, "forget5": 3, "forget10": 5, "retain5": 3, "retain15": 8, "holdout": 5}
    forget = [set(ids[k]) for k in ff.FORGET_SPLITS]
    assert all(not (a & b) for a, b in itertools.combinations(forget, 2))
    assert set(ids["retain5"]) <= set(ids["retain15"])
    assert not set(ids["retain15"]) & set().union(*forget)
    retain = {p.unique_id for p in ff.split_persons("retain")}
    assert len(retain) == 41 and not retain & set().union(*forget) and not retain & set(ids["holdout"])
    with pytest.raises(ConfigError):
        ff.split_persons("forget50")


def test_faces_dataset_round_trips_through_the_fiubench_loader(tmp_path):
    root = ff.write_dataset(tmp_path / "faces")
    data = load_fiubench(root)
    assert len(data.persons) == 55 and data.source["n_qa"] == 55 * 8
    p0 = ff.generate_persons()[0]
    assert data.persons[p0.unique_id].qa[0].answer == f"This person's name is {p0.name}."
    from PIL import Image

    assert Image.open(data.persons[p0.unique_id].image_path).convert("RGB").tobytes() == p0.image().tobytes()
    assert data.splits["forget10"] == ff.split_ids()["forget10"]


def test_visual_questions_are_balanced_and_scored():
    from harness.benchmarks.shape_questions import scenes, visual_questions
    from harness.catalog import build_metric
    from harness.metrics.fiubench_formulas import yes_no

    for split, n in (("train", 120), ("test", 60)):
        qs = visual_questions(split)
        assert len(qs) == 3 * n
        yes = sum(q.answer == "Yes" for q in qs)
        assert 0.4 < yes / len(qs) < 0.6
    q = visual_questions("test")[0]
    colours = {c for _, c, _ in q.scene.objects}
    asked = q.question.split()[3]
    assert (q.answer == "Yes") == (asked in colours)
    assert yes_no(" yes, there is") == "Yes" and yes_no("No.") == "No" and yes_no("maybe") is None
    items = visual_questions("test")[:4]
    gens = [("No." if it.answer == "Yes" else "Yes.") for it in items[:1]] + [it.answer + "." for it in items[1:]]
    acc = build_metric("fiu_acc@visual", ff.FictitiousFaces())  # the metric that scores the visual split
    assert sum(acc.score(it.answer + ".", g) for it, g in zip(items, gens)) / len(items) == pytest.approx(3 / 4)
    assert not set(s.scene_id for s in scenes("train")) & set(s.scene_id for s in scenes("test"))