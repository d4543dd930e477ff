"""The TopK SAE and the steering patches against hand-computed tensors; hooks are removed."""

from __future__ import annotations

import pytest
import torch

from harness.representations.sae import SAEConfig, TopKSAE, load_or_train_sae, select_experts
from harness.representations.steering import add_patch, direct_injection_patch, replace_layer_output


def _hand_sae() -> TopKSAE:
    sae = TopKSAE(d=2, width=3, k=2)
    with torch.no_grad():
        sae.pre_bias.copy_(torch.tensor([1.0, -1.0]))
        sae.latent_bias.copy_(torch.tensor([0.0, 0.5, -10.0]))
        sae.encoder.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        sae.decoder.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]]))
    return sae


def test_topk_sae_by_hand():
    sae = _hand_sae()
    x = torch.tensor([[3.0, 0.0]])
    # x - b = (2, 1); W_e(x-b) = (2, 1, 3); + b_lat = (2, 1.5, -7); top-2: latents 0, 1 -> ReLU (2, 1.5)
    assert torch.allclose(sae.pre_codes(x), torch.tensor([[2.0, 1.0, 3.0]]))
    assert torch.allclose(sae.encode(x), torch.tensor([[2.0, 1.5, 0.0]]))
    # W_d z + b = (2 + 0, 1.5) + (1, -1) = (3, 0.5)
    assert torch.allclose(sae(x), torch.tensor([[3.0, 0.5]]))


def test_steering_patches_by_hand():
    sae = _hand_sae()
    h_unl, h_orig = torch.tensor([[1.0, -1.0]]), torch.tensor([[3.0, 0.0]])
    # z_u = (0, 0, 0); z_o = (2, 1, 3); experts {2}, alpha 0.5 -> z_r = (0, 0, 1.5)
    # linear: W_d z_r + b = (3, 0) + (1, -1) = (4, -1); residual: h_unl + W_d (z_r - z_u) = (1 + 3, -1)
    assert torch.allclose(direct_injection_patch(sae, h_unl, h_orig, [2], 0.5, "linear"), torch.tensor([[4.0, -1.0]]))
    assert torch.allclose(direct_injection_patch(sae, h_unl, h_orig, [2], 0.5, "residual"), torch.tensor([[4.0, -1.0]]))
    h = torch.tensor([[2.0, 1.0]])
    # a = W_e(h - b) = (1, 2, 3); experts {0, 1}, alpha 2 -> (2, 4, 0); W_d -> (2, 4); + b -> (3, 3); h + that = (5, 4)
    assert torch.allclose(add_patch(sae, h, [0, 1], 2.0, add_bias=True), torch.tensor([[5.0, 4.0]]))
    assert torch.allclose(add_patch(sae, h, [0, 1], 2.0, add_bias=False), torch.tensor([[4.0, 5.0]]))


def test_sae_trains_caches_and_selects_forget_experts(tmp_path):
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(400, 8, generator=g)
    config = SAEConfig(width=16, k=4, steps=150, batch_size=64)
    sae, info = load_or_train_sae(acts, config, tmp_path, progress=False)
    assert not info["cached"] and info["fvu"] < 0.6
    again, info2 = load_or_train_sae(acts, config, tmp_path, progress=False)
    assert info2["cached"] and info2["hash"] == info["hash"]
    assert torch.allclose(again(acts), sae(acts))
    assert torch.allclose(sae.decoder.weight.norm(dim=0), torch.ones(16), atol=1e-5)
    forget = torch.tensor([[5.0, 0.0, 1.0], [4.0, 0.0, 1.0]])
    retain = torch.tensor([[0.0, 3.0, 1.0], [1.0, 3.0, 1.0]])
    # selectivity: latent 0 4.5/5 = 0.9, latent 1 0, latent 2 0.5
    assert select_experts(forget, retain, "threshold", threshold=0.6) == [0]
    assert select_experts(forget, retain, "top_n", n=2) == [0, 2]


def test_layer_hook_is_removed_even_on_errors():
    from tests.conftest import make_tiny_model  # noqa: F401 - a real decoder stack

    layers = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(2)])
    model = torch.nn.Module()
    model.layers = layers
    with pytest.raises(RuntimeError):
        with replace_layer_output(model, 1, lambda h: h * 0):
            assert layers[1]._forward_hooks
            raise RuntimeError("boom")
    assert not layers[1]._forward_hooks
    with replace_layer_output(model, 0, lambda h: h * 0):
        assert torch.all(layers[0](torch.ones(1, 2)) == 0)
    assert not layers[0]._forward_hooks
