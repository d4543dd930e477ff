"""Steering hooks on a real model, and the restoration attack on a masked vs a retain-only model."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from harness.api.context import RunContext
from harness.backends.factory import BackendFactory
from harness.api.attack import AttackContext
from harness.attacks.restoration import RestorationAttack
from harness.representations.sae import TopKSAE
from harness.representations.steering import replace_layer_output, steering
from harness.zoo.load import load_hf_model
from harness.zoo.specs import ModelSpec, ModelZoo


def _identity_sae(d: int) -> TopKSAE:
    sae = TopKSAE(d, d, k=d)
    with torch.no_grad():
        sae.encoder.weight.copy_(torch.eye(d))
        sae.decoder.weight.copy_(torch.eye(d))
    return sae


def test_direct_injection_replays_the_original_in_forward_and_generation(tiny_model_dir):
    spec = ModelSpec(name="toy", path=str(tiny_model_dir), chat_template="none", dtype="float32")
    original = load_hf_model(spec, device="cpu").model.eval()
    broken = copy.deepcopy(original)
    with torch.no_grad():  # change only layer 0: patching its output back must give the original
        for p in broken.model.layers[0].parameters():
            p.add_(torch.randn_like(p) * 0.5)
    ids = torch.tensor([[5, 17, 42, 9, 11, 3]])
    d = original.config.hidden_size
    sae = _identity_sae(d)
    want = original(input_ids=ids).logits
    assert not torch.allclose(broken(input_ids=ids).logits, want, atol=1e-4)
    with steering(broken, 0, sae, list(range(d)), "direct_injection", 1.0, original=original):
        # z_u + (z_o - z_u) equals z_o up to float rounding only
        assert torch.allclose(broken(input_ids=ids).logits, want, atol=1e-3)
        got = broken.generate(input_ids=ids, max_new_tokens=8, do_sample=False)  # KV cache: the tap keeps its own
    ref = original.generate(input_ids=ids, max_new_tokens=8, do_sample=False)
    assert torch.equal(got, ref)
    assert not broken.model.layers[0]._forward_hooks and not broken.model._forward_pre_hooks  # removed
    # alpha 0 with the identity SAE leaves the broken model as it was
    with steering(broken, 0, sae, list(range(d)), "direct_injection", 0.0, original=original):
        assert torch.allclose(broken(input_ids=ids).logits, copy.deepcopy(broken)(input_ids=ids).logits, atol=1e-5)


def _ctx(loaded, ident: str, bench, zoo) -> AttackContext:
    return AttackContext(
        benchmark=bench, spec=loaded.spec, artifact=None,
        backend=BackendFactory(device="cpu").in_memory(loaded, identity=ident, cached=False),
        load_model=lambda: loaded, results={}, original=None,
        run=RunContext(output_dir=Path("."), seed=0, backends=BackendFactory(device="cpu")),
        original_spec=zoo.get("tiny-facts"), reference_spec=zoo.get("tiny-facts-retain"))


@pytest.mark.slow
def test_restoration_tells_hidden_from_deleted():
    """Masked: the original with its forget-expert SAE features ablated at layer ℓ (the knowledge
    is still in the other layers): restorable. Retain-only: never learned it: not restorable."""
    from harness.catalog import build_benchmark

    zoo = ModelZoo()
    bench = build_benchmark("fictitious-facts", forget_split="forget10")
    attack = RestorationAttack(max_items=30, scales=[1.0], modes=["direct_injection", "add"])
    masked = load_hf_model(zoo.get("tiny-facts"), device="cpu")
    ctx = _ctx(masked, "masked-test", bench, zoo)
    prep = attack.prepare(ctx)
    mask = torch.zeros(prep.sae.width)
    mask[prep.experts] = 1

    def ablate(h: torch.Tensor) -> torch.Tensor:
        return h - prep.sae.decoder(torch.relu(prep.sae.pre_codes(h)) * mask)

    with replace_layer_output(masked.model, prep.layer, ablate):
        hidden = attack.run(ctx)
    gone = attack.run(_ctx(load_hf_model(zoo.get("tiny-facts-retain"), device="cpu"), "retain-test", bench, zoo))
    rid = "restoration_rate:exact_match_recall@forget"
    hid, gon = hidden[rid], gone[rid]
    assert hid.details["unlearned"] < 0.5 * hid.details["original"]  # the mask did hide the answers
    assert hid.value >= 0.4 and gon.value <= 0.1, (hid.value, gon.value)
    assert hid.value > gon.value + 0.3
    assert 0.0 <= gon.value <= 1.0 and hid.ci_low <= hid.value <= hid.ci_high
    assert "restoration_retain:exact_match_recall@retain" in hidden
    assert "restored[add,a=1]:probability@forget" in hidden
    assert hidden["restoration_rate:probability@forget"].value > gone["restoration_rate:probability@forget"].value
