"""The open-unlearning baselines of docs/methods.md §5.4–5.9 (SimNPO, IdkDPO, RMU, UNDIAL, WGA, SatImp).

First each loss against an independent, loop-by-loop computation of its formula on hand-made
tensors; then a 3-step training run of every method (LoRA; RMU also full) on a tiny model."""

from __future__ import annotations

from harness.api.context import RunContext

import copy
import math

import pytest
import torch

from harness.artifacts import ModelArtifact
from harness.catalog import METHODS
from harness.errors import ConfigError
from harness.zoo.load import load_hf_model
from harness.api.method import ReferenceModel
from harness.api.training import PairCollator, encode_items, model_inputs
from harness.methods.idk_answers import IDK_ANSWERS
from harness.methods.idk_dpo import IdkDPO
from harness.methods.losses import masked_activation_mse, satimp_loss, token_cross_entropy, wga_loss
from harness.methods.rmu import RMU, decoder_layers, layer_output
from harness.methods.satimp import SatImp
from harness.methods.simnpo import SimNPO
from harness.methods.undial import UNDIAL
from harness.methods.wga import WGA
# The tiny benchmark, model fixtures and one-thread setting are shared with the GradAscent/NPO tests.
from tests.test_methods import (  # noqa: F401 - fixtures are used by name
    FakeModel,
    _assert_base_unchanged,
    _one_thread,
    base,
    base_state,
    bench,
    spec,
)

FAST = {"max_steps": 3, "batch_size": 4, "logging_steps": 100}




# --- independent computations, one token at a time --------------------------------------------


def _labels() -> torch.Tensor:
    return torch.tensor([[-100, -100, 3, 1, 4, -100], [-100, 2, 0, 5, 3, 3]])


def _answer_tokens(labels: torch.Tensor):
    """(b, t, y): logits[b, t] predict the answer token y = labels[b, t + 1]."""
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            y = int(labels[b, t + 1])
            if y != -100:
                yield b, t, y


def _logp(row: torch.Tensor, y: int) -> torch.Tensor:
    return row[y] - torch.logsumexp(row, dim=0)


def _seq_logprob(logits: torch.Tensor, labels: torch.Tensor) -> list[float]:
    sums = [0.0] * labels.shape[0]
    for b, t, y in _answer_tokens(labels):
        sums[b] += float(_logp(logits[b, t].double(), y))
    return sums


def _log_sigmoid(z: float) -> float:
    return -math.log1p(math.exp(-z))


def _manual_weighted_ascent(logits: torch.Tensor, labels: torch.Tensor, weight, detach: bool) -> torch.Tensor:
    """−(1/N)·Σ over the N answer tokens of w(p_t)·CE_t, built from scalar ops (keeps the graph)."""
    terms = []
    for b, t, y in _answer_tokens(labels):
        ce = -_logp(logits[b, t], y)
        p = torch.exp(-ce)
        w = weight(p.detach() if detach else p)
        terms.append(w * ce)
    return -sum(terms) / len(terms)


class KeyedFake:
    """A fake model whose logits depend on the batch: table[first input id] (IdkDPO's two targets)."""

    def __init__(self, table: dict[int, torch.Tensor], loss: float = 0.0):
        self.table, self.loss = table, torch.tensor(loss)

    def __call__(self, input_ids, **_):
        from types import SimpleNamespace

        b, t = input_ids.shape
        return SimpleNamespace(logits=self.table[int(input_ids[0, 0])][:b, :t], loss=self.loss)


# --- SimNPO -------------------------------------------------------------------------------------


def test_simnpo_loss_matches_formula():
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 6, 7) * 3, _labels()
    forget = {"input_ids": torch.zeros(2, 6, dtype=torch.long), "labels": labels}
    retain = {"input_ids": torch.zeros(2, 4, dtype=torch.long), "labels": torch.zeros(2, 4, dtype=torch.long)}
    beta, delta, gamma, alpha = 4.5, 0.3, 0.125, 2.0
    got = SimNPO(beta=beta, delta=delta, alpha=alpha).loss(FakeModel(logits, loss=0.7), forget, retain, None)
    lengths = [3, 5]  # answer tokens per row (after the shift)
    nll_mean = [-s / n for s, n in zip(_seq_logprob(logits, labels), lengths)]
    forget_loss = -(2 / beta) * sum(_log_sigmoid(beta * (x - delta)) for x in nll_mean) / 2
    assert float(got) == pytest.approx(gamma * forget_loss + alpha * 0.7, rel=1e-5)
    p = SimNPO().params
    assert (p.beta, p.delta, p.gamma, p.alpha, p.retain_loss_type) == (4.5, 0.0, 0.125, 1.0, "NLL")
    assert not SimNPO().wants_reference()


