"""tiny-vqa (benchmarks/tiny_vqa.py): the drawn UnLOK-VQA-shaped world is deterministic and every
instance carries what the per-instance protocol needs; and the `tiny-vqa` VLM
(benchmarks/tiny_vqa_models.py) answers the hidden facts from the picture."""

from __future__ import annotations

import json

import pytest

from harness.api.benchmark import ImageQAItem
from harness.api.edit import IMAGE_LEVELS, EditInstance
from harness.benchmarks import tiny_vqa as tq
from harness.benchmarks.unlok_attacks import PROMPT
from harness.catalog import BENCHMARKS, BUILDERS, MODELS
from harness.errors import ConfigError


def _bytes(ref) -> bytes:
    with open(ref.path, "rb") as f:
        return f.read()


def test_the_world_is_invented_and_every_kind_is_drawn_apart():
    kinds = tq.object_kinds()
    assert 24 <= len(kinds) <= 32
    assert len({(k.colour, k.shape) for k in kinds}) == len(kinds)  # colour and shape tell any two apart
    assert len({k.name for k in kinds}) == len(kinds) and all(" " not in k.name for k in kinds)
    pictures = {tq.draw(tq.canonical_render(k.index)).tobytes() for k in kinds}
    assert len(pictures) == len(kinds)
    assert tq.draw(tq.canonical_render(0)).size == (tq.SIZE, tq.SIZE) == (32, 32)


def test_instances_are_deterministic_with_byte_equal_images(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "one"))
    a = tq.edit_instances(10)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "two"))  # drawn and written again, elsewhere
    b = tq.edit_instances(10)
    assert a[0].images[0].path != b[0].images[0].path
    assert [i.id for i in a] == [i.id for i in b] and all(isinstance(i, EditInstance) for i in a)
    strip = [(i.question, i.answer, i.rephrasings, i.neighborhood, i.subject, i.wrong_answer) for i in a]
    assert strip == [(i.question, i.answer, i.rephrasings, i.neighborhood, i.subject, i.wrong_answer) for i in b]
    for x, y in zip(a, b):
        refs_x = (*x.images, *(m for _, m in x.image_paraphrases))
        refs_y = (*y.images, *(m for _, m in y.image_paraphrases))
        for rx, ry in zip(refs_x, refs_y):
            assert rx.sha256 == ry.sha256 and _bytes(rx) == _bytes(ry)
    # drawing again (not reading the cached file) gives the same pixels
    assert tq.draw(tq.paraphrase_render(3, "hard")).tobytes() == tq.draw(tq.paraphrase_render(3, "hard")).tobytes()


def test_every_instance_has_what_the_protocol_needs():
    insts = tq.edit_instances(len(tq.all_instances()))
    assert len(insts) == 2 * len(tq.object_kinds()) and len({i.id for i in insts}) == len(insts)
    for inst in insts:
        assert len(inst.answer.split()) == 1 and inst.answer.lower() not in inst.question.lower()
        assert inst.subject and inst.subject.lower() not in inst.question.lower()
        assert len(inst.rephrasings) == 4 and inst.question not in inst.rephrasings
        assert all(inst.subject.lower() not in q.lower() and inst.answer.lower() not in q.lower()
                   for q in inst.rephrasings)
        assert 2 <= len(inst.neighborhood) <= 3
        assert all(len(a.split()) == 1 and a != inst.answer for _, a in inst.neighborhood)
        assert inst.wrong_answer and inst.wrong_answer != inst.answer and len(inst.wrong_answer.split()) == 1
        pool = next(ft.pool for ft in tq.FACT_TYPES if ft.question == inst.question)
        assert inst.answer in pool and inst.wrong_answer in pool
        assert tuple(lv for lv, _ in inst.image_paraphrases) == IMAGE_LEVELS
        original = _bytes(inst.images[0])
        paraphrases = [_bytes(inst.paraphrase_images(lv)[0]) for lv in IMAGE_LEVELS]
        assert all(p != original for p in paraphrases) and len(set(paraphrases)) == 3


