"""LAF's losses by hand, label-freedom, and that it forgets on the tiny model."""

from __future__ import annotations

from harness.api.context import RunContext

import math
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from harness.api.benchmark import BenchmarkData, QAItem, TofuShapedBenchmark
from harness.zoo.load import load_hf_model
from harness.zoo.specs import ModelSpec
from harness.methods.laf import LAF, alignment_loss, saturating_error, vae_loss


def test_losses_by_hand():
    c_r, c_f = torch.tensor([0.1, 0.3]), torch.tensor([0.5, 1.0])
    want = sum(math.log(math.exp(c) / (math.exp(0.5 / 5) + math.exp(1.0 / 5))) for c in (0.1, 0.3))
    assert float(alignment_loss(c_r, c_f, 5.0)) == pytest.approx(want, rel=1e-6)

    class Fixed(torch.nn.Module):
        def forward(self, e, sample=True):
            return torch.zeros_like(e), None, None

    e = torch.tensor([[1.0, 1.0], [2.0, 0.0]])  # errors 2 and 4; /d: 1 and 2
    assert float(saturating_error(Fixed(), e, False)) == pytest.approx(math.exp(2 / 3) + math.exp(4 / 5), rel=1e-6)
    assert float(saturating_error(Fixed(), e, True)) == pytest.approx(math.exp(1 / 2) + math.exp(2 / 3), rel=1e-6)
    mu, logvar = torch.tensor([[1.0]]), torch.tensor([[0.0]])
    # recon err 1; KL = -0.5 (0 + 1 - 1 - 1) = 0.5
    assert float(vae_loss(torch.tensor([[1.0]]), torch.tensor([[0.0]]), mu, logvar, 0.1)) == pytest.approx(1.05)


class _Bench(TofuShapedBenchmark):
    name = "laf-toy"

    def __init__(self, swap: bool = False, **kw):
        super().__init__(**kw)
        self.swap = swap

    def load(self) -> BenchmarkData:
        names = ["Ada", "Bo", "Cyr", "Dee", "Eli", "Fay", "Gus", "Hal"]
        things = ["tea", "maps", "rivers", "old clocks", "green glass"]
        items = [QAItem(f"{n}-{t}", f"What does {n} like?", f"{n} likes {t}.", entity=n) for n in names for t in things]
        forget = items[:10]
        if self.swap:  # the forget answers replaced: a label-free method must not notice
            forget = [replace(i, answer="Nobody knows.", paraphrased_answer="?") for i in forget]
        return BenchmarkData({"forget10": forget, "retain90": items[10:], "retain_perturbed": items[10:]}, source="t")


def test_laf_is_label_free_and_changes_the_extractor_only(tiny_model_dir, tmp_path):
    spec = ModelSpec(name="toy", path=str(tiny_model_dir), chat_template="none", dtype="float32")
    params = dict(layer=1, epochs=1, batch_size=4, vae_epochs=2, vae_hidden=(32, 16), latent=4, lr_ue=1e-2, lr_ra=1e-2)
    weights = []
    for swap in (False, True):
        base = load_hf_model(spec, device="cpu")
        art = LAF(**params).apply(base, _Bench(swap=swap), RunContext(tmp_path / str(swap), seed=0))
        weights.append(load_file(f"{art.checkpoint_path}/model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    original = load_hf_model(spec, device="cpu").model.state_dict()
    changed = {k for k, v in weights[0].items() if not torch.equal(v, original[k])}
    assert changed and all(k.startswith("model.layers.0.") for k in changed), changed  # layers >= l frozen


@pytest.mark.slow
def test_laf_lowers_forget_recall_on_tiny_facts(tmp_path):
    from harness.backends.hf import HFBackend
    from harness.catalog import build_benchmark
    from harness.demo import DEMO_METHOD_PARAMS
    from harness.evaluate import evaluate, resolve_metrics
    from harness.zoo.specs import ModelZoo

    spec = ModelZoo().get("tiny-facts")
    bench = build_benchmark("fictitious-facts", forget_split="forget10", limit=100)  # the whole forget10 split
    art = LAF(**DEMO_METHOD_PARAMS["laf"]).apply(load_hf_model(spec, device="cpu"), bench, RunContext(tmp_path, seed=0))
    metrics = resolve_metrics(bench, ["exact_match_recall@forget"], 0)
    before = evaluate(bench, metrics, HFBackend(spec, device="cpu")).results["exact_match_recall@forget"].value
    after_spec = spec.model_copy(update={"path": art.checkpoint_path, "builder": None})
    after = evaluate(bench, metrics, HFBackend(after_spec, device="cpu")).results["exact_match_recall@forget"].value
    assert after < before - 0.2, (before, after)


@pytest.mark.parametrize("space", ["raw", "standardised"])
def test_alignment_cosine_is_on_unstandardised_representations(tiny_model_dir, tmp_path, monkeypatch, space):
    """methods.md §4.1: L_RA's cosine compares the model's and the teacher's representations as
    they are; the retain-set standardisation exists for the VAEs (`ra_space: standardised` opts in)."""
    import harness.methods.laf as laf

    teacher_reps, seen = [], []
    real_reps, real_costs = laf._representations, laf.alignment_costs

    def reps(*a, **k):
        out = real_reps(*a, **k)
        teacher_reps.append(out)
        return out

    def costs(e_r, e_f, t_r, t_f):
        seen.append((t_r.detach().clone(), t_f.detach().clone()))
        return real_costs(e_r, e_f, t_r, t_f)

    monkeypatch.setattr(laf, "_representations", reps)
    monkeypatch.setattr(laf, "alignment_costs", costs)
    spec = ModelSpec(name="toy", path=str(tiny_model_dir), chat_template="none", dtype="float32")
    params = dict(layer=1, epochs=1, batch_size=4, vae_epochs=1, vae_hidden=(32, 16), latent=4, ra_space=space)
    LAF(**params).apply(load_hf_model(spec, device="cpu"), _Bench(), RunContext(tmp_path, seed=0))
    t_r, t_f = teacher_reps[:2]  # the teacher's retain and forget representations, unstandardised
    mean, std = t_r.mean(0), t_r.std(0).clamp(min=1e-6)
    want_r, want_f = (t_r, t_f) if space == "raw" else ((t_r - mean) / std, (t_f - mean) / std)
    assert seen
    for got_r, got_f in seen:
        assert all(any(torch.allclose(row, w) for w in want_r) for row in got_r)
        assert all(any(torch.allclose(row, w) for w in want_f) for row in got_f)
