"""The unlok-vqa loader on a fixture in the release's record schema with COCO-style image paths:
schema checks, optional loader fields and `require`, image roots, hub pinning, one-line errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from harness.api.media import MediaRef
from harness.benchmarks import unlok_vqa as uv
from harness.catalog import BENCHMARKS
from harness.errors import ConfigError, DatasetUnavailableError, HarnessError

ROWS = [
    {"id": 0, "src": "What sport can you use this for?", "pred": "kite",
     "loc": ["nq question: What colour is the sky?", "nq question: Is it windy?"], "loc_ans": ["blue", "yes"],
     "image_id": 139, "subject": "this", "answers": ["kite", "kiting"], "rephrase": ["What is this used for?"]},
    {"id": 7, "src": "Which animal is this?", "pred": "giraffe", "loc": ["nq question: How many legs?"],
     "loc_ans": ["4"], "image_id": 285, "subject": "animal", "answers": ["giraffe"], "rephrase": ["Name the animal."]},
    {"id": 9, "src": "What is the man holding?", "pred": "umbrella", "loc": [], "loc_ans": [],
     "image_id": 632, "subject": "man", "answers": ["umbrella"]},  # no `rephrase`
]


def _picture(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


@pytest.fixture
def release(tmp_path):
    """A release folder (one JSON file), a COCO root with train2017/val2017, and image roots."""
    data = tmp_path / "UnLOK-VQA"
    data.mkdir()
    (data / "unlok_vqa.json").write_text(json.dumps(ROWS))
    coco = tmp_path / "coco"
    _picture(coco / "train2017" / "000000000139.jpg", "red")
    _picture(coco / "val2017" / "000000000139.jpg", "green")  # train2017 is looked at first
    _picture(coco / "val2017" / "000000000285.jpg", "blue")
    _picture(coco / "train2017" / "000000000632.jpg", "white")
    para = tmp_path / "parap_easy"
    _picture(para / "7.jpg", "yellow")
    neigh = tmp_path / "neigh_hard"
    _picture(neigh / "0_1.jpg", "black")
    return {"path": data, "coco": coco, "para": para, "neigh": neigh}


def test_records_follow_the_schema_and_missing_loader_fields_are_recorded(release):
    data = uv.load_unlok_vqa(release["path"], release["coco"])
    assert [r.id for r in data.records] == [0, 7, 9]
    first = data.records[0]
    assert (first.src, first.pred, first.image_id) == ("What sport can you use this for?", "kite", 139)
    assert first.loc_questions == ("What colour is the sky?", "Is it windy?") and first.loc_ans == ("blue", "yes")
    assert first.extra["answers"] == ("kite", "kiting") and first.extra["subject"] == "this"
    assert data.missing == ("alt_ans", "rephrase", "neigh_idx", "objects_edit")
    assert data.source["missing_fields"] == list(data.missing) and data.source["n_records"] == 3
    data.require("subject")  # present everywhere: no error
    with pytest.raises(DatasetUnavailableError) as e:
        data.require("rephrase")
    assert "\n" not in str(e.value) and "'rephrase'" in str(e.value) and "1 of 3 records" in str(e.value)
    with pytest.raises(DatasetUnavailableError, match="'neigh_idx', which 3 of 3"):
        data.require("neigh_idx")
    with pytest.raises(ConfigError, match="no field 'rephrasing'"):
        data.require("rephrasing")


def test_coco_images_are_12_digit_ids_in_train2017_then_val2017(release):
    data = uv.load_unlok_vqa(release["path"], release["coco"])
    by_id = {r.id: r for r in data.records}
    assert data.coco_image(by_id[0]) == release["coco"] / "train2017" / "000000000139.jpg"
    assert data.coco_image(by_id[7]) == release["coco"] / "val2017" / "000000000285.jpg"
    (release["coco"] / "train2017" / "000000000632.jpg").unlink()
    with pytest.raises(DatasetUnavailableError, match="COCO image 000000000632.jpg of record 9 not in"):
        uv.load_unlok_vqa(release["path"], release["coco"])
    assert uv.load_unlok_vqa(release["path"], release["coco"], check_images=False).records[2].id == 9


def test_paraphrase_and_neighbourhood_image_roots(release):
    data = uv.load_unlok_vqa(release["path"], release["coco"], paraphrase_image_roots={"easy": str(release["para"])},
                             neighborhood_image_roots={"hard": str(release["neigh"])})
    r0, r7 = data.records[0], data.records[1]
    assert data.paraphrase_image(r7, "easy") == release["para"] / "7.jpg"
    assert data.neighborhood_image(r0, "hard", 1) == release["neigh"] / "0_1.jpg"
    with pytest.raises(DatasetUnavailableError, match="easy image 0.jpg not found"):
        data.paraphrase_image(r0, "easy")
    with pytest.raises(ConfigError, match="neighborhood_image_roots: {easy: <folder>}"):
        data.neighborhood_image(r0, "easy", 0)
    with pytest.raises(ConfigError, match="one of easy, medium, hard"):
        data.paraphrase_image(r0, "extreme")
    with pytest.raises(ConfigError, match="must map easy/medium/hard"):
        uv.load_unlok_vqa(release["path"], release["coco"], paraphrase_image_roots={"tough": str(release["para"])})


def test_json_lines_and_parquet_read_alike(release, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    want = uv.load_unlok_vqa(release["path"], release["coco"]).records
    jl = tmp_path / "rows.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    assert uv.load_unlok_vqa(jl, release["coco"]).records == want
    pdir = tmp_path / "hub-snapshot" / "data"
    pdir.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(ROWS), pdir / "train-00000-of-00001.parquet")
    got = uv.load_unlok_vqa(pdir.parent, release["coco"])  # found under data/
    assert got.records == want and got.missing == ("alt_ans", "rephrase", "neigh_idx", "objects_edit")
    assert [r.extra for r in got.records] == [r.extra for r in want]


def test_the_benchmark_builds_forget_and_neighbourhood_items_with_their_images(release):
    cls = BENCHMARKS.get("unlok-vqa")
    assert cls is uv.UnlokVQA and cls.default_metrics == ()
    bench = cls(path=str(release["path"]), coco_root=str(release["coco"]))
    forget, neigh = bench.split("forget"), bench.split("neighborhood")
    assert [i.id for i in forget] == ["0", "7", "9"] and [i.answer for i in forget] == ["kite", "giraffe", "umbrella"]
    assert forget[0].images == (MediaRef.from_path(release["coco"] / "train2017" / "000000000139.jpg"),)
    assert forget[0].question_paraphrases == ("What is this used for?",) and forget[2].question_paraphrases == ()
    assert [(i.id, i.question, i.answer) for i in neigh] == [
        ("0-loc0", "What colour is the sky?", "blue"), ("0-loc1", "Is it windy?", "yes"), ("7-loc0", "How many legs?", "4")]
    assert neigh[2].images == forget[1].images
    assert bench.prompt(forget[1]) == "Answer the question in one word\n Question: Which animal is this? Answer:"
    assert bench.resolve_split("forget") == "forget" and bench.resolve_split("retain") == "neighborhood"
    assert bench.data.meta["missing_fields"] == ["alt_ans", "rephrase", "neigh_idx", "objects_edit"]
    assert len(cls(path=str(release["path"]), coco_root=str(release["coco"]), limit=1).split("forget")) == 1
    with pytest.raises(ConfigError, match="no holdout split"):
        bench.resolve_split("holdout")


def test_edit_instances_map_records_to_the_per_instance_contract(release, tmp_path):
    from harness.api.edit import EditInstance

    rows = [dict(ROWS[0], alt_ans=["surfing", "sailing"]), ROWS[1], ROWS[2]]
    (release["path"] / "unlok_vqa.json").write_text(json.dumps(rows))
    medium = tmp_path / "parap_medium"
    _picture(medium / "0.jpg", "purple")
    _picture(medium / "7.jpg", "orange")
    cls = BENCHMARKS.get("unlok-vqa")
    assert cls.per_instance is True
    bench = cls(path=str(release["path"]), coco_root=str(release["coco"]),
                paraphrase_image_roots={"easy": str(release["para"]), "medium": str(medium)})
    insts = bench.edit_instances()
    assert all(isinstance(i, EditInstance) for i in insts) and [i.id for i in insts] == ["0", "7", "9"]
    first, second, third = insts
    assert (first.question, first.answer, first.subject, first.wrong_answer) == (
        "What sport can you use this for?", "kite", "this", "surfing")
    assert first.images == (MediaRef.from_path(release["coco"] / "train2017" / "000000000139.jpg"),)
    assert first.rephrasings == ("What is this used for?",)
    assert first.neighborhood == (("What colour is the sky?", "blue"), ("Is it windy?", "yes"))
    # only configured levels whose file exists: record 0 has no easy image, record 7 has both
    assert first.image_paraphrases == (("medium", MediaRef.from_path(medium / "0.jpg")),)
    assert second.image_paraphrases == (("easy", MediaRef.from_path(release["para"] / "7.jpg")),
                                        ("medium", MediaRef.from_path(medium / "7.jpg")))
    assert second.wrong_answer == "" and third.rephrasings == () and third.neighborhood == ()
    assert third.image_paraphrases == () and third.subject == "man"
    assert len(cls(path=str(release["path"]), coco_root=str(release["coco"]), limit=2).edit_instances()) == 2
    with pytest.raises(ConfigError) as e:
        cls(path=str(release["path"])).edit_instances()
    assert "\n" not in str(e.value) and "coco_root" in str(e.value)
    with pytest.raises(DatasetUnavailableError) as e:
        cls(path=str(tmp_path / "nowhere"), coco_root=str(release["coco"])).edit_instances()
    assert "\n" not in str(e.value)


def _row(**change):
    row = dict(ROWS[1])
    row.update(change)
    return {k: v for k, v in row.items() if v is not ...}


@pytest.mark.parametrize("rows, msg", [
    ([_row(src=...)], "record 0 has no field 'src'"),
    ([_row(loc_ans=["4", "5"])], "record id 7 has 1 loc questions but 2 loc_ans"),
    ([_row(image_id="not a number")], r"record id 7.image_id must be an integer"),
    ([_row(loc="How many legs?")], r"record id 7.loc must be a list"),
    ([_row(rephrase=[1, 2])], r"record id 7.rephrase must be a list of str"),
    ([_row(), _row()], "record id 7 appears twice"),
    ([], "non-empty list"),
])
def test_schema_errors_are_one_line(tmp_path, rows, msg):
    f = tmp_path / "d.json"
    f.write_text(json.dumps(rows))
    with pytest.raises(DatasetUnavailableError, match=msg) as e:
        uv.load_unlok_vqa(f)
    assert "\n" not in str(e.value) and uv.HF_DATASET in str(e.value)


def test_ids_written_as_text_are_read_as_numbers(tmp_path):
    f = tmp_path / "d.json"
    f.write_text(json.dumps([_row(id="7", image_id="285")]))
    (r,) = uv.load_unlok_vqa(f).records
    assert (r.id, r.image_id) == (7, 285)


def test_paths_options_and_hub_pinning_fail_in_one_line(release, tmp_path, monkeypatch):
    for call, err, msg in (
        (lambda: uv.load_unlok_vqa(None), DatasetUnavailableError, "no path given"),
        (lambda: uv.load_unlok_vqa(tmp_path / "nowhere"), DatasetUnavailableError, "does not exist"),
        (lambda: uv.load_unlok_vqa(release["path"], tmp_path / "no-coco"), ConfigError, "`coco_root` is not a folder"),
        (lambda: uv.UnlokVQA(path=str(release["path"])).split("forget"), ConfigError, "set the option `coco_root`"),
        (lambda: uv.UnlokVQA(hub=uv.HF_DATASET, coco_root=str(release["coco"])).split("forget"), ConfigError,
         "pinned to a 40-hex commit, got None"),
        (lambda: uv.UnlokVQA(hub=uv.HF_DATASET, revision="main", coco_root=str(release["coco"])).split("forget"),
         ConfigError, "got 'main'"),
    ):
        with pytest.raises(err, match=msg) as e:
            call()
        assert "\n" not in str(e.value)
    (release["path"] / "extra.jsonl").write_text("{}\n")
    with pytest.raises(DatasetUnavailableError, match="2 data files in"):
        uv.load_unlok_vqa(release["path"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HarnessError, match=r"cannot fetch vaidehi99/UnLOK-VQA@0{40}") as e:
        uv.UnlokVQA(hub=uv.HF_DATASET, revision="0" * 40, coco_root=str(release["coco"])).split("forget")
    assert "\n" not in str(e.value)