# --- IdkDPO -------------------------------------------------------------------------------------


def test_idk_dpo_loss_matches_formula():
    torch.manual_seed(1)
    theta = {0: torch.randn(2, 6, 7), 1: torch.randn(2, 5, 7)}  # key: first input id (0 lose, 1 win)
    ref = {0: torch.randn(2, 6, 7), 1: torch.randn(2, 5, 7)}
    win_labels = torch.tensor([[-100, 6, 6, 2, -100], [-100, -100, 1, 0, 4]])
    forget = {
        "input_ids": torch.zeros(2, 6, dtype=torch.long),
        "labels": _labels(),
        "alternate": {"input_ids": torch.ones(2, 5, dtype=torch.long), "labels": win_labels},
    }
    retain = {"input_ids": torch.zeros(2, 3, dtype=torch.long)}
    beta = 0.5
    got = IdkDPO(beta=beta, gamma=1.5).loss(KeyedFake(theta, loss=0.25), forget, retain, KeyedFake(ref))
    w = [a - r for a, r in zip(_seq_logprob(theta[1], win_labels), _seq_logprob(ref[1], win_labels))]
    lose = [a - r for a, r in zip(_seq_logprob(theta[0], _labels()), _seq_logprob(ref[0], _labels()))]
    forget_loss = -(2 / beta) * sum(_log_sigmoid(beta * (a - b)) for a, b in zip(w, lose)) / 2
    assert float(got) == pytest.approx(1.5 * forget_loss + 0.25, rel=1e-5)
    p = IdkDPO().params
    assert (p.beta, p.gamma, p.alpha) == (0.1, 1.0, 1.0) and IdkDPO().wants_reference()


def _alt_text(tok, enc: dict) -> str:
    return tok.decode([t for t in enc["alternate"]["labels"] if t != -100], skip_special_tokens=True)


def _target_text(tok, bench, answer: str) -> str:
    return tok.decode(tok(bench.target(answer), add_special_tokens=False)["input_ids"], skip_special_tokens=True)


def test_idk_answers_are_our_own_forty():
    assert len(IDK_ANSWERS) >= 40 and len(set(IDK_ANSWERS)) == len(IDK_ANSWERS)
    assert all(a.strip() == a and a for a in IDK_ANSWERS)


def test_idk_dpo_attaches_a_seeded_refusal_to_each_forget_item(base, bench, tmp_path):
    tok, items = base.tokenizer, bench.split("forget10")
    method = IdkDPO()
    enc = method.encode_forget(bench, items, tok, 256, False, seed=3)
    plain = encode_items(bench, items, tok, 256)
    assert len(enc) == len(items)
    choices = {_target_text(tok, bench, a): a for a in IDK_ANSWERS}
    drawn = []
    for e, p in zip(enc, plain):
        assert e["input_ids"] == p["input_ids"] and e["labels"] == p["labels"]  # lose = the true answer
        alt = e["alternate"]
        n_prompt = sum(1 for l in alt["labels"] if l == -100)
        assert alt["input_ids"][:n_prompt] == p["input_ids"][:n_prompt]  # same prompt
        assert alt["labels"][-1] == tok.eos_token_id
        drawn.append(choices[_alt_text(tok, e)])
    again = [e["alternate"]["input_ids"] for e in method.encode_forget(bench, items, tok, 256, False, seed=3)]
    other = [e["alternate"]["input_ids"] for e in method.encode_forget(bench, items, tok, 256, False, seed=4)]
    assert again == [e["alternate"]["input_ids"] for e in enc] != other
    assert len(set(drawn)) > 1

    batch = PairCollator(tok.pad_token_id).pad(enc[:3])
    assert set(batch) == {"input_ids", "attention_mask", "labels", "alternate"}
    assert set(model_inputs(batch)) == {"input_ids", "attention_mask", "labels"}
    alt = batch["alternate"]
    assert alt["input_ids"].shape == alt["labels"].shape == alt["attention_mask"].shape
    with torch.no_grad():
        assert torch.isfinite(method.loss(base.model, batch, None, ReferenceModel(frozen=base.model)))

    path = tmp_path / "idk.txt"
    path.write_text("Ask someone else.\n\nNo clue.\n")
    custom = IdkDPO(idk_path=str(path))
    assert custom.idk_answers() == ["Ask someone else.", "No clue."]
    texts = {_alt_text(tok, e) for e in custom.encode_forget(bench, items, tok, 256, False, seed=0)}
    assert texts == {_target_text(tok, bench, "Ask someone else."), _target_text(tok, bench, "No clue.")}
    with pytest.raises(ConfigError, match="idk_path"):
        IdkDPO(idk_path=str(tmp_path / "missing.txt")).idk_answers()


