"""Loss-only unlearning methods on a VLM, unchanged: the training helpers carry each item's
pixel_values (encoded as the HF backend encodes them), LoRA adapts the language model by
default, and GA / GD / KL / PO train on image batches."""

from __future__ import annotations

import pytest
import torch

from harness.api.context import RunContext
from harness.api.method import vlm_lora_targets
from harness.api.requests import LoglikelihoodRequest
from harness.api.training import PairCollator, encode_item, model_inputs, pad_id
from harness.backends.hf import HFBackend
from harness.catalog import BENCHMARKS, METHODS
from harness.zoo.load import load_hf_model
from harness.zoo.specs import ModelSpec

FAST = {"max_steps": 2, "batch_size": 2, "logging_steps": 100, "lr": 1e-2}


@pytest.fixture(scope="module")
def spec(tiny_vlm_dir) -> ModelSpec:
    return ModelSpec(name="vlm", path=str(tiny_vlm_dir), kind="image-text-to-text", dtype="float32")


@pytest.fixture(scope="module")
def base(spec):
    return load_hf_model(spec, device="cpu")


@pytest.fixture(scope="module")
def bench():
    return BENCHMARKS.get("fictitious-faces")(limit=4)


def test_encode_item_is_the_backends_encoding_plus_pixels(spec, base, bench):
    item = bench.split("forget5")[0]
    enc = encode_item(bench, item, base.processor, max_length=96, chat=True)
    backend = HFBackend(spec, device="cpu", loaded=base)
    prompt = backend.encode_prompt(LoglikelihoodRequest(bench.prompt(item), bench.target(item.answer),
                                                        images=bench.images(item)))
    n = len(prompt)
    assert enc["input_ids"][:n] == prompt and enc["labels"][:n] == [-100] * n
    # FIUBench's encoding (answer_eos off): the answer's tokens, no EOS
    answer = base.tokenizer(bench.target(item.answer), add_special_tokens=False)["input_ids"]
    assert enc["input_ids"][n:] == answer == enc["labels"][n:]
    assert tuple(enc["pixel_values"].shape) == (1, 3, 32, 32)
    with_eos = encode_item(BENCHMARKS.get("fictitious-faces")(limit=4, answer_eos=True), item, base.processor,
                           max_length=96, chat=True)
    assert with_eos["input_ids"][n:] == answer + [base.tokenizer.eos_token_id]


def test_collator_concatenates_pixels_in_row_order(base, bench):
    a, b = (encode_item(bench, it, base.processor, 96, True) for it in bench.split("forget5")[:2])
    batch = PairCollator(pad_id(base.processor))([{"forget": a}, {"forget": b}])["forget"]
    assert torch.equal(batch["pixel_values"], torch.cat([a["pixel_values"], b["pixel_values"]]))
    assert set(model_inputs(batch)) == {"input_ids", "attention_mask", "labels", "pixel_values"}
    assert torch.isfinite(base.model(**model_inputs(batch)).loss)


def test_lora_targets_the_language_model_unless_asked(base):
    lm = vlm_lora_targets(base.model, "none")
    proj = vlm_lora_targets(base.model, "projector")
    every = vlm_lora_targets(base.model, "all")
    assert lm and all("language_model" in n for n in lm)
    assert set(proj) - set(lm) and all("multi_modal_projector" in n for n in set(proj) - set(lm))
    assert set(every) - set(proj) and all("vision_tower" in n for n in set(every) - set(proj))
    assert not any(n.endswith("lm_head") for n in every)


@pytest.mark.parametrize("name,extra", [("grad-ascent", {}), ("grad-diff", {}), ("kl", {}),
                                        ("po", {}), ("grad-diff", {"lora_vision": "projector"})])
def test_methods_train_on_image_batches(name, extra, spec, base, bench, tmp_path):
    artifact = METHODS.get(name)(**FAST, **extra).apply(base, bench, RunContext(tmp_path, seed=0))
    assert artifact.adapter_path and artifact.train_stats["steps"] == 2
    assert artifact.hparams.get("retain_loss_type", "NLL") == ("KL" if name == "kl" else "NLL")
    item = bench.split("forget5")[0]
    request = LoglikelihoodRequest(bench.prompt(item), bench.target(item.answer), images=bench.images(item))
    before = HFBackend(spec, device="cpu", loaded=base).loglikelihood([request])[0]
    after = HFBackend(spec, device="cpu", adapter=artifact.adapter_path).loglikelihood([request])[0]
    assert abs(before.sum - after.sum) > 1e-4  # the adapter changed how the model answers the image item
    import json

    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    targets = cfg["target_modules"]
    assert any("multi_modal_projector" in t for t in targets) == (extra.get("lora_vision") == "projector")
    assert not any("vision_tower" in t for t in targets)