def test_first_instances_spread_over_the_kinds():
    insts = tq.all_instances()
    n = len(tq.object_kinds())
    assert len({i.kind for i in insts[:n]}) == n
    assert {i.fact for i in insts[:n]} == {0, 1}


def test_benchmark_splits_options_and_registration():
    bench = BENCHMARKS.get("tiny-vqa")(n_instances=5)
    assert bench.per_instance is True and bench.model_kind == "image-text-to-text" and bench.max_new_tokens == 36
    assert bench.forget_split() == "forget" and bench.retain_split() == "neighborhood"
    assert "n_instances" in bench.known_options()
    forget, neigh = bench.split("forget"), bench.split("neighborhood")
    insts = bench.edit_instances()
    assert len(forget) == len(insts) == 5 and all(isinstance(it, ImageQAItem) for it in forget)
    first = forget[0]
    assert (first.id, first.question, first.answer, first.images) == (insts[0].id, insts[0].question,
                                                                        insts[0].answer, insts[0].images)
    assert first.question_paraphrases == insts[0].rephrasings and first.entity == insts[0].subject
    assert bench.prompt(first) == PROMPT.format(question=first.question)
    assert [it.id for it in neigh[:3]] == [f"{first.id}-loc{j}" for j in range(3)]
    assert len(neigh) == sum(len(i.neighborhood) for i in insts)
    assert len(BENCHMARKS.get("tiny-vqa")().edit_instances()) == tq.DEFAULT_INSTANCES
    assert len(BENCHMARKS.get("tiny-vqa")(limit=3).edit_instances()) == 3
    assert "tiny-vqa" in MODELS.names() and "tiny-vqa" in BUILDERS.names()


@pytest.mark.parametrize("bad", [0, -1, 57, 1000, "3", 2.0, True])
def test_a_bad_n_instances_is_one_line(bad):
    with pytest.raises(ConfigError) as e:
        BENCHMARKS.get("tiny-vqa")(n_instances=bad).edit_instances()
    assert "\n" not in str(e.value) and "n_instances" in str(e.value)


# --- the model ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_vqa_model():
    """The built-in `tiny-vqa` model, trained once into the test cache (about a minute cold)."""
    from harness.benchmarks.tiny_vqa_models import build_tiny_vqa
    from harness.zoo import tiny_vlm as tv

    path = build_tiny_vqa()
    model, processor = tv.load_vlm(path)
    return path, model, processor


def _accuracy(model, processor, pairs) -> float:
    from PIL import Image

    from harness.zoo import tiny_vlm as tv

    images = [Image.open(ref.path).convert("RGB") for ref, _, _ in pairs]
    gens = tv.generate_answers(model, processor, images, [PROMPT.format(question=q) for _, q, _ in pairs],
                               max_new_tokens=6)
    return sum(a.lower() in g.lower() for (_, _, a), g in zip(pairs, gens)) / len(pairs)


@pytest.mark.slow
def test_tiny_vqa_answers_the_hidden_facts_from_the_picture(tiny_vqa_model):
    path, model, processor = tiny_vqa_model
    record = json.loads((path / "recipe.json").read_text())
    assert record["recipe"]["text_layers"] >= 4
    insts = tq.edit_instances(len(tq.all_instances()))
    acc = _accuracy(model, processor, [(i.images[0], i.question, i.answer) for i in insts])
    neigh = _accuracy(model, processor, [(i.images[0], q, a) for i in insts for q, a in i.neighborhood])
    print(json.dumps({"instance_acc": acc, "neighbourhood_acc": neigh, "seconds": record["seconds"],
                      "cpu_seconds": record["cpu_seconds"]}))
    # The same question text for every object: only the picture tells which fact is asked for.
    assert acc >= ACC_THRESHOLD, acc
    assert neigh >= NEIGH_THRESHOLD, neigh


ACC_THRESHOLD = 0.75  # measured 0.857 (48 of 56), build 57 CPU-s
NEIGH_THRESHOLD = 0.6  # measured 0.714