# --- WGA and SatImp -----------------------------------------------------------------------------


def test_token_cross_entropy_is_shifted_and_masked():
    torch.manual_seed(2)
    logits, labels = torch.randn(2, 6, 7), _labels()
    ce, mask = token_cross_entropy(logits, labels)
    assert ce.shape == mask.shape == (2, 5) and int(mask.sum()) == 8
    for b, t, y in _answer_tokens(labels):
        assert float(ce[b, t]) == pytest.approx(-float(_logp(logits[b, t].double(), y)), rel=1e-5)
    assert float(ce[~mask].abs().sum()) == 0.0


@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_wga_loss_value_and_detached_gradient(beta):
    torch.manual_seed(3)
    base = torch.randn(2, 6, 6) * 2
    logits = base.clone().requires_grad_(True)
    got = wga_loss(logits, _labels(), beta)
    got.backward()
    ref = base.clone().double().requires_grad_(True)
    expected = _manual_weighted_ascent(ref, _labels(), lambda p: p**beta, detach=True)
    expected.backward()
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    torch.testing.assert_close(logits.grad.double(), ref.grad, rtol=1e-4, atol=1e-6)


def test_wga_method_combines_forget_and_retain():
    torch.manual_seed(4)
    logits = torch.randn(2, 6, 6) * 2
    forget = {"input_ids": torch.zeros(2, 6, dtype=torch.long), "labels": _labels()}
    retain = {"input_ids": torch.zeros(2, 3, dtype=torch.long)}
    got = WGA(gamma=0.5, alpha=3.0).loss(FakeModel(logits, loss=0.4), forget, retain, None)
    expected = _manual_weighted_ascent(logits.double(), _labels(), lambda p: p, detach=True)
    assert float(got) == pytest.approx(0.5 * float(expected) + 3.0 * 0.4, rel=1e-5)
    p = WGA().params
    assert (p.beta, p.gamma, p.alpha, p.retain_loss_type) == (1.0, 1.0, 1.0, "NLL")


@pytest.mark.parametrize("detach", [True, False])
def test_satimp_loss_value_and_gradient(detach):
    torch.manual_seed(5)
    base = torch.randn(2, 6, 6) * 2
    beta1, beta2 = 5.0, 1.0
    logits = base.clone().requires_grad_(True)
    got = satimp_loss(logits, _labels(), beta1, beta2, detach=detach)
    got.backward()
    ref = base.clone().double().requires_grad_(True)
    expected = _manual_weighted_ascent(ref, _labels(), lambda p: p**beta1 * (1 - p) ** beta2, detach=detach)
    expected.backward()
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    torch.testing.assert_close(logits.grad.double(), ref.grad, rtol=1e-4, atol=1e-7)


def test_satimp_detach_flag_changes_the_gradient_not_the_value():
    torch.manual_seed(6)
    base = torch.randn(2, 6, 6) * 2
    forget = {"input_ids": torch.zeros(2, 6, dtype=torch.long), "labels": _labels()}
    values, grads = [], []
    for detach in (True, False):
        logits = base.clone().requires_grad_(True)
        loss = SatImp(detach_weights=detach).loss(FakeModel(logits), forget, None, None)
        loss.backward()
        values.append(float(loss))
        grads.append(logits.grad.clone())
    assert values[0] == pytest.approx(values[1], rel=1e-6)
    assert (grads[0] - grads[1]).abs().max() > 1e-4
    p = SatImp().params
    assert (p.beta1, p.beta2, p.gamma, p.alpha, p.detach_weights) == (5.0, 1.0, 0.1, 1.0, True)
    # γ = 0.1 scales the forget term
    logits = base.clone()
    assert values[0] == pytest.approx(0.1 * float(satimp_loss(logits, _labels(), 5.0, 1.0)), rel=1e-5)


# --- UNDIAL -------------------------------------------------------------------------------------


