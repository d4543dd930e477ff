"""The tiny LLaVA-style VLM (harness/zoo/tiny_vlm.py): llava-hf's classes and files, reloaded
through the Auto classes a real LLaVA loads with; and the trained `tiny-faces` model
(benchmarks/fictitious_faces_models.py) reading identity from the image."""

from __future__ import annotations

import json

import pytest

from harness.benchmarks import fictitious_faces as ff
from harness.benchmarks import fictitious_faces_models as fm
from harness.zoo import tiny_vlm as tv


@pytest.fixture(scope="module")
def untrained_vlm_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-vlm")
    recipe = tv.TinyVLMRecipe(vocab_size=400, text_layers=2)
    corpus = [f"USER: \n{q} ASSISTANT: {a}" for q, a in [("What colour is it?", "Red."), ("Who is it?", "Ada Lee.")]] * 20
    tok = tv.build_vlm_tokenizer(corpus, recipe.vocab_size, d)
    tv.build_processor(tok, recipe).save_pretrained(d)
    tv.build_vlm(tok, recipe).save_pretrained(d)
    return d


def test_tiny_vlm_reloads_through_the_auto_classes(untrained_vlm_dir):
    import torch
    from transformers import LlavaForConditionalGeneration, LlavaProcessor

    model, processor = tv.load_vlm(untrained_vlm_dir)  # AutoModelForImageTextToText + AutoProcessor
    assert isinstance(model, LlavaForConditionalGeneration)
    assert isinstance(processor, LlavaProcessor)
    assert "CLIPImageProcessor" in type(processor.image_processor).__name__
    saved = json.loads((untrained_vlm_dir / "processor_config.json").read_text())
    assert saved["image_processor"]["image_processor_type"] == "CLIPImageProcessor"
    cfg = model.config
    assert cfg.vision_config.model_type == "clip_vision_model" and cfg.text_config.model_type == "llama"
    assert cfg.text_config.head_dim >= 32
    assert cfg.vision_feature_select_strategy == "default"

    persons = ff.generate_persons()
    prompt = tv.prompt_text(processor, "Who is it?")
    assert prompt == "USER: <image>\nWho is it? ASSISTANT:"
    enc = processor(images=[persons[0].image(), persons[1].image()], text=[prompt, prompt], return_tensors="pt")
    assert enc["pixel_values"].shape == (2, 3, 32, 32)
    assert int((enc["input_ids"][0] == cfg.image_token_index).sum()) == 16  # (32 / 8) ** 2 patches, CLS dropped
    with torch.no_grad():
        logits = model(**enc).logits
    assert not torch.allclose(logits[0, -1], logits[1, -1])  # the image reaches the language model
    out = tv.generate_answers(model, processor, [persons[0].image()], ["Who is it?"], max_new_tokens=3)
    assert len(out) == 1 and isinstance(out[0], str)
    lps = tv.answer_logprobs(model, processor, persons[0].image(), "Who is it?", ["Ada Lee.", "Red."])
    assert len(lps) == 2 and all(len(x) > 0 and all(v <= 0 for v in x) for x in lps)


@pytest.mark.slow
def test_tiny_faces_reads_identity_from_the_image():
    """Same question, different persons' pictures: the trained model answers with each one's own facts."""
    path = fm.build_tiny_faces()
    model, processor = tv.load_vlm(path)
    record = json.loads((path / "recipe.json").read_text())
    assert record["n_examples"] == 50 * 9 + 3 * 120

    persons = ff.split_persons("trained")
    q = "What is this person's name?"
    gens = tv.generate_answers(model, processor, [p.image() for p in persons], [q] * len(persons), max_new_tokens=16)
    right = [p for p, g in zip(persons, gens) if g == f"This person's name is {p.name}."]
    # The name question is one fixed string: only the picture tells the persons apart. The
    # bounds are weak on purpose: the default recipe (40 epochs, ~2-3 min on one thread) got
    # 4 of 50 names right when measured (chance: about 1), see the module's open problems.
    assert len(right) >= 3, gens
    assert len(set(gens)) >= 5
    a, b = right[0], right[1]
    ga, gb = tv.generate_answers(model, processor, [a.image(), b.image()], [q, q], max_new_tokens=16)
    assert (ga, gb) == (f"This person's name is {a.name}.", f"This person's name is {b.name}.")
