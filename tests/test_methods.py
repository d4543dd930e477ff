"""Unlearning methods (docs/methods.md §5): loss formulas on hand-made tensors, then short LoRA / full
training runs of GradAscent, GradDiff, NPO and the examples/my_method plugin on a tiny model."""

from __future__ import annotations

from harness.api.context import RunContext

import math
from importlib.metadata import EntryPoint
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from harness.api.benchmark import Benchmark, BenchmarkData, QAItem
from harness.artifacts import ModelArtifact
from harness.errors import ConfigError
from harness.zoo.load import load_hf_model
from harness.zoo.specs import ModelSpec
from harness.api.method import ReferenceModel, UnlearningMethod
from harness.api.training import ForgetRetainDataset, PairCollator, encode_item, encode_items
from harness.methods.grad_ascent import GradAscent
from harness.methods.grad_diff import GradDiff
from harness.methods.losses import kl_to_reference, npo_loss, retain_loss, sequence_logprob_sum
from harness.methods.npo import NPO

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "my_method"
FAST = {"max_steps": 4, "batch_size": 4, "logging_steps": 100}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models train faster on one thread, and far faster when the CPUs are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

# --- hand-made tensors -------------------------------------------------------------------


def _labels() -> torch.Tensor:
    return torch.tensor([[-100, -100, 3, 1, 4, -100], [-100, 2, 0, 5, -100, -100]])


def _manual_seq_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    out = []
    for b in range(labels.shape[0]):
        total = 0.0
        for t in range(1, labels.shape[1]):
            y = int(labels[b, t])
            if y == -100:
                continue
            row = logits[b, t - 1].double()
            total += float(row[y] - torch.logsumexp(row, dim=0))
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


def _manual_nll_mean(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """HF token-mean CE over every answer token in the batch, by hand."""
    total, n = 0.0, 0
    for b in range(labels.shape[0]):
        for t in range(1, labels.shape[1]):
            y = int(labels[b, t])
            if y != -100:
                row = logits[b, t - 1].double()
                total -= float(row[y] - torch.logsumexp(row, dim=0))
                n += 1
    return total / n


class FakeModel:
    """Returns fixed logits (sliced to the batch) and a fixed `.loss`."""

    def __init__(self, logits: torch.Tensor, loss: float = 0.0):
        self.logits, self.loss = logits, torch.tensor(loss)

    def __call__(self, **batch):
        b, t = batch["input_ids"].shape
        return SimpleNamespace(logits=self.logits[:b, :t], loss=self.loss)


def test_sequence_logprob_sum_matches_manual_loop():
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 6, 7), _labels()
    got = sequence_logprob_sum(logits, labels)
    assert got.shape == (2,)
    torch.testing.assert_close(got.double(), _manual_seq_logprob(logits, labels), rtol=1e-5, atol=1e-5)


def test_npo_loss_matches_formula():
    torch.manual_seed(1)
    logp, logp_ref, beta = torch.randn(5) * 10 - 30, torch.randn(5) * 10 - 30, 0.1
    # −(2/β)·mean log σ(−β·Δ), with log σ(z) = −log(1 + e^{−z})
    pairs = zip(logp.tolist(), logp_ref.tolist())
    expected = -(2 / beta) * sum(-math.log1p(math.exp(beta * (a - r))) for a, r in pairs) / 5
    assert float(npo_loss(logp, logp_ref, beta)) == pytest.approx(expected, rel=1e-5)
    # At the reference the loss is (2/β)·log 2.
    assert float(npo_loss(logp, logp, beta)) == pytest.approx(2 / beta * math.log(2), rel=1e-6)


