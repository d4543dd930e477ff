"""fictitious-faces and fiubench as benchmarks: splits, roles, items that carry their picture,
and TOFU's metrics asking every request with the item's image."""

from __future__ import annotations

import json

import pytest

from harness.api.benchmark import ImageQAItem
from harness.benchmarks import fictitious_faces as ff
from harness.benchmarks.shape_questions import visual_questions
from harness.benchmarks.fiubench import FIUBench
from harness.catalog import BENCHMARKS, build_metric
from harness.errors import ConfigError, DatasetUnavailableError, HarnessError
from harness.evaluate import evaluate
from harness.testing import FakeBackend


@pytest.fixture(scope="module")
def faces():
    return BENCHMARKS.get("fictitious-faces")()


def test_splits_roles_and_sizes(faces):
    sizes = {k: len(v) for k, v in faces.data.splits.items()}
    per = len(ff.FACTS)
    assert sizes["forget5"] == 3 * per and sizes["forget1"] == per and sizes["forget10"] == 5 * per
    assert sizes["retain"] == 41 * per and sizes["retain15"] == 8 * per and sizes["holdout"] == 5 * per
    assert sizes["visual"] == len(visual_questions("test"))
    assert faces.model_kind == "image-text-to-text"
    assert (faces.forget_split(), faces.retain_split(), faces.resolve_split("retain"), faces.holdout_split()) == \
        ("forget5", "retain", "retain15", "holdout")
    forget_people = {i.entity for i in faces.split("forget5")}
    assert not forget_people & {i.entity for i in faces.split("retain")}


def test_items_carry_their_persons_picture(faces):
    person = ff.split_persons("forget5")[0]
    items = [i for i in faces.split("forget5") if i.entity == person.unique_id]
    assert len(items) == len(ff.FACTS) and all(isinstance(i, ImageQAItem) for i in items)
    (ref,) = faces.images(items[0])
    assert all(faces.images(i) == (ref,) for i in items)
    import hashlib
    import io

    buf = io.BytesIO()
    person.image().save(buf, format="PNG")
    assert ref.sha256 == hashlib.sha256(buf.getvalue()).hexdigest()  # the drawn face, by content
    assert items[0].question == "What is this person's name?" and faces.prompt(items[0]) == items[0].question
    assert items[0].keywords == tuple(person.name.split())


def test_data_hash_does_not_depend_on_where_images_are(tmp_path, monkeypatch, faces):
    here = faces.split("forget1")[0].images[0].path  # loaded (lazily) under the session's cache dir
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    other = BENCHMARKS.get("fictitious-faces")()
    assert other.split("forget1")[0].images[0].path != here
    assert other.data.data_hash() == faces.data.data_hash()


METRICS = ("probability@forget", "truth_ratio@forget", "rouge_l_recall@forget", "exact_match_recall@forget",
           "probability@retain", "truth_ratio@retain")


def test_tofu_metrics_ask_with_the_items_image(faces):
    metrics = [build_metric(m, faces) for m in METRICS]
    for m in metrics:
        by_question = {faces.prompt(i): faces.images(i) for i in m.items}  # one person per question+answer set
        pictures = {faces.images(i) for i in m.items}
        for r in m.requests():
            assert len(r.images) == 1 and r.images in pictures, (m.id, r)
        assert {r.images for r in m.requests()} == pictures  # every item asked with its own picture
        assert by_question
    fake = FakeBackend(sees_images=True)
    results = evaluate(faces, metrics, fake).results
    assert all(results[m].value is not None and results[m].n > 0 for m in METRICS)
    assert all(r.images for r in fake.seen)
    with pytest.raises(HarnessError, match="cannot see images"):
        evaluate(faces, metrics, FakeBackend())  # a text model never answers an image item as text


def test_fiubench_reads_the_same_data_from_files(tmp_path, faces):
    ff.write_dataset(tmp_path)
    bench = FIUBench(path=str(tmp_path))
    a, b = bench.split("forget5"), faces.split("forget5")
    assert [i.id for i in a] == [i.id for i in b]
    assert [(i.question, i.answer, i.keywords, i.images[0].sha256) for i in a] == \
        [(i.question, i.answer, i.keywords, i.images[0].sha256) for i in b]
    assert bench.resolve_split("retain") == "retain15" and bench.model_kind == "image-text-to-text"
    # FIUBench has no holdout: its loader's `retain` is every person in no forget list, so on
    # the generated files it also holds the 5 holdout persons fictitious-faces keeps apart.
    assert len(bench.split("retain")) == len(faces.split("retain")) + len(faces.split("holdout"))
    assert BENCHMARKS.get("fiubench") is FIUBench


def test_fiubench_missing_data_is_one_line(tmp_path):
    with pytest.raises(DatasetUnavailableError) as e:
        FIUBench(path=str(tmp_path / "nowhere")).data
    assert "\n" not in str(e.value) and "gray311/FIUBench" in str(e.value)
    with pytest.raises(DatasetUnavailableError, match="no path"):
        FIUBench().data
    with pytest.raises(ConfigError, match="revision"):
        FIUBench(hub="gray311/FIUBench").data
    with pytest.raises(DatasetUnavailableError) as e:  # HF_HUB_OFFLINE in tests: never reaches the network
        FIUBench(hub="gray311/FIUBench", revision="0" * 40).data
    assert "\n" not in str(e.value) and "0" * 40 in str(e.value)
    json.dumps(str(e.value))