def _manual_undial(theta: torch.Tensor, ref: torch.Tensor, labels: torch.Tensor, beta: float, compat: bool) -> float:
    total, n = 0.0, 0
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            y = int(labels[b, t + 1])
            if y == -100 and not compat:
                continue
            z = ref[b, t].double().clone()
            z[y] -= beta  # compat: Python's index −100 is vocabulary id V − 100
            q = torch.softmax(z, dim=0)
            log_p = torch.log_softmax(theta[b, t].double(), dim=0)
            total += float(-(q * log_p).sum())
            n += 1
    return total / n


@pytest.mark.parametrize("compat", [False, True])
def test_undial_loss_matches_formula(compat):
    torch.manual_seed(7)
    vocab = 120  # ≥ 100, so the reference quirk's V − 100 is a real id
    theta, ref = torch.randn(2, 6, vocab), torch.randn(2, 6, vocab)
    ref[:, :, vocab - 100] += 3.0  # make the quirk's demoted id matter
    forget = {"input_ids": torch.zeros(2, 6, dtype=torch.long), "labels": _labels()}
    method = UNDIAL(beta=10.0, reference_compat=compat)
    got = method.loss(FakeModel(theta), forget, None, FakeModel(ref))
    assert float(got) == pytest.approx(_manual_undial(theta, ref, _labels(), 10.0, compat), rel=1e-5)
    other = _manual_undial(theta, ref, _labels(), 10.0, not compat)
    assert abs(float(got) - other) > 1e-3  # masking and the quirk really differ
    # at β = 0 and θ = ref the student matches the teacher: CE = entropy(teacher)
    assert float(UNDIAL(beta=0.0).loss(FakeModel(ref), forget, None, FakeModel(ref))) == pytest.approx(
        _manual_undial(ref, ref, _labels(), 0.0, False), rel=1e-5
    )


def test_undial_defaults_and_retain_pairing():
    p = UNDIAL().params
    assert (p.beta, p.gamma, p.alpha, p.reference_compat) == (10.0, 1.0, 0.0, False)
    assert UNDIAL().wants_reference() and not UNDIAL().uses_retain and UNDIAL(alpha=1.0).uses_retain


# --- RMU ----------------------------------------------------------------------------------------


def test_masked_activation_mse_matches_loops():
    torch.manual_seed(8)
    a, b = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    mask = torch.tensor([[False, True, True, False], [True, True, True, True]])
    per_row = []
    for r in range(2):
        tokens = [t for t in range(4) if mask[r, t]]
        per_row.append(sum(sum((float(a[r, t, k]) - float(b[r, t, k])) ** 2 for k in range(3)) / 3 for t in tokens) / len(tokens))
    assert float(masked_activation_mse(a, b, mask)) == pytest.approx(sum(per_row) / 2, rel=1e-5)
    target = torch.tensor([1.0, -2.0, 0.5])  # broadcast target (RMU's c·u)
    expected = masked_activation_mse(a, target.expand_as(a), mask)
    assert float(masked_activation_mse(a, target, mask)) == pytest.approx(float(expected), rel=1e-6)