def test_npo_method_loss_on_fake_models():
    torch.manual_seed(2)
    theta, ref = torch.randn(2, 6, 7), torch.randn(2, 6, 7)
    forget = {"input_ids": torch.zeros(2, 6, dtype=torch.long), "labels": _labels()}
    retain = {"input_ids": torch.zeros(2, 4, dtype=torch.long), "labels": torch.zeros(2, 4, dtype=torch.long)}
    method = NPO(beta=0.5, alpha=2.0, gamma=1.5)
    got = method.loss(FakeModel(theta, loss=1.25), forget, retain, FakeModel(ref))
    d = _manual_seq_logprob(theta, _labels()) - _manual_seq_logprob(ref, _labels())
    forget_loss = -(2 / 0.5) * float(torch.log(torch.sigmoid(-0.5 * d)).mean())
    assert float(got) == pytest.approx(1.5 * forget_loss + 2.0 * 1.25, rel=1e-5)


def test_kl_retain_loss_sums_over_all_positions_divided_by_b_times_t():
    torch.manual_seed(3)
    theta, ref = torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    retain = {"input_ids": torch.zeros(2, 4, dtype=torch.long)}
    got = retain_loss(FakeModel(theta), retain, FakeModel(ref), "KL")
    total = 0.0
    for b in range(2):
        for t in range(4):  # every position, prompt and padding included
            p_ref = torch.softmax(ref[b, t].double(), 0)
            p = torch.softmax(theta[b, t].double(), 0)
            total += float((p_ref * (p_ref.log() - p.log())).sum())
    assert float(got) == pytest.approx(total / (2 * 4), rel=1e-5)
    assert float(kl_to_reference(ref, ref)) == pytest.approx(0.0, abs=1e-6)


# --- a tiny benchmark and model ------------------------------------------------------------

FORGET_NAMES = ["Ada", "Bo", "Cyr", "Dee", "Eli", "Fay", "Gus", "Hal"]
THINGS = ["tea", "maps", "rivers", "old clocks", "green glass"]


class TinyQA(Benchmark):
    name = "tiny-qa"
    default_answer_eos = True  # trained as open-unlearning encodes answers (prompt + answer + EOS)

    def load(self) -> BenchmarkData:
        def items(prefix: str, shift: int) -> list[QAItem]:
            return [
                QAItem(f"{prefix}{i}", f"What does {n} like?", f"{n} likes {THINGS[(i + shift) % 5]}.")
                for i, n in enumerate(FORGET_NAMES)
            ]

        return BenchmarkData(splits={"forget10": items("f", 0), "retain90": items("r", 2)}, source="generated:test")


@pytest.fixture(scope="module")
def bench() -> TinyQA:
    return TinyQA()


@pytest.fixture(scope="module")
def spec(tiny_model_dir) -> ModelSpec:
    return ModelSpec(name="t", path=str(tiny_model_dir), dtype="float32")


@pytest.fixture(scope="module")
def base(spec):
    return load_hf_model(spec, device="cpu")


@pytest.fixture(scope="module")
def base_state(base) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in base.model.state_dict().items()}


def _forget_batch(base, bench) -> dict:
    enc = encode_items(bench, bench.split("forget10"), base.tokenizer, 256)
    return PairCollator(base.tokenizer.pad_token_id).pad(enc)


def _nll(model, batch) -> float:
    with torch.no_grad():
        return float(model(**batch).loss)


def _assert_base_unchanged(base, base_state):
    assert type(base.model).__name__ == "LlamaForCausalLM"  # not wrapped in a PeftModel
    assert not base.model.training
    state = base.model.state_dict()
    assert state.keys() == base_state.keys()
    for k, v in base_state.items():
        assert torch.equal(state[k], v), k


def _check_lora_artifact(artifact: ModelArtifact, out: Path, spec, base, bench, name: str):
    assert artifact.method == name and artifact.base_model == "t"
    assert artifact.adapter_path == str(out / "adapter") and artifact.checkpoint_path is None
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert len(artifact.hash) == 64
    assert ModelArtifact.load(out) == artifact
    assert artifact.train_stats["steps"] == 4 and artifact.train_stats["seed"] == 0
    assert artifact.train_stats["n_forget"] == 8
    assert math.isfinite(artifact.train_stats["final_loss"])
    adapted = load_hf_model(spec, device="cpu", adapter=artifact.adapter_path)
    batch = _forget_batch(base, bench)
    with torch.no_grad():
        diff = (adapted.model(**batch).logits - base.model(**batch).logits).abs().max()
    assert diff > 1e-4  # the adapter took effect
    return adapted


@pytest.fixture(scope="module")
def grad_ascent_run(base, base_state, bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("grad-ascent")
    artifact = GradAscent(**FAST).apply(base, bench, RunContext(out, seed=0))
    _assert_base_unchanged(base, base_state)
    return out, artifact


def test_grad_ascent_trains_lora_and_raises_forget_nll(grad_ascent_run, spec, base, bench):
    out, artifact = grad_ascent_run
    adapted = _check_lora_artifact(artifact, out, spec, base, bench, "grad-ascent")
    assert artifact.train_stats["n_retain"] == 0  # no retain term, no retain data
    assert artifact.hparams["lr"] == 1e-3 and artifact.hparams["peft"] == "lora"
    batch = _forget_batch(base, bench)
    assert _nll(adapted.model, batch) > _nll(base.model, batch) + 0.01


@pytest.mark.parametrize("cls,extra", [(GradDiff, {}), (NPO, {"beta": 0.1})])
def test_grad_diff_and_npo_train_lora(cls, extra, spec, base, base_state, bench, tmp_path):
    artifact = cls(**FAST, **extra).apply(base, bench, RunContext(tmp_path, seed=0))
    _check_lora_artifact(artifact, tmp_path, spec, base, bench, cls.name)
    assert artifact.train_stats["n_retain"] == 8 and artifact.train_stats["pair_seed"] == 0
    assert artifact.hparams["retain_loss_type"] == "NLL"
    _assert_base_unchanged(base, base_state)


def test_full_finetune_with_kl_retain_saves_loadable_checkpoint(base, base_state, bench, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    artifact = GradDiff(peft="full", retain_loss_type="KL", **FAST).apply(base, bench, RunContext(tmp_path, seed=0))
    ckpt = tmp_path / "checkpoint"
    assert artifact.checkpoint_path == str(ckpt) and artifact.adapter_path is None
    assert len(artifact.hash) == 64
    model = AutoModelForCausalLM.from_pretrained(ckpt)
    AutoTokenizer.from_pretrained(ckpt)
    batch = _forget_batch(base, bench)
    with torch.no_grad():
        assert (model(**batch).logits - base.model(**batch).logits).abs().max() > 1e-4
    _assert_base_unchanged(base, base_state)


def test_grad_diff_loss_is_minus_forget_nll_plus_retain_nll(base, bench):
    enc_f = encode_items(bench, bench.split("forget10")[:3], base.tokenizer, 256)
    enc_r = encode_items(bench, bench.split("retain90")[:3], base.tokenizer, 256)
    col = PairCollator(base.tokenizer.pad_token_id)
    f, r = col.pad(enc_f), col.pad(enc_r)
    with torch.no_grad():
        got = float(GradDiff().loss(base.model, f, r, None))
        lf, lr = base.model(**f).logits, base.model(**r).logits
    assert got == pytest.approx(-_manual_nll_mean(lf, f["labels"]) + _manual_nll_mean(lr, r["labels"]), rel=1e-4)


# --- data, config and the plugin example -------------------------------------------------------


def test_encoding_masks_prompt_and_pads_right(base, bench):
    tok = base.tokenizer
    item = bench.split("forget10")[0]
    enc = encode_item(bench, item, tok, 256)
    n_prompt = len(tok(bench.prompt(item))["input_ids"])
    answer = tok(bench.target(item.answer), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert enc["input_ids"][n_prompt:] == answer
    assert enc["labels"] == [-100] * n_prompt + answer
    batch = PairCollator(tok.pad_token_id).pad([enc, encode_item(bench, bench.split("forget10")[3], tok, 256)])
    short = int(batch["attention_mask"].sum(1).argmin())
    n = int(batch["attention_mask"][short].sum())
    assert (batch["labels"][short, n:] == -100).all() and (batch["input_ids"][short, n:] == tok.pad_token_id).all()
    assert encode_item(bench, item, tok, 5)["input_ids"] == enc["input_ids"][:5]


@pytest.mark.parametrize("chat", [False, True])
def test_training_prompts_match_evaluation_prompts(chat, tiny_model_dir, tiny_chat_model_dir, bench):
    """Methods train on exactly the prompt ids the HF backend scores (chat template included)."""
    from harness.backends.hf import HFBackend
    from harness.api.requests import LoglikelihoodRequest

    path = str(tiny_chat_model_dir if chat else tiny_model_dir)
    backend = HFBackend(ModelSpec(name="c", path=path), device="cpu")
    tok = backend.tokenizer
    item = bench.split("forget10")[0]
    enc = encode_item(bench, item, tok, 256, chat=chat)
    ctx = backend.encode_prompt(LoglikelihoodRequest(context=bench.prompt(item), continuation=""))
    assert enc["input_ids"][: len(ctx)] == ctx
    assert enc["labels"][: len(ctx)] == [-100] * len(ctx)
    if chat:
        assert f"<|user|> {bench.prompt(item)}\n<|assistant|>" in tok.decode(ctx)
    answer = tok.decode([t for t in enc["labels"] if t != -100])
    assert answer == bench.target(item.answer) + tok.eos_token


def test_forget_retain_pairing_is_seeded():
    forget, retain = [{"i": i} for i in range(5)], [{"r": r} for r in range(50)]
    draws = [[ForgetRetainDataset(forget, retain, seed=s)[i % 5]["retain"]["r"] for i in range(20)] for s in (7, 7, 8)]
    assert draws[0] == draws[1] != draws[2]
    assert "retain" not in ForgetRetainDataset(forget, None, seed=0)[0]


def test_unknown_or_bad_hyperparameter_is_a_config_error():
    with pytest.raises(ConfigError, match=r"unknown hyperparameter 'lrr'.*known: .*\blr\b"):
        NPO(lrr=1e-4)
    with pytest.raises(ConfigError, match="retain_loss_type"):
        GradDiff(retain_loss_type="L2")
    with pytest.raises(ConfigError, match="peft"):
        GradAscent(peft="qlora")
    assert NPO().params.beta == 0.1 and NPO().params.gamma == 1.0 and NPO().params.alpha == 1.0


def test_reference_without_model_refuses():
    with pytest.raises(RuntimeError, match="needs_reference"):
        ReferenceModel()(input_ids=torch.zeros(1, 2, dtype=torch.long))
    assert NPO().wants_reference() and GradDiff(retain_loss_type="KL").wants_reference()
    assert not GradDiff().wants_reference() and not GradAscent().wants_reference()


def test_example_plugin_via_entry_point(monkeypatch, base, base_state, bench, tmp_path):
    import harness.registry
    from harness.catalog import METHODS

    monkeypatch.syspath_prepend(str(EXAMPLE))
    import my_unlearning_method

    assert issubclass(my_unlearning_method.ScaledAscent, UnlearningMethod)
    ep = EntryPoint(name="scaled-ascent", value="my_unlearning_method:ScaledAscent", group="harness.methods")
    monkeypatch.setattr(
        harness.registry, "entry_points", lambda group=None: [ep] if group == "harness.methods" else []
    )
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    monkeypatch.setattr(METHODS, "_plugins_loaded", False)
    assert "scaled-ascent" in METHODS.names()
    cls = METHODS.get("scaled-ascent")
    assert cls is my_unlearning_method.ScaledAscent
    assert METHODS.get("npo") is NPO and METHODS.get("grad-diff") is GradDiff
    assert METHODS.get("grad-ascent") is GradAscent

    with pytest.raises(ConfigError, match="scaled-ascent.*'scal'"):
        cls(scal=2.0)
    artifact = cls(scale=2.0, **FAST).apply(base, bench, RunContext(tmp_path, seed=0))
    assert artifact.method == "scaled-ascent" and artifact.hparams["scale"] == 2.0
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists() and artifact.hash
    assert artifact.train_stats["final_loss"] < 0
    _assert_base_unchanged(base, base_state)