def _rmu_manual(h: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> float:
    rows = []
    for r in range(h.shape[0]):
        tokens = [t for t in range(h.shape[1]) if int(labels[r, t]) != -100]  # unshifted, as open-unlearning
        rows.append(sum(float(((h[r, t].double() - target[r, t].double()) ** 2).mean()) for t in tokens) / len(tokens))
    return sum(rows) / len(rows)


def test_rmu_forget_term_on_the_tiny_model(base, bench):
    batch = _batch(base, bench, "forget10", 3)
    method = RMU(layer=0, steering_coeff=2.0)
    with torch.no_grad():
        got = method.forget_loss(base.model, batch, None)
        h = base.model(**batch, output_hidden_states=True).hidden_states[1]  # output of decoder layer 0
    u = torch.rand(h.shape[-1], generator=torch.Generator().manual_seed(0))
    cu = 2.0 * u / u.norm()
    assert float(method.control_vector(h.shape[-1]).norm()) == pytest.approx(2.0, rel=1e-6)
    assert float(got) == pytest.approx(_rmu_manual(h, cu.expand_as(h), batch["labels"]), rel=1e-5)


def test_rmu_retain_term_is_embedding_difference_to_the_frozen_model(base, bench):
    batch = _batch(base, bench, "retain90", 3)
    theta = copy.deepcopy(base.model)
    with torch.no_grad():
        theta.model.layers[0].mlp.down_proj.weight.add_(0.05)
    method = RMU(layer=0, gamma=0.0)
    ref = ReferenceModel(frozen=base.model)
    with torch.no_grad():
        got = method.retain_loss(theta, batch, ref)
        h = theta(**batch, output_hidden_states=True).hidden_states[1]
        h_ref = base.model(**batch, output_hidden_states=True).hidden_states[1]
        assert float(got) == pytest.approx(_rmu_manual(h, h_ref, batch["labels"]), rel=1e-5)
        assert float(got) > 0
        assert float(method.retain_loss(base.model, batch, ref)) == pytest.approx(0.0, abs=1e-10)
        forget = _batch(base, bench, "forget10", 2)
        total = RMU(layer=0, alpha=2.0).loss(theta, forget, batch, ref)
        assert float(total) == pytest.approx(float(method.forget_loss(theta, forget, None)) + 2 * float(got), rel=1e-5)


def test_rmu_default_layer_is_the_middle_one_and_hooks_are_removed(base, bench):
    method = RMU()
    name, layers = decoder_layers(base.model)
    assert name == "model.layers" and len(layers) == 2
    assert method.resolve_layer(base.model) == 1  # len(layers) // 2; the spec's 7 suits real models
    assert method.extra_train_stats()["rmu_module"] == "model.layers.1"
    batch = _batch(base, bench, "forget10", 2)
    hooks_before = [dict(m._forward_hooks) for m in base.model.modules()]
    with torch.no_grad():
        h = layer_output(base.model, 1, batch)
        hs = base.model(**batch, output_hidden_states=True).hidden_states
        torch.testing.assert_close(base.model.model.norm(h), hs[-1])  # the last layer's output, before the norm
    assert [dict(m._forward_hooks) for m in base.model.modules()] == hooks_before  # our hook is gone
    with pytest.raises(ConfigError, match="layer 7 is out of range"):
        RMU(layer=7).resolve_layer(base.model)
    p = RMU().params
    assert (p.steering_coeff, p.layer, p.peft, p.retain_loss_type, p.gamma, p.alpha) == (
        2.0, None, "full", "EMBED_DIFF", 1.0, 1.0
    )


# --- a tiny benchmark and model ------------------------------------------------------------------


def _batch(base, bench, split: str, n: int | None = None) -> dict:
    enc = encode_items(bench, bench.split(split)[:n], base.tokenizer, 256)
    return PairCollator(base.tokenizer.pad_token_id).pad(enc)


CASES = [
    ("simnpo", SimNPO, {}),
    ("idk-dpo", IdkDPO, {}),
    ("rmu", RMU, {"peft": "lora"}),
    ("rmu", RMU, {"peft": "full"}),
    ("undial", UNDIAL, {}),
    ("wga", WGA, {}),
    ("satimp", SatImp, {}),
]


@pytest.mark.parametrize("name,cls,extra", CASES, ids=[f"{n}-{e.get('peft', 'lora')}" for n, _, e in CASES])
def test_method_trains_and_changes_the_model(name, cls, extra, spec, base, base_state, bench, tmp_path):
    from transformers import AutoModelForCausalLM

    assert METHODS.get(name) is cls and cls.name == name
    method = cls(**FAST, **extra)
    artifact = method.apply(base, bench, RunContext(tmp_path, seed=0))
    assert artifact.method == name and artifact.base_model == "t" and len(artifact.hash) == 64
    assert ModelArtifact.load(tmp_path) == artifact
    assert artifact.hparams == method.params.model_dump()
    stats = artifact.train_stats
    assert stats["steps"] == 3 and stats["n_forget"] == 8 and math.isfinite(stats["final_loss"])
    assert stats["n_retain"] == (0 if name == "undial" else 8)
    if artifact.hparams["peft"] == "lora":
        assert artifact.checkpoint_path is None
        model = load_hf_model(spec, device="cpu", adapter=artifact.adapter_path).model
    else:
        assert artifact.adapter_path is None
        model = AutoModelForCausalLM.from_pretrained(artifact.checkpoint_path)
    if name == "rmu":
        assert (stats["rmu_layer"], stats["rmu_module"].rsplit(".", 2)[-2:], stats["rmu_n_layers"]) == (1, ["layers", "1"], 2)
        assert stats["rmu_control_seed"] == 0
    if name == "idk-dpo":
        assert stats["n_idk_answers"] == len(IDK_ANSWERS)
    batch = _batch(base, bench, "forget10")
    with torch.no_grad():
        assert (model(**batch).logits - base.model(**batch).logits).abs().max() > 1e-4
    _assert_base_unchanged(base, base_state)
